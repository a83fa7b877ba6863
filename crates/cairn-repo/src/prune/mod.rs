//! Prune: delete what no snapshot uses, safely while other processes back up.
//!
//! No lock is taken. Instead a pack leaves the repository in two steps, a grace period
//! apart (docs/FORMAT.md, "Prune"):
//!
//! 1. **mark** — packs no snapshot uses, and packs mostly unused (their used blobs copied
//!    into new packs first), are taken out of the index and listed in a mark object
//!    (`marks/<hex>`); packs no index file names are marked too. From then on a backup that
//!    loads the index does not reuse their blobs ([`crate::index::Index::contains`]), but
//!    anyone can still read them ([`crate::index::Index::get`]).
//! 2. **sweep** — once every mark listing a pack is older than the grace period, the pack
//!    is deleted, unless a snapshot needs one of its blobs that no indexed pack holds: then
//!    it is put back into the index ("revived"). A backup that loaded the index before the
//!    mark has finished by then (the grace period must exceed the longest backup), so its
//!    snapshot is visible and counted. A marked pack some index file names again is left
//!    alone, and a pack also in a younger mark waits for that mark.
//!
//! Every run first surveys the repository — snapshots, then marks, then index files, then
//! packs — and walks every tree; if any of it cannot be read it stops before writing. It
//! then sweeps due marks, then marks. Each step writes new objects before deleting old ones
//! (new packs → index files → mark → old index files), so a run killed anywhere leaves a
//! repository that reads the same and a later run finishes the job.
//!
//! What this module does not own: which snapshots to keep (`retention`, `cairn forget`),
//! and running prune at all — the caller decides, and must not run two prunes on one
//! repository at the same time.

mod collect;
pub mod mark;
mod survey;
mod sweep;

use std::time::Duration;

use cairn_storage::StorageError;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::RepoError;
use crate::index::{self, IndexedPack};
use crate::repo::Repository;

pub use mark::{Mark, MarkReason, MarkedPack};

/// How a prune run behaves.
#[derive(Debug, Clone, Copy)]
pub struct PruneOptions {
    /// How long a marked pack waits before it may be deleted. Must exceed the longest
    /// backup into this repository (from loading its index to saving its snapshot).
    pub grace: Duration,
    /// A pack whose unused share of blob bytes exceeds this fraction is repacked: its used
    /// blobs are copied into new packs and it is marked. `1.0` never repacks.
    pub repack_threshold: f64,
    /// Compute and report the plan; write and delete nothing.
    pub dry_run: bool,
    /// Size at which a new pack written by the repack is closed.
    pub pack_size: usize,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            grace: Duration::from_secs(24 * 3600),
            repack_threshold: 0.5,
            dry_run: false,
            pack_size: crate::WriterOptions::default().pack_size,
        }
    }
}

/// Progress callbacks of a prune run.
pub trait PruneProgress {
    /// `done` of `total` snapshots' trees walked.
    fn snapshots_walked(&self, _done: usize, _total: usize) {}
    /// `done` of `total` packs repacked.
    fn packs_repacked(&self, _done: usize, _total: usize) {}
}

impl PruneProgress for () {}

/// Why a prune run failed.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// Something prune must read to know what is used could not be read. Nothing was
    /// written or deleted.
    #[error("prune changed nothing: {what} cannot be read: {source}")]
    Incomplete {
        what: String,
        #[source]
        source: RepoError,
    },
    /// Reading or writing failed part-way; the repository is valid, a later run goes on.
    #[error(transparent)]
    Repo(#[from] RepoError),
}

impl From<StorageError> for PruneError {
    fn from(e: StorageError) -> Self {
        PruneError::Repo(e.into())
    }
}

/// A number of packs and their stored bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Amount {
    pub packs: usize,
    pub bytes: u64,
}

impl Amount {
    fn add(&mut self, bytes: u64) {
        self.packs += 1;
        self.bytes += bytes;
    }
}

/// A mark still inside its grace period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaitingMark {
    /// Its storage key (`marks/<hex>`); in a dry run, the key it would have.
    pub mark: String,
    pub created: DateTime<Utc>,
    /// When its packs may be deleted.
    pub due: DateTime<Utc>,
    /// Its packs still in storage and out of the index: what it will reclaim.
    pub pending: Amount,
}

/// What a prune run did (or, with `dry_run`, would do).
#[derive(Debug, Default, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub snapshots: usize,
    /// Blobs (data and trees) the snapshots use, and their stored bytes.
    pub used_blobs: usize,
    pub used_bytes: u64,

    /// Sweep: marks whose grace period was over, dealt with and deleted.
    pub marks_deleted: usize,
    /// Sweep: marked packs deleted — the space reclaimed by this run.
    pub deleted: Amount,
    /// Marked packs put back into the index because a snapshot needs one of their blobs.
    pub revived: Amount,

    /// Mark: indexed packs kept as they are.
    pub kept: Amount,
    /// Mark: indexed packs no snapshot uses.
    pub unused: Amount,
    /// Mark: mostly unused packs whose used blobs were copied into new packs.
    pub repacked: Amount,
    /// Mark: new packs the repack wrote (estimated in a dry run).
    pub written: Amount,
    /// Mark: packs no index file names, left by interrupted backups or prunes.
    pub unindexed: Amount,
    /// The mark this run wrote, listing the unused, repacked and unindexed packs.
    pub mark: Option<String>,
    pub index_files_written: usize,
    pub index_files_deleted: usize,

    /// Marks inside their grace period, this run's included, soonest due first.
    pub waiting: Vec<WaitingMark>,
    /// Things prune worked around (a damaged pack it could not repack, a damaged mark…).
    pub warnings: Vec<String>,
}

impl PruneReport {
    /// Bytes the waiting marks will reclaim once due, unless a snapshot revives them.
    pub fn reclaimable_later(&self) -> u64 {
        self.waiting.iter().map(|w| w.pending.bytes).sum()
    }
}

impl Repository {
    /// Prune the repository; see the module documentation.
    pub fn prune(&self, options: &PruneOptions) -> Result<PruneReport, PruneError> {
        self.prune_with_progress(options, &())
    }

    /// [`Repository::prune`] with progress callbacks.
    pub fn prune_with_progress(
        &self,
        options: &PruneOptions,
        progress: &dyn PruneProgress,
    ) -> Result<PruneReport, PruneError> {
        let mut survey = survey::Survey::take(self, progress)?;
        let mut report = PruneReport {
            dry_run: options.dry_run,
            snapshots: survey.snapshots,
            used_blobs: survey.used.len(),
            used_bytes: survey.used_bytes,
            ..PruneReport::default()
        };
        sweep::run(self, &mut survey, options, &mut report)?;
        collect::run(self, &mut survey, options, progress, &mut report)?;
        report.waiting = survey.waiting(options.grace);
        if !options.dry_run {
            // This instance's index should show what the run left.
            self.reload_index()?;
        }
        Ok(report)
    }
}

/// Most blob entries in one index file prune writes (about 3 MB).
const ENTRIES_PER_INDEX_FILE: usize = 1 << 16;

/// An index file as read or written: its key and packs.
#[derive(Debug, Clone)]
struct IndexFile {
    key: String,
    packs: Vec<IndexedPack>,
}

/// Seal `packs` into index files of bounded size and store them unless `dry_run`.
fn write_index_files(repo: &Repository, packs: Vec<IndexedPack>, dry_run: bool) -> Result<Vec<IndexFile>, RepoError> {
    let mut groups: Vec<Vec<IndexedPack>> = Vec::new();
    let mut entries = 0;
    for pack in packs {
        if groups.is_empty() || entries >= ENTRIES_PER_INDEX_FILE {
            groups.push(Vec::new());
            entries = 0;
        }
        entries += pack.entries.len();
        groups.last_mut().expect("a group was just pushed").push(pack);
    }
    groups
        .into_iter()
        .map(|packs| {
            let (key, sealed) = index::seal(repo.keys(), &packs);
            if !dry_run {
                repo.storage().put(&key, &sealed)?;
            }
            Ok(IndexFile { key, packs })
        })
        .collect()
}
