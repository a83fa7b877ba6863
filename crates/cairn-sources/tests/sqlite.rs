//! The SQLite source against real database files and an in-memory repository.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_repo::testing::{memory_repo as repo, repo_on};
use cairn_repo::{ChunkParams, Repository, SourceEntry, SourceStatus, WriterOptions};
use cairn_sources::sqlite::{self, SqliteSource};
use cairn_sources::{Capture, CaptureContext, RestoreReport, RestoreRequest, SafetyCopy, SourceError};
use cairn_storage::{MemStorage, Storage};
use rusqlite::Connection;

/// Capture `path` and return the source entry a snapshot would record.
fn capture(repo: &Repository, path: &Path, vacuum: bool) -> Result<SourceEntry, SourceError> {
    let writer = repo.writer(WriterOptions::default());
    let ctx = CaptureContext { repo, writer: &writer, chunking: ChunkParams::DUMPS, progress: &() };
    let captured = SqliteSource { path: path.to_path_buf(), vacuum }.backup(&ctx);
    writer.finish().unwrap();
    let Capture { root, metadata, stats, warnings } = captured?;
    Ok(SourceEntry {
        name: "db".into(),
        kind: "sqlite".into(),
        status: SourceStatus::Ok,
        error: None,
        root: Some(root),
        chunking: ChunkParams::DUMPS,
        metadata,
        stats,
        warnings,
    })
}

/// SQLite keeps its safety copies beside the file; the repository one must not be used.
struct NoSafetyCopy;

impl SafetyCopy for NoSafetyCopy {
    fn save(
        &self,
        _: &mut dyn FnMut(&CaptureContext<'_, '_>) -> Result<Capture, SourceError>,
    ) -> Result<String, SourceError> {
        panic!("the SQLite source keeps its safety copy beside the file")
    }
}

fn restore(
    repo: &Repository,
    entry: &SourceEntry,
    to: Option<&Path>,
    tables: &[&str],
    yes: bool,
) -> Result<RestoreReport, SourceError> {
    sqlite::restore(&RestoreRequest {
        repo,
        entry,
        to: to.map(|p| p.to_string_lossy().into_owned()),
        databases: Vec::new(),
        tables: tables.iter().map(|t| t.to_string()).collect(),
        yes,
        safety: &NoSafetyCopy,
        progress: &(),
    })
}

fn integrity(path: &Path) -> String {
    let conn = Connection::open(path).unwrap();
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap()
}

fn query_i64(path: &Path, sql: &str) -> i64 {
    Connection::open(path).unwrap().query_row(sql, [], |r| r.get(0)).unwrap()
}

fn query_text(path: &Path, sql: &str) -> String {
    Connection::open(path).unwrap().query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Files of this process in the temp directory whose names start with `prefix`; each kind
/// is made by one test only, so that tests running at the same time do not see each other's.
fn temp_files(prefix: &str) -> usize {
    let prefix = format!("{prefix}{}-", std::process::id());
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .count()
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// A database of `rows` rows of about 1 KiB in `items`, with `totals.n` counting them.
fn make_items(path: &Path, wal: bool, rows: i64) {
    let conn = Connection::open(path).unwrap();
    let mode: String = conn
        .query_row(&format!("PRAGMA journal_mode = {}", if wal { "WAL" } else { "DELETE" }), [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, if wal { "wal" } else { "delete" });
    conn.execute_batch(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
         CREATE TABLE totals (n INTEGER NOT NULL);
         INSERT INTO totals VALUES (0);",
    )
    .unwrap();
    conn.execute("INSERT INTO items (body) SELECT hex(randomblob(512)) FROM generate_series(1, ?1)", [rows])
        .or_else(|_| {
            // generate_series may be missing: a recursive CTE does the same.
            conn.execute(
                "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?1)
                 INSERT INTO items (body) SELECT hex(randomblob(512)) FROM s",
                [rows],
            )
        })
        .unwrap();
    conn.execute("UPDATE totals SET n = (SELECT count(*) FROM items)", []).unwrap();
}

fn recorded_rows(entry: &SourceEntry) -> Vec<(String, i64)> {
    entry.metadata["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap().to_string(), t["rows"].as_i64().unwrap()))
        .collect()
}

/// Back up while a writer keeps committing; the capture must be one instant.
fn consistent_while_written(wal: bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    make_items(&path, wal, 6000);
    let stop = Arc::new(AtomicBool::new(false));
    let commits = Arc::new(AtomicU64::new(0));
    let writer_thread = {
        let (path, stop, commits) = (path.clone(), stop.clone(), commits.clone());
        std::thread::spawn(move || {
            let mut conn = Connection::open(path).unwrap();
            conn.busy_timeout(Duration::from_secs(30)).unwrap();
            conn.execute_batch("PRAGMA synchronous = OFF").unwrap();
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(30) {
                let tx = conn.transaction().unwrap();
                tx.execute("INSERT INTO items (body) SELECT hex(randomblob(512)) FROM items LIMIT 10", []).unwrap();
                tx.execute("UPDATE totals SET n = n + 10", []).unwrap();
                tx.commit().unwrap();
                commits.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let started = Instant::now();
    while commits.load(Ordering::Relaxed) == 0 && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let repo = repo();
    let before = commits.load(Ordering::Relaxed);
    let entry = capture(&repo, &path, false).unwrap();
    let during = commits.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    writer_thread.join().unwrap();
    if wal {
        assert!(during > 0, "in WAL mode the writer must keep committing during the backup");
    }

    let meta = &entry.metadata;
    assert_eq!(meta["path"], path.to_str().unwrap());
    assert_eq!((meta["stream"].as_str(), meta["format"].as_str()), (Some("database.sqlite"), Some("pages")));
    assert_eq!(meta["journal_mode"], if wal { "wal" } else { "delete" });
    assert_eq!(meta["bytes"].as_u64().unwrap(), meta["pages"].as_u64().unwrap() * meta["page_size"].as_u64().unwrap());
    assert_eq!(entry.stats.total_bytes, meta["bytes"].as_u64().unwrap());

    let out = dir.path().join("restored.db");
    let report = restore(&repo, &entry, Some(&out), &[], false).unwrap();
    assert!(report.safety_copies.is_empty());
    assert_eq!(integrity(&out), "ok");
    let items = query_i64(&out, "SELECT count(*) FROM items");
    assert_eq!(items, query_i64(&out, "SELECT n FROM totals"), "items and totals must be of one instant");
    assert!(items > 6000, "the writer had committed before the backup began");
    let restored: Vec<(String, i64)> = vec![("items".into(), items), ("totals".into(), 1)];
    assert_eq!(recorded_rows(&entry), restored);
}

#[test]
fn wal_database_is_captured_at_one_instant_while_written() {
    consistent_while_written(true);
}

#[test]
fn rollback_journal_database_is_captured_at_one_instant_while_written() {
    consistent_while_written(false);
}

#[test]
fn vacuumed_capture_restores_the_same_rows_without_free_pages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    make_items(&path, true, 2000);
    Connection::open(&path).unwrap().execute("DELETE FROM items WHERE id % 2 = 0", []).unwrap();
    let repo = repo();
    let plain = capture(&repo, &path, false).unwrap();
    let vacuumed = capture(&repo, &path, true).unwrap();
    assert!(plain.metadata["freelist_count"].as_u64().unwrap() > 0);
    assert_eq!(vacuumed.metadata["freelist_count"], 0);
    assert_eq!(vacuumed.metadata["vacuum"], true);
    assert_eq!(vacuumed.metadata["journal_mode"], "wal", "the copy keeps the source's journal mode");
    assert!(vacuumed.metadata["bytes"].as_u64() < plain.metadata["bytes"].as_u64());
    assert_eq!(temp_files("cairn-vacuum-"), 0, "the VACUUM INTO copy must be deleted");

    let out = dir.path().join("restored.db");
    restore(&repo, &vacuumed, Some(&out), &[], false).unwrap();
    assert_eq!(integrity(&out), "ok");
    assert_eq!(query_i64(&out, "SELECT count(*) FROM items"), 1000);
    assert_eq!(recorded_rows(&vacuumed), recorded_rows(&plain));
}

#[test]
fn restore_goes_to_another_path_or_replaces_the_original_only_with_yes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    make_items(&path, true, 500);
    Connection::open(&path).unwrap().execute_batch("PRAGMA user_version = 7; PRAGMA application_id = 42").unwrap();
    let repo = repo();
    let entry = capture(&repo, &path, false).unwrap();
    assert_eq!(
        (entry.metadata["user_version"].as_i64(), entry.metadata["application_id"].as_i64()),
        (Some(7), Some(42))
    );
    Connection::open(&path).unwrap().execute("DELETE FROM items WHERE id > 100", []).unwrap();

    let other = dir.path().join("sub/dir/other.db");
    let report = restore(&repo, &entry, Some(&other), &[], false).unwrap();
    assert!(report.restored[0].contains("other.db"), "{report:?}");
    assert_eq!(integrity(&other), "ok");
    assert_eq!(query_i64(&other, "SELECT count(*) FROM items"), 500);
    assert_eq!(query_i64(&other, "PRAGMA user_version"), 7);

    let copies = dir.path().join("copies");
    std::fs::create_dir(&copies).unwrap();
    restore(&repo, &entry, Some(&copies), &[], false).unwrap();
    assert_eq!(query_i64(&copies.join("app.db"), "SELECT count(*) FROM items"), 500, "--to DIR keeps the file name");

    let refused = restore(&repo, &entry, None, &[], false).unwrap_err().to_string();
    assert!(refused.contains(path.to_str().unwrap()) && refused.contains("--yes"), "{refused}");
    assert_eq!(query_i64(&path, "SELECT count(*) FROM items"), 100, "the original must be untouched");

    // A live connection with frames only in the -wal, not yet checkpointed.
    let live = Connection::open(&path).unwrap();
    live.execute_batch("PRAGMA wal_autocheckpoint = 0; INSERT INTO items (body) VALUES ('live')").unwrap();
    assert!(std::fs::metadata(dir.path().join("app.db-wal")).unwrap().len() > 0);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let report = restore(&repo, &entry, None, &[], true).unwrap();
    assert_eq!(report.safety_copies.len(), 1, "{report:?}");
    assert!(report.warnings.is_empty(), "{report:?}");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640, "the old file's mode is kept");
    let copy = PathBuf::from(&report.safety_copies[0]);
    assert!(copy.file_name().unwrap().to_string_lossy().starts_with("app.db.before-restore-"), "{copy:?}");
    assert_eq!(integrity(&copy), "ok");
    assert_eq!(query_i64(&copy, "SELECT count(*) FROM items"), 101, "the safety copy holds the WAL's rows too");
    // The old file's -wal and -shm, still open in `live`, were removed with it.
    assert!(!dir.path().join("app.db-wal").exists() && !dir.path().join("app.db-shm").exists());
    assert_eq!(integrity(&path), "ok");
    assert_eq!(query_i64(&path, "SELECT count(*) FROM items"), 500);
    drop(live);
    assert_eq!(integrity(&path), "ok");
    assert_eq!(query_i64(&path, "SELECT count(*) FROM items"), 500);
    assert!(!names(dir.path()).iter().any(|n| n.contains("cairn-restore")), "{:?}", names(dir.path()));
}

#[test]
fn a_stale_wal_beside_the_target_is_not_replayed_onto_the_restored_file() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    make_items(&source, true, 300);
    let repo = repo();
    let entry = capture(&repo, &source, false).unwrap();

    // The target's file is gone but its -wal is still there, full of valid frames (here
    // those of another database): SQLite would replay them onto whatever file takes its name.
    let target = dir.path().join("target.db");
    let other = dir.path().join("other.db");
    make_items(&other, true, 10);
    let writer = Connection::open(&other).unwrap();
    writer.execute_batch("PRAGMA wal_autocheckpoint = 0; UPDATE items SET body = 'stale'").unwrap();
    std::fs::copy(dir.path().join("other.db-wal"), dir.path().join("target.db-wal")).unwrap();
    drop(writer);

    restore(&repo, &entry, Some(&target), &[], false).unwrap();
    assert!(!dir.path().join("target.db-wal").exists());
    assert_eq!(integrity(&target), "ok");
    assert_eq!(query_i64(&target, "SELECT count(*) FROM items"), 300);
    assert_eq!(query_i64(&target, "SELECT count(*) FROM items WHERE body = 'stale'"), 0);
}

#[test]
fn a_database_whose_wal_cannot_be_checkpointed_is_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.db");
    make_items(&path, true, 100);
    let repo = repo();
    let entry = capture(&repo, &path, false).unwrap();
    // A reader in the middle of a transaction on a snapshot that needs the -wal.
    let writer = Connection::open(&path).unwrap();
    writer.execute_batch("PRAGMA wal_autocheckpoint = 0; DELETE FROM items WHERE id > 50").unwrap();
    let reader = Connection::open(&path).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    assert_eq!(reader.query_row("SELECT count(*) FROM items", [], |r| r.get::<_, i64>(0)).unwrap(), 50);

    let err = restore(&repo, &entry, None, &[], true).unwrap_err().to_string();
    assert!(err.contains("busy.db") && err.contains("in use") && err.contains("hint:"), "{err}");
    reader.execute_batch("COMMIT").unwrap();
    drop((reader, writer));
    assert_eq!(names(dir.path()), ["busy.db"], "no safety copy or temp file may be left");
    assert_eq!(query_i64(&path, "SELECT count(*) FROM items"), 50);
}

fn make_shop(path: &Path) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE items (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, qty INT);
         CREATE INDEX items_name ON items (name);
         CREATE TABLE log (msg TEXT);
         CREATE TRIGGER items_log AFTER INSERT ON items BEGIN INSERT INTO log VALUES ('added ' || new.name); END;
         CREATE TABLE \"odd \"\"name\"\"\" (body);
         INSERT INTO items (name, qty) VALUES ('a', 1), ('b', 2), ('c', 3), ('d', 4);
         DELETE FROM items WHERE name = 'd';
         INSERT INTO \"odd \"\"name\"\"\" VALUES ('x'), ('y'), ('z');
         DELETE FROM \"odd \"\"name\"\"\" WHERE body = 'x';",
    )
    .unwrap();
}

#[test]
fn chosen_tables_are_copied_with_their_indexes_triggers_and_rowids() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shop.db");
    make_shop(&path);
    let repo = repo();
    let entry = capture(&repo, &path, false).unwrap();
    assert_eq!(
        recorded_rows(&entry),
        vec![("items".into(), 3), ("log".into(), 4), ("odd \"name\"".into(), 2)],
        "sqlite_sequence is internal and not listed"
    );

    let target = dir.path().join("new/target.db");
    let report = restore(&repo, &entry, Some(&target), &["items", "log", "ODD \"name\""], false).unwrap();
    assert_eq!(report.restored.len(), 3, "{report:?}");
    assert!(report.restored[0].contains("items") && report.restored[0].contains("3 rows"), "{report:?}");
    assert_eq!(integrity(&target), "ok");
    assert_eq!(query_i64(&target, "SELECT count(*) FROM log"), 4, "the trigger must not fire on copied rows");
    assert_eq!(query_i64(&target, "SELECT count(*) FROM sqlite_master WHERE name IN ('items_name', 'items_log')"), 2);
    assert_eq!(query_text(&target, "SELECT group_concat(rowid || ':' || body) FROM \"odd \"\"name\"\"\""), "2:y,3:z");
    // AUTOINCREMENT goes on from the captured counter, past the deleted row 4.
    let conn = Connection::open(&target).unwrap();
    conn.execute("INSERT INTO items (name) VALUES ('e')", []).unwrap();
    assert_eq!(conn.last_insert_rowid(), 5);
    assert_eq!(query_i64(&target, "SELECT count(*) FROM log"), 5, "the trigger works after the restore");
    drop(conn);

    let refused = restore(&repo, &entry, Some(&target), &["items"], false).unwrap_err().to_string();
    assert!(refused.contains("target.db") && refused.contains("items") && refused.contains("--yes"), "{refused}");
    assert_eq!(query_i64(&target, "SELECT count(*) FROM items"), 4, "nothing may change without yes");

    let report = restore(&repo, &entry, Some(&target), &["items"], true).unwrap();
    assert_eq!(report.safety_copies.len(), 1, "{report:?}");
    assert_eq!(query_i64(Path::new(&report.safety_copies[0]), "SELECT count(*) FROM items"), 4);
    assert_eq!(query_i64(&target, "SELECT count(*) FROM items"), 3);
    assert_eq!(query_i64(&target, "SELECT count(*) FROM sqlite_master WHERE name IN ('items_name', 'items_log')"), 2);
    assert_eq!(integrity(&target), "ok");

    let unknown = restore(&repo, &entry, Some(&target), &["nope"], true).unwrap_err().to_string();
    assert!(unknown.contains("nope") && unknown.contains("items, log, odd \"name\""), "{unknown}");
    let fresh = dir.path().join("fresh.db");
    restore(&repo, &entry, Some(&fresh), &["nope"], false).unwrap_err();
    assert!(!fresh.exists(), "a target created for a failed restore is removed");
    assert_eq!(temp_files("cairn-restore-"), 0, "the capture's temp copy must be deleted");
}

#[test]
fn a_missing_file_is_an_error_and_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.db");
    let err = capture(&repo(), &path, false).unwrap_err().to_string();
    assert!(err.contains(path.to_str().unwrap()) && err.contains("hint:"), "{err}");
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
}

#[test]
fn a_file_that_is_not_a_database_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "just some text, long enough to fill a header and then some more of it ".repeat(20)).unwrap();
    let err = capture(&repo(), &path, false).unwrap_err().to_string();
    assert!(err.contains(path.to_str().unwrap()) && err.contains("not a database"), "{err}");
    assert_eq!(names(dir.path()), ["notes.txt"]);
}

#[test]
fn a_damaged_repository_blob_fails_the_restore_without_touching_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    make_items(&path, true, 2000);
    let storage = Arc::new(MemStorage::new());
    let repo = repo_on(storage.clone());
    let entry = capture(&repo, &path, false).unwrap();
    Connection::open(&path).unwrap().execute("DELETE FROM items WHERE id > 10", []).unwrap();
    let before = names(dir.path());

    // Flip a byte in the middle of the largest pack: one of the page stream's blobs.
    let largest = storage.list("packs/").unwrap().into_iter().max_by_key(|e| e.size).unwrap();
    storage.corrupt(&largest.key, |bytes| {
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
    });
    let err = restore(&repo, &entry, None, &[], true).unwrap_err().to_string();
    assert!(err.contains("app.db") && err.contains("repository"), "{err}");
    assert_eq!(names(dir.path()), before, "no temp file or safety copy may be left");
    assert_eq!(query_i64(&path, "SELECT count(*) FROM items"), 10);
    assert_eq!(integrity(&path), "ok");
}

#[test]
fn a_table_restore_that_fails_midway_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shop.db");
    make_shop(&path);
    let repo = repo();
    let entry = capture(&repo, &path, false).unwrap();
    // The target has its own `items`, and an index by the name the captured one needs.
    let target = dir.path().join("target.db");
    Connection::open(&target)
        .unwrap()
        .execute_batch("CREATE TABLE items (x); INSERT INTO items VALUES (1); CREATE TABLE t (y); CREATE INDEX items_name ON t (y);")
        .unwrap();

    let err = restore(&repo, &entry, Some(&target), &["items"], true).unwrap_err().to_string();
    assert!(err.contains("target.db") && err.contains("items_name"), "{err}");
    assert_eq!(names(dir.path()), ["shop.db", "target.db"], "the safety copy of a restore that did not happen goes");
    assert_eq!(query_i64(&target, "SELECT count(*) FROM items"), 1);
    assert_eq!(query_i64(&target, "SELECT count(*) FROM pragma_table_info('items')"), 1);
}

#[test]
fn verify_proves_a_capture_and_names_a_wrong_row_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    make_items(&path, true, 300);
    let repo = repo();
    let entry = capture(&repo, &path, false).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let verdict = sqlite::verify(&repo, &entry, scratch.path()).unwrap();
    assert!(verdict.ok(), "{:?}", verdict.problems);
    assert!(verdict.checks >= 4, "integrity, pages and both tables: {verdict:?}");
    assert!(names(scratch.path()).is_empty(), "the scratch file is removed");

    // A count that does not match the restored copy is named, with both figures.
    let mut wrong = entry.clone();
    let tables = wrong.metadata.get_mut("tables").unwrap().as_array_mut().unwrap();
    let items = tables.iter_mut().find(|t| t["name"] == "items").unwrap();
    items["rows"] = serde_json::json!(301);
    let verdict = sqlite::verify(&repo, &wrong, scratch.path()).unwrap();
    assert_eq!(verdict.problems, ["table items rows: recorded 301, restored copy has 300"]);
}
