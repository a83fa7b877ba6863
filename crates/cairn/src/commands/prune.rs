//! `cairn prune`: reclaim the space of data no snapshot uses, safely beside running backups.
//!
//! Two phases, no lock (see `cairn_repo::prune` and docs/FORMAT.md): each run first deletes
//! the packs of marks older than the grace period that are still unused, then marks what is
//! unused now (repacking mostly-unused packs). So space comes back one grace period after
//! the snapshots that used it were forgotten.

use anyhow::{anyhow, Result};
use cairn_repo::PruneOptions;

use crate::cli::{Global, PruneArgs};
use crate::output;
use crate::settings;

pub fn run(global: &Global, args: &PruneArgs) -> Result<()> {
    let grace = crate::config::parse_interval(&args.grace).ok_or_else(|| {
        anyhow!(
            "cannot read --grace {:?}\nhint: write it like 24h, 90m, 2d, or 0 (only when no backup can be running)",
            args.grace
        )
    })?;
    if !(0.0..=1.0).contains(&args.repack_threshold) {
        return Err(anyhow!("--repack-threshold must be between 0 and 1 (a share of a pack's bytes)"));
    }
    let repo = settings::open(global)?;
    let options = PruneOptions {
        grace,
        repack_threshold: args.repack_threshold,
        dry_run: args.dry_run,
        ..PruneOptions::default()
    };
    let report = repo.prune(&options)?;
    if args.json {
        return super::print_json(&report);
    }
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if global.quiet {
        return Ok(());
    }
    let verb = |now: &str, dry: &str| if report.dry_run { dry.to_string() } else { now.to_string() };
    outln!("{} snapshot(s) use {} blob(s), {}", report.snapshots, report.used_blobs, output::bytes(report.used_bytes))?;
    outln!(
        "{} {} pack(s), {} (marks past their grace period: {}); {} pack(s) put back because a snapshot needs them",
        verb("deleted", "would delete"),
        report.deleted.packs,
        output::bytes(report.deleted.bytes),
        report.marks_deleted,
        report.revived.packs
    )?;
    outln!(
        "{} {} unused pack(s) ({}), {} pack(s) left by interrupted runs ({}); repacked {} mostly unused pack(s) ({}) into {} ({})",
        verb("marked", "would mark"),
        report.unused.packs,
        output::bytes(report.unused.bytes),
        report.unindexed.packs,
        output::bytes(report.unindexed.bytes),
        report.repacked.packs,
        output::bytes(report.repacked.bytes),
        report.written.packs,
        output::bytes(report.written.bytes)
    )?;
    for w in &report.waiting {
        outln!(
            "waiting: {} of {} pack(s) marked {}, deleted by a prune after {}",
            output::bytes(w.pending.bytes),
            w.pending.packs,
            w.created.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M"),
            w.due.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M")
        )?;
    }
    outln!(
        "space reclaimed now: {}; reclaimable by a later prune: {}",
        output::bytes(report.deleted.bytes),
        output::bytes(report.reclaimable_later())
    )?;
    Ok(())
}
