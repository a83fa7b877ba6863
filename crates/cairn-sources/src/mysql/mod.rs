//! MySQL and MariaDB servers, captured as one `mysqldump` SQL dump per database.
//!
//! Everything goes through the server's own client tools ([`client`]): no driver, so a command
//! prefix (`docker exec -i db`, …) reaches the server the same way for every step, and the
//! password only ever travels in the child's `MYSQL_PWD`.
//!
//! Capture ([`capture`]): each database is dumped with `--single-transaction` (one instant for
//! InnoDB tables) straight into the stream `<database>.sql`; the dump is read as it passes
//! ([`dump`]) to count the rows it holds. Restore ([`restore`]) pipes a dump into the client,
//! into a new database or, after a safety copy, over an existing one, optionally cut down to
//! chosen tables.
//!
//! Capture metadata keys:
//! - `server`: `host:port`; `server_version`: `SELECT VERSION()`; `client_version`: the dump
//!   tool's `--version`; `format`: `"mysqldump SQL"`.
//! - `databases`: `[{"name", "stream", "bytes", "charset", "collation", "tables": [{"name",
//!   "rows", "bytes"}], "views": [name]}]`. `rows` are counted in the dump itself (exactly what
//!   it holds), tables sorted, empty ones included; `bytes` of a table is information_schema's
//!   data + index size (approximate), of a database the size of its dump; `charset` and
//!   `collation` are the database's defaults (a dump without `CREATE DATABASE` lacks them),
//!   given to a database created by a restore.
//!
//! Capture warnings: tables of engines a single transaction cannot freeze (MyISAM, Aria, …).

mod capture;
mod client;
mod dump;
mod restore;
mod verify;

use std::path::PathBuf;

use url::Url;

use crate::{Capture, CaptureContext, Password, RestoreReport, RestoreRequest, SourceError};
use client::Server;

/// The server's own databases, left out when no databases are named.
const SYSTEM_DATABASES: [&str; 4] = ["information_schema", "performance_schema", "mysql", "sys"];
const DEFAULT_PORT: u16 = 3306;

/// Connection settings and what to capture.
#[derive(Debug, Clone)]
pub struct MysqlSource {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<Password>,
    /// Databases to capture; `None` captures all (but the server's own).
    pub databases: Option<Vec<String>>,
    /// Run the tools through this command (e.g. `docker exec -i db`); empty: run directly.
    pub prefix: Vec<String>,
    /// Directory of the client tools; default: found on this machine.
    pub bin_dir: Option<PathBuf>,
}

impl MysqlSource {
    /// Settings from a URL like `mysql://root@127.0.0.1:3306/app` or `mariadb://…` (the path
    /// names one database). Defaults: user `root`, port 3306, host 127.0.0.1.
    pub fn from_url(url: &str) -> Result<MysqlSource, SourceError> {
        // Messages never quote the URL: it may hold a password.
        let parsed = Url::parse(url).map_err(|e| {
            SourceError::with_hint(
                format!("not a valid MySQL URL: {e}"),
                "write it as mysql://USER[:PASSWORD]@HOST[:PORT][/DATABASE]",
            )
        })?;
        if !matches!(parsed.scheme(), "mysql" | "mariadb") {
            return Err(SourceError::with_hint(
                format!("a MySQL URL starts with mysql:// or mariadb://, not {}://", parsed.scheme()),
                "write it as mysql://USER[:PASSWORD]@HOST[:PORT][/DATABASE]",
            ));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(SourceError::new("a MySQL URL takes no ?parameters or #fragment"));
        }
        let user = match decode(parsed.username(), "user name")? {
            user if user.is_empty() => "root".to_string(),
            user => user,
        };
        let password = parsed.password().map(|p| decode(p, "password")).transpose()?.map(Password);
        let host = match parsed.host_str() {
            None | Some("") => "127.0.0.1".to_string(),
            Some(host) => host.trim_start_matches('[').trim_end_matches(']').to_string(),
        };
        let path = parsed.path().trim_start_matches('/');
        if path.contains('/') {
            return Err(SourceError::new(format!("a MySQL URL names at most one database, not {path:?}")));
        }
        let databases = match decode(path, "database name")? {
            db if db.is_empty() => None,
            db => Some(vec![db]),
        };
        let port = parsed.port().unwrap_or(DEFAULT_PORT);
        Ok(MysqlSource { host, port, user, password, databases, prefix: Vec::new(), bin_dir: None })
    }

    /// Dump the chosen databases (all but the server's own when none are named).
    pub fn backup(&self, ctx: &CaptureContext<'_, '_>) -> Result<Capture, SourceError> {
        self.scrub(self.backup_inner(ctx))
    }

    fn backup_inner(&self, ctx: &CaptureContext<'_, '_>) -> Result<Capture, SourceError> {
        let server = Server::connect(self)?;
        let dump = server.dump_tool()?;
        let existing = server.databases()?;
        let databases = match &self.databases {
            None => existing.into_iter().filter(|d| !SYSTEM_DATABASES.contains(&d.as_str())).collect(),
            Some(wanted) => {
                let missing: Vec<&str> = wanted.iter().filter(|w| !existing.contains(w)).map(String::as_str).collect();
                if !missing.is_empty() {
                    return Err(unknown_databases(&server, &missing, &existing));
                }
                wanted.clone()
            }
        };
        capture::capture(&server, &dump, &databases, ctx)
    }

    /// Load recorded dumps back; see [`restore`] for the rules about existing databases.
    pub fn restore(&self, req: &RestoreRequest<'_>) -> Result<RestoreReport, SourceError> {
        self.scrub(restore::restore(self, req))
    }

    /// Belt and braces: the password is never handed to anything that could echo it, but no
    /// message leaves this module with it either. (Very short passwords are left alone, or
    /// every message would be riddled with stars.)
    fn scrub<T>(&self, result: Result<T, SourceError>) -> Result<T, SourceError> {
        let Some(Password(secret)) = &self.password else {
            return result;
        };
        if secret.len() < 4 {
            return result;
        }
        result.map_err(|e| match e {
            SourceError::Source { message, hint } => SourceError::Source {
                message: message.replace(secret.as_str(), "***"),
                hint: hint.map(|h| h.replace(secret.as_str(), "***")),
            },
            repo => repo,
        })
    }
}

fn unknown_databases(server: &Server<'_>, missing: &[&str], existing: &[String]) -> SourceError {
    let theirs: Vec<&str> = existing.iter().map(String::as_str).filter(|d| !SYSTEM_DATABASES.contains(d)).collect();
    let (what, verb) = if missing.len() == 1 { ("database", "does") } else { ("databases", "do") };
    SourceError::with_hint(
        format!("{what} {} {verb} not exist on MySQL/MariaDB server {}", missing.join(", "), server.name()),
        if theirs.is_empty() {
            "the server holds no databases but its own".to_string()
        } else {
            format!("databases there: {}", theirs.join(", "))
        },
    )
}

/// Percent-decode a URL part.
fn decode(part: &str, what: &str) -> Result<String, SourceError> {
    crate::url_part(part, what, "MySQL")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let s = MysqlSource::from_url("mysql://app:p%40ss%2Fw@db.example:3307/shop").unwrap();
        assert_eq!((s.host.as_str(), s.port, s.user.as_str()), ("db.example", 3307, "app"));
        assert_eq!(s.password, Some(Password("p@ss/w".into())));
        assert_eq!(s.databases, Some(vec!["shop".to_string()]));
        let s = MysqlSource::from_url("mariadb://127.0.0.1").unwrap();
        assert_eq!((s.port, s.user.as_str(), s.password, s.databases), (3306, "root", None, None));
        let s = MysqlSource::from_url("mysql://u@[::1]/a%20b").unwrap();
        assert_eq!((s.host.as_str(), s.databases), ("::1", Some(vec!["a b".to_string()])));
        for bad in ["postgres://x@h/db", "mysql://h/a/b", "mysql://h/db?ssl=1", "not a url"] {
            assert!(MysqlSource::from_url(bad).is_err(), "{bad}");
        }
        let err = MysqlSource::from_url("postgres://u:hunter22@h/db").unwrap_err().to_string();
        assert!(!err.contains("hunter22"), "{err}");
    }
}
