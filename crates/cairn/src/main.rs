//! The `cairn` command.
//!
//! `main` parses the command line, runs one command and turns its result into an exit code
//! (see [`exit`]). Commands live in `commands/`, one file each.

mod cli;
mod commands;
mod env;
mod exit;
mod output;
mod settings;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { exit::OK });
        }
    };
    match commands::run(cli) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(err) => {
            let (code, hint) = exit::classify(&err);
            if is_broken_pipe(&err) {
                return ExitCode::from(exit::OK);
            }
            eprintln!("error: {err:#}");
            if let Some(hint) = hint {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(code)
        }
    }
}

/// Output piped into `head` that closed early is not a failure.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}
