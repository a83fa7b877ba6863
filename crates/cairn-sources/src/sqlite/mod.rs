//! The SQLite source: one database file, captured online as a page stream.
//!
//! # Backup
//!
//! The database is opened (never created) and one read transaction is started; everything
//! the capture records — metadata, exact row counts and the pages — is read inside it, so
//! all of it describes one instant. The pages come from the `sqlite_dbpage` virtual table in
//! page order and go straight into the repository as the stream `database.sqlite`: no
//! temporary file, no copy of the database in memory. Read through the connection's pager,
//! the pages are those of the transaction's snapshot, including pages that are still only in
//! the `-wal` file. Concatenated they are a valid database file.
//!
//! Locking: in WAL mode the read transaction blocks nobody; writers keep committing while the
//! capture runs (the `-wal` file grows until it ends). In rollback-journal mode the read
//! transaction holds a SHARED lock for the whole capture, so writers wait (their busy
//! timeout must outlast the capture). WAL mode is recommended for databases in use.
//!
//! With `vacuum`, the capture is of a `VACUUM INTO` copy made in the temp directory (deleted
//! afterwards): smaller, with no free pages, but every page moves, so it dedups worse from
//! one day to the next.
//!
//! Metadata keys: `path` (absolute), `stream` (`database.sqlite`), `format` (`pages`),
//! `vacuum`, `sqlite_version`, `page_size`, `pages`, `bytes`, `journal_mode`,
//! `user_version`, `application_id`, `freelist_count`, and `tables`: `[{"name", "rows"}]`
//! sorted by name (internal `sqlite_*` tables left out).
//!
//! # Restore
//!
//! The whole database is written to a temporary file beside the target, checked with
//! `PRAGMA integrity_check`, and renamed over the target. Replacing an existing file needs
//! `yes` and first keeps a consistent copy of it beside it (`<file>.before-restore-<time>`).
//! Chosen tables are copied from the capture into any database file instead, with their
//! indexes and triggers, in one transaction. Applications should be stopped while a restore
//! replaces their database: a connection left open keeps the old file.
//!
//! # Why a page stream (`cargo bench -p cairn-sources --bench sqlite_formats`)
//!
//! A 101 MiB WAL database (300 000 rows with an INTEGER PRIMARY KEY, five text/number
//! columns and a unique index; a rowid table with holes; 36 free pages) is captured, 1% of
//! the rows in one contiguous id range are updated (one text column grows), and it is
//! captured again; `ChunkParams::DUMPS`, default writer (zstd 2), 2 cores. "added" is what
//! the second capture stored (`bytes_stored`); two runs, ranges are their spread:
//!
//! | format                         | stream     | 1st stored | added         | capture | restore        |
//! |--------------------------------|-----------:|-----------:|--------------:|--------:|---------------:|
//! | page stream                    | 101.4 MiB  | 27.1 MiB   | 0.47–0.53 MiB | 0.4 s   | 0.8–1.4 s (a)  |
//! | page stream, `vacuum`          | 99.7 MiB   | 26.0 MiB   | 2.1–2.2 MiB   | 1.0 s   | 0.7–1.0 s (a)  |
//! | SQL dump (`sqlite3 .dump`)     | 100.2 MiB  | 22.6 MiB   | 0.33 MiB      | 1.1 s   | 4.2–4.5 s (b)  |
//!
//! (a) write, fsync and `integrity_check`; (b) replaying the SQL into `sqlite3`.
//!
//! The page stream is the format. Day to day it dedups almost as well as a dump (about 0.5%
//! of the database per 1% of rows changed, against 0.33%; page 1 and split pages always
//! change), while `vacuum` costs four times as much, because every page after a change
//! moves and the b-trees are rebuilt. It is the file itself, so a restore gives back what a
//! dump loses (the bench checks these): rowids of tables without an INTEGER PRIMARY KEY (the
//! dump renumbered them), `user_version`, `application_id`, WAL mode and free pages; also
//! (checked by hand with `.dump`) a non-default `page_size` and `auto_vacuum`. It needs no
//! external tool, captures about 2.5× faster, and restores 3–5× faster, integrity check
//! included, since no index is rebuilt. The dump compresses better on the first capture
//! (no free space inside pages): 17% fewer bytes.

mod backup;
mod restore;
mod tables;
mod verify;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::SourceError;

pub use restore::restore;
pub use verify::verify;

/// Name of the page stream in a capture.
pub const STREAM: &str = "database.sqlite";

/// How long a statement waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// One SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteSource {
    pub path: PathBuf,
    /// Capture a VACUUMed copy (smaller, but every page moves: dedups worse day to day).
    pub vacuum: bool,
}

/// `"name"` with inner quotes doubled: an identifier safe to put into SQL.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The condition on `sqlite_master` that leaves out SQLite's own `sqlite_*` tables.
const USER_TABLES: &str = "type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'";

/// `path` with `suffix` appended to its file name (`app.db` → `app.db-wal`).
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

/// An SQLite error as a source error naming `path`, with a hint for the usual causes.
fn sql_error(path: &Path, doing: &str, e: rusqlite::Error) -> SourceError {
    let message = format!("{}: {doing}: {e}", path.display());
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => {
            SourceError::with_hint(message, "this file is not an SQLite database (or is encrypted); check the path")
        }
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => SourceError::with_hint(
            message,
            "another connection held a lock for too long; retry when it is idle, or switch the database to WAL mode",
        ),
        _ => SourceError::new(message),
    }
}

/// Open an existing database for reading and writing (read-only if the file is
/// write-protected). A missing file is an error: an empty database is never created.
fn open_existing(path: &Path) -> Result<Connection, SourceError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => return Err(SourceError::new(format!("{}: not a file", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SourceError::with_hint(
                format!("{}: no such database file", path.display()),
                "check the path; cairn does not create an empty database in its place",
            ))
        }
        Err(e) => return Err(SourceError::new(format!("{}: {e}", path.display()))),
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| sql_error(path, "cannot open", e))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| sql_error(path, "cannot set the busy timeout", e))?;
    // Opening is lazy: only the first read finds out whether this is a database at all.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0))
        .map_err(|e| sql_error(path, "cannot read the schema", e))?;
    Ok(conn)
}

/// `PRAGMA integrity_check` of the database at `path`; an error unless it says `ok`.
fn integrity_check(path: &Path) -> Result<(), SourceError> {
    let conn = open_existing(path)?;
    let mut stmt =
        conn.prepare("PRAGMA integrity_check(20)").map_err(|e| sql_error(path, "cannot check integrity", e))?;
    let lines: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| sql_error(path, "integrity check failed", e))?;
    if lines != ["ok"] {
        return Err(SourceError::with_hint(
            format!("{}: the restored database fails its integrity check: {}", path.display(), lines.join("; ")),
            "the capture is damaged; restore an older snapshot",
        ));
    }
    Ok(())
}

/// Copy the database `conn` has open (at `path`) to `<path>.before-restore-<time>` through
/// the online backup API, which reads one consistent snapshot even while the database is in
/// use, WAL pages included. Returns where the copy went.
fn safety_copy(conn: &Connection, path: &Path) -> Result<PathBuf, SourceError> {
    let stamp: String = conn
        .query_row("SELECT strftime('%Y%m%dT%H%M%S', 'now', 'localtime')", [], |r| r.get(0))
        .map_err(|e| sql_error(path, "cannot read the clock", e))?;
    let mut copy = sibling(path, &format!(".before-restore-{stamp}"));
    for n in 2.. {
        if !copy.exists() {
            break;
        }
        copy = sibling(path, &format!(".before-restore-{stamp}-{n}"));
    }
    backup_to(conn, &copy).map_err(|e| {
        remove_db_files(&copy);
        sql_error(path, &format!("cannot make a safety copy at {}", copy.display()), e)
    })?;
    Ok(copy)
}

fn backup_to(conn: &Connection, copy: &Path) -> rusqlite::Result<()> {
    let mut dst = Connection::open(copy)?;
    let backup = Backup::new(conn, &mut dst)?;
    let started = Instant::now();
    // All pages in one step: a step that returns reads one snapshot, so a writer committing
    // in between cannot make the backup start over.
    loop {
        match backup.step(-1)? {
            StepResult::Done => return Ok(()),
            StepResult::More => {}
            busy if started.elapsed() > BUSY_TIMEOUT => {
                let code = if busy == StepResult::Busy { ErrorCode::DatabaseBusy } else { ErrorCode::DatabaseLocked };
                return Err(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error { code, extended_code: 0 }, None));
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// A database file of cairn's own (a restore or `VACUUM INTO` temp file): removed with its
/// `-wal`, `-shm` and `-journal` companions when dropped, unless [`TempDb::keep`] was called.
struct TempDb(Option<PathBuf>);

impl TempDb {
    fn new(path: PathBuf) -> TempDb {
        TempDb(Some(path))
    }

    fn path(&self) -> &Path {
        self.0.as_deref().expect("temp database path taken")
    }

    /// The file was renamed into place: leave it.
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            remove_db_files(path);
        }
    }
}

/// Remove a database file of cairn's own and its companions, if there.
fn remove_db_files(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(sibling(path, suffix));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_with_inner_quotes_doubled() {
        assert_eq!(quote("items"), "\"items\"");
        assert_eq!(quote("a \"b\" c"), "\"a \"\"b\"\" c\"");
    }

    #[test]
    fn a_sibling_appends_to_the_file_name() {
        assert_eq!(sibling(Path::new("/d/app.db"), "-wal"), PathBuf::from("/d/app.db-wal"));
    }
}
