//! Capturing a database: metadata and pages read inside one read transaction.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, Rows};
use serde_json::{json, Map, Value};

use super::{open_existing, quote, sql_error, SqliteSource, TempDb, STREAM, USER_TABLES};
use crate::streams::StreamSet;
use crate::{Capture, CaptureContext, SourceError};

/// What a capture records about the database, all read at the instant of its pages.
struct Info {
    sqlite_version: String,
    page_size: u64,
    pages: u64,
    journal_mode: String,
    user_version: i64,
    application_id: i64,
    freelist_count: u64,
    /// Name and row count, sorted by name; `None` for a virtual table that cannot be read.
    tables: Vec<(String, Option<u64>)>,
}

impl SqliteSource {
    /// Capture the database as the stream [`STREAM`]; see the module documentation.
    pub fn backup(&self, ctx: &CaptureContext<'_, '_>) -> Result<Capture, SourceError> {
        let path = crate::files::normalize(
            &std::path::absolute(&self.path).map_err(|e| SourceError::new(format!("{}: {e}", self.path.display())))?,
        );
        let conn = open_existing(&path)?;
        if !self.vacuum {
            return capture(&conn, &path, ctx, false);
        }
        let copy = vacuum_copy(&conn, &path)?;
        let copy_conn = open_existing(copy.path())?;
        capture(&copy_conn, &path, ctx, true)
    }
}

/// `VACUUM INTO` a file in the temp directory, in the source's journal mode.
fn vacuum_copy(conn: &Connection, path: &Path) -> Result<TempDb, SourceError> {
    static COPIES: AtomicU64 = AtomicU64::new(0);
    let name = format!("cairn-vacuum-{}-{}.sqlite", std::process::id(), COPIES.fetch_add(1, Ordering::Relaxed));
    let copy = TempDb::new(std::env::temp_dir().join(name));
    let target = copy.path().to_str().ok_or_else(|| {
        SourceError::with_hint(
            format!("{}: the temp directory is not a UTF-8 path", copy.path().display()),
            "set TMPDIR to a plain path",
        )
    })?;
    conn.execute("VACUUM INTO ?1", [target])
        .map_err(|e| sql_error(path, &format!("VACUUM INTO {target} failed"), e))?;
    // VACUUM INTO always writes a rollback-journal file; keep the source's WAL mode so that a
    // restore gives back what was there.
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(|e| sql_error(path, "cannot read the journal mode", e))?;
    if mode.eq_ignore_ascii_case("wal") {
        let copy_conn = open_existing(copy.path())?;
        copy_conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
            .map_err(|e| sql_error(copy.path(), "cannot switch the vacuumed copy to WAL", e))?;
    }
    Ok(copy)
}

/// Read metadata and stream the pages of the database `conn` has open, in one read
/// transaction. `path` is what the capture records as the database's place.
fn capture(conn: &Connection, path: &Path, ctx: &CaptureContext<'_, '_>, vacuum: bool) -> Result<Capture, SourceError> {
    // Deferred: the first read below starts the read transaction; dropping `tx` ends it.
    let tx = conn.unchecked_transaction().map_err(|e| sql_error(path, "cannot begin a read transaction", e))?;
    let info = read_info(&tx).map_err(|e| e.context(path.display()))?;
    let set = StreamSet::new(ctx.writer, ctx.chunking, ctx.progress);
    let read = save_pages(&tx, &set, info.page_size).map_err(|e| e.context(path.display()))?;
    drop(tx);
    if read != (info.pages, info.pages * info.page_size) {
        return Err(SourceError::new(format!(
            "{}: read {} pages ({} bytes), but the database has {} pages of {} bytes",
            path.display(),
            read.0,
            read.1,
            info.pages,
            info.page_size
        )));
    }
    let (root, stats) = set.finish()?;
    let warnings: Vec<String> = info
        .tables
        .iter()
        .filter(|(_, rows)| rows.is_none())
        .map(|(name, _)| {
            format!("{}: table {name}: rows not counted (its virtual table module is missing)", path.display())
        })
        .collect();
    Ok(Capture { root, metadata: metadata(path, &info, vacuum), stats, warnings })
}

fn metadata(path: &Path, info: &Info, vacuum: bool) -> Map<String, Value> {
    let tables: Vec<Value> = info.tables.iter().map(|(name, rows)| json!({ "name": name, "rows": rows })).collect();
    let value = json!({
        "path": path.to_string_lossy(),
        "stream": STREAM,
        "format": "pages",
        "vacuum": vacuum,
        "sqlite_version": info.sqlite_version,
        "page_size": info.page_size,
        "pages": info.pages,
        "bytes": info.pages * info.page_size,
        "journal_mode": info.journal_mode,
        "user_version": info.user_version,
        "application_id": info.application_id,
        "freelist_count": info.freelist_count,
        "tables": tables,
    });
    match value {
        Value::Object(map) => map,
        _ => unreachable!("json! of an object literal is an object"),
    }
}

fn read_info(conn: &Connection) -> Result<Info, SourceError> {
    let err = |what: &str| {
        let what = what.to_string();
        move |e: rusqlite::Error| SourceError::new(format!("reading {what}: {e}"))
    };
    let pragma_i64 =
        |name: &str| conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0)).map_err(err(name));
    // Sizes and counts are never negative.
    let pragma_u64 = |name: &str| pragma_i64(name).map(|v| u64::try_from(v).unwrap_or_default());
    let names: Vec<(String, String)> = conn
        .prepare(&format!("SELECT name, coalesce(sql, '') FROM sqlite_master WHERE {USER_TABLES} ORDER BY name"))
        .and_then(|mut stmt| stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .map_err(err("the list of tables"))?;
    let mut tables = Vec::with_capacity(names.len());
    for (name, sql) in names {
        let rows = conn.query_row(&format!("SELECT count(*) FROM {}", quote(&name)), [], |r| r.get::<_, i64>(0));
        let rows = match rows {
            Ok(n) => Some(u64::try_from(n).unwrap_or_default()),
            Err(_) if sql.to_ascii_uppercase().starts_with("CREATE VIRTUAL TABLE") => None,
            Err(e) => return Err(err(&format!("the rows of table {name}"))(e)),
        };
        tables.push((name, rows));
    }
    tables.sort();
    Ok(Info {
        sqlite_version: conn.query_row("SELECT sqlite_version()", [], |r| r.get(0)).map_err(err("the version"))?,
        page_size: pragma_u64("page_size")?,
        pages: pragma_u64("page_count")?,
        journal_mode: conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).map_err(err("journal_mode"))?,
        user_version: pragma_i64("user_version")?,
        application_id: pragma_i64("application_id")?,
        freelist_count: pragma_u64("freelist_count")?,
        tables,
    })
}

/// Save the pages of the transaction's snapshot as [`STREAM`]; returns pages and bytes read.
fn save_pages(conn: &Connection, set: &StreamSet<'_, '_>, page_size: u64) -> Result<(u64, u64), SourceError> {
    let mut stmt = conn
        .prepare("SELECT data FROM sqlite_dbpage ORDER BY pgno")
        .map_err(|e| SourceError::new(format!("cannot read pages (is sqlite_dbpage compiled in?): {e}")))?;
    let rows = stmt.query([]).map_err(|e| SourceError::new(format!("cannot read pages: {e}")))?;
    let mut reader = PageReader { rows, page: Vec::new(), pos: 0, pages: 0, page_size };
    let bytes = set.save(STREAM, &mut reader)?;
    Ok((reader.pages, bytes))
}

/// The rows of `SELECT data FROM sqlite_dbpage` as one byte stream, a page at a time.
struct PageReader<'s> {
    rows: Rows<'s>,
    page: Vec<u8>,
    pos: usize,
    pages: u64,
    page_size: u64,
}

impl PageReader<'_> {
    /// Load the next page; false at the end.
    fn next_page(&mut self) -> std::io::Result<bool> {
        let Some(row) = self.rows.next().map_err(std::io::Error::other)? else {
            return Ok(false);
        };
        let data = row.get_ref(0).map_err(std::io::Error::other)?.as_blob().map_err(std::io::Error::other)?;
        if data.len() as u64 != self.page_size {
            let message = format!("page {} has {} bytes, not {}", self.pages + 1, data.len(), self.page_size);
            return Err(std::io::Error::other(message));
        }
        self.page.clear();
        self.page.extend_from_slice(data);
        self.pos = 0;
        self.pages += 1;
        Ok(true)
    }
}

impl Read for PageReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.page.len() && !self.next_page()? {
            return Ok(0);
        }
        let n = buf.len().min(self.page.len() - self.pos);
        buf[..n].copy_from_slice(&self.page[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page query inside a read transaction, as one file image.
    fn image(conn: &Connection) -> Vec<u8> {
        let mut stmt = conn.prepare("SELECT data FROM sqlite_dbpage ORDER BY pgno").unwrap();
        let rows = stmt.query([]).unwrap();
        let mut image = Vec::new();
        PageReader { rows, page: Vec::new(), pos: 0, pages: 0, page_size: 4096 }.read_to_end(&mut image).unwrap();
        image
    }

    #[test]
    fn pages_are_those_of_the_read_transaction_including_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA page_size = 4096; PRAGMA wal_autocheckpoint = 0;
                 CREATE TABLE t (x); INSERT INTO t VALUES (1), (2);",
            )
            .unwrap();
        let reader = open_existing(&path).unwrap();
        let tx = reader.unchecked_transaction().unwrap();
        tx.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)).unwrap();
        // Committed after the snapshot, and a page bigger: invisible to the transaction.
        writer.execute("INSERT INTO t SELECT randomblob(5000) FROM t", []).unwrap();
        let image = image(&tx);
        drop(tx);
        let in_file = std::fs::metadata(&path).unwrap().len();
        assert!(in_file < image.len() as u64, "table t's pages are only in the -wal ({in_file} bytes in the file)");

        let copy = dir.path().join("copy.db");
        std::fs::write(&copy, image).unwrap();
        let copy = Connection::open(&copy).unwrap();
        assert_eq!(copy.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)).unwrap(), 2);
        assert_eq!(copy.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0)).unwrap(), "ok");
    }

    #[test]
    fn the_page_query_streams_in_page_order_without_sorting() {
        let conn = Connection::open_in_memory().unwrap();
        let plan: Vec<String> = conn
            .prepare("EXPLAIN QUERY PLAN SELECT data FROM sqlite_dbpage ORDER BY pgno")
            .unwrap()
            .query_map([], |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(!plan.iter().any(|step| step.contains("TEMP B-TREE")), "{plan:?}");
    }
}
