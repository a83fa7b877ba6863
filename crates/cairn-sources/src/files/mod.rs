//! The folder source: directory trees of ordinary files.
//!
//! Backup walks each path depth-first in name order, skips what the exclude patterns
//! (gitignore syntax) match, reuses the content of files whose metadata matches the parent
//! snapshot, and saves one tree per directory; files are read without changing their access
//! time (`O_NOATIME`, where the owner or root reads them). Restore rebuilds the tree under a
//! target directory, fetching data pack by pack. Both keep mode, mtime, ownership (when run as
//! root), symlinks and hard links; sockets, FIFOs and devices are skipped with a warning.

mod backup;
mod restore;
mod select;
mod verify;

pub use backup::{backup, BackupOptions, BackupOutcome};
pub use restore::{restore, RestoreOptions, RestoreOutcome};
pub use select::Patterns;
pub use verify::verify;

use std::path::PathBuf;

/// Progress callbacks; all have empty defaults. Called from several threads.
pub trait Progress: Sync {
    /// A file's bytes were read (backup) or written (restore).
    fn bytes(&self, _n: u64) {}
    /// One file or directory entry was handled.
    fn item(&self) {}
    /// Something was skipped or went wrong with one item; the run goes on.
    fn warning(&self, _message: &str) {}
}

impl Progress for () {}

/// Fatal errors of the folder source. Problems with single files are warnings instead.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("{path}: {source}")]
    Path {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("bad pattern {pattern:?}: {message}")]
    Pattern { pattern: String, message: String },
    #[error("two paths would both be stored as {name:?}: {first} and {second}")]
    DuplicateName { name: String, first: PathBuf, second: PathBuf },
    #[error("snapshot holds an unsafe name {0:?}; refusing to restore it")]
    UnsafeName(String),
    /// The restore target takes no more (full, over quota, read-only); the restore stopped.
    #[error(
        "restore stopped: writing {path}: {source}\nhint: make room there (or restore somewhere else) and restore again; files restored whole were kept, incomplete ones removed"
    )]
    TargetFull {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Repo(#[from] cairn_repo::RepoError),
}

/// Warnings kept in a snapshot manifest; more are counted but not kept.
pub const MAX_KEPT_WARNINGS: usize = 100;

/// Drop `.` and trailing slashes and fold `..` into its parent, without touching the disk, so
/// `src/`, `./src` and `x/../src` name the same path.
pub fn normalize(path: &std::path::Path) -> PathBuf {
    use std::path::Component;
    path.components().fold(PathBuf::new(), |mut acc, c| {
        match c {
            Component::ParentDir => {
                acc.pop();
            }
            Component::CurDir => {}
            other => acc.push(other),
        }
        acc
    })
}

/// The effective user id, read once (`/proc/self` belongs to it: no unsafe `geteuid()`).
fn effective_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    static EUID: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    *EUID.get_or_init(|| std::fs::metadata("/proc/self").map(|m| m.uid()).ok())
}

/// `f` of every item, in order, computed on `threads` threads at once (inline when one is
/// enough); each thread takes the next item not yet taken, so slow items do not hold others
/// back.
fn parallel_map<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = threads.clamp(1, items.len().max(1));
    if threads == 1 {
        return items.iter().map(f).collect();
    }
    let (next, f) = (std::sync::atomic::AtomicUsize::new(0), &f);
    let mut slots: Vec<Option<R>> = items.iter().map(|_| None).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(item) = items.get(i) else { return done };
                        done.push((i, f(item)));
                    }
                })
            })
            .collect();
        for worker in workers {
            for (i, r) in worker.join().expect("a worker thread panicked") {
                slots[i] = Some(r);
            }
        }
    });
    slots.into_iter().map(|r| r.expect("every item is mapped")).collect()
}
