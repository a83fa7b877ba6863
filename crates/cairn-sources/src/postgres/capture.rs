//! Capturing a server: the globals, then each database with its exact row counts.

use std::io::Read;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map};

use super::client::{Client, Server};
use super::session::Conversation;
use super::{stream_name, PostgresSource, FORMAT, GLOBALS_STREAM};
use crate::streams::StreamSet;
use crate::tool::{Session, Tool};
use crate::{Capture, CaptureContext, SourceError};

/// Longest wait for a quick answer (connecting, starting the transaction).
const ANSWER_WAIT: Duration = Duration::from_secs(60);
/// Longest wait for the row counts of one database (a full scan of every table).
const COUNT_WAIT: Duration = Duration::from_secs(4 * 3600);
/// Longest wait for a table lock, for the counts and for `pg_dump`; a table held by a
/// schema change fails the capture rather than stalling it.
const LOCK_WAIT: &str = "60s";

/// Starts the transaction whose snapshot `pg_dump` shares; answers with the snapshot's id
/// and the database's size. The settings keep a slow capture from being cut off by the
/// server's defaults, and bound lock waits and the counting time on the server's side too.
fn begin() -> String {
    format!(
        "SET idle_in_transaction_session_timeout = 0;
SET lock_timeout = '{LOCK_WAIT}';
SET statement_timeout = '{}s';
BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
SELECT pg_export_snapshot();
SELECT pg_database_size(current_database());",
        COUNT_WAIT.as_secs()
    )
}

/// One `SELECT count(*)` per user table, run by psql's `\gexec`; each prints one JSON line.
/// Plain tables are counted `ONLY` (without inheriting children), as `pg_dump` dumps them.
pub(super) const COUNT_TABLES: &str = r"SELECT format(
    'SELECT json_build_object(''schema'', %L, ''table'', %L, ''bytes'', %s, ''rows'', count(*)) FROM %s%I.%I',
    n.nspname, c.relname, pg_total_relation_size(c.oid),
    CASE WHEN c.relkind = 'r' THEN 'ONLY ' ELSE '' END, n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%'
ORDER BY n.nspname, c.relname
\gexec";

/// One database of a capture, as recorded in the metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct DatabaseMeta {
    pub name: String,
    pub stream: String,
    /// `pg_database_size` when captured.
    pub bytes: u64,
    pub tables: Vec<TableMeta>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct TableMeta {
    /// `schema.table`.
    pub name: String,
    pub schema: String,
    pub table: String,
    /// Exact, at the instant of the dump.
    pub rows: u64,
    /// `pg_total_relation_size` (with indexes and TOAST).
    pub bytes: u64,
}

/// Capture what `source` names.
pub(super) fn run(source: &PostgresSource, ctx: &CaptureContext<'_, '_>) -> Result<Capture, SourceError> {
    let needed: &[&str] = if source.globals { &["psql", "pg_dump", "pg_dumpall"] } else { &["psql", "pg_dump"] };
    let client = Client::new(source, needed)?;
    let server = client.probe()?;
    let against = format!("the PostgreSQL {} server {}", server.version, client.server());
    let client_version = client.check_version("pg_dump", server.major, &against)?;
    let names = choose(source, &client, &server)?;

    let streams = StreamSet::new(ctx.writer, ctx.chunking, ctx.progress);
    let mut warnings = Vec::new();
    let globals = source.globals && capture_globals(&client, &server, &streams, &mut warnings)?;
    let mut databases = Vec::new();
    for name in &names {
        match capture_database(&client, name, &streams) {
            Ok((db, warning)) => {
                databases.push(db);
                warnings.extend(warning);
            }
            // A database dropped since it was listed is no longer part of "all databases".
            Err(SourceError::Source { .. })
                if source.databases.is_none() && client.probe().is_ok_and(|now| !now.has(name)) =>
            {
                warnings.push(format!("database {name:?} was dropped during the backup; it is not in this capture"));
            }
            Err(e) => return Err(e),
        }
    }
    for warning in &warnings {
        ctx.progress.warning(warning);
    }
    let (root, stats) = streams.finish()?;

    let mut metadata = Map::new();
    metadata.insert("server_version".into(), json!(server.version));
    metadata.insert("client_version".into(), json!(client_version));
    metadata.insert("format".into(), json!(FORMAT));
    if globals {
        metadata.insert("globals".into(), json!(GLOBALS_STREAM));
    }
    let databases = serde_json::to_value(&databases).map_err(|e| SourceError::new(e.to_string()))?;
    metadata.insert("databases".into(), databases);
    Ok(Capture { root, metadata, stats, warnings })
}

/// The databases to capture: those asked for (all of which must exist), or every one that
/// accepts connections and is not a template.
fn choose(source: &PostgresSource, client: &Client, server: &Server) -> Result<Vec<String>, SourceError> {
    let Some(wanted) = &source.databases else {
        let all = server.databases.iter().filter(|d| d.allow_conn && !d.template);
        return Ok(all.map(|d| d.name.clone()).collect());
    };
    match wanted.iter().find(|name| !server.has(name)) {
        Some(name) => Err(SourceError::with_hint(
            format!("database {name:?} does not exist on the PostgreSQL server {}", client.server()),
            format!("databases there: {}", server.listing()),
        )),
        None => Ok(wanted.clone()),
    }
}

/// Save the roles and tablespaces; false (with a warning) when even a dump without role
/// passwords was refused.
fn capture_globals(
    client: &Client,
    server: &Server,
    streams: &StreamSet<'_, '_>,
    warnings: &mut Vec<String>,
) -> Result<bool, SourceError> {
    let dumpall = client.tool("pg_dumpall", None).args(["--globals-only", "--no-password"]);
    let dumpall = dumpall.arg(format!("--database={}", server.maintenance_db));
    let Err(refused) = save_output(streams, GLOBALS_STREAM, &dumpall) else { return Ok(true) };
    let refused = client.explain(refused, None);
    if !refused.to_string().contains("permission denied") {
        return Err(refused);
    }
    // Role passwords are in pg_authid, which only superusers may read.
    match save_output(streams, GLOBALS_STREAM, &dumpall.arg("--no-role-passwords")) {
        Ok(_) => {
            warnings.push(format!(
                "{GLOBALS_STREAM} holds no role passwords: this role may not read them (it is not a superuser)"
            ));
            Ok(true)
        }
        Err(e) => {
            warnings.push(format!("roles and tablespaces were not captured: {}", client.explain(e, None)));
            Ok(false)
        }
    }
}

/// Count the rows of `name`'s tables and dump it, both in one snapshot. Returns what to
/// record and a warning if the transaction could not be closed cleanly after the dump.
fn capture_database(
    client: &Client,
    name: &str,
    streams: &StreamSet<'_, '_>,
) -> Result<(DatabaseMeta, Option<String>), SourceError> {
    let explain = |e| client.explain(e, Some(name));
    let mut talk = Conversation::open(&client.psql(name)).map_err(explain)?;
    let begun = talk.ask(&begin(), ANSWER_WAIT).map_err(explain)?;
    let [snapshot, size] = begun.as_slice() else {
        return Err(explain(SourceError::new(format!("unexpected answer to BEGIN: {begun:?}"))));
    };
    let bytes = size.trim().parse().map_err(|_| explain(SourceError::new(format!("not a size: {size:?}"))))?;
    let tables = talk.ask(COUNT_TABLES, COUNT_WAIT).map_err(explain)?;
    let tables = tables.iter().map(|line| parse_count(line)).collect::<Result<Vec<_>, _>>().map_err(explain)?;

    let stream = stream_name(name);
    let dump = client.tool("pg_dump", Some(name)).args(["--format=custom", "--compress=0", "--no-password"]);
    let dump = dump.arg(format!("--snapshot={}", snapshot.trim())).arg(format!("--lock-wait-timeout={LOCK_WAIT}"));
    save_output(streams, &stream, &dump).map_err(explain)?;
    // The dump no longer needs the snapshot once it is done: a failure here changes nothing.
    let warning = talk.close().err().map(|e| format!("database {name:?}: ending the counting transaction: {e}"));
    Ok((DatabaseMeta { name: name.to_string(), stream, bytes, tables }, warning))
}

fn parse_count(line: &str) -> Result<TableMeta, SourceError> {
    #[derive(Deserialize)]
    struct Count {
        schema: String,
        table: String,
        rows: u64,
        bytes: u64,
    }
    let c: Count =
        serde_json::from_str(line).map_err(|e| SourceError::new(format!("unexpected row count {line:?}: {e}")))?;
    Ok(TableMeta {
        name: format!("{}.{}", c.schema, c.table),
        schema: c.schema,
        table: c.table,
        rows: c.rows,
        bytes: c.bytes,
    })
}

/// Save what `tool` prints as the stream `name`. A tool that fails saves no stream, even
/// when it printed something first.
fn save_output(streams: &StreamSet<'_, '_>, name: &str, tool: &Tool) -> Result<u64, SourceError> {
    let mut output = ToolOutput { session: Some(tool.session()?), failure: None };
    streams.save(name, &mut output).map_err(|e| match (e, output.failure.take()) {
        (SourceError::Source { .. }, Some(failure)) => failure,
        (e, _) => e,
    })
}

/// A tool's stdout whose end is an error if the tool then exits with one.
struct ToolOutput {
    session: Option<Session>,
    failure: Option<SourceError>,
}

impl Read for ToolOutput {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(session) = &mut self.session else { return Ok(0) };
        let n = session.stdout.read(buf)?;
        if n == 0 && !buf.is_empty() {
            if let Err(e) = self.session.take().expect("checked above").finish() {
                let message = e.to_string();
                self.failure = Some(e);
                return Err(std::io::Error::other(message));
            }
        }
        Ok(n)
    }
}
