//! Verifying a SQLite capture: restore it into a scratch file, run `PRAGMA integrity_check`,
//! and compare the page count and every table's row count with those recorded at backup.

use std::path::Path;
use std::time::Instant;

use cairn_repo::{Repository, SourceEntry};

use super::{integrity_check, open_existing, quote, remove_db_files, restore};
use crate::verify::{recorded_rows, scratch, scratch_request, Verdict};
use crate::SourceError;

/// Restore `entry` into `scratch_dir/verify.db`, prove it, and remove it again.
pub fn verify(repo: &Repository, entry: &SourceEntry, scratch_dir: &Path) -> Result<Verdict, SourceError> {
    let target = scratch_dir.join("verify.db");
    let _guard = {
        let target = target.clone();
        scratch::register(&target.display().to_string(), move || {
            remove_db_files(&target);
            Ok(())
        })
    };
    let started = Instant::now();
    restore(&scratch_request(repo, entry, target.display().to_string(), Vec::new()))?;
    let mut verdict = Verdict { scratch: target.display().to_string(), ..Verdict::default() };
    verdict.restore_secs = started.elapsed().as_secs_f64();

    let integrity = integrity_check(&target);
    verdict.check(integrity.is_ok(), || {
        format!("integrity check: {}", integrity.err().map(|e| e.to_string()).unwrap_or_default())
    });
    let conn = open_existing(&target)?;
    let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).map(|n| n as u64);
    if let Some(pages) = entry.metadata.get("pages").and_then(serde_json::Value::as_u64) {
        match count("PRAGMA page_count") {
            Ok(n) => verdict.compare("pages", pages, n),
            Err(e) => verdict.check(false, || format!("cannot read the page count: {e}")),
        }
    }
    for (table, rows) in recorded_rows(entry.metadata.get("tables")) {
        match count(&format!("SELECT count(*) FROM {}", quote(&table))) {
            Ok(n) => verdict.compare(&format!("table {table} rows"), rows, n),
            Err(e) => verdict.check(false, || format!("table {table}: cannot be read in the restored copy: {e}")),
        }
    }
    Ok(verdict)
}
