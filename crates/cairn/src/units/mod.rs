//! Jobs' schedules as systemd timers or crontab lines, for people who run cairn without its
//! daemon (`cairn schedule install|status|uninstall`).
//!
//! Owns: reading cron expressions and computing their next runs ([`cron`]), converting them
//! into timer and service units ([`systemd`]) or a marked crontab block ([`crontab`]), and
//! the record of what was written ([`manifest`]). All of that is text in, text out; only
//! [`host`] touches the machine (files, `systemctl`, `crontab`). The command
//! (`commands/schedule.rs`) reads the config and decides. Does not own: running jobs
//! (`jobs.rs`) or the daemon's own scheduling.

pub mod cron;
pub mod crontab;
pub mod host;
pub mod manifest;
pub mod systemd;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cron::CronExpr;

/// How a scheduled run starts cairn: this binary, this config file, `backup JOB`.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Absolute path of the `cairn` binary.
    pub binary: String,
    /// Absolute path of the config file.
    pub config: String,
    /// Pass `--quiet`: cron mails whatever a run prints, so only errors should be printed.
    pub quiet: bool,
}

impl Invocation {
    pub fn argv(&self, job: &str) -> Vec<String> {
        let mut argv = vec![self.binary.clone()];
        if self.quiet {
            argv.push("--quiet".into());
        }
        argv.extend(["--config".into(), self.config.clone(), "backup".into(), job.into()]);
        argv
    }
}

/// A job's schedule, checked and parsed.
#[derive(Debug, Clone)]
pub struct JobSchedule {
    pub job: String,
    pub schedule: Vec<CronExpr>,
    pub jitter: Option<Duration>,
}

/// A file to write, whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFile {
    pub job: String,
    pub path: PathBuf,
    pub content: String,
}

/// The service and timer unit of every job, in `dir`.
pub fn systemd_files(
    dir: &Path,
    run: &Invocation,
    jobs: &[JobSchedule],
    zone: Option<&str>,
    system: bool,
) -> Vec<PlannedFile> {
    let mut files = Vec::new();
    for job in jobs {
        let stem = systemd::unit_stem(&job.job);
        files.push(PlannedFile {
            job: job.job.clone(),
            path: dir.join(format!("{stem}.service")),
            content: systemd::service_unit(&job.job, run, system),
        });
        files.push(PlannedFile {
            job: job.job.clone(),
            path: dir.join(format!("{stem}.timer")),
            content: systemd::timer_unit(&job.job, run, &job.schedule, zone, job.jitter),
        });
    }
    files
}

/// The crontab lines of every job, by job.
pub fn cron_lines(run: &Invocation, jobs: &[JobSchedule], user: Option<&str>) -> BTreeMap<String, Vec<String>> {
    jobs.iter()
        .map(|job| {
            let schedule: Vec<String> = job.schedule.iter().map(|e| e.text.clone()).collect();
            (job.job.clone(), crontab::job_lines(&job.job, run, &schedule, user))
        })
        .collect()
}
