//! Snapshot manifests: immutable records of one backup run.
//!
//! A snapshot is sealed JSON stored at `snapshots/<BLAKE3 of the sealed bytes>`; it is written
//! last, after every pack and index file it depends on, so a listed snapshot is always whole.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use crate::chunker::ChunkParams;
use crate::id::Id;

/// Associated data of sealed snapshots.
pub const SNAPSHOT_AAD: &[u8] = b"cairn snapshot";
/// Manifest version written by this code.
pub const SNAPSHOT_VERSION: u32 = 1;

/// Outcome of one source within a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceStatus {
    /// Captured completely.
    Ok,
    /// Captured, but some items were skipped or failed (see warnings).
    Partial,
    /// Nothing usable was captured (see error).
    Failed,
}

/// Sizes and counts of one source's capture.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceStats {
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unchanged: u64,
    pub dirs: u64,
    /// Total size of the captured files/streams.
    pub total_bytes: u64,
    /// Bytes actually read from the source (unchanged files are not read).
    pub bytes_read: u64,
    /// Bytes written to the repository for this source, after dedup and compression.
    pub bytes_added: u64,
    pub blobs_added: u64,
    /// Items that could not be captured.
    pub errors: u64,
    pub duration_secs: f64,
}

impl SourceStats {
    /// Add another capture's counts to these (durations are not added: runs overlap).
    pub fn add(&mut self, other: &SourceStats) {
        self.files_new += other.files_new;
        self.files_changed += other.files_changed;
        self.files_unchanged += other.files_unchanged;
        self.dirs += other.dirs;
        self.total_bytes += other.total_bytes;
        self.bytes_read += other.bytes_read;
        self.bytes_added += other.bytes_added;
        self.blobs_added += other.blobs_added;
        self.errors += other.errors;
    }
}

/// One source of a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceEntry {
    /// Unique within the snapshot.
    pub name: String,
    /// Adapter kind: `files`, `sqlite`, `postgres`, …
    pub kind: String,
    pub status: SourceStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Root tree of what was captured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<Id>,
    /// Chunking parameters the source's streams were cut with.
    pub chunking: ChunkParams,
    /// What the source was (paths, server version, tables, row counts…), adapter-defined.
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub stats: SourceStats,
    /// The first warnings (skipped files, files that changed while read…).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    /// When the backup started (or the time given with `--time`), with the local offset.
    pub time: DateTime<FixedOffset>,
    pub host: String,
    #[serde(default)]
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The paths or source names this snapshot covers, for display and parent matching.
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Id>,
    pub sources: Vec<SourceEntry>,
    /// Seconds the whole run took.
    #[serde(default)]
    pub duration_secs: f64,
    /// The cairn version that wrote it.
    #[serde(default)]
    pub program: String,
}

impl Snapshot {
    /// Aggregate statistics over all sources.
    pub fn totals(&self) -> SourceStats {
        let mut t = SourceStats::default();
        for s in &self.sources {
            t.add(&s.stats);
        }
        t.duration_secs = self.duration_secs;
        t
    }
}
