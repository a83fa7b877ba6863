//! Mark objects (`marks/<hex>`): packs prune took out of the index, waiting out the grace
//! period before they may be deleted.
//!
//! A mark records when it was made and, for every pack, its size, why it was marked and its
//! entries (the same layout as in index files). The entries let anyone read a marked pack's
//! blobs without fetching its header: [`crate::repo::Repository::reload_index`] adds them to
//! the in-memory index as readable but not reusable, and prune decides from them whether a
//! snapshot still needs a marked pack. Byte layout in docs/FORMAT.md.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::crypto::Keys;
use crate::error::{RepoError, Result};
use crate::id::Id;
use crate::index::{self, IndexFormatError, IndexedPack, Reader};
use crate::repo::Repository;

/// Associated data of sealed marks.
pub const MARK_AAD: &[u8] = b"cairn mark";
const MAGIC: &[u8; 4] = b"CMK1";
/// Where marks live.
pub const MARKS_PREFIX: &str = "marks/";

/// Why a pack was marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MarkReason {
    /// Indexed, but no snapshot used any of its blobs.
    Unused = 0,
    /// Indexed and mostly unused; its used blobs were copied into new packs.
    Repacked = 1,
    /// No index file named it (left by an interrupted backup or prune); its entries come
    /// from its header, and are empty when the header could not be read.
    Unindexed = 2,
}

impl MarkReason {
    fn from_u8(v: u8) -> Option<MarkReason> {
        match v {
            0 => Some(MarkReason::Unused),
            1 => Some(MarkReason::Repacked),
            2 => Some(MarkReason::Unindexed),
            _ => None,
        }
    }
}

/// One pack of a mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkedPack {
    /// The pack id, kind and entries.
    pub pack: IndexedPack,
    /// Stored bytes of the pack when it was marked (0 if it was already missing).
    pub size: u64,
    pub reason: MarkReason,
}

/// A mark: packs out of the index since `created`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// When the mark was made, to millisecond precision.
    pub created: DateTime<Utc>,
    pub packs: Vec<MarkedPack>,
}

impl Mark {
    /// Plaintext of a mark.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.created.timestamp_millis().to_le_bytes());
        out.extend_from_slice(&(self.packs.len() as u32).to_le_bytes());
        for p in &self.packs {
            out.extend_from_slice(&p.size.to_le_bytes());
            out.push(p.reason as u8);
            index::encode_pack(&mut out, &p.pack);
        }
        out
    }

    /// Parse the plaintext of a mark.
    pub fn decode(plain: &[u8]) -> Result<Mark, IndexFormatError> {
        let mut r = Reader(plain.strip_prefix(MAGIC).ok_or(IndexFormatError("bad magic"))?);
        let millis = r.u64()? as i64;
        let created = DateTime::from_timestamp_millis(millis).ok_or(IndexFormatError("time out of range"))?;
        let count = r.u32()? as usize;
        let mut packs = Vec::with_capacity(count.min(1 << 16));
        for _ in 0..count {
            let size = r.u64()?;
            let reason = MarkReason::from_u8(r.take(1)?[0]).ok_or(IndexFormatError("unknown mark reason"))?;
            packs.push(MarkedPack { size, reason, pack: r.pack()? });
        }
        if !r.0.is_empty() {
            return Err(IndexFormatError("trailing bytes"));
        }
        Ok(Mark { created, packs })
    }

    /// Seal a mark; returns its storage key and bytes.
    pub fn seal(&self, keys: &Keys) -> (String, Vec<u8>) {
        let sealed = keys.seal(&self.encode(), MARK_AAD);
        (format!("{MARKS_PREFIX}{}", Id::of_stored(&sealed).to_hex()), sealed)
    }

    /// When the grace period of this mark ends.
    pub fn due(&self, grace: std::time::Duration) -> DateTime<Utc> {
        let grace = chrono::TimeDelta::from_std(grace).unwrap_or(chrono::TimeDelta::MAX);
        self.created.checked_add_signed(grace).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// Stored bytes of all its packs.
    pub fn bytes(&self) -> u64 {
        self.packs.iter().map(|p| p.size).sum()
    }
}

/// Every readable mark, and the damaged ones.
#[derive(Debug, Default)]
pub struct Marks {
    /// Storage key and content of each mark that opened.
    pub marks: Vec<(String, Mark)>,
    /// Storage key of each mark that failed to decrypt or parse, with the error.
    pub damaged: Vec<(String, RepoError)>,
}

impl Marks {
    /// Every pack listed in a readable mark, once (the first listing's entries).
    pub fn packs(&self) -> impl Iterator<Item = &MarkedPack> {
        let mut seen = std::collections::HashSet::new();
        self.marks.iter().flat_map(|(_, m)| &m.packs).filter(move |p| seen.insert(p.pack.id))
    }
}

impl Repository {
    /// Read every mark. A mark deleted between listing and reading is skipped: prune
    /// deletes one only after dealing with its packs.
    pub fn read_marks(&self) -> Result<Marks> {
        let mut out = Marks::default();
        self.read_new_marks(&mut out)?;
        Ok(out)
    }

    /// Add the marks written since `out` was read.
    pub fn read_new_marks(&self, out: &mut Marks) -> Result<()> {
        let known: std::collections::HashSet<String> =
            out.marks.iter().map(|(k, _)| k).chain(out.damaged.iter().map(|(k, _)| k)).cloned().collect();
        for entry in self.storage().list(MARKS_PREFIX)? {
            if known.contains(&entry.key) {
                continue;
            }
            let sealed = match self.storage().get(&entry.key) {
                Err(e) if e.is_not_found() => continue,
                other => other?,
            };
            let mark = self
                .keys()
                .open(&sealed, MARK_AAD)
                .map_err(|e| RepoError::corrupt(&entry.key, e))
                .and_then(|plain| Mark::decode(&plain).map_err(|e| RepoError::corrupt(&entry.key, e)));
            match mark {
                Ok(mark) => out.marks.push((entry.key, mark)),
                Err(e) => out.damaged.push((entry.key, e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::{BlobKind, PackEntry};
    use proptest::prelude::*;

    fn arb_marked() -> impl Strategy<Value = MarkedPack> {
        (any::<[u8; 32]>(), any::<u64>(), 0u8..3, proptest::collection::vec((any::<[u8; 32]>(), any::<u32>()), 0..10))
            .prop_map(|(id, size, reason, entries)| MarkedPack {
                size,
                reason: MarkReason::from_u8(reason).unwrap(),
                pack: IndexedPack {
                    id: Id(id),
                    kind: BlobKind::Data,
                    entries: entries
                        .into_iter()
                        .map(|(b, n)| PackEntry {
                            kind: BlobKind::Data,
                            id: Id(b),
                            offset: n,
                            length: n / 2,
                            raw_len: n,
                        })
                        .collect(),
                },
            })
    }

    proptest! {
        #[test]
        fn encode_decode_is_identity(millis in 0i64..1 << 45, packs in proptest::collection::vec(arb_marked(), 0..6)) {
            let mark = Mark { created: DateTime::from_timestamp_millis(millis).unwrap(), packs };
            prop_assert_eq!(Mark::decode(&mark.encode()).unwrap(), mark);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Mark::decode(&bytes);
            let mut with_magic = MAGIC.to_vec();
            with_magic.extend_from_slice(&bytes);
            let _ = Mark::decode(&with_magic);
        }
    }

    #[test]
    fn a_sealed_mark_is_named_by_its_bytes_and_opens() {
        let keys = Keys::generate();
        let mark = Mark { created: DateTime::from_timestamp_millis(1_700_000_000_123).unwrap(), packs: vec![] };
        let (key, sealed) = mark.seal(&keys);
        assert_eq!(key, format!("marks/{}", Id::of_stored(&sealed).to_hex()));
        let plain = keys.open(&sealed, MARK_AAD).unwrap();
        assert_eq!(Mark::decode(&plain).unwrap(), mark);
        assert!(keys.open(&sealed, b"cairn index").is_err(), "a mark cannot pass for another object");
    }

    #[test]
    fn due_adds_the_grace_period() {
        let created = DateTime::from_timestamp_millis(1_000).unwrap();
        let mark = Mark { created, packs: vec![] };
        assert_eq!(mark.due(std::time::Duration::from_secs(2)).timestamp_millis(), 3_000);
        assert_eq!(mark.due(std::time::Duration::MAX), DateTime::<Utc>::MAX_UTC);
    }
}
