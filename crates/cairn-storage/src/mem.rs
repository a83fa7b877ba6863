//! An in-memory storage, for tests of the engine.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::{Entry, Result, Storage, StorageError};

/// Objects kept in a map; cheap to create, gone when dropped.
#[derive(Default)]
pub struct MemStorage {
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl MemStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replace the bytes of an object in place — only tests that simulate corruption need this.
    pub fn corrupt(&self, key: &str, f: impl FnOnce(&mut Vec<u8>)) {
        let mut objects = self.objects.lock().expect("mem storage lock poisoned");
        if let Some(bytes) = objects.get_mut(key) {
            f(bytes);
        }
    }

    fn not_found(&self, key: &str) -> StorageError {
        StorageError::NotFound { location: self.location(), key: key.to_string() }
    }
}

impl Storage for MemStorage {
    fn location(&self) -> String {
        "memory".to_string()
    }

    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        self.objects.lock().expect("mem storage lock poisoned").insert(key.to_string(), data.to_vec());
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        let objects = self.objects.lock().expect("mem storage lock poisoned");
        objects.get(key).cloned().ok_or_else(|| self.not_found(key))
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let objects = self.objects.lock().expect("mem storage lock poisoned");
        let bytes = objects.get(key).ok_or_else(|| self.not_found(key))?;
        let (start, end) = (offset as usize, (offset + len) as usize);
        bytes.get(start..end).map(<[u8]>::to_vec).ok_or_else(|| StorageError::Io {
            location: self.location(),
            key: key.to_string(),
            op: "read",
            source: std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "range past end of object"),
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<Entry>> {
        let objects = self.objects.lock().expect("mem storage lock poisoned");
        Ok(objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| Entry { key: k.clone(), size: v.len() as u64 })
            .collect())
    }

    fn delete(&self, key: &str) -> Result<()> {
        self.objects.lock().expect("mem storage lock poisoned").remove(key);
        Ok(())
    }

    fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.objects.lock().expect("mem storage lock poisoned").contains_key(key))
    }
}
