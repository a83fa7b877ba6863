//! The PostgreSQL source: one `pg_dump` per database, plus the server's roles and tablespaces.
//!
//! Everything goes through the client tools (`psql`, `pg_dump`, `pg_dumpall`, `pg_restore`),
//! never a driver, so a command prefix such as `docker exec -i db` applies to all of it.
//! Connection settings reach the tools only through their environment (`PGHOST`, `PGPASSWORD`,
//! …); no secret is ever on a command line or in a message.
//!
//! A capture holds one stream per database, `<db>.pgdump` (custom format, uncompressed so the
//! repository can deduplicate it), and `globals.sql` from `pg_dumpall --globals-only`. Each
//! database's row counts are taken in a read-only repeatable-read transaction whose snapshot
//! `pg_dump` then shares (`--snapshot`), so the counts describe exactly the dumped data even
//! while writers keep committing.
//!
//! Metadata keys (compared by verify):
//! - `server_version`, `client_version`: as the server and `pg_dump --version` print them;
//! - `format`: [`FORMAT`];
//! - `globals`: the stream name of the globals, when they were captured;
//! - `databases`: `[{name, stream, bytes, tables: [{name: "schema.table", schema, table, rows,
//!   bytes}]}]`, where `rows` is an exact `count(*)` and `bytes` a size on the server.
//!
//! Restore feeds a stream to `pg_restore --single-transaction`, so it either completes or
//! changes nothing. A database that exists is only replaced with the caller's consent, and
//! only after a safety copy of it was saved. This module does not restore `globals.sql`: it
//! can be extracted as a plain file and applied by hand.

mod capture;
mod client;
mod restore;
mod session;
mod toc;
mod verify;

use std::path::PathBuf;

use crate::{Capture, CaptureContext, Password, RestoreReport, RestoreRequest, SourceError};

/// The `format` recorded in the metadata of every capture.
pub const FORMAT: &str = "pg_dump custom, uncompressed";
/// The stream holding roles and tablespaces.
pub const GLOBALS_STREAM: &str = "globals.sql";
/// The port PostgreSQL listens on unless told otherwise.
const DEFAULT_PORT: u16 = 5432;
/// The role connected as unless told otherwise.
const DEFAULT_USER: &str = "postgres";

/// Connection settings and what to capture.
#[derive(Debug, Clone)]
pub struct PostgresSource {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<Password>,
    /// Databases to capture; `None` captures all (but the server's own).
    pub databases: Option<Vec<String>>,
    /// Run the tools through this command (e.g. `docker exec -i db`); empty: run directly.
    /// The connection settings are in the tools' environment (`PGHOST`, `PGPORT`, `PGUSER`,
    /// `PGDATABASE`, `PGPASSWORD`, `PGCONNECT_TIMEOUT`, `PGAPPNAME`), which the prefix must
    /// pass on (`docker exec -i -e PGHOST -e PGPASSWORD … db`).
    pub prefix: Vec<String>,
    /// Directory of the client tools; default: found on this machine.
    pub bin_dir: Option<PathBuf>,
    /// Also capture roles and tablespaces (`pg_dumpall --globals-only`).
    pub globals: bool,
}

impl PostgresSource {
    /// Settings from a URL like `postgres://postgres@127.0.0.1:5432/app` (the path names one
    /// database). The host is required; the port defaults to 5432 and the user to `postgres`.
    /// A password in the URL is kept as [`PostgresSource::password`].
    pub fn from_url(url: &str) -> Result<PostgresSource, SourceError> {
        // Messages never quote the URL itself: it may hold a password.
        let parsed = url::Url::parse(url).map_err(|e| {
            SourceError::with_hint(
                format!("cannot read the PostgreSQL URL: {e}"),
                "write it as postgres://USER[:PASSWORD]@HOST[:PORT][/DATABASE]",
            )
        })?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(SourceError::with_hint(
                format!("a PostgreSQL URL starts with postgres:// or postgresql://, not {}://", parsed.scheme()),
                "write it as postgres://USER[:PASSWORD]@HOST[:PORT][/DATABASE]",
            ));
        }
        let host = parsed.host_str().unwrap_or_default();
        if host.is_empty() {
            return Err(SourceError::with_hint(
                "the PostgreSQL URL names no host",
                "write it as postgres://USER@HOST[:PORT][/DATABASE], e.g. postgres://postgres@127.0.0.1/app",
            ));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(SourceError::new("the PostgreSQL URL may not have parameters (?…) or a fragment (#…)"));
        }
        let user = decode(parsed.username(), "user")?;
        let password = parsed.password().map(|p| decode(p, "password")).transpose()?;
        let database = decode(parsed.path().trim_start_matches('/'), "database")?;
        if database.contains('/') {
            return Err(SourceError::new(format!("the PostgreSQL URL names more than a database: {database:?}")));
        }
        Ok(PostgresSource {
            // An IPv6 address comes bracketed; libpq wants it bare.
            host: host.trim_start_matches('[').trim_end_matches(']').to_string(),
            port: parsed.port().unwrap_or(DEFAULT_PORT),
            user: if user.is_empty() { DEFAULT_USER.to_string() } else { user },
            password: password.map(Password),
            databases: (!database.is_empty()).then(|| vec![database]),
            prefix: Vec::new(),
            bin_dir: None,
            globals: true,
        })
    }

    /// Capture the databases (and the globals) into streams of `ctx`'s writer.
    pub fn backup(&self, ctx: &CaptureContext<'_, '_>) -> Result<Capture, SourceError> {
        capture::run(self, ctx)
    }

    /// Restore databases or tables of a capture into this server.
    pub fn restore(&self, req: &RestoreRequest<'_>) -> Result<RestoreReport, SourceError> {
        restore::run(self, req)
    }

    /// The same server, capturing just `database` and no globals (a safety copy).
    fn only(&self, database: &str) -> PostgresSource {
        PostgresSource { databases: Some(vec![database.to_string()]), globals: false, ..self.clone() }
    }
}

fn decode(text: &str, what: &str) -> Result<String, SourceError> {
    crate::url_part(text, what, "PostgreSQL")
}

/// The stream name of a database's dump: `<name>.pgdump` (see [`crate::streams::file_name`]).
fn stream_name(database: &str) -> String {
    crate::streams::file_name(database, "pgdump")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_with_everything() {
        let s = PostgresSource::from_url("postgresql://app%40x:p%3Ass%2Fw@db.example:6543/my%20db").unwrap();
        assert_eq!((s.host.as_str(), s.port, s.user.as_str()), ("db.example", 6543, "app@x"));
        assert_eq!(s.password, Some(Password("p:ss/w".into())));
        assert_eq!(s.databases, Some(vec!["my db".to_string()]));
        assert!(s.globals && s.prefix.is_empty() && s.bin_dir.is_none());
    }

    #[test]
    fn url_defaults() {
        let s = PostgresSource::from_url("postgres://127.0.0.1").unwrap();
        assert_eq!((s.host.as_str(), s.port, s.user.as_str()), ("127.0.0.1", 5432, "postgres"));
        assert_eq!((s.password, s.databases), (None, None));
        let s = PostgresSource::from_url("postgres://u@[::1]:5433/").unwrap();
        assert_eq!((s.host.as_str(), s.port, s.databases), ("::1", 5433, None));
    }

    #[test]
    fn bad_urls_are_refused_without_quoting_the_password() {
        for url in [
            "mysql://u:hunter2@h/db",
            "postgres://u:hunter2@/db",
            "postgres:///db",
            "postgres://u:hunter2@h/a/b",
            "postgres://u:hunter2@h/db?sslmode=require",
            "postgres://u:hunter2@h:99999/db",
            "postgres://u:hunter2%ff@h/db",
        ] {
            let err = PostgresSource::from_url(url).unwrap_err().to_string();
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn stream_names_are_plain_file_names() {
        assert_eq!(stream_name("app"), "app.pgdump");
        assert_eq!(stream_name("a/b.c"), "a%2Fb.c.pgdump");
        assert_eq!(stream_name(".."), "%2E..pgdump");
        assert_eq!(stream_name("50%"), "50%25.pgdump");
        assert_ne!(stream_name("%2F"), stream_name("/"));
    }
}
