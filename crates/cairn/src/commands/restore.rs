//! `cairn restore SNAPSHOT`: restore one source of a snapshot — folders into a directory,
//! databases into their server or file (the original, or another with `--to`), or any
//! source's captured streams as plain files (`--raw`).

use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use cairn_repo::{Id, Repository, Snapshot, SourceEntry, SourceStatus, WriterOptions};
use cairn_sources::files::{self, Patterns, RestoreOptions};
use cairn_sources::{Capture, CaptureContext, RestoreRequest, SafetyCopy, SourceError};
use serde_json::json;

use crate::cli::{Global, RestoreArgs};
use crate::config::Config;
use crate::exit::Partial;
use crate::output::{self, Progress};
use crate::settings;
use crate::sources::{self, Adapter};

pub fn run(global: &Global, args: &RestoreArgs) -> Result<()> {
    let config = settings::config(global)?;
    let target = settings::repo_target(global, config.as_ref())?;
    let repo = settings::open_target(global, &target)?;
    let (id, snap) = super::find_snapshot(&repo, &args.snapshot, args.job.as_deref())?;
    let source = pick_source(&id, &snap, args)?;
    if source.root.is_none() {
        bail!(
            "source {} of snapshot {} holds no data (it failed at backup time: {})",
            source.name,
            id.short(),
            source.error.as_deref().unwrap_or("unknown")
        );
    }
    if args.raw || source.kind == "files" {
        if !args.tables.is_empty() || !args.databases.is_empty() {
            bail!("--table and --database apply to database sources\nhint: use --include PATTERN to choose files");
        }
        let Some(to) = &args.to else {
            bail!("restore needs a target directory\nhint: pass --to DIR (files are never restored over their originals implicitly)");
        };
        return restore_files(global, args, &repo, (&id, source), Path::new(to));
    }
    if !args.includes.is_empty() {
        bail!(
            "--include chooses files; source {} is a {} database\nhint: use --table NAME to choose tables",
            source.name,
            source.kind
        );
    }
    restore_database(global, args, config.as_ref(), (&repo, target.compression), (&id, &snap), source)
}

/// The source to restore: `--source`, or the only one.
fn pick_source<'s>(id: &Id, snap: &'s Snapshot, args: &RestoreArgs) -> Result<&'s SourceEntry> {
    Ok(match &args.source {
        Some(name) => snap.sources.iter().find(|s| &s.name == name).ok_or_else(|| {
            let names: Vec<_> = snap.sources.iter().map(|s| s.name.as_str()).collect();
            anyhow!("snapshot {} has no source {name:?}\nhint: it has: {}", id.short(), names.join(", "))
        })?,
        None => match snap.sources.as_slice() {
            [one] => one,
            _ => {
                let names: Vec<_> = snap.sources.iter().map(|s| s.name.as_str()).collect();
                bail!(
                    "snapshot {} has several sources\nhint: choose one with --source NAME ({})",
                    id.short(),
                    names.join(", ")
                )
            }
        },
    })
}

/// Restore a folder source (or any source's raw streams) into a directory.
fn restore_files(
    global: &Global,
    args: &RestoreArgs,
    repo: &Repository,
    (id, source): (&Id, &SourceEntry),
    target: &Path,
) -> Result<()> {
    let started = Instant::now();
    let root = source.root.expect("checked by the caller");
    if target.read_dir().is_ok_and(|mut d| d.next().is_some()) && !args.yes {
        bail!(
            "{} is not empty; restoring there would replace files in it\nhint: choose an empty directory, or pass --yes to restore into it anyway",
            target.display()
        );
    }
    let options = RestoreOptions { include: Patterns::new(&args.includes, &[])?, ..RestoreOptions::default() };
    let total = (args.includes.is_empty()).then_some(source.stats.total_bytes);
    let progress = Progress::new(global.quiet || args.json, global.quiet, total);
    let outcome = files::restore(repo, root, target, &options, &progress);
    progress.finish();
    let outcome = outcome?;
    let secs = started.elapsed().as_secs_f64();
    if !args.includes.is_empty() && outcome.files + outcome.dirs + outcome.symlinks == 0 {
        bail!(
            "nothing in snapshot {} matches {}\nhint: patterns match paths as `cairn ls` shows them, without the leading /, e.g. 'app/data/*.csv'",
            id.short(),
            args.includes.join(", ")
        );
    }
    if args.json {
        super::print_json(&json!({
            "snapshot": id.to_hex(), "files": outcome.files, "dirs": outcome.dirs, "symlinks": outcome.symlinks,
            "bytes": outcome.bytes, "damaged": outcome.damaged, "warnings": outcome.warnings, "duration_secs": secs,
        }))?;
    } else if !global.quiet {
        for w in &outcome.warnings {
            eprintln!("warning: {w}");
        }
        outln!(
            "restored snapshot {} to {}: {} files, {} dirs, {} symlinks, {} in {}",
            id.short(),
            target.display(),
            outcome.files,
            outcome.dirs,
            outcome.symlinks,
            output::bytes(outcome.bytes),
            output::duration(secs)
        )?;
    }
    if !outcome.damaged.is_empty() {
        for path in &outcome.damaged {
            eprintln!("damaged, not restored: {path}");
        }
        return Err(Partial(format!(
            "{} file(s) could not be restored because their data is damaged; everything else was restored\nhint: `cairn check --read-data` shows the damage",
            outcome.damaged.len()
        ))
        .into());
    }
    if !outcome.warnings.is_empty() {
        return Err(
            Partial(format!("{} entries could not be restored fully (see warnings)", outcome.warnings.len())).into()
        );
    }
    Ok(())
}

/// Restore a database source into its server or file.
fn restore_database(
    global: &Global,
    args: &RestoreArgs,
    config: Option<&Config>,
    (repo, compression): (&Repository, Option<i32>),
    (id, snap): (&Id, &Snapshot),
    source: &SourceEntry,
) -> Result<()> {
    let started = Instant::now();
    let progress = Progress::new(global.quiet || args.json, global.quiet, None);
    let safety = PreRestore { repo, snap, source, compression: compression.unwrap_or(2) };
    let request = RestoreRequest {
        repo,
        entry: source,
        to: args.to.clone(),
        databases: args.databases.clone(),
        tables: args.tables.clone(),
        yes: args.yes,
        safety: &safety,
        progress: &progress,
    };
    let report = match source.kind.as_str() {
        "sqlite" => {
            if !args.databases.is_empty() {
                bail!("--database applies to server sources; {} is a SQLite file", source.name);
            }
            cairn_sources::sqlite::restore(&request)
        }
        "postgres" | "mysql" => match server_adapter(config, snap, source)? {
            Adapter::Postgres(pg) => pg.restore(&request),
            Adapter::Mysql(my) => my.restore(&request),
            _ => unreachable!("server_adapter returns server adapters only"),
        },
        other => bail!("cannot restore a source of kind {other:?} with this version of cairn\nhint: --raw --to DIR extracts its captured files"),
    };
    progress.finish();
    let report = report.with_context(|| format!("restoring source {} of snapshot {}", source.name, id.short()))?;
    if args.json {
        return super::print_json(&json!({
            "snapshot": id.to_hex(), "source": source.name, "restored": report.restored,
            "safety_copies": report.safety_copies, "warnings": report.warnings,
            "duration_secs": started.elapsed().as_secs_f64(),
        }));
    }
    if !global.quiet {
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
        for copy in &report.safety_copies {
            outln!("safety copy: {copy}")?;
        }
        for line in &report.restored {
            outln!("restored {line}")?;
        }
        outln!(
            "restored source {} of snapshot {} in {}",
            source.name,
            id.short(),
            output::duration(started.elapsed().as_secs_f64())
        )?;
    }
    if !report.warnings.is_empty() {
        return Err(Partial(format!("{} warning(s) while restoring (see above)", report.warnings.len())).into());
    }
    Ok(())
}

/// The connection settings of a server source come from the config file: the snapshot
/// records what was captured, never how to log in.
pub(super) fn server_adapter(config: Option<&Config>, snap: &Snapshot, source: &SourceEntry) -> Result<Adapter> {
    let hint = format!(
        "restoring a {} source needs its connection settings from the config file (job {:?}, source {:?}); \
         `--raw --to DIR` extracts the dump files without them",
        source.kind,
        snap.job.as_deref().unwrap_or("-"),
        source.name
    );
    let Some(config) = config else { bail!("no config file found\nhint: {hint}") };
    let configured = snap
        .job
        .as_deref()
        .and_then(|j| config.file.jobs.get(j))
        .and_then(|job| job.sources.iter().find(|s| s.name() == source.name && s.kind.name() == source.kind));
    let Some(configured) = configured else {
        bail!(
            "{} has no {} source {:?} in job {:?}\nhint: {hint}",
            config.path.display(),
            source.kind,
            source.name,
            snap.job.as_deref().unwrap_or("-")
        );
    };
    sources::adapter(config, configured)
}

/// Keeps a copy of live data a restore is about to replace: a snapshot of the same job and
/// source, tagged `pre-restore`.
struct PreRestore<'a> {
    repo: &'a Repository,
    snap: &'a Snapshot,
    source: &'a SourceEntry,
    compression: i32,
}

impl SafetyCopy for PreRestore<'_> {
    fn save(
        &self,
        capture: &mut dyn FnMut(&CaptureContext<'_, '_>) -> Result<Capture, SourceError>,
    ) -> Result<String, SourceError> {
        let started = Instant::now();
        let writer = self.repo.writer(WriterOptions { compression: self.compression, ..WriterOptions::default() });
        let ctx = CaptureContext { repo: self.repo, writer: &writer, chunking: self.source.chunking, progress: &() };
        let captured = capture(&ctx).map_err(|e| e.context("saving a safety copy before the restore"))?;
        let totals = writer.finish()?;
        let mut stats = captured.stats;
        stats.bytes_added = totals.bytes_stored;
        stats.blobs_added = totals.blobs_new;
        let snapshot = Snapshot {
            version: cairn_repo::snapshot::SNAPSHOT_VERSION,
            time: chrono::Local::now().fixed_offset(),
            host: settings::hostname(),
            username: std::env::var("USER").unwrap_or_default(),
            job: self.snap.job.clone(),
            tags: vec![super::PRE_RESTORE.to_string()],
            paths: vec![self.source.name.clone()],
            parent: None,
            sources: vec![SourceEntry {
                name: self.source.name.clone(),
                kind: self.source.kind.clone(),
                status: SourceStatus::Ok,
                error: None,
                root: Some(captured.root),
                chunking: self.source.chunking,
                metadata: captured.metadata,
                stats,
                warnings: captured.warnings,
            }],
            duration_secs: started.elapsed().as_secs_f64(),
            program: format!("cairn {}", env!("CARGO_PKG_VERSION")),
        };
        let id = self.repo.save_snapshot(&snapshot)?;
        Ok(format!("snapshot {} (tagged pre-restore)", id.short()))
    }
}
