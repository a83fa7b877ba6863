//! Restore: load recorded dumps into databases, new ones or (after a safety copy) existing ones.
//!
//! Every check (databases and tables known, `--to` with one database, existing targets only
//! with `yes`) is made before anything on the server changes. A database this restore created
//! is dropped again when loading it fails. An existing one is first captured through the
//! caller's [`SafetyCopy`](crate::SafetyCopy), then loaded over: the dump drops and recreates
//! each table it holds; other tables are left alone. With chosen tables, only their parts of
//! the dump are loaded (see [`TableFilter`]): routines and events are left out.

use std::io::{BufReader, Read, Write};

use cairn_repo::{Id, Node};
use serde_json::{Map, Value};

use super::client::{identifier, Server};
use super::dump::TableFilter;
use super::{capture, MysqlSource};
use crate::tool::write_error;
use crate::{streams, CaptureContext, RestoreReport, RestoreRequest, SourceError};

/// A database as the capture recorded it.
struct Recorded {
    name: String,
    stream: String,
    tables: Vec<String>,
    views: Vec<String>,
    /// `CHARACTER SET … COLLATE …` of the original database, for a new one.
    defaults: Option<String>,
}

/// One database to load, and where.
struct Plan<'a> {
    recorded: &'a Recorded,
    target: String,
    exists: bool,
}

pub(super) fn restore(source: &MysqlSource, req: &RestoreRequest<'_>) -> Result<RestoreReport, SourceError> {
    let recorded = recorded_databases(&req.entry.metadata)?;
    let chosen = choose(&recorded, &req.databases)?;
    if let (Some(to), true) = (&req.to, chosen.len() != 1) {
        let names: Vec<&str> = chosen.iter().map(|d| d.name.as_str()).collect();
        return Err(SourceError::with_hint(
            format!(
                "a new name ({to}) needs exactly one database, but {} would be restored: {}",
                names.len(),
                names.join(", ")
            ),
            "choose the one database to restore under the new name",
        ));
    }
    for database in &chosen {
        check_tables(database, &req.tables)?;
    }
    let root = req
        .entry
        .root
        .ok_or_else(|| SourceError::new(format!("source {}: the snapshot holds no capture of it", req.entry.name)))?;
    let server = Server::connect(source)?;
    let existing = server.databases()?;
    let plans: Vec<Plan<'_>> = chosen
        .into_iter()
        .map(|recorded| {
            let target = req.to.clone().unwrap_or_else(|| recorded.name.clone());
            let exists = existing.contains(&target);
            Plan { recorded, target, exists }
        })
        .collect();
    refuse_to_replace(&server, &plans, req.yes)?;

    let mut report = RestoreReport::default();
    for plan in &plans {
        let saved = if plan.exists { Some(safety_copy(&server, req, &plan.target)?) } else { None };
        if let Err(e) = load(&server, req, root, plan) {
            return Err(match saved {
                Some(saved) => e.context(format!("database {} was saved first ({saved})", plan.target)),
                None => e,
            });
        }
        if let Some(saved) = saved {
            report.safety_copies.push(format!("database {}: {saved}", plan.target));
        }
        report.restored.push(describe(plan, &req.tables));
    }
    Ok(report)
}

/// The databases listed in a capture's metadata.
fn recorded_databases(metadata: &Map<String, Value>) -> Result<Vec<Recorded>, SourceError> {
    // Tables are recorded as objects with a name, views as plain names.
    let names = |v: Option<&Value>| -> Vec<String> {
        let items = v.and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        items.iter().filter_map(|t| t.get("name").unwrap_or(t).as_str().map(str::to_string)).collect()
    };
    let Some(list) = metadata.get("databases").and_then(Value::as_array) else {
        return Err(SourceError::new("the capture's metadata lists no databases (is it a MySQL/MariaDB capture?)"));
    };
    list.iter()
        .map(|d| {
            let field = |key: &str| d.get(key).and_then(Value::as_str).map(str::to_string);
            match (field("name"), field("stream")) {
                (Some(name), Some(stream)) => Ok(Recorded {
                    name,
                    stream,
                    tables: names(d.get("tables")),
                    views: names(d.get("views")),
                    defaults: defaults(field("charset"), field("collation")),
                }),
                _ => Err(SourceError::new(format!("the capture's metadata has a damaged database entry: {d}"))),
            }
        })
        .collect()
}

/// `CHARACTER SET c COLLATE k`, if both are plain names (they end up in SQL unquoted).
fn defaults(charset: Option<String>, collation: Option<String>) -> Option<String> {
    let plain = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    match (charset, collation) {
        (Some(c), Some(k)) if plain(&c) && plain(&k) => Some(format!("CHARACTER SET {c} COLLATE {k}")),
        _ => None,
    }
}

/// The recorded databases named in `wanted` (all when empty).
fn choose<'a>(recorded: &'a [Recorded], wanted: &[String]) -> Result<Vec<&'a Recorded>, SourceError> {
    if wanted.is_empty() {
        return Ok(recorded.iter().collect());
    }
    let unknown: Vec<&str> =
        wanted.iter().filter(|w| !recorded.iter().any(|r| &r.name == *w)).map(String::as_str).collect();
    if !unknown.is_empty() {
        let held: Vec<&str> = recorded.iter().map(|r| r.name.as_str()).collect();
        return Err(SourceError::with_hint(
            format!("the capture holds no database {}", unknown.join(", ")),
            format!("it holds: {}", held.join(", ")),
        ));
    }
    Ok(recorded.iter().filter(|r| wanted.contains(&r.name)).collect())
}

fn check_tables(database: &Recorded, tables: &[String]) -> Result<(), SourceError> {
    let known = |t: &String| database.tables.contains(t) || database.views.contains(t);
    let unknown: Vec<&str> = tables.iter().filter(|t| !known(t)).map(String::as_str).collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let held: Vec<&str> = database.tables.iter().chain(&database.views).map(String::as_str).collect();
    Err(SourceError::with_hint(
        format!("database {} in the capture has no table {}", database.name, unknown.join(", ")),
        format!("its tables and views: {}", if held.is_empty() { "none".to_string() } else { held.join(", ") }),
    ))
}

/// Existing targets may only be replaced with `yes`; checked for all before any is touched.
fn refuse_to_replace(server: &Server<'_>, plans: &[Plan<'_>], yes: bool) -> Result<(), SourceError> {
    let occupied: Vec<&str> = plans.iter().filter(|p| p.exists).map(|p| p.target.as_str()).collect();
    if occupied.is_empty() || yes {
        return Ok(());
    }
    let (what, verb) = if occupied.len() == 1 { ("database", "exists") } else { ("databases", "exist") };
    Err(SourceError::with_hint(
        format!(
            "{what} {} already {verb} on MySQL/MariaDB server {}; nothing was changed",
            occupied.join(", "),
            server.name()
        ),
        "--yes replaces it, after saving a dump of the current database (tagged pre-restore); \
         or --to NEW_NAME restores next to it",
    ))
}

/// Capture `target` as it is now through the caller; returns where the copy went.
fn safety_copy(server: &Server<'_>, req: &RestoreRequest<'_>, target: &str) -> Result<String, SourceError> {
    let dump = server.dump_tool()?;
    let only = [target.to_string()];
    req.safety
        .save(&mut |ctx: &CaptureContext<'_, '_>| capture::capture(server, &dump, &only, ctx))
        .map_err(|e| e.context(format!("saving a copy of database {target} before replacing it")))
}

/// Load one dump (or the chosen tables of it) into its target.
fn load(server: &Server<'_>, req: &RestoreRequest<'_>, root: Id, plan: &Plan<'_>) -> Result<(), SourceError> {
    let node = streams::find(req.repo, root, &plan.recorded.stream)?;
    let target = &plan.target;
    if !plan.exists {
        let mut create = format!("CREATE DATABASE {}", identifier(target));
        if let Some(defaults) = &plan.recorded.defaults {
            create = format!("{create} {defaults}");
        }
        server.query(&create, &format!("creating database {target}"))?;
    }
    // The client is killed when the stream cannot be read; then the reason is ours, not its.
    let mut unreadable = None;
    let loaded = server
        .client()
        .args(["--binary-mode".to_string(), format!("--database={target}")])
        .write_stdin(|stdin| pipe(req, &node, stdin, &mut unreadable));
    let Err(failed) = loaded else {
        return Ok(());
    };
    let doing = format!("restoring database {} into {target}", plan.recorded.name);
    let mut error = unreadable.unwrap_or_else(|| server.explain(failed, &doing));
    if !plan.exists {
        let dropped =
            server.query(&format!("DROP DATABASE {}", identifier(target)), &format!("dropping database {target}"));
        if let Err(e) = dropped {
            error = error.context(format!("database {target} is left half restored ({e})"));
        }
    }
    Err(error)
}

/// Copy a stream (filtered to `tables` if any) into the client's stdin.
fn pipe(
    req: &RestoreRequest<'_>,
    node: &Node,
    stdin: &mut impl Write,
    unreadable: &mut Option<SourceError>,
) -> Result<(), SourceError> {
    let tables = &req.tables;
    streams::read(req.repo, node, |reader| {
        let reader = BufReader::with_capacity(1 << 16, reader);
        let mut input: Box<dyn Read + '_> = if tables.is_empty() {
            Box::new(reader)
        } else {
            Box::new(TableFilter::new(reader, tables.iter().cloned()))
        };
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let message = format!("reading the stream {} from the repository: {e}", node.name);
                    *unreadable = Some(SourceError::new(message.clone()));
                    return Err(SourceError::new(message));
                }
            };
            stdin.write_all(&buf[..n]).map_err(|e| write_error("the client", &e))?;
            req.progress.bytes(n as u64);
        }
    })
}

/// The report line of one loaded database.
fn describe(plan: &Plan<'_>, tables: &[String]) -> String {
    let recorded = plan.recorded;
    let (tables, views) = if tables.is_empty() {
        (recorded.tables.len(), recorded.views.len())
    } else {
        let views = tables.iter().filter(|t| recorded.views.contains(t)).count();
        (tables.len() - views, views)
    };
    let mut line = format!("database {}: {tables} table{}", plan.target, if tables == 1 { "" } else { "s" });
    if views > 0 {
        line.push_str(&format!(" and {views} view{}", if views == 1 { "" } else { "s" }));
    }
    line.push_str(&format!(" from {}", recorded.name));
    if plan.exists {
        line.push_str(" (replaced)");
    }
    line
}
