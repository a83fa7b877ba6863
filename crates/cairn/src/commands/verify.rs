//! `cairn verify [SNAPSHOT]`: the restore drill. Every source of the snapshot is restored
//! into a scratch target (a temp folder, a temp SQLite file, a temp database on the same
//! server) and proven against what was recorded at backup time; the targets are dropped,
//! also on SIGINT/SIGTERM. The result is stored in the repository as a verification record
//! (snapshots stay immutable), which `cairn snapshots` shows.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use cairn_repo::verification::{SourceVerification, Verification, VERIFICATION_VERSION};
use cairn_repo::{Repository, Snapshot, SourceEntry};
use cairn_sources::verify::{scratch, Verdict};
use cairn_sources::SourceError;
use serde_json::json;

use crate::cli::{Global, VerifyArgs};
use crate::config::Config;
use crate::output;
use crate::settings;
use crate::sources::Adapter;

pub fn run(global: &Global, args: &VerifyArgs) -> Result<()> {
    let started = Instant::now();
    let config = settings::config(global)?;
    let target = settings::repo_target(global, config.as_ref())?;
    let repo = settings::open_target(global, &target)?;
    let spec = if args.latest { "latest" } else { args.snapshot.as_deref().unwrap_or("latest") };
    let (id, snap) = super::find_snapshot(&repo, spec, args.job.as_deref())?;
    let chosen: Vec<&SourceEntry> =
        snap.sources.iter().filter(|s| args.source.as_ref().is_none_or(|n| &s.name == n)).collect();
    if chosen.is_empty() {
        let names: Vec<_> = snap.sources.iter().map(|s| s.name.as_str()).collect();
        bail!("snapshot {} has no source {:?}\nhint: it has: {}", id.short(), args.source, names.join(", "));
    }
    drop_scratch_targets_on_signals()?;
    let scratch_root = args.scratch_dir.clone().unwrap_or_else(std::env::temp_dir);

    let mut results = Vec::new();
    for source in chosen {
        if !global.quiet && !args.json {
            eprintln!("verifying {} ({})…", source.name, source.kind);
        }
        let verdict = verify_source(&repo, config.as_ref(), &snap, source, &scratch_root);
        results.push(match verdict {
            Ok(v) => SourceVerification {
                name: source.name.clone(),
                kind: source.kind.clone(),
                ok: v.ok(),
                restore_secs: v.restore_secs,
                checks: v.checks,
                problems: v.problems,
            },
            Err(e) => SourceVerification {
                name: source.name.clone(),
                kind: source.kind.clone(),
                ok: false,
                restore_secs: 0.0,
                checks: 0,
                problems: vec![crate::exit::message(&e)],
            },
        });
    }
    let record = Verification {
        version: VERIFICATION_VERSION,
        snapshot: id,
        time: chrono::Local::now().fixed_offset(),
        host: settings::hostname(),
        ok: results.iter().all(|r| r.ok),
        duration_secs: started.elapsed().as_secs_f64(),
        sources: results,
        program: format!("cairn {}", env!("CARGO_PKG_VERSION")),
    };
    repo.save_verification(&record)?;
    report(global, args, &record)?;
    if !record.ok {
        let failed: Vec<&str> = record.sources.iter().filter(|s| !s.ok).map(|s| s.name.as_str()).collect();
        bail!(
            "snapshot {} did NOT verify: {} failed (see above)\nhint: `cairn check --read-data` looks for damage in the repository",
            id.short(),
            failed.join(", ")
        );
    }
    Ok(())
}

/// Restore one source into a scratch target and prove it.
fn verify_source(
    repo: &Repository,
    config: Option<&Config>,
    snap: &Snapshot,
    source: &SourceEntry,
    scratch_root: &Path,
) -> Result<Verdict> {
    let Some(root) = source.root else {
        bail!(
            "nothing was captured: the backup of this source failed ({})",
            source.error.as_deref().unwrap_or("unknown")
        );
    };
    let result: Result<Verdict, SourceError> = match source.kind.as_str() {
        "files" | "sqlite" => {
            let dir = ScratchDir::new(scratch_root)?;
            if source.kind == "files" {
                cairn_sources::files::verify(repo, root, source.chunking, &dir.path)
            } else {
                cairn_sources::sqlite::verify(repo, source, &dir.path)
            }
        }
        "postgres" | "mysql" => match super::restore::server_adapter(config, snap, source)? {
            Adapter::Postgres(pg) => pg.verify(repo, source),
            Adapter::Mysql(my) => my.verify(repo, source),
            _ => unreachable!("server_adapter returns server adapters only"),
        },
        other => bail!("cannot verify a source of kind {other:?} with this version of cairn"),
    };
    Ok(result?)
}

/// A scratch directory, removed when dropped or when the run is interrupted.
struct ScratchDir {
    path: PathBuf,
    _guard: scratch::Guard,
}

impl ScratchDir {
    fn new(root: &Path) -> Result<ScratchDir> {
        let dir = tempfile::Builder::new().prefix("cairn-verify-").tempdir_in(root).map_err(|e| {
            anyhow::anyhow!(
                "cannot create a scratch directory in {}: {e}\nhint: choose another with --scratch-dir",
                root.display()
            )
        })?;
        let path = dir.keep();
        let removed = path.clone();
        let guard = scratch::register(&path.display().to_string(), move || match std::fs::remove_dir_all(&removed) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
            _ => Ok(()),
        });
        Ok(ScratchDir { path, _guard: guard })
    }
}

/// On SIGINT/SIGTERM/SIGHUP, drop every scratch target that exists, then exit.
fn drop_scratch_targets_on_signals() -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            for (what, dropped) in scratch::cleanup_all() {
                match dropped {
                    Ok(()) => eprintln!("interrupted: dropped the scratch target {what}"),
                    Err(e) => eprintln!(
                        "interrupted: could NOT drop the scratch target {what}: {e}\n\
                         hint: it holds only a verification copy; remove it by hand"
                    ),
                }
            }
            std::process::exit(128 + signal);
        }
    });
    Ok(())
}

fn report(global: &Global, args: &VerifyArgs, v: &Verification) -> Result<()> {
    if args.json {
        let mut value = serde_json::to_value(v)?;
        value["snapshot_short"] = json!(v.snapshot.short());
        return super::print_json(&value);
    }
    for s in &v.sources {
        if s.ok {
            outln!(
                "{:<14} {:<9} ok      {} checks, restored in {}",
                s.name,
                s.kind,
                s.checks,
                output::duration(s.restore_secs)
            )?;
        } else {
            outln!("{:<14} {:<9} FAILED", s.name, s.kind)?;
            for p in &s.problems {
                outln!("    {}", p.replace('\n', "\n    "))?;
            }
        }
    }
    if !global.quiet && v.ok {
        outln!(
            "snapshot {} verified: every source restored and matched what was recorded (full restore took {})",
            v.snapshot.short(),
            output::duration(v.sources.iter().map(|s| s.restore_secs).sum())
        )?;
    }
    Ok(())
}
