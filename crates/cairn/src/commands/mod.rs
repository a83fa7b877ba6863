//! One module per command; [`run`] dispatches.

mod backup;
mod check;
mod config;
mod daemon;
mod diff;
pub mod forget;
mod history;
mod init;
mod key;
mod ls;
mod prune;
mod restore;
pub mod schedule;
mod show;
mod snapshots;
mod status;
mod verify;

use anyhow::Result;
use cairn_repo::{Id, Repository, Snapshot};

use crate::cli::{Cli, Command};

pub fn run(cli: Cli) -> Result<()> {
    let g = &cli.global;
    match cli.command {
        Command::Init(args) => init::run(g, &args),
        Command::Backup(args) => backup::run(g, &args),
        Command::Snapshots(args) => snapshots::run(g, &args),
        Command::Ls(args) => ls::run(g, &args),
        Command::Diff(args) => diff::run(g, &args),
        Command::Restore(args) => restore::run(g, &args),
        Command::Check(args) => check::run(g, &args),
        Command::Forget(args) => forget::run(g, &args),
        Command::Verify(args) => verify::run(g, &args),
        Command::Prune(args) => prune::run(g, &args),
        Command::Key(cmd) => key::run(g, cmd),
        Command::Show(args) => show::run(g, &args),
        Command::Config(cmd) => config::run(g, &cmd),
        Command::History(args) => history::run(g, &args),
        Command::Status(args) => status::run(g, &args),
        Command::Schedule(cmd) => schedule::run(g, &cmd),
        Command::Daemon(args) => daemon::run(g, &args),
        Command::RunNow(args) => daemon::run_now(g, &args),
    }
}

/// A snapshot by id prefix or `latest`; with `job`, only that job's snapshots are candidates.
/// `latest` never names a safety copy taken by a restore (tag `pre-restore`): restoring
/// "latest" twice must restore the same backup; safety copies are named by their id.
fn find_snapshot(repo: &Repository, spec: &str, job: Option<&str>) -> Result<(Id, Snapshot)> {
    let candidates: Vec<_> = repo
        .snapshots()?
        .into_iter()
        .filter(|(_, s)| job.is_none_or(|j| s.job.as_deref() == Some(j)))
        .filter(|(_, s)| spec != "latest" || !s.tags.iter().any(|t| t == PRE_RESTORE))
        .collect();
    if let (Some(job), true) = (job, candidates.is_empty()) {
        anyhow::bail!(
            "no snapshot of job {job:?} in this repository\nhint: `cairn snapshots` lists them with their jobs"
        );
    }
    Ok(Repository::resolve(&candidates, spec)?)
}

/// The tag of safety copies a restore takes before replacing live data.
pub const PRE_RESTORE: &str = "pre-restore";

/// Print JSON to stdout.
fn print_json(value: &impl serde::Serialize) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?)?;
    Ok(())
}
