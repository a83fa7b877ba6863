//! The types of `cairn.toml`, as the file spells them (docs/configuration.md lists every key).
//!
//! Every struct denies unknown keys, so a typo is an error with a line number instead of a
//! setting silently ignored. Strings that may hold secrets or environment-dependent values
//! are [`Text`], which expands `${NAME}` while the file is read.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A string in which `${NAME}` is replaced by the environment variable `NAME` (an error if
/// it is not set; `$${` is a literal `${`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Text(pub String);

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        let raw = String::deserialize(d)?;
        super::expand(&raw).map(Text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// A secret read from the file (after `${NAME}` expansion); shown as `***`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct SecretText(pub Text);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for SecretText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        "***".serialize(s)
    }
}

/// The whole file.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The one repository (or use `repositories`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<RepositoryConfig>,
    /// Several named repositories; a job lists those it writes to.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub repositories: BTreeMap<String, RepositoryConfig>,
    #[serde(default)]
    pub jobs: BTreeMap<String, JobConfig>,
    /// Settings of `cairn daemon` (schedules, history, logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon: Option<DaemonConfig>,
    /// Named notification channels that jobs refer to.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub notifiers: BTreeMap<String, NotifierConfig>,
}

/// `[daemon]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// IANA zone of the schedules, e.g. "Europe/Berlin" (default: the machine's local time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Jobs running at the same time (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_jobs: Option<usize>,
    /// Run a job once at start when a scheduled run was missed while the daemon was down
    /// (default false; a job's own `catch_up` wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<bool>,
    /// How long running jobs may take to finish on SIGTERM before they are cancelled
    /// (default "5m").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_timeout: Option<String>,
    /// Where the run history and the control socket live (default: $XDG_STATE_HOME/cairn,
    /// else ~/.local/state/cairn; /var/lib/cairn for root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<Text>,
    /// Cron expressions of `cairn prune` runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "one_or_many")]
    pub prune_schedule: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogConfig>,
}

/// `[daemon.log]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Directory of the log files (default: none, stderr only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<Text>,
    /// A new file every day or month (default daily).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<Rotation>,
    /// Files kept (default 14).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<u32>,
    /// error, warn, info (default) or debug.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<LogLevel>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Rotation {
    Daily,
    Monthly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

/// Notification channel types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifierKind {
    Ntfy,
    Webhook,
    Slack,
    Discord,
    Email,
    Healthchecks,
}

impl NotifierKind {
    pub fn name(self) -> &'static str {
        match self {
            NotifierKind::Ntfy => "ntfy",
            NotifierKind::Webhook => "webhook",
            NotifierKind::Slack => "slack",
            NotifierKind::Discord => "discord",
            NotifierKind::Email => "email",
            NotifierKind::Healthchecks => "healthchecks",
        }
    }

    /// The keys a notifier of this kind takes besides `type`.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            NotifierKind::Ntfy => &["url", "priority", "tags", "token", "timeout"],
            NotifierKind::Webhook => &["url", "headers", "timeout"],
            NotifierKind::Slack | NotifierKind::Discord => &["url", "timeout"],
            NotifierKind::Email => {
                &["host", "port", "tls", "username", "password", "password_file", "from", "to", "timeout"]
            }
            NotifierKind::Healthchecks => &["url", "timeout"],
        }
    }

    /// Keys it cannot do without.
    pub fn required(self) -> &'static [&'static str] {
        match self {
            NotifierKind::Email => &["host", "from", "to"],
            _ => &["url"],
        }
    }
}

/// `[notifiers.NAME]`: flat, like sources, so that an unknown key has a line number; which
/// keys apply to which type is checked afterwards ([`NotifierKind::keys`]).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierConfig {
    #[serde(rename = "type")]
    pub kind: NotifierKind,
    /// ntfy topic URL, webhook URL, Slack/Discord webhook URL, health-check ping URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<SecretText>,
    /// ntfy priority 1 (min) to 5 (max).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    /// ntfy tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// ntfy access token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretText>,
    /// Extra HTTP headers of a generic webhook.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, SecretText>,
    /// SMTP server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `starttls` (default, port 587), `tls` (port 465) or `none` (port 25; only to localhost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<SmtpTls>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
    /// Seconds one delivery attempt may take (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

impl NotifierConfig {
    pub fn keys_set(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        let mut note = |set: bool, key| {
            if set {
                keys.push(key);
            }
        };
        note(self.url.is_some(), "url");
        note(self.priority.is_some(), "priority");
        note(!self.tags.is_empty(), "tags");
        note(self.token.is_some(), "token");
        note(!self.headers.is_empty(), "headers");
        note(self.host.is_some(), "host");
        note(self.port.is_some(), "port");
        note(self.tls.is_some(), "tls");
        note(self.username.is_some(), "username");
        note(self.password.is_some(), "password");
        note(self.password_file.is_some(), "password_file");
        note(self.from.is_some(), "from");
        note(!self.to.is_empty(), "to");
        note(self.timeout.is_some(), "timeout");
        keys
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    Starttls,
    Tls,
    None,
}

/// Events a job can notify about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyEvent {
    Start,
    Success,
    Partial,
    Failure,
    Stale,
}

/// One entry of a job's `notify`: a notifier and the events it hears about.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyRule {
    pub notifier: String,
    /// Default: failure, partial and stale (health checks: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on: Vec<NotifyEvent>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryConfig {
    /// A local directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<Text>,
    /// Object storage and remote locations (`s3://`, `sftp://`): not supported yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<Text>,
    /// zstd level for backups into this repository (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<i32>,
}

/// One job: what to back up together, into which repositories, how to keep it.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Names from `[repositories]`; default: the one repository.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,
    /// Cron expressions (run by the daemon, a later feature); kept and checked for shape.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "one_or_many")]
    pub schedule: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// Apply `retention` (`cairn forget`) after each backup of the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_forget: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<Hooks>,
    /// Average chunk size per source kind, e.g. `{ files = "1MiB", postgres = "64KiB" }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub chunking: BTreeMap<SourceKind, Size>,
    /// Sources captured at the same time (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// Host name recorded in snapshots (default: this machine's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Random delay before a scheduled run, up to this long (e.g. "5m").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<String>,
    /// Paths whose changes trigger a run of the job (the daemon watches them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watch: Vec<Text>,
    /// Quiet time after the last change before a triggered run starts (default "30s").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debounce: Option<String>,
    /// Least time between two triggered runs (default "10m").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<String>,
    /// Run once at daemon start if a scheduled run was missed (default: `[daemon] catch_up`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<bool>,
    /// Alarm (event `stale`) when the job has not succeeded for this long (default: twice
    /// the longest gap between its scheduled runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_after: Option<String>,
    /// Who hears about the job's runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<NotifyRule>,
}

/// How many snapshots of each period to keep (`cairn forget`; docs/retention.md).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yearly: Option<u32>,
    /// Keep everything newer than this, e.g. `30d`, `2w`, `12h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<String>,
    /// Keep snapshots with any of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// Commands run around a job. The job's outcome is in the environment of `after`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Runs first; if it fails, nothing is backed up and the run fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<HookCommand>,
    /// Runs last, whatever the outcome (`CAIRN_OUTCOME`); a failure is a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<HookCommand>,
    /// Seconds a hook may run before it is killed (default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

/// A shell command line (`sh -c`), or a program and its arguments.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum HookCommand {
    Shell(Text),
    Argv(Vec<Text>),
}

/// Source types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Files,
    Sqlite,
    Postgres,
    Mysql,
}

impl SourceKind {
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Files => "files",
            SourceKind::Sqlite => "sqlite",
            SourceKind::Postgres => "postgres",
            SourceKind::Mysql => "mysql",
        }
    }

    /// The keys a source of this kind takes besides `name`, `type` and `chunk_size`.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            SourceKind::Files => &["path", "paths", "exclude", "exclude_file"],
            SourceKind::Sqlite => &["path", "vacuum"],
            SourceKind::Postgres | SourceKind::Mysql => {
                &["url", "databases", "password", "password_file", "command_prefix", "bin_dir"]
            }
        }
    }
}

/// One source. A flat struct, so that an unknown key is reported with its line; which keys
/// apply to which type is checked afterwards ([`SourceKind::keys`]).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Unique within the job; defaults to the type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: SourceKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_size: Option<Size>,
    // files, sqlite
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<Text>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<Text>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_file: Vec<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vacuum: Option<bool>,
    // postgres, mysql
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub databases: Option<Databases>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<Text>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command_prefix: Vec<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bin_dir: Option<Text>,
}

impl SourceConfig {
    /// The keys set in this source, for checking them against its type.
    pub fn keys_set(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        let mut note = |set: bool, key| {
            if set {
                keys.push(key);
            }
        };
        note(self.path.is_some(), "path");
        note(!self.paths.is_empty(), "paths");
        note(!self.exclude.is_empty(), "exclude");
        note(!self.exclude_file.is_empty(), "exclude_file");
        note(self.vacuum.is_some(), "vacuum");
        note(self.url.is_some(), "url");
        note(self.databases.is_some(), "databases");
        note(self.password.is_some(), "password");
        note(self.password_file.is_some(), "password_file");
        note(!self.command_prefix.is_empty(), "command_prefix");
        note(self.bin_dir.is_some(), "bin_dir");
        keys
    }

    /// The name, defaulting to the type.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(self.kind.name())
    }
}

/// `databases = "all"` or a list of names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Databases {
    All,
    Some(Vec<String>),
}

impl<'de> Deserialize<'de> for Databases {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Databases, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        match Raw::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected \"all\" or a list of database names"))?
        {
            Raw::One(s) if s == "all" => Ok(Databases::All),
            Raw::One(s) => {
                Err(serde::de::Error::custom(format!("expected \"all\" or a list of database names, not {s:?}")))
            }
            Raw::Many(list) => Ok(Databases::Some(list)),
        }
    }
}

/// A byte size: `65536`, `"64KiB"`, `"1MiB"`, `"1 MB"` (binary units either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Size, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d).map_err(|_| serde::de::Error::custom("expected a size such as \"64KiB\""))? {
            Raw::Number(n) => Ok(Size(n)),
            Raw::Text(t) => parse_size(&t).map(Size).ok_or_else(|| {
                serde::de::Error::custom(format!("cannot read size {t:?}; write it like \"64KiB\" or \"1MiB\""))
            }),
        }
    }
}

impl Serialize for Size {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{}MiB", n >> 20).serialize(s),
            n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{}KiB", n >> 10).serialize(s),
            n => n.serialize(s),
        }
    }
}

pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(factor)
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
    }
    match Raw::deserialize(d).map_err(|_| serde::de::Error::custom("expected a cron expression or a list of them"))? {
        Raw::One(s) => Ok(vec![s]),
        Raw::Many(v) => Ok(v),
    }
}

/// Paths in the file are relative to the file's directory.
pub fn resolve_path(base: &std::path::Path, text: &str) -> PathBuf {
    let expanded = match text.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME").map_or_else(|| PathBuf::from(text), |h| PathBuf::from(h).join(rest)),
        None => PathBuf::from(text),
    };
    if expanded.is_absolute() {
        expanded
    } else {
        base.join(expanded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64KiB"), Some(65536));
        assert_eq!(parse_size("1 MiB"), Some(1 << 20));
        assert_eq!(parse_size("1mb"), Some(1 << 20));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("1 XB"), None);
    }
}
