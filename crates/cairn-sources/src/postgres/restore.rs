//! Restoring databases, or chosen tables of one, from a capture.
//!
//! Every check that can refuse a restore runs before anything changes. A database that does
//! not exist is created and filled by one `pg_restore --single-transaction`; if that fails it
//! is dropped again. A database that exists is only replaced with `yes`, after a safety copy,
//! and with `--clean --if-exists` in one transaction, so a failure leaves it as it was.
//!
//! Chosen tables are restored with what belongs to them (indexes, constraints, triggers,
//! defaults, owned sequences, policies, comments, grants) and, into a new database, with what
//! they need (types, functions, schemas): [`super::toc`] picks those entries from the
//! archive's table of contents, and one `pg_restore --use-list` restores them.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::process::ChildStdin;

use cairn_repo::{Id, Node, SourceEntry};
use serde_json::Value;

use super::capture::{DatabaseMeta, TableMeta};
use super::client::{Client, Major, Server};
use super::toc::{self, Target, Toc};
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
        let mut restore =
            self.client.tool("pg_restore", None).args(["--single-transaction", "--exit-on-error", "--no-password"]);
        restore = restore.arg(format!("--dbname={}", dbname_arg(target)));
        if plan.exists {
            restore = restore.args(["--clean", "--if-exists"]);
        }
        // The list file is kept until the restore is done.
        let _list = match self.tables {
            None => None,
            Some(tables) => {
                let chosen = self.choose_entries(plan, &node, tables)?;
                report.warnings.extend(chosen.left_out.iter().map(|w| format!("database {target}: {w}")));
                let file = self.client.place_file("cairn-restore-list", &chosen.list)?;
                restore = restore.arg(format!("--use-list={}", file.path()));
                Some(file)
            }
        };
        if plan.exists {
            let copy = self.req.safety.save(&mut |ctx| self.source.only(target).backup(ctx))?;
            report.safety_copies.push(copy);
            self.replace(target, &node, &restore)?;
        } else {
            self.create(target, &node, &restore)?;
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

    /// The archive's entries that restore `tables` into `plan`'s target (see [`Toc::select`]).
    fn choose_entries(
        &self,
        plan: &Plan<'_>,
        node: &Node,
        tables: &[&TableMeta],
    ) -> Result<toc::Selection, SourceError> {
        let lister = self.client.tool("pg_restore", None).args(["--list", "--verbose"]);
        // The listing ends after the table of contents, at the start of the archive: the
        // rest is not read, and the pipe closes.
        let listing = lister
            .write_stdin(|stdin| streams::read(self.req.repo, node, |dump| copy(dump, stdin, &(), Ends::WhenClosed)))?;
        let toc = Toc::parse(&listing);
        let wanted: HashSet<String> = tables.iter().map(|t| format!("{} {}", t.schema, t.table)).collect();
        let relations: HashSet<String>;
        let target = if plan.exists {
            relations = self.client.execute(&plan.target, RELATIONS)?.lines().map(str::to_string).collect();
            Target::Existing(&relations)
        } else {
            Target::New
        };
        toc.select(&wanted, target).map_err(|e| {
            SourceError::new(format!("cannot restore the chosen tables of database {:?}: {e}", plan.from.name))
        })
    }

    /// Restore over the existing `target`, in one transaction.
    fn replace(&self, target: &str, node: &Node, restore: &Tool) -> Result<(), SourceError> {
        feed(self.req, node, restore).map_err(|e| {
            let e = self.client.diagnose(e, Some(target));
            // What the archive holds is dropped and made again with the tables; what was made
            // since is not in it.
            let e = match (self.tables, e) {
                (Some(_), SourceError::Source { message, hint: None })
                    if message.contains("because other objects depend on it") =>
                {
                    SourceError::with_hint(
                        message,
                        "those objects are not in this backup: drop them first (and make them again after), \
                         or restore the tables beside it with --to NEW_NAME",
                    )
                }
                (_, e) => e,
            };
            e.context(format!("restoring into database {target:?} failed and was rolled back: it is as it was"))
        })
    }

    /// Create `target` and restore into it; on failure it is dropped again, so nothing
    /// half-restored is left behind.
    fn create(&self, target: &str, node: &Node, restore: &Tool) -> Result<(), SourceError> {
        let (client, maintenance) = (self.client, &self.server.maintenance_db);
        client.execute(maintenance, &format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(target)))?;
        let Err(e) = feed(self.req, node, restore) else { return Ok(()) };
        let e = client.diagnose(e, Some(target));
        Err(match client.execute(maintenance, &format!("DROP DATABASE IF EXISTS {}", quote_ident(target))) {
            Ok(_) => e.context(format!("restoring into the new database {target:?} failed; it was dropped again")),
            Err(drop) => e.context(format!(
                "restoring into the new database {target:?} failed, and dropping it failed too ({drop})"
            )),
        })
    }
}

/// The relations of a database, as `schema name` lines (how the archive's listing names them).
const RELATIONS: &str = "SELECT n.nspname || ' ' || c.relname FROM pg_class c \
    JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')";

/// Stream the dump `node` into `restore`'s stdin.
fn feed(req: &RestoreRequest<'_>, node: &Node, restore: &Tool) -> Result<(), SourceError> {
    let out = restore
        .write_stdin(|stdin| streams::read(req.repo, node, |dump| copy(dump, stdin, req.progress, Ends::AtEnd)))?;
    drop(out);
    Ok(())
}

/// Where a copy into a tool ends.
#[derive(Clone, Copy, PartialEq)]
enum Ends {
    /// At the end of the input; the tool closing its stdin first is an error.
    AtEnd,
    /// At the end, or when the tool has read what it wanted and closed its stdin.
    WhenClosed,
}

fn copy(from: &mut dyn Read, to: &mut ChildStdin, progress: &dyn Progress, ends: Ends) -> Result<(), SourceError> {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = from.read(&mut buf).map_err(|e| SourceError::new(format!("reading the capture: {e}")))?;
        if n == 0 {
            return Ok(());
        }
        match to.write_all(&buf[..n]) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe && ends == Ends::WhenClosed => return Ok(()),
            written => written.map_err(|e| write_error("pg_restore", &e))?,
        }
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
