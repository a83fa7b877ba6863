//! One module per command; [`run`] dispatches.

mod backup;
mod check;
mod init;
mod key;
mod ls;
mod restore;
mod snapshots;

use anyhow::Result;

use crate::cli::{Cli, Command};

pub fn run(cli: Cli) -> Result<()> {
    let g = &cli.global;
    match cli.command {
        Command::Init(args) => init::run(g, &args),
        Command::Backup(args) => backup::run(g, &args),
        Command::Snapshots(args) => snapshots::run(g, &args),
        Command::Ls(args) => ls::run(g, &args),
        Command::Restore(args) => restore::run(g, &args),
        Command::Check(args) => check::run(g, &args),
        Command::Key(cmd) => key::run(g, cmd),
    }
}

/// Print JSON to stdout.
fn print_json(value: &impl serde::Serialize) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}
