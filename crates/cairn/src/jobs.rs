//! Running a job: its hooks, its sources (concurrently, bounded), one snapshot per repository.
//!
//! A source that fails does not stop the others: it is recorded in the snapshot as failed
//! with its error, and the run is partial. Its writer is abandoned: blobs it had not yet
//! packed are never written, and the packs it had uploaded are deleted (only a capture of
//! over 32 packs, 512 MiB, leaves earlier packs named by an index file, garbage for `prune`).
//! Only a failing repository stops the whole run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use cairn_repo::{Id, Repository, Snapshot, SourceEntry, SourceStatus, WriterOptions};
use cairn_sources::{CaptureContext, Progress, SourceError};
use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use crate::cli::Global;
use crate::config::{Config, HookCommand, JobConfig};
use crate::output;
use crate::{settings, sources};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    /// A snapshot was saved, but some source failed or was captured only in part.
    Partial,
    /// Nothing was saved.
    Failed,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Partial => "partial",
            Outcome::Failed => "failed",
        }
    }
}

/// The result of one job into one repository.
#[derive(Debug, Serialize)]
pub struct JobResult {
    pub job: String,
    pub repository: String,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// Why the run failed as a whole (a hook, the repository).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub sources: Vec<SourceEntry>,
    pub duration_secs: f64,
}

/// What the caller decides for every job of a run.
pub struct RunOptions {
    pub time: Option<DateTime<FixedOffset>>,
    pub force: bool,
    pub tags: Vec<String>,
    /// zstd level over the repository's own (`--compression`).
    pub compression: Option<i32>,
}

/// zstd level when neither `--compression` nor the repository's config sets one.
pub const DEFAULT_COMPRESSION: i32 = 2;

/// How a job run shows itself on the terminal.
pub struct Display {
    /// No progress bar.
    pub no_bar: bool,
    /// No warnings either.
    pub quiet: bool,
    /// Say how many snapshots retention removed.
    pub announce: bool,
}

/// Run one job as `cairn backup JOB` does: the `before` hook; the job into each of its
/// repositories, retention after each when `auto_forget` is set; the `after` hook. The
/// results hold one entry per repository (one failed entry when the `before` hook fails).
/// An error means the job could not even be set up (unknown job, repositories unresolved).
pub fn run_job(
    global: &Global,
    config: &Config,
    name: &str,
    options: &RunOptions,
    display: &Display,
) -> Result<Vec<JobResult>> {
    let job = config.job(name)?;
    let mut results = Vec::new();
    if let Err(e) = run_hook(name, job, Hook::Before, &[]) {
        results.push(failed(name, "-", crate::exit::message(&e)));
    } else {
        for target in job_targets(global, config, job)? {
            let repo = match settings::open_target(global, &target) {
                Ok(repo) => repo,
                Err(e) => {
                    results.push(failed(name, &target.name, crate::exit::message(&e)));
                    continue;
                }
            };
            let compression = options.compression.or(target.compression).unwrap_or(DEFAULT_COMPRESSION);
            let progress = output::Progress::new(display.no_bar, display.quiet, None);
            let result = run_into(config, name, job, (&target.name, &repo, compression), options, &progress);
            progress.finish();
            if job.auto_forget == Some(true) && result.snapshot.is_some() {
                let host = job.host.clone().unwrap_or_else(settings::hostname);
                match crate::commands::forget::after_backup(&repo, config, name, &host) {
                    Ok(n) if n > 0 && display.announce => eprintln!("job {name}: retention removed {n} snapshot(s)"),
                    Ok(_) => {}
                    Err(e) => eprintln!("warning: job {name}: applying retention failed: {}", crate::exit::message(&e)),
                }
            }
            results.push(result);
        }
    }
    if let Err(e) = run_hook(name, job, Hook::After, &results) {
        eprintln!("warning: {}", crate::exit::message(&e));
    }
    Ok(results)
}

/// The repositories a job writes to: `--repo` if given, else the job's list, else the only one.
pub fn job_targets(global: &Global, config: &Config, job: &JobConfig) -> Result<Vec<settings::RepoTarget>> {
    if global.repo.is_some() || job.repositories.is_empty() {
        return Ok(vec![settings::repo_target(global, Some(config))?]);
    }
    job.repositories
        .iter()
        .map(|name| config.repository(Some(name)).map(|(n, r)| settings::configured(config, n, r)))
        .collect()
}

/// The result of a job that did not get as far as a repository.
pub fn failed(job: &str, repository: &str, error: String) -> JobResult {
    JobResult {
        job: job.to_string(),
        repository: repository.to_string(),
        outcome: Outcome::Failed,
        snapshot: None,
        error: Some(error),
        sources: Vec::new(),
        duration_secs: 0.0,
    }
}

/// Run one job into one opened repository. `progress` sees every source's bytes.
pub fn run_into(
    config: &Config,
    job_name: &str,
    job: &JobConfig,
    (repo_name, repo, compression): (&str, &Repository, i32),
    options: &RunOptions,
    progress: &dyn Progress,
) -> JobResult {
    let started = Instant::now();
    let time = options.time.unwrap_or_else(|| chrono::Local::now().fixed_offset());
    let host = job.host.clone().unwrap_or_else(crate::settings::hostname);
    let mut result = JobResult {
        job: job_name.to_string(),
        repository: repo_name.to_string(),
        outcome: Outcome::Failed,
        snapshot: None,
        error: None,
        sources: Vec::new(),
        duration_secs: 0.0,
    };
    let parent = match latest_of_job(repo, job_name, &host) {
        Ok(p) => p,
        Err(e) => {
            result.error = Some(crate::exit::message(&e));
            return result;
        }
    };
    match capture_all(config, job, repo, compression, parent.as_ref().map(|(_, s)| s), options.force, progress) {
        Err(e) => result.error = Some(e.to_string()),
        Ok(entries) => {
            result.sources = entries;
            if result.sources.iter().all(|s| s.status == SourceStatus::Failed) {
                result.error = Some("every source failed; no snapshot was saved".into());
            } else {
                let mut tags = job.tags.clone();
                tags.extend(options.tags.iter().cloned());
                let snapshot = Snapshot {
                    version: cairn_repo::snapshot::SNAPSHOT_VERSION,
                    time,
                    host,
                    username: std::env::var("USER").unwrap_or_default(),
                    job: Some(job_name.to_string()),
                    tags,
                    paths: result.sources.iter().map(|s| s.name.clone()).collect(),
                    parent: parent.map(|(id, _)| id),
                    sources: result.sources.clone(),
                    duration_secs: started.elapsed().as_secs_f64(),
                    program: format!("cairn {}", env!("CARGO_PKG_VERSION")),
                };
                match repo.save_snapshot(&snapshot) {
                    Ok(id) => {
                        result.snapshot = Some(id.to_hex());
                        let all_ok = result.sources.iter().all(|s| s.status == SourceStatus::Ok);
                        result.outcome = if all_ok { Outcome::Success } else { Outcome::Partial };
                    }
                    Err(e) => result.error = Some(format!("saving the snapshot: {e}")),
                }
            }
        }
    }
    result.duration_secs = started.elapsed().as_secs_f64();
    result
}

/// The newest snapshot of this job from this host: the parent of the next one.
pub fn latest_of_job(repo: &Repository, job: &str, host: &str) -> Result<Option<(Id, Snapshot)>> {
    Ok(repo.snapshots()?.into_iter().rev().find(|(_, s)| {
        s.job.as_deref() == Some(job) && s.host == host && !s.tags.iter().any(|t| t == crate::commands::PRE_RESTORE)
    }))
}

/// Capture every source, `concurrency` at a time; each has its own writer. A repository
/// error stops the run.
fn capture_all(
    config: &Config,
    job: &JobConfig,
    repo: &Repository,
    compression: i32,
    parent: Option<&Snapshot>,
    force: bool,
    progress: &dyn Progress,
) -> Result<Vec<SourceEntry>, cairn_repo::RepoError> {
    let concurrency = job.concurrency.unwrap_or(2).clamp(1, job.sources.len().max(1));
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let writer_options =
        WriterOptions { compression, threads: cores.div_ceil(concurrency).max(1), ..WriterOptions::default() };
    let slots: Vec<Mutex<Option<SourceEntry>>> = job.sources.iter().map(|_| Mutex::new(None)).collect();
    let fatal: Mutex<Option<cairn_repo::RepoError>> = Mutex::new(None);
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..concurrency {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(source) = job.sources.get(i) else { break };
                if fatal.lock().expect("lock poisoned").is_some() {
                    break;
                }
                let chunking = Config::chunking(job, source);
                let parent_root = parent
                    .and_then(|p| p.sources.iter().find(|s| s.name == source.name() && s.kind == source.kind.name()))
                    .and_then(|s| s.root);
                let started = Instant::now();
                let mut entry = SourceEntry {
                    name: source.name().to_string(),
                    kind: source.kind.name().to_string(),
                    status: SourceStatus::Failed,
                    error: None,
                    root: None,
                    chunking,
                    metadata: serde_json::Map::new(),
                    stats: Default::default(),
                    warnings: Vec::new(),
                };
                let outcome = sources::adapter(config, source)
                    .map_err(|e| SourceError::new(crate::exit::message(&e)))
                    .and_then(|adapter| {
                        let writer = repo.writer(writer_options);
                        let ctx = CaptureContext { repo, writer: &writer, chunking, progress };
                        match adapter.capture(&ctx, parent_root, force) {
                            Ok(capture) => Ok((capture, writer.finish()?)),
                            Err(e) => {
                                // Nothing of a failed source stays in the repository.
                                writer.abandon();
                                Err(e)
                            }
                        }
                    });
                match outcome {
                    Ok((capture, totals)) => {
                        entry.status = if capture.stats.errors > 0 { SourceStatus::Partial } else { SourceStatus::Ok };
                        entry.root = Some(capture.root);
                        entry.metadata = capture.metadata;
                        entry.stats = capture.stats;
                        entry.stats.bytes_added = totals.bytes_stored;
                        entry.stats.blobs_added = totals.blobs_new;
                        entry.warnings = capture.warnings;
                    }
                    Err(SourceError::Repo(e)) => {
                        *fatal.lock().expect("lock poisoned") = Some(e);
                        break;
                    }
                    Err(e) => {
                        progress.warning(&format!("source {} failed: {e}", entry.name));
                        entry.error = Some(e.to_string());
                    }
                }
                entry.stats.duration_secs = started.elapsed().as_secs_f64();
                *slots[i].lock().expect("lock poisoned") = Some(entry);
            });
        }
    });
    if let Some(e) = fatal.into_inner().expect("lock poisoned") {
        return Err(e);
    }
    Ok(slots.into_iter().filter_map(|s| s.into_inner().expect("lock poisoned")).collect())
}

/// Which hook of a job.
#[derive(Clone, Copy)]
pub enum Hook {
    Before,
    After,
}

/// Run a hook with the job's details in its environment; bounded by the hook timeout.
pub fn run_hook(job_name: &str, job: &JobConfig, which: Hook, results: &[JobResult]) -> Result<()> {
    let Some(hooks) = &job.hooks else { return Ok(()) };
    let (command, name) = match which {
        Hook::Before => (&hooks.before, "before"),
        Hook::After => (&hooks.after, "after"),
    };
    let Some(command) = command else { return Ok(()) };
    let mut cmd = match command {
        HookCommand::Shell(line) => {
            let mut c = std::process::Command::new("sh");
            c.arg("-c").arg(&line.0);
            c
        }
        HookCommand::Argv(words) => {
            let Some((program, args)) = words.split_first() else {
                return Err(anyhow!("job {job_name}: the {name} hook is an empty list"));
            };
            let mut c = std::process::Command::new(&program.0);
            c.args(args.iter().map(|a| &a.0));
            c
        }
    };
    cmd.env("CAIRN_JOB", job_name).env("CAIRN_HOOK", name).stdin(std::process::Stdio::null());
    if let Hook::After = which {
        let worst = results.iter().map(|r| r.outcome).max_by_key(|o| *o as u8).unwrap_or(Outcome::Failed);
        let snapshots: Vec<&str> = results.iter().filter_map(|r| r.snapshot.as_deref()).collect();
        let errors: Vec<String> = results
            .iter()
            .flat_map(|r| r.error.iter().cloned().chain(r.sources.iter().filter_map(|s| s.error.clone())))
            .collect();
        cmd.env("CAIRN_OUTCOME", worst.name())
            .env("CAIRN_SNAPSHOT", snapshots.join(" "))
            .env("CAIRN_ERROR", errors.join("\n"));
    }
    let mut child = cmd.spawn().map_err(|e| anyhow!("job {job_name}: cannot run the {name} hook: {e}"))?;
    let limit = Duration::from_secs(hooks.timeout.unwrap_or(600));
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                return Ok(());
            }
            return Err(anyhow!("job {job_name}: the {name} hook failed ({status})"));
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(anyhow!(
                "job {job_name}: the {name} hook ran longer than {}s and was stopped",
                limit.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
