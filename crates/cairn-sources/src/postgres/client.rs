//! Talking to the server through the client tools: where the tools are, the environment they
//! run with, the server's and the tools' versions, and connection errors explained.

use std::path::{Path, PathBuf};

use super::PostgresSource;
use crate::tool::{PlacedFile, Tool};
use crate::{Password, SourceError};

/// Where distribution packages install each major version's tools (`<root>/<major>/bin`).
const INSTALL_ROOT: &str = "/usr/lib/postgresql";
/// Seconds libpq waits for a connection.
const CONNECT_TIMEOUT: &str = "10";
/// Databases to connect to for server-wide questions, in order of preference.
const MAINTENANCE_DBS: [&str; 2] = ["postgres", "template1"];
/// libpq's words for a server it could not reach.
const UNREACHABLE: [&str; 7] = [
    "Connection refused",
    "could not connect to server",
    "timeout expired",
    "could not translate host name",
    "No route to host",
    "Network is unreachable",
    // A Unix socket that is not there.
    "failed: No such file or directory",
];
/// libpq's words for a refused login.
const AUTH_FAILED: [&str; 4] =
    ["password authentication failed", "no password supplied", "authentication failed", "no pg_hba.conf entry"];

/// The tools of one server's source, with its connection settings.
pub(super) struct Client {
    prefix: Vec<String>,
    /// Directory the tools are run from; `None`: bare names (PATH, or inside the prefix).
    bin: Option<PathBuf>,
    host: String,
    port: u16,
    user: String,
    password: Option<Password>,
}

/// What the server said about itself.
pub(super) struct Server {
    /// As `SHOW server_version` prints it, e.g. `15.4 (Debian 15.4-1)`.
    pub version: String,
    pub major: Major,
    /// The database server-wide questions were asked in.
    pub maintenance_db: String,
    pub databases: Vec<DatabaseRow>,
}

#[derive(serde::Deserialize)]
pub(super) struct DatabaseRow {
    pub name: String,
    pub allow_conn: bool,
    pub template: bool,
}

impl Server {
    pub fn has(&self, database: &str) -> bool {
        self.databases.iter().any(|d| d.name == database)
    }

    /// The databases a user would call theirs, for hints.
    pub fn listing(&self) -> String {
        let names: Vec<&str> =
            self.databases.iter().filter(|d| d.allow_conn && !d.template).map(|d| d.name.as_str()).collect();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    }
}

impl Client {
    /// The client of `source`'s server; checks that the `needed` tools exist where that can
    /// be seen from here (not inside a prefix's container).
    pub fn new(source: &PostgresSource, needed: &[&str]) -> Result<Client, SourceError> {
        Ok(Client {
            prefix: source.prefix.clone(),
            bin: locate(source, needed)?,
            host: source.host.clone(),
            port: source.port,
            user: source.user.clone(),
            password: source.password.clone(),
        })
    }

    /// `host:port`, for messages.
    pub fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// `program` with the connection in its environment, connecting to `database` by default.
    pub fn tool(&self, program: &str, database: Option<&str>) -> Tool {
        let program = match &self.bin {
            Some(dir) => dir.join(program).to_string_lossy().into_owned(),
            None => program.to_string(),
        };
        let mut tool = Tool::new(&self.prefix, program)
            .env("PGHOST", &self.host)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", &self.user)
            .env("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT)
            .env("PGAPPNAME", "cairn");
        if let Some(db) = database {
            tool = tool.env("PGDATABASE", db);
        }
        if let Some(Password(pw)) = &self.password {
            tool = tool.env("PGPASSWORD", pw);
        }
        tool
    }

    /// A file the tools can read (see [`PlacedFile`]).
    pub fn place_file(&self, name: &str, content: &str) -> Result<PlacedFile, SourceError> {
        PlacedFile::new(&self.prefix, name, content)
    }

    /// `psql` connected to `database`, quiet, tuples only, stopping at the first error and
    /// never prompting for a password.
    pub fn psql(&self, database: &str) -> Tool {
        self.tool("psql", Some(database)).args(["-X", "-q", "-A", "-t", "-w", "-v", "ON_ERROR_STOP=1"])
    }

    /// Run `sql` in `database`; returns what it printed.
    pub fn execute(&self, database: &str, sql: &str) -> Result<String, SourceError> {
        self.psql(database).args(["-c", sql]).output().map_err(|e| self.explain(e, Some(database)))
    }

    /// The server's version and databases (asked in `postgres`, or `template1` without it).
    pub fn probe(&self) -> Result<Server, SourceError> {
        #[derive(serde::Deserialize)]
        struct Answer {
            num: u32,
            version: String,
            databases: Vec<DatabaseRow>,
        }
        const QUERY: &str = "SELECT json_build_object(\
            'num', current_setting('server_version_num')::int, \
            'version', current_setting('server_version'), \
            'databases', (SELECT json_agg(json_build_object('name', datname, 'allow_conn', datallowconn, \
                'template', datistemplate) ORDER BY datname) FROM pg_database))";
        let mut failure = None;
        for db in MAINTENANCE_DBS {
            match self.execute(db, QUERY) {
                Ok(out) => {
                    let answer: Answer = serde_json::from_str(out.trim()).map_err(|e| {
                        SourceError::new(format!("unexpected answer from the server {}: {e}", self.server()))
                    })?;
                    return Ok(Server {
                        version: answer.version,
                        major: Major::from_num(answer.num),
                        maintenance_db: db.to_string(),
                        databases: answer.databases,
                    });
                }
                // Only a missing maintenance database is worth trying the next one for.
                Err(e) if e.to_string().contains(&format!("database {db:?} does not exist")) => failure = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(failure.expect("at least one maintenance database was tried"))
    }

    /// The version of the client tool `program` (e.g. `15.4 (Debian 15.4-1)`), refused when
    /// its major version is older than `oldest` (the server's, or that of a dump's maker).
    pub fn check_version(&self, program: &str, oldest: Major, against: &str) -> Result<String, SourceError> {
        let out = self.tool(program, None).arg("--version").output()?;
        let version = out.trim().split_once(") ").map_or(out.trim(), |(_, v)| v).to_string();
        let major = Major::parse(&version)
            .ok_or_else(|| SourceError::new(format!("cannot tell the version of {program} from {:?}", out.trim())))?;
        if major < oldest {
            return Err(SourceError::with_hint(
                format!("{program} {version} is older than {against}; it cannot be used with it"),
                format!(
                    "install postgresql-client-{oldest} (the tools must be at least as new as the server), \
                     or set bin_dir to the directory of PostgreSQL {oldest}'s tools"
                ),
            ));
        }
        Ok(version)
    }

    /// `err` (from a tool talking to `database`, or to the server) said in the user's terms,
    /// and naming where it happened.
    pub fn explain(&self, err: SourceError, database: Option<&str>) -> SourceError {
        let server = self.server();
        match self.diagnosis(&err, database) {
            Some(known) => known,
            None => match database {
                Some(db) => err.context(format!("database {db:?} on {server}")),
                None => err.context(format!("PostgreSQL server {server}")),
            },
        }
    }

    /// Like [`Client::explain`], but an error not about the connection is left as it is.
    pub fn diagnose(&self, err: SourceError, database: Option<&str>) -> SourceError {
        self.diagnosis(&err, database).unwrap_or(err)
    }

    /// What a connection failure in `err` means, if it is one.
    fn diagnosis(&self, err: &SourceError, database: Option<&str>) -> Option<SourceError> {
        let SourceError::Source { message, .. } = err else { return None };
        let server = self.server();
        let user = &self.user;
        if UNREACHABLE.iter().any(|w| message.contains(w)) {
            Some(SourceError::with_hint(
                format!("cannot reach the PostgreSQL server {server}: {message}"),
                "is the server running, and are host and port right?",
            ))
        } else if message.contains("FATAL:  role \"") && message.contains("does not exist") {
            Some(SourceError::with_hint(
                format!("role {user:?} does not exist on the PostgreSQL server {server}: {message}"),
                "connect as an existing role (the user in the URL)",
            ))
        } else if AUTH_FAILED.iter().any(|w| message.contains(w)) {
            Some(SourceError::with_hint(
                format!("the PostgreSQL server {server} did not let {user:?} log in: {message}"),
                "check the password and the server's pg_hba.conf",
            ))
        } else if message.contains("FATAL:  database \"") && message.contains("does not exist") {
            let db = database.unwrap_or("?");
            Some(SourceError::new(format!("database {db:?} does not exist on the PostgreSQL server {server}")))
        } else {
            None
        }
    }
}

/// The directory to run the tools from (`None`: by bare name), checking that `needed` are
/// there when they run on this machine.
fn locate(source: &PostgresSource, needed: &[&str]) -> Result<Option<PathBuf>, SourceError> {
    if !source.prefix.is_empty() {
        // The tools run inside the prefix's world: only the user knows where they are.
        return Ok(source.bin_dir.clone());
    }
    let hint = "install the PostgreSQL client tools (postgresql-client), or set bin_dir to their directory";
    let missing = |name: &str, place: &str| SourceError::with_hint(format!("{name} not found in {place}"), hint);
    if let Some(dir) = &source.bin_dir {
        let absent = needed.iter().find(|name| !dir.join(name).is_file());
        return match absent {
            Some(name) => Err(missing(name, &format!("{} (bin_dir)", dir.display()))),
            None => Ok(Some(dir.clone())),
        };
    }
    if let Some(dir) = newest_install(Path::new(INSTALL_ROOT)) {
        return match needed.iter().find(|name| !dir.join(name).is_file()) {
            Some(name) => Err(missing(name, &dir.display().to_string())),
            None => Ok(Some(dir)),
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in needed {
        if !std::env::split_paths(&path).any(|dir| dir.join(name).is_file()) {
            return Err(missing(name, &format!("{INSTALL_ROOT}/*/bin nor on PATH")));
        }
    }
    Ok(None)
}

/// `<root>/<version>/bin` of the newest version that has `pg_dump`.
fn newest_install(root: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(root).ok()?;
    entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let major = Major::parse(entry.file_name().to_str()?)?;
            let bin = entry.path().join("bin");
            bin.join("pg_dump").is_file().then_some((major, bin))
        })
        .max_by_key(|(major, _)| *major)
        .map(|(_, bin)| bin)
}

/// A major version as PostgreSQL counts them: `9.6` is one, and from 10 on a single number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Major(u32, u32);

impl Major {
    /// From `server_version_num` (150004 is 15, 90624 is 9.6).
    pub fn from_num(num: u32) -> Major {
        if num >= 100_000 {
            Major(num / 10_000, 0)
        } else {
            Major(num / 10_000, num / 100 % 100)
        }
    }

    /// From a version text such as `15.4 (Debian …)`, `9.6.24` or `17beta1`.
    pub fn parse(text: &str) -> Option<Major> {
        let number = |part: &str| {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u32>().ok()
        };
        let mut parts = text.split_whitespace().next()?.split('.');
        let first = number(parts.next()?)?;
        if first >= 10 {
            Some(Major(first, 0))
        } else {
            Some(Major(first, parts.next().and_then(number).unwrap_or(0)))
        }
    }
}

impl std::fmt::Display for Major {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 >= 10 {
            write!(f, "{}", self.0)
        } else {
            write!(f, "{}.{}", self.0, self.1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn major_versions() {
        assert_eq!(Major::from_num(150004), Major(15, 0));
        assert_eq!(Major::from_num(90624), Major(9, 6));
        assert_eq!(Major::parse("15.4 (Debian 15.4-1.pgdg120+1)"), Some(Major(15, 0)));
        assert_eq!(Major::parse("9.6.0"), Some(Major(9, 6)));
        assert_eq!(Major::parse("17beta1"), Some(Major(17, 0)));
        assert_eq!(Major::parse("main"), None);
        assert!(Major(9, 6) < Major(10, 0) && Major(9, 5) < Major(9, 6));
        assert_eq!((Major(9, 6).to_string(), Major(16, 0).to_string()), ("9.6".to_string(), "16".to_string()));
    }

    #[test]
    fn newest_install_goes_by_number_and_needs_pg_dump() {
        let root = tempfile::tempdir().unwrap();
        for (version, has_dump) in [("9.6", true), ("10", true), ("13", true), ("16", false), ("notes", true)] {
            let bin = root.path().join(version).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            if has_dump {
                std::fs::write(bin.join("pg_dump"), "").unwrap();
            }
        }
        assert_eq!(newest_install(root.path()), Some(root.path().join("13/bin")));
        assert_eq!(newest_install(&root.path().join("absent")), None);
    }
}
