//! The PostgreSQL source against the real server on 127.0.0.1:5432 (trust auth, user
//! `postgres`). Every test works in databases of its own, named `cairn_t_<pid>_<n>…`, which
//! a guard drops again; roles it creates are dropped the same way.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cairn_repo::testing::memory_repo as repo;
use cairn_repo::{ChunkParams, Repository, SourceEntry, SourceStatus, WriterOptions};
use cairn_sources::postgres::PostgresSource;
use cairn_sources::{
    streams, Capture, CaptureContext, Password, RestoreReport, RestoreRequest, SafetyCopy, SourceError,
};
use serde_json::Value;

/// Tests that load the server heavily, or capture every database on it, run one at a time.
static HEAVY: Mutex<()> = Mutex::new(());

// ---- the server, from the test's side ----

/// The newest installed client tools (the same choice the source makes by default).
fn real_bin() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL client tools in /usr/lib/postgresql")
        .filter_map(|e| {
            let e = e.ok()?;
            Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("psql").is_file())
        .collect();
    versions.sort();
    versions.pop().expect("an installed PostgreSQL version").1
}

/// Run `sql` in `database` as `postgres`; panics on failure. Tuples only, unaligned.
fn psql(database: &str, sql: &str) -> String {
    try_psql(database, sql).unwrap_or_else(|e| panic!("psql in {database}: {e}\n{sql}"))
}

fn try_psql(database: &str, sql: &str) -> Result<String, String> {
    let out = Command::new(real_bin().join("psql"))
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .envs([("PGHOST", "127.0.0.1"), ("PGPORT", "5432"), ("PGUSER", "postgres"), ("PGDATABASE", database)])
        .output()
        .expect("psql runs");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn unique(tag: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("cairn_t_{}_{}{tag}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A database of this test run, dropped at the end of the test.
struct TestDb(String);

impl TestDb {
    /// A new, empty database.
    fn create(tag: &str) -> TestDb {
        let db = TestDb::named(unique(tag));
        psql("postgres", &format!("CREATE DATABASE {}", ident(&db.0)));
        db
    }

    /// A name (not created here) to be dropped in the end, such as a restore's target.
    fn named(name: String) -> TestDb {
        TestDb(name)
    }

    fn exists(&self) -> bool {
        psql("postgres", &format!("SELECT count(*) FROM pg_database WHERE datname = '{}'", self.0.replace('\'', "''")))
            .trim()
            == "1"
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = try_psql("postgres", &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(&self.0)));
    }
}

/// A role of this test run, dropped at the end of the test (after the databases declared
/// after it).
struct TestRole(String);

impl Drop for TestRole {
    fn drop(&mut self) {
        let _ = try_psql("postgres", &format!("DROP ROLE IF EXISTS {}", ident(&self.0)));
    }
}

fn source(databases: &[&str]) -> PostgresSource {
    PostgresSource {
        host: "127.0.0.1".into(),
        port: 5432,
        user: "postgres".into(),
        password: None,
        databases: Some(databases.iter().map(|d| d.to_string()).collect()),
        prefix: Vec::new(),
        bin_dir: None,
        globals: false,
    }
}

// ---- the repository side ----

/// Run `capture` with a writer of its own, as the engine does for each source.
fn capture_with(
    repo: &Repository,
    capture: &mut dyn FnMut(&CaptureContext<'_, '_>) -> Result<Capture, SourceError>,
) -> Result<SourceEntry, SourceError> {
    let writer = repo.writer(WriterOptions::default());
    let ctx = CaptureContext { repo, writer: &writer, chunking: ChunkParams::DUMPS, progress: &() };
    let captured = capture(&ctx);
    writer.finish()?;
    let c = captured?;
    Ok(SourceEntry {
        name: "pg".into(),
        kind: "postgres".into(),
        status: SourceStatus::Ok,
        error: None,
        root: Some(c.root),
        chunking: ChunkParams::DUMPS,
        metadata: c.metadata,
        stats: c.stats,
        warnings: c.warnings,
    })
}

fn backup(repo: &Repository, source: &PostgresSource) -> Result<SourceEntry, SourceError> {
    capture_with(repo, &mut |ctx| source.backup(ctx))
}

/// A safety copy that captures into the repository and records, for each call, what the
/// database looked like (`observe`) at that moment.
struct Safety<'r> {
    repo: &'r Repository,
    observe: Box<dyn Fn() -> String + 'r>,
    calls: Mutex<Vec<(String, SourceEntry)>>,
}

impl<'r> Safety<'r> {
    fn new(repo: &'r Repository, observe: impl Fn() -> String + 'r) -> Safety<'r> {
        Safety { repo, observe: Box::new(observe), calls: Mutex::new(Vec::new()) }
    }

    fn calls(&self) -> Vec<(String, SourceEntry)> {
        self.calls.lock().unwrap().clone()
    }
}

impl SafetyCopy for Safety<'_> {
    fn save(
        &self,
        capture: &mut dyn FnMut(&CaptureContext<'_, '_>) -> Result<Capture, SourceError>,
    ) -> Result<String, SourceError> {
        let entry = capture_with(self.repo, capture)?;
        let mut calls = self.calls.lock().unwrap();
        calls.push(((self.observe)(), entry));
        Ok(format!("safety copy {}, tagged pre-restore", calls.len()))
    }
}

struct NoSafety;

impl SafetyCopy for NoSafety {
    fn save(
        &self,
        _: &mut dyn FnMut(&CaptureContext<'_, '_>) -> Result<Capture, SourceError>,
    ) -> Result<String, SourceError> {
        panic!("no safety copy was expected");
    }
}

struct Restore<'a> {
    to: Option<&'a str>,
    databases: &'a [&'a str],
    tables: &'a [&'a str],
    yes: bool,
}

const FRESH: Restore<'static> = Restore { to: None, databases: &[], tables: &[], yes: false };

fn restore(
    repo: &Repository,
    source: &PostgresSource,
    entry: &SourceEntry,
    how: Restore<'_>,
    safety: &dyn SafetyCopy,
) -> Result<RestoreReport, SourceError> {
    let req = RestoreRequest {
        repo,
        entry,
        to: how.to.map(str::to_string),
        databases: how.databases.iter().map(|d| d.to_string()).collect(),
        tables: how.tables.iter().map(|t| t.to_string()).collect(),
        yes: how.yes,
        safety,
        progress: &(),
    };
    source.restore(&req)
}

/// The recorded metadata of `database`.
fn recorded<'e>(entry: &'e SourceEntry, database: &str) -> &'e Value {
    let dbs = entry.metadata["databases"].as_array().expect("a list of databases");
    dbs.iter().find(|d| d["name"] == database).unwrap_or_else(|| panic!("{database} not recorded: {dbs:?}"))
}

/// `schema.table` → recorded rows.
fn recorded_rows(entry: &SourceEntry, database: &str) -> BTreeMap<String, u64> {
    let tables = recorded(entry, database)["tables"].as_array().unwrap();
    tables.iter().map(|t| (t["name"].as_str().unwrap().to_string(), t["rows"].as_u64().unwrap())).collect()
}

// ---- the tests ----

const SHOP: &str = r#"
CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, price numeric(10,2), added date);
INSERT INTO items (name, price, added)
    SELECT 'item ' || i, i * 1.5, date '2024-01-01' + i FROM generate_series(1, 500) i;
CREATE INDEX items_by_name ON items (name);
CREATE SEQUENCE invoice_no START 1000;
SELECT nextval('invoice_no'), nextval('invoice_no');
CREATE VIEW cheap AS SELECT id, name FROM items WHERE price < 100;
CREATE FUNCTION double_it(int) RETURNS int LANGUAGE sql AS 'SELECT $1 * 2';
CREATE SCHEMA other;
CREATE TABLE other."Odd Name" (k text PRIMARY KEY, v jsonb);
INSERT INTO other."Odd Name" VALUES ('a', '{"x": 1}'), ('b|c', '"line\nbreak"'), ('ünï', 'null');
CREATE TABLE empty_one (x int);
"#;

/// Queries whose answers must be the same in a restored copy.
const SAME_ANSWERS: [&str; 7] = [
    "SELECT * FROM items ORDER BY id",
    r#"SELECT * FROM other."Odd Name" ORDER BY k"#,
    "SELECT * FROM cheap ORDER BY id",
    "SELECT double_it(21)",
    "SELECT nextval('invoice_no')",
    "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname NOT IN ('pg_catalog') ORDER BY 1",
    "SELECT count(*) FROM empty_one",
];

#[test]
fn round_trip_to_a_new_name() {
    let db = TestDb::create("_shop");
    psql(&db.0, SHOP);
    let repo = repo();
    let entry = backup(&repo, &source(&[&db.0])).unwrap();

    let meta = &entry.metadata;
    assert_eq!(meta["format"], "pg_dump custom, uncompressed");
    assert!(meta["server_version"].as_str().unwrap().starts_with(char::is_numeric), "{meta:?}");
    assert!(meta["client_version"].as_str().unwrap().starts_with(char::is_numeric), "{meta:?}");
    assert!(!meta.contains_key("globals"), "globals were not asked for");
    let db_meta = recorded(&entry, &db.0);
    assert_eq!(db_meta["stream"], format!("{}.pgdump", db.0));
    assert!(db_meta["bytes"].as_u64().unwrap() > 0);
    let rows = recorded_rows(&entry, &db.0);
    let expected = [("other.Odd Name", 3), ("public.empty_one", 0), ("public.items", 500)];
    assert_eq!(rows, expected.iter().map(|(n, r)| (n.to_string(), *r)).collect());
    assert_eq!(entry.stats.files_new, 1);
    assert!(entry.warnings.is_empty(), "{:?}", entry.warnings);

    // A target name that needs quoting everywhere.
    let copy = TestDb::named(format!("{} copy's \"x\" = y", db.0));
    let report = restore(&repo, &source(&[]), &entry, Restore { to: Some(&copy.0), ..FRESH }, &NoSafety).unwrap();
    assert_eq!(report.restored, [format!("database {}: 3 tables from {}", copy.0, db.0)]);
    assert!(report.safety_copies.is_empty());
    for query in SAME_ANSWERS {
        assert_eq!(psql(&copy.0, query), psql(&db.0, query), "{query}");
    }
    assert_eq!(psql(&copy.0, "SELECT double_it(21)").trim(), "42");
    assert_eq!(psql(&copy.0, "INSERT INTO items (name) VALUES ('new') RETURNING id").trim(), "501");
}

#[test]
fn counts_and_dump_describe_one_instant_while_a_writer_commits() {
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let db = TestDb::create("_busy");
    let initial = 150_000;
    psql(
        &db.0,
        &format!(
            "CREATE TABLE items (id bigserial PRIMARY KEY, payload text);
             CREATE TABLE totals (n bigint NOT NULL);
             CREATE TABLE stop (x int);
             INSERT INTO items (payload) SELECT repeat(md5(i::text), 8) FROM generate_series(1, {initial}) i;
             INSERT INTO totals VALUES ({initial});"
        ),
    );
    // Commits one row and the matching total at a time until told to stop (30 s at most).
    let writer = {
        let name = db.0.clone();
        std::thread::spawn(move || {
            try_psql(
                &name,
                "DO $$
                 DECLARE deadline timestamptz := clock_timestamp() + interval '30 seconds';
                 BEGIN
                   LOOP
                     INSERT INTO items (payload) VALUES (repeat('w', 200));
                     UPDATE totals SET n = n + 1;
                     COMMIT;
                     EXIT WHEN clock_timestamp() > deadline OR EXISTS (SELECT 1 FROM stop);
                     PERFORM pg_sleep(0.001);
                   END LOOP;
                 END $$",
            )
        })
    };
    let total = || psql(&db.0, "SELECT n FROM totals").trim().parse::<u64>().unwrap();
    let started = Instant::now();
    while total() == initial && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = total();
    assert!(before > initial, "the writer never committed");

    let repo = repo();
    let entry = backup(&repo, &source(&[&db.0]));
    let after = total();
    psql(&db.0, "INSERT INTO stop VALUES (1)");
    writer.join().unwrap().expect("the writer ran to its end");
    let entry = entry.unwrap();

    let rows = recorded_rows(&entry, &db.0);
    let counted = rows["public.items"];
    assert_eq!(rows["public.totals"], 1);
    assert!(before <= counted && counted < after, "the backup must overlap the writes: {before} ≤ {counted} < {after}");

    let copy = TestDb::named(unique("_busy_copy"));
    restore(&repo, &source(&[]), &entry, Restore { to: Some(&copy.0), ..FRESH }, &NoSafety).unwrap();
    let items: u64 = psql(&copy.0, "SELECT count(*) FROM items").trim().parse().unwrap();
    let n: u64 = psql(&copy.0, "SELECT n FROM totals").trim().parse().unwrap();
    assert_eq!((items, n), (counted, counted), "restored rows, restored total and recorded count must agree");
}

#[test]
fn restore_over_an_existing_database_needs_yes_and_saves_it_first() {
    let db = TestDb::create("_live");
    psql(&db.0, "CREATE TABLE t (v text); INSERT INTO t VALUES ('old')");
    let repo = repo();
    let entry = backup(&repo, &source(&[&db.0])).unwrap();
    psql(&db.0, "UPDATE t SET v = 'changed'; INSERT INTO t VALUES ('extra')");
    let current = || psql(&db.0, "SELECT string_agg(v, ',' ORDER BY v) FROM t").trim().to_string();

    let refused = restore(&repo, &source(&[]), &entry, FRESH, &NoSafety).unwrap_err().to_string();
    assert!(refused.contains(&db.0) && refused.contains("exists"), "{refused}");
    assert!(refused.contains("--yes") && refused.contains("--to"), "{refused}");
    assert_eq!(current(), "changed,extra");

    // A restore that fails half-way (a view depends on the table it would drop) rolls back.
    psql(&db.0, "CREATE VIEW keep AS SELECT * FROM t");
    let safety = Safety::new(&repo, current);
    let yes = Restore { yes: true, ..FRESH };
    let failed = restore(&repo, &source(&[]), &entry, yes, &safety).unwrap_err().to_string();
    assert!(failed.contains("rolled back") && failed.contains("depend"), "{failed}");
    assert_eq!(current(), "changed,extra");
    psql(&db.0, "DROP VIEW keep");

    let report = restore(&repo, &source(&[]), &entry, Restore { yes: true, ..FRESH }, &safety).unwrap();
    assert_eq!(current(), "old");
    assert_eq!(report.restored, [format!("database {}: 1 tables from {}", db.0, db.0)]);
    assert_eq!(report.safety_copies, ["safety copy 2, tagged pre-restore"]);
    let calls = safety.calls();
    assert_eq!(calls.len(), 2);
    // Taken before anything was replaced, and holding the data as it was then.
    assert_eq!(calls[1].0, "changed,extra");
    let saved = &calls[1].1;
    assert_eq!(recorded_rows(saved, &db.0), BTreeMap::from([("public.t".to_string(), 2)]));
    assert!(!saved.metadata.contains_key("globals"), "a safety copy is of the database alone");
    let check = TestDb::named(unique("_saved"));
    restore(&repo, &source(&[]), saved, Restore { to: Some(&check.0), ..FRESH }, &NoSafety).unwrap();
    assert_eq!(psql(&check.0, "SELECT string_agg(v, ',' ORDER BY v) FROM t").trim(), "changed,extra");
}

#[test]
fn chosen_tables_into_a_new_database() {
    let db = TestDb::create("_tables");
    psql(
        &db.0,
        "CREATE TABLE a (x int); INSERT INTO a VALUES (1), (2), (3);
         CREATE TABLE b (y text); INSERT INTO b VALUES ('p'), ('q');
         CREATE SCHEMA other; CREATE TABLE other.c (z int); INSERT INTO other.c SELECT generate_series(1, 4);",
    );
    let repo = repo();
    let entry = backup(&repo, &source(&[&db.0])).unwrap();

    let copy = TestDb::named(unique("_tables_copy"));
    let how = Restore { to: Some(&copy.0), tables: &["a", "other.c"], ..FRESH };
    let report = restore(&repo, &source(&[]), &entry, how, &NoSafety).unwrap();
    assert_eq!(report.restored, [format!("database {}: 2 tables from {} (public.a, other.c)", copy.0, db.0)]);
    assert_eq!(psql(&copy.0, "SELECT sum(x) FROM a").trim(), "6");
    assert_eq!(psql(&copy.0, "SELECT count(*) FROM other.c").trim(), "4");
    assert_eq!(psql(&copy.0, "SELECT to_regclass('public.b') IS NULL").trim(), "t");

    let other = TestDb::named(unique("_tables_none"));
    let how = Restore { to: Some(&other.0), tables: &["a", "nope"], ..FRESH };
    let err = restore(&repo, &source(&[]), &entry, how, &NoSafety).unwrap_err().to_string();
    assert!(err.contains("no table nope") && err.contains("other.c"), "{err}");
    assert!(!other.exists(), "nothing is created when a table is not in the capture");
}

/// A table with everything that is not part of its definition: a sequence, an identity,
/// keys, an index, a trigger and its function, a type, a policy, a comment, a grant; and a
/// second table with a foreign key to it.
const STORE: &str = r#"
CREATE TYPE mood AS ENUM ('ok', 'sad');
CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.changed := now(); RETURN NEW; END $$;
CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL UNIQUE CHECK (name <> ''), m mood DEFAULT 'ok',
    changed timestamptz);
CREATE INDEX items_lower ON items (lower(name));
CREATE TRIGGER items_stamp BEFORE INSERT OR UPDATE ON items FOR EACH ROW EXECUTE FUNCTION stamp();
ALTER TABLE items ENABLE ROW LEVEL SECURITY;
CREATE POLICY everyone ON items USING (true);
COMMENT ON TABLE items IS 'what we sell';
GRANT SELECT ON items TO PUBLIC;
INSERT INTO items (name) SELECT 'item ' || i FROM generate_series(1, 50) i;
CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, item int NOT NULL REFERENCES items (id),
    qty int DEFAULT 1);
INSERT INTO orders (item) SELECT i FROM generate_series(1, 50, 2) i;
"#;

/// What a restored table must have as the original had it (everything but its rows).
fn shape_of(database: &str, table: &str) -> String {
    let rel = format!("'public.{table}'::regclass");
    psql(
        database,
        &format!(
            "SELECT string_agg(what, E'\n' ORDER BY what) FROM (
               SELECT 'index ' || indexdef FROM pg_indexes WHERE tablename = '{table}'
               UNION ALL SELECT 'constraint ' || conname || ' ' || pg_get_constraintdef(oid)
                 FROM pg_constraint WHERE conrelid = {rel}
               UNION ALL SELECT 'trigger ' || pg_get_triggerdef(oid) FROM pg_trigger
                 WHERE tgrelid = {rel} AND NOT tgisinternal
               UNION ALL SELECT 'default ' || a.attname || ' ' || pg_get_expr(d.adbin, d.adrelid)
                 FROM pg_attrdef d JOIN pg_attribute a ON (a.attrelid, a.attnum) = (d.adrelid, d.adnum)
                 WHERE d.adrelid = {rel}
               UNION ALL SELECT 'identity ' || attname FROM pg_attribute WHERE attrelid = {rel} AND attidentity <> ''
               UNION ALL SELECT 'policy ' || policyname FROM pg_policies WHERE tablename = '{table}'
               UNION ALL SELECT 'row security ' || relrowsecurity FROM pg_class WHERE oid = {rel}
               UNION ALL SELECT 'comment ' || obj_description({rel}, 'pg_class')
               UNION ALL SELECT 'grant ' || grantee || ' ' || privilege_type
                 FROM information_schema.role_table_grants WHERE table_name = '{table}' AND grantee = 'PUBLIC'
             ) shape(what)"
        ),
    )
    .trim()
    .to_string()
}

#[test]
fn a_chosen_table_comes_with_its_keys_indexes_triggers_and_what_they_need() {
    let db = TestDb::create("_store");
    psql(&db.0, STORE);
    let repo = repo();
    let entry = backup(&repo, &source(&[&db.0])).unwrap();
    let items = shape_of(&db.0, "items");
    assert!(items.lines().count() >= 12, "{items}");

    // Into a new database, which has neither the type nor the trigger's function.
    let copy = TestDb::named(unique("_items"));
    let how = Restore { to: Some(&copy.0), tables: &["items"], ..FRESH };
    let report = restore(&repo, &source(&[]), &entry, how, &NoSafety).unwrap();
    assert_eq!(report.warnings, Vec::<String>::new(), "another table's key to it is that table's");
    assert_eq!(shape_of(&copy.0, "items"), items);
    assert_eq!(psql(&copy.0, "SELECT count(*) FROM items").trim(), "50");
    assert_eq!(psql(&copy.0, "SELECT to_regclass('public.orders') IS NULL").trim(), "t");
    // The sequence goes on where it was, the trigger fires, the unique key holds.
    let added = psql(&copy.0, "INSERT INTO items (name) VALUES ('new') RETURNING id, m, changed IS NOT NULL");
    assert_eq!(added.trim(), "51|ok|t");
    let duplicate = try_psql(&copy.0, "INSERT INTO items (name) VALUES ('item 1')").unwrap_err();
    assert!(duplicate.contains("items_name_key"), "{duplicate}");

    // A table whose foreign key points at a table that is not restored: the key is left out,
    // and the restore says so.
    let alone = TestDb::named(unique("_orders"));
    let how = Restore { to: Some(&alone.0), tables: &["orders"], ..FRESH };
    let report = restore(&repo, &source(&[]), &entry, how, &NoSafety).unwrap();
    assert_eq!(
        report.warnings,
        [format!(
            "database {}: left out FK CONSTRAINT public orders orders_item_fkey: it needs TABLE public items, \
             which is neither restored nor in the target",
            alone.0
        )]
    );
    let orders = shape_of(&db.0, "orders");
    let without_key: Vec<&str> = orders.lines().filter(|l| !l.contains("orders_item_fkey")).collect();
    assert_eq!(shape_of(&alone.0, "orders"), without_key.join("\n"));
    assert_eq!(psql(&alone.0, "INSERT INTO orders (item) VALUES (7) RETURNING id").trim(), "26");

    // Both together: the key comes along.
    let both = TestDb::named(unique("_both"));
    let how = Restore { to: Some(&both.0), tables: &["orders", "items"], ..FRESH };
    assert_eq!(restore(&repo, &source(&[]), &entry, how, &NoSafety).unwrap().warnings, Vec::<String>::new());
    assert_eq!(shape_of(&both.0, "orders"), orders);
}

#[test]
fn a_table_restored_into_the_live_database_keeps_the_keys_that_point_at_it() {
    let db = TestDb::create("_keys");
    psql(&db.0, STORE);
    psql(&db.0, "CREATE VIEW first_ones AS SELECT id, name FROM items WHERE id <= 2");
    let repo = repo();
    let entry = backup(&repo, &source(&[&db.0])).unwrap();
    let (items, orders) = (shape_of(&db.0, "items"), shape_of(&db.0, "orders"));
    let names = || psql(&db.0, "SELECT string_agg(name, ',' ORDER BY id) FROM items WHERE id <= 3").trim().to_string();

    // Rows changed by mistake, while another table's key and a view point at the table.
    psql(&db.0, "UPDATE items SET name = name || ' (changed)'; DROP INDEX items_lower");
    let safety = Safety::new(&repo, || psql(&db.0, "SELECT count(*) FROM orders"));
    let how = Restore { tables: &["items"], yes: true, ..FRESH };
    let report = restore(&repo, &source(&[]), &entry, how, &safety).unwrap();
    assert_eq!(report.warnings, Vec::<String>::new());
    assert_eq!(safety.calls().len(), 1);
    assert_eq!(names(), "item 1,item 2,item 3");
    assert_eq!((shape_of(&db.0, "items"), shape_of(&db.0, "orders")), (items.clone(), orders.clone()));
    assert_eq!(psql(&db.0, "SELECT count(*) FROM orders").trim(), "25", "the other table is untouched");
    assert_eq!(psql(&db.0, "SELECT string_agg(name, ',') FROM first_ones").trim(), "item 1,item 2");

    // Rows the old table cannot hold keep the key from being made again: nothing changes.
    psql(&db.0, "INSERT INTO items (name) VALUES ('late'); INSERT INTO orders (item) VALUES (51)");
    psql(&db.0, "UPDATE items SET name = 'renamed' WHERE id = 1");
    let how = Restore { tables: &["items"], yes: true, ..FRESH };
    let err = restore(&repo, &source(&[]), &entry, how, &safety).unwrap_err().to_string();
    assert!(err.contains("rolled back") && err.contains("orders_item_fkey"), "{err}");
    assert_eq!(psql(&db.0, "SELECT name FROM items WHERE id = 1").trim(), "renamed");
    assert_eq!(shape_of(&db.0, "orders"), orders);

    // A view made since the backup cannot be made again from it: refused, with what to do.
    psql(&db.0, "CREATE VIEW newer AS SELECT * FROM items");
    let how = Restore { tables: &["items"], yes: true, ..FRESH };
    let err = restore(&repo, &source(&[]), &entry, how, &safety).unwrap_err();
    let (message, hint) = (err.to_string(), format!("{:?}", err));
    assert!(message.contains("rolled back") && message.contains("view public.newer depends"), "{message}");
    assert!(hint.contains("not in this backup") && hint.contains("--to"), "{hint}");
    psql(&db.0, "DROP VIEW newer");

    // A table dropped by mistake (with the key that pointed at it) comes back, key and all.
    psql(&db.0, "DELETE FROM orders WHERE item = 51; DROP TABLE items CASCADE");
    let how = Restore { tables: &["items"], yes: true, ..FRESH };
    restore(&repo, &source(&[]), &entry, how, &safety).unwrap();
    assert_eq!((shape_of(&db.0, "items"), shape_of(&db.0, "orders")), (items, orders));
    assert_eq!(safety.calls().len(), 4, "a safety copy before each restore into the live database");
}

#[test]
fn a_failed_restore_into_a_new_database_leaves_nothing() {
    // The dump makes a table owned by a role that is gone by restore time.
    let role = TestRole(unique("_owner"));
    let db = TestDb::create("_orphan");
    psql("postgres", &format!("CREATE ROLE {}", ident(&role.0)));
    psql(&db.0, &format!("CREATE TABLE t (x int); ALTER TABLE t OWNER TO {}", ident(&role.0)));
    let repo = repo();
    let entry = backup(&repo, &source(&[&db.0])).unwrap();
    psql(&db.0, "DROP TABLE t");
    psql("postgres", &format!("DROP ROLE {}", ident(&role.0)));

    let copy = TestDb::named(unique("_orphan_copy"));
    let err = restore(&repo, &source(&[]), &entry, Restore { to: Some(&copy.0), ..FRESH }, &NoSafety)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&copy.0) && err.contains("dropped again"), "{err}");
    assert!(err.contains(&format!("role \"{}\" does not exist", role.0)), "pg_restore's error is reported: {err}");
    assert!(!copy.exists());
}

#[test]
fn an_unreachable_server_is_named() {
    let mut src = source(&["postgres"]);
    src.port = 1;
    let err = backup(&repo(), &src).unwrap_err().to_string();
    assert!(err.contains("cannot reach the PostgreSQL server 127.0.0.1:1"), "{err}");
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn a_role_that_does_not_exist_is_named() {
    let mut src = source(&["postgres"]);
    src.user = unique("_nobody");
    let err = backup(&repo(), &src).unwrap_err().to_string();
    assert!(err.contains(&format!("role \"{}\" does not exist", src.user)), "{err}");
    assert!(err.contains("127.0.0.1:5432"), "{err}");
}

#[test]
fn a_missing_database_is_named_with_those_that_exist() {
    let missing = unique("_missing");
    let err = backup(&repo(), &source(&[&missing])).unwrap_err().to_string();
    assert!(err.contains(&format!("database \"{missing}\" does not exist")), "{err}");
    let hint = err.split("hint:").nth(1).unwrap_or_else(|| panic!("a hint: {err}"));
    assert!(hint.contains("postgres"), "{err}");
}

#[test]
fn a_missing_tool_is_named_with_where_it_was_looked_for() {
    let empty = tempfile::tempdir().unwrap();
    let mut src = source(&["postgres"]);
    src.bin_dir = Some(empty.path().to_path_buf());
    let err = backup(&repo(), &src).unwrap_err().to_string();
    assert!(err.contains(&format!("psql not found in {}", empty.path().display())), "{err}");
    assert!(err.contains("hint:"), "{err}");
}

fn script(path: &Path, body: &str) {
    let mut f = std::fs::File::create(path).unwrap();
    writeln!(f, "#!/bin/sh\n{body}").unwrap();
    drop(f);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_client_older_than_the_server_is_refused() {
    let bin = tempfile::tempdir().unwrap();
    script(&bin.path().join("pg_dump"), "echo 'pg_dump (PostgreSQL) 9.6.0'");
    script(&bin.path().join("psql"), &format!("exec {} \"$@\"", real_bin().join("psql").display()));
    let mut src = source(&["postgres"]);
    src.bin_dir = Some(bin.path().to_path_buf());
    let err = backup(&repo(), &src).unwrap_err().to_string();
    let server = psql("postgres", "SHOW server_version");
    let major = server.split('.').next().unwrap();
    assert!(err.contains("pg_dump 9.6.0 is older than") && err.contains(server.trim()), "{err}");
    assert!(err.contains(&format!("postgresql-client-{major}")) && err.contains("bin_dir"), "{err}");
}

#[test]
fn secrets_stay_off_command_lines_and_out_of_messages() {
    let password = format!("hunter2-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("commands.log");
    let wrapper = dir.path().join("wrap");
    script(
        &wrapper,
        &format!(
            "printf '%s PGPASSWORD=%s\\n' \"$(tr '\\0' ' ' < /proc/$$/cmdline)\" \"${{PGPASSWORD:+set}}\" >> {}\nexec \"$@\"",
            log.display()
        ),
    );
    let db = TestDb::create("_secret");
    psql(&db.0, "CREATE TABLE t (x int); INSERT INTO t VALUES (7)");
    let mut src = source(&[&db.0]);
    src.password = Some(Password(password.clone()));
    src.prefix = vec![wrapper.display().to_string()];
    src.globals = true;

    let repo = repo();
    let entry = backup(&repo, &src).unwrap();
    assert_eq!(recorded_rows(&entry, &db.0)["public.t"], 1);
    let copy = TestDb::named(unique("_secret_copy"));
    restore(&repo, &src, &entry, Restore { to: Some(&copy.0), ..FRESH }, &NoSafety).unwrap();
    assert_eq!(psql(&copy.0, "SELECT x FROM t").trim(), "7");
    // Chosen tables: pg_restore's list file is made where the tools run, and removed again.
    let tables = TestDb::named(unique("_secret_table"));
    restore(&repo, &src, &entry, Restore { to: Some(&tables.0), tables: &["t"], ..FRESH }, &NoSafety).unwrap();
    assert_eq!(psql(&tables.0, "SELECT x FROM t").trim(), "7");

    let logged = std::fs::read_to_string(&log).unwrap();
    for tool in ["psql", "pg_dump", "pg_dumpall", "pg_restore", "sh", "rm"] {
        assert!(logged.lines().any(|l| l.contains(&format!("{} {tool} ", wrapper.display()))), "{tool} ran: {logged}");
    }
    let removed = logged.lines().find_map(|l| l.split(" rm -f -- ").nth(1)).unwrap();
    let list = removed.split(' ').next().unwrap();
    assert!(list.contains("cairn-restore-list.") && !Path::new(list).exists(), "{list}");
    assert!(logged.contains(&format!("--use-list={list}")), "{logged}");
    for line in logged.lines() {
        assert!(!line.contains(&password), "a password on a command line: {line}");
        let wrapped = format!("{} ", wrapper.display());
        let tool = line.split(&wrapped).nth(1).and_then(|rest| rest.split(' ').next()).unwrap_or_default();
        if tool != "sh" && tool != "rm" {
            assert!(line.ends_with("PGPASSWORD=set"), "the password is in the environment: {line}");
        } else {
            assert!(line.ends_with("PGPASSWORD="), "only the tools get the password: {line}");
        }
    }

    // Failures, through the prefix and without it, never quote the password.
    let mut missing = src.clone();
    missing.databases = Some(vec![unique("_missing")]);
    let mut unreachable = src.clone();
    unreachable.port = 1;
    unreachable.prefix.clear();
    for broken in [missing, unreachable] {
        let err = backup(&repo, &broken).unwrap_err().to_string();
        assert!(!err.contains(&password), "{err}");
        assert!(!format!("{broken:?}").contains(&password));
    }
    let url = format!("postgres://postgres:{password}@127.0.0.1:1/app");
    let err = backup(&repo, &PostgresSource::from_url(&url).unwrap()).unwrap_err().to_string();
    assert!(err.contains("cannot reach") && !err.contains(&password), "{err}");
}

#[test]
fn all_databases_are_captured_when_none_are_named() {
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let db = TestDb::create("_all");
    psql(&db.0, "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)");
    let mut src = source(&[]);
    src.databases = None;
    src.globals = true;
    let repo = repo();
    let entry = backup(&repo, &src).unwrap();

    assert_eq!(recorded_rows(&entry, &db.0)["public.t"], 2);
    assert_eq!(entry.metadata["globals"], "globals.sql");
    let names: Vec<&str> =
        entry.metadata["databases"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"postgres"), "{names:?}");
    assert!(!names.contains(&"template0") && !names.contains(&"template1"), "{names:?}");
    let stored = streams::list(&repo, entry.root.unwrap()).unwrap();
    let stored: Vec<&str> = stored.iter().map(|n| n.name.as_str()).collect();
    assert!(stored.contains(&"globals.sql") && stored.contains(&format!("{}.pgdump", db.0).as_str()), "{stored:?}");
    assert_eq!(stored.len(), names.len() + 1, "one stream per database and the globals: {stored:?}");
}

#[test]
fn a_role_that_may_not_read_passwords_still_gets_its_globals() {
    let role = TestRole(unique("_plain"));
    psql("postgres", &format!("CREATE ROLE {} LOGIN", ident(&role.0)));
    let db = TestDb::create("_plain_db");
    psql("postgres", &format!("ALTER DATABASE {} OWNER TO {}", ident(&db.0), ident(&role.0)));
    let mut src = source(&[&db.0]);
    src.user = role.0.clone();
    src.globals = true;
    let repo = repo();
    let entry = backup(&repo, &src).unwrap();
    assert_eq!(entry.metadata["globals"], "globals.sql");
    assert!(entry.warnings.iter().any(|w| w.contains("no role passwords")), "{:?}", entry.warnings);
}

#[test]
fn verify_proves_row_counts_in_a_scratch_database_and_names_a_mismatch() {
    let db = TestDb::create("_verify");
    psql(&db.0, "CREATE TABLE a (x int); INSERT INTO a SELECT generate_series(1, 50); CREATE SCHEMA s; CREATE TABLE s.b (y int);");
    let repo = repo();
    let entry = backup(&repo, &source(&[&db.0])).unwrap();
    // Only this test's scratch copies: other tests verify beside it.
    let pattern = cairn_sources::verify::scratch::database_pattern(&db.0);
    let mine = format!("SELECT count(*) FROM pg_database WHERE datname LIKE '{pattern}'");
    let scratch_left = || psql("postgres", &mine);

    let verdict = source(&[]).verify(&repo, &entry).unwrap();
    assert!(verdict.ok(), "{:?}", verdict.problems);
    assert_eq!(verdict.checks, 2);
    assert!(verdict.scratch.starts_with("cairn_verify_"), "{verdict:?}");
    assert_eq!(scratch_left().trim(), "0", "the scratch database is dropped");

    let mut wrong = entry.clone();
    let tables = wrong.metadata["databases"][0]["tables"].as_array_mut().unwrap();
    tables.iter_mut().find(|t| t["name"] == "public.a").unwrap()["rows"] = serde_json::json!(49);
    let verdict = source(&[]).verify(&repo, &wrong).unwrap();
    assert_eq!(verdict.problems, [format!("database {} table public.a rows: recorded 49, restored copy has 50", db.0)]);
    assert_eq!(scratch_left().trim(), "0");
}
