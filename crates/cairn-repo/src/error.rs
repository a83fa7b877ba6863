//! Errors of the repository engine.
//!
//! Rules: every variant names what failed (a key, a snapshot, a pack, a path inside a
//! snapshot) so the binary can print it as is; hints for people live in the binary, which
//! knows the commands. Storage errors pass through unchanged: they already name the key.

use cairn_storage::StorageError;

use crate::id::Id;

/// Anything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("no cairn repository at {location}")]
    NotARepository { location: String },
    #[error("a cairn repository already exists at {location}")]
    AlreadyExists { location: String },
    #[error("repository at {location} has format version {found}; this cairn reads version {supported}")]
    UnsupportedVersion { location: String, found: u32, supported: u32 },
    #[error("wrong password or key file for the repository at {location} (tried {slots} key slot(s))")]
    WrongKey { location: String, slots: usize },
    #[error("no key slot matches {0:?}")]
    NoSuchKey(String),
    #[error("key slot prefix {prefix:?} is ambiguous: it matches {count} slots")]
    AmbiguousKey { prefix: String, count: usize },
    #[error("refusing to remove the last key slot: the repository would become unreadable")]
    LastKey,
    #[error("{what}: {detail}")]
    Corrupt { what: String, detail: String },
    #[error("blob {0} is not in the index")]
    MissingBlob(Id),
    #[error("no snapshot matches {0:?}")]
    SnapshotNotFound(String),
    #[error("snapshot prefix {prefix:?} is ambiguous: it matches {count} snapshots")]
    AmbiguousSnapshot { prefix: String, count: usize },
    #[error("reading {what}: {source}")]
    Read {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl RepoError {
    pub(crate) fn corrupt(what: impl Into<String>, detail: impl ToString) -> RepoError {
        RepoError::Corrupt { what: what.into(), detail: detail.to_string() }
    }
}

pub type Result<T, E = RepoError> = std::result::Result<T, E>;
