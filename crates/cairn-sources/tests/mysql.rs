//! The MySQL/MariaDB source against a real server on 127.0.0.1:3306 (user root, no password)
//! and an in-memory repository. Every test works in databases and users of its own
//! (`cairn_t_<pid>_<n>`), dropped again by guards.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_repo::testing::memory_repo as repo;
use cairn_repo::{ChunkParams, Repository, SourceEntry, SourceStatus, WriterOptions};
use cairn_sources::mysql::MysqlSource;
use cairn_sources::{
    streams, Capture, CaptureContext, Password, RestoreReport, RestoreRequest, SafetyCopy, SourceError,
};

const PORT: u16 = 3306;

// ---- the server, as root through the command-line client ----------------------------------

/// Run SQL as root (in `db` if given); returns the `--batch` output. Panics on failure.
fn sql(db: Option<&str>, statements: &str) -> String {
    try_sql(db, statements).unwrap_or_else(|e| panic!("SQL failed: {e}\n{statements}"))
}

fn try_sql(db: Option<&str>, statements: &str) -> Result<String, String> {
    let mut cmd = root_client(db);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the mariadb client runs");
    child.stdin.take().unwrap().write_all(statements.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn root_client(db: Option<&str>) -> Command {
    let mut cmd = Command::new("mariadb");
    cmd.args([
        "--protocol=TCP",
        "--host=127.0.0.1",
        "--user=root",
        "--batch",
        "--skip-column-names",
        "--default-character-set=utf8mb4",
    ]);
    cmd.arg(format!("--port={PORT}"));
    cmd.env_remove("MYSQL_PWD");
    if let Some(db) = db {
        cmd.arg(format!("--database={db}"));
    }
    cmd
}

fn unique(kind: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!("cairn_{kind}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A database dropped when the guard goes.
struct Db(String);

impl Db {
    /// A fresh, empty database.
    fn create() -> Db {
        let db = Db::named(unique("t"));
        sql(None, &format!("CREATE DATABASE `{}`", db.0));
        db
    }

    /// Only the guard: for databases a restore is to create.
    fn named(name: String) -> Db {
        Db(name)
    }

    fn exists(&self) -> bool {
        !sql(None, &format!("SHOW DATABASES LIKE '{}'", self.0)).trim().is_empty()
    }

    fn sql(&self, statements: &str) -> String {
        sql(Some(&self.0), statements)
    }

    fn count(&self, table: &str) -> u64 {
        self.sql(&format!("SELECT COUNT(*) FROM `{table}`")).trim().parse().unwrap()
    }

    fn tables(&self) -> Vec<String> {
        let out = sql(
            None,
            &format!(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = '{}' ORDER BY table_name",
                self.0
            ),
        );
        out.lines().map(str::to_string).collect()
    }

    fn checksum(&self, table: &str) -> String {
        self.sql(&format!("CHECKSUM TABLE `{table}`")).split('\t').nth(1).unwrap().trim().to_string()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = try_sql(None, &format!("DROP DATABASE IF EXISTS `{}`", self.0));
    }
}

/// A user `name`@`%` with a password, dropped when the guard goes.
struct User {
    name: String,
    password: String,
}

impl User {
    fn create(grants_on: &str) -> User {
        let user = User { name: unique("u"), password: format!("Sekr3t-{}-xyzzy", std::process::id()) };
        sql(
            None,
            &format!(
                "CREATE USER '{0}'@'%' IDENTIFIED BY '{1}'; GRANT ALL PRIVILEGES ON `{2}`.* TO '{0}'@'%';",
                user.name, user.password, grants_on
            ),
        );
        user
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let _ = try_sql(None, &format!("DROP USER IF EXISTS '{}'@'%'", self.name));
    }
}

// ---- the repository and the source -----------------------------------------------------------

fn source(databases: &[&str]) -> MysqlSource {
    let mut source = MysqlSource::from_url(&format!("mysql://root@127.0.0.1:{PORT}")).unwrap();
    source.databases = Some(databases.iter().map(|d| d.to_string()).collect());
    source
}

/// Run a capture with a writer of its own, and finish the writer.
fn capture_into(
    repo: &Repository,
    capture: &mut dyn FnMut(&CaptureContext<'_, '_>) -> Result<Capture, SourceError>,
) -> Result<Capture, SourceError> {
    let writer = repo.writer(WriterOptions::default());
    let ctx = CaptureContext { repo, writer: &writer, chunking: ChunkParams::DUMPS, progress: &() };
    let captured = capture(&ctx);
    writer.finish()?;
    captured
}

/// Back up and return the source entry a snapshot would record.
fn backup(repo: &Repository, source: &MysqlSource) -> Result<SourceEntry, SourceError> {
    let capture = capture_into(repo, &mut |ctx| source.backup(ctx))?;
    Ok(SourceEntry {
        name: "db".into(),
        kind: "mysql".into(),
        status: SourceStatus::Ok,
        error: None,
        root: Some(capture.root),
        chunking: ChunkParams::DUMPS,
        metadata: capture.metadata,
        stats: capture.stats,
        warnings: capture.warnings,
    })
}

/// Row counts recorded for one database.
fn recorded_rows(metadata: &serde_json::Map<String, serde_json::Value>, db: &str) -> BTreeMap<String, u64> {
    let dbs = metadata["databases"].as_array().unwrap();
    let entry = dbs.iter().find(|d| d["name"] == db).unwrap_or_else(|| panic!("{db} recorded"));
    entry["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap().to_string(), t["rows"].as_u64().unwrap()))
        .collect()
}

/// A safety copy that records when it was called and runs the capture into the repository.
struct Recorder<'r> {
    repo: &'r Repository,
    /// Called first thing: what the database looked like when the copy was asked for.
    observe: Box<dyn Fn() -> String + 'r>,
    calls: Mutex<Vec<(String, Capture)>>,
}

impl<'r> Recorder<'r> {
    fn new(repo: &'r Repository, observe: impl Fn() -> String + 'r) -> Recorder<'r> {
        Recorder { repo, observe: Box::new(observe), calls: Mutex::new(Vec::new()) }
    }
}

impl SafetyCopy for Recorder<'_> {
    fn save(
        &self,
        capture: &mut dyn FnMut(&CaptureContext<'_, '_>) -> Result<Capture, SourceError>,
    ) -> Result<String, SourceError> {
        let seen = (self.observe)();
        let captured = capture_into(self.repo, capture)?;
        let mut calls = self.calls.lock().unwrap();
        calls.push((seen, captured));
        Ok(format!("snapshot test-{}, tagged pre-restore", calls.len()))
    }
}

fn no_safety(repo: &Repository) -> Recorder<'_> {
    Recorder::new(repo, || panic!("no safety copy expected"))
}

fn restore(
    source: &MysqlSource,
    repo: &Repository,
    entry: &SourceEntry,
    to: Option<&str>,
    tables: &[&str],
    yes: bool,
    safety: &dyn SafetyCopy,
) -> Result<RestoreReport, SourceError> {
    source.restore(&RestoreRequest {
        repo,
        entry,
        to: to.map(str::to_string),
        databases: Vec::new(),
        tables: tables.iter().map(|t| t.to_string()).collect(),
        yes,
        safety,
        progress: &(),
    })
}

/// Everything in the recorded stream `name`, as text.
fn stream_text(repo: &Repository, entry: &Capture, name: &str) -> String {
    let node = streams::find(repo, entry.root, name).unwrap();
    streams::read(repo, &node, |r| {
        let mut text = String::new();
        r.read_to_string(&mut text).unwrap();
        Ok(text)
    })
    .unwrap()
}

// ---- the tests ----------------------------------------------------------------------------------

const PEOPLE: &str = "SELECT id, name, HEX(note), HEX(photo), score, born FROM people ORDER BY id";

#[test]
fn round_trip_to_a_new_name_keeps_rows_and_objects() {
    let db = Db::create();
    let all_bytes: String = (0..=255u8).map(|b| format!("{b:02X}")).collect();
    db.sql(&format!(
        r#"
        ALTER DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
        CREATE TABLE people (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100) NOT NULL, note TEXT NULL,
            photo BLOB NULL, score DECIMAL(10,2) NULL, born DATE NULL, KEY by_name (name)) ENGINE=InnoDB;
        CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, person INT, what VARCHAR(20)) ENGINE=InnoDB;
        CREATE TABLE empty_one (id INT PRIMARY KEY) ENGINE=InnoDB;
        CREATE TABLE bulk (id INT PRIMARY KEY, pad VARCHAR(400)) ENGINE=InnoDB;
        CREATE TRIGGER people_ai AFTER INSERT ON people FOR EACH ROW
            INSERT INTO audit (person, what) VALUES (NEW.id, 'insert');
        INSERT INTO people VALUES
            (1, 'O''Brien', 'back\\slash "double" ''single''\nnew line\ttab),(x;', x'00010203FF272829', 12.5, '1990-01-02'),
            (2, 'NULL', NULL, NULL, NULL, NULL),
            (3, 'ünïcødé 🎉', '', x'', -1, NULL),
            (4, 'all bytes', '\\', x'{all_bytes}', 0, '2000-02-29');
        INSERT INTO bulk SELECT seq, REPEAT(CHAR(65 + seq % 26), 300) FROM seq_1_to_5000;
        CREATE VIEW with_notes AS SELECT id, name FROM people WHERE note IS NOT NULL;
        CREATE FUNCTION double_it(x INT) RETURNS INT DETERMINISTIC RETURN x * 2;
        "#,
        db = db.0
    ));
    let repo = repo();
    let entry = backup(&repo, &source(&[&db.0])).unwrap();
    let meta = &entry.metadata;
    assert_eq!(meta["format"], "mysqldump SQL");
    assert!(meta["server_version"].as_str().unwrap().contains("MariaDB"), "{meta:?}");
    assert!(meta["client_version"].as_str().unwrap().contains("Distrib"), "{meta:?}");
    let rows = recorded_rows(&entry.metadata, &db.0);
    let expected: BTreeMap<String, u64> =
        [("audit", 4), ("bulk", 5000), ("empty_one", 0), ("people", 4)].map(|(t, n)| (t.to_string(), n)).into();
    assert_eq!(rows, expected);
    for (table, n) in &rows {
        assert_eq!(db.count(table), *n, "{table}");
    }
    let recorded = &meta["databases"][0];
    assert_eq!(recorded["views"], serde_json::json!(["with_notes"]));
    assert_eq!(recorded["stream"], format!("{}.sql", db.0));
    assert!(recorded["tables"][1]["bytes"].as_u64().unwrap() > 0, "bulk has a size: {recorded}");
    assert_eq!(entry.stats.total_bytes, recorded["bytes"].as_u64().unwrap());

    let copy = Db::named(format!("{}_copy", db.0));
    let report = restore(&source(&[]), &repo, &entry, Some(&copy.0), &[], false, &no_safety(&repo)).unwrap();
    assert_eq!(report.restored, [format!("database {}: 4 tables and 1 view from {}", copy.0, db.0)]);
    assert!(report.safety_copies.is_empty());
    assert_eq!(copy.sql(PEOPLE), db.sql(PEOPLE));
    for table in ["people", "audit", "empty_one", "bulk"] {
        assert_eq!(copy.checksum(table), db.checksum(table), "{table}");
    }
    assert_eq!(copy.tables(), db.tables());
    let defaults = |db: &Db| {
        sql(
            None,
            &format!("SELECT default_collation_name FROM information_schema.schemata WHERE schema_name = '{}'", db.0),
        )
    };
    assert_eq!(defaults(&copy), "utf8mb4_bin\n", "the database's own defaults came along");
    assert!(copy.sql("SHOW INDEX FROM people WHERE Key_name = 'by_name'").contains("by_name"));
    assert_eq!(copy.sql("SELECT COUNT(*) FROM with_notes").trim(), "3");
    assert_eq!(copy.sql("SELECT double_it(21)").trim(), "42");
    copy.sql("INSERT INTO people (name) VALUES ('new')");
    assert_eq!(copy.count("audit"), 5, "the trigger came along");
}

#[test]
fn a_backup_under_concurrent_commits_is_one_instant() {
    let db = Db::create();
    db.sql(
        "CREATE TABLE items (id BIGINT AUTO_INCREMENT PRIMARY KEY, pad VARCHAR(255)) ENGINE=InnoDB;
         CREATE TABLE totals (k INT PRIMARY KEY, n BIGINT NOT NULL) ENGINE=InnoDB;
         INSERT INTO items (pad) SELECT REPEAT(CHAR(65 + seq % 26), 200) FROM seq_1_to_300000;
         INSERT INTO totals SELECT 1, COUNT(*) FROM items;",
    );
    let initial = db.count("items");
    let stop = Arc::new(AtomicBool::new(false));
    // One session committing small transactions for as long as the backup runs (≤ 30 s).
    let writer = {
        let (name, stop) = (db.0.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut child = root_client(Some(&name)).stdin(Stdio::piped()).spawn().unwrap();
            let mut stdin = child.stdin.take().unwrap();
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(30) {
                let tx =
                    "BEGIN; INSERT INTO items (pad) VALUES ('w'); UPDATE totals SET n = n + 1 WHERE k = 1; COMMIT;\n";
                stdin.write_all(tx.as_bytes()).unwrap();
            }
            drop(stdin);
            assert!(child.wait().unwrap().success());
        })
    };
    let total = |db: &Db| -> u64 { db.sql("SELECT n FROM totals").trim().parse().unwrap() };
    let started = Instant::now();
    while total(&db) < initial + 20 && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let repo = repo();
    let entry = backup(&repo, &source(&[&db.0]));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let entry = entry.unwrap();

    let copy = Db::named(format!("{}_copy", db.0));
    restore(&source(&[]), &repo, &entry, Some(&copy.0), &[], false, &no_safety(&repo)).unwrap();
    let (items, n) = (copy.count("items"), total(&copy));
    assert_eq!(items, n, "rows and the counter committed with them are from the same instant");
    assert_eq!(recorded_rows(&entry.metadata, &db.0)["items"], items);
    assert!(items > initial, "commits before the backup are in it");
    assert!(total(&db) > n, "commits went on after the backup's instant");
}

#[test]
fn restoring_over_an_existing_database_needs_yes_and_saves_it_first() {
    let db = Db::create();
    db.sql("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20)); INSERT INTO t VALUES (1, 'one'), (2, 'two'), (3, 'three');");
    let repo = repo();
    let entry = backup(&repo, &source(&[&db.0])).unwrap();
    let before = db.sql("SELECT * FROM t ORDER BY id");
    db.sql("INSERT INTO t VALUES (99, 'marker'); UPDATE t SET v = 'changed' WHERE id = 1; CREATE TABLE extra (x INT);");
    let live = db.sql("SELECT * FROM t ORDER BY id");

    let refused = restore(&source(&[]), &repo, &entry, None, &[], false, &no_safety(&repo)).unwrap_err().to_string();
    assert!(refused.contains(&db.0) && refused.contains("already exists"), "{refused}");
    assert!(refused.contains("--yes") && refused.contains("--to"), "{refused}");
    assert_eq!(db.sql("SELECT * FROM t ORDER BY id"), live, "nothing changed");

    let safety = Recorder::new(&repo, || db.sql("SELECT v FROM t WHERE id = 99"));
    let report = restore(&source(&[]), &repo, &entry, None, &[], true, &safety).unwrap();
    let calls = safety.calls.lock().unwrap();
    assert_eq!(calls.len(), 1);
    let (seen, copy) = &calls[0];
    assert_eq!(seen.trim(), "marker", "the safety copy was asked for before the data was replaced");
    assert_eq!(recorded_rows(&copy.metadata, &db.0)["t"], 4);
    assert!(stream_text(&repo, copy, &format!("{}.sql", db.0)).contains("'marker'"));
    assert_eq!(report.safety_copies, [format!("database {}: snapshot test-1, tagged pre-restore", db.0)]);
    assert_eq!(report.restored, [format!("database {0}: 1 table from {0} (replaced)", db.0)]);
    assert_eq!(db.sql("SELECT * FROM t ORDER BY id"), before);
    assert_eq!(db.tables(), ["extra", "t"], "tables the dump does not hold are left alone");
}

#[test]
fn chosen_tables_into_a_new_database() {
    let db = Db::create();
    db.sql(
        "CREATE TABLE a (id INT PRIMARY KEY, s VARCHAR(10)); INSERT INTO a VALUES (1, 'x'), (2, 'y');
         CREATE TABLE b (id INT PRIMARY KEY, up VARCHAR(10));
         CREATE TRIGGER b_up BEFORE INSERT ON b FOR EACH ROW SET NEW.up = UPPER(NEW.up);
         INSERT INTO b VALUES (1, 'q');
         CREATE TABLE c (id INT PRIMARY KEY); INSERT INTO c VALUES (7);
         CREATE VIEW va AS SELECT id FROM a;",
    );
    let repo = repo();
    let entry = backup(&repo, &source(&[&db.0])).unwrap();
    let copy = Db::named(format!("{}_part", db.0));

    let err =
        restore(&source(&[]), &repo, &entry, Some(&copy.0), &["a", "nope"], false, &no_safety(&repo)).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("nope") && text.contains("a, b, c, va"), "{text}");
    assert!(!copy.exists(), "nothing was created");

    let report = restore(&source(&[]), &repo, &entry, Some(&copy.0), &["a", "b"], false, &no_safety(&repo)).unwrap();
    assert_eq!(report.restored, [format!("database {}: 2 tables from {}", copy.0, db.0)]);
    assert_eq!(copy.tables(), ["a", "b"]);
    assert_eq!(copy.sql("SELECT * FROM a ORDER BY id"), db.sql("SELECT * FROM a ORDER BY id"));
    copy.sql("INSERT INTO b VALUES (2, 'low')");
    assert_eq!(copy.sql("SELECT up FROM b ORDER BY id"), "Q\nLOW\n", "b's trigger came with it");

    // More tables into the now existing copy: the same rules as a whole database.
    let safety = Recorder::new(&repo, String::new);
    restore(&source(&[]), &repo, &entry, Some(&copy.0), &["c", "va"], true, &safety).unwrap();
    assert_eq!(safety.calls.lock().unwrap().len(), 1);
    assert_eq!(copy.tables(), ["a", "b", "c", "va"]);
    assert_eq!(copy.count("b"), 2, "tables not chosen are left alone");
}

#[test]
fn requests_that_cannot_be_met_change_nothing() {
    let (one, two) = (Db::create(), Db::create());
    one.sql("CREATE TABLE t (id INT) ENGINE=MyISAM");
    let repo = repo();
    let entry = backup(&repo, &source(&[&one.0, &two.0])).unwrap();
    assert!(
        matches!(entry.warnings.as_slice(), [w] if w.contains("MyISAM") && w.contains(&one.0)),
        "{:?}",
        entry.warnings
    );
    let target = Db::named(unique("t"));
    let err =
        restore(&source(&[]), &repo, &entry, Some(&target.0), &[], false, &no_safety(&repo)).unwrap_err().to_string();
    assert!(err.contains("exactly one database") && err.contains(&one.0) && err.contains(&two.0), "{err}");
    let req = RestoreRequest {
        repo: &repo,
        entry: &entry,
        to: None,
        databases: vec!["elsewhere".into()],
        tables: Vec::new(),
        yes: true,
        safety: &no_safety(&repo),
        progress: &(),
    };
    let err = source(&[]).restore(&req).unwrap_err().to_string();
    assert!(err.contains("elsewhere") && err.contains(&one.0), "{err}");
    assert!(!target.exists());
}

#[test]
fn errors_name_the_server_and_the_cause() {
    let repo = repo();
    let db = Db::create();

    let mut unreachable = source(&[&db.0]);
    unreachable.port = 1;
    let err = backup(&repo, &unreachable).unwrap_err().to_string();
    assert!(err.contains("cannot reach") && err.contains("127.0.0.1:1") && err.contains("hint:"), "{err}");

    let user = User::create(&db.0);
    let mut wrong = source(&[&db.0]);
    wrong.user = user.name.clone();
    wrong.password = Some(Password("not-the-Password-42".into()));
    let err = backup(&repo, &wrong).unwrap_err().to_string();
    assert!(err.contains("access denied") && err.contains(&user.name) && err.contains("127.0.0.1:3306"), "{err}");
    assert!(!err.contains("not-the-Password-42") && !err.contains(&user.password), "{err}");

    let missing = unique("nope");
    let err = backup(&repo, &source(&[&missing])).unwrap_err().to_string();
    assert!(err.contains(&missing) && err.contains("does not exist"), "{err}");
    let hint = err.split("hint:").nth(1).unwrap_or_default();
    assert!(hint.contains(&db.0) && !hint.contains("performance_schema"), "{err}");

    // A load that fails half-way (the view's definer is root; the user may not act as root)
    // leaves no half-made database behind, and says why.
    db.sql("CREATE TABLE t (id INT); INSERT INTO t VALUES (1); CREATE VIEW v AS SELECT id FROM t;");
    let entry = backup(&repo, &source(&[&db.0])).unwrap();
    let copier = User::create(&format!("{}%", db.0.replace('_', "\\_")));
    let mut limited = source(&[]);
    (limited.user, limited.password) = (copier.name.clone(), Some(Password(copier.password.clone())));
    let copy = Db::named(format!("{}_copy", db.0));
    let err = restore(&limited, &repo, &entry, Some(&copy.0), &[], false, &no_safety(&repo)).unwrap_err().to_string();
    assert!(err.contains(&copy.0) && err.contains("ERROR 1227") && err.contains("keep their DEFINER"), "{err}");
    assert!(!copy.exists(), "the database the restore created is dropped again");

    let empty = tempfile::tempdir().unwrap();
    let mut no_tools = source(&[&db.0]);
    no_tools.bin_dir = Some(empty.path().to_path_buf());
    let err = backup(&repo, &no_tools).unwrap_err().to_string();
    assert!(err.contains("mariadb, mysql") && err.contains(&empty.path().display().to_string()), "{err}");
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn the_password_stays_out_of_command_lines_and_the_prefix_is_used() {
    let db = Db::create();
    db.sql("CREATE TABLE t (id INT PRIMARY KEY, s TEXT); INSERT INTO t VALUES (1, 'a'), (2, 'b');");
    // Rights on the database and on its copies (`<db>_…`).
    let user = User::create(&format!("{}%", db.0.replace('_', "\\_")));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.log");
    let wrapper = dir.path().join("wrap.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n{{ cat /proc/$$/cmdline | tr '\\0' ' '; if [ -n \"$MYSQL_PWD\" ]; then echo ' [MYSQL_PWD set]'; \
             else echo ' [MYSQL_PWD unset]'; fi; }} >> '{}'\nexec \"$@\"\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut through =
        MysqlSource::from_url(&format!("mysql://{}:{}@127.0.0.1:{PORT}/{}", user.name, user.password, db.0)).unwrap();
    through.prefix = vec![wrapper.display().to_string()];
    assert!(!format!("{through:?}").contains(&user.password));
    let repo = repo();
    let entry = backup(&repo, &through).unwrap();
    assert_eq!(recorded_rows(&entry.metadata, &db.0)["t"], 2);
    let copy = Db::named(format!("{}_copy", db.0));
    restore(&through, &repo, &entry, Some(&copy.0), &[], false, &no_safety(&repo)).unwrap();
    assert_eq!(copy.sql("SELECT * FROM t ORDER BY id"), "1\ta\n2\tb\n");

    let mut missing = through.clone();
    missing.databases = Some(vec![unique("nope")]);
    let err = backup(&repo, &missing).unwrap_err().to_string();
    assert!(!err.contains(&user.password), "{err}");

    let calls = std::fs::read_to_string(&log).unwrap();
    let connecting: Vec<&str> = calls.lines().filter(|l| l.contains("--host=")).collect();
    assert!(connecting.iter().any(|l| l.contains("mariadb-dump")), "the dump ran through the prefix:\n{calls}");
    assert!(connecting.iter().any(|l| l.contains("--database=")), "the restore ran through the prefix:\n{calls}");
    assert!(connecting.iter().all(|l| l.ends_with("[MYSQL_PWD set]")), "{calls}");
    assert!(!calls.contains(&user.password), "{calls}");
}
