//! `cairn.toml`: finding it, reading it, checking it.
//!
//! The file is read once, before a command runs; every error names the file, the line and
//! the key. Secrets are never printed: `cairn config show` prints them as `***`, and the
//! `*_file` keys are read only when a secret is needed.

mod model;

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use cairn_repo::ChunkParams;

pub use model::{
    resolve_path, ConfigFile, Databases, HookCommand, JobConfig, LogLevel, RepositoryConfig, Rotation, SourceConfig,
    SourceKind,
};
pub use model::{NotifierConfig, NotifierKind, NotifyEvent, NotifyRule, SmtpTls};

use crate::env;

/// A loaded, checked config file.
#[derive(Debug)]
pub struct Config {
    pub path: PathBuf,
    /// Relative paths in the file are relative to this directory.
    pub dir: PathBuf,
    pub file: ConfigFile,
}

/// Where the config file is: `--config`, `$CAIRN_CONFIG`, `./cairn.toml`,
/// `$XDG_CONFIG_HOME/cairn/cairn.toml` (or `~/.config/cairn/cairn.toml`), `/etc/cairn/cairn.toml`.
/// Returns `None` when no file exists in the usual places; an explicitly named file must exist.
pub fn locate(explicit: Option<&Path>) -> Result<Option<PathBuf>> {
    if let Some(path) = explicit.map(Path::to_path_buf).or_else(|| env::get(env::CONFIG).map(PathBuf::from)) {
        if !path.is_file() {
            bail!("config file {} does not exist\nhint: check --config / ${}", path.display(), env::CONFIG);
        }
        return Ok(Some(path));
    }
    let mut candidates = vec![PathBuf::from("cairn.toml")];
    if let Some(xdg) = env::get("XDG_CONFIG_HOME") {
        candidates.push(PathBuf::from(xdg).join("cairn/cairn.toml"));
    } else if let Some(home) = env::get("HOME") {
        candidates.push(PathBuf::from(home).join(".config/cairn/cairn.toml"));
    }
    candidates.push(PathBuf::from("/etc/cairn/cairn.toml"));
    Ok(candidates.into_iter().find(|p| p.is_file()))
}

/// Read and check a config file.
pub fn load(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    let file: ConfigFile = toml::from_str(&text).map_err(|e| parse_error(path, &text, &e))?;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = absolute.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let config = Config { path: path.to_path_buf(), dir, file };
    config.check(&text)?;
    Ok(config)
}

/// `file:line:column: message`, naming the key when the parser's message does not.
fn parse_error(path: &Path, text: &str, err: &toml::de::Error) -> anyhow::Error {
    let message = err.message().trim_end();
    let Some(span) = err.span() else {
        return anyhow!("{}: {message}", path.display());
    };
    let (line, column) = line_col(text, span.start);
    let key = text
        .lines()
        .nth(line - 1)
        .and_then(|l| l.split_once('='))
        .map(|(k, _)| k.trim())
        .filter(|k| !k.is_empty() && !k.starts_with('[') && !message.contains(&format!("`{k}`")));
    match key {
        Some(key) => anyhow!("{}:{line}:{column}: key `{key}`: {message}", path.display()),
        None => anyhow!("{}:{line}:{column}: {message}", path.display()),
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// Expand `${NAME}` from the environment; `$${` is a literal `${`.
pub fn expand(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(after) = rest.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = rest.strip_prefix("${") {
            let end = after.find('}').ok_or_else(|| format!("unclosed ${{ in {raw:?}"))?;
            let name = &after[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("bad environment variable name {name:?}"));
            }
            let value = std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))?;
            out.push_str(&value);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

impl Config {
    /// Checks beyond types: names, which keys apply to which source type, required keys.
    fn check(&self, text: &str) -> Result<()> {
        let at = |line: Option<usize>| match line {
            Some(l) => format!("{}:{l}", self.path.display()),
            None => self.path.display().to_string(),
        };
        let file = &self.file;
        if file.repository.is_some() && !file.repositories.is_empty() {
            bail!("{}: use either [repository] or [repositories.NAME], not both", self.path.display());
        }
        for (name, repo) in self.repositories() {
            let line = find_line(text, &[&repo_header(name)], None);
            if repo.url.is_some() {
                bail!(
                    "{}: repository {name}: `url` (object storage, SFTP) is not supported yet\nhint: use `path` for a local directory",
                    at(line)
                );
            }
            if repo.path.is_none() {
                bail!("{}: repository {name}: `path` is missing", at(line));
            }
            let secrets = [repo.password.is_some(), repo.password_file.is_some(), repo.key_file.is_some()];
            if secrets.iter().filter(|s| **s).count() > 1 {
                bail!("{}: repository {name}: give only one of password, password_file, key_file", at(line));
            }
            if let Some(level) = repo.compression.filter(|l| !(0..=19).contains(l)) {
                bail!("{}: repository {name}: compression {level} is out of range 0..=19", at(line));
            }
        }
        for (name, notifier) in &file.notifiers {
            let line = find_line(text, &[&format!("[notifiers.{name}]")], None);
            let allowed = notifier.kind.keys();
            if let Some(key) = notifier.keys_set().into_iter().find(|k| !allowed.contains(k)) {
                bail!(
                    "{}: notifier {name}: key `{key}` does not apply to {} notifiers (they take: {})",
                    at(find_line(text, &[&format!("[notifiers.{name}]")], Some((0, Some(key))))),
                    notifier.kind.name(),
                    allowed.join(", ")
                );
            }
            let set = notifier.keys_set();
            if let Some(key) = notifier.kind.required().iter().find(|k| !set.contains(k)) {
                bail!("{}: notifier {name}: `{key}` is missing", at(line));
            }
            if notifier.password.is_some() && notifier.password_file.is_some() {
                bail!("{}: notifier {name}: give either password or password_file", at(line));
            }
            if notifier.priority.is_some_and(|p| !(1..=5).contains(&p)) {
                bail!("{}: notifier {name}: priority must be 1 (min) to 5 (max)", at(line));
            }
        }
        if let Some(daemon) = &file.daemon {
            let line = find_line(text, &["[daemon]"], None);
            if let Some(t) = daemon.shutdown_timeout.as_deref().filter(|t| parse_interval(t).is_none()) {
                bail!("{}: daemon.shutdown_timeout {t:?}: write it like \"90s\", \"5m\" or \"1h\"", at(line));
            }
            if let Some(zone) = daemon.timezone.as_deref().filter(|z| z.parse::<chrono_tz::Tz>().is_err()) {
                bail!("{}: daemon.timezone {zone:?} is not an IANA zone name such as \"Europe/Berlin\"", at(line));
            }
            if daemon.max_concurrent_jobs == Some(0) {
                bail!("{}: daemon.max_concurrent_jobs must be at least 1", at(line));
            }
            for cron in &daemon.prune_schedule {
                check_cron(cron).map_err(|e| anyhow!("{}: daemon.prune_schedule {cron:?}: {e}", at(line)))?;
            }
        }
        for (job_name, job) in &file.jobs {
            self.check_job(text, job_name, job)?;
        }
        Ok(())
    }

    fn check_job(&self, text: &str, job_name: &str, job: &JobConfig) -> Result<()> {
        let header = format!("jobs.{job_name}");
        let job_line = find_line(text, &[&format!("[{header}]")], None);
        let at = |line: Option<usize>| match line.or(job_line) {
            Some(l) => format!("{}:{l}", self.path.display()),
            None => self.path.display().to_string(),
        };
        if !valid_name(job_name) {
            bail!("{}: job name {job_name:?}: use letters, digits, '-', '_' and '.'", at(None));
        }
        if job.sources.is_empty() {
            bail!("{}: job {job_name} has no sources\nhint: add a [[jobs.{job_name}.sources]] table", at(None));
        }
        let repos: Vec<&str> = self.repositories().into_iter().map(|(n, _)| n).collect();
        for name in &job.repositories {
            if !repos.contains(&name.as_str()) {
                bail!("{}: job {job_name}: no repository named {name:?} (there are: {})", at(None), repos.join(", "));
            }
        }
        if job.repositories.is_empty() && repos.len() > 1 {
            bail!(
                "{}: job {job_name}: several repositories are configured; list this job's in `repositories`",
                at(None)
            );
        }
        for (kind, size) in &job.chunking {
            check_chunk_size(size.0)
                .map_err(|e| anyhow!("{}: job {job_name}: chunking.{}: {e}", at(None), kind.name()))?;
        }
        if job.concurrency == Some(0) {
            bail!("{}: job {job_name}: concurrency must be at least 1", at(None));
        }
        for cron in &job.schedule {
            check_cron(cron).map_err(|e| anyhow!("{}: job {job_name}: schedule {cron:?}: {e}", at(None)))?;
        }
        for (key, value) in [
            ("jitter", &job.jitter),
            ("debounce", &job.debounce),
            ("cooldown", &job.cooldown),
            ("stale_after", &job.stale_after),
        ] {
            if let Some(v) = value.as_deref().filter(|v| parse_interval(v).is_none()) {
                bail!("{}: job {job_name}: {key} {v:?}: write it like \"30s\", \"5m\", \"2h\" or \"1d\"", at(None));
            }
        }
        for rule in &job.notify {
            if !self.file.notifiers.contains_key(&rule.notifier) {
                let names: Vec<&str> = self.file.notifiers.keys().map(String::as_str).collect();
                bail!(
                    "{}: job {job_name}: no notifier named {:?} (there are: {})",
                    at(None),
                    rule.notifier,
                    if names.is_empty() { "none; add a [notifiers.NAME] table".to_string() } else { names.join(", ") }
                );
            }
        }
        if job.retention.as_ref().is_some_and(|r| Config::policy(r).is_none_or(|p| p.is_empty())) {
            bail!("{}: job {job_name}: retention keeps nothing; set at least one of last, hourly, daily, weekly, monthly, yearly, within, tags", at(None));
        }
        if job.auto_forget == Some(true) && job.retention.is_none() {
            bail!("{}: job {job_name}: auto_forget needs a retention policy", at(None));
        }
        if let Some(within) = job.retention.as_ref().and_then(|r| r.within.as_deref()) {
            if parse_duration(within).is_none() {
                bail!(
                    "{}: job {job_name}: retention.within {within:?}: write it like \"30d\", \"2w\" or \"12h\"",
                    at(None)
                );
            }
        }
        let mut names = std::collections::HashSet::new();
        let source_header = format!("[[{header}.sources]]");
        for (i, source) in job.sources.iter().enumerate() {
            let line = |key: Option<&str>| find_line(text, &[&source_header], Some((i, key)));
            let name = source.name();
            if !valid_name(name) {
                bail!("{}: source name {name:?}: use letters, digits, '-', '_' and '.'", at(line(Some("name"))));
            }
            if !names.insert(name) {
                bail!(
                    "{}: job {job_name} has two sources named {name:?}\nhint: give each a unique `name`",
                    at(line(None))
                );
            }
            let allowed = source.kind.keys();
            if let Some(key) = source.keys_set().into_iter().find(|k| !allowed.contains(k)) {
                bail!(
                    "{}: source {name}: key `{key}` does not apply to {} sources (they take: {})",
                    at(line(Some(key))),
                    source.kind.name(),
                    allowed.join(", ")
                );
            }
            let missing = match source.kind {
                SourceKind::Files if source.path.is_none() && source.paths.is_empty() => Some("path"),
                SourceKind::Sqlite if source.path.is_none() => Some("path"),
                SourceKind::Postgres | SourceKind::Mysql if source.url.is_none() => Some("url"),
                _ => None,
            };
            if let Some(key) = missing {
                bail!("{}: source {name}: `{key}` is missing", at(line(None)));
            }
            if source.password.is_some() && source.password_file.is_some() {
                bail!("{}: source {name}: give either password or password_file", at(line(Some("password"))));
            }
            if let Some(size) = source.chunk_size {
                check_chunk_size(size.0)
                    .map_err(|e| anyhow!("{}: source {name}: chunk_size: {e}", at(line(Some("chunk_size")))))?;
            }
        }
        Ok(())
    }

    /// Configured repositories by name (`default` for a lone `[repository]`).
    pub fn repositories(&self) -> Vec<(&str, &RepositoryConfig)> {
        match &self.file.repository {
            Some(one) => vec![("default", one)],
            None => self.file.repositories.iter().map(|(n, r)| (n.as_str(), r)).collect(),
        }
    }

    /// The repository called `name`, or the only one.
    pub fn repository(&self, name: Option<&str>) -> Result<(&str, &RepositoryConfig)> {
        let all = self.repositories();
        match name {
            Some(name) => all
                .into_iter()
                .find(|(n, _)| *n == name)
                .ok_or_else(|| anyhow!("{}: no repository named {name:?}", self.path.display())),
            None => match all.as_slice() {
                [] => bail!(
                    "{} configures no repository\nhint: add a [repository] table with `path`, or pass --repo",
                    self.path.display()
                ),
                [one] => Ok(*one),
                _ => bail!(
                    "{} configures several repositories\nhint: choose one with --repo NAME ({})",
                    self.path.display(),
                    all.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                ),
            },
        }
    }

    pub fn job(&self, name: &str) -> Result<&JobConfig> {
        self.file.jobs.get(name).ok_or_else(|| {
            let names: Vec<&str> = self.file.jobs.keys().map(String::as_str).collect();
            anyhow!("{} has no job {name:?}\nhint: jobs are: {}", self.path.display(), names.join(", "))
        })
    }

    /// A path from the file, resolved against the file's directory.
    pub fn path(&self, text: &str) -> PathBuf {
        cairn_sources::files::normalize(&resolve_path(&self.dir, text))
    }

    /// The retention policy of a job's `retention` table (`None` if `within` is unreadable,
    /// which `check` has already reported).
    pub fn policy(r: &model::Retention) -> Option<cairn_repo::retention::Policy> {
        let within = match &r.within {
            Some(w) => Some(parse_duration(w)?),
            None => None,
        };
        Some(cairn_repo::retention::Policy {
            last: r.last,
            hourly: r.hourly,
            daily: r.daily,
            weekly: r.weekly,
            monthly: r.monthly,
            yearly: r.yearly,
            within,
            tags: r.tags.clone(),
        })
    }

    /// Chunk parameters of a source: its `chunk_size`, else the job's `chunking` for its
    /// kind, else 1 MiB for files and 64 KiB for database streams.
    pub fn chunking(job: &JobConfig, source: &SourceConfig) -> ChunkParams {
        let size = source.chunk_size.or_else(|| job.chunking.get(&source.kind).copied());
        let default = if source.kind == SourceKind::Files { ChunkParams::FILES } else { ChunkParams::DUMPS };
        size.and_then(|s| u32::try_from(s.0).ok()).and_then(ChunkParams::new).unwrap_or(default)
    }
}

fn repo_header(name: &str) -> String {
    if name == "default" {
        "[repository]".to_string()
    } else {
        format!("[repositories.{name}]")
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn check_chunk_size(size: u64) -> Result<(), String> {
    u32::try_from(size)
        .ok()
        .and_then(ChunkParams::new)
        .map(|_| ())
        .ok_or_else(|| "must be a power of two from 4KiB to 8MiB".to_string())
}

/// Is `cron` a cron expression cairn can run (five fields: minute hour day-of-month month
/// weekday; lists, ranges, steps, names)?
fn check_cron(cron: &str) -> Result<(), String> {
    crate::units::cron::CronExpr::parse(cron).map(|_| ()).map_err(|e| e.to_string().replace('\n', " "))
}

/// A daemon interval: `90s`, `5m` (minutes), `2h`, `1d`, or a number of seconds.
pub fn parse_interval(text: &str) -> Option<std::time::Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().ok()?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(std::time::Duration::from_secs(secs))
}

/// Retention periods: `30d`, `2w`, `12h`, `6m` (months, as in restic), `1y`.
pub fn parse_duration(text: &str) -> Option<chrono::Duration> {
    let text = text.trim();
    let (n, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = n.parse().ok()?;
    match unit {
        "h" => chrono::Duration::try_hours(n),
        "d" => chrono::Duration::try_days(n),
        "w" => chrono::Duration::try_weeks(n),
        "m" => chrono::Duration::try_days(n * 30),
        "y" => chrono::Duration::try_days(n * 365),
        _ => None,
    }
}

/// The line of a table header, or of `key` inside the `index`-th table with that header.
fn find_line(text: &str, headers: &[&str], within: Option<(usize, Option<&str>)>) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let is_header = |l: &str, h: &str| l.trim().replace(' ', "") == h.replace(' ', "");
    let starts: Vec<usize> = (0..lines.len()).filter(|&i| headers.iter().any(|h| is_header(lines[i], h))).collect();
    let Some((index, key)) = within else {
        return starts.first().map(|i| i + 1);
    };
    let start = *starts.get(index)?;
    let Some(key) = key else { return Some(start + 1) };
    let end = (start + 1..lines.len()).find(|&i| lines[i].trim_start().starts_with('[')).unwrap_or(lines.len());
    (start + 1..end)
        .find(|&i| lines[i].split_once('=').is_some_and(|(k, _)| k.trim() == key))
        .map(|i| i + 1)
        .or(Some(start + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Config> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cairn.toml");
        std::fs::write(&path, text).unwrap();
        load(&path).map_err(|e| anyhow!("{}", e.to_string().replace(&path.display().to_string(), "cairn.toml")))
    }

    const GOOD: &str = r#"
[repository]
path = "/var/backups/cairn"
password_file = "/etc/cairn/password"

[jobs.app]
schedule  = ["0 8-18 * * 1-5", "0 2 * * *"]
retention = { hourly = 24, daily = 7, weekly = 4, monthly = 12 }
tags      = ["prod"]

[[jobs.app.sources]]
name = "main-db"
type = "sqlite"
path = "data/app.db"

[[jobs.app.sources]]
name = "pg"
type = "postgres"
url  = "postgres://app@127.0.0.1:5432/app"

[[jobs.app.sources]]
name = "program"
type = "files"
path = "."
exclude = ["__pycache__", ".git", ".venv", "*.log"]
"#;

    #[test]
    fn the_design_example_loads() {
        let config = load_text(GOOD).unwrap();
        let job = config.job("app").unwrap();
        assert_eq!(job.sources.len(), 3);
        assert_eq!(job.retention.as_ref().unwrap().daily, Some(7));
        assert_eq!(Config::chunking(job, &job.sources[0]), ChunkParams::DUMPS);
        assert_eq!(Config::chunking(job, &job.sources[2]), ChunkParams::FILES);
        assert!(config.path("data/app.db").ends_with("data/app.db") && config.path("data/app.db").is_absolute());
    }

    #[test]
    fn unknown_keys_name_line_and_key() {
        let err = load_text(&GOOD.replace("tags      =", "tagz =")).unwrap_err().to_string();
        assert!(err.starts_with("cairn.toml:9:"), "{err}");
        assert!(err.contains("tagz"), "{err}");
        let err = load_text(&GOOD.replace("url  = \"postgres", "ur1 = \"postgres")).unwrap_err().to_string();
        assert!(err.starts_with("cairn.toml:19:") && err.contains("ur1"), "{err}");
    }

    #[test]
    fn wrong_types_name_line_and_key() {
        let err = load_text(&GOOD.replace("daily = 7", "daily = \"seven\"")).unwrap_err().to_string();
        assert!(err.starts_with("cairn.toml:8:"), "{err}");
        assert!(err.contains("retention"), "{err}");
        let err = load_text(&GOOD.replace("type = \"sqlite\"", "type = \"oracle\"")).unwrap_err().to_string();
        assert!(err.starts_with("cairn.toml:13:") && err.contains("oracle"), "{err}");
    }

    #[test]
    fn keys_of_another_source_type_are_errors() {
        let err = load_text(&GOOD.replace("path = \"data/app.db\"", "path = \"data/app.db\"\ndatabases = [\"x\"]"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cairn.toml:15:"), "{err}");
        assert!(err.contains("`databases` does not apply to sqlite"), "{err}");
    }

    #[test]
    fn duplicate_and_missing() {
        let err = load_text(&GOOD.replace("name = \"pg\"", "name = \"main-db\"")).unwrap_err().to_string();
        assert!(err.contains("two sources named \"main-db\""), "{err}");
        let err = load_text(&GOOD.replace("url  = \"postgres://app@127.0.0.1:5432/app\"", "")).unwrap_err().to_string();
        assert!(err.contains("source pg: `url` is missing"), "{err}");
        let err = load_text(&GOOD.replace("\"0 2 * * *\"", "\"daily\"")).unwrap_err().to_string();
        assert!(err.contains("a cron expression has five"), "{err}");
    }

    #[test]
    fn environment_expansion() {
        std::env::set_var("CAIRN_TEST_EXPAND", "secret");
        assert_eq!(expand("a${CAIRN_TEST_EXPAND}b").unwrap(), "asecretb");
        assert_eq!(expand("$${literal} $5").unwrap(), "${literal} $5");
        assert!(expand("${CAIRN_TEST_UNSET_VARIABLE}").unwrap_err().contains("CAIRN_TEST_UNSET_VARIABLE is not set"));
        let err =
            load_text(&GOOD.replace("/var/backups/cairn", "${CAIRN_TEST_UNSET_VARIABLE}")).unwrap_err().to_string();
        assert!(err.starts_with("cairn.toml:3:") && err.contains("CAIRN_TEST_UNSET_VARIABLE"), "{err}");
    }

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("90s"), Some(std::time::Duration::from_secs(90)));
        assert_eq!(parse_interval("5m"), Some(std::time::Duration::from_secs(300)));
        assert_eq!(parse_interval("2h"), Some(std::time::Duration::from_secs(7200)));
        assert_eq!(parse_interval("45"), Some(std::time::Duration::from_secs(45)));
        assert_eq!(parse_interval("2w"), None);
    }

    #[test]
    fn notifiers_and_daemon_settings() {
        let extra = "\n[notifiers.ops]\ntype = \"ntfy\"\nurl = \"https://ntfy.example/backups\"\npriority = 4\n\n[daemon]\nmax_concurrent_jobs = 2\n";
        let with_rule = GOOD.replace(
            "tags      = [\"prod\"]",
            "tags = [\"prod\"]\nnotify = [{ notifier = \"ops\", on = [\"failure\", \"stale\"] }]\njitter = \"5m\"",
        );
        let config = load_text(&format!("{with_rule}{extra}")).unwrap();
        assert_eq!(config.job("app").unwrap().notify[0].notifier, "ops");
        let err = load_text(&format!("{with_rule}{}", extra.replace("priority = 4", "priority = 9")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("priority must be 1"), "{err}");
        let err = load_text(&format!("{with_rule}{}", extra.replace("priority = 4", "from = \"x@y\"")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`from` does not apply to ntfy notifiers"), "{err}");
        let err = load_text(&with_rule).unwrap_err().to_string();
        assert!(err.contains("no notifier named \"ops\""), "{err}");
        let err = load_text(&format!("{}{extra}", with_rule.replace("\"5m\"", "\"soon\""))).unwrap_err().to_string();
        assert!(err.contains("jitter"), "{err}");
        let zone = |z: &str| load_text(&format!("{with_rule}{extra}timezone = \"{z}\"\n"));
        assert!(zone("Europe/Berlin").is_ok());
        let err = zone("Mars/Olympus").unwrap_err().to_string();
        assert!(err.contains("daemon.timezone \"Mars/Olympus\" is not an IANA zone"), "{err}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d"), chrono::Duration::try_days(30));
        assert_eq!(parse_duration("12h"), chrono::Duration::try_hours(12));
        assert_eq!(parse_duration("soon"), None);
    }
}
