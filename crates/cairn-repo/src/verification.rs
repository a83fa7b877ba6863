//! Verification records: the result of restoring a snapshot into scratch targets and proving
//! it (`cairn verify`). Snapshots are immutable, so each verification is its own sealed JSON
//! object `verifications/<BLAKE3 of the sealed bytes>` naming the snapshot it proved.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use crate::error::{RepoError, Result};
use crate::id::Id;
use crate::repo::Repository;

/// Associated data of sealed verification records.
pub const VERIFICATION_AAD: &[u8] = b"cairn verification";
/// Record version written by this code.
pub const VERIFICATION_VERSION: u32 = 1;

/// One verification run of one snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub version: u32,
    pub snapshot: Id,
    /// When the verification finished.
    pub time: DateTime<FixedOffset>,
    pub host: String,
    /// Every source proven.
    pub ok: bool,
    pub duration_secs: f64,
    pub sources: Vec<SourceVerification>,
    #[serde(default)]
    pub program: String,
}

/// The verdict on one source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceVerification {
    pub name: String,
    pub kind: String,
    pub ok: bool,
    /// Seconds the restore into the scratch target took.
    pub restore_secs: f64,
    /// Checks made (files, tables, integrity checks).
    pub checks: u64,
    /// What differs from what was recorded, or why it could not be restored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

impl Repository {
    /// Store a verification record.
    pub fn save_verification(&self, v: &Verification) -> Result<Id> {
        let json = serde_json::to_vec(v).expect("verifications serialise");
        let sealed = self.keys().seal(&json, VERIFICATION_AAD);
        let id = Id::of_stored(&sealed);
        self.storage().put(&format!("verifications/{}", id.to_hex()), &sealed)?;
        Ok(id)
    }

    /// All verification records, oldest first. Unreadable ones are skipped (`check` reads
    /// every object and reports damage).
    pub fn verifications(&self) -> Result<Vec<Verification>> {
        let mut all = Vec::new();
        for entry in self.storage().list("verifications/")? {
            let sealed = self.storage().get(&entry.key)?;
            let parsed =
                self.keys().open(&sealed, VERIFICATION_AAD).map_err(|e| RepoError::corrupt(&entry.key, e)).and_then(
                    |plain| {
                        serde_json::from_slice::<Verification>(&plain).map_err(|e| RepoError::corrupt(&entry.key, e))
                    },
                );
            if let Ok(v) = parsed {
                all.push(v);
            }
        }
        all.sort_by_key(|v| v.time);
        Ok(all)
    }
}
