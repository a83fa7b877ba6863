//! `cairn check [--read-data]`: verify the repository.

use anyhow::{bail, Result};

use crate::cli::{CheckArgs, Global};
use crate::settings;

pub fn run(global: &Global, args: &CheckArgs) -> Result<()> {
    let repo = settings::open(global)?;
    let report = cairn_repo::check::check(&repo, args.read_data, &())?;
    if args.json {
        super::print_json(&report)?;
    } else {
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
        if !global.quiet {
            for n in &report.notes {
                outln!("note: {n}")?;
            }
        }
        for e in &report.errors {
            outln!("error: {e}")?;
        }
        for a in &report.affected {
            outln!("affected: snapshot {} source {} {}", a.snapshot, a.source, a.path)?;
        }
        if !global.quiet {
            let read = if args.read_data { format!(", {} packs read", report.packs_read) } else { String::new() };
            outln!(
                "checked {} snapshots, {} packs, {} blobs{read}: {}",
                report.snapshots,
                report.packs,
                report.blobs,
                if report.is_ok() { "no errors" } else { "ERRORS FOUND" }
            )?;
        }
    }
    if !report.is_ok() {
        bail!("the check found {} problem(s) in {}", report.errors.len(), repo.location());
    }
    Ok(())
}
