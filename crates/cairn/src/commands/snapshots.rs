//! `cairn snapshots`: list snapshots.

use anyhow::Result;
use cairn_repo::SourceStatus;
use serde_json::json;

use crate::cli::{Global, SnapshotsArgs};
use crate::output;
use crate::settings;

pub fn run(global: &Global, args: &SnapshotsArgs) -> Result<()> {
    let repo = settings::open(global)?;
    let snapshots: Vec<_> = repo
        .snapshots()?
        .into_iter()
        .filter(|(_, s)| args.host.as_ref().is_none_or(|h| &s.host == h))
        .filter(|(_, s)| args.tags.iter().all(|t| s.tags.contains(t)))
        .filter(|(_, s)| args.job.as_ref().is_none_or(|j| s.job.as_ref() == Some(j)))
        .collect();
    // The newest verification of each snapshot.
    let mut verified = std::collections::HashMap::new();
    for v in repo.verifications()? {
        verified.insert(v.snapshot, v);
    }
    if args.json {
        let list: Vec<_> = snapshots
            .iter()
            .map(|(id, s)| {
                let mut v = serde_json::to_value(s).expect("snapshots serialise");
                v["id"] = json!(id.to_hex());
                v["short_id"] = json!(id.short());
                if let Some(check) = verified.get(id) {
                    v["verified"] = json!({"time": check.time, "ok": check.ok});
                }
                v
            })
            .collect();
        return super::print_json(&list);
    }
    if snapshots.is_empty() {
        if !global.quiet {
            eprintln!("no snapshots yet");
        }
        return Ok(());
    }
    outln!(
        "{:<8}  {:<19}  {:<12}  {:<10}  {:<7}  {:>10}  {:>10}  {:<12}  {:<18}  sources",
        "id",
        "time",
        "host",
        "job",
        "status",
        "size",
        "added",
        "tags",
        "verified"
    )?;
    for (id, s) in &snapshots {
        let t = s.totals();
        // A snapshot is partial when any source is not ok, failed only when none has data.
        let status = if s.sources.iter().all(|src| src.status == SourceStatus::Ok) {
            "ok"
        } else if s.sources.iter().all(|src| src.status == SourceStatus::Failed) {
            "failed"
        } else {
            "partial"
        };
        // Per source: its status and size; ad hoc backups show their paths instead.
        let sources = match &s.job {
            None => s.paths.join(" "),
            Some(_) => s
                .sources
                .iter()
                .map(|src| match src.status {
                    SourceStatus::Failed => format!("{} failed", src.name),
                    st => format!("{} {} {}", src.name, status_name(st), output::bytes(src.stats.total_bytes)),
                })
                .collect::<Vec<_>>()
                .join(", "),
        };
        // When the snapshot was last proven restorable by `cairn verify`, and the verdict.
        let proof = verified.get(id).map_or_else(
            || "-".to_string(),
            |v| {
                let when = v.time.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M");
                format!("{} {when}", if v.ok { "ok" } else { "FAILED" })
            },
        );
        outln!(
            "{:<8}  {:<19}  {:<12}  {:<10}  {:<7}  {:>10}  {:>10}  {:<12}  {:<18}  {}",
            id.short(),
            s.time.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S"),
            s.host,
            s.job.as_deref().unwrap_or("-"),
            status,
            output::bytes(t.total_bytes),
            output::bytes(t.bytes_added),
            s.tags.join(","),
            proof,
            sources
        )?;
    }
    outln!("{} snapshot(s)", snapshots.len())?;
    Ok(())
}

fn status_name(status: SourceStatus) -> &'static str {
    match status {
        SourceStatus::Ok => "ok",
        SourceStatus::Partial => "partial",
        SourceStatus::Failed => "failed",
    }
}
