//! The index: which pack holds each blob, where, and how long it is.
//!
//! On storage, index files (`index/<id>`) are sealed binary lists of packs and their entries,
//! written after the packs they describe. In memory, [`Index`] maps blob id → location.

use std::collections::HashMap;

use crate::crypto::Keys;
use crate::id::Id;
use crate::pack::{BlobKind, PackEntry};

const MAGIC: &[u8; 4] = b"CIX1";
/// Associated data of sealed index files.
pub const INDEX_AAD: &[u8] = b"cairn index";
const ENTRY_LEN: usize = 32 + 4 + 4 + 4;

/// One pack as recorded in an index file. All blobs of a pack have its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedPack {
    pub id: Id,
    pub kind: BlobKind,
    pub entries: Vec<PackEntry>,
}

/// A malformed index file.
#[derive(Debug, thiserror::Error)]
#[error("index file is malformed: {0}")]
pub struct IndexFormatError(&'static str);

/// Plaintext of an index file.
pub fn encode(packs: &[IndexedPack]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(packs.len() as u32).to_le_bytes());
    for p in packs {
        out.extend_from_slice(&p.id.0);
        out.push(p.kind as u8);
        out.extend_from_slice(&(p.entries.len() as u32).to_le_bytes());
        for e in &p.entries {
            out.extend_from_slice(&e.id.0);
            out.extend_from_slice(&e.offset.to_le_bytes());
            out.extend_from_slice(&e.length.to_le_bytes());
            out.extend_from_slice(&e.raw_len.to_le_bytes());
        }
    }
    out
}

/// Parse the plaintext of an index file.
pub fn decode(plain: &[u8]) -> Result<Vec<IndexedPack>, IndexFormatError> {
    let mut r = Reader(plain.strip_prefix(MAGIC).ok_or(IndexFormatError("bad magic"))?);
    let count = r.u32()? as usize;
    let mut packs = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let id = r.id()?;
        let kind = BlobKind::from_u8(r.take(1)?[0]).ok_or(IndexFormatError("unknown blob kind"))?;
        let n = r.u32()? as usize;
        if r.0.len() < n * ENTRY_LEN {
            return Err(IndexFormatError("truncated entries"));
        }
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let id = r.id()?;
            let (offset, length, raw_len) = (r.u32()?, r.u32()?, r.u32()?);
            entries.push(PackEntry { kind, id, offset, length, raw_len });
        }
        packs.push(IndexedPack { id, kind, entries });
    }
    if !r.0.is_empty() {
        return Err(IndexFormatError("trailing bytes"));
    }
    Ok(packs)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], IndexFormatError> {
        let (head, rest) = self.0.split_at_checked(n).ok_or(IndexFormatError("truncated"))?;
        self.0 = rest;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32, IndexFormatError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn id(&mut self) -> Result<Id, IndexFormatError> {
        Ok(Id::from_slice(self.take(32)?).expect("32 bytes"))
    }
}

/// Seal an index file; returns its storage key and bytes.
pub fn seal(keys: &Keys, packs: &[IndexedPack]) -> (String, Vec<u8>) {
    let sealed = keys.seal(&encode(packs), INDEX_AAD);
    (format!("index/{}", Id::of_stored(&sealed).to_hex()), sealed)
}

/// Location of a blob in the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLoc {
    /// Position of the pack in [`Index::packs`].
    pub pack: u32,
    pub offset: u32,
    pub length: u32,
    pub raw_len: u32,
}

/// The in-memory index of every blob in the repository.
#[derive(Default)]
pub struct Index {
    packs: Vec<(Id, BlobKind)>,
    pack_pos: HashMap<Id, u32>,
    blobs: HashMap<Id, BlobLoc>,
}

impl Index {
    /// Add every entry of a pack; a blob already indexed elsewhere keeps its first location.
    pub fn add_pack(&mut self, pack: &IndexedPack) {
        let next = self.packs.len() as u32;
        let pos = *self.pack_pos.entry(pack.id).or_insert(next);
        if pos == next {
            self.packs.push((pack.id, pack.kind));
        }
        for e in &pack.entries {
            let loc = BlobLoc { pack: pos, offset: e.offset, length: e.length, raw_len: e.raw_len };
            self.blobs.entry(e.id).or_insert(loc);
        }
    }

    pub fn get(&self, id: &Id) -> Option<BlobLoc> {
        self.blobs.get(id).copied()
    }

    pub fn contains(&self, id: &Id) -> bool {
        self.blobs.contains_key(id)
    }

    /// Id and kind of the pack at a [`BlobLoc::pack`] position.
    pub fn pack(&self, pos: u32) -> (Id, BlobKind) {
        self.packs[pos as usize]
    }

    pub fn has_pack(&self, id: &Id) -> bool {
        self.pack_pos.contains_key(id)
    }

    /// All packs, in the order they were added.
    pub fn packs(&self) -> impl Iterator<Item = (Id, BlobKind)> + '_ {
        self.packs.iter().copied()
    }

    pub fn blob_count(&self) -> usize {
        self.blobs.len()
    }

    /// Every blob with its location.
    pub fn blobs(&self) -> impl Iterator<Item = (&Id, &BlobLoc)> {
        self.blobs.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_pack() -> impl Strategy<Value = IndexedPack> {
        (
            any::<[u8; 32]>(),
            any::<bool>(),
            proptest::collection::vec((any::<[u8; 32]>(), any::<u32>(), any::<u32>(), any::<u32>()), 0..20),
        )
            .prop_map(|(id, tree, entries)| {
                let kind = if tree { BlobKind::Tree } else { BlobKind::Data };
                IndexedPack {
                    id: Id(id),
                    kind,
                    entries: entries
                        .into_iter()
                        .map(|(b, offset, length, raw_len)| PackEntry { kind, id: Id(b), offset, length, raw_len })
                        .collect(),
                }
            })
    }

    proptest! {
        #[test]
        fn encode_decode_is_identity(packs in proptest::collection::vec(arb_pack(), 0..8)) {
            prop_assert_eq!(decode(&encode(&packs)).unwrap(), packs);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn first_location_wins() {
        let entry = |offset| PackEntry { kind: BlobKind::Data, id: Id([9; 32]), offset, length: 1, raw_len: 1 };
        let mut index = Index::default();
        index.add_pack(&IndexedPack { id: Id([1; 32]), kind: BlobKind::Data, entries: vec![entry(5)] });
        index.add_pack(&IndexedPack { id: Id([2; 32]), kind: BlobKind::Data, entries: vec![entry(7)] });
        let loc = index.get(&Id([9; 32])).unwrap();
        assert_eq!((index.pack(loc.pack).0, loc.offset), (Id([1; 32]), 5));
    }
}
