//! SQLite, PostgreSQL and MariaDB sources end to end through the real binary and real
//! servers on 127.0.0.1 (started by scripts/services.sh): one job holding all three, restore
//! of each beside the original and over it (with a safety copy), raw extraction, chosen
//! tables, and a failing server source that leaves the others backed up.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use cairn_sources::verify::scratch;
use common::{describe, stderr, stdout, Cairn, PASSWORD};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst))
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(out.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn psql(db: &str, sql: &str) -> String {
    run(
        "psql",
        &["-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-c", sql],
    )
}

fn mariadb(sql: &str) -> String {
    run("mariadb", &["-h", "127.0.0.1", "-P", "3306", "-u", "root", "-N", "-B", "-e", sql])
}

/// Databases created by a test, dropped when it ends (also on failure).
#[derive(Default)]
struct Databases {
    postgres: Vec<String>,
    mysql: Vec<String>,
}

impl Databases {
    fn postgres(&mut self, name: &str) {
        self.postgres.push(name.to_string());
    }
    fn mysql(&mut self, name: &str) {
        self.mysql.push(name.to_string());
    }
}

impl Drop for Databases {
    fn drop(&mut self) {
        for db in &self.postgres {
            let _ = Command::new("psql")
                .args(["-X", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c"])
                .arg(format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))
                .output();
        }
        for db in &self.mysql {
            let _ = Command::new("mariadb")
                .args(["-h", "127.0.0.1", "-u", "root", "-e"])
                .arg(format!("DROP DATABASE IF EXISTS `{db}`"))
                .output();
        }
    }
}

struct App {
    _dir: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
    pg: String,
    my: String,
    dbs: Databases,
}

impl App {
    /// How many scratch copies of this app's PostgreSQL database exist (tests run side by
    /// side: each looks only at the scratch copies of its own databases).
    fn pg_scratches(&self) -> String {
        let pattern = scratch::database_pattern(&self.pg);
        psql("postgres", &format!("SELECT count(*) FROM pg_database WHERE datname LIKE '{pattern}'"))
    }

    /// How many scratch copies of this app's MariaDB database exist.
    fn my_scratches(&self) -> String {
        let pattern = scratch::database_pattern(&self.my);
        mariadb(&format!("SELECT count(*) FROM information_schema.schemata WHERE schema_name LIKE '{pattern}'"))
    }

    /// A SQLite file, a PostgreSQL and a MariaDB database with known rows, and a config
    /// whose job `app` holds all three (plus `extra` source tables, if given).
    fn new(extra: &str) -> App {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let mut dbs = Databases::default();

        let sqlite = root.join("app.db");
        let c = rusqlite::Connection::open(&sqlite).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);
             CREATE TABLE tags(id INTEGER PRIMARY KEY, name TEXT);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 500)
             INSERT INTO notes SELECT i, 'note ' || i FROM n;
             INSERT INTO tags VALUES (1, 'red'), (2, 'blue');",
        )
        .unwrap();
        drop(c);

        let pg = unique("cairn_cli_pg");
        dbs.postgres(&pg);
        psql("postgres", &format!("CREATE DATABASE \"{pg}\""));
        psql(
            &pg,
            "CREATE TABLE accounts(id int PRIMARY KEY, owner text, balance numeric);
             INSERT INTO accounts SELECT i, 'owner ' || i, i * 1.5 FROM generate_series(1, 1000) i;
             CREATE TABLE audit(id serial PRIMARY KEY, what text); INSERT INTO audit(what) VALUES ('created');",
        );

        let my = unique("cairn_cli_my");
        dbs.mysql(&my);
        mariadb(&format!(
            "CREATE DATABASE `{my}`; CREATE TABLE `{my}`.orders(id INT PRIMARY KEY, item VARCHAR(40), note TEXT) ENGINE=InnoDB;
             USE `{my}`; INSERT INTO orders SELECT seq, CONCAT('item ', seq), 'it''s \"quoted\"' FROM seq_1_to_700;"
        ));

        fs::write(root.join("password"), format!("{PASSWORD}\n")).unwrap();
        let config = root.join("cairn.toml");
        fs::write(
            &config,
            format!(
                r#"[repository]
path = "repo"
password_file = "password"

[jobs.app]
[[jobs.app.sources]]
name = "notes"
type = "sqlite"
path = "app.db"

[[jobs.app.sources]]
name = "pg"
type = "postgres"
url = "postgres://postgres@127.0.0.1:5432/{pg}"

[[jobs.app.sources]]
name = "my"
type = "mysql"
url = "mysql://root@127.0.0.1:3306/{my}"
{extra}"#
            ),
        )
        .unwrap();
        App { _dir: dir, root, config, pg, my, dbs }
    }

    fn cairn(&self) -> Cairn {
        let mut c = Cairn::with_config(&self.config);
        c.repo = self.root.join("repo");
        c
    }

    fn path(&self, name: &str) -> String {
        self.root.join(name).to_str().unwrap().to_string()
    }
}

fn source<'a>(snapshot: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    snapshot["sources"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap()
}

fn rows_of(tables: &serde_json::Value, name: &str) -> u64 {
    tables
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"].as_str().unwrap().ends_with(name))
        .unwrap_or_else(|| panic!("no table {name} in {tables}"))["rows"]
        .as_u64()
        .unwrap()
}

fn sqlite_count(path: &Path, table: &str) -> i64 {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).unwrap()
}

#[test]
fn one_job_captures_three_databases_and_restores_each_beside_the_original() {
    let mut app = App::new("");
    let cairn = app.cairn();
    cairn.init();
    let out = cairn.ok(&["backup", "app"]);
    assert!(stdout(&out).contains("(success)"), "{}", describe(&out));

    let snap = &cairn.snapshots()[0];
    for name in ["notes", "pg", "my"] {
        assert_eq!(source(snap, name)["status"], "ok", "{name}: {}", source(snap, name));
    }
    let notes = &source(snap, "notes")["metadata"];
    assert_eq!(rows_of(&notes["tables"], "notes"), 500);
    let pg = &source(snap, "pg")["metadata"];
    assert_eq!(rows_of(&pg["databases"][0]["tables"], "accounts"), 1000);
    assert!(pg["server_version"].as_str().is_some());
    let my = &source(snap, "my")["metadata"];
    assert_eq!(rows_of(&my["databases"][0]["tables"], "orders"), 700);
    let shown = stdout(&cairn.ok(&["show", "latest"]));
    assert!(shown.contains("source pg (postgres): ok") && shown.contains("accounts"), "{shown}");

    // SQLite into another file.
    let copy = app.path("copy.db");
    cairn.ok(&["restore", "latest", "--source", "notes", "--to", &copy]);
    assert_eq!(sqlite_count(Path::new(&copy), "notes"), 500);

    // PostgreSQL and MariaDB under new database names.
    let pg_copy = unique("cairn_cli_pgcopy");
    app.dbs.postgres(&pg_copy);
    cairn.ok(&["restore", "latest", "--source", "pg", "--to", &pg_copy]);
    assert_eq!(psql(&pg_copy, "SELECT count(*) FROM accounts"), "1000");
    assert_eq!(psql(&pg_copy, "SELECT sum(balance) FROM accounts"), psql(&app.pg, "SELECT sum(balance) FROM accounts"));
    let my_copy = unique("cairn_cli_mycopy");
    app.dbs.mysql(&my_copy);
    cairn.ok(&["restore", "latest", "--source", "my", "--to", &my_copy]);
    assert_eq!(mariadb(&format!("SELECT count(*), max(note) FROM `{my_copy}`.orders")), "700\tit's \"quoted\"");

    // Chosen tables only.
    let tags_only = app.path("tags.db");
    cairn.ok(&["restore", "latest", "--source", "notes", "--table", "tags", "--to", &tags_only]);
    assert_eq!(sqlite_count(Path::new(&tags_only), "tags"), 2);
    let c = rusqlite::Connection::open(&tags_only).unwrap();
    assert!(c.query_row("SELECT count(*) FROM notes", [], |r| r.get::<_, i64>(0)).is_err(), "only the chosen table");
    let pg_tables = unique("cairn_cli_pgtables");
    app.dbs.postgres(&pg_tables);
    let out = cairn.ok(&["restore", "latest", "--source", "pg", "--table", "audit", "--to", &pg_tables]);
    assert!(stdout(&out).contains("1 tables") && stdout(&out).contains("(public.audit)"), "{}", describe(&out));
    assert_eq!(psql(&pg_tables, "SELECT to_regclass('accounts') IS NULL"), "t", "only the chosen table");
    // With its key and its sequence, which goes on where it was.
    assert_eq!(psql(&pg_tables, "INSERT INTO audit(what) VALUES ('restored') RETURNING id"), "2");
    assert_eq!(psql(&pg_tables, "SELECT conname FROM pg_constraint WHERE conrelid = 'audit'::regclass"), "audit_pkey");

    // The dump files themselves.
    let raw = app.path("raw");
    cairn.ok(&["restore", "latest", "--source", "pg", "--raw", "--to", &raw]);
    let names: Vec<String> =
        fs::read_dir(&raw).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(names.iter().any(|n| n.ends_with(".pgdump")) && names.contains(&"globals.sql".to_string()), "{names:?}");
}

#[test]
fn restoring_over_live_databases_needs_yes_and_keeps_a_safety_copy() {
    let app = App::new("");
    let cairn = app.cairn();
    cairn.init();
    cairn.ok(&["backup", "app"]);

    // Damage all three after the backup.
    psql(&app.pg, "DELETE FROM accounts WHERE id > 10");
    mariadb(&format!("DELETE FROM `{}`.orders WHERE id > 5", app.my));
    rusqlite::Connection::open(app.root.join("app.db")).unwrap().execute("DELETE FROM notes", []).unwrap();

    for source in ["pg", "my", "notes"] {
        let out = cairn.expect_code(1, &["restore", "latest", "--source", source]);
        assert!(stderr(&out).contains("--yes"), "{source}: {}", describe(&out));
    }
    assert_eq!(psql(&app.pg, "SELECT count(*) FROM accounts"), "10", "refused restores change nothing");

    for source in ["pg", "my", "notes"] {
        let out = cairn.ok(&["restore", "latest", "--source", source, "--yes"]);
        assert!(stdout(&out).contains("safety copy"), "{source}: {}", describe(&out));
    }
    assert_eq!(psql(&app.pg, "SELECT count(*) FROM accounts"), "1000");
    assert_eq!(mariadb(&format!("SELECT count(*) FROM `{}`.orders", app.my)), "700");
    assert_eq!(sqlite_count(&app.root.join("app.db"), "notes"), 500);

    // The server safety copies are snapshots tagged pre-restore holding the damaged state;
    // the SQLite one is a file beside the database.
    let pre: Vec<serde_json::Value> = cairn
        .snapshots()
        .into_iter()
        .filter(|s| s["tags"].as_array().unwrap().contains(&"pre-restore".into()))
        .collect();
    assert_eq!(pre.len(), 2, "{pre:?}");
    let pg_pre = pre.iter().find(|s| s["sources"][0]["name"] == "pg").unwrap();
    assert_eq!(rows_of(&pg_pre["sources"][0]["metadata"]["databases"][0]["tables"], "accounts"), 10);
    let beside: Vec<String> = fs::read_dir(&app.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("app.db.before-restore"))
        .collect();
    assert_eq!(beside.len(), 1, "{beside:?}");
    assert_eq!(sqlite_count(&app.root.join(&beside[0]), "notes"), 0);
    // The next backup of the job does not take a safety copy as its parent.
    cairn.ok(&["backup", "app"]);
}

#[test]
fn failing_database_sources_leave_the_others_backed_up() {
    let extra = r#"
[[jobs.app.sources]]
name = "pg-missing"
type = "postgres"
url = "postgres://postgres@127.0.0.1:5432/cairn_no_such_database"

[[jobs.app.sources]]
name = "my-down"
type = "mysql"
url = "mysql://root@127.0.0.1:1/whatever"

[[jobs.app.sources]]
name = "gone"
type = "sqlite"
path = "missing.db"
"#;
    let app = App::new(extra);
    let cairn = app.cairn();
    cairn.init();
    let out = cairn.expect_code(3, &["backup", "app"]);
    assert!(stdout(&out).contains("(partial)"), "{}", describe(&out));
    let snap = &cairn.snapshots()[0];
    for name in ["notes", "pg", "my"] {
        assert_eq!(source(snap, name)["status"], "ok", "{name}");
    }
    for (name, says) in [("pg-missing", "cairn_no_such_database"), ("my-down", "127.0.0.1"), ("gone", "missing.db")] {
        let s = source(snap, name);
        assert_eq!(s["status"], "failed", "{name}: {s}");
        assert!(s["error"].as_str().unwrap().contains(says), "{name}: {s}");
        assert!(s.get("root").is_none(), "nothing partial is kept for {name}");
    }
    assert!(!app.root.join("missing.db").exists(), "a missing SQLite file is never created");
    // Connection settings of restore come from the config; without it, --raw still works.
    let out = Cairn::new(app.root.join("repo")).expect_code(1, &["restore", "latest", "--source", "pg", "--to", "x"]);
    assert!(stderr(&out).contains("--raw"), "{}", describe(&out));
}

#[test]
fn verify_restores_every_source_into_scratch_targets_and_records_the_result() {
    let app = App::new("\n[[jobs.app.sources]]\nname = \"files\"\ntype = \"files\"\npath = \"password\"\n");
    let cairn = app.cairn();
    cairn.init();
    cairn.ok(&["backup", "app"]);
    let out = cairn.ok(&["verify", "--job", "app", "--latest"]);
    let text = stdout(&out);
    for name in ["notes", "pg", "my", "files"] {
        assert!(text.lines().any(|l| l.starts_with(name) && l.contains(" ok ")), "{name}: {text}");
    }
    assert!(text.contains("verified: every source restored"), "{text}");
    // Recorded in the repository, shown by `snapshots`.
    let snap = &cairn.snapshots()[0];
    assert_eq!(snap["verified"]["ok"], true, "{snap}");
    assert!(stdout(&cairn.ok(&["snapshots"])).contains("ok 20"), "the verified column shows the proof");
    // No scratch target is left behind.
    assert_eq!(app.pg_scratches(), "0");
    assert_eq!(app.my_scratches(), "0");
    let json = common::json(&cairn.ok(&["verify", "--source", "pg", "--json"]));
    assert_eq!(json["ok"], true);
    assert!(json["sources"][0]["checks"].as_u64().unwrap() >= 2, "{json}");
}

#[test]
fn verify_fails_loudly_on_a_damaged_repository() {
    let app = App::new("");
    let cairn = app.cairn();
    cairn.init();
    cairn.ok(&["backup", "app"]);
    // Flip a byte in the middle of every data pack.
    for entry in walkdir(&app.root.join("repo/packs")) {
        let mut bytes = fs::read(&entry).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        fs::write(&entry, bytes).unwrap();
    }
    let out = cairn.expect_code(1, &["verify"]);
    assert!(stdout(&out).contains("FAILED") && stderr(&out).contains("did NOT verify"), "{}", describe(&out));
    assert_eq!(cairn.snapshots()[0]["verified"]["ok"], false);
    assert_eq!(app.pg_scratches(), "0");
}

#[test]
fn an_interrupted_verify_drops_its_scratch_database() {
    let app = App::new("");
    // Enough rows that restoring takes a moment.
    psql(&app.pg, "INSERT INTO accounts SELECT i, repeat('x', 200), i FROM generate_series(1001, 400000) i");
    let cairn = app.cairn();
    cairn.init();
    cairn.ok(&["backup", "app"]);
    let mut child = cairn.command(&["verify", "--source", "pg"]).spawn().unwrap();
    let scratch_exists = || app.pg_scratches() != "0";
    let started = std::time::Instant::now();
    while !scratch_exists() && started.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(scratch_exists(), "the scratch database appeared");
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(!scratch_exists(), "the scratch database is dropped on SIGTERM");
}

/// Every file under `dir`.
fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walkdir(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_backup_killed_while_dumping_leaves_a_valid_repository() {
    let app = App::new("");
    psql(
        &app.pg,
        "INSERT INTO accounts SELECT i, md5(i::text) || repeat('y', 300), i FROM generate_series(1001, 300000) i",
    );
    let cairn = app.cairn();
    cairn.init();
    for delay_ms in [150u64, 400, 900] {
        let mut child = cairn.command(&["backup", "app"]).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        cairn.ok(&["check", "--read-data"]);
    }
    cairn.ok(&["backup", "app"]);
    cairn.ok(&["verify", "--source", "pg"]);
    // The database being backed up is untouched.
    assert_eq!(psql(&app.pg, "SELECT count(*) FROM accounts"), "300000");
}
