//! `cairn diff FROM TO`: what changed between two snapshots, source by source.
//!
//! Sources are matched by name; a source in only one snapshot shows as all added or all
//! removed. A source whose capture failed in either snapshot holds no tree there: it is not
//! compared (it would show as all added or removed) and is listed as such. Lines read
//! `+ /path` (added), `- ` (removed), `M ` (content), `T ` (type) and `U ` (metadata only), as
//! restic prints them; a summary follows.

use std::collections::BTreeMap;

use anyhow::Result;
use cairn_repo::diff::{diff_trees, Change, Difference};
use cairn_repo::{Id, Snapshot, SourceEntry};
use serde_json::json;

use crate::cli::{DiffArgs, Global};
use crate::output;
use crate::settings;

pub fn run(global: &Global, args: &DiffArgs) -> Result<()> {
    let repo = settings::open(global)?;
    let (from_id, from) = super::find_snapshot(&repo, &args.from, None)?;
    let (to_id, to) = super::find_snapshot(&repo, &args.to, None)?;
    // Every source of either snapshot, in the order they list them.
    let mut names: Vec<&str> = from.sources.iter().map(|s| s.name.as_str()).collect();
    names.extend(to.sources.iter().map(|s| s.name.as_str()).filter(|n| !from.sources.iter().any(|s| s.name == *n)));
    if let Some(wanted) = &args.source {
        if !names.contains(&wanted.as_str()) {
            anyhow::bail!(
                "neither snapshot has a source named {wanted:?}\nhint: they have {}",
                names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
            );
        }
        names.retain(|n| n == wanted);
    }
    let mut changes: Vec<(String, Difference)> = Vec::new();
    let mut not_compared: Vec<NotCompared> = Vec::new();
    for name in &names {
        let (before, after) = (source(&from, name), source(&to, name));
        let failed = [(from_id, before), (to_id, after)]
            .into_iter()
            .find_map(|(id, e)| e.filter(|e| e.root.is_none()).map(|e| (id, e)));
        if let Some((snapshot, e)) = failed {
            let error = e.error.clone().unwrap_or_else(|| "nothing was captured".into());
            not_compared.push(NotCompared { source: name.to_string(), snapshot, error });
            continue;
        }
        let (before, after) = (before.and_then(|e| e.root), after.and_then(|e| e.root));
        diff_trees(&repo, before, after, "", &mut |d| changes.push((name.to_string(), d)))?;
    }
    let summary = Summary::of(changes.iter().map(|(_, d)| d));
    if args.json {
        let list: Vec<_> = changes
            .iter()
            .map(|(source, d)| {
                let mut v = serde_json::to_value(d).expect("differences serialise");
                v["source"] = json!(source);
                v
            })
            .collect();
        return super::print_json(&json!({
            "from": from_id.to_hex(),
            "to": to_id.to_hex(),
            "changes": list,
            "not_compared": not_compared
                .iter()
                .map(|n| json!({"source": n.source, "snapshot": n.snapshot.to_hex(), "error": n.error}))
                .collect::<Vec<_>>(),
            "summary": summary.counts,
            "bytes_added": summary.bytes_added,
            "bytes_removed": summary.bytes_removed,
        }));
    }
    let several = names.len() > 1;
    for (source, d) in &changes {
        let at = if several { format!("{source}:") } else { String::new() };
        outln!("{}  {at}{}", d.change.letter(), d.path)?;
    }
    for n in &not_compared {
        outln!("!  {}: not compared, its capture failed in {}: {}", n.source, n.snapshot.short(), n.error)?;
    }
    let (from_short, to_short) = (from_id.short(), to_id.short());
    if changes.is_empty() {
        outln!("{from_short} -> {to_short}: no changes")?;
        return Ok(());
    }
    outln!(
        "{from_short} -> {to_short}: {}; files: {} added, {} removed",
        summary.describe(),
        output::bytes(summary.bytes_added),
        output::bytes(summary.bytes_removed)
    )?;
    Ok(())
}

fn source<'s>(snap: &'s Snapshot, name: &str) -> Option<&'s SourceEntry> {
    snap.sources.iter().find(|s| s.name == name)
}

/// A source left out of the comparison: its capture failed in `snapshot`.
struct NotCompared {
    source: String,
    snapshot: Id,
    error: String,
}

/// How many entries changed which way (every kind, zero or not), and the sizes of files
/// added and removed (a modified file counts as its old size removed and its new added).
struct Summary {
    counts: BTreeMap<Change, u64>,
    bytes_added: u64,
    bytes_removed: u64,
}

impl Summary {
    fn of<'d>(changes: impl Iterator<Item = &'d Difference>) -> Summary {
        let counts = Change::ALL.into_iter().map(|c| (c, 0)).collect();
        let mut s = Summary { counts, bytes_added: 0, bytes_removed: 0 };
        for d in changes {
            *s.counts.entry(d.change).or_default() += 1;
            if d.change != Change::Metadata {
                s.bytes_added += d.size_after.unwrap_or(0);
                s.bytes_removed += d.size_before.unwrap_or(0);
            }
        }
        s
    }

    fn describe(&self) -> String {
        self.counts.iter().map(|(c, n)| format!("{n} {}", c.counted())).collect::<Vec<_>>().join(", ")
    }
}
