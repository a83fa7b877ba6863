//! `cairn schedule uninstall`: remove what the manifest records, while it is unchanged.

use std::collections::BTreeSet;

use anyhow::{bail, Result};

use super::{block_error, disable_timers, remove_recorded, Report, Setup, UninstallArgs};
use crate::cli::Global;
use crate::units::crontab;
use crate::units::host;
use crate::units::manifest::{hash, CrontabRecord, FileRecord, Kind};

pub(super) fn run(global: &Global, args: &UninstallArgs) -> Result<()> {
    let setup = Setup::new(global, args.dir.as_deref())?;
    let mut report = Report { quiet: global.quiet, problems: 0 };
    let Some(mut manifest) = setup.manifest()? else {
        report.say(format!(
            "nothing is installed for {} (no manifest at {})",
            setup.config_path,
            setup.manifest_path.display()
        ));
        return Ok(());
    };
    let installed = manifest.jobs();
    if let Some(job) = args.jobs.iter().find(|j| !installed.contains(j.as_str())) {
        let list: Vec<&str> = installed.iter().copied().collect();
        bail!("job {job} is not installed\nhint: installed jobs: {}", list.join(", "));
    }
    let remove: BTreeSet<String> = if args.jobs.is_empty() {
        installed.iter().map(|j| j.to_string()).collect()
    } else {
        args.jobs.iter().cloned().collect()
    };
    if manifest.kind.is_systemd() {
        let user = manifest.kind == Kind::SystemdUser;
        let live = manifest.dir.is_none();
        if live {
            disable_timers(user, remove.iter().map(String::as_str).collect(), &mut report);
        }
        let (going, staying): (Vec<FileRecord>, Vec<FileRecord>) =
            manifest.files.iter().cloned().partition(|r| remove.contains(&r.job));
        let kept = remove_recorded(&going, args.force, &mut report)?;
        manifest.files = staying.into_iter().chain(kept).collect();
        if live {
            if let Err(e) = host::systemctl(user, &["daemon-reload"]) {
                report.problem(crate::exit::message(&e));
            }
        }
    }
    if let Some(record) = manifest.crontab.take() {
        manifest.crontab = uninstall_cron(&setup, record, &remove, args.force, &mut report)?;
    }
    setup.save(&manifest)?;
    let left = manifest.jobs();
    let gone: Vec<&str> = remove.iter().map(String::as_str).filter(|j| !left.contains(j)).collect();
    if !gone.is_empty() {
        report.say(format!("uninstalled {}: {}", manifest.kind.describe(), gone.join(", ")));
    }
    report.finish("uninstalled")
}

/// Take the jobs' lines out of the block (the whole block when none stay); returns the
/// record of what is left.
fn uninstall_cron(
    setup: &Setup,
    mut record: CrontabRecord,
    remove: &BTreeSet<String>,
    force: bool,
    report: &mut Report,
) -> Result<Option<CrontabRecord>> {
    let target = record.target.clone();
    let (current, _) = host::read_crontab(&target)?;
    let Some(range) = crontab::find_block(&current, &setup.config_path).map_err(|e| block_error(&target, &e))? else {
        report.say(format!("no cairn block in {} any more", target.describe()));
        return Ok(None);
    };
    if hash(current[range].as_bytes()) != record.blake3 && !force {
        report.problem(format!(
            "kept the cairn block in {}: it was changed since it was installed\nhint: look at it and remove it yourself, or pass --force",
            target.describe()
        ));
        return Ok(Some(record));
    }
    record.jobs.retain(|job, _| !remove.contains(job));
    if record.jobs.is_empty() {
        let rest = crontab::remove(&current, &setup.config_path).map_err(|e| block_error(&target, &e))?;
        let rest = rest.unwrap_or_default();
        if record.created_file && rest.trim().is_empty() {
            host::remove_crontab(&target)?;
            report.say(format!("removed {}", target.describe()));
        } else {
            host::write_crontab(&target, &rest)?;
            report.say(format!("removed the cairn block from {}", target.describe()));
        }
        return Ok(None);
    }
    let block = crontab::block(&setup.config_path, record.cron_zone(), &record.jobs);
    let merged = crontab::merge(&current, &setup.config_path, &block).map_err(|e| block_error(&target, &e))?;
    host::write_crontab(&target, &merged)?;
    report.say(format!("updated the cairn block in {}", target.describe()));
    record.blake3 = hash(block.as_bytes());
    Ok(Some(record))
}
