//! From a configured source to an adapter of `cairn-sources`, and running its capture.
//!
//! This is the one place that knows both the config file's keys and the adapters' option
//! types; secrets (`password`, `password_file`) are resolved here, just before use.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use cairn_repo::Id;
use cairn_sources::files::{self, BackupOptions, Patterns};
use cairn_sources::mysql::MysqlSource;
use cairn_sources::postgres::PostgresSource;
use cairn_sources::sqlite::SqliteSource;
use cairn_sources::{Capture, CaptureContext, Password, SourceError};
use serde_json::json;

use crate::config::{Config, Databases, SourceConfig, SourceKind};
use crate::settings;

/// A source ready to capture or restore.
pub enum Adapter {
    Files { paths: Vec<PathBuf>, excludes: Patterns },
    Sqlite(SqliteSource),
    Postgres(PostgresSource),
    Mysql(MysqlSource),
}

/// Build the adapter of a configured source. Fails on what the config cannot give (an
/// unreadable password file, a bad URL); the server is not contacted yet.
pub fn adapter(config: &Config, source: &SourceConfig) -> Result<Adapter> {
    let name = source.name();
    Ok(match source.kind {
        SourceKind::Files => {
            let mut paths: Vec<PathBuf> = source.path.iter().chain(&source.paths).map(|p| config.path(&p.0)).collect();
            paths.iter_mut().for_each(|p| *p = files::normalize(p));
            let exclude_files: Vec<PathBuf> = source.exclude_file.iter().map(|p| config.path(&p.0)).collect();
            let excludes = Patterns::new(&source.exclude, &exclude_files).with_context(|| format!("source {name}"))?;
            Adapter::Files { paths, excludes }
        }
        SourceKind::Sqlite => Adapter::Sqlite(SqliteSource {
            path: config.path(&source.path.as_ref().expect("checked at load").0),
            vacuum: source.vacuum.unwrap_or(false),
        }),
        SourceKind::Postgres => {
            let mut pg = PostgresSource::from_url(&url(source)).with_context(|| format!("source {name}"))?;
            apply_server_settings(
                config,
                source,
                &mut pg.password,
                &mut pg.databases,
                &mut pg.prefix,
                &mut pg.bin_dir,
            )?;
            Adapter::Postgres(pg)
        }
        SourceKind::Mysql => {
            let mut my = MysqlSource::from_url(&url(source)).with_context(|| format!("source {name}"))?;
            apply_server_settings(
                config,
                source,
                &mut my.password,
                &mut my.databases,
                &mut my.prefix,
                &mut my.bin_dir,
            )?;
            Adapter::Mysql(my)
        }
    })
}

fn url(source: &SourceConfig) -> String {
    source.url.as_ref().expect("checked at load").0.clone()
}

/// The keys postgres and mysql sources share.
fn apply_server_settings(
    config: &Config,
    source: &SourceConfig,
    password: &mut Option<Password>,
    databases: &mut Option<Vec<String>>,
    prefix: &mut Vec<String>,
    bin_dir: &mut Option<PathBuf>,
) -> Result<()> {
    if let Some(p) = &source.password {
        *password = Some(Password(p.0 .0.clone()));
    }
    if let Some(file) = &source.password_file {
        let path = config.path(&file.0);
        *password =
            Some(Password(settings::read_password_file(&path).with_context(|| format!("source {}", source.name()))?));
    }
    match &source.databases {
        Some(Databases::All) => *databases = None,
        Some(Databases::Some(list)) if list.is_empty() => {
            bail!("source {}: `databases` is empty\nhint: list database names, or write \"all\"", source.name())
        }
        Some(Databases::Some(list)) => *databases = Some(list.clone()),
        None => {}
    }
    *prefix = source.command_prefix.iter().map(|w| w.0.clone()).collect();
    if let Some(dir) = &source.bin_dir {
        *bin_dir = Some(config.path(&dir.0));
    }
    Ok(())
}

impl Adapter {
    /// Capture the source. `parent` is the same source's root in the previous snapshot of
    /// the job (used by folders to skip unchanged files).
    pub fn capture(
        &self,
        ctx: &CaptureContext<'_, '_>,
        parent: Option<Id>,
        reread_all: bool,
    ) -> Result<Capture, SourceError> {
        match self {
            Adapter::Files { paths, excludes } => {
                let options = BackupOptions { reread_all, ..BackupOptions::new(excludes.clone(), ctx.chunking) };
                let outcome = files::backup(ctx.repo, ctx.writer, paths, parent, &options, ctx.progress)?;
                let mut metadata = serde_json::Map::new();
                let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                metadata.insert("paths".into(), json!(shown));
                Ok(Capture { root: outcome.root, metadata, stats: outcome.stats, warnings: outcome.warnings })
            }
            Adapter::Sqlite(s) => s.backup(ctx),
            Adapter::Postgres(s) => s.backup(ctx),
            Adapter::Mysql(s) => s.backup(ctx),
        }
    }
}
