//! Restoring chosen tables into a database file.
//!
//! The capture is written to a temp file and attached as `src`; each table is created from
//! its recorded schema, filled with `INSERT … SELECT` (rowids kept), and given its indexes and
//! then its triggers (after the rows, so they do not fire on them), all in one transaction.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior};

use super::restore::{parent_dir, write_stream, Recorded};
use super::{
    integrity_check, open_existing, quote, remove_db_files, safety_copy, sql_error, TempDb, BUSY_TIMEOUT, USER_TABLES,
};
use crate::{RestoreReport, RestoreRequest, SourceError};

/// A table of the capture.
struct Table {
    name: String,
    sql: String,
}

pub(super) fn restore(
    req: &RestoreRequest<'_>,
    recorded: &Recorded,
    target: &Path,
) -> Result<RestoreReport, SourceError> {
    static TEMPS: AtomicU64 = AtomicU64::new(0);
    let name = format!("cairn-restore-{}-{}.sqlite", std::process::id(), TEMPS.fetch_add(1, Ordering::Relaxed));
    let capture = TempDb::new(std::env::temp_dir().join(name));
    write_stream(req, recorded, capture.path())?;
    integrity_check(capture.path())?;
    let existed = target.exists();
    let result = copy_tables(req, recorded, capture.path(), target);
    if result.is_err() && !existed {
        // It was created for this restore, which did not happen.
        remove_db_files(target);
    }
    result
}

fn copy_tables(
    req: &RestoreRequest<'_>,
    recorded: &Recorded,
    capture: &Path,
    target: &Path,
) -> Result<RestoreReport, SourceError> {
    let mut conn = open_target(target)?;
    let src = capture.to_str().ok_or_else(|| SourceError::new(format!("{}: not a UTF-8 path", capture.display())))?;
    conn.execute("ATTACH DATABASE ?1 AS src", [src]).map_err(|e| sql_error(capture, "cannot attach the capture", e))?;
    let chosen = choose(&conn, recorded, &req.tables)?;
    let clashes = existing(&conn, target, &chosen)?;
    if !clashes.is_empty() && !req.yes {
        let names: Vec<&str> = clashes.iter().map(|(_, name)| name.as_str()).collect();
        return Err(SourceError::with_hint(
            format!("{}: already has {}; not replacing", target.display(), names.join(", ")),
            "pass --yes to replace them (a copy of the current file is kept beside it), or --to ANOTHER_FILE",
        ));
    }
    let copy = if clashes.is_empty() { None } else { Some(safety_copy(&conn, target)?) };
    let restored = replace(&mut conn, target, &chosen, &clashes).inspect_err(|_| {
        // Nothing was replaced: the copy is not needed.
        copy.iter().for_each(|c| remove_db_files(c));
    })?;
    let safety_copies = copy.iter().map(|c| c.display().to_string()).collect();
    Ok(RestoreReport { restored, safety_copies, warnings: Vec::new() })
}

/// In one transaction: drop the `clashes`, and copy the `chosen` tables. Returns report lines.
fn replace(
    conn: &mut Connection,
    target: &Path,
    chosen: &[Table],
    clashes: &[(String, String)],
) -> Result<Vec<String>, SourceError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| sql_error(target, "cannot begin a write transaction", e))?;
    let mut lines = Vec::new();
    for table in chosen {
        let clash = clashes.iter().find(|(_, name)| name.eq_ignore_ascii_case(&table.name));
        if let Some((kind, name)) = clash {
            tx.execute_batch(&format!("DROP {kind} main.{}", quote(name)))
                .map_err(|e| sql_error(target, &format!("cannot drop {kind} {name}"), e))?;
        }
        let line = copy_table(&tx, table).map_err(|e| sql_error(target, &format!("table {}", table.name), e))?;
        lines.push(format!("{}: {line}", target.display()));
    }
    tx.commit().map_err(|e| sql_error(target, "cannot commit", e))?;
    Ok(lines)
}

/// Open the target database, creating it (and its directory) if missing.
fn open_target(target: &Path) -> Result<Connection, SourceError> {
    if target.exists() {
        return open_existing(target);
    }
    let dir = parent_dir(target);
    std::fs::create_dir_all(dir).map_err(|e| SourceError::new(format!("{}: cannot create: {e}", dir.display())))?;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(target, flags).map_err(|e| sql_error(target, "cannot create", e))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| sql_error(target, "cannot set the busy timeout", e))?;
    Ok(conn)
}

/// The captured tables named in `wanted` (case-insensitively, as SQLite names are), or an
/// error listing the tables the capture holds.
fn choose(conn: &Connection, recorded: &Recorded, wanted: &[String]) -> Result<Vec<Table>, SourceError> {
    let sql = format!("SELECT name, sql FROM src.sqlite_master WHERE {USER_TABLES} ORDER BY name");
    let mut captured: Vec<Table> = conn
        .prepare(&sql)
        .and_then(|mut stmt| stmt.query_map([], |r| Ok(Table { name: r.get(0)?, sql: r.get(1)? }))?.collect())
        .map_err(|e| sql_error(&recorded.path, "cannot list the captured tables", e))?;
    let mut chosen = Vec::new();
    for name in wanted {
        if chosen.iter().any(|t: &Table| t.name.eq_ignore_ascii_case(name)) {
            continue;
        }
        let Some(i) = captured.iter().position(|t| t.name.eq_ignore_ascii_case(name)) else {
            let names: Vec<&str> = captured.iter().map(|t| t.name.as_str()).collect();
            return Err(SourceError::with_hint(
                format!("table {name} is not in the capture of {}", recorded.path.display()),
                format!("it holds: {}", names.join(", ")),
            ));
        };
        chosen.push(captured.swap_remove(i));
    }
    Ok(chosen)
}

/// Tables or views of the target with the names of `chosen`: `(kind, name)`.
fn existing(conn: &Connection, target: &Path, chosen: &[Table]) -> Result<Vec<(String, String)>, SourceError> {
    let sql =
        "SELECT upper(type), name FROM main.sqlite_master WHERE type IN ('table', 'view') AND name = ?1 COLLATE NOCASE";
    let mut found = Vec::new();
    for table in chosen {
        let hit = conn
            .query_row(sql, [&table.name], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(|e| sql_error(target, "cannot read the schema", e))?;
        found.extend(hit);
    }
    Ok(found)
}

/// Create `table` in `main` and fill it from `src`, then add its indexes and triggers.
/// Returns a line for the report.
fn copy_table(tx: &Transaction<'_>, table: &Table) -> rusqlite::Result<String> {
    tx.execute_batch(&table.sql)?;
    let (columns, rowid) = insert_columns(tx, &table.name)?;
    let list = rowid.into_iter().chain(columns.iter().map(|c| quote(c))).collect::<Vec<_>>().join(", ");
    let name = quote(&table.name);
    let rows = tx.execute(&format!("INSERT INTO main.{name} ({list}) SELECT {list} FROM src.{name}"), [])?;
    copy_sequence(tx, &table.name)?;
    let mut counts = [0; 2];
    for (i, kind) in ["index", "trigger"].into_iter().enumerate() {
        let sql =
            "SELECT sql FROM src.sqlite_master WHERE type = ?1 AND tbl_name = ?2 AND sql IS NOT NULL ORDER BY rowid";
        let statements: Vec<String> =
            tx.prepare(sql)?.query_map([kind, table.name.as_str()], |r| r.get(0))?.collect::<Result<_, _>>()?;
        for statement in &statements {
            tx.execute_batch(statement)?;
        }
        counts[i] = statements.len();
    }
    Ok(format!("table {} restored ({rows} rows, {} indexes, {} triggers)", table.name, counts[0], counts[1]))
}

/// The columns an INSERT can set (not generated or hidden ones), and a name for the rowid
/// if the table has one that is not already a column, so that rowids are kept too.
fn insert_columns(tx: &Transaction<'_>, table: &str) -> rusqlite::Result<(Vec<String>, Option<String>)> {
    let columns: Vec<(String, i64)> = tx
        .prepare("SELECT name, hidden FROM pragma_table_xinfo(?1, 'src')")?
        .query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let (kind, without_rowid): (String, bool) =
        tx.query_row("SELECT type, wr FROM pragma_table_list WHERE schema = 'src' AND name = ?1", [table], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let taken = |alias: &&str| columns.iter().any(|(c, _)| c.eq_ignore_ascii_case(alias));
    let rowid = if kind == "table" && !without_rowid {
        ["rowid", "_rowid_", "oid"].into_iter().find(|alias| !taken(alias)).map(str::to_string)
    } else {
        None
    };
    Ok((columns.into_iter().filter(|(_, hidden)| *hidden == 0).map(|(c, _)| c).collect(), rowid))
}

/// Carry over an AUTOINCREMENT table's counter, which may be past its largest rowid.
fn copy_sequence(tx: &Transaction<'_>, table: &str) -> rusqlite::Result<()> {
    let has_sequence = |schema: &str| {
        tx.query_row(&format!("SELECT count(*) FROM {schema}.sqlite_master WHERE name = 'sqlite_sequence'"), [], |r| {
            r.get::<_, i64>(0)
        })
    };
    if has_sequence("src")? == 0 || has_sequence("main")? == 0 {
        return Ok(());
    }
    let seq: Option<i64> =
        tx.query_row("SELECT seq FROM src.sqlite_sequence WHERE name = ?1", [table], |r| r.get(0)).optional()?;
    if let Some(seq) = seq {
        tx.execute("DELETE FROM main.sqlite_sequence WHERE name = ?1", [table])?;
        tx.execute("INSERT INTO main.sqlite_sequence (name, seq) VALUES (?1, ?2)", rusqlite::params![table, seq])?;
    }
    Ok(())
}
