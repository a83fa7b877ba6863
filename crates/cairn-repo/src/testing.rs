//! Cheap repositories for tests and benchmarks (feature `testing`: always on in this crate's
//! unit tests, and turned on for its integration tests and benchmarks by its dev-dependency on
//! itself): a key slot whose KDF costs next to nothing, and a repository in memory.
//!
//! Never for data anyone means to keep: these KDF parameters offer no resistance to guessing
//! the password. Nothing outside tests and benchmarks enables the feature.

use std::sync::Arc;

use cairn_storage::{MemStorage, Storage};

use crate::{KdfParams, Repository, Secret, SlotInfo};

/// Argon2id at its smallest: 64 KiB, one pass, one lane.
pub const CHEAP_KDF: KdfParams = KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 };

/// The password of every repository made here.
pub fn secret() -> Secret {
    Secret::Password("test".into())
}

/// A key slot whose KDF costs next to nothing.
pub fn cheap_slot() -> SlotInfo {
    SlotInfo { kdf: CHEAP_KDF, ..SlotInfo::default() }
}

/// A new repository on `storage`, unlocked by [`secret`].
pub fn repo_on(storage: Arc<dyn Storage>) -> Repository {
    Repository::init(storage, &secret(), &cheap_slot()).expect("a new repository on empty storage")
}

/// A new repository in memory, unlocked by [`secret`].
pub fn memory_repo() -> Repository {
    repo_on(Arc::new(MemStorage::new()))
}
