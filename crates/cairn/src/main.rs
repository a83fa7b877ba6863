//! The `cairn` command.
//!
//! `main` parses the command line, runs one command and turns its result into an exit code
//! (see [`exit`]). Commands live in `commands/`, one file each.

/// `print!` that returns the write's error instead of panicking; a closed pipe is not an
/// error (see [`output::stdout`]). Use with `?`.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::stdout(format_args!($($arg)*))
    };
}

/// `println!` that returns the write's error instead of panicking; see [`out!`].
macro_rules! outln {
    () => {
        $crate::output::stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

mod cli;
mod commands;
mod config;
mod daemon;
mod env;
mod exit;
mod health;
mod history;
mod jobs;
mod logging;
mod notify;
mod output;
mod runs;
mod schedule;
mod settings;
mod sources;
mod units;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    tune_allocator();
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
            eprintln!("error: {}", exit::message(&err));
            if let Some(hint) = hint {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(code)
        }
    }
}

/// Make glibc return freed chunk buffers to the system at once.
///
/// glibc raises its mmap threshold each time a large block is freed, after which blocks of
/// chunk size (256 KiB to 4 MiB) are kept in per-thread arenas: peak memory of a backup grew
/// 3x that way. A fixed threshold keeps memory at what is live.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn tune_allocator() {
    // SAFETY: mallopt only changes allocator parameters; it is called before any other
    // thread exists, and a failure (return value 0) just leaves the defaults in place.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}
