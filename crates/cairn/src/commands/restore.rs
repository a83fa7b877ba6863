//! `cairn restore SNAPSHOT --to DIR`: restore a snapshot's files.

use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use cairn_sources::files::{self, Patterns, RestoreOptions};
use serde_json::json;

use crate::cli::{Global, RestoreArgs};
use crate::exit::Partial;
use crate::output::{self, Progress};
use crate::settings;

pub fn run(global: &Global, args: &RestoreArgs) -> Result<()> {
    let started = Instant::now();
    let Some(target) = &args.to else {
        bail!("restore needs a target directory\nhint: pass --to DIR (files are never restored over their originals implicitly)");
    };
    if target.read_dir().is_ok_and(|mut d| d.next().is_some()) && !args.yes {
        bail!(
            "{} is not empty; restoring there would replace files in it\nhint: choose an empty directory, or pass --yes to restore into it anyway",
            target.display()
        );
    }
    let repo = settings::open(global)?;
    let (id, snap) = repo.find_snapshot(&args.snapshot)?;
    let source = match &args.source {
        Some(name) => snap.sources.iter().find(|s| &s.name == name).ok_or_else(|| {
            let names: Vec<_> = snap.sources.iter().map(|s| s.name.as_str()).collect();
            anyhow!("snapshot {} has no source {name:?}\nhint: it has: {}", id.short(), names.join(", "))
        })?,
        None => match snap.sources.as_slice() {
            [one] => one,
            _ => bail!("snapshot {} has several sources\nhint: choose one with --source NAME", id.short()),
        },
    };
    let Some(root) = source.root else {
        bail!(
            "source {} of snapshot {} holds no data (it failed at backup time: {})",
            source.name,
            id.short(),
            source.error.as_deref().unwrap_or("unknown")
        );
    };
    let options = RestoreOptions { include: Patterns::new(&args.includes, &[])?, ..RestoreOptions::default() };
    let total = (args.includes.is_empty()).then_some(source.stats.total_bytes);
    let progress = Progress::new(global.quiet || args.json, global.quiet, total);
    let outcome = files::restore(&repo, root, target, &options, &progress);
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
        println!(
            "restored snapshot {} to {}: {} files, {} dirs, {} symlinks, {} in {}",
            id.short(),
            target.display(),
            outcome.files,
            outcome.dirs,
            outcome.symlinks,
            output::bytes(outcome.bytes),
            output::duration(secs)
        );
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
