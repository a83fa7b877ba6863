//! The index: which pack holds each blob, where, and how long it is.
//!
//! On storage, index files (`index/<id>`) are sealed binary lists of packs and their entries,
//! written after the packs they describe. In memory, [`Index`] maps blob id → location. It also
//! holds the packs prune has marked for deletion (see [`crate::prune`]): their blobs can be
//! read, so a snapshot saved after the mark still restores, but a backup never reuses them.

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
pub struct IndexFormatError(pub(crate) &'static str);

/// Plaintext of an index file.
pub fn encode(packs: &[IndexedPack]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(packs.len() as u32).to_le_bytes());
    for p in packs {
        encode_pack(&mut out, p);
    }
    out
}

/// One pack as index files (and marks) store it: id, kind, count, entries.
pub(crate) fn encode_pack(out: &mut Vec<u8>, p: &IndexedPack) {
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

/// Parse the plaintext of an index file.
pub fn decode(plain: &[u8]) -> Result<Vec<IndexedPack>, IndexFormatError> {
    let mut r = Reader(plain.strip_prefix(MAGIC).ok_or(IndexFormatError("bad magic"))?);
    let count = r.u32()? as usize;
    let mut packs = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        packs.push(r.pack()?);
    }
    if !r.0.is_empty() {
        return Err(IndexFormatError("trailing bytes"));
    }
    Ok(packs)
}

/// A cursor over little-endian binary plaintext.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], IndexFormatError> {
        let (head, rest) = self.0.split_at_checked(n).ok_or(IndexFormatError("truncated"))?;
        self.0 = rest;
        Ok(head)
    }
    pub(crate) fn u32(&mut self) -> Result<u32, IndexFormatError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, IndexFormatError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn id(&mut self) -> Result<Id, IndexFormatError> {
        Ok(Id::from_slice(self.take(32)?).expect("32 bytes"))
    }
    /// One pack in the layout of [`encode_pack`].
    pub(crate) fn pack(&mut self) -> Result<IndexedPack, IndexFormatError> {
        let id = self.id()?;
        let kind = BlobKind::from_u8(self.take(1)?[0]).ok_or(IndexFormatError("unknown blob kind"))?;
        let n = self.u32()? as usize;
        if self.0.len() < n * ENTRY_LEN {
            return Err(IndexFormatError("truncated entries"));
        }
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let id = self.id()?;
            let (offset, length, raw_len) = (self.u32()?, self.u32()?, self.u32()?);
            entries.push(PackEntry { kind, id, offset, length, raw_len });
        }
        Ok(IndexedPack { id, kind, entries })
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
    /// Position of the pack for [`Index::pack`].
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

/// Set in [`BlobLoc::pack`] for the position of a marked pack.
const MARKED: u32 = 1 << 31;

/// The in-memory index of every blob in the repository.
///
/// A sorted array of 40-byte slots plus a table of where each 16-bit bucket of ids starts:
/// ids are uniformly random, so a lookup is one table read and a short binary search inside
/// a bucket. Memory: 40 bytes per blob, plus 256 KiB for the table and a little per pack
/// (measured by `cargo bench -p cairn-repo --bench index`).
///
/// Packs that prune marked for deletion and no index file names are kept apart, in a plain
/// map: there are few of them, and only for the grace period. [`Index::get`] finds their
/// blobs (a snapshot saved after the mark by a backup that started before it may need them
/// until prune puts the pack back); [`Index::contains`], what a backup asks before reusing a
/// blob, does not.
#[derive(Default)]
pub struct Index {
    packs: Vec<(Id, BlobKind)>,
    pack_pos: HashMap<Id, u32>,
    slots: Vec<Slot>,
    /// `buckets[b]..buckets[b + 1]` are the slots whose id starts with the 16 bits `b`.
    buckets: Vec<u32>,
    /// Entries added but not yet sorted in.
    staged: Vec<Slot>,
    /// Marked packs; their positions are `MARKED | i`.
    marked_packs: Vec<(Id, BlobKind)>,
    marked_pos: HashMap<Id, u32>,
    marked: HashMap<IdPrefix, BlobLoc>,
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

    /// Add packs that prune marked for deletion and no index file names: their blobs can be
    /// read ([`Index::get`]) but are not offered for reuse ([`Index::contains`]).
    pub fn add_marked_packs(&mut self, packs: &[IndexedPack]) {
        for pack in packs {
            if self.pack_pos.contains_key(&pack.id) || self.marked_pos.contains_key(&pack.id) {
                continue;
            }
            let pos = MARKED | self.marked_packs.len() as u32;
            self.marked_packs.push((pack.id, pack.kind));
            self.marked_pos.insert(pack.id, pos);
            for e in &pack.entries {
                let loc = BlobLoc { pack: pos, offset: e.offset, length: e.length, raw_len: e.raw_len };
                self.marked.entry(IdPrefix::of(&e.id)).or_insert(loc);
            }
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

    /// Where a blob can be read: an indexed copy, or else one in a marked pack.
    pub fn get(&self, id: &Id) -> Option<BlobLoc> {
        let key = IdPrefix::of(id);
        self.find(&key).map(|s| s.loc).or_else(|| self.marked.get(&key).copied())
    }

    /// Whether a backup may reuse this blob: an index file names a pack holding it. Blobs
    /// only in packs marked for deletion are not reused, since prune may delete them.
    pub fn contains(&self, id: &Id) -> bool {
        self.find(&IdPrefix::of(id)).is_some()
    }

    /// Id and kind of the pack at a [`BlobLoc::pack`] position.
    pub fn pack(&self, pos: u32) -> (Id, BlobKind) {
        if pos & MARKED != 0 {
            return self.marked_packs[(pos & !MARKED) as usize];
        }
        self.packs[pos as usize]
    }

    /// Whether an index file names this pack.
    pub fn has_pack(&self, id: &Id) -> bool {
        self.pack_pos.contains_key(id)
    }

    /// Whether this pack is marked for deletion and no index file names it.
    pub fn is_marked(&self, id: &Id) -> bool {
        self.marked_pos.contains_key(id) && !self.has_pack(id)
    }

    /// Packs marked for deletion that no index file names.
    pub fn marked_packs(&self) -> impl Iterator<Item = (Id, BlobKind)> + '_ {
        self.marked_packs.iter().copied().filter(|(id, _)| !self.has_pack(id))
    }

    /// All packs index files name, in the order they were added (their positions).
    pub fn packs(&self) -> impl Iterator<Item = (Id, BlobKind)> + '_ {
        self.packs.iter().copied()
    }

    /// Blobs in packs index files name.
    pub fn blob_count(&self) -> usize {
        self.slots.len()
    }

    /// Every blob (by id prefix) in packs index files name, with its location.
    pub fn blobs(&self) -> impl Iterator<Item = (IdPrefix, BlobLoc)> + '_ {
        self.slots.iter().map(|s| (s.key, s.loc))
    }

    /// Bytes of memory held, for the benchmark.
    pub fn memory_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.buckets.capacity() * 4
            + self.packs.capacity() * std::mem::size_of::<(Id, BlobKind)>()
            + self.pack_pos.capacity() * (std::mem::size_of::<(Id, u32)>() + 1)
            + self.marked.capacity() * (std::mem::size_of::<(IdPrefix, BlobLoc)>() + 1)
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
    fn marked_blobs_are_readable_but_not_reused() {
        let entry = |id, offset| PackEntry { kind: BlobKind::Data, id: Id([id; 32]), offset, length: 1, raw_len: 1 };
        let mut index = Index::default();
        index.add_pack(&IndexedPack { id: Id([1; 32]), kind: BlobKind::Data, entries: vec![entry(9, 5)] });
        let marked = IndexedPack { id: Id([2; 32]), kind: BlobKind::Data, entries: vec![entry(9, 7), entry(8, 3)] };
        index.add_marked_packs(&[marked]);
        assert!(index.contains(&Id([9; 32])) && !index.contains(&Id([8; 32])));
        let loc = index.get(&Id([8; 32])).unwrap();
        assert_eq!((index.pack(loc.pack).0, loc.offset), (Id([2; 32]), 3));
        let loc = index.get(&Id([9; 32])).unwrap();
        assert_eq!(index.pack(loc.pack).0, Id([1; 32]), "an indexed copy is preferred");
        assert!(index.is_marked(&Id([2; 32])) && !index.has_pack(&Id([2; 32])));
        assert_eq!(index.packs().count(), 1);
        assert_eq!(index.blob_count(), 1);
        // Named by an index file again (prune revived it): no longer marked.
        index.add_pack(&IndexedPack { id: Id([2; 32]), kind: BlobKind::Data, entries: vec![entry(8, 3)] });
        assert!(index.contains(&Id([8; 32])) && !index.is_marked(&Id([2; 32])));
        assert_eq!(index.marked_packs().count(), 0);
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
