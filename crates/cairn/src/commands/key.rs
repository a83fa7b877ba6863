//! `cairn key list|add|remove`: key slots.

use std::path::Path;

use anyhow::{Context, Result};
use cairn_repo::Secret;
use serde_json::json;

use crate::cli::{Global, KeyAddArgs, KeyCommand};
use crate::env;
use crate::settings;

pub fn run(global: &Global, cmd: KeyCommand) -> Result<()> {
    let repo = settings::open(global)?;
    match cmd {
        KeyCommand::List { json } => {
            let slots = repo.key_slots()?;
            if json {
                let list: Vec<_> = slots
                    .iter()
                    .map(|(key, s)| json!({"id": key.trim_start_matches("keys/"), "kind": s.kind, "label": s.label, "host": s.host, "created": s.created}))
                    .collect();
                return super::print_json(&list);
            }
            outln!("{:<8}  {:<8}  {:<20}  {:<12}  label", "id", "kind", "created", "host")?;
            for (key, s) in &slots {
                let kind = match s.kind {
                    cairn_repo::keyslot::SlotKind::Password => "password",
                    cairn_repo::keyslot::SlotKind::KeyFile => "keyfile",
                };
                let id = &key.trim_start_matches("keys/")[..8];
                outln!(
                    "{id:<8}  {kind:<8}  {:<20}  {:<12}  {}",
                    s.created.format("%Y-%m-%d %H:%M:%S"),
                    s.host,
                    s.label
                )?;
            }
            Ok(())
        }
        KeyCommand::Add(args) => {
            let secret = new_secret(&args)?;
            let key = repo.add_key(&secret, &settings::slot_info(&args.label, None))?;
            if !global.quiet {
                outln!("added key slot {}", &key.trim_start_matches("keys/")[..8])?;
            }
            Ok(())
        }
        KeyCommand::Remove { id } => {
            let key = repo.remove_key(&id)?;
            if !global.quiet {
                outln!("removed key slot {}", &key.trim_start_matches("keys/")[..8])?;
            }
            Ok(())
        }
    }
}

fn new_secret(args: &KeyAddArgs) -> Result<Secret> {
    if let Some(path) = &args.new_key_file {
        if !path.exists() {
            write_new_key_file(path)?;
        }
        let bytes = std::fs::read(path).with_context(|| format!("reading key file {}", path.display()))?;
        anyhow::ensure!(
            bytes.trim_ascii().len() >= 16,
            "key file {} is too short (needs at least 16 bytes)",
            path.display()
        );
        return Ok(Secret::KeyFile(bytes));
    }
    if let Some(path) = &args.new_password_file {
        return Ok(Secret::Password(settings::read_password_file(path)?));
    }
    if let Some(p) = env::get(env::NEW_PASSWORD) {
        return Ok(Secret::Password(p));
    }
    let hint = format!("set ${} or pass --new-password-file FILE (or --new-key-file FILE)", env::NEW_PASSWORD);
    Ok(Secret::Password(settings::prompt("new password", true, &hint)?))
}

/// 32 random bytes as hex, readable only by the owner.
fn write_new_key_file(path: &Path) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let bytes: [u8; 32] = cairn_repo::crypto::random_bytes();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating key file {}", path.display()))?;
    writeln!(file, "{}", hex::encode(bytes)).with_context(|| format!("writing key file {}", path.display()))?;
    Ok(())
}
