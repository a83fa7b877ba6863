//! Page stream vs logical dump for the SQLite source: what a day of changes costs.
//!
//! Builds a database of about `SQLITE_BENCH_MB` MB (default 100): a `customers` table with
//! an INTEGER PRIMARY KEY, text columns and an index, and a small rowid table with holes.
//! Each format captures it into its own in-memory repository, 1% of the customers (one
//! contiguous id range) are updated, and each captures it again. Printed per format: stream
//! size, bytes stored by each capture (`finish()` totals), the second capture's share of the
//! stream, capture and restore times, and what the restored file kept. The dump is the Debian
//! `sqlite3` CLI's `.dump` when it is installed, else generated with `quote()`.
//!
//! Run: `cargo bench -p cairn-sources --bench sqlite_formats`.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use cairn_repo::testing::memory_repo as repo;
use cairn_repo::{ChunkParams, Repository, SourceEntry, SourceStatus, WriterOptions};
use cairn_sources::sqlite::{self, SqliteSource};
use cairn_sources::streams::{self, StreamSet};
use cairn_sources::{Capture, CaptureContext, RestoreRequest, SafetyCopy, SourceError};
use rusqlite::Connection;

const DUMP: &str = "dump.sql";

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Pages,
    Vacuum,
    Dump,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Pages => "page stream",
            Format::Vacuum => "page stream, vacuum",
            Format::Dump => "SQL dump",
        }
    }
}

struct Captured {
    size: u64,
    stored: u64,
    secs: f64,
    entry: SourceEntry,
}

fn main() {
    let mb: u64 = std::env::var("SQLITE_BENCH_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bench.db");
    let started = Instant::now();
    let rows = build(&db, mb << 20);
    let cli = sqlite3_cli();
    println!(
        "database: {} MB, {rows} customers, built in {:.1} s; dump by {}",
        std::fs::metadata(&db).unwrap().len() >> 20,
        started.elapsed().as_secs_f64(),
        if cli { "the sqlite3 CLI (.dump)" } else { "rusqlite (quote())" }
    );

    let formats = [Format::Pages, Format::Vacuum, Format::Dump];
    let repos: Vec<Repository> = formats.iter().map(|_| repo()).collect();
    let first: Vec<Captured> = formats.iter().zip(&repos).map(|(f, r)| capture(*f, r, &db, cli)).collect();
    let (lo, hi) = update(&db, rows);
    println!("updated customers {lo}..={hi} (1%)\n");
    let second: Vec<Captured> = formats.iter().zip(&repos).map(|(f, r)| capture(*f, r, &db, cli)).collect();

    println!(
        "{:<20} {:>12} {:>12} {:>12} {:>9} {:>9} {:>9}",
        "format", "stream", "1st stored", "2nd stored", "2nd/strm", "capture", "restore"
    );
    for (i, format) in formats.iter().enumerate() {
        let out = dir.path().join(format!("restored-{i}.db"));
        let restore_secs = restore(*format, &repos[i], &second[i].entry, &out, cli);
        let (a, b) = (&first[i], &second[i]);
        println!(
            "{:<20} {:>12} {:>12} {:>12} {:>8.2}% {:>8.2}s {:>8.2}s",
            format.name(),
            mib(b.size),
            mib(a.stored),
            mib(b.stored),
            100.0 * b.stored as f64 / b.size as f64,
            (a.secs + b.secs) / 2.0,
            restore_secs
        );
        println!("{:<20} kept: {}", "", faithfulness(&db, &out));
        std::fs::remove_file(&out).unwrap();
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / f64::from(1 << 20))
}

/// A deterministic word source.
struct Words(u64);

impl Words {
    const LIST: [&'static str; 16] = [
        "alpha", "harbour", "quiet", "river", "copper", "lantern", "meadow", "stone", "velvet", "orbit", "cedar",
        "signal", "maple", "ember", "north", "tide",
    ];

    fn next(&mut self) -> u64 {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn words(&mut self, n: usize) -> String {
        (0..n).map(|_| Self::LIST[(self.next() % 16) as usize]).collect::<Vec<_>>().join(" ")
    }
}

/// Fill `path` until it holds about `bytes`; returns the number of customers.
fn build(path: &Path, bytes: u64) -> i64 {
    let mut conn = Connection::open(path).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA user_version = 12; PRAGMA application_id = 1128354382;
         CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL,
             city TEXT, notes TEXT, balance REAL NOT NULL, updated_at INTEGER NOT NULL);
         CREATE UNIQUE INDEX customers_email ON customers (email);
         CREATE TABLE events (kind TEXT, at INTEGER);",
    )
    .unwrap();
    let mut words = Words(0x9e37_79b9_7f4a_7c15);
    let mut rows = 0;
    while conn.query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0)).unwrap() as u64 * 4096 < bytes {
        let tx = conn.transaction().unwrap();
        {
            let mut insert = tx.prepare("INSERT INTO customers VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)").unwrap();
            for _ in 0..10_000 {
                rows += 1;
                let name = words.words(2);
                let email = format!("{}.{rows}@example.org", name.replace(' ', "."));
                let length = 20 + (words.next() % 30) as usize;
                let notes = words.words(length);
                let balance = (words.next() % 1_000_000) as f64 / 100.0;
                let city = words.words(1);
                insert
                    .execute(rusqlite::params![rows, name, email, city, notes, balance, 1_700_000_000 + rows])
                    .unwrap();
            }
            let mut event = tx.prepare("INSERT INTO events VALUES (?1, ?2)").unwrap();
            for i in 0..100 {
                event.execute(rusqlite::params![words.words(1), rows + i]).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    // Holes in the rowids of a table without INTEGER PRIMARY KEY, and free pages.
    conn.execute("DELETE FROM customers WHERE id BETWEEN ?1 AND ?1 + 999", [rows / 10]).unwrap();
    conn.execute_batch("DELETE FROM events WHERE at % 3 = 0; PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
    rows
}

/// Update 1% of the customers, one contiguous id range in the middle; returns the range.
fn update(path: &Path, rows: i64) -> (i64, i64) {
    let conn = Connection::open(path).unwrap();
    let (lo, hi) = (rows / 2, rows / 2 + rows / 100 - 1);
    conn.execute(
        "UPDATE customers SET balance = balance + 1, notes = notes || ' (checked)', updated_at = updated_at + 86400
         WHERE id BETWEEN ?1 AND ?2",
        [lo, hi],
    )
    .unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    (lo, hi)
}

fn sqlite3_cli() -> bool {
    Command::new("sqlite3").arg("-version").output().is_ok_and(|o| o.status.success())
}

fn capture(format: Format, repo: &Repository, db: &Path, cli: bool) -> Captured {
    let writer = repo.writer(WriterOptions::default());
    let started = Instant::now();
    let ctx = CaptureContext { repo, writer: &writer, chunking: ChunkParams::DUMPS, progress: &() };
    let captured = match format {
        Format::Pages | Format::Vacuum => {
            SqliteSource { path: db.to_path_buf(), vacuum: format == Format::Vacuum }.backup(&ctx).unwrap()
        }
        Format::Dump => {
            let set = StreamSet::new(&writer, ChunkParams::DUMPS, &());
            dump(db, cli, |r| set.save(DUMP, r).map(drop));
            let (root, stats) = set.finish().unwrap();
            Capture { root, metadata: Default::default(), stats, warnings: Vec::new() }
        }
    };
    let size = captured.stats.total_bytes;
    let stored = writer.finish().unwrap().bytes_stored;
    let entry = SourceEntry {
        name: "bench".into(),
        kind: "sqlite".into(),
        status: SourceStatus::Ok,
        error: None,
        root: Some(captured.root),
        chunking: ChunkParams::DUMPS,
        metadata: captured.metadata,
        stats: captured.stats,
        warnings: Vec::new(),
    };
    Captured { size, stored, secs: started.elapsed().as_secs_f64(), entry }
}

/// Stream a logical dump of `db` into `save`.
fn dump(db: &Path, cli: bool, save: impl FnOnce(&mut dyn Read) -> Result<(), SourceError>) {
    if cli {
        let mut child =
            Command::new("sqlite3").arg("-readonly").arg(db).arg(".dump").stdout(Stdio::piped()).spawn().unwrap();
        save(&mut child.stdout.take().unwrap()).unwrap();
        assert!(child.wait().unwrap().success());
        return;
    }
    // Without the CLI: schema, then one INSERT per row made by SQL's quote().
    let conn = Connection::open(db).unwrap();
    let mut out = String::from("BEGIN TRANSACTION;\n");
    let schema: Vec<(String, String, String)> = conn
        .prepare("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type = 'index'")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (kind, name, sql) in schema {
        out.push_str(&format!("{sql};\n"));
        if kind != "table" {
            continue;
        }
        let columns: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info(?1)")
            .unwrap()
            .query_map([&name], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let values =
            columns.iter().map(|c| format!("quote({})", sqlite::quote(c))).collect::<Vec<_>>().join(" || ',' || ");
        let select = format!(
            "SELECT 'INSERT INTO {} VALUES(' || {values} || ');' FROM {}",
            sqlite::quote(&name),
            sqlite::quote(&name)
        );
        let mut stmt = conn.prepare(&select).unwrap();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            out.push_str(row.get_ref(0).unwrap().as_str().unwrap());
            out.push('\n');
        }
    }
    out.push_str("COMMIT;\n");
    save(&mut out.as_bytes()).unwrap();
}

struct NoSafetyCopy;

impl SafetyCopy for NoSafetyCopy {
    fn save(
        &self,
        _: &mut dyn FnMut(&CaptureContext<'_, '_>) -> Result<Capture, SourceError>,
    ) -> Result<String, SourceError> {
        unreachable!("restores go to a new file")
    }
}

/// Restore the capture to the new file `out`; returns the seconds it took.
fn restore(format: Format, repo: &Repository, entry: &SourceEntry, out: &Path, cli: bool) -> f64 {
    let started = Instant::now();
    if format != Format::Dump {
        let request = RestoreRequest {
            repo,
            entry,
            to: Some(out.to_string_lossy().into_owned()),
            databases: Vec::new(),
            tables: Vec::new(),
            yes: false,
            safety: &NoSafetyCopy,
            progress: &(),
        };
        sqlite::restore(&request).unwrap();
        return started.elapsed().as_secs_f64();
    }
    let node = streams::find(repo, entry.root.unwrap(), DUMP).unwrap();
    if cli {
        let mut child = Command::new("sqlite3").arg(out).stdin(Stdio::piped()).spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        streams::read(repo, &node, |r| std::io::copy(r, &mut stdin).map_err(|e| SourceError::new(e.to_string())))
            .unwrap();
        stdin.flush().unwrap();
        drop(stdin);
        assert!(child.wait().unwrap().success());
    } else {
        let mut sql = String::new();
        streams::read(repo, &node, |r| r.read_to_string(&mut sql).map_err(|e| SourceError::new(e.to_string())))
            .unwrap();
        Connection::open(out).unwrap().execute_batch(&sql).unwrap();
    }
    started.elapsed().as_secs_f64()
}

/// Which properties of the original the restored file kept.
fn faithfulness(original: &Path, restored: &Path) -> String {
    let probes = [
        ("page_size", "PRAGMA page_size"),
        ("user_version", "PRAGMA user_version"),
        ("application_id", "PRAGMA application_id"),
        ("journal_mode", "SELECT CASE WHEN (SELECT journal_mode FROM pragma_journal_mode) = 'wal' THEN 1 ELSE 0 END"),
        ("freelist", "PRAGMA freelist_count"),
        ("rowids", "SELECT sum(rowid * (rowid % 7)) FROM events"),
        ("rows", "SELECT (SELECT count(*) FROM customers) * 1000000 + (SELECT count(*) FROM events)"),
    ];
    let (a, b) = (Connection::open(original).unwrap(), Connection::open(restored).unwrap());
    let integrity: String = b.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    let mut kept = vec![format!("integrity {integrity}")];
    for (name, sql) in probes {
        let value = |c: &Connection| c.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
        let (x, y) = (value(&a), value(&b));
        kept.push(if x == y { format!("{name} yes") } else { format!("{name} NO ({x} -> {y})") });
    }
    kept.join(", ")
}
