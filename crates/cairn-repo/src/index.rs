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
    /// Position of the pack in [`Index::pack`].
    pub pack: u32,
    pub offset: u32,
    pub length: u32,
    pub raw_len: u32,
}

/// Bytes of a blob id kept in memory. 192 bits make an accidental match between two
/// different blobs impossible in practice (about 2^96 blobs for an even chance), and every
/// read still authenticates the blob against its full id, so a match could never be
/// restored as wrong data.
pub const PREFIX_LEN: usize = 24;

/// The in-memory key of a blob: the first [`PREFIX_LEN`] bytes of its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdPrefix(pub [u8; PREFIX_LEN]);

impl IdPrefix {
    pub fn of(id: &Id) -> IdPrefix {
        IdPrefix(id.0[..PREFIX_LEN].try_into().expect("ids are longer than prefixes"))
    }

    /// Whether `id` starts with this prefix.
    pub fn matches(&self, id: &Id) -> bool {
        id.0[..PREFIX_LEN] == self.0
    }
}

/// One blob in memory: 40 bytes.
#[derive(Debug, Clone, Copy)]
struct Slot {
    key: IdPrefix,
    loc: BlobLoc,
}

/// Number of leading id bits that pick a bucket.
const BUCKET_BITS: u32 = 16;

/// The in-memory index of every blob in the repository.
///
/// A sorted array of 40-byte slots plus a table of where each 16-bit bucket of ids starts:
/// ids are uniformly random, so a lookup is one table read and a short binary search inside
/// a bucket. Memory: 40 bytes per blob, plus 256 KiB for the table and a little per pack
/// (measured by `cargo bench -p cairn-repo --bench index`).
#[derive(Default)]
pub struct Index {
    packs: Vec<(Id, BlobKind)>,
    pack_pos: HashMap<Id, u32>,
    slots: Vec<Slot>,
    /// `buckets[b]..buckets[b + 1]` are the slots whose id starts with the 16 bits `b`.
    buckets: Vec<u32>,
    /// Entries added but not yet sorted in.
    staged: Vec<Slot>,
}

impl Index {
    /// Add every entry of a pack; a blob already indexed keeps its location.
    /// For many packs, [`Index::add_packs`] is much faster.
    pub fn add_pack(&mut self, pack: &IndexedPack) {
        self.add_packs(std::slice::from_ref(pack));
    }

    /// Add many packs at once: one sort and one merge.
    pub fn add_packs(&mut self, packs: &[IndexedPack]) {
        self.stage(packs);
        self.commit();
    }

    /// Queue packs for the next [`Index::commit`]; lookups do not see them before.
    pub fn stage(&mut self, packs: &[IndexedPack]) {
        self.staged.reserve(packs.iter().map(|p| p.entries.len()).sum());
        for pack in packs {
            let next = self.packs.len() as u32;
            let pos = *self.pack_pos.entry(pack.id).or_insert(next);
            if pos == next {
                self.packs.push((pack.id, pack.kind));
            }
            self.staged.extend(pack.entries.iter().map(|e| Slot {
                key: IdPrefix::of(&e.id),
                loc: BlobLoc { pack: pos, offset: e.offset, length: e.length, raw_len: e.raw_len },
            }));
        }
    }

    /// Sort the staged entries into the index.
    pub fn commit(&mut self) {
        let mut fresh = std::mem::take(&mut self.staged);
        if fresh.is_empty() {
            return;
        }
        // Unstable: a stable sort would need a buffer of half the entries. Any stored copy of
        // a blob is as good as another, so which duplicate survives does not matter.
        fresh.sort_unstable_by_key(|s| s.key);
        fresh.dedup_by(|later, earlier| later.key == earlier.key);
        self.slots = merge(std::mem::take(&mut self.slots), fresh);
        self.slots.shrink_to_fit();
        self.rebuild_buckets();
    }

    fn rebuild_buckets(&mut self) {
        let n = 1usize << BUCKET_BITS;
        let mut buckets = vec![0u32; n + 1];
        for slot in &self.slots {
            buckets[bucket_of(&slot.key) + 1] += 1;
        }
        for b in 0..n {
            buckets[b + 1] += buckets[b];
        }
        self.buckets = buckets;
    }

    fn find(&self, key: &IdPrefix) -> Option<&Slot> {
        if self.slots.is_empty() {
            return None;
        }
        let b = bucket_of(key);
        let range = &self.slots[self.buckets[b] as usize..self.buckets[b + 1] as usize];
        if range.is_empty() {
            return None;
        }
        // Ids are uniform, so the next 16 bits say roughly where in the bucket the key sits;
        // walking from that guess touches one or two cache lines instead of a dozen.
        let frac = usize::from(u16::from_be_bytes([key.0[2], key.0[3]]));
        let mut i = (frac * range.len()) >> 16;
        while i > 0 && range[i].key > *key {
            i -= 1;
        }
        while i < range.len() && range[i].key < *key {
            i += 1;
        }
        range.get(i).filter(|s| s.key == *key)
    }

    pub fn get(&self, id: &Id) -> Option<BlobLoc> {
        self.find(&IdPrefix::of(id)).map(|s| s.loc)
    }

    pub fn contains(&self, id: &Id) -> bool {
        self.get(id).is_some()
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
        self.slots.len()
    }

    /// Every blob (by id prefix) with its location.
    pub fn blobs(&self) -> impl Iterator<Item = (IdPrefix, BlobLoc)> + '_ {
        self.slots.iter().map(|s| (s.key, s.loc))
    }

    /// Bytes of memory held, for the benchmark.
    pub fn memory_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.buckets.capacity() * 4
            + self.packs.capacity() * std::mem::size_of::<(Id, BlobKind)>()
            + self.pack_pos.capacity() * (std::mem::size_of::<(Id, u32)>() + 1)
    }
}

fn bucket_of(key: &IdPrefix) -> usize {
    (usize::from(key.0[0]) << 8) | usize::from(key.0[1])
}

/// Merge two sorted runs; on equal keys the one already indexed stays.
fn merge(old: Vec<Slot>, fresh: Vec<Slot>) -> Vec<Slot> {
    if old.is_empty() {
        return fresh;
    }
    let mut out = Vec::with_capacity(old.len() + fresh.len());
    let (mut a, mut b) = (old.into_iter().peekable(), fresh.into_iter().peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x.key == y.key => {
                b.next();
                a.next()
            }
            (Some(x), Some(y)) if x.key < y.key => a.next(),
            (Some(_), Some(_)) | (None, Some(_)) => b.next(),
            (Some(_), None) => a.next(),
            (None, None) => break,
        };
        out.extend(next);
    }
    out
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
    fn a_slot_is_40_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 40);
    }

    proptest! {
        #[test]
        fn lookups_find_exactly_what_was_added(batches in proptest::collection::vec(proptest::collection::vec(any::<[u8; 32]>(), 0..40), 1..5), probe in any::<[u8; 32]>()) {
            let mut index = Index::default();
            let mut all = std::collections::HashSet::new();
            for (n, batch) in batches.iter().enumerate() {
                let entries = batch.iter().map(|b| PackEntry { kind: BlobKind::Data, id: Id(*b), offset: n as u32, length: 1, raw_len: 1 }).collect();
                index.add_pack(&IndexedPack { id: Id([n as u8; 32]), kind: BlobKind::Data, entries });
                all.extend(batch.iter().copied());
            }
            for id in &all {
                prop_assert!(index.contains(&Id(*id)));
            }
            prop_assert_eq!(index.contains(&Id(probe)), all.contains(&probe));
            prop_assert_eq!(index.blob_count(), all.len());
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
