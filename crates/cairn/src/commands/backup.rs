//! `cairn backup PATH...`: back up files and folders into one snapshot.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use cairn_repo::{ChunkParams, Id, Repository, Snapshot, SourceEntry, SourceStatus, WriterOptions};
use cairn_sources::files::{self, BackupOptions, Patterns};
use chrono::{DateTime, FixedOffset, Local, NaiveDateTime, TimeZone};
use serde_json::json;

use crate::cli::{BackupArgs, Global};
use crate::exit::Partial;
use crate::output::{self, Progress};
use crate::settings;

pub fn run(global: &Global, args: &BackupArgs) -> Result<()> {
    let started = Instant::now();
    let paths = resolve_paths(&args.paths)?;
    let time = match &args.time {
        Some(t) => parse_time(t)?,
        None => Local::now().fixed_offset(),
    };
    let excludes = Patterns::new(&args.excludes, &args.exclude_files)?;
    let repo = settings::open(global)?;
    let host = args.host.clone().unwrap_or_else(settings::hostname);
    let path_names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let parent = find_parent(&repo, args, &host, &path_names)?;

    let options = BackupOptions { reread_all: args.force, ..BackupOptions::new(excludes, ChunkParams::FILES) };
    // With --json the summary goes to stdout; warnings still go to stderr.
    let progress = Progress::new(global.quiet || args.json, global.quiet, None);
    let writer = repo.writer(WriterOptions { compression: args.compression, ..WriterOptions::default() });
    let parent_root =
        parent.as_ref().and_then(|(_, s)| s.sources.iter().find(|s| s.kind == "files")).and_then(|s| s.root);
    let outcome = files::backup(&repo, &writer, &paths, parent_root, &options, &progress);
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            progress.finish();
            return Err(e.into());
        }
    };
    let totals = writer.finish()?;
    progress.finish();

    let mut stats = outcome.stats;
    stats.bytes_added = totals.bytes_stored;
    stats.blobs_added = totals.blobs_new;
    let status = if stats.errors > 0 { SourceStatus::Partial } else { SourceStatus::Ok };
    let mut metadata = serde_json::Map::new();
    metadata.insert("paths".into(), json!(path_names));
    let snapshot = Snapshot {
        version: cairn_repo::snapshot::SNAPSHOT_VERSION,
        time,
        host,
        username: std::env::var("USER").unwrap_or_default(),
        job: None,
        tags: args.tags.clone(),
        paths: path_names,
        parent: parent.map(|(id, _)| id),
        sources: vec![SourceEntry {
            name: "files".into(),
            kind: "files".into(),
            status,
            error: None,
            root: Some(outcome.root),
            chunking: options.chunking,
            metadata,
            stats,
            warnings: outcome.warnings,
        }],
        duration_secs: started.elapsed().as_secs_f64(),
        program: format!("cairn {}", env!("CARGO_PKG_VERSION")),
    };
    let id = repo.save_snapshot(&snapshot)?;
    report(global, args, &id, &snapshot)?;
    let errors = snapshot.sources[0].stats.errors;
    if errors > 0 {
        return Err(Partial(format!(
            "snapshot {} saved, but {errors} item(s) could not be read (see warnings)",
            id.short()
        ))
        .into());
    }
    Ok(())
}

/// Check every path exists before anything is written, and make it absolute and normal, so
/// `src/`, `./src` and `x/../src` all name the same path (and find the same parent).
fn resolve_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    paths
        .iter()
        .map(|p| {
            std::fs::symlink_metadata(p).with_context(|| format!("cannot back up {}", p.display()))?;
            let absolute = std::path::absolute(p).with_context(|| format!("cannot resolve {}", p.display()))?;
            Ok(files::normalize(&absolute))
        })
        .collect()
}

/// The snapshot whose unchanged files need not be read again.
fn find_parent(repo: &Repository, args: &BackupArgs, host: &str, paths: &[String]) -> Result<Option<(Id, Snapshot)>> {
    let snapshots = repo.snapshots()?;
    if let Some(spec) = &args.parent {
        return Ok(Some(Repository::resolve(&snapshots, spec)?));
    }
    let mut wanted = paths.to_vec();
    wanted.sort();
    Ok(snapshots.into_iter().rev().find(|(_, s)| {
        let mut theirs = s.paths.clone();
        theirs.sort();
        s.host == host && s.job.is_none() && theirs == wanted
    }))
}

/// Accept RFC 3339, or a local `YYYY-MM-DD[ HH:MM[:SS]]`.
pub fn parse_time(text: &str) -> Result<DateTime<FixedOffset>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t);
    }
    for format in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            if let Some(local) = Local.from_local_datetime(&naive).earliest() {
                return Ok(local.fixed_offset());
            }
        }
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let naive = date.and_hms_opt(0, 0, 0).expect("midnight exists");
        if let Some(local) = Local.from_local_datetime(&naive).earliest() {
            return Ok(local.fixed_offset());
        }
    }
    bail!("cannot read time {text:?}\nhint: use RFC 3339 (2026-01-31T02:00:00+01:00) or '2026-01-31 02:00:00'")
}

fn report(global: &Global, args: &BackupArgs, id: &Id, snap: &Snapshot) -> Result<()> {
    let s = &snap.sources[0].stats;
    if args.json {
        return super::print_json(&json!({
            "snapshot": id.to_hex(),
            "short_id": id.short(),
            "time": snap.time,
            "parent": snap.parent.map(|p| p.to_hex()),
            "stats": s,
            "duration_secs": snap.duration_secs,
        }));
    }
    if global.quiet {
        return Ok(());
    }
    println!("snapshot {} saved", id.short());
    println!("files:    {} new, {} changed, {} unchanged", s.files_new, s.files_changed, s.files_unchanged);
    println!("dirs:     {}", s.dirs);
    println!(
        "data:     {} in total, {} read, {} added to the repository (after dedup and compression)",
        output::bytes(s.total_bytes),
        output::bytes(s.bytes_read),
        output::bytes(s.bytes_added)
    );
    if s.errors > 0 {
        println!("errors:   {} item(s) could not be read", s.errors);
    }
    println!("duration: {}", output::duration(snap.duration_secs));
    Ok(())
}
