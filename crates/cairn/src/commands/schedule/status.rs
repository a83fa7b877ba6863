//! `cairn schedule status`: per job, how it is installed, the installed lines, whether the
//! files are still as written, and when it runs next.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Result;
use chrono::{DateTime, FixedOffset, Local, Utc};
use serde::Serialize;

use super::{Setup, StatusArgs};
use crate::cli::Global;
use crate::units::cron::{CronExpr, Gap};
use crate::units::host::{self, FileState};
use crate::units::manifest::{hash, Kind, Manifest};
use crate::units::{self, crontab, systemd, JobSchedule};

#[derive(Serialize)]
struct Status {
    config: String,
    manifest: PathBuf,
    /// `None`: nothing is installed.
    installed: Option<Installed>,
    /// `[daemon] timezone`; `None`: local time.
    timezone: Option<String>,
    jobs: Vec<JobStatus>,
}

#[derive(Serialize)]
struct Installed {
    kind: Kind,
    dir: Option<PathBuf>,
    installed_at: String,
}

#[derive(Serialize)]
struct JobStatus {
    job: String,
    schedule: Vec<String>,
    /// How the job is installed; `None`: it is not.
    installed: Option<Kind>,
    /// The installed files (or crontab) and their state: ok, changed, missing, unreadable.
    files: Vec<FileStatus>,
    /// The installed `OnCalendar=` and `RandomizedDelaySec=` lines, or crontab lines.
    lines: Vec<String>,
    /// Whether an install now would write what is installed (`None`: not known, e.g. a file
    /// was changed or the job lost its schedule).
    up_to_date: Option<bool>,
    /// `systemctl is-active` of the timer (installed without --dir only).
    timer: Option<String>,
    next_run: Option<DateTime<FixedOffset>>,
    /// systemd adds a random delay of up to this much.
    jitter_secs: Option<u64>,
    error: Option<String>,
}

#[derive(Serialize)]
struct FileStatus {
    path: String,
    state: &'static str,
}

pub(super) fn run(global: &Global, args: &StatusArgs) -> Result<()> {
    let setup = Setup::new(global, args.dir.as_deref())?;
    let manifest = setup.manifest()?;
    let mut names: BTreeSet<&str> = setup.config.file.jobs.keys().map(String::as_str).collect();
    if let Some(m) = &manifest {
        names.extend(m.jobs());
    }
    let now = Utc::now();
    let jobs = names.into_iter().map(|name| job_status(&setup, manifest.as_ref(), name, now)).collect();
    let status = Status {
        config: setup.config_path.clone(),
        manifest: setup.manifest_path.clone(),
        installed: manifest.as_ref().map(|m| Installed {
            kind: m.kind,
            dir: m.dir.clone(),
            installed_at: m.installed_at.clone(),
        }),
        timezone: setup.zone.clone(),
        jobs,
    };
    if args.json {
        return crate::commands::print_json(&status);
    }
    print_status(&status, now)?;
    Ok(())
}

fn job_status(setup: &Setup, manifest: Option<&Manifest>, name: &str, now: DateTime<Utc>) -> JobStatus {
    let configured = setup.config.file.jobs.get(name);
    let mut status = JobStatus {
        job: name.to_string(),
        schedule: configured.map(|j| j.schedule.clone()).unwrap_or_default(),
        installed: manifest.filter(|m| m.jobs().contains(name)).map(|m| m.kind),
        files: Vec::new(),
        lines: Vec::new(),
        up_to_date: None,
        timer: None,
        next_run: None,
        jitter_secs: None,
        error: None,
    };
    let schedule = match configured {
        None => {
            status.error = Some(format!("installed, but {} has no job {name} any more", setup.config.path.display()));
            None
        }
        Some(job) if job.schedule.is_empty() => None,
        Some(_) => setup.job(name).map_err(|e| status.error = Some(crate::exit::message(&e))).ok(),
    };
    let (Some(manifest), Some(kind)) = (manifest, status.installed) else { return status };
    if kind.is_systemd() {
        systemd_detail(setup, manifest, schedule.as_ref(), &mut status);
    } else {
        crontab_detail(setup, manifest, schedule.as_ref(), &mut status);
    }
    if status.files.iter().any(|f| f.state != "ok") {
        // The file states say what is wrong; "outdated" would only repeat it.
        status.up_to_date = None;
    }
    if let Some(schedule) = &schedule {
        let gap = if kind.is_systemd() { Gap::Skip } else { Gap::RunAfter };
        status.next_run = next_run(&schedule.schedule, setup.zone.as_deref(), now, gap);
        status.jitter_secs = schedule.jitter.filter(|_| kind.is_systemd()).map(|j| j.as_secs());
    }
    status
}

/// The job's unit files, their `OnCalendar=` lines, whether an install now would write the
/// same, and (for real installs) whether systemd runs the timer.
fn systemd_detail(setup: &Setup, manifest: &Manifest, schedule: Option<&JobSchedule>, status: &mut JobStatus) {
    let records: Vec<_> = manifest.files.iter().filter(|f| f.job == status.job).collect();
    for record in &records {
        let state = host::file_state(&record.path, None, Some(&record.blake3)).ok();
        status.files.push(FileStatus { path: record.path.display().to_string(), state: state_word(state) });
        if record.path.extension().is_some_and(|e| e == "timer") {
            let text = std::fs::read_to_string(&record.path).unwrap_or_default();
            let keys = ["OnCalendar=", "RandomizedDelaySec="];
            status.lines.extend(text.lines().filter(|l| keys.iter().any(|k| l.starts_with(k))).map(String::from));
        }
    }
    let dir = records.first().and_then(|r| r.path.parent()).unwrap_or(Path::new("/"));
    if let (Some(schedule), Ok(run)) = (schedule, setup.invocation(false)) {
        let system = manifest.kind == Kind::SystemdSystem;
        let wanted = units::systemd_files(dir, &run, std::slice::from_ref(schedule), setup.zone.as_deref(), system);
        let recorded =
            |path: &Path, content: &str| records.iter().any(|r| r.path == path && r.blake3 == hash(content.as_bytes()));
        status.up_to_date = Some(wanted.iter().all(|f| recorded(&f.path, &f.content)));
    }
    if manifest.dir.is_none() {
        let timer = format!("{}.timer", systemd::unit_stem(&status.job));
        let answer = host::systemctl(manifest.kind == Kind::SystemdUser, &["is-active", &timer]);
        status.timer =
            Some(answer.unwrap_or_else(|e| crate::exit::message(&e)).lines().next().unwrap_or("").to_string());
    }
}

/// The job's crontab lines, the state of the block, and whether an install now would write
/// the same lines.
fn crontab_detail(setup: &Setup, manifest: &Manifest, schedule: Option<&JobSchedule>, status: &mut JobStatus) {
    let Some(record) = &manifest.crontab else { return };
    status.lines = record.jobs.get(&status.job).cloned().unwrap_or_default();
    let state =
        host::read_crontab(&record.target).ok().map(|(text, _)| match crontab::find_block(&text, &setup.config_path) {
            Ok(Some(range)) if hash(text[range.clone()].as_bytes()) == record.blake3 => FileState::AsWritten,
            Ok(Some(_)) | Err(_) => FileState::Changed,
            Ok(None) => FileState::Missing,
        });
    status.files.push(FileStatus { path: record.target.describe(), state: state_word(state) });
    if let (Some(schedule), Ok(run)) = (schedule, setup.invocation(true)) {
        let user = (manifest.kind == Kind::CronSystem).then_some("root");
        let lines = units::cron_lines(&run, std::slice::from_ref(schedule), user);
        status.up_to_date = Some(lines.get(&status.job) == Some(&status.lines) && record.zone == setup.zone);
    }
}

fn state_word(state: Option<FileState>) -> &'static str {
    match state {
        Some(FileState::Missing) => "missing",
        Some(FileState::Changed | FileState::Foreign) => "changed",
        Some(FileState::Same | FileState::AsWritten) => "ok",
        None => "unreadable",
    }
}

/// The soonest next run of any of the expressions, in the configured zone or local time.
fn next_run(schedule: &[CronExpr], zone: Option<&str>, now: DateTime<Utc>, gap: Gap) -> Option<DateTime<FixedOffset>> {
    fn soonest<Z: chrono::TimeZone>(
        schedule: &[CronExpr],
        now: &DateTime<Z>,
        gap: Gap,
    ) -> Option<DateTime<FixedOffset>> {
        schedule.iter().filter_map(|e| e.next_after(now, gap)).min().map(|t| t.fixed_offset())
    }
    match zone.and_then(|z| z.parse::<chrono_tz::Tz>().ok()) {
        Some(tz) => soonest(schedule, &now.with_timezone(&tz), gap),
        None => soonest(schedule, &now.with_timezone(&Local), gap),
    }
}

fn print_status(status: &Status, now: DateTime<Utc>) -> std::io::Result<()> {
    outln!("config {}", status.config)?;
    match &status.installed {
        Some(i) => outln!(
            "installed as {} at {}{} (manifest {})",
            i.kind.describe(),
            i.installed_at,
            i.dir.as_ref().map(|d| format!(" into {}", d.display())).unwrap_or_default(),
            status.manifest.display()
        )?,
        None => outln!("nothing installed (no manifest at {})", status.manifest.display())?,
    }
    let zone = status.timezone.as_deref().unwrap_or("local time");
    for job in &status.jobs {
        print_job(job, zone, now)?;
    }
    Ok(())
}

fn print_job(job: &JobStatus, zone: &str, now: DateTime<Utc>) -> std::io::Result<()> {
    let how = match (job.installed, job.schedule.is_empty()) {
        (Some(kind), _) => kind.describe(),
        (None, true) => "no schedule",
        (None, false) => "not installed",
    };
    outln!("\njob {}: {how}", job.job)?;
    if !job.schedule.is_empty() {
        outln!("  schedule  {} ({zone})", job.schedule.join(", "))?;
    }
    for line in &job.lines {
        outln!("  {line}")?;
    }
    for file in &job.files {
        outln!("  file      {} ({})", file.path, file.state)?;
    }
    if let Some(timer) = &job.timer {
        outln!("  timer     {timer}")?;
    }
    if job.up_to_date == Some(false) {
        outln!("  outdated  the job or the cairn binary changed since: run `cairn schedule install` again")?;
    }
    match job.next_run {
        Some(next) => {
            let wait = (next.with_timezone(&Utc) - now).num_seconds().max(0) as u64;
            let jitter = job.jitter_secs.map(|s| format!(", plus up to {} random delay", span(s))).unwrap_or_default();
            outln!("  next run  {} (in {}){jitter}", next.format("%Y-%m-%d %H:%M:%S %:z"), span(wait))?;
        }
        None if job.installed.is_some() && job.error.is_none() => outln!("  next run  never")?,
        None => {}
    }
    if let Some(error) = &job.error {
        outln!("  error     {}", error.replace('\n', "\n            "))?;
    }
    Ok(())
}

/// `2d 4h`, `15h 59m`, `12m`, `40s`.
fn span(secs: u64) -> String {
    match (secs / 86_400, secs / 3600 % 24, secs / 60 % 60) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn spans() {
        assert_eq!(super::span(40), "40s");
        assert_eq!(super::span(300), "5m");
        assert_eq!(super::span(57_540), "15h 59m");
        assert_eq!(super::span(3 * 86_400 + 4 * 3600 + 59), "3d 4h");
    }
}
