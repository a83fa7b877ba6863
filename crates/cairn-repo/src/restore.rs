//! Restore planning: which blobs to fetch from which pack, and where their bytes go.
//!
//! The plan visits each pack once, in storage order, and reads neighbouring blobs with one
//! ranged read. Writing the bytes to disk (or a database) is the caller's business: the
//! engine only hands over verified plaintext with its destinations.

use std::cell::Cell;
use std::collections::BTreeMap;

use crate::id::Id;
use crate::index::Index;
use crate::pack::pack_key;
use crate::repo::Repository;

/// Two blobs closer than this in a pack are fetched with one read.
const MAX_GAP: u32 = 1 << 20;

/// Where one copy of a blob's plaintext goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobTarget {
    /// Position of the file in the list given to [`plan`].
    pub file: usize,
    /// Byte offset within that file.
    pub offset: u64,
}

/// One blob to fetch.
#[derive(Debug, Clone)]
pub struct PlannedBlob {
    pub id: Id,
    pub offset: u32,
    pub length: u32,
    pub raw_len: u32,
    pub targets: Vec<BlobTarget>,
}

/// The blobs needed from one pack, in pack order.
#[derive(Debug, Clone)]
pub struct PackPlan {
    pub pack: Id,
    pub blobs: Vec<PlannedBlob>,
}

impl PackPlan {
    /// Plaintext bytes this pack contributes (counting every target).
    pub fn bytes(&self) -> u64 {
        self.blobs.iter().map(|b| u64::from(b.raw_len) * b.targets.len() as u64).sum()
    }
}

/// A restore plan over a list of files.
#[derive(Debug, Default)]
pub struct RestorePlan {
    pub packs: Vec<PackPlan>,
    /// Files that cannot be restored whole because a blob is missing from the index (the
    /// first such blob); none of their blobs is planned.
    pub missing: Vec<(usize, Id)>,
}

/// Plan fetching the content of `files` (each a list of blob ids).
pub fn plan(index: &Index, files: &[&[Id]]) -> RestorePlan {
    let mut by_pack: BTreeMap<u32, BTreeMap<u32, PlannedBlob>> = BTreeMap::new();
    let mut missing = Vec::new();
    let mut found = Vec::new();
    for (file, content) in files.iter().enumerate() {
        found.clear();
        found.extend(content.iter().map_while(|id| index.get(id).map(|loc| (id, loc))));
        if let Some(id) = content.get(found.len()) {
            missing.push((file, *id));
            continue;
        }
        let mut offset = 0u64;
        for &(id, loc) in &found {
            let blob = by_pack.entry(loc.pack).or_default().entry(loc.offset).or_insert_with(|| PlannedBlob {
                id: *id,
                offset: loc.offset,
                length: loc.length,
                raw_len: loc.raw_len,
                targets: Vec::new(),
            });
            blob.targets.push(BlobTarget { file, offset });
            offset += u64::from(loc.raw_len);
        }
    }
    let packs = by_pack
        .into_iter()
        .map(|(pos, blobs)| PackPlan { pack: index.pack(pos).0, blobs: blobs.into_values().collect() })
        .collect();
    RestorePlan { packs, missing }
}

/// The memory a fetching thread reuses from pack to pack: the sealed bytes of one ranged
/// read, and one decompressed blob. Fresh memory costs a page fault and a zeroed page per
/// 4 KiB, which over the packs of a restore adds up to more than the reading.
#[derive(Default)]
struct FetchBuffers {
    range: Vec<u8>,
    plain: Vec<u8>,
}

thread_local! {
    static FETCH_BUFFERS: Cell<FetchBuffers> = Cell::default();
}

impl Repository {
    /// Fetch the blobs of one pack plan, calling `f` with each blob's verified plaintext or
    /// the reason it could not be had (a missing or unreadable pack fails each of its blobs).
    pub fn fetch_pack(&self, plan: &PackPlan, mut f: impl FnMut(&PlannedBlob, Result<&[u8], String>)) {
        let key = pack_key(&plan.pack);
        // Taken out of the thread's slot for the call, so `f` may fetch too (with fresh ones).
        let mut buffers = FETCH_BUFFERS.take();
        let FetchBuffers { range, plain } = &mut buffers;
        let mut i = 0;
        while i < plan.blobs.len() {
            // Grow a run of blobs that are close together, then read it in one request.
            let start = plan.blobs[i].offset;
            let mut end = start + plan.blobs[i].length;
            let mut j = i + 1;
            while j < plan.blobs.len() && plan.blobs[j].offset <= end.saturating_add(MAX_GAP) {
                end = end.max(plan.blobs[j].offset + plan.blobs[j].length);
                j += 1;
            }
            match self.storage().get_range_into(&key, start.into(), (end - start).into(), range) {
                Ok(()) => {
                    for blob in &plan.blobs[i..j] {
                        let at = (blob.offset - start) as usize;
                        // Blobs are decrypted where they lie in the fetched range: no copies.
                        let sealed = &mut range[at..at + blob.length as usize];
                        f(blob, self.open_blob_in_place(&blob.id, sealed, blob.raw_len, plain));
                    }
                }
                Err(e) => {
                    for blob in &plan.blobs[i..j] {
                        f(blob, Err(e.to_string()));
                    }
                }
            }
            i = j;
        }
        FETCH_BUFFERS.set(buffers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::IndexedPack;
    use crate::pack::{BlobKind, PackEntry};

    #[test]
    fn a_file_with_a_blob_missing_from_the_index_gets_none_of_its_blobs_planned() {
        let entry = |id, offset| PackEntry { kind: BlobKind::Data, id: Id([id; 32]), offset, length: 10, raw_len: 100 };
        let mut index = Index::default();
        index.add_pack(&IndexedPack {
            id: Id([1; 32]),
            kind: BlobKind::Data,
            entries: vec![entry(7, 0), entry(8, 10)],
        });
        let (a, b, gone) = (Id([7; 32]), Id([8; 32]), Id([9; 32]));
        // File 0 lacks its middle blob; file 1 shares its first blob and is whole.
        let damaged = [a, gone, b];
        let whole = [a, b];
        let p = plan(&index, &[&damaged, &whole]);
        assert_eq!(p.missing, vec![(0, gone)]);
        assert_eq!(p.packs.len(), 1);
        let targets: Vec<Vec<BlobTarget>> = p.packs[0].blobs.iter().map(|b| b.targets.clone()).collect();
        assert_eq!(
            targets,
            vec![vec![BlobTarget { file: 1, offset: 0 }], vec![BlobTarget { file: 1, offset: 100 }]],
            "only the whole file's blobs are fetched"
        );
    }
}
