//! Resolving where the repository is and what unlocks it, before any command runs.
//!
//! Precedence: command line > environment > defaults. Secrets come from the environment,
//! a file, or a terminal prompt — never from the command line itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use cairn_repo::{KdfParams, Repository, Secret, SlotInfo};
use cairn_storage::LocalStorage;

use crate::cli::Global;
use crate::config::{self, Config, RepositoryConfig};
use crate::env;

/// The repository a command works on, resolved from the command line, the environment and
/// the config file (in that order).
pub struct RepoTarget {
    /// The configured name (`default` for a lone `[repository]`), or the path given.
    pub name: String,
    pub path: PathBuf,
    /// How the config file says to unlock it, if it says.
    pub secret: Option<ConfiguredSecret>,
    pub compression: Option<i32>,
}

/// A secret named by the config file.
pub enum ConfiguredSecret {
    Password(String),
    PasswordFile(PathBuf),
    KeyFile(PathBuf),
}

/// The config file, when one is named or found in the usual places.
pub fn config(global: &Global) -> Result<Option<Config>> {
    config::locate(global.config.as_deref())?.map(|p| config::load(&p)).transpose()
}

/// `--repo` / `$CAIRN_REPO` as a path, or as the name of a configured repository; else the
/// config file's only repository.
pub fn repo_target(global: &Global, config: Option<&Config>) -> Result<RepoTarget> {
    let given = global.repo.as_ref().map(|p| p.to_string_lossy().into_owned());
    if let Some(config) = config {
        let by_name = given.as_deref().filter(|g| config.repositories().iter().any(|(n, _)| n == g));
        if given.is_none() || by_name.is_some() {
            let (name, repo) = config.repository(by_name)?;
            return Ok(configured(config, name, repo));
        }
    }
    match given {
        Some(path) => Ok(RepoTarget { name: path.clone(), path: PathBuf::from(path), secret: None, compression: None }),
        None => bail!(
            "no repository given\nhint: pass --repo PATH, set ${}, or name one in cairn.toml ([repository] path = ...)",
            env::REPO
        ),
    }
}

/// The target of a configured repository.
pub fn configured(config: &Config, name: &str, repo: &RepositoryConfig) -> RepoTarget {
    let path = config.path(&repo.path.as_ref().expect("checked at load").0);
    let secret = if let Some(p) = &repo.password {
        Some(ConfiguredSecret::Password(p.0 .0.clone()))
    } else if let Some(f) = &repo.password_file {
        Some(ConfiguredSecret::PasswordFile(config.path(&f.0)))
    } else {
        repo.key_file.as_ref().map(|f| ConfiguredSecret::KeyFile(config.path(&f.0)))
    };
    RepoTarget { name: name.to_string(), path, secret, compression: repo.compression }
}

/// What unlocks the repository: key file, password file, `$CAIRN_PASSWORD`, or a prompt.
pub fn secret(global: &Global, configured: Option<&ConfiguredSecret>, confirm: bool) -> Result<Secret> {
    if let Some(path) = &global.key_file {
        let bytes = std::fs::read(path).with_context(|| format!("reading key file {}", path.display()))?;
        return Ok(Secret::KeyFile(bytes));
    }
    if let Some(path) = &global.password_file {
        return Ok(Secret::Password(read_password_file(path)?));
    }
    if let Some(p) = env::get(env::PASSWORD) {
        return Ok(Secret::Password(p));
    }
    match configured {
        Some(ConfiguredSecret::Password(p)) => return Ok(Secret::Password(p.clone())),
        Some(ConfiguredSecret::PasswordFile(path)) => return Ok(Secret::Password(read_password_file(path)?)),
        Some(ConfiguredSecret::KeyFile(path)) => {
            let bytes = std::fs::read(path).with_context(|| format!("reading key file {}", path.display()))?;
            return Ok(Secret::KeyFile(bytes));
        }
        None => {}
    }
    let hint = format!("set ${} or pass --password-file FILE (or --key-file FILE)", env::PASSWORD);
    Ok(Secret::Password(prompt("repository password", confirm, &hint)?))
}

/// A password file's first line.
pub fn read_password_file(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading password file {}", path.display()))?;
    let password = text.lines().next().unwrap_or_default().to_string();
    if password.is_empty() {
        bail!("password file {} is empty", path.display());
    }
    Ok(password)
}

/// Ask on the terminal; fails clearly, with `hint`, when there is none.
pub fn prompt(what: &str, confirm: bool, hint: &str) -> Result<String> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        bail!("no {what} given and no terminal to ask on\nhint: {hint}");
    }
    let first = rpassword::prompt_password(format!("{what}: ")).context("reading the password")?;
    if first.is_empty() {
        bail!("empty {what}");
    }
    if confirm && rpassword::prompt_password(format!("{what} again: ")).context("reading the password")? != first {
        bail!("the two passwords differ");
    }
    Ok(first)
}

/// Key slot parameters for new slots.
pub fn slot_info(label: &str, kdf_memory_kib: Option<u32>) -> SlotInfo {
    let mut kdf = KdfParams::default();
    if let Some(m) = kdf_memory_kib.or_else(|| env::get(env::KDF_MEMORY_KIB).and_then(|v| v.parse().ok())) {
        kdf.memory_kib = m.max(8);
    }
    SlotInfo { label: label.to_string(), host: hostname(), kdf }
}

pub fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// Open and unlock the repository named by the global options (and the config file, when
/// they do not name one).
pub fn open(global: &Global) -> Result<Repository> {
    let config = if global.repo.is_none() || global.config.is_some() { config(global)? } else { None };
    open_target(global, &repo_target(global, config.as_ref())?)
}

/// Open and unlock one repository.
pub fn open_target(global: &Global, target: &RepoTarget) -> Result<Repository> {
    let storage = Arc::new(LocalStorage::new(&target.path));
    let location = storage.root().display().to_string();
    if !storage.root().exists() {
        return Err(cairn_repo::RepoError::NotARepository { location }.into());
    }
    let secret = secret(global, target.secret.as_ref(), false)?;
    let repo = Repository::open(storage, &secret)?;
    for damaged in repo.damaged_index_files() {
        eprintln!("warning: {damaged}; its packs were read from their own headers");
        eprintln!("hint: `cairn check` lists everything that is damaged");
    }
    Ok(repo)
}
