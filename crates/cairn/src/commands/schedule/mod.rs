//! `cairn schedule install|status|uninstall`: the jobs' schedules as systemd timers or a
//! crontab block, for people who run cairn without its daemon.
//!
//! The texts come from `units/`; these files choose where they go, refuse to overwrite or
//! delete what someone else wrote or changed, keep the manifest, and run `systemctl`
//! (unless `--dir` sends everything elsewhere). Here: the command line, what every
//! subcommand needs ([`Setup`], [`Report`]), and the removal both install and uninstall do.

mod install;
mod status;
mod uninstall;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use chrono::Utc;
use clap::{Args, Subcommand};

use crate::cli::Global;
use crate::config::{self, Config};
use crate::exit::Partial;
use crate::settings;
use crate::units::cron::{CronExpr, Gap};
use crate::units::host::{self, FileState};
use crate::units::manifest::{self, CrontabTarget, FileRecord, Manifest};
use crate::units::{crontab, systemd, Invocation, JobSchedule};

#[derive(Subcommand, Debug)]
pub enum ScheduleCommand {
    /// Write systemd timers (default) or a crontab block that run the jobs on their schedules
    Install(InstallArgs),
    /// Show what is installed for each job, and when it runs next
    Status(StatusArgs),
    /// Remove exactly what `schedule install` wrote (files changed since are left alone)
    Uninstall(UninstallArgs),
}

#[derive(Args, Debug)]
pub struct InstallArgs {
    /// Jobs to install (default: every job with a schedule); jobs installed before stay
    #[arg(value_name = "JOB")]
    pub jobs: Vec<String>,
    /// A timer and a service unit per job (the default)
    #[arg(long, conflicts_with = "cron")]
    pub systemd: bool,
    /// A block of lines in the user's crontab (with --system: the file /etc/cron.d/cairn)
    #[arg(long)]
    pub cron: bool,
    /// For the current user: ~/.config/systemd/user or `crontab` (default unless root)
    #[arg(long, conflicts_with = "system")]
    pub user: bool,
    /// System-wide: /etc/systemd/system or /etc/cron.d (default for root)
    #[arg(long)]
    pub system: bool,
    /// Write units, crontab and manifest into DIR instead; run no systemctl or crontab
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// With --cron: merge the block into this file instead of the user's crontab
    #[arg(long, value_name = "FILE", requires = "cron")]
    pub crontab_file: Option<PathBuf>,
    /// Overwrite files that were changed since, or that cairn did not write
    #[arg(long)]
    pub force: bool,
    /// Print what would be written, and write nothing
    #[arg(long, short = 'n')]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Where `schedule install --dir` wrote
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Print as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct UninstallArgs {
    /// Jobs to remove (default: all that are installed)
    #[arg(value_name = "JOB")]
    pub jobs: Vec<String>,
    /// Where `schedule install --dir` wrote
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Also remove files and crontab blocks that were changed since they were installed
    #[arg(long)]
    pub force: bool,
}

pub fn run(global: &Global, command: &ScheduleCommand) -> Result<()> {
    match command {
        ScheduleCommand::Install(args) => install::run(global, args),
        ScheduleCommand::Status(args) => status::run(global, args),
        ScheduleCommand::Uninstall(args) => uninstall::run(global, args),
    }
}

/// What every subcommand needs: the config, its zone, and where its manifest is.
struct Setup {
    config: Config,
    /// The config's absolute path, as units name it (UTF-8, one line).
    config_path: String,
    /// `[daemon] timezone`, checked.
    zone: Option<String>,
    manifest_path: PathBuf,
}

impl Setup {
    fn new(global: &Global, dir: Option<&Path>) -> Result<Setup> {
        let Some(config) = settings::config(global)? else {
            bail!("no config file found\nhint: pass --config FILE, set $CAIRN_CONFIG, or create ./cairn.toml");
        };
        let absolute = std::fs::canonicalize(&config.path)
            .with_context(|| format!("resolving the path of {}", config.path.display()))?;
        let config_path = unit_safe(&absolute, "config file")?;
        let zone = timezone(&config)?;
        let manifest_dir = match dir {
            Some(dir) => std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))?,
            None => state_dir(&config)?,
        };
        let manifest_path = manifest_dir.join(manifest::file_name(&absolute));
        Ok(Setup { config, config_path, zone, manifest_path })
    }

    fn manifest(&self) -> Result<Option<Manifest>> {
        let text = match std::fs::read_to_string(&self.manifest_path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.manifest_path.display())),
        };
        let manifest: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("reading schedule manifest {}", self.manifest_path.display()))?;
        if manifest.version > manifest::VERSION {
            bail!(
                "{} was written by a newer cairn (manifest version {})",
                self.manifest_path.display(),
                manifest.version
            );
        }
        Ok(Some(manifest))
    }

    /// Save the manifest, or remove it once nothing is installed.
    fn save(&self, manifest: &Manifest) -> Result<()> {
        if manifest.is_empty() {
            return host::remove_file(&self.manifest_path);
        }
        host::write_file(&self.manifest_path, &(serde_json::to_string_pretty(manifest)? + "\n"))
    }

    /// How a scheduled run starts: this binary with this config.
    fn invocation(&self, quiet: bool) -> Result<Invocation> {
        let exe = std::env::current_exe().context("finding the path of the cairn binary")?;
        let binary = unit_safe(&std::fs::canonicalize(&exe).unwrap_or(exe), "cairn binary")?;
        Ok(Invocation { binary, config: self.config_path.clone(), quiet })
    }

    /// A job's checked schedule: it exists, has a schedule, and every expression converts
    /// and fires some day.
    fn job(&self, name: &str) -> Result<JobSchedule> {
        let job = self.config.job(name)?;
        if job.schedule.is_empty() {
            bail!(
                "job {name} has no schedule\nhint: add e.g. `schedule = \"0 2 * * *\"` to [jobs.{name}] in {}",
                self.config.path.display()
            );
        }
        let mut schedule = Vec::new();
        for text in &job.schedule {
            let expr = CronExpr::parse(text).map_err(|e| anyhow!("job {name}: schedule {text:?}: {e}"))?;
            if expr.next_after(&Utc::now(), Gap::RunAfter).is_none() {
                bail!("job {name}: schedule {text:?} never runs: no date matches it\nhint: check its day and month");
            }
            schedule.push(expr);
        }
        let jitter = job.jitter.as_deref().and_then(config::parse_interval);
        Ok(JobSchedule { job: name.to_string(), schedule, jitter })
    }

    fn scheduled_jobs(&self) -> Vec<&str> {
        self.config.file.jobs.iter().filter(|(_, j)| !j.schedule.is_empty()).map(|(n, _)| n.as_str()).collect()
    }
}

/// A path that can go into a unit or crontab line.
fn unit_safe(path: &Path, what: &str) -> Result<String> {
    match path.to_str() {
        Some(text) if !text.contains(['\n', '\r']) => Ok(text.to_string()),
        _ => bail!(
            "the path of the {what} ({}) is not UTF-8 or holds a line break; units cannot name it",
            path.display()
        ),
    }
}

/// `[daemon] timezone`, if set and a zone systemd and cairn both know.
fn timezone(config: &Config) -> Result<Option<String>> {
    let Some(zone) = config.file.daemon.as_ref().and_then(|d| d.timezone.clone()) else { return Ok(None) };
    match zone.parse::<chrono_tz::Tz>() {
        Ok(_) => Ok(Some(zone)),
        Err(_) => bail!(
            "{}: daemon.timezone {zone:?} is not an IANA time zone\nhint: e.g. \"Europe/Berlin\", \"America/New_York\", \"UTC\"",
            config.path.display()
        ),
    }
}

/// The state directory shared with the run history (see [`crate::history::state_dir`]).
fn state_dir(config: &Config) -> Result<PathBuf> {
    Ok(crate::history::state_dir(Some(config)))
}

/// Progress lines on stdout, problems on stderr; problems make the exit code "partial".
struct Report {
    quiet: bool,
    problems: usize,
}

impl Report {
    fn say(&self, line: impl AsRef<str>) {
        // What was done is on disk either way; a failing stdout must not stop it half-way.
        if !self.quiet {
            let _ = outln!("{}", line.as_ref());
        }
    }

    fn note(&self, line: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("note: {}", line.as_ref());
        }
    }

    fn problem(&mut self, message: impl AsRef<str>) {
        eprintln!("warning: {}", message.as_ref());
        self.problems += 1;
    }

    fn finish(self, what: &str) -> Result<()> {
        match self.problems {
            0 => Ok(()),
            n => Err(Partial(format!("{what}, with {n} problem(s) (see the warnings above)")).into()),
        }
    }
}

/// `disable --now` the timers of jobs whose units are about to go.
fn disable_timers(user: bool, jobs: BTreeSet<&str>, report: &mut Report) {
    if jobs.is_empty() {
        return;
    }
    let timers: Vec<String> = jobs.iter().map(|j| format!("{}.timer", systemd::unit_stem(j))).collect();
    let mut args = vec!["disable", "--now"];
    args.extend(timers.iter().map(String::as_str));
    if let Err(e) = host::systemctl(user, &args) {
        report.problem(crate::exit::message(&e));
    }
}

/// Remove recorded files that are still as written; keep (and return) those changed since,
/// unless `force`.
fn remove_recorded(records: &[FileRecord], force: bool, report: &mut Report) -> Result<Vec<FileRecord>> {
    let mut kept = Vec::new();
    for record in records {
        match host::file_state(&record.path, None, Some(&record.blake3))? {
            FileState::Missing => report.say(format!("already gone {}", record.path.display())),
            FileState::Changed if !force => {
                report.problem(format!(
                    "kept {}: it was changed since `cairn schedule install` wrote it\nhint: look at it and delete it yourself, or pass --force",
                    record.path.display()
                ));
                kept.push(record.clone());
            }
            _ => {
                host::remove_file(&record.path)?;
                report.say(format!("removed {}", record.path.display()));
            }
        }
    }
    Ok(kept)
}

fn block_error(target: &CrontabTarget, e: &crontab::BlockError) -> anyhow::Error {
    anyhow!("{}: {e}\nhint: fix the cairn marker lines by hand", target.describe())
}
