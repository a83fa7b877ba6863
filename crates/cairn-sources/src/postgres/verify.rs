//! Verifying a PostgreSQL capture: each database is restored into a scratch database on the
//! same server, every table's exact row count is compared with the count recorded at backup
//! time, and the scratch database is dropped (also when the run is interrupted).

use std::io::Write;
use std::time::Instant;

use cairn_repo::{Repository, SourceEntry};

use super::capture::{DatabaseMeta, COUNT_TABLES};
use super::client::Client;
use super::restore::quote_ident;
use super::PostgresSource;
use crate::tool::write_error;
use crate::verify::{scratch, scratch_request, Verdict};
use crate::SourceError;

impl PostgresSource {
    /// Restore every captured database into a scratch database and prove its row counts.
    pub fn verify(&self, repo: &Repository, entry: &SourceEntry) -> Result<Verdict, SourceError> {
        let databases: Vec<DatabaseMeta> = entry
            .metadata
            .get("databases")
            .cloned()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| {
                SourceError::new(format!("source {}: unreadable database list in the snapshot: {e}", entry.name))
            })?
            .unwrap_or_default();
        let client = Client::new(self, &["psql", "pg_restore"])?;
        let mut verdict = Verdict::default();
        let mut scratches = Vec::new();
        for db in &databases {
            let name = scratch::database_name(&db.name);
            let drop_it = client
                .psql("postgres")
                .args(["-c", &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(&name))]);
            let _guard = scratch::register(&format!("PostgreSQL database {name}"), move || {
                drop_it.output().map(drop).map_err(|e| e.to_string())
            });
            let started = Instant::now();
            self.restore(&scratch_request(repo, entry, name.clone(), vec![db.name.clone()]))?;
            verdict.restore_secs += started.elapsed().as_secs_f64();
            compare_counts(&client, db, &name, &mut verdict)?;
            scratches.push(name);
        }
        verdict.scratch = scratches.join(", ");
        Ok(verdict)
    }
}

/// Count every table of the scratch database as the capture counted the original.
fn compare_counts(client: &Client, db: &DatabaseMeta, scratch: &str, verdict: &mut Verdict) -> Result<(), SourceError> {
    #[derive(serde::Deserialize)]
    struct Counted {
        schema: String,
        table: String,
        rows: u64,
    }
    let out = client
        .psql(scratch)
        .write_stdin(|w| w.write_all(COUNT_TABLES.as_bytes()).map_err(|e| write_error("psql", &e)))
        .map_err(|e| e.context(format!("counting the rows of the restored database {}", db.name)))?;
    let counted: Vec<Counted> = out.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    for table in &db.tables {
        let restored = counted.iter().find(|c| c.schema == table.schema && c.table == table.table).map(|c| c.rows);
        match restored {
            Some(rows) => verdict.compare(&format!("database {} table {} rows", db.name, table.name), table.rows, rows),
            None => verdict
                .check(false, || format!("database {} table {}: missing from the restored copy", db.name, table.name)),
        }
    }
    Ok(())
}
