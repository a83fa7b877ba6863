//! `cairn snapshots`: list snapshots.

use anyhow::Result;
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
        .collect();
    if args.json {
        let list: Vec<_> = snapshots
            .iter()
            .map(|(id, s)| {
                let mut v = serde_json::to_value(s).expect("snapshots serialise");
                v["id"] = json!(id.to_hex());
                v["short_id"] = json!(id.short());
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
    println!(
        "{:<8}  {:<19}  {:<12}  {:<7}  {:>10}  {:>10}  {:<12}  paths",
        "id", "time", "host", "status", "size", "added", "tags"
    );
    for (id, s) in &snapshots {
        let t = s.totals();
        let status = s.sources.iter().map(|src| src.status).max_by_key(|st| *st as u8).map_or("ok", |st| match st {
            cairn_repo::SourceStatus::Ok => "ok",
            cairn_repo::SourceStatus::Partial => "partial",
            cairn_repo::SourceStatus::Failed => "failed",
        });
        println!(
            "{:<8}  {:<19}  {:<12}  {:<7}  {:>10}  {:>10}  {:<12}  {}",
            id.short(),
            s.time.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S"),
            s.host,
            status,
            output::bytes(t.total_bytes),
            output::bytes(t.bytes_added),
            s.tags.join(","),
            s.paths.join(" ")
        );
    }
    println!("{} snapshot(s)", snapshots.len());
    Ok(())
}
