//! The storage seam of cairn.
//!
//! A [`Storage`] is a flat key → bytes store with atomic whole-object writes. Keys are
//! `/`-separated relative paths chosen by the repository engine (`packs/ab/ab12…`,
//! `snapshots/…`); a backend knows nothing of what the bytes mean. The engine does all of its
//! I/O through this trait, which is what lets tests run it against [`MemStorage`] and crash it
//! at a chosen write with [`FaultStorage`].
//!
//! Backends here: [`LocalStorage`] (a directory), [`MemStorage`] (tests),
//! [`FaultStorage`] (fault injection around any other backend).

mod fault;
mod local;
mod mem;

pub use fault::{Fault, FaultStorage};
pub use local::LocalStorage;
pub use mem::MemStorage;

/// One object as listed by [`Storage::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The full key, e.g. `packs/ab/ab12…`.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
}

/// Errors of any storage backend. Every variant names the key or location involved.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{key}: not found in {location}")]
    NotFound { location: String, key: String },
    #[error("{key}: {op} failed in {location}: {source}")]
    Io {
        location: String,
        key: String,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{key}: injected fault on {op} (test storage)")]
    Injected { key: String, op: &'static str },
}

impl StorageError {
    /// True when the object does not exist (as opposed to failing to read it).
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// A place to keep repository objects.
///
/// Contract every backend keeps:
/// - `put` is atomic: after a crash a key holds either nothing or the complete bytes, never
///   a prefix. Once `put` returns, the object is durable.
/// - Objects are never modified in place; the engine only writes a key that does not exist
///   or rewrites it with identical bytes.
/// - `list` never returns temporary or partial objects.
pub trait Storage: Send + Sync {
    /// Human-readable location for messages (a path or URL, never a secret).
    fn location(&self) -> String;
    /// Store `data` under `key`, atomically and durably.
    fn put(&self, key: &str, data: &[u8]) -> Result<()>;
    /// Read a whole object.
    fn get(&self, key: &str) -> Result<Vec<u8>>;
    /// Read `len` bytes at `offset` of an object.
    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>>;
    /// Read `len` bytes at `offset` of an object into `buf`, replacing what it held. A caller
    /// reading many ranges passes the same buffer: memory the process has not touched yet
    /// costs a page fault (and a zeroed page) per 4 KiB, more than reading into it.
    fn get_range_into(&self, key: &str, offset: u64, len: u64, buf: &mut Vec<u8>) -> Result<()> {
        *buf = self.get_range(key, offset, len)?;
        Ok(())
    }
    /// All objects whose key starts with `prefix` (a directory such as `snapshots/`).
    fn list(&self, prefix: &str) -> Result<Vec<Entry>>;
    /// Remove an object; removing a missing object is not an error.
    fn delete(&self, key: &str) -> Result<()>;
    /// Whether an object exists.
    fn exists(&self, key: &str) -> Result<bool>;
}

impl<S: Storage + ?Sized> Storage for std::sync::Arc<S> {
    fn location(&self) -> String {
        (**self).location()
    }
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        (**self).put(key, data)
    }
    fn get(&self, key: &str) -> Result<Vec<u8>> {
        (**self).get(key)
    }
    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        (**self).get_range(key, offset, len)
    }
    fn get_range_into(&self, key: &str, offset: u64, len: u64, buf: &mut Vec<u8>) -> Result<()> {
        (**self).get_range_into(key, offset, len, buf)
    }
    fn list(&self, prefix: &str) -> Result<Vec<Entry>> {
        (**self).list(prefix)
    }
    fn delete(&self, key: &str) -> Result<()> {
        (**self).delete(key)
    }
    fn exists(&self, key: &str) -> Result<bool> {
        (**self).exists(key)
    }
}
