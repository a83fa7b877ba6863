//! Human-facing output: sizes, durations, tables, and progress on a terminal.
//!
//! Data goes to stdout; progress, warnings and errors to stderr. Progress bars appear only
//! when stderr is a terminal and `CAIRN_NO_PROGRESS` is unset.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::env;

/// Set once a write to stdout found the reader gone.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Write to stdout (for [`out!`] and [`outln!`]). Once the reader is gone (`cairn ls | head`),
/// output is dropped quietly and the command goes on, so its exit code is still its own
/// outcome's: a failed check or backup piped into `head` still fails.
pub fn stdout(args: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    use std::io::Write;
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return Ok(());
    }
    match std::io::stdout().lock().write_fmt(args) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
            Ok(())
        }
        other => other,
    }
}

/// The reader of stdout is gone: a command that only lists things may stop early.
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// `1.5 GiB`, `12.0 MiB`, `512 B`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `0.42s`, `3m 05s`.
pub fn duration(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.2}s")
    } else {
        let s = secs.round() as u64;
        format!("{}m {:02}s", s / 60, s % 60)
    }
}

/// A span of time in its two largest units: `45s`, `4m 10s`, `5h 02m`, `3d 04h`.
pub fn span(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        s => format!("{}d {:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Live progress of a long operation: a bar on a terminal, nothing otherwise.
pub struct Progress {
    bar: Option<ProgressBar>,
    items: AtomicU64,
    /// Warnings are not printed either.
    quiet: bool,
}

impl Progress {
    /// `total` bytes if known (restore), else a spinner with counts (backup). `no_bar` hides
    /// the bar; `quiet` hides warnings too.
    pub fn new(no_bar: bool, quiet: bool, total: Option<u64>) -> Progress {
        let show = !no_bar && !quiet && std::io::stderr().is_terminal() && env::get(env::NO_PROGRESS).is_none();
        let bar = show.then(|| {
            let bar = match total {
                Some(t) => ProgressBar::new(t).with_style(
                    ProgressStyle::with_template(
                        "{elapsed_precise} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                ),
                None => ProgressBar::new_spinner().with_style(
                    ProgressStyle::with_template("{spinner} {elapsed_precise} {bytes} read, {bytes_per_sec} {msg}")
                        .expect("valid template"),
                ),
            };
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress { bar, items: AtomicU64::new(0), quiet }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl cairn_sources::files::Progress for Progress {
    fn bytes(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    fn item(&self) {
        let n = self.items.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(bar) = &self.bar {
            if n % 256 == 0 {
                bar.set_message(format!("{n} items"));
            }
        }
    }

    fn warning(&self, message: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("warning: {message}")),
            None => eprintln!("warning: {message}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_show_two_units() {
        assert_eq!(span(45), "45s");
        assert_eq!(span(250), "4m 10s");
        assert_eq!(span(5 * 3600 + 120), "5h 02m");
        assert_eq!(span(3 * 86_400 + 4 * 3600 + 59), "3d 04h");
    }
}
