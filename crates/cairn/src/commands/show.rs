//! `cairn show SNAPSHOT`: everything a snapshot records, per source.

use anyhow::Result;
use cairn_repo::{Id, Snapshot, SourceStatus};
use serde_json::json;

use crate::cli::{Global, ShowArgs};
use crate::output;
use crate::settings;

pub fn run(global: &Global, args: &ShowArgs) -> Result<()> {
    let repo = settings::open(global)?;
    let (id, snap) = super::find_snapshot(&repo, &args.snapshot, args.job.as_deref())?;
    if args.json {
        let mut v = serde_json::to_value(&snap)?;
        v["id"] = json!(id.to_hex());
        v["short_id"] = json!(id.short());
        return super::print_json(&v);
    }
    print_snapshot(&id, &snap)?;
    Ok(())
}

fn print_snapshot(id: &Id, s: &Snapshot) -> std::io::Result<()> {
    outln!("snapshot {}", id.to_hex())?;
    outln!("time:      {}", s.time.to_rfc3339())?;
    outln!(
        "host:      {}{}",
        s.host,
        if s.username.is_empty() { String::new() } else { format!(" (user {})", s.username) }
    )?;
    if let Some(job) = &s.job {
        outln!("job:       {job}")?;
    }
    if !s.tags.is_empty() {
        outln!("tags:      {}", s.tags.join(", "))?;
    }
    if let Some(parent) = &s.parent {
        outln!("parent:    {}", parent.short())?;
    }
    outln!("duration:  {}", output::duration(s.duration_secs))?;
    outln!("program:   {}", s.program)?;
    for src in &s.sources {
        let status = match src.status {
            SourceStatus::Ok => "ok",
            SourceStatus::Partial => "partial",
            SourceStatus::Failed => "failed",
        };
        outln!()?;
        outln!("source {} ({}): {status}", src.name, src.kind)?;
        if let Some(e) = &src.error {
            outln!("  error:     {}", e.replace('\n', "\n             "))?;
        }
        let st = &src.stats;
        outln!(
            "  size:      {} in total, {} read, {} added to the repository",
            output::bytes(st.total_bytes),
            output::bytes(st.bytes_read),
            output::bytes(st.bytes_added)
        )?;
        if src.kind == "files" {
            outln!(
                "  files:     {} new, {} changed, {} unchanged; {} dirs; {} errors",
                st.files_new,
                st.files_changed,
                st.files_unchanged,
                st.dirs,
                st.errors
            )?;
        }
        outln!("  duration:  {}", output::duration(st.duration_secs))?;
        outln!("  chunking:  {} average", output::bytes(src.chunking.avg.into()))?;
        for (key, value) in &src.metadata {
            print_value(key, value, 2)?;
        }
        for w in &src.warnings {
            outln!("  warning:   {w}")?;
        }
    }
    Ok(())
}

/// Metadata as indented `key: value` lines; lists of objects (tables, databases) one per line.
fn print_value(key: &str, value: &serde_json::Value, indent: usize) -> std::io::Result<()> {
    let pad = " ".repeat(indent);
    match value {
        serde_json::Value::Array(items) if items.iter().any(|i| i.is_object()) => {
            outln!("{pad}{key}:")?;
            for item in items {
                let obj = item.as_object().expect("checked above");
                let inline: Vec<String> = obj
                    .iter()
                    .filter(|(_, v)| !v.is_array() && !v.is_object())
                    .map(|(k, v)| format!("{k}={}", v.as_str().map_or_else(|| v.to_string(), String::from)))
                    .collect();
                outln!("{pad}  - {}", inline.join(" "))?;
                for (k, v) in obj.iter().filter(|(_, v)| v.is_array() || v.is_object()) {
                    print_value(k, v, indent + 4)?;
                }
            }
        }
        serde_json::Value::Array(items) => {
            let words: Vec<String> =
                items.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), String::from)).collect();
            outln!("{pad}{key}: {}", words.join(", "))?;
        }
        serde_json::Value::Object(map) => {
            outln!("{pad}{key}:")?;
            for (k, v) in map {
                print_value(k, v, indent + 2)?;
            }
        }
        serde_json::Value::String(s) => outln!("{pad}{key}: {s}")?,
        other => outln!("{pad}{key}: {other}")?,
    }
    Ok(())
}
