//! `cairn config check|show`: read the config file and report on it.

use anyhow::{bail, Result};

use crate::cli::{ConfigCommand, Global};
use crate::settings;

pub fn run(global: &Global, command: &ConfigCommand) -> Result<()> {
    let Some(config) = settings::config(global)? else {
        bail!("no config file found\nhint: pass --config FILE, set $CAIRN_CONFIG, or create ./cairn.toml (see examples/cairn.toml)");
    };
    match command {
        ConfigCommand::Check => {
            if !global.quiet {
                let jobs = &config.file.jobs;
                let sources: usize = jobs.values().map(|j| j.sources.len()).sum();
                outln!(
                    "{}: ok ({} repositor{}, {} job(s), {sources} source(s))",
                    config.path.display(),
                    config.repositories().len(),
                    if config.repositories().len() == 1 { "y" } else { "ies" },
                    jobs.len()
                )?;
            }
            Ok(())
        }
        ConfigCommand::Show { json } => {
            // Secrets serialise as "***"; a password inside a URL is masked here.
            let mut value = serde_json::to_value(&config.file)?;
            mask_url_passwords(&mut value);
            if *json {
                super::print_json(&value)
            } else {
                let toml: toml::Value = serde_json::from_value(value)?;
                out!("{}", toml::to_string_pretty(&toml)?)?;
                Ok(())
            }
        }
    }
}

/// `postgres://user:secret@host` → `postgres://user:***@host`, everywhere in the tree.
fn mask_url_passwords(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => {
            if let Some((scheme, rest)) = s.split_once("://") {
                let authority_end = rest.find('/').unwrap_or(rest.len());
                if let Some(at) = rest[..authority_end].rfind('@') {
                    if let Some(colon) = rest[..at].find(':') {
                        *s = format!("{scheme}://{}:***{}", &rest[..colon], &rest[at..]);
                    }
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask_url_passwords),
        serde_json::Value::Object(map) => map.values_mut().for_each(mask_url_passwords),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn url_passwords_are_masked() {
        let mut v = serde_json::json!({"a": ["postgres://app:s3cret@db:5432/app", "mysql://root@h/x", "plain"]});
        super::mask_url_passwords(&mut v);
        assert_eq!(v["a"][0], "postgres://app:***@db:5432/app");
        assert_eq!(v["a"][1], "mysql://root@h/x");
        assert_eq!(v["a"][2], "plain");
    }
}
