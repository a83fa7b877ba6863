//! `cairn backup JOB...|--all`: run jobs of the config file, one snapshot per job and
//! repository; `cairn backup PATH...`: back up files and folders into one snapshot.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use cairn_repo::{ChunkParams, Id, Repository, Snapshot, SourceEntry, SourceStatus, WriterOptions};
use cairn_sources::files::{self, BackupOptions, Patterns};
use chrono::{DateTime, FixedOffset, Local, NaiveDateTime, TimeZone};
use serde_json::json;

use crate::cli::{BackupArgs, Global};
use crate::config::Config;
use crate::exit::Partial;
use crate::history;
use crate::jobs::{self, JobResult, Outcome, RunOptions, DEFAULT_COMPRESSION};
use crate::output::{self, Progress};
use crate::runs::{HistorySink, NotifySink, Started};
use crate::settings;

pub fn run(global: &Global, args: &BackupArgs) -> Result<()> {
    let config = settings::config(global)?;
    let jobs: Vec<String> = match &config {
        Some(c) if args.all => c.file.jobs.keys().cloned().collect(),
        Some(c) => args
            .targets
            .iter()
            .filter_map(|t| t.to_str())
            .filter(|t| c.file.jobs.contains_key(*t))
            .map(String::from)
            .collect(),
        None if args.all => bail!(
            "--all runs the jobs of a config file, and none was found\nhint: pass --config FILE or create cairn.toml"
        ),
        None => Vec::new(),
    };
    if let Some(config) = config.as_ref().filter(|_| !jobs.is_empty()) {
        if jobs.len() < args.targets.len() {
            let others: Vec<_> =
                args.targets.iter().filter(|t| !t.to_str().is_some_and(|t| jobs.iter().any(|j| j == t))).collect();
            bail!(
                "{} is not a job of {}\nhint: run jobs and back up paths in separate commands",
                others[0].display(),
                config.path.display()
            );
        }
        if !args.excludes.is_empty() || !args.exclude_files.is_empty() || args.parent.is_some() {
            bail!("--exclude, --exclude-file and --parent apply to paths, not jobs\nhint: set `exclude` on the job's files source in the config file");
        }
        return run_jobs(global, args, config, &jobs);
    }
    if let Some(missing) = args.targets.iter().find(|t| std::fs::symlink_metadata(t).is_err()) {
        if let Some(config) = &config {
            let names: Vec<&str> = config.file.jobs.keys().map(String::as_str).collect();
            bail!(
                "{} is neither a job of {} nor an existing path\nhint: jobs are: {}",
                missing.display(),
                config.path.display(),
                if names.is_empty() { "(none)".to_string() } else { names.join(", ") }
            );
        }
    }
    run_paths(global, args, config.as_ref())
}

/// Run jobs from the config file, each into its repositories, hooks around each job.
fn run_jobs(global: &Global, args: &BackupArgs, config: &Config, names: &[String]) -> Result<()> {
    let options = RunOptions {
        time: args.time.as_deref().map(parse_time).transpose()?,
        force: args.force,
        tags: args.tags.clone(),
        compression: args.compression,
    };
    let display =
        jobs::Display { no_bar: global.quiet || args.json, quiet: global.quiet, announce: !global.quiet && !args.json };
    let history = HistorySink::open(&history::state_dir(Some(config)));
    let notify = NotifySink::new(global.clone(), false);
    let mut results = Vec::new();
    for name in names {
        // Checked before the run is recorded: a bad job or --repo stops the command, not a run.
        jobs::job_targets(global, config, config.job(name)?)?;
        history.start(name, Started::Manual);
        notify.start(name, Started::Manual);
        let job_results = jobs::run_job(global, config, name, &options, &display)?;
        history.finish(name, &job_results);
        notify.finish(name, Started::Manual, &job_results);
        results.extend(job_results);
    }
    report_jobs(global, args, &results)?;
    let failed: Vec<&JobResult> = results.iter().filter(|r| r.outcome == Outcome::Failed).collect();
    if let Some(first) = failed.first() {
        bail!("job {} failed: {}", first.job, first.error.as_deref().unwrap_or("see above"));
    }
    if results.iter().any(|r| r.outcome == Outcome::Partial) {
        return Err(
            Partial("some sources failed or were captured only in part; the snapshot records which".into()).into()
        );
    }
    Ok(())
}

fn report_jobs(global: &Global, args: &BackupArgs, results: &[JobResult]) -> Result<()> {
    if args.json {
        return super::print_json(&results);
    }
    if global.quiet {
        return Ok(());
    }
    for r in results {
        match &r.snapshot {
            Some(id) => outln!(
                "job {}: snapshot {} saved to {} ({}) in {}",
                r.job,
                &id[..8],
                r.repository,
                r.outcome.name(),
                output::duration(r.duration_secs)
            )?,
            None => outln!("job {}: nothing saved to {} (failed)", r.job, r.repository)?,
        }
        for s in &r.sources {
            let status = match s.status {
                SourceStatus::Ok => "ok",
                SourceStatus::Partial => "partial",
                SourceStatus::Failed => "failed",
            };
            out!("  {:<14} {:<9} {:<8}", s.name, s.kind, status)?;
            match &s.error {
                Some(e) => outln!("{}", e.replace('\n', "\n      "))?,
                None => outln!(
                    "{} read, {} added, {}",
                    output::bytes(s.stats.bytes_read),
                    output::bytes(s.stats.bytes_added),
                    output::duration(s.stats.duration_secs)
                )?,
            }
        }
        if let Some(e) = &r.error {
            outln!("  error: {}", e.replace('\n', "\n  "))?;
        }
    }
    Ok(())
}

/// Back up paths given on the command line into one snapshot.
fn run_paths(global: &Global, args: &BackupArgs, config: Option<&Config>) -> Result<()> {
    let started = Instant::now();
    let paths = resolve_paths(&args.targets)?;
    let time = match &args.time {
        Some(t) => parse_time(t)?,
        None => Local::now().fixed_offset(),
    };
    let excludes = Patterns::new(&args.excludes, &args.exclude_files)?;
    let target = settings::repo_target(global, config)?;
    let repo = settings::open_target(global, &target)?;
    let host = args.host.clone().unwrap_or_else(settings::hostname);
    let path_names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let parent = find_parent(&repo, args, &host, &path_names)?;

    let options = BackupOptions { reread_all: args.force, ..BackupOptions::new(excludes, ChunkParams::FILES) };
    // With --json the summary goes to stdout; warnings still go to stderr.
    let progress = Progress::new(global.quiet || args.json, global.quiet, None);
    let writer = repo.writer(WriterOptions {
        compression: args.compression.or(target.compression).unwrap_or(DEFAULT_COMPRESSION),
        ..WriterOptions::default()
    });
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
    outln!("snapshot {} saved", id.short())?;
    outln!("files:    {} new, {} changed, {} unchanged", s.files_new, s.files_changed, s.files_unchanged)?;
    outln!("dirs:     {}", s.dirs)?;
    outln!(
        "data:     {} in total, {} read, {} added to the repository (after dedup and compression)",
        output::bytes(s.total_bytes),
        output::bytes(s.bytes_read),
        output::bytes(s.bytes_added)
    )?;
    if s.errors > 0 {
        outln!("errors:   {} item(s) could not be read", s.errors)?;
    }
    outln!("duration: {}", output::duration(snap.duration_secs))?;
    Ok(())
}
