//! Fault injection around any storage, for crash and error-path tests.
//!
//! A [`FaultStorage`] counts writes and reads and fails the N-th one. In
//! [`Fault::CrashAtWrite`] mode every operation after the failing write fails too, which is
//! what a process killed at that moment looks like from the repository's side.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::{Entry, Result, Storage, StorageError};

/// Which operation fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Nothing fails.
    None,
    /// The N-th `put` (1-based) fails; later ones succeed.
    FailWrite(u64),
    /// The N-th `get`/`get_range` (1-based) fails; later ones succeed.
    FailRead(u64),
    /// The N-th `put` fails and so does every operation after it.
    CrashAtWrite(u64),
}

/// Wraps a storage and injects one [`Fault`].
pub struct FaultStorage<S> {
    inner: S,
    fault: Fault,
    writes: AtomicU64,
    reads: AtomicU64,
    crashed: AtomicBool,
}

impl<S: Storage> FaultStorage<S> {
    pub fn new(inner: S, fault: Fault) -> Self {
        FaultStorage {
            inner,
            fault,
            writes: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            crashed: AtomicBool::new(false),
        }
    }

    /// Number of `put` calls seen so far (including failed ones).
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// The wrapped storage, to inspect what survived.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn check_crashed(&self, key: &str, op: &'static str) -> Result<()> {
        if self.crashed.load(Ordering::SeqCst) {
            return Err(StorageError::Injected { key: key.to_string(), op });
        }
        Ok(())
    }

    fn on_read(&self, key: &str) -> Result<()> {
        self.check_crashed(key, "read")?;
        let n = self.reads.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fault == Fault::FailRead(n) {
            return Err(StorageError::Injected { key: key.to_string(), op: "read" });
        }
        Ok(())
    }
}

impl<S: Storage> Storage for FaultStorage<S> {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        self.check_crashed(key, "write")?;
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        match self.fault {
            Fault::FailWrite(at) if at == n => {
                return Err(StorageError::Injected { key: key.to_string(), op: "write" })
            }
            Fault::CrashAtWrite(at) if at == n => {
                self.crashed.store(true, Ordering::SeqCst);
                return Err(StorageError::Injected { key: key.to_string(), op: "write" });
            }
            _ => {}
        }
        self.inner.put(key, data)
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.on_read(key)?;
        self.inner.get(key)
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.on_read(key)?;
        self.inner.get_range(key, offset, len)
    }

    fn get_range_into(&self, key: &str, offset: u64, len: u64, buf: &mut Vec<u8>) -> Result<()> {
        self.on_read(key)?;
        self.inner.get_range_into(key, offset, len, buf)
    }

    fn list(&self, prefix: &str) -> Result<Vec<Entry>> {
        self.check_crashed(prefix, "list")?;
        self.inner.list(prefix)
    }

    fn delete(&self, key: &str) -> Result<()> {
        self.check_crashed(key, "delete")?;
        self.inner.delete(key)
    }

    fn exists(&self, key: &str) -> Result<bool> {
        self.check_crashed(key, "exists")?;
        self.inner.exists(key)
    }
}
