//! The cairn repository engine.
//!
//! Owns the repository format — chunking, ids, keys and encryption, packs, index, trees,
//! snapshots — and the operations on it: write ([`writer`]), read and plan restores
//! ([`restore`]), compare ([`diff`]), verify ([`check`]) and reclaim space ([`prune`]). It
//! does every byte of I/O through [`cairn_storage::Storage`], never reads the environment or
//! config files, never prints, and knows nothing of command lines, databases or async
//! runtimes. The format is specified in `docs/FORMAT.md`.

pub mod check;
pub mod chunker;
pub mod compress;
pub mod crypto;
pub mod diff;
pub mod error;
pub mod id;
pub mod index;
pub mod keyslot;
pub mod pack;
pub mod prune;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod snapshot;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tree;
pub mod verification;
pub mod writer;

pub use chunker::ChunkParams;
pub use error::{RepoError, Result};
pub use id::Id;
pub use keyslot::{KdfParams, Secret};
pub use prune::{PruneError, PruneOptions, PruneReport};
pub use repo::{Repository, SlotInfo};
pub use snapshot::{Snapshot, SourceEntry, SourceStats, SourceStatus};
pub use tree::{Node, NodeKind, Tree};
pub use writer::{SaveError, SavedStream, Writer, WriterOptions};
