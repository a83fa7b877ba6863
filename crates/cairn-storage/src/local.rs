//! A repository in a local directory.
//!
//! Writes go to a hidden temporary file beside the target, are fsynced, renamed into place and
//! the directory is fsynced, so a crash leaves either the whole object or a stray `.tmp-*` file
//! that `list` ignores.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Entry, Result, Storage, StorageError};

/// Prefix of temporary files; never a valid object name.
const TMP_PREFIX: &str = ".tmp-";

/// A directory on a local file system.
pub struct LocalStorage {
    root: PathBuf,
    counter: AtomicU64,
}

impl LocalStorage {
    /// Use `root` as the repository directory. It need not exist yet.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalStorage { root: root.into(), counter: AtomicU64::new(0) }
    }

    /// The directory this storage lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn io(&self, key: &str, op: &'static str, source: std::io::Error) -> StorageError {
        if source.kind() == std::io::ErrorKind::NotFound {
            return StorageError::NotFound { location: self.location(), key: key.to_string() };
        }
        StorageError::Io { location: self.location(), key: key.to_string(), op, source }
    }

    fn write_atomically(&self, key: &str, data: &[u8]) -> std::io::Result<()> {
        let target = self.path(key);
        let dir = target.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir)?;
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!("{TMP_PREFIX}{}-{n}", std::process::id()));
        let result = (|| {
            let mut file = File::create(&tmp)?;
            file.write_all(data)?;
            file.sync_all()?;
            fs::rename(&tmp, &target)?;
            // The rename is only durable once the directory entry is.
            File::open(dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

impl Storage for LocalStorage {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        self.write_atomically(key, data).map_err(|e| self.io(key, "write", e))
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        fs::read(self.path(key)).map_err(|e| self.io(key, "read", e))
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.get_range_into(key, offset, len, &mut buf)?;
        Ok(buf)
    }

    fn get_range_into(&self, key: &str, offset: u64, len: u64, buf: &mut Vec<u8>) -> Result<()> {
        let mut read = || -> std::io::Result<()> {
            let mut file = File::open(self.path(key))?;
            file.seek(SeekFrom::Start(offset))?;
            buf.clear();
            buf.reserve_exact(len as usize);
            // Into the buffer's spare capacity: no zeroing first.
            file.take(len).read_to_end(buf)?;
            if buf.len() as u64 != len {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "range past end of object"));
            }
            Ok(())
        };
        read().map_err(|e| self.io(key, "read", e))
    }

    fn list(&self, prefix: &str) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        let dir = self.path(prefix);
        if !dir.exists() {
            return Ok(out);
        }
        walk(&dir, prefix.trim_end_matches('/'), &mut out).map_err(|e| self.io(prefix, "list", e))?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<()> {
        match fs::remove_file(self.path(key)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(self.io(key, "delete", e)),
            _ => Ok(()),
        }
    }

    fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.path(key).exists())
    }
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<Entry>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(TMP_PREFIX) {
            continue;
        }
        let key = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        // Deleted since read_dir saw it (a prune or a temp file renamed away): not there.
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if meta.is_dir() {
            walk(&entry.path(), &key, out)?;
        } else {
            out.push(Entry { key, size: meta.len() });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(dir.path());
        s.put("packs/ab/abc", b"hello").unwrap();
        s.put("snapshots/x", b"y").unwrap();
        assert_eq!(s.get("packs/ab/abc").unwrap(), b"hello");
        assert_eq!(s.get_range("packs/ab/abc", 1, 3).unwrap(), b"ell");
        let listed = s.list("packs/").unwrap();
        assert_eq!(listed, vec![Entry { key: "packs/ab/abc".into(), size: 5 }]);
        std::fs::write(dir.path().join("packs/ab/.tmp-1-1"), b"partial").unwrap();
        assert_eq!(s.list("packs/").unwrap().len(), 1, "temporary files are never listed");
        s.delete("packs/ab/abc").unwrap();
        s.delete("packs/ab/abc").unwrap();
        assert!(s.get("packs/ab/abc").unwrap_err().is_not_found());
    }

    #[test]
    fn a_range_read_into_a_buffer_replaces_its_contents_and_keeps_its_memory() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(dir.path());
        s.put("packs/ab/abc", b"hello world").unwrap();
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(b"left over from the last pack");
        let memory = buf.as_ptr();
        s.get_range_into("packs/ab/abc", 6, 5, &mut buf).unwrap();
        assert_eq!(buf, b"world");
        assert_eq!(buf.as_ptr(), memory, "the buffer's allocation is reused");
        s.get_range_into("packs/ab/abc", 0, 0, &mut buf).unwrap();
        assert!(buf.is_empty());

        let err = s.get_range_into("packs/ab/abc", 8, 5, &mut buf).unwrap_err();
        assert!(err.to_string().contains("packs/ab/abc"), "{err}");
        assert!(!err.is_not_found());
        assert!(s.get_range_into("packs/ab/none", 0, 1, &mut buf).unwrap_err().is_not_found());
    }
}
