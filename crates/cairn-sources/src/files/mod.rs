//! The folder source: directory trees of ordinary files.
//!
//! Backup walks each path depth-first in name order, skips what the exclude patterns
//! (gitignore syntax) match, reuses the content of files whose metadata matches the parent
//! snapshot, and saves one tree per directory. Restore rebuilds the tree under a target
//! directory, fetching data pack by pack. Both keep mode, mtime, ownership (when run as
//! root), symlinks and hard links; sockets, FIFOs and devices are skipped with a warning.

mod backup;
mod restore;
mod select;

pub use backup::{backup, BackupOptions, BackupOutcome};
pub use restore::{restore, RestoreOptions, RestoreOutcome};
pub use select::Patterns;

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
    #[error(transparent)]
    Repo(#[from] cairn_repo::RepoError),
}

/// Warnings kept in a snapshot manifest; more are counted but not kept.
pub const MAX_KEPT_WARNINGS: usize = 100;
