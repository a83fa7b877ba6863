//! `cairn init`: create a repository.

use anyhow::{bail, Result};
use cairn_repo::Repository;

use crate::cli::{Global, InitArgs};
use crate::settings;

pub fn run(global: &Global, args: &InitArgs) -> Result<()> {
    let config = if global.repo.is_none() || global.config.is_some() { settings::config(global)? } else { None };
    let target = settings::repo_target(global, config.as_ref())?;
    let storage = std::sync::Arc::new(cairn_storage::LocalStorage::new(&target.path));
    let root = storage.root();
    let has_config = root.join("config").exists();
    if !has_config && root.read_dir().is_ok_and(|mut d| d.next().is_some()) {
        bail!("{} is not empty and is not a cairn repository\nhint: choose a new or empty directory", root.display());
    }
    let secret = settings::secret(global, target.secret.as_ref(), true)?;
    let repo = Repository::init(storage, &secret, &settings::slot_info("initial key", args.kdf_memory_kib))?;
    if !global.quiet {
        outln!("created cairn repository {} at {}", repo.config().id.short(), repo.location())?;
        outln!("keep the password safe: without it the data cannot be restored")?;
    }
    Ok(())
}
