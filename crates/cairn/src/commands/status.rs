//! `cairn status`: per configured job, its last run, last success, next scheduled run, the
//! size of each repository it writes to, and whether it needs attention: stale (no success
//! within its limit, see `health.rs`), or its last finished run failed or was interrupted.
//! Exit code 4 (`exit::ALARM`) when any job needs attention, so monitoring can run it.
//!
//! Nothing here unlocks a repository: sizes come from the storage listing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use cairn_storage::{LocalStorage, Storage};
use chrono::{DateTime, Local, Utc};
use serde::Serialize;

use crate::cli::{Global, StatusArgs};
use crate::config::{Config, JobConfig};
use crate::exit::Alarm;
use crate::health;
use crate::history::{self, History, JobRuns, Run, RunOutcome};
use crate::output;
use crate::settings;

/// What `status --json` prints.
#[derive(Serialize)]
struct Report<'a> {
    time: DateTime<Utc>,
    /// The history database read (it may not exist yet).
    history: PathBuf,
    jobs: &'a [JobStatus],
}

/// One job's line.
#[derive(Serialize)]
struct JobStatus {
    job: String,
    /// `ok`, `partial`, `running`, `never-run`, or an alarm: `stale`, `failed`, `interrupted`.
    state: &'static str,
    /// Why the job needs attention.
    #[serde(skip_serializing_if = "Option::is_none")]
    alarm: Option<String>,
    last_run: Option<Run>,
    last_success: Option<Run>,
    next_run: Option<DateTime<Utc>>,
    schedule: Vec<String>,
    /// No success for longer than this makes the job stale (`None`: never stale).
    stale_after_secs: Option<i64>,
    repositories: Vec<RepoSize>,
}

/// A repository's size: every object its storage lists.
#[derive(Serialize, Clone)]
struct RepoSize {
    name: String,
    path: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    objects: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub fn run(global: &Global, args: &StatusArgs) -> Result<()> {
    let Some(config) = settings::config(global)? else {
        bail!(
            "status shows the jobs of a config file, and none was found\nhint: pass --config FILE or create cairn.toml"
        );
    };
    let now = Utc::now();
    let dir = history::state_dir(Some(&config));
    let history = History::open_existing(&dir)?;
    let mut sizes = HashMap::new();
    let mut jobs = Vec::new();
    for (name, job) in &config.file.jobs {
        let runs = match &history {
            Some(h) => h.job_runs(name)?,
            None => JobRuns::default(),
        };
        let repositories = crate::jobs::job_targets(global, &config, job)?
            .into_iter()
            .map(|t| sizes.entry(t.path.clone()).or_insert_with(|| repo_size(&t.name, &t.path)).clone())
            .collect();
        jobs.push(job_status(&config, name, job, runs, repositories, now));
    }
    if args.json {
        super::print_json(&Report { time: now, history: dir.join(history::FILE_NAME), jobs: &jobs })?;
    } else if !global.quiet {
        print_table(&jobs)?;
    }
    let alarms: Vec<String> =
        jobs.iter().filter_map(|j| j.alarm.as_ref().map(|a| format!("job {}: {a}", j.job))).collect();
    if !alarms.is_empty() {
        return Err(Alarm(alarms.join("\n")).into());
    }
    Ok(())
}

/// Everything `status` says about one job at `now`.
fn job_status(
    config: &Config,
    name: &str,
    job: &JobConfig,
    runs: JobRuns,
    repositories: Vec<RepoSize>,
    now: DateTime<Utc>,
) -> JobStatus {
    let limit = health::stale_limit(job, config, now);
    let stale = health::stale(limit, runs.last_success.as_ref().map(|r| r.started), runs.first_started, now);
    let last_finished = runs.last_finished.as_ref().map(|r| r.outcome);
    let (state, alarm) = if let Some(s) = &stale {
        let ago = output::span((now - s.since).num_seconds().max(0) as u64);
        let expected = output::span(s.limit.num_seconds().max(0) as u64);
        let what = if s.never_succeeded {
            format!("stale: never succeeded; first run {ago} ago")
        } else {
            format!("stale: last success {ago} ago")
        };
        ("stale", Some(format!("{what} (expected within {expected})")))
    } else if let Some(bad @ (RunOutcome::Failed | RunOutcome::Interrupted)) = last_finished {
        let run = runs.last_finished.as_ref().expect("outcome came from it");
        let why =
            run.error.as_deref().map(|e| format!(": {}", e.lines().next().unwrap_or_default())).unwrap_or_default();
        let when = run.started.with_timezone(&Local).format("%Y-%m-%d %H:%M");
        (bad.name(), Some(format!("the last run ({when}) {}{why}", bad.name())))
    } else {
        let state = match (runs.last.as_ref().map(|r| r.outcome), last_finished) {
            (None, _) => "never-run",
            (Some(RunOutcome::Running), _) => "running",
            (_, Some(RunOutcome::Partial)) => "partial",
            _ => "ok",
        };
        (state, None)
    };
    JobStatus {
        job: name.to_string(),
        state,
        alarm,
        last_run: runs.last,
        last_success: runs.last_success,
        next_run: health::next_run(job, config, now),
        schedule: job.schedule.clone(),
        stale_after_secs: limit.map(|l| l.num_seconds()),
        repositories,
    }
}

/// The sum of the sizes of every object in the repository's storage.
fn repo_size(name: &str, path: &Path) -> RepoSize {
    let mut size =
        RepoSize { name: name.to_string(), path: path.to_path_buf(), bytes: None, objects: None, error: None };
    if !path.is_dir() {
        size.error = Some(format!("no repository at {}", path.display()));
        return size;
    }
    match LocalStorage::new(path).list("") {
        Ok(entries) => {
            size.bytes = Some(entries.iter().map(|e| e.size).sum());
            size.objects = Some(entries.len() as u64);
        }
        Err(e) => size.error = Some(e.to_string()),
    }
    size
}

fn print_table(jobs: &[JobStatus]) -> std::io::Result<()> {
    if jobs.is_empty() {
        outln!("no jobs configured")?;
        return Ok(());
    }
    let when = |t: DateTime<Utc>| t.with_timezone(&Local).format("%Y-%m-%d %H:%M").to_string();
    outln!(
        "{:<12}  {:<11}  {:<28}  {:<16}  {:<16}  repositories",
        "job",
        "state",
        "last run",
        "last success",
        "next run"
    )?;
    for j in jobs {
        let last_run = j
            .last_run
            .as_ref()
            .map_or_else(|| "never".to_string(), |r| format!("{} {}", when(r.started), r.outcome.name()));
        let repositories: Vec<String> = j
            .repositories
            .iter()
            .map(|r| match r.bytes {
                Some(bytes) => format!("{} {}", r.name, output::bytes(bytes)),
                None => format!("{} (missing)", r.name),
            })
            .collect();
        outln!(
            "{:<12}  {:<11}  {:<28}  {:<16}  {:<16}  {}",
            j.job,
            // Alarms in capitals: readable without colour.
            if j.alarm.is_some() { j.state.to_uppercase() } else { j.state.to_string() },
            last_run,
            j.last_success.as_ref().map_or_else(|| "never".to_string(), |r| when(r.started)),
            j.next_run.map_or_else(|| "-".to_string(), when),
            repositories.join(", ")
        )?;
    }
    Ok(())
}
