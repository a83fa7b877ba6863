//! Verification by restore: what every adapter's `verify` returns, and the scratch targets
//! it restores into.
//!
//! A verification restores a captured source into a throw-away target (a temp folder, a
//! temp SQLite file, a temp database on the same server), proves it against what was
//! recorded at backup time, and drops the target. Scratch targets are registered in
//! [`scratch`] while they exist, so that an interrupted run (SIGINT/SIGTERM, handled by the
//! binary) can still drop them: the one process-wide registry of this crate, kept because a
//! signal handler cannot reach the stack frames that own the targets.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

use crate::{Capture, CaptureContext, SafetyCopy, SourceError};

/// The outcome of verifying one source.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verdict {
    /// Where it was restored (a path or a scratch database name), already dropped.
    pub scratch: String,
    /// Seconds the restore into the scratch target took.
    pub restore_secs: f64,
    /// How many checks were made (files, tables, integrity checks).
    pub checks: u64,
    /// Everything that differs from what was recorded; empty when the source is proven.
    pub problems: Vec<String>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// Compare one recorded figure with what the restored copy has.
    pub fn compare<T: PartialEq + std::fmt::Display>(&mut self, what: &str, recorded: T, restored: T) {
        self.checks += 1;
        if recorded != restored {
            self.problems.push(format!("{what}: recorded {recorded}, restored copy has {restored}"));
        }
    }

    /// Check one condition; `problem` describes the failure.
    pub fn check(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        self.checks += 1;
        if !ok {
            self.problems.push(problem());
        }
    }
}

/// Row counts recorded for tables (`[{name, rows}]` in a capture's metadata), by name.
/// Tables whose count was not recorded (null) are left out.
pub fn recorded_rows(tables: Option<&serde_json::Value>) -> BTreeMap<String, u64> {
    tables
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| Some((t.get("name")?.as_str()?.to_string(), t.get("rows")?.as_u64()?)))
        .collect()
}

/// The restore of `entry` (its `databases`, all when empty) into the scratch target `to`.
pub fn scratch_request<'a>(
    repo: &'a cairn_repo::Repository,
    entry: &'a cairn_repo::SourceEntry,
    to: String,
    databases: Vec<String>,
) -> crate::RestoreRequest<'a> {
    crate::RestoreRequest {
        repo,
        entry,
        to: Some(to),
        databases,
        tables: Vec::new(),
        yes: false,
        safety: &NoSafetyCopy,
        progress: &(),
    }
}

/// A restore into a scratch target replaces nothing, so it never needs a safety copy.
pub struct NoSafetyCopy;

impl SafetyCopy for NoSafetyCopy {
    fn save(
        &self,
        _capture: &mut dyn FnMut(&CaptureContext<'_, '_>) -> Result<Capture, SourceError>,
    ) -> Result<String, SourceError> {
        Err(SourceError::new("a verification never replaces existing data (its scratch target already exists)"))
    }
}

/// Scratch targets that exist right now, and how to drop them.
pub mod scratch {
    use super::*;

    type Cleanup = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

    static LIVE: Mutex<Vec<(u64, String, Cleanup)>> = Mutex::new(Vec::new());
    /// Held by [`cleanup_all`] from before it takes the targets until they are all dropped,
    /// so that a guard whose target it took can wait for the drop to finish.
    static CLEANING: Mutex<()> = Mutex::new(());
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

    /// A registered scratch target; dropping it runs the cleanup once and unregisters it.
    /// If [`cleanup_all`] (another thread) took the target, dropping the guard waits until
    /// that cleanup is done: the owner never gets ahead of the drop of its own target.
    pub struct Guard(u64);

    /// Register `cleanup` (which must be safe to run from another thread, and more than
    /// once; it says what went wrong when it fails) for the scratch target `what`.
    pub fn register(what: &str, cleanup: impl Fn() -> Result<(), String> + Send + Sync + 'static) -> Guard {
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).push((id, what.to_string(), Box::new(cleanup)));
        Guard(id)
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            let entry = {
                let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
                live.iter().position(|(id, _, _)| *id == self.0).map(|i| live.remove(i))
            };
            match entry {
                // A failure here is the owner's to live with: the target is a scratch one
                // and the run's own result already says what went wrong.
                Some((_, _, cleanup)) => drop(cleanup()),
                None => drop(CLEANING.lock().unwrap_or_else(|e| e.into_inner())),
            }
        }
    }

    /// Drop every live scratch target (for a signal handler); returns, for each target,
    /// its description and what went wrong if it could not be dropped.
    pub fn cleanup_all() -> Vec<(String, Result<(), String>)> {
        let _cleaning = CLEANING.lock().unwrap_or_else(|e| e.into_inner());
        let live = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|e| e.into_inner()));
        live.into_iter().map(|(_, what, cleanup)| (what, cleanup())).collect()
    }

    /// A name for a scratch database: recognisable, unique on this host, and short.
    pub fn database_name(original: &str) -> String {
        let stem = stem(original);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        format!(
            "cairn_verify_{}_{:x}_{stem}",
            std::process::id(),
            nanos ^ NEXT.load(std::sync::atomic::Ordering::Relaxed) as u32
        )
    }

    /// A SQL `LIKE` pattern matching every [`database_name`] of `original` (and only those of
    /// originals that share its first 24 name characters).
    pub fn database_pattern(original: &str) -> String {
        format!("cairn_verify_%_{}", stem(original))
    }

    /// The part of a scratch name that tells which database it copies.
    fn stem(original: &str) -> String {
        original.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(24).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn guards_clean_up_once() {
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        let guard = scratch::register("a", move || {
            c.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        drop(guard);
        assert_eq!(count.load(Ordering::SeqCst), 1);
        let c = count.clone();
        let guard = scratch::register("b", move || {
            c.fetch_add(1, Ordering::SeqCst);
            Err("the server went away".to_string())
        });
        let cleaned = scratch::cleanup_all();
        assert!(cleaned.contains(&("b".to_string(), Err("the server went away".to_string()))), "{cleaned:?}");
        drop(guard);
        assert_eq!(count.load(Ordering::SeqCst), 2, "a cleaned-up target is not cleaned again");
    }

    #[test]
    fn a_guard_whose_target_another_thread_is_dropping_waits_for_the_drop() {
        let (started_tx, started) = std::sync::mpsc::channel();
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        let started_tx = Mutex::new(started_tx);
        let guard = scratch::register("slow", move || {
            let _ = started_tx.lock().unwrap().send(());
            std::thread::sleep(std::time::Duration::from_millis(200));
            d.store(1, Ordering::SeqCst);
            Ok(())
        });
        let cleaner = std::thread::spawn(scratch::cleanup_all);
        started.recv_timeout(std::time::Duration::from_secs(10)).expect("the cleanup started");
        drop(guard);
        assert_eq!(done.load(Ordering::SeqCst), 1, "the owner went on before its target was dropped");
        cleaner.join().unwrap();
    }

    #[test]
    fn verdicts_collect_differences() {
        let mut v = Verdict::default();
        v.compare("table t rows", 5, 5);
        assert!(v.ok());
        v.compare("table u rows", 5, 4);
        assert!(!v.ok());
        assert_eq!(v.problems, ["table u rows: recorded 5, restored copy has 4"]);
        assert_eq!(v.checks, 2);
    }

    #[test]
    fn scratch_names_are_safe_identifiers() {
        let name = scratch::database_name("my-db; DROP");
        assert!(name.starts_with("cairn_verify_") && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        assert!(name.len() < 64);
    }
}
