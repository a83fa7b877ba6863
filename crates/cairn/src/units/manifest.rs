//! The record of one config file's installed schedules: which files and which crontab block
//! `cairn schedule install` wrote, with a hash of each as written.
//!
//! `uninstall` removes only what is recorded here, and only while its hash still matches:
//! a file someone changed since is left in place (and stays recorded). `status` reads it to
//! say what is installed. One manifest per config file, named after the file's path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The manifest format written by this version.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    /// Absolute path of the config file the schedules come from.
    pub config: PathBuf,
    pub kind: Kind,
    /// `--dir`: written there instead of the system's places; nothing was enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// RFC 3339 time of the last install.
    pub installed_at: String,
    /// Unit files (systemd).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileRecord>,
    /// The crontab block (cron).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crontab: Option<CrontabRecord>,
}

/// How the schedules were installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    SystemdUser,
    SystemdSystem,
    CronUser,
    CronSystem,
}

impl Kind {
    pub fn describe(self) -> &'static str {
        match self {
            Kind::SystemdUser => "systemd timer (user)",
            Kind::SystemdSystem => "systemd timer (system)",
            Kind::CronUser => "crontab (user)",
            Kind::CronSystem => "cron.d (system)",
        }
    }

    pub fn is_systemd(self) -> bool {
        matches!(self, Kind::SystemdUser | Kind::SystemdSystem)
    }
}

/// One file as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub job: String,
    pub path: PathBuf,
    pub blake3: String,
}

/// The crontab block as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrontabRecord {
    pub target: CrontabTarget,
    /// `CRON_TZ` of the block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// The machine's zone, set again at the end of the block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_zone: Option<String>,
    /// The lines of each job.
    pub jobs: BTreeMap<String, Vec<String>>,
    /// Hash of the whole block, markers included.
    pub blake3: String,
    /// The file did not exist before: uninstall removes it when nothing else is left in it.
    #[serde(default)]
    pub created_file: bool,
}

/// Where the block lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CrontabTarget {
    /// The user's crontab, through `crontab -l` and `crontab -`.
    UserCrontab,
    /// A file: `/etc/cron.d/cairn`, `--crontab-file`, or `crontab` under `--dir`.
    File(PathBuf),
}

impl CrontabTarget {
    pub fn describe(&self) -> String {
        match self {
            CrontabTarget::UserCrontab => "the user's crontab".into(),
            CrontabTarget::File(path) => path.display().to_string(),
        }
    }
}

impl CrontabRecord {
    pub fn cron_zone(&self) -> Option<super::crontab::CronZone<'_>> {
        let restore = self.restore_zone.as_deref();
        self.zone.as_deref().map(|zone| super::crontab::CronZone { zone, restore })
    }
}

impl Manifest {
    /// Every job with something installed.
    pub fn jobs(&self) -> BTreeSet<&str> {
        let files = self.files.iter().map(|f| f.job.as_str());
        let cron = self.crontab.iter().flat_map(|c| c.jobs.keys().map(String::as_str));
        files.chain(cron).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.crontab.is_none()
    }
}

/// The hash recorded for content.
pub fn hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// The manifest's file name for a config file: the same config always finds its manifest.
pub fn file_name(config: &Path) -> String {
    let id = hash(config.as_os_str().as_encoded_bytes());
    format!("cairn-schedule-{}.json", &id[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_as_json() {
        let manifest = Manifest {
            version: VERSION,
            config: "/srv/cairn.toml".into(),
            kind: Kind::CronUser,
            dir: None,
            installed_at: "2026-05-01T10:00:00+00:00".into(),
            files: vec![],
            crontab: Some(CrontabRecord {
                target: CrontabTarget::File("/tmp/crontab".into()),
                zone: None,
                restore_zone: None,
                jobs: BTreeMap::from([("app".into(), vec!["0 2 * * * x".into()])]),
                blake3: hash(b"block"),
                created_file: true,
            }),
        };
        let json = serde_json::to_string(&manifest).unwrap();
        assert!(json.contains("\"kind\":\"cron-user\"") && json.contains("{\"file\":\"/tmp/crontab\"}"), "{json}");
        let back: Manifest = serde_json::from_str(&json).unwrap();
        assert_eq!(back.crontab, manifest.crontab);
        assert_eq!(back.jobs().into_iter().collect::<Vec<_>>(), ["app"]);
        assert_ne!(file_name(Path::new("/a/cairn.toml")), file_name(Path::new("/b/cairn.toml")));
    }
}
