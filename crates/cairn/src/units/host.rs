//! The machine's side of installing schedules: where units and crontabs live, writing and
//! removing files, and running `systemctl` and `crontab`. The only module of `units` that
//! does I/O.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::manifest::{hash, CrontabTarget};
use crate::env;

/// Does this process run as root? (The owner of `/proc/self` is the effective user.)
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Where systemd looks for units of the user: `$XDG_CONFIG_HOME/systemd/user`, else
/// `~/.config/systemd/user`.
pub fn user_unit_dir() -> Result<PathBuf> {
    if let Some(xdg) = env::get("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(xdg).join("systemd/user"));
    }
    match env::get("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".config/systemd/user")),
        None => bail!(
            "neither $XDG_CONFIG_HOME nor $HOME is set: no place for user units\nhint: pass --dir DIR or --system"
        ),
    }
}

pub const SYSTEM_UNIT_DIR: &str = "/etc/systemd/system";
pub const CRON_D_FILE: &str = "/etc/cron.d/cairn";

/// What a file on disk is, compared with the content cairn wants there and the hash it
/// recorded when it wrote it last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    Missing,
    /// Holds exactly the wanted content.
    Same,
    /// Holds what cairn wrote last time: safe to replace or remove.
    AsWritten,
    /// Changed since cairn wrote it.
    Changed,
    /// There, but cairn has no record of writing it.
    Foreign,
}

/// The state of `path` given the `wanted` content (if any) and the `recorded` hash (if any).
pub fn file_state(path: &Path, wanted: Option<&str>, recorded: Option<&str>) -> Result<FileState> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileState::Missing),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    Ok(if wanted.is_some_and(|w| w.as_bytes() == bytes) {
        FileState::Same
    } else if recorded.is_some_and(|r| r == hash(&bytes)) {
        FileState::AsWritten
    } else if recorded.is_some() {
        FileState::Changed
    } else {
        FileState::Foreign
    })
}

/// Replace `path` with `content` (mode 0644) by writing a temporary file beside it and
/// renaming it over: a reader never sees half a unit.
pub fn write_file(path: &Path, content: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating directory {}", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".cairn-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(content.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644))?;
    tmp.as_file().sync_all().with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path).map_err(|e| e.error).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

pub fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The crontab's text, and whether it existed.
pub fn read_crontab(target: &CrontabTarget) -> Result<(String, bool)> {
    match target {
        CrontabTarget::File(path) => match std::fs::read_to_string(path) {
            Ok(text) => Ok((text, true)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((String::new(), false)),
            Err(e) => Err(e).with_context(|| format!("reading crontab file {}", path.display())),
        },
        CrontabTarget::UserCrontab => {
            let out = crontab_command().arg("-l").stdin(Stdio::null()).output().map_err(no_crontab)?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            if out.status.success() {
                Ok((String::from_utf8_lossy(&out.stdout).into_owned(), true))
            } else if stderr.contains("no crontab for") {
                Ok((String::new(), false))
            } else {
                bail!("`crontab -l` failed: {}", stderr.trim())
            }
        }
    }
}

/// Replace the crontab with `text`.
pub fn write_crontab(target: &CrontabTarget, text: &str) -> Result<()> {
    match target {
        CrontabTarget::File(path) => write_file(path, text),
        CrontabTarget::UserCrontab => {
            let mut child = crontab_command()
                .arg("-")
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(no_crontab)?;
            child.stdin.take().expect("piped").write_all(text.as_bytes()).context("writing to `crontab -`")?;
            let out = child.wait_with_output().context("waiting for `crontab -`")?;
            if !out.status.success() {
                bail!("`crontab -` refused the new crontab: {}", String::from_utf8_lossy(&out.stderr).trim());
            }
            Ok(())
        }
    }
}

/// Remove the crontab (a file, or the user's crontab with `crontab -r`).
pub fn remove_crontab(target: &CrontabTarget) -> Result<()> {
    match target {
        CrontabTarget::File(path) => remove_file(path),
        CrontabTarget::UserCrontab => {
            let out = crontab_command().arg("-r").stdin(Stdio::null()).output().map_err(no_crontab)?;
            if !out.status.success() {
                bail!("`crontab -r` failed: {}", String::from_utf8_lossy(&out.stderr).trim());
            }
            Ok(())
        }
    }
}

fn crontab_command() -> Command {
    Command::new("crontab")
}

fn no_crontab(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        anyhow::anyhow!(
            "the `crontab` command is not installed\nhint: install cron, or install systemd timers (--systemd)"
        )
    } else {
        anyhow::Error::new(e).context("running `crontab`")
    }
}

/// `systemctl [--user] ARGS…`; an error quotes what systemctl said.
pub fn systemctl(user: bool, args: &[&str]) -> Result<String> {
    let mut command = Command::new("systemctl");
    if user {
        command.arg("--user");
    }
    let shown = format!("systemctl {}{}", if user { "--user " } else { "" }, args.join(" "));
    let out = command.args(args).stdin(Stdio::null()).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!("`{shown}`: systemctl is not installed")
        } else {
            anyhow::Error::new(e).context(format!("running `{shown}`"))
        }
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let said = if stderr.trim().is_empty() { stdout.as_str() } else { stderr.trim() };
        bail!("`{shown}` failed: {said}");
    }
    Ok(stdout)
}

/// The machine's time zone name (what cron runs in): `/etc/timezone`, else the target of
/// the `/etc/localtime` link below `zoneinfo/`.
pub fn local_zone() -> Option<String> {
    let named = std::fs::read_to_string("/etc/timezone").ok().map(|t| t.trim().to_string());
    let linked = || {
        let target = std::fs::read_link("/etc/localtime").ok()?;
        let text = target.to_str()?;
        text.split_once("zoneinfo/").map(|(_, zone)| zone.to_string())
    };
    named.filter(|z| !z.is_empty()).or_else(linked)
}

/// Does the user have lingering on (user timers run while nobody is logged in)?
pub fn lingering(user: &str) -> bool {
    Path::new("/var/lib/systemd/linger").join(user).exists()
}
