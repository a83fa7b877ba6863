//! `cairn schedule install`: write the units or the crontab block, record them, enable them.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use chrono::Local;

use super::{block_error, disable_timers, remove_recorded, InstallArgs, Report, Setup};
use crate::cli::Global;
use crate::units::host::{self, FileState};
use crate::units::manifest::{self, hash, CrontabRecord, CrontabTarget, FileRecord, Kind, Manifest};
use crate::units::{self, crontab, systemd, JobSchedule};

/// Where an install goes.
enum Place {
    Systemd { system: bool, unit_dir: PathBuf },
    Cron { system: bool, target: CrontabTarget },
}

impl Place {
    fn new(args: &InstallArgs) -> Result<Place> {
        let system = args.system || (!args.user && host::is_root());
        let dir = args.dir.as_deref().map(std::path::absolute).transpose().context("resolving --dir")?;
        if args.cron {
            let target = match (&args.crontab_file, &dir) {
                (Some(file), _) => CrontabTarget::File(std::path::absolute(file).context("resolving --crontab-file")?),
                (None, Some(dir)) => CrontabTarget::File(dir.join(if system { "cairn" } else { "crontab" })),
                (None, None) if system => CrontabTarget::File(host::CRON_D_FILE.into()),
                (None, None) => CrontabTarget::UserCrontab,
            };
            return Ok(Place::Cron { system, target });
        }
        let unit_dir = match dir {
            Some(dir) => dir,
            None if system => PathBuf::from(host::SYSTEM_UNIT_DIR),
            None => host::user_unit_dir()?,
        };
        Ok(Place::Systemd { system, unit_dir })
    }

    fn kind(&self) -> Kind {
        match self {
            Place::Systemd { system: true, .. } => Kind::SystemdSystem,
            Place::Systemd { system: false, .. } => Kind::SystemdUser,
            Place::Cron { system: true, .. } => Kind::CronSystem,
            Place::Cron { system: false, .. } => Kind::CronUser,
        }
    }

    /// Is this where `previous` installed to? Switching needs an uninstall first, so that
    /// nothing is left running twice.
    fn check_same_as(&self, previous: &Manifest, config: &str) -> Result<()> {
        let same = previous.kind == self.kind()
            && match self {
                Place::Systemd { unit_dir, .. } => previous.files.iter().all(|f| f.path.parent() == Some(unit_dir)),
                Place::Cron { target, .. } => previous.crontab.as_ref().is_none_or(|c| c.target == *target),
            };
        if same {
            return Ok(());
        }
        let place = match (&previous.crontab, previous.files.first()) {
            (Some(c), _) => c.target.describe(),
            (None, Some(f)) => f.path.parent().unwrap_or(Path::new("/")).display().to_string(),
            (None, None) => "nowhere".into(),
        };
        bail!(
            "the schedules of {config} are installed already as {} in {place}\nhint: run `cairn schedule uninstall{}` first, then install them the new way",
            previous.kind.describe(),
            previous.dir.as_ref().map(|d| format!(" --dir {}", d.display())).unwrap_or_default()
        )
    }
}

pub(super) fn run(global: &Global, args: &InstallArgs) -> Result<()> {
    let setup = Setup::new(global, args.dir.as_deref())?;
    let place = Place::new(args)?;
    let previous = setup.manifest()?;
    if let Some(previous) = &previous {
        place.check_same_as(previous, &setup.config_path)?;
    }
    let jobs = select_jobs(&setup, &args.jobs, previous.as_ref())?;
    warn_about_secrets(&setup, &jobs);
    let before = previous.clone();
    let mut manifest = previous.unwrap_or_else(|| Manifest {
        version: manifest::VERSION,
        config: PathBuf::from(&setup.config_path),
        kind: place.kind(),
        dir: None,
        installed_at: String::new(),
        files: Vec::new(),
        crontab: None,
    });
    manifest.dir = args.dir.as_deref().map(std::path::absolute).transpose()?;
    let mut report = Report { quiet: global.quiet, problems: 0 };
    let done = match &place {
        Place::Systemd { system, unit_dir } => {
            install_systemd(&setup, args, (*system, unit_dir), &jobs, &mut manifest, &mut report)?
        }
        Place::Cron { system, target } => {
            install_cron(&setup, args, (*system, target), &jobs, &mut manifest, &mut report)?
        }
    };
    if done {
        // A second install of the same thing changes nothing, not even the manifest.
        if before.as_ref() != Some(&manifest) {
            manifest.installed_at = Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
            setup.save(&manifest)?;
        }
        let names: Vec<&str> = jobs.iter().map(|j| j.job.as_str()).collect();
        report.say(format!("installed {} as {}: {}", setup.config_path, place.kind().describe(), names.join(", ")));
    }
    report.finish("installed")
}

/// The jobs to install: those named (plus those installed before that still have a
/// schedule), or every job with a schedule.
fn select_jobs(setup: &Setup, requested: &[String], previous: Option<&Manifest>) -> Result<Vec<JobSchedule>> {
    let scheduled = setup.scheduled_jobs();
    let mut names: BTreeSet<&str> = requested.iter().map(String::as_str).collect();
    if requested.is_empty() {
        if scheduled.is_empty() {
            bail!(
                "no job in {} has a schedule\nhint: add e.g. `schedule = \"0 2 * * *\"` to a [jobs.NAME] table",
                setup.config.path.display()
            );
        }
        names.extend(&scheduled);
    } else if let Some(previous) = previous {
        names.extend(previous.jobs().into_iter().filter(|j| scheduled.contains(j)));
    }
    names.into_iter().map(|name| setup.job(name)).collect()
}

/// Units run without a terminal or the caller's environment: a repository they cannot
/// unlock would fail every night.
fn warn_about_secrets(setup: &Setup, jobs: &[JobSchedule]) {
    let config = &setup.config;
    let mut named: BTreeSet<&str> = BTreeSet::new();
    for job in jobs {
        let listed = &config.file.jobs[&job.job].repositories;
        named.extend(
            config
                .repositories()
                .into_iter()
                .map(|(n, _)| n)
                .filter(|n| listed.is_empty() || listed.iter().any(|l| l == n)),
        );
    }
    for (name, repo) in config.repositories() {
        if named.contains(name) && repo.password.is_none() && repo.password_file.is_none() && repo.key_file.is_none() {
            eprintln!(
                "warning: repository {name} names no password_file or key_file: scheduled runs have no terminal to ask on and no $CAIRN_PASSWORD\nhint: add `password_file = \"/etc/cairn/password\"` to it in {}",
                config.path.display()
            );
        }
    }
}

/// Write the units (`Ok(false)`: dry run, nothing written), remove those of jobs no longer
/// installed, then reload and enable through systemctl unless `--dir` was given.
fn install_systemd(
    setup: &Setup,
    args: &InstallArgs,
    (system, unit_dir): (bool, &Path),
    jobs: &[JobSchedule],
    manifest: &mut Manifest,
    report: &mut Report,
) -> Result<bool> {
    let run = setup.invocation(false)?;
    let files = units::systemd_files(unit_dir, &run, jobs, setup.zone.as_deref(), system);
    if args.dry_run {
        for file in &files {
            outln!("# {}\n{}", file.path.display(), file.content)?;
        }
        return Ok(false);
    }
    let recorded: HashMap<&Path, &str> = manifest.files.iter().map(|r| (r.path.as_path(), r.blake3.as_str())).collect();
    let mut states = Vec::new();
    let mut conflicts = Vec::new();
    for file in &files {
        let state = host::file_state(&file.path, Some(&file.content), recorded.get(file.path.as_path()).copied())?;
        match state {
            FileState::Changed => conflicts.push(format!("{} was changed since cairn wrote it", file.path.display())),
            FileState::Foreign => conflicts.push(format!(
                "{} exists and was not written by `cairn schedule install` for this config",
                file.path.display()
            )),
            _ => {}
        }
        states.push(state);
    }
    if !conflicts.is_empty() && !args.force {
        bail!("{}\nhint: look at them and move them away, or pass --force to overwrite them", conflicts.join("\n"));
    }
    let mut restart = Vec::new();
    for (file, state) in files.iter().zip(&states) {
        if *state == FileState::Same {
            report.say(format!("unchanged {}", file.path.display()));
            continue;
        }
        host::write_file(&file.path, &file.content)?;
        report.say(format!("wrote {}", file.path.display()));
        if *state != FileState::Missing {
            restart.push(format!("{}.timer", systemd::unit_stem(&file.job)));
        }
    }
    let wanted: BTreeSet<&str> = jobs.iter().map(|j| j.job.as_str()).collect();
    let (stale, _): (Vec<FileRecord>, Vec<FileRecord>) =
        manifest.files.iter().cloned().partition(|r| !wanted.contains(r.job.as_str()));
    let live = args.dir.is_none();
    if live {
        disable_timers(!system, stale.iter().map(|r| r.job.as_str()).collect(), report);
    }
    let kept = remove_recorded(&stale, args.force, report)?;
    manifest.files = files
        .iter()
        .map(|f| FileRecord { job: f.job.clone(), path: f.path.clone(), blake3: hash(f.content.as_bytes()) })
        .collect();
    manifest.files.extend(kept);
    if live {
        restart.dedup();
        enable_timers(!system, jobs, &restart, report);
    } else {
        report.note("--dir given: systemctl was not run; nothing is enabled");
    }
    Ok(true)
}

/// `daemon-reload`, `enable --now` every job's timer, `restart` those whose units changed.
fn enable_timers(user: bool, jobs: &[JobSchedule], restart: &[String], report: &mut Report) {
    let scope = if user { "--user " } else { "" };
    let timers: Vec<String> = jobs.iter().map(|j| format!("{}.timer", systemd::unit_stem(&j.job))).collect();
    let hint = format!(
        "\nhint: the units are written; once systemd is reachable run `systemctl {scope}daemon-reload && systemctl {scope}enable --now {}`",
        timers.join(" ")
    );
    if let Err(e) = host::systemctl(user, &["daemon-reload"]) {
        return report.problem(format!("{}{hint}", crate::exit::message(&e)));
    }
    let mut enable = vec!["enable", "--now"];
    enable.extend(timers.iter().map(String::as_str));
    if let Err(e) = host::systemctl(user, &enable) {
        return report.problem(format!("{}{hint}", crate::exit::message(&e)));
    }
    if !restart.is_empty() {
        let mut args = vec!["restart"];
        args.extend(restart.iter().map(String::as_str));
        if let Err(e) = host::systemctl(user, &args) {
            report.problem(format!(
                "{}\nhint: the timers keep their old schedule until restarted",
                crate::exit::message(&e)
            ));
        }
    }
    report.say(format!("enabled {}", timers.join(", ")));
    if let Some(name) = crate::env::get("USER").filter(|n| user && !host::lingering(n)) {
        report.note(format!(
            "user timers run only while {name} is logged in; `loginctl enable-linger {name}` lets them run at any time"
        ));
    }
}

/// Merge the block into the crontab (`Ok(false)`: dry run).
fn install_cron(
    setup: &Setup,
    args: &InstallArgs,
    (system, target): (bool, &CrontabTarget),
    jobs: &[JobSchedule],
    manifest: &mut Manifest,
    report: &mut Report,
) -> Result<bool> {
    let run = setup.invocation(true)?;
    let lines = units::cron_lines(&run, jobs, system.then_some("root"));
    let restore_zone = setup.zone.as_ref().and_then(|_| host::local_zone());
    let zone = setup.zone.as_deref().map(|zone| crontab::CronZone { zone, restore: restore_zone.as_deref() });
    let block = crontab::block(&setup.config_path, zone, &lines);
    if args.dry_run {
        outln!("# {}\n{block}", target.describe())?;
        return Ok(false);
    }
    if let Some(zone) = &setup.zone {
        report.note(format!(
            "the block sets CRON_TZ={zone}: cronie honours it, Debian's cron runs every line in the system's local time"
        ));
    }
    for job in jobs.iter().filter(|j| j.jitter.is_some()) {
        report.note(format!("cron has no random delay: the jitter of job {} is not applied", job.job));
    }
    let (current, existed) = host::read_crontab(target)?;
    let found = crontab::find_block(&current, &setup.config_path).map_err(|e| block_error(target, &e))?;
    let recorded = manifest.crontab.as_ref();
    if let Some(range) = found {
        let text = &current[range];
        let changed = recorded.is_some_and(|r| r.blake3 != hash(text.as_bytes()));
        if text != block && changed && !args.force {
            bail!(
                "the cairn block in {} was changed since it was installed\nhint: look at it; --force replaces it",
                target.describe()
            );
        }
    }
    let merged = crontab::merge(&current, &setup.config_path, &block).map_err(|e| block_error(target, &e))?;
    if merged == current {
        report.say(format!("unchanged block in {}", target.describe()));
    } else {
        host::write_crontab(target, &merged)?;
        report.say(format!("wrote block into {}", target.describe()));
    }
    manifest.crontab = Some(CrontabRecord {
        target: target.clone(),
        zone: setup.zone.clone(),
        restore_zone,
        jobs: lines,
        blake3: hash(block.as_bytes()),
        created_file: recorded.map_or(!existed, |r| r.created_file),
    });
    Ok(true)
}
