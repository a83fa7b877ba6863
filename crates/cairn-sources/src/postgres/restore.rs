//! Restoring databases, or chosen tables of one, from a capture.
//!
//! Every check that can refuse a restore runs before anything changes. A database that does
//! not exist is created and filled by one `pg_restore --single-transaction`; if that fails it
//! is dropped again. A database that exists is only replaced with `yes`, after a safety copy,
//! and with `--clean --if-exists` in one transaction, so a failure leaves it as it was.
//!
//! `pg_restore -t` restores a table's definition and data, not its indexes, constraints,
//! triggers or column defaults (they are separate objects of the dump). Chosen tables are
//! restored one schema at a time: `-n a -n b -t x -t y` would also take `a.y` and `b.x`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::ChildStdin;

use cairn_repo::{Id, Node, SourceEntry};
use serde_json::Value;

use super::capture::{DatabaseMeta, TableMeta};
use super::client::{Client, Major, Server};
use super::{PostgresSource, FORMAT};
use crate::tool::{write_error, Tool};
use crate::{streams, Progress, RestoreReport, RestoreRequest, SourceError};

/// What a capture recorded.
struct Recorded {
    root: Id,
    client_version: Option<String>,
    databases: Vec<DatabaseMeta>,
}

/// One database to restore.
struct Plan<'m> {
    from: &'m DatabaseMeta,
    target: String,
    exists: bool,
}

pub(super) fn run(source: &PostgresSource, req: &RestoreRequest<'_>) -> Result<RestoreReport, SourceError> {
    let recorded = Recorded::read(req.entry)?;
    let chosen = recorded.choose(&req.databases)?;
    let names = || chosen.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", ");
    if req.to.is_some() && chosen.len() != 1 {
        return Err(SourceError::with_hint(
            format!("a new name is for one database, but {} are to be restored ({})", chosen.len(), names()),
            "choose one database to restore under the new name",
        ));
    }
    let tables = match (req.tables.is_empty(), chosen.as_slice()) {
        (true, _) => None,
        (false, [db]) => Some(pick_tables(db, &req.tables)?),
        (false, _) => {
            return Err(SourceError::with_hint(
                format!("tables are chosen from one database, but {} are to be restored ({})", chosen.len(), names()),
                "choose the database the tables are in",
            ))
        }
    };

    let client = Client::new(source, &["psql", "pg_restore"])?;
    let server = client.probe()?;
    check_tools(&client, &server, &recorded)?;
    let plans: Vec<Plan<'_>> = chosen
        .iter()
        .map(|from| {
            let target = req.to.clone().unwrap_or_else(|| from.name.clone());
            Plan { from, exists: server.has(&target), target }
        })
        .collect();
    if let Some(plan) = plans.iter().find(|p| p.exists && !req.yes) {
        return Err(SourceError::with_hint(
            format!(
                "database {:?} exists on the PostgreSQL server {}; nothing was changed",
                plan.target,
                client.server()
            ),
            "--yes replaces it, after saving a dump of the current database (tagged pre-restore); \
             or restore beside it with --to NEW_NAME",
        ));
    }

    let job = Job { source, client: &client, server: &server, req, recorded: &recorded, tables: tables.as_deref() };
    let mut report = RestoreReport::default();
    for plan in &plans {
        if let Err(e) = job.restore(plan, &mut report) {
            // Databases restored before this one stay restored: say which.
            let done = report.restored.join("; ");
            return Err(if done.is_empty() { e } else { e.context(format!("after restoring {done}")) });
        }
    }
    Ok(report)
}

/// `pg_restore` must be as new as the server, and as the `pg_dump` that wrote the dumps.
fn check_tools(client: &Client, server: &Server, recorded: &Recorded) -> Result<(), SourceError> {
    let against = format!("the PostgreSQL {} server {}", server.version, client.server());
    client.check_version("pg_restore", server.major, &against)?;
    if let Some((made_by, major)) = recorded.client_version.as_ref().and_then(|v| Some((v, Major::parse(v)?))) {
        client.check_version("pg_restore", major, &format!("the pg_dump {made_by} that wrote this capture"))?;
    }
    Ok(())
}

/// What every database of one restore shares.
struct Job<'a> {
    source: &'a PostgresSource,
    client: &'a Client,
    server: &'a Server,
    req: &'a RestoreRequest<'a>,
    recorded: &'a Recorded,
    /// Only these tables (all when `None`).
    tables: Option<&'a [&'a TableMeta]>,
}

impl Job<'_> {
    /// Restore one database, adding a line (and any safety copy) to `report`.
    fn restore(&self, plan: &Plan<'_>, report: &mut RestoreReport) -> Result<(), SourceError> {
        let target = plan.target.as_str();
        let node = streams::find(self.req.repo, self.recorded.root, &plan.from.stream)?;
        let passes = passes(self.client, target, self.tables, plan.exists);
        if plan.exists {
            let copy = self.req.safety.save(&mut |ctx| self.source.only(target).backup(ctx))?;
            report.safety_copies.push(copy);
            self.replace(target, &node, &passes)?;
        } else {
            self.create(target, &node, &passes)?;
        }
        let from = &plan.from.name;
        report.restored.push(match self.tables {
            None => format!("database {target}: {} tables from {from}", plan.from.tables.len()),
            Some(tables) => {
                let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
                format!("database {target}: {} tables from {from} ({})", tables.len(), names.join(", "))
            }
        });
        Ok(())
    }

    /// Restore over the existing `target`; each pass rolls back on failure.
    fn replace(&self, target: &str, node: &Node, passes: &[Pass]) -> Result<(), SourceError> {
        for (i, pass) in passes.iter().enumerate() {
            feed(self.req, node, &pass.restore).map_err(|e| {
                let e = self.client.diagnose(e, Some(target));
                let done: Vec<&str> = passes[..i].iter().filter_map(|p| p.schema.as_deref()).collect();
                if done.is_empty() {
                    return e.context(format!(
                        "restoring into database {target:?} failed and was rolled back: it is as it was"
                    ));
                }
                let schema = pass.schema.as_deref().unwrap_or_default();
                e.context(format!(
                    "restoring the tables of schema {schema:?} into database {target:?} failed and was rolled back; \
                     those of schema {} were restored",
                    done.join(", ")
                ))
            })?;
        }
        Ok(())
    }

    /// Create `target` and restore into it; on failure it is dropped again, so nothing
    /// half-restored is left behind.
    fn create(&self, target: &str, node: &Node, passes: &[Pass]) -> Result<(), SourceError> {
        let (client, maintenance) = (self.client, &self.server.maintenance_db);
        client.execute(maintenance, &format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(target)))?;
        let filled = create_schemas(client, target, self.tables)
            .and_then(|()| passes.iter().try_for_each(|pass| feed(self.req, node, &pass.restore)));
        let Err(e) = filled else { return Ok(()) };
        let e = client.diagnose(e, Some(target));
        Err(match client.execute(maintenance, &format!("DROP DATABASE IF EXISTS {}", quote_ident(target))) {
            Ok(_) => e.context(format!("restoring into the new database {target:?} failed; it was dropped again")),
            Err(drop) => e.context(format!(
                "restoring into the new database {target:?} failed, and dropping it failed too ({drop})"
            )),
        })
    }
}

/// One `pg_restore` run, and the schema it is limited to.
struct Pass {
    schema: Option<String>,
    restore: Tool,
}

/// The `pg_restore` runs into `target`: one for a whole database, one per schema for tables.
fn passes(client: &Client, target: &str, tables: Option<&[&TableMeta]>, clean: bool) -> Vec<Pass> {
    let mut base = client.tool("pg_restore", None).args(["--single-transaction", "--exit-on-error", "--no-password"]);
    base = base.arg(format!("--dbname={}", dbname_arg(target)));
    if clean {
        base = base.args(["--clean", "--if-exists"]);
    }
    let Some(tables) = tables else { return vec![Pass { schema: None, restore: base }] };
    let mut by_schema: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for t in tables {
        by_schema.entry(&t.schema).or_default().push(&t.table);
    }
    by_schema
        .into_iter()
        .map(|(schema, names)| {
            let pass = base.clone().arg("--schema").arg(schema);
            let restore = names.into_iter().fold(pass, |pass, name| pass.arg("--table").arg(name));
            Pass { schema: Some(schema.to_string()), restore }
        })
        .collect()
}

/// A new database gets the schemas of the chosen tables (`pg_restore -t` does not make them).
fn create_schemas(client: &Client, target: &str, tables: Option<&[&TableMeta]>) -> Result<(), SourceError> {
    let Some(tables) = tables else { return Ok(()) };
    let mut sql = String::new();
    for schema in tables.iter().map(|t| t.schema.as_str()).collect::<std::collections::BTreeSet<_>>() {
        sql.push_str(&format!("CREATE SCHEMA IF NOT EXISTS {};", quote_ident(schema)));
    }
    client.execute(target, &sql).map(drop)
}

/// Stream the dump `node` into `restore`'s stdin.
fn feed(req: &RestoreRequest<'_>, node: &Node, restore: &Tool) -> Result<(), SourceError> {
    let out = restore.write_stdin(|stdin| streams::read(req.repo, node, |dump| copy(dump, stdin, req.progress)))?;
    drop(out);
    Ok(())
}

fn copy(from: &mut dyn Read, to: &mut ChildStdin, progress: &dyn Progress) -> Result<(), SourceError> {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = from.read(&mut buf).map_err(|e| SourceError::new(format!("reading the capture: {e}")))?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n]).map_err(|e| write_error("pg_restore", &e))?;
        progress.bytes(n as u64);
    }
}

impl Recorded {
    fn read(entry: &SourceEntry) -> Result<Recorded, SourceError> {
        let source = &entry.name;
        let format = entry.metadata.get("format").and_then(Value::as_str);
        if format != Some(FORMAT) {
            return Err(SourceError::new(format!(
                "source {source:?} is not a PostgreSQL capture this version can restore (format {format:?})"
            )));
        }
        let root = entry.root.ok_or_else(|| SourceError::new(format!("source {source:?} captured nothing")))?;
        let databases = entry.metadata.get("databases").cloned().unwrap_or(Value::Null);
        let databases = serde_json::from_value(databases)
            .map_err(|e| SourceError::new(format!("source {source:?}: unreadable list of databases: {e}")))?;
        let client_version = entry.metadata.get("client_version").and_then(Value::as_str).map(str::to_string);
        Ok(Recorded { root, client_version, databases })
    }

    /// The databases to restore: `wanted`, or all when empty.
    fn choose(&self, wanted: &[String]) -> Result<Vec<&DatabaseMeta>, SourceError> {
        let captured = || self.databases.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", ");
        if self.databases.is_empty() {
            return Err(SourceError::new("the capture holds no database"));
        }
        if wanted.is_empty() {
            return Ok(self.databases.iter().collect());
        }
        wanted
            .iter()
            .map(|name| {
                self.databases.iter().find(|d| d.name == *name).ok_or_else(|| {
                    SourceError::with_hint(
                        format!("database {name:?} is not in this capture"),
                        format!("it holds: {}", captured()),
                    )
                })
            })
            .collect()
    }
}

/// The recorded tables named `schema.table`, or `table` when that is unambiguous.
fn pick_tables<'m>(db: &'m DatabaseMeta, wanted: &[String]) -> Result<Vec<&'m TableMeta>, SourceError> {
    let mut picked: Vec<&TableMeta> = Vec::new();
    let mut missing = Vec::new();
    for name in wanted {
        let exact: Vec<&TableMeta> = db.tables.iter().filter(|t| t.name == *name).collect();
        let hits = if exact.is_empty() { db.tables.iter().filter(|t| t.table == *name).collect() } else { exact };
        match hits.as_slice() {
            [] => missing.push(name.as_str()),
            [one] => {
                if !picked.iter().any(|t| t.name == one.name) {
                    picked.push(one);
                }
            }
            several => {
                let names: Vec<&str> = several.iter().map(|t| t.name.as_str()).collect();
                return Err(SourceError::with_hint(
                    format!("table {name:?} of database {:?} is ambiguous: {}", db.name, names.join(", ")),
                    "name it with its schema, as schema.table",
                ));
            }
        }
    }
    if missing.is_empty() {
        return Ok(picked);
    }
    let there: Vec<&str> = db.tables.iter().map(|t| t.name.as_str()).collect();
    Err(SourceError::with_hint(
        format!("database {:?} in this capture has no table {}", db.name, missing.join(", ")),
        if there.is_empty() { "it has no tables".to_string() } else { format!("its tables: {}", there.join(", ")) },
    ))
}

/// `name` as an SQL identifier.
pub(super) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `--dbname` takes a connection string when the value has a `=` or starts like a URI; such
/// a name is handed over as a connection string naming it.
fn dbname_arg(name: &str) -> String {
    if name.contains('=') || name.starts_with("postgres://") || name.starts_with("postgresql://") {
        format!("dbname='{}'", name.replace('\\', "\\\\").replace('\'', "\\'"))
    } else {
        name.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(schema: &str, name: &str) -> TableMeta {
        TableMeta { name: format!("{schema}.{name}"), schema: schema.into(), table: name.into(), rows: 0, bytes: 0 }
    }

    #[test]
    fn tables_are_picked_by_full_or_unambiguous_name() {
        let db = DatabaseMeta {
            name: "app".into(),
            stream: "app.pgdump".into(),
            bytes: 0,
            tables: vec![table("public", "a"), table("public", "b"), table("other", "b")],
        };
        let names = |w: &[&str]| {
            let wanted: Vec<String> = w.iter().map(|s| s.to_string()).collect();
            pick_tables(&db, &wanted).map(|t| t.iter().map(|t| t.name.clone()).collect::<Vec<_>>())
        };
        assert_eq!(names(&["a", "other.b", "public.a"]).unwrap(), ["public.a", "other.b"]);
        let err = names(&["b"]).unwrap_err().to_string();
        assert!(err.contains("ambiguous") && err.contains("other.b"), "{err}");
        let err = names(&["a", "nope", "x.a"]).unwrap_err().to_string();
        assert!(err.contains("nope, x.a") && err.contains("public.b"), "{err}");
    }

    #[test]
    fn names_are_quoted() {
        assert_eq!(quote_ident(r#"my "db""#), r#""my ""db""""#);
        assert_eq!(dbname_arg("app"), "app");
        assert_eq!(dbname_arg(r"a=b's\"), r"dbname='a=b\'s\\'");
    }
}
