//! Logs of long-running cairn (the daemon): structured lines to stderr and, when
//! `[daemon] log.dir` is set, to log files rotated daily or monthly.
//!
//! A line is a timestamp (local time with its offset), the level, the message and the
//! event's fields as `key=value`:
//!
//! ```text
//! 2027-01-31T02:00:04.113+01:00  INFO run finished job=app trigger=schedule outcome=success
//! ```
//!
//! Code logs with the `tracing` macros (`tracing::info!(job, outcome = "success", "run
//! finished")`). `tracing` rather than a hand-written logger because the daemon's HTTP server
//! and async runtime report through it too: one subscriber sees their events and ours, with
//! typed fields and spans, and without a subscriber (every other command) an event costs a
//! branch. The files are written by [`RotatingWriter`], ours because `tracing-appender`
//! rotates daily but not monthly.
//!
//! Only [`init`] installs the subscriber; the other commands keep their own output on
//! stdout/stderr and never call it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use chrono::{DateTime, FixedOffset, Local, SecondsFormat};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{Config, LogLevel, Rotation};
use crate::env;

/// Log files kept when `keep` is not set.
pub const DEFAULT_KEEP: u32 = 14;

/// The current local time; injected in tests.
pub type Clock = Arc<dyn Fn() -> DateTime<FixedOffset> + Send + Sync>;

fn local_clock() -> Clock {
    Arc::new(|| Local::now().fixed_offset())
}

/// Install the global log subscriber: level from `[daemon] log.level` (default info;
/// `verbose` makes it debug), lines to stderr (coloured only on a terminal without
/// `NO_COLOR`), and to files in `log.dir` when it is set. Fails when the log directory
/// cannot be created, or when a subscriber is already installed.
#[allow(dead_code, reason = "the daemon calls it")]
pub fn init(config: Option<&Config>, verbose: bool) -> Result<()> {
    use std::io::IsTerminal;
    let log = config.and_then(|c| c.file.daemon.as_ref()).and_then(|d| d.log.as_ref());
    let level = if verbose { LogLevel::Debug } else { log.and_then(|l| l.level).unwrap_or(LogLevel::Info) };
    let colour = std::io::stderr().is_terminal() && env::get(env::NO_COLOR).is_none();
    let stderr = line_layer(std::io::stderr, colour, local_clock());
    let files = match (config, log.and_then(|l| l.dir.as_ref())) {
        (Some(config), Some(dir)) => {
            let log = log.expect("dir is inside log");
            let writer = RotatingWriter::new(
                &config.path(&dir.0),
                log.rotation.unwrap_or(Rotation::Daily),
                log.keep.unwrap_or(DEFAULT_KEEP),
                local_clock(),
            )?;
            Some(line_layer(writer, false, local_clock()))
        }
        _ => None,
    };
    tracing_subscriber::registry()
        .with(level_filter(level))
        .with(stderr)
        .with(files)
        .try_init()
        .context("installing the log subscriber")?;
    Ok(())
}

fn level_filter(level: LogLevel) -> tracing_subscriber::filter::LevelFilter {
    use tracing_subscriber::filter::LevelFilter;
    match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
    }
}

/// One formatting layer: our timestamp, no module path, fields as `key=value`.
fn line_layer<S, W>(writer: W, colour: bool, clock: Clock) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(colour)
        .with_target(false)
        .with_timer(Timestamp(clock))
}

/// RFC 3339 local time with milliseconds and the offset: readable, sortable, unambiguous.
struct Timestamp(Clock);

impl FormatTime for Timestamp {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        write!(w, "{}", (self.0)().to_rfc3339_opts(SecondsFormat::Millis, false))
    }
}

/// Log files `cairn-YYYY-MM-DD.log` (daily) or `cairn-YYYY-MM.log` (monthly) in one
/// directory, by local time. A new period opens a new file and deletes the oldest files of
/// the same rotation beyond the newest `keep` (the current one included). Each event is
/// one `write` of a whole line, under a lock, so lines never interleave.
pub struct RotatingWriter {
    dir: PathBuf,
    rotation: Rotation,
    keep: usize,
    clock: Clock,
    /// The file being written and its name.
    current: Mutex<Option<(String, File)>>,
}

impl RotatingWriter {
    /// Creates `dir` if needed; `keep` is at least 1 (the file being written).
    pub fn new(dir: &Path, rotation: Rotation, keep: u32, clock: Clock) -> Result<RotatingWriter> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating the log directory {}", dir.display()))?;
        Ok(RotatingWriter {
            dir: dir.to_path_buf(),
            rotation,
            keep: keep.max(1) as usize,
            clock,
            current: Mutex::new(None),
        })
    }

    /// The file name for a time.
    pub fn file_name(&self, at: DateTime<FixedOffset>) -> String {
        match self.rotation {
            Rotation::Daily => at.format("cairn-%Y-%m-%d.log").to_string(),
            Rotation::Monthly => at.format("cairn-%Y-%m.log").to_string(),
        }
    }

    /// Is `name` a log file of this rotation?
    fn is_ours(&self, name: &str) -> bool {
        let Some(date) = name.strip_prefix("cairn-").and_then(|n| n.strip_suffix(".log")) else { return false };
        let shape: &[usize] = match self.rotation {
            Rotation::Daily => &[4, 2, 2],
            Rotation::Monthly => &[4, 2],
        };
        let parts: Vec<&str> = date.split('-').collect();
        parts.len() == shape.len()
            && parts.iter().zip(shape).all(|(p, n)| p.len() == *n && p.bytes().all(|b| b.is_ascii_digit()))
    }

    /// Write one line to the file of the current period, opening it first when the period
    /// changed.
    fn write_line(&self, line: &[u8]) -> io::Result<()> {
        let name = self.file_name((self.clock)());
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_none_or(|(open, _)| *open != name) {
            let file = OpenOptions::new().create(true).append(true).open(self.dir.join(&name))?;
            *current = Some((name.clone(), file));
            // Old files go when a new one starts; a failure here must not lose the line.
            let _ = self.remove_old();
        }
        let (_, file) = current.as_mut().expect("opened above");
        file.write_all(line)
    }

    /// Delete this rotation's files beyond the newest `keep`. Names sort by date.
    fn remove_old(&self) -> io::Result<()> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| self.is_ours(n))
            .collect();
        names.sort();
        let excess = names.len().saturating_sub(self.keep);
        for name in &names[..excess] {
            std::fs::remove_file(self.dir.join(name))?;
        }
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for RotatingWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter(self)
    }
}

/// What the formatting layer writes one event into.
pub struct LineWriter<'a>(&'a RotatingWriter);

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_line(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use chrono::TimeZone;

    use super::*;

    /// A clock at `secs` (shared, so the test can move it) in UTC+1.
    fn clock(secs: &Arc<AtomicI64>) -> Clock {
        let secs = secs.clone();
        Arc::new(move || FixedOffset::east_opt(3600).unwrap().timestamp_opt(secs.load(Ordering::SeqCst), 0).unwrap())
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    }

    const DAY: i64 = 86_400;
    /// 2027-01-30T23:30:00+01:00
    const START: i64 = 1_801_348_200;

    #[test]
    fn daily_files_rotate_at_local_midnight_and_keep_n() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("unrelated.txt"), "mine").unwrap();
        std::fs::write(dir.path().join("cairn-2027-01.log"), "a monthly file").unwrap();
        let now = Arc::new(AtomicI64::new(START));
        let w = RotatingWriter::new(dir.path(), Rotation::Daily, 3, clock(&now)).unwrap();
        let line = |text: &str| w.make_writer().write_all(text.as_bytes()).unwrap();
        line("one\n");
        line("two\n");
        assert_eq!(std::fs::read_to_string(dir.path().join("cairn-2027-01-30.log")).unwrap(), "one\ntwo\n");
        // 31 minutes later it is the 31st in UTC+1 (still the 30th in UTC).
        now.fetch_add(31 * 60, Ordering::SeqCst);
        line("three\n");
        assert_eq!(std::fs::read_to_string(dir.path().join("cairn-2027-01-31.log")).unwrap(), "three\n");
        for _ in 0..3 {
            now.fetch_add(DAY, Ordering::SeqCst);
            line("later\n");
        }
        // The newest three daily files stay; other files are not touched.
        assert_eq!(
            files(dir.path()),
            [
                "cairn-2027-01.log",
                "cairn-2027-02-01.log",
                "cairn-2027-02-02.log",
                "cairn-2027-02-03.log",
                "unrelated.txt"
            ]
        );
    }

    #[test]
    fn monthly_files_keep_n() {
        let dir = tempfile::tempdir().unwrap();
        let now = Arc::new(AtomicI64::new(START));
        let w = RotatingWriter::new(dir.path(), Rotation::Monthly, 2, clock(&now)).unwrap();
        assert_eq!(w.file_name((w.clock)()), "cairn-2027-01.log");
        for _ in 0..4 {
            w.make_writer().write_all(b"x\n").unwrap();
            now.fetch_add(31 * DAY, Ordering::SeqCst);
        }
        // Written on Jan 30, Mar 2, Apr 2 and May 3: the newest two months stay.
        assert_eq!(files(dir.path()), ["cairn-2027-04.log", "cairn-2027-05.log"]);
        // A restart appends to the current file.
        now.fetch_sub(31 * DAY, Ordering::SeqCst);
        let again = RotatingWriter::new(dir.path(), Rotation::Monthly, 2, clock(&now)).unwrap();
        again.make_writer().write_all(b"y\n").unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("cairn-2027-05.log")).unwrap(), "x\ny\n");
    }

    #[test]
    fn keep_zero_still_keeps_the_current_file() {
        let dir = tempfile::tempdir().unwrap();
        let now = Arc::new(AtomicI64::new(START));
        let w = RotatingWriter::new(dir.path(), Rotation::Daily, 0, clock(&now)).unwrap();
        w.make_writer().write_all(b"x\n").unwrap();
        now.fetch_add(DAY, Ordering::SeqCst);
        w.make_writer().write_all(b"y\n").unwrap();
        assert_eq!(files(dir.path()), ["cairn-2027-01-31.log"]);
    }

    /// The one test that installs the global subscriber (it can be installed only once).
    #[test]
    fn init_follows_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cairn.toml");
        std::fs::write(&path, "[daemon.log]\ndir = \"logs\"\nrotation = \"monthly\"\nlevel = \"warn\"\n").unwrap();
        let config = crate::config::load(&path).unwrap();
        init(Some(&config), false).unwrap();
        tracing::info!("below the level");
        tracing::warn!(job = "app", "run failed");
        assert!(init(Some(&config), false).is_err(), "a second subscriber is refused");
        // Relative to the config file; named by the local month.
        let file = dir.path().join("logs").join(Local::now().format("cairn-%Y-%m.log").to_string());
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains(" WARN run failed job=\"app\"\n"), "{text}");
        assert!(!text.contains("below the level"), "{text}");
    }

    #[test]
    fn lines_hold_time_level_message_and_fields() {
        let dir = tempfile::tempdir().unwrap();
        let now = Arc::new(AtomicI64::new(START));
        let writer = RotatingWriter::new(dir.path(), Rotation::Daily, 3, clock(&now)).unwrap();
        let subscriber = tracing_subscriber::registry().with(level_filter(LogLevel::Info)).with(line_layer(
            writer,
            false,
            clock(&now),
        ));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(job = "app", outcome = "success", bytes = 42u64, "run finished");
            tracing::debug!("not at info level");
            tracing::warn!(error = %"disk full", "cannot write");
        });
        let text = std::fs::read_to_string(dir.path().join("cairn-2027-01-30.log")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "2027-01-30T23:30:00.000+01:00  INFO run finished job=\"app\" outcome=\"success\" bytes=42",
                "2027-01-30T23:30:00.000+01:00  WARN cannot write error=disk full",
            ]
        );
    }
}
