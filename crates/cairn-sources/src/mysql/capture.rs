//! Backup: one dump per database, streamed into the repository and counted on the way.

use serde_json::{json, Map, Value};

use super::client::{DumpTool, Server};
use super::dump::{Scanner, Scanning};
use crate::streams::StreamSet;
use crate::{Capture, CaptureContext, SourceError};

/// Engines whose tables a `--single-transaction` dump sees at the same instant as the rest.
const TRANSACTIONAL: [&str; 4] = ["InnoDB", "ROCKSDB", "TokuDB", "SEQUENCE"];

/// Dump `databases` (known to exist) into one stream set.
pub(super) fn capture(
    server: &Server<'_>,
    dump: &DumpTool,
    databases: &[String],
    ctx: &CaptureContext<'_, '_>,
) -> Result<Capture, SourceError> {
    let streams = StreamSet::new(ctx.writer, ctx.chunking, ctx.progress);
    let mut listed = Vec::new();
    let mut warnings = Vec::new();
    if databases.is_empty() {
        let warning = format!("MySQL/MariaDB server {} holds no databases to capture", server.name());
        ctx.progress.warning(&warning);
        warnings.push(warning);
    }
    for database in databases {
        let (entry, warned) = capture_one(server, dump, database, &streams)?;
        for warning in &warned {
            ctx.progress.warning(warning);
        }
        listed.push(entry);
        warnings.extend(warned);
    }
    let (root, stats) = streams.finish()?;
    let mut metadata = Map::new();
    metadata.insert("server".into(), server.name().into());
    metadata.insert("server_version".into(), server.version.clone().into());
    metadata.insert("client_version".into(), dump.version.clone().into());
    metadata.insert("format".into(), "mysqldump SQL".into());
    metadata.insert("databases".into(), Value::Array(listed));
    Ok(Capture { root, metadata, stats, warnings })
}

/// Dump one database into its stream; returns its metadata entry and warnings.
fn capture_one(
    server: &Server<'_>,
    dump: &DumpTool,
    database: &str,
    streams: &StreamSet<'_, '_>,
) -> Result<(Value, Vec<String>), SourceError> {
    let info = server.tables(database)?;
    let defaults = server.defaults(database)?;
    let stream = stream_name(database);
    let (bytes, contents) = server
        .dump(dump, database)
        .read_stdout(|out| {
            let mut reading = Scanning { inner: out, scanner: Scanner::default() };
            let bytes = streams.save(&stream, &mut reading)?;
            Ok((bytes, reading.scanner.finish()))
        })
        .map_err(|e| server.explain(e, &format!("dumping database {database}")))?;
    // Rows as counted in the dump (exactly what it holds); sizes as the server estimates them.
    let tables: Vec<Value> = contents
        .tables
        .iter()
        .map(|(name, rows)| {
            let bytes = info.get(name).map_or(0, |t| t.bytes);
            json!({ "name": name, "rows": rows, "bytes": bytes })
        })
        .collect();
    let warnings = info
        .iter()
        .filter(|(_, t)| !t.engine.is_empty() && !TRANSACTIONAL.iter().any(|e| e.eq_ignore_ascii_case(&t.engine)))
        .map(|(name, t)| {
            format!(
                "database {database}: table {name} uses the {} engine, which a single-transaction dump \
                 cannot freeze; its rows may be from a later instant than the rest",
                t.engine
            )
        })
        .collect();
    let mut entry = json!({
        "name": database,
        "stream": stream,
        "bytes": bytes,
        "tables": tables,
        "views": contents.views,
    });
    if let Some((charset, collation)) = defaults {
        entry["charset"] = charset.into();
        entry["collation"] = collation.into();
    }
    Ok((entry, warnings))
}

/// The stream of a database's dump: `<name>.sql` (see [`streams::file_name`]).
pub(super) fn stream_name(database: &str) -> String {
    crate::streams::file_name(database, "sql")
}

#[cfg(test)]
mod tests {
    use super::stream_name;

    #[test]
    fn stream_names_are_plain_file_names() {
        assert_eq!(stream_name("app"), "app.sql");
        assert_eq!(stream_name("a/b%c"), "a%2Fb%25c.sql");
        assert_eq!(stream_name(".."), "%2E..sql");
    }
}
