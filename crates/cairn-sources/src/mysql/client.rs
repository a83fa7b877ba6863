//! The server, reached only through its client tools (`mariadb`/`mysql`,
//! `mariadb-dump`/`mysqldump`), so that a command prefix such as `docker exec -i db` applies
//! to every contact with it.
//!
//! Owns finding the tools, the connection arguments (the password only ever in the child's
//! `MYSQL_PWD`), small queries, and turning the tools' complaints into errors that name the
//! server and say what went wrong. Does not know what a capture holds.

use std::collections::BTreeMap;
use std::io::Write;

use super::MysqlSource;
use crate::tool::{write_error, Tool};
use crate::SourceError;

/// Client programs, in order of preference.
const CLIENTS: [&str; 2] = ["mariadb", "mysql"];
const DUMPERS: [&str; 2] = ["mariadb-dump", "mysqldump"];

/// Options of every dump: one consistent instant (InnoDB), everything a database holds, a
/// stable order (so unchanged data dedups), binary data as hex (so the dump is text), and
/// no `CREATE DATABASE`/`USE` (no `--databases`), so it can be restored under another name.
/// Rows stream from the server (`--quick`, on by default).
const DUMP_OPTIONS: [&str; 9] = [
    "--single-transaction",
    "--routines",
    "--triggers",
    "--events",
    "--order-by-primary",
    "--skip-dump-date",
    "--hex-blob",
    "--no-tablespaces",
    "--default-character-set=utf8mb4",
];

/// A server whose client tool has been found and which answered.
pub(super) struct Server<'s> {
    source: &'s MysqlSource,
    client: String,
    /// `SELECT VERSION()`.
    pub version: String,
}

/// The dump program, found.
pub(super) struct DumpTool {
    program: String,
    /// What `--version` printed.
    pub version: String,
}

/// A table as information_schema describes it.
pub(super) struct TableInfo {
    /// Data and index size (approximate, as InnoDB estimates it).
    pub bytes: u64,
    pub engine: String,
}

impl<'s> Server<'s> {
    /// Find the client and ask the server its version: fails clearly when the server cannot be
    /// reached or refuses the login.
    pub fn connect(source: &'s MysqlSource) -> Result<Server<'s>, SourceError> {
        let (client, _) = find_tool(source, &CLIENTS, "client")?;
        let mut server = Server { source, client, version: String::new() };
        let rows = server.query("SELECT VERSION()", "connecting")?;
        server.version = rows.into_iter().next().and_then(|r| r.into_iter().next()).flatten().unwrap_or_default();
        Ok(server)
    }

    /// `host:port`, for messages.
    pub fn name(&self) -> String {
        let host = &self.source.host;
        if host.contains(':') {
            format!("[{host}]:{}", self.source.port)
        } else {
            format!("{host}:{}", self.source.port)
        }
    }

    fn connection(&self, program: &str) -> Tool {
        let s = self.source;
        let tool = Tool::new(&s.prefix, program).args([
            format!("--host={}", s.host),
            format!("--port={}", s.port),
            format!("--user={}", s.user),
            "--protocol=TCP".to_string(),
        ]);
        match &s.password {
            Some(password) => tool.env("MYSQL_PWD", password.0.clone()),
            None => tool,
        }
    }

    /// The client, connected, reading SQL from stdin.
    pub fn client(&self) -> Tool {
        self.connection(&self.client).arg("--connect-timeout=10")
    }

    /// Run `sql` (statements separated by `;`); returns the rows of its output, `NULL` as
    /// `None`. `doing` says what for, in errors.
    pub fn query(&self, sql: &str, doing: &str) -> Result<Vec<Vec<Option<String>>>, SourceError> {
        let out = self
            .client()
            .args(["--batch", "--skip-column-names"])
            .write_stdin(|stdin| stdin.write_all(sql.as_bytes()).map_err(|e| write_error(&self.client, &e)))
            .map_err(|e| self.explain(e, doing))?;
        let lines = out.strip_suffix('\n').unwrap_or(&out);
        if lines.is_empty() {
            return Ok(Vec::new());
        }
        Ok(lines.split('\n').map(|line| line.split('\t').map(batch_field).collect()).collect())
    }

    /// All databases the user can see, sorted.
    pub fn databases(&self) -> Result<Vec<String>, SourceError> {
        let rows = self
            .query("SELECT schema_name FROM information_schema.schemata ORDER BY schema_name", "listing databases")?;
        Ok(rows.into_iter().filter_map(|r| r.into_iter().next().flatten()).collect())
    }

    /// The default character set and collation of `database`, which its dump does not carry.
    pub fn defaults(&self, database: &str) -> Result<Option<(String, String)>, SourceError> {
        let sql = format!(
            "SELECT default_character_set_name, default_collation_name FROM information_schema.schemata \
             WHERE schema_name = {}",
            sql_string(database)
        );
        let rows = self.query(&sql, &format!("reading the defaults of database {database}"))?;
        Ok(rows.into_iter().next().and_then(|row| match row.as_slice() {
            [Some(charset), Some(collation)] => Some((charset.clone(), collation.clone())),
            _ => None,
        }))
    }

    /// Tables of `database` (not views), by name.
    pub fn tables(&self, database: &str) -> Result<BTreeMap<String, TableInfo>, SourceError> {
        let sql = format!(
            "SELECT table_name, COALESCE(engine, ''), COALESCE(data_length, 0) + COALESCE(index_length, 0) \
             FROM information_schema.tables WHERE table_schema = {} AND table_type <> 'VIEW'",
            sql_string(database)
        );
        let rows = self.query(&sql, &format!("listing the tables of database {database}"))?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let mut fields = row.into_iter().map(Option::unwrap_or_default);
                let name = fields.next()?;
                let engine = fields.next().unwrap_or_default();
                let bytes = fields.next().and_then(|b| b.parse().ok()).unwrap_or(0);
                Some((name, TableInfo { bytes, engine }))
            })
            .collect())
    }

    pub fn dump_tool(&self) -> Result<DumpTool, SourceError> {
        let (program, version) = find_tool(self.source, &DUMPERS, "dump tool")?;
        Ok(DumpTool { program, version })
    }

    /// The dump of one database, to be read from its stdout.
    pub fn dump(&self, tool: &DumpTool, database: &str) -> Tool {
        self.connection(&tool.program).args(DUMP_OPTIONS).args(["--", database])
    }

    /// A tool's failure as the user needs to hear it: an unreachable server and a refused
    /// login are said plainly; anything else keeps the tool's words, with the server named.
    pub fn explain(&self, e: SourceError, doing: &str) -> SourceError {
        let SourceError::Source { message, hint: None } = &e else {
            return e;
        };
        let server = format!("MySQL/MariaDB server {}", self.name());
        match error_code(message) {
            Some(2002 | 2003 | 2005 | 2006 | 2013) => SourceError::with_hint(
                format!("cannot reach {server} ({doing}): {message}"),
                format!(
                    "is the server running and listening on TCP port {} of {}? cairn always connects over TCP",
                    self.source.port, self.source.host
                ),
            ),
            Some(1045) => {
                let mut hint =
                    "check the user name and password (the password reaches the tools as MYSQL_PWD)".to_string();
                if !self.source.prefix.is_empty() {
                    hint.push_str("; a command prefix must pass MYSQL_PWD on (e.g. `docker exec -e MYSQL_PWD`)");
                }
                SourceError::with_hint(
                    format!("access denied for user '{}' on {server}: {message}", self.source.user),
                    hint,
                )
            }
            Some(1227) => SourceError::with_hint(
                format!("{doing} on {server}: {message}"),
                "views, triggers, routines and events keep their DEFINER; creating them for another user \
                 needs the SUPER or SET USER privilege (or restore as a user that has it)",
            ),
            _ => e.context(format!("{doing} on {server}")),
        }
    }
}

/// The MySQL error number in a tool's complaint (`ERROR 1045 (28000): …` from the client,
/// `Got error: 1045: …` from the dump tool).
fn error_code(message: &str) -> Option<u32> {
    ["ERROR ", "Got error: "].iter().find_map(|marker| {
        let at = message.find(marker)? + marker.len();
        let digits: String = message[at..].chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })
}

/// Probe `names` in order (in `bin_dir`, through the prefix) with `--version`; the first that
/// runs wins. Returns its path and the version it printed.
fn find_tool(source: &MysqlSource, names: &[&str], what: &str) -> Result<(String, String), SourceError> {
    let mut last = None;
    for name in names {
        let program = match &source.bin_dir {
            Some(dir) => dir.join(name).to_string_lossy().into_owned(),
            None => (*name).to_string(),
        };
        match Tool::new(&source.prefix, &program).arg("--version").output() {
            Ok(version) => return Ok((program, version.trim().to_string())),
            Err(e) => last = Some(e),
        }
    }
    let mut place = match &source.bin_dir {
        Some(dir) => format!("in {}", dir.display()),
        None => "on PATH".to_string(),
    };
    let mut message = String::new();
    if !source.prefix.is_empty() {
        place.push_str(&format!(" through `{}`", source.prefix.join(" ")));
        // Through a prefix, the prefix itself may be what failed.
        if let Some(e) = last {
            message = format!(" (last attempt: {e})");
        }
    }
    Err(SourceError::with_hint(
        format!("no MySQL/MariaDB {what} found: tried {} {place}{message}", names.join(", ")),
        "install the MariaDB or MySQL client tools (e.g. the mariadb-client package), \
         or set bin_dir to the directory that holds them",
    ))
}

/// A field of the client's `--batch` output: `NULL` is `None`; `\0 \t \n \\` are unescaped.
fn batch_field(field: &str) -> Option<String> {
    if field == "NULL" {
        return None;
    }
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('0') => out.push('\0'),
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    Some(out)
}

/// `name` as a quoted identifier.
pub(super) fn identifier(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `text` as a SQL string literal, in hex so that no sql_mode changes its meaning.
fn sql_string(text: &str) -> String {
    let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
    format!("_utf8mb4 X'{hex}'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_of_both_tools() {
        assert_eq!(error_code("mariadb exited with status 1:\n  ERROR 1045 (28000): Access denied"), Some(1045));
        assert_eq!(error_code("mariadb-dump: Got error: 2002: \"Can't connect\" when trying to connect"), Some(2002));
        assert_eq!(error_code("something else"), None);
    }

    #[test]
    fn batch_fields_and_literals() {
        assert_eq!(batch_field("a\\tb\\nc\\\\d\\0"), Some("a\tb\nc\\d\0".to_string()));
        assert_eq!(batch_field("NULL"), None);
        assert_eq!(identifier("a`b"), "`a``b`");
        assert_eq!(sql_string("a'\\"), "_utf8mb4 X'61275c'");
    }
}
