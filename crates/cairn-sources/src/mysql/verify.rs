//! Verifying a MySQL/MariaDB capture: each database is restored into a scratch database on
//! the same server, every table's row count is compared with the count taken from the dump
//! at backup time, and the scratch database is dropped (also when the run is interrupted).

use std::io::Write;
use std::time::Instant;

use cairn_repo::{Repository, SourceEntry};

use super::client::{identifier, Server};
use super::MysqlSource;
use crate::tool::write_error;
use crate::verify::{recorded_rows, scratch, scratch_request, Verdict};
use crate::SourceError;

impl MysqlSource {
    /// Restore every captured database into a scratch database and prove its row counts.
    pub fn verify(&self, repo: &Repository, entry: &SourceEntry) -> Result<Verdict, SourceError> {
        self.scrub(self.verify_inner(repo, entry))
    }

    fn verify_inner(&self, repo: &Repository, entry: &SourceEntry) -> Result<Verdict, SourceError> {
        let server = Server::connect(self)?;
        let databases =
            entry.metadata.get("databases").and_then(serde_json::Value::as_array).cloned().unwrap_or_default();
        let mut verdict = Verdict::default();
        let mut scratches = Vec::new();
        for db in &databases {
            let Some(original) = db.get("name").and_then(serde_json::Value::as_str) else { continue };
            let name = scratch::database_name(original);
            let drop_sql = format!("DROP DATABASE IF EXISTS {}", identifier(&name));
            let drop_tool = server.client();
            let _guard = scratch::register(&format!("MySQL database {name}"), move || {
                drop_tool
                    .write_stdin(|w| w.write_all(drop_sql.as_bytes()).map_err(|e| write_error("mysql", &e)))
                    .map(drop)
                    .map_err(|e| e.to_string())
            });
            let started = Instant::now();
            self.restore(&scratch_request(repo, entry, name.clone(), vec![original.to_string()]))?;
            verdict.restore_secs += started.elapsed().as_secs_f64();
            for (table, rows) in recorded_rows(db.get("tables")) {
                let sql = format!("SELECT COUNT(*) FROM {}.{}", identifier(&name), identifier(&table));
                let counted = server
                    .query(&sql, &format!("counting table {table} of the restored database {original}"))
                    .ok()
                    .and_then(|r| r.into_iter().next()?.into_iter().next()??.parse::<u64>().ok());
                match counted {
                    Some(n) => verdict.compare(&format!("database {original} table {table} rows"), rows, n),
                    None => verdict.check(false, || {
                        format!("database {original} table {table}: cannot be counted in the restored copy")
                    }),
                }
            }
            scratches.push(name);
        }
        verdict.scratch = scratches.join(", ");
        Ok(verdict)
    }
}
