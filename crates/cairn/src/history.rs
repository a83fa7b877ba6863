//! The run history: every run of a job — manual, scheduled, triggered — in a small SQLite
//! database, `<state_dir>/history.db`.
//!
//! Owns: where the state directory is, the schema and its migrations, recording a run (its
//! start; its end with one result per repository and per source), telling a run still in
//! progress from one whose process died, and the queries behind `cairn history` and
//! `cairn status`. Does not own: running jobs (`jobs`), when a job is due or stale
//! (`health`), printing (`commands/`).
//!
//! **Several writers.** The daemon, a manual `cairn backup` and cron entries may write at
//! the same time. The database is in WAL mode (readers never wait for writers), every
//! connection waits up to [`BUSY_TIMEOUT`] for a lock, and every write transaction takes
//! the write lock when it begins (`BEGIN IMMEDIATE`): a transaction that read first and
//! then tried to write could fail at once with `SQLITE_BUSY` instead of waiting.
//!
//! **Interrupted runs.** A run in progress has no outcome yet; its row names the process
//! that runs it: host, pid, the kernel's boot id and the process's start time (both from
//! `/proc`). A reader that finds such a row asks whether that process still exists: same
//! host, same boot, a `/proc/PID` with the same start time. If not — killed, crashed,
//! machine rebooted — the run is shown as `interrupted`; the start time makes this exact
//! even when the pid has been reused. [`History::reap_interrupted`] writes the verdict
//! down (every [`History::record_start`] does). A run recorded on another host, or where
//! `/proc` is missing, cannot be checked and stays `running`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cairn_repo::SourceStatus;
use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, Connection, Transaction, TransactionBehavior};
use serde::Serialize;

use crate::config::Config;
use crate::env;
use crate::jobs::{JobResult, Outcome};

/// The database file inside the state directory.
pub const FILE_NAME: &str = "history.db";

/// How long a connection waits for another process's lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Where cairn keeps its state (the run history, the daemon's socket):
/// `$CAIRN_STATE_DIR`, else `[daemon] state_dir`, else `/var/lib/cairn` for root, else
/// `$XDG_STATE_HOME/cairn`, else `~/.local/state/cairn`.
///
/// Root always gets `/var/lib/cairn`, whatever its environment: a daemon started by systemd
/// and an administrator's `sudo cairn status` must find the same database.
pub fn state_dir(config: Option<&Config>) -> PathBuf {
    if let Some(dir) = env::get(env::STATE_DIR) {
        return PathBuf::from(dir);
    }
    if let Some((config, dir)) = config.and_then(|c| Some((c, c.file.daemon.as_ref()?.state_dir.as_ref()?))) {
        return config.path(&dir.0);
    }
    if is_root() {
        return PathBuf::from("/var/lib/cairn");
    }
    if let Some(xdg) = env::get("XDG_STATE_HOME") {
        return PathBuf::from(xdg).join("cairn");
    }
    match env::get("HOME") {
        Some(home) => PathBuf::from(home).join(".local/state/cairn"),
        None => PathBuf::from(".cairn-state"),
    }
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the effective user; this avoids unsafe code for geteuid().
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[allow(dead_code, reason = "the daemon records all but `manual`")]
pub enum Trigger {
    /// `cairn backup JOB` on the command line.
    Manual,
    /// The daemon, at a time of the job's `schedule`.
    Schedule,
    /// The daemon, after a change under one of the job's `watch` paths.
    Watch,
    /// The daemon at start, for a scheduled run it missed.
    CatchUp,
    /// The dashboard's or the control socket's "run now".
    RunNow,
}

impl Trigger {
    pub fn name(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Schedule => "schedule",
            Trigger::Watch => "watch",
            Trigger::CatchUp => "catch-up",
            Trigger::RunNow => "run-now",
        }
    }
}

/// How a recorded run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunOutcome {
    /// Not finished, and its process is alive (or cannot be checked).
    Running,
    Success,
    /// Something was saved, but not everything: a source failed or was captured in part,
    /// or one of several repositories failed.
    Partial,
    /// Nothing was saved.
    Failed,
    /// Its process died before the run finished.
    Interrupted,
}

impl RunOutcome {
    pub fn name(self) -> &'static str {
        match self {
            RunOutcome::Running => "running",
            RunOutcome::Success => "success",
            RunOutcome::Partial => "partial",
            RunOutcome::Failed => "failed",
            RunOutcome::Interrupted => "interrupted",
        }
    }

    /// The stored name (`None` for a run in progress).
    fn parse(text: Option<&str>) -> Result<Option<RunOutcome>> {
        Ok(Some(match text {
            None => return Ok(None),
            Some("success") => RunOutcome::Success,
            Some("partial") => RunOutcome::Partial,
            Some("failed") => RunOutcome::Failed,
            Some("interrupted") => RunOutcome::Interrupted,
            Some(other) => bail!("unknown run outcome {other:?} in the history database"),
        }))
    }
}

impl From<Outcome> for RunOutcome {
    fn from(outcome: Outcome) -> RunOutcome {
        match outcome {
            Outcome::Success => RunOutcome::Success,
            Outcome::Partial => RunOutcome::Partial,
            Outcome::Failed => RunOutcome::Failed,
        }
    }
}

/// A recorded run, as returned by start and taken by finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RunId(pub i64);

/// The process that runs a run: enough to tell later whether it is still alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub host: String,
    pub pid: u32,
    /// `/proc/sys/kernel/random/boot_id`: a reboot kills every run.
    pub boot_id: Option<String>,
    /// Start time of the process in clock ticks since boot (`/proc/PID/stat`, field 22): a
    /// reused pid has another.
    pub start_ticks: Option<u64>,
}

impl Owner {
    /// This process.
    pub fn current() -> Owner {
        let pid = std::process::id();
        Owner { host: crate::settings::hostname(), pid, boot_id: boot_id(), start_ticks: process_start(pid) }
    }

    /// Whether the process that owns a run may still be running it. Anything that cannot be
    /// checked (another host, no `/proc`) counts as alive: a live run must never be called
    /// interrupted.
    fn alive(&self, here: &Owner) -> bool {
        if self.host != here.host {
            return true;
        }
        if let (Some(then), Some(now)) = (&self.boot_id, &here.boot_id) {
            if then != now {
                return false;
            }
        }
        if here.start_ticks.is_none() {
            return true; // no /proc here: nothing to check against
        }
        match process_start(self.pid) {
            None => false,
            Some(ticks) => self.start_ticks.is_none_or(|t| t == ticks),
        }
    }
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|s| s.trim().to_string())
}

/// A process's start time from `/proc/PID/stat`; `None` when there is no such process.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// One run: a job, what started it, when, how it ended, and what it did per repository.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub id: i64,
    pub job: String,
    /// `manual`, `schedule`, `watch`, `catch-up`, `run-now` (see [`Trigger`]).
    pub trigger: String,
    pub started: DateTime<Utc>,
    /// `None` while running, and for an interrupted run.
    pub finished: Option<DateTime<Utc>>,
    pub outcome: RunOutcome,
    pub host: String,
    pub pid: u32,
    /// Over every repository and source.
    pub bytes_read: u64,
    pub bytes_added: u64,
    /// What went wrong, in one text: run-level errors, then failed sources.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// One entry per repository the run wrote to (or tried to).
    pub repositories: Vec<TargetRecord>,
}

impl Run {
    pub fn duration_secs(&self) -> Option<f64> {
        self.finished.map(|f| (f - self.started).num_milliseconds() as f64 / 1000.0)
    }

    /// The snapshots the run saved.
    pub fn snapshots(&self) -> impl Iterator<Item = &str> {
        self.repositories.iter().filter_map(|t| t.snapshot.as_deref())
    }
}

/// A run's result in one repository.
#[derive(Debug, Clone, Serialize)]
pub struct TargetRecord {
    pub repository: String,
    pub outcome: RunOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_secs: f64,
    pub sources: Vec<SourceRecord>,
}

/// One source's result in one repository.
#[derive(Debug, Clone, Serialize)]
pub struct SourceRecord {
    pub name: String,
    pub kind: String,
    /// `ok`, `partial` or `failed`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub total_bytes: u64,
    pub bytes_read: u64,
    pub bytes_added: u64,
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unchanged: u64,
    /// Items that could not be captured.
    pub errors: u64,
    pub duration_secs: f64,
}

/// Which runs [`History::runs`] returns.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub job: Option<String>,
    /// Runs started at or after this time.
    pub since: Option<DateTime<Utc>>,
    pub outcome: Option<RunOutcome>,
    /// The newest this many.
    pub limit: Option<usize>,
}

/// What `cairn status` and the daemon's stale alarm need of one job.
#[derive(Debug, Clone, Default)]
pub struct JobRuns {
    /// The newest run, finished or not.
    pub last: Option<Run>,
    /// The newest run that is not running.
    pub last_finished: Option<Run>,
    pub last_success: Option<Run>,
    /// When the job's first recorded run started.
    pub first_started: Option<DateTime<Utc>>,
}

/// Migrations, in order; the schema version is the number applied. Append, never edit.
const MIGRATIONS: &[&str] = &[
    // 1: runs, their results per repository, and per source within a repository.
    "CREATE TABLE runs (
        id          INTEGER PRIMARY KEY,
        job         TEXT    NOT NULL,
        trigger     TEXT    NOT NULL,
        started_ms  INTEGER NOT NULL,           -- Unix time, milliseconds, UTC
        finished_ms INTEGER,                    -- NULL while running or when interrupted
        outcome     TEXT,                       -- NULL while running
        host        TEXT    NOT NULL,
        pid         INTEGER NOT NULL,
        boot_id     TEXT,
        start_ticks INTEGER,
        bytes_read  INTEGER NOT NULL DEFAULT 0,
        bytes_added INTEGER NOT NULL DEFAULT 0,
        error       TEXT
    );
    CREATE INDEX runs_by_job ON runs (job, started_ms);
    CREATE INDEX runs_by_start ON runs (started_ms);
    CREATE INDEX runs_unfinished ON runs (id) WHERE outcome IS NULL;
    CREATE TABLE run_targets (
        id            INTEGER PRIMARY KEY,
        run_id        INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        repository    TEXT    NOT NULL,
        outcome       TEXT    NOT NULL,
        snapshot      TEXT,
        error         TEXT,
        duration_secs REAL    NOT NULL
    );
    CREATE INDEX run_targets_by_run ON run_targets (run_id);
    CREATE TABLE run_sources (
        id              INTEGER PRIMARY KEY,
        target_id       INTEGER NOT NULL REFERENCES run_targets (id) ON DELETE CASCADE,
        name            TEXT    NOT NULL,
        kind            TEXT    NOT NULL,
        status          TEXT    NOT NULL,
        error           TEXT,
        total_bytes     INTEGER NOT NULL,
        bytes_read      INTEGER NOT NULL,
        bytes_added     INTEGER NOT NULL,
        files_new       INTEGER NOT NULL,
        files_changed   INTEGER NOT NULL,
        files_unchanged INTEGER NOT NULL,
        errors          INTEGER NOT NULL,
        duration_secs   REAL    NOT NULL
    );
    CREATE INDEX run_sources_by_target ON run_sources (target_id);",
];

/// The columns of `runs` that [`History::run_from_row`] reads, in its order.
const RUN_COLUMNS: &str =
    "id, job, trigger, started_ms, finished_ms, outcome, host, pid, boot_id, start_ticks, bytes_read, bytes_added, error";

/// An open run history: one SQLite connection. It may move between threads but not be
/// shared by them; a thread that records runs opens its own (opening is cheap).
pub struct History {
    conn: Connection,
    path: PathBuf,
    /// This process, to tell live runs from interrupted ones.
    here: Owner,
}

impl History {
    /// Open (and create, with its directory, mode 0700) `dir/history.db`, bringing its
    /// schema up to date.
    pub fn open(dir: &Path) -> Result<History> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating the state directory {}", dir.display()))?;
        let path = dir.join(FILE_NAME);
        let conn = Connection::open(&path).with_context(|| format!("opening run history {}", path.display()))?;
        let history = History { conn, path, here: Owner::current() };
        history.prepare().with_context(|| format!("opening run history {}", history.path.display()))?;
        Ok(history)
    }

    /// Open `dir/history.db` if it exists; `None` when nothing was ever recorded there.
    pub fn open_existing(dir: &Path) -> Result<Option<History>> {
        if !dir.join(FILE_NAME).exists() {
            return Ok(None);
        }
        History::open(dir).map(Some)
    }

    /// The database file.
    #[allow(dead_code, reason = "for the daemon's messages")]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn prepare(&self) -> Result<()> {
        self.conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL is a property of the file: set once, kept by every later connection.
        let mode: String = self.conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            bail!("the database refused WAL mode (journal mode {mode})");
        }
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        self.conn.pragma_update(None, "foreign_keys", true)?;
        self.migrate()
    }

    /// Apply the migrations this database has not seen, in one transaction.
    fn migrate(&self) -> Result<()> {
        let tx = self.write()?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_version (
                version    INTEGER PRIMARY KEY,
                applied_ms INTEGER NOT NULL
            )",
        )?;
        let current: i64 = tx.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_version", [], |r| r.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if current > known {
            bail!("its schema version is {current}, newer than this cairn knows ({known})\nhint: upgrade cairn");
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            tx.execute_batch(sql).with_context(|| format!("migrating to schema version {}", i + 1))?;
            tx.execute(
                "INSERT INTO schema_version (version, applied_ms) VALUES (?1, ?2)",
                params![i as i64 + 1, Utc::now().timestamp_millis()],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// A write transaction holding the write lock from its start (see the module docs).
    fn write(&self) -> rusqlite::Result<Transaction<'_>> {
        // "Unchecked" only means on `&Connection`: no transaction of ours is ever nested.
        Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
    }

    /// The schema version of the open database.
    #[cfg(test)]
    fn schema_version(&self) -> Result<i64> {
        Ok(self.conn.query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))?)
    }

    /// Record that this process starts a run of `job` now. Also marks the runs of dead
    /// processes interrupted.
    pub fn record_start(&self, job: &str, trigger: Trigger) -> Result<RunId> {
        self.record_start_by(job, trigger, Utc::now(), &self.here)
    }

    /// [`History::record_start`] with the time and the owning process given (tests, and a
    /// daemon that records for a worker process).
    pub fn record_start_by(&self, job: &str, trigger: Trigger, at: DateTime<Utc>, owner: &Owner) -> Result<RunId> {
        self.reap_interrupted()?;
        self.conn
            .execute(
                "INSERT INTO runs (job, trigger, started_ms, host, pid, boot_id, start_ticks)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    job,
                    trigger.name(),
                    at.timestamp_millis(),
                    owner.host,
                    owner.pid,
                    owner.boot_id,
                    owner.start_ticks.map(int)
                ],
            )
            .with_context(|| format!("recording the start of job {job} in {}", self.path.display()))?;
        let id = RunId(self.conn.last_insert_rowid());
        tracing::debug!(job, trigger = trigger.name(), run = id.0, "run started");
        Ok(id)
    }

    /// Record how a run ended: one result per repository it wrote to (or tried to).
    pub fn record_finish(&self, id: RunId, results: &[JobResult]) -> Result<()> {
        self.record_finish_at(id, results, Utc::now())
    }

    /// [`History::record_finish`] at a given time.
    pub fn record_finish_at(&self, id: RunId, results: &[JobResult], at: DateTime<Utc>) -> Result<()> {
        let outcome = overall(results);
        let (mut read, mut added) = (0u64, 0u64);
        for s in results.iter().flat_map(|r| &r.sources) {
            read += s.stats.bytes_read;
            added += s.stats.bytes_added;
        }
        let tx = self.write()?;
        let changed = tx.execute(
            "UPDATE runs SET finished_ms = ?2, outcome = ?3, bytes_read = ?4, bytes_added = ?5, error = ?6
             WHERE id = ?1",
            params![id.0, at.timestamp_millis(), outcome.name(), int(read), int(added), run_error(results)],
        )?;
        if changed == 0 {
            bail!("run {} is not in the history database {}", id.0, self.path.display());
        }
        // A run is finished once; a second call replaces the first one's results.
        tx.execute("DELETE FROM run_targets WHERE run_id = ?1", [id.0])?;
        for result in results {
            insert_target(&tx, id, result)?;
        }
        tx.commit().with_context(|| format!("recording the end of run {} in {}", id.0, self.path.display()))?;
        tracing::debug!(run = id.0, outcome = outcome.name(), "run finished");
        Ok(())
    }

    /// Mark the unfinished runs whose process is gone as interrupted; returns how many.
    pub fn reap_interrupted(&self) -> Result<usize> {
        let dead: Vec<i64> =
            self.unfinished()?.into_iter().filter(|(_, owner)| !owner.alive(&self.here)).map(|(id, _)| id).collect();
        if dead.is_empty() {
            return Ok(0);
        }
        let tx = self.write()?;
        let mut n = 0;
        for id in &dead {
            n += tx.execute("UPDATE runs SET outcome = 'interrupted' WHERE id = ?1 AND outcome IS NULL", [id])?;
        }
        tx.commit()?;
        Ok(n)
    }

    fn unfinished(&self) -> Result<Vec<(i64, Owner)>> {
        let mut stmt =
            self.conn.prepare_cached("SELECT id, host, pid, boot_id, start_ticks FROM runs WHERE outcome IS NULL")?;
        let rows = stmt.query_map([], |r| {
            let owner = Owner {
                host: r.get(1)?,
                pid: r.get(2)?,
                boot_id: r.get(3)?,
                start_ticks: r.get::<_, Option<i64>>(4)?.map(|t| t as u64),
            };
            Ok((r.get(0)?, owner))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Runs, newest first.
    pub fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        let mut sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE 1 = 1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(job) = &filter.job {
            args.push(job.clone().into());
            sql += &format!(" AND job = ?{}", args.len());
        }
        if let Some(since) = filter.since {
            args.push(since.timestamp_millis().into());
            sql += &format!(" AND started_ms >= ?{}", args.len());
        }
        // Running and interrupted are decided per row (is the process alive?), so those
        // filters and their limit apply after the query.
        let decided_later = matches!(filter.outcome, Some(RunOutcome::Running | RunOutcome::Interrupted));
        match filter.outcome {
            Some(RunOutcome::Running) => sql += " AND outcome IS NULL",
            Some(RunOutcome::Interrupted) => sql += " AND (outcome IS NULL OR outcome = 'interrupted')",
            Some(other) => {
                args.push(other.name().to_string().into());
                sql += &format!(" AND outcome = ?{}", args.len());
            }
            None => {}
        }
        sql += " ORDER BY started_ms DESC, id DESC";
        if let (Some(limit), false) = (filter.limit, decided_later) {
            sql += &format!(" LIMIT {limit}");
        }
        let mut runs = self.query_runs(&sql, rusqlite::params_from_iter(args))?;
        if decided_later {
            runs.retain(|r| Some(r.outcome) == filter.outcome);
            runs.truncate(filter.limit.unwrap_or(usize::MAX));
        }
        Ok(runs)
    }

    /// The runs of one job that `cairn status` shows.
    pub fn job_runs(&self, job: &str) -> Result<JobRuns> {
        let newest = |condition: &str| -> Result<Option<Run>> {
            let sql = format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE job = ?1 {condition} ORDER BY started_ms DESC, id DESC LIMIT 1"
            );
            Ok(self.query_runs(&sql, [job])?.pop())
        };
        let last = newest("")?;
        // The newest run might be running; look past it only if so.
        let last_finished = match &last {
            Some(run) if run.outcome != RunOutcome::Running => Some(run.clone()),
            Some(_) => self
                .query_runs(
                    &format!("SELECT {RUN_COLUMNS} FROM runs WHERE job = ?1 ORDER BY started_ms DESC, id DESC"),
                    [job],
                )?
                .into_iter()
                .find(|r| r.outcome != RunOutcome::Running),
            None => None,
        };
        let first_started = self
            .conn
            .query_row("SELECT MIN(started_ms) FROM runs WHERE job = ?1", [job], |r| r.get::<_, Option<i64>>(0))?
            .map(from_millis);
        Ok(JobRuns { last, last_finished, last_success: newest("AND outcome = 'success'")?, first_started })
    }

    fn query_runs(&self, sql: &str, args: impl rusqlite::Params) -> Result<Vec<Run>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let mut runs = stmt
            .query_map(args, |r| self.run_from_row(r))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .with_context(|| format!("reading run history {}", self.path.display()))?;
        for run in &mut runs {
            run.repositories = self.targets(run.id)?;
        }
        Ok(runs)
    }

    fn run_from_row(&self, r: &rusqlite::Row<'_>) -> rusqlite::Result<Run> {
        let stored: Option<String> = r.get(5)?;
        let outcome = match RunOutcome::parse(stored.as_deref()).map_err(|e| bad_value(5, e))? {
            Some(outcome) => outcome,
            None => {
                let owner = Owner {
                    host: r.get(6)?,
                    pid: r.get(7)?,
                    boot_id: r.get(8)?,
                    start_ticks: r.get::<_, Option<i64>>(9)?.map(|t| t as u64),
                };
                if owner.alive(&self.here) {
                    RunOutcome::Running
                } else {
                    RunOutcome::Interrupted
                }
            }
        };
        Ok(Run {
            id: r.get(0)?,
            job: r.get(1)?,
            trigger: r.get(2)?,
            started: from_millis(r.get(3)?),
            finished: r.get::<_, Option<i64>>(4)?.map(from_millis),
            outcome,
            host: r.get(6)?,
            pid: r.get(7)?,
            bytes_read: r.get::<_, i64>(10)? as u64,
            bytes_added: r.get::<_, i64>(11)? as u64,
            error: r.get(12)?,
            repositories: Vec::new(),
        })
    }

    fn targets(&self, run: i64) -> Result<Vec<TargetRecord>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, repository, outcome, snapshot, error, duration_secs FROM run_targets WHERE run_id = ?1 ORDER BY id",
        )?;
        let rows = stmt
            .query_map([run], |r| {
                let outcome: String = r.get(2)?;
                let outcome =
                    RunOutcome::parse(Some(&outcome)).map_err(|e| bad_value(2, e))?.expect("Some in, Some out");
                let target = TargetRecord {
                    repository: r.get(1)?,
                    outcome,
                    snapshot: r.get(3)?,
                    error: r.get(4)?,
                    duration_secs: r.get(5)?,
                    sources: Vec::new(),
                };
                Ok((r.get::<_, i64>(0)?, target))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|(id, mut target)| {
                target.sources = self.sources(id)?;
                Ok(target)
            })
            .collect()
    }

    fn sources(&self, target: i64) -> Result<Vec<SourceRecord>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT name, kind, status, error, total_bytes, bytes_read, bytes_added, files_new, files_changed,
                    files_unchanged, errors, duration_secs
             FROM run_sources WHERE target_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([target], |r| {
            let n = |i| r.get::<_, i64>(i).map(|v| v as u64);
            Ok(SourceRecord {
                name: r.get(0)?,
                kind: r.get(1)?,
                status: r.get(2)?,
                error: r.get(3)?,
                total_bytes: n(4)?,
                bytes_read: n(5)?,
                bytes_added: n(6)?,
                files_new: n(7)?,
                files_changed: n(8)?,
                files_unchanged: n(9)?,
                errors: n(10)?,
                duration_secs: r.get(11)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

fn insert_target(tx: &Transaction<'_>, run: RunId, result: &JobResult) -> Result<()> {
    tx.execute(
        "INSERT INTO run_targets (run_id, repository, outcome, snapshot, error, duration_secs)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            run.0,
            result.repository,
            RunOutcome::from(result.outcome).name(),
            result.snapshot,
            result.error,
            result.duration_secs
        ],
    )?;
    let target = tx.last_insert_rowid();
    let mut stmt = tx.prepare_cached(
        "INSERT INTO run_sources (target_id, name, kind, status, error, total_bytes, bytes_read, bytes_added,
                                  files_new, files_changed, files_unchanged, errors, duration_secs)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?;
    for s in &result.sources {
        let st = &s.stats;
        stmt.execute(params![
            target,
            s.name,
            s.kind,
            status_name(s.status),
            s.error,
            int(st.total_bytes),
            int(st.bytes_read),
            int(st.bytes_added),
            int(st.files_new),
            int(st.files_changed),
            int(st.files_unchanged),
            int(st.errors),
            st.duration_secs
        ])?;
    }
    Ok(())
}

/// A run's outcome over its repositories: success if every one succeeded, failed if none
/// saved anything, partial otherwise (no result at all is a failure).
fn overall(results: &[JobResult]) -> RunOutcome {
    if results.is_empty() || results.iter().all(|r| r.outcome == Outcome::Failed) {
        RunOutcome::Failed
    } else if results.iter().all(|r| r.outcome == Outcome::Success) {
        RunOutcome::Success
    } else {
        RunOutcome::Partial
    }
}

/// Every error of a run in one text: per repository (named when there are several), then
/// per failed source.
fn run_error(results: &[JobResult]) -> Option<String> {
    let several = results.len() > 1;
    let mut errors = Vec::new();
    for r in results {
        let prefix = if several { format!("{}: ", r.repository) } else { String::new() };
        if let Some(e) = &r.error {
            errors.push(format!("{prefix}{e}"));
        }
        for s in r.sources.iter().filter(|s| s.status != SourceStatus::Ok) {
            if let Some(e) = &s.error {
                errors.push(format!("{prefix}source {}: {e}", s.name));
            }
        }
    }
    if results.is_empty() {
        errors.push("the run recorded no result".into());
    }
    (!errors.is_empty()).then(|| errors.join("; "))
}

fn status_name(status: SourceStatus) -> &'static str {
    match status {
        SourceStatus::Ok => "ok",
        SourceStatus::Partial => "partial",
        SourceStatus::Failed => "failed",
    }
}

/// A count for SQLite's signed 64-bit integers.
fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn bad_value(column: usize, err: anyhow::Error) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, err.into())
}

#[cfg(test)]
mod tests {
    use cairn_repo::{ChunkParams, SourceEntry};

    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
    }

    fn source(name: &str, status: SourceStatus, read: u64, error: Option<&str>) -> SourceEntry {
        let mut entry = SourceEntry {
            name: name.into(),
            kind: "files".into(),
            status,
            error: error.map(String::from),
            root: None,
            chunking: ChunkParams::FILES,
            metadata: Default::default(),
            stats: Default::default(),
            warnings: Vec::new(),
        };
        entry.stats.bytes_read = read;
        entry.stats.bytes_added = read / 2;
        entry.stats.total_bytes = read * 2;
        entry
    }

    fn result(repository: &str, outcome: Outcome, sources: Vec<SourceEntry>) -> JobResult {
        JobResult {
            job: "app".into(),
            repository: repository.into(),
            outcome,
            snapshot: (outcome != Outcome::Failed).then(|| "ab".repeat(32)),
            error: (outcome == Outcome::Failed).then(|| "repository gone".into()),
            sources,
            duration_secs: 1.5,
        }
    }

    /// An owner whose process does not exist: pids never reach 4 billion.
    fn dead_owner() -> Owner {
        Owner { pid: 4_000_000_000, ..Owner::current() }
    }

    #[test]
    fn a_run_is_recorded_with_its_repositories_and_sources() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(dir.path()).unwrap();
        assert_eq!(h.schema_version().unwrap(), MIGRATIONS.len() as i64);
        let id = h.record_start_by("app", Trigger::Schedule, t(0), &Owner::current()).unwrap();
        let running = h.runs(&RunFilter::default()).unwrap();
        assert_eq!(running[0].outcome, RunOutcome::Running);
        assert_eq!(running[0].finished, None);

        let results = [
            result(
                "local",
                Outcome::Partial,
                vec![
                    source("db", SourceStatus::Ok, 1000, None),
                    source("gone", SourceStatus::Failed, 0, Some("no such folder")),
                ],
            ),
            result("offsite", Outcome::Success, vec![source("db", SourceStatus::Ok, 10, None)]),
        ];
        h.record_finish_at(id, &results, t(90)).unwrap();
        let run = h.runs(&RunFilter::default()).unwrap().remove(0);
        assert_eq!(run.job, "app");
        assert_eq!(run.trigger, "schedule");
        assert_eq!(run.outcome, RunOutcome::Partial);
        assert_eq!((run.started, run.finished), (t(0), Some(t(90))));
        assert_eq!(run.duration_secs(), Some(90.0));
        assert_eq!((run.bytes_read, run.bytes_added), (1010, 505));
        assert_eq!(run.error.as_deref(), Some("local: source gone: no such folder"));
        assert_eq!(run.repositories.len(), 2);
        let local = &run.repositories[0];
        assert_eq!((local.repository.as_str(), local.outcome), ("local", RunOutcome::Partial));
        assert_eq!(local.sources[1].status, "failed");
        assert_eq!(local.sources[1].error.as_deref(), Some("no such folder"));
        assert_eq!(local.sources[0].total_bytes, 2000);
        assert_eq!(run.snapshots().count(), 2);

        // Reopening finds the same schema and data.
        drop(h);
        let h = History::open_existing(dir.path()).unwrap().unwrap();
        assert_eq!(h.runs(&RunFilter::default()).unwrap().len(), 1);
    }

    #[test]
    fn the_overall_outcome_of_several_repositories() {
        let ok = || result("a", Outcome::Success, vec![]);
        let failed = || result("b", Outcome::Failed, vec![]);
        assert_eq!(overall(&[ok(), ok()]), RunOutcome::Success);
        assert_eq!(overall(&[ok(), failed()]), RunOutcome::Partial);
        assert_eq!(overall(&[failed(), failed()]), RunOutcome::Failed);
        assert_eq!(overall(&[]), RunOutcome::Failed);
        assert_eq!(run_error(&[failed()]).as_deref(), Some("repository gone"));
    }

    #[test]
    fn a_run_whose_process_died_is_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(dir.path()).unwrap();
        let me = Owner::current();
        assert!(me.start_ticks.is_some(), "these tests need /proc");
        let alive = h.record_start_by("a", Trigger::Manual, t(0), &me).unwrap();
        let dead = h.record_start_by("b", Trigger::Manual, t(1), &dead_owner()).unwrap();
        // Our own pid, but started at another time: the pid was reused.
        let reused =
            h.record_start_by("c", Trigger::Manual, t(2), &Owner { start_ticks: Some(1), ..me.clone() }).unwrap();
        let rebooted = h
            .record_start_by("d", Trigger::Manual, t(3), &Owner { boot_id: Some("old boot".into()), ..me.clone() })
            .unwrap();
        let elsewhere = h
            .record_start_by("e", Trigger::Manual, t(4), &Owner { host: "other-host".into(), ..dead_owner() })
            .unwrap();
        let outcome_of =
            |id: RunId| h.runs(&RunFilter::default()).unwrap().into_iter().find(|r| r.id == id.0).unwrap().outcome;
        assert_eq!(outcome_of(alive), RunOutcome::Running);
        assert_eq!(outcome_of(dead), RunOutcome::Interrupted);
        assert_eq!(outcome_of(reused), RunOutcome::Interrupted);
        assert_eq!(outcome_of(rebooted), RunOutcome::Interrupted);
        assert_eq!(outcome_of(elsewhere), RunOutcome::Running, "another host's run cannot be checked");

        // The verdict is written down (record_start reaped the earlier ones already)...
        assert_eq!(h.reap_interrupted().unwrap(), 0);
        let stored: Vec<Option<String>> = h
            .conn
            .prepare("SELECT outcome FROM runs ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let gone = Some("interrupted".to_string());
        assert_eq!(stored, [None, gone.clone(), gone.clone(), gone, None]);
        // A dead run that no record_start has seen yet is reaped on demand.
        h.conn
            .execute(
                "INSERT INTO runs (job, trigger, started_ms, host, pid) VALUES ('f', 'watch', 0, ?1, 4000000000)",
                [&me.host],
            )
            .unwrap();
        assert_eq!(h.reap_interrupted().unwrap(), 1);
        // ...and a run that finishes after all wins over the verdict.
        h.record_finish_at(dead, &[result("r", Outcome::Success, vec![])], t(60)).unwrap();
        assert_eq!(outcome_of(dead), RunOutcome::Success);
    }

    #[test]
    fn queries_filter_by_job_time_outcome_and_limit() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(dir.path()).unwrap();
        let me = Owner::current();
        for (i, (job, outcome)) in
            [("app", Outcome::Success), ("db", Outcome::Failed), ("app", Outcome::Partial), ("app", Outcome::Success)]
                .into_iter()
                .enumerate()
        {
            let id = h.record_start_by(job, Trigger::Schedule, t(i as i64 * 3600), &me).unwrap();
            h.record_finish_at(id, &[result("r", outcome, vec![])], t(i as i64 * 3600 + 10)).unwrap();
        }
        h.record_start_by("app", Trigger::Watch, t(5 * 3600), &dead_owner()).unwrap();
        h.record_start_by("app", Trigger::RunNow, t(6 * 3600), &me).unwrap();

        let ids = |f: RunFilter| -> Vec<i64> { h.runs(&f).unwrap().iter().map(|r| r.id).collect() };
        assert_eq!(ids(RunFilter::default()), [6, 5, 4, 3, 2, 1], "newest first");
        assert_eq!(ids(RunFilter { job: Some("db".into()), ..Default::default() }), [2]);
        assert_eq!(ids(RunFilter { since: Some(t(2 * 3600)), ..Default::default() }), [6, 5, 4, 3]);
        assert_eq!(ids(RunFilter { outcome: Some(RunOutcome::Success), ..Default::default() }), [4, 1]);
        assert_eq!(ids(RunFilter { outcome: Some(RunOutcome::Interrupted), ..Default::default() }), [5]);
        assert_eq!(ids(RunFilter { outcome: Some(RunOutcome::Running), ..Default::default() }), [6]);
        assert_eq!(ids(RunFilter { limit: Some(2), ..Default::default() }), [6, 5]);
        assert_eq!(
            ids(RunFilter {
                job: Some("app".into()),
                outcome: Some(RunOutcome::Success),
                limit: Some(1),
                ..Default::default()
            }),
            [4]
        );

        let app = h.job_runs("app").unwrap();
        assert_eq!(app.last.unwrap().outcome, RunOutcome::Running);
        assert_eq!(app.last_finished.unwrap().outcome, RunOutcome::Interrupted);
        assert_eq!(app.last_success.unwrap().id, 4);
        assert_eq!(app.first_started, Some(t(0)));
        let db = h.job_runs("db").unwrap();
        assert!(db.last_success.is_none() && db.last_finished.unwrap().outcome == RunOutcome::Failed);
        let none = h.job_runs("never").unwrap();
        assert!(none.last.is_none() && none.first_started.is_none());
    }

    #[test]
    fn two_connections_write_at_the_same_time() {
        let dir = tempfile::tempdir().unwrap();
        History::open(dir.path()).unwrap();
        let per_writer = 40;
        std::thread::scope(|s| {
            for w in 0..2 {
                let dir = dir.path();
                s.spawn(move || {
                    // Each writer has its own connection, as two processes would.
                    let h = History::open(dir).unwrap();
                    for i in 0..per_writer {
                        let id = h.record_start(&format!("job{w}"), Trigger::Schedule).unwrap();
                        let results = [result("r", Outcome::Success, vec![source("s", SourceStatus::Ok, i, None)])];
                        h.record_finish(id, &results).unwrap();
                    }
                });
            }
        });
        let h = History::open(dir.path()).unwrap();
        let runs = h.runs(&RunFilter::default()).unwrap();
        assert_eq!(runs.len(), 2 * per_writer as usize);
        assert!(runs.iter().all(|r| r.outcome == RunOutcome::Success && r.repositories[0].sources.len() == 1));
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(dir.path()).unwrap();
        h.conn.execute("INSERT INTO schema_version VALUES (99, 0)", []).unwrap();
        drop(h);
        let err = format!("{:#}", History::open(dir.path()).err().unwrap());
        assert!(err.contains("schema version is 99") && err.contains("upgrade cairn"), "{err}");
    }

    #[test]
    fn nothing_is_created_by_open_existing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(History::open_existing(&dir.path().join("state")).unwrap().is_none());
        assert!(!dir.path().join("state").exists());
    }

    #[test]
    fn proc_stat_is_parsed_after_the_command_name() {
        let me = process_start(std::process::id());
        assert!(me.is_some());
        assert_eq!(process_start(4_000_000_000), None);
    }
}
