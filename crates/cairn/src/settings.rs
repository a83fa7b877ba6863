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
use crate::env;

/// The repository location from `--repo` / `$CAIRN_REPO`.
pub fn repo_path(global: &Global) -> Result<PathBuf> {
    match &global.repo {
        Some(p) => Ok(p.clone()),
        None => bail!("no repository given\nhint: pass --repo PATH or set ${}", env::REPO),
    }
}

pub fn storage(global: &Global) -> Result<Arc<LocalStorage>> {
    Ok(Arc::new(LocalStorage::new(repo_path(global)?)))
}

/// What unlocks the repository: key file, password file, `$CAIRN_PASSWORD`, or a prompt.
pub fn secret(global: &Global, confirm: bool) -> Result<Secret> {
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

/// Open and unlock the repository named by the global options.
pub fn open(global: &Global) -> Result<Repository> {
    let storage = storage(global)?;
    let location = storage.root().display().to_string();
    if !storage.root().exists() {
        return Err(cairn_repo::RepoError::NotARepository { location }.into());
    }
    let secret = secret(global, false)?;
    let repo = Repository::open(storage, &secret)?;
    for damaged in repo.damaged_index_files() {
        eprintln!("warning: {damaged}; its packs were read from their own headers");
        eprintln!("hint: `cairn check` lists everything that is damaged");
    }
    Ok(repo)
}
