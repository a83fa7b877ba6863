//! Pack files: many sealed blobs of one kind, then a sealed header listing them.
//!
//! Layout (see docs/FORMAT.md):
//!
//! ```text
//! blob 0 (sealed) ‖ blob 1 (sealed) ‖ … ‖ header (sealed, aad "cairn pack header") ‖ u32 LE header length
//! ```
//!
//! Header plaintext: magic `CPH1`, u32 LE count, then per blob 45 bytes:
//! kind u8, id [32], offset u32 LE, length u32 LE (sealed), raw length u32 LE (plaintext).

use crate::crypto::Keys;
use crate::id::Id;

const HEADER_MAGIC: &[u8; 4] = b"CPH1";
const HEADER_AAD: &[u8] = b"cairn pack header";
const ENTRY_LEN: usize = 1 + 32 + 4 + 4 + 4;

/// What a blob holds. Data and trees go to separate packs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlobKind {
    Data = 0,
    Tree = 1,
}

impl BlobKind {
    pub fn from_u8(v: u8) -> Option<BlobKind> {
        match v {
            0 => Some(BlobKind::Data),
            1 => Some(BlobKind::Tree),
            _ => None,
        }
    }
}

/// Where one blob sits inside its pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    pub kind: BlobKind,
    pub id: Id,
    pub offset: u32,
    pub length: u32,
    pub raw_len: u32,
}

/// A malformed pack header.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("pack is too short to hold a header")]
    TooShort,
    #[error("pack header fails authentication")]
    HeaderAuth,
    #[error("pack header is malformed: {0}")]
    Malformed(&'static str),
}

/// The key under which a pack is stored.
pub fn pack_key(id: &Id) -> String {
    let hex = id.to_hex();
    format!("packs/{}/{hex}", &hex[..2])
}

/// Accumulates sealed blobs into one pack.
#[derive(Default)]
pub struct PackBuilder {
    bytes: Vec<u8>,
    entries: Vec<PackEntry>,
}

impl PackBuilder {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Start an empty pack in `buffer`, a finished pack's allocation.
    pub fn recycle(&mut self, mut buffer: Vec<u8>) {
        debug_assert!(self.is_empty());
        buffer.clear();
        self.bytes = buffer;
    }

    /// Bytes of blobs so far.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    pub fn add(&mut self, kind: BlobKind, id: Id, sealed: &[u8], raw_len: u32) {
        let offset = u32::try_from(self.bytes.len()).expect("packs stay far below 4 GiB");
        let length = u32::try_from(sealed.len()).expect("blobs stay far below 4 GiB");
        self.grow_for(sealed.len());
        self.bytes.extend_from_slice(sealed);
        self.entries.push(PackEntry { kind, id, offset, length, raw_len });
    }

    /// Make room for `more` bytes. A buffer that is full grows by at least a quarter, not
    /// double: a pack ends soon after its buffer first fills (a recycled buffer already
    /// holds a whole pack), and the pages doubling would map are seldom used.
    fn grow_for(&mut self, more: usize) {
        let spare = self.bytes.capacity() - self.bytes.len();
        if spare < more {
            self.bytes.reserve_exact(more.max(self.bytes.capacity() / 4));
        }
    }

    /// Seal the header onto the blobs; returns the pack's bytes, its id and its entries.
    pub fn finish(self, keys: &Keys) -> (Vec<u8>, Id, Vec<PackEntry>) {
        let PackBuilder { mut bytes, entries } = self;
        let header = keys.seal(&encode_header(&entries), HEADER_AAD);
        bytes.reserve_exact(header.len() + 4);
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
        let id = Id::of_stored(&bytes);
        (bytes, id, entries)
    }
}

fn encode_header(entries: &[PackEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + entries.len() * ENTRY_LEN);
    out.extend_from_slice(HEADER_MAGIC);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        out.push(e.kind as u8);
        out.extend_from_slice(&e.id.0);
        out.extend_from_slice(&e.offset.to_le_bytes());
        out.extend_from_slice(&e.length.to_le_bytes());
        out.extend_from_slice(&e.raw_len.to_le_bytes());
    }
    out
}

fn decode_header(plain: &[u8]) -> Result<Vec<PackEntry>, PackError> {
    let rest = plain.strip_prefix(HEADER_MAGIC).ok_or(PackError::Malformed("bad magic"))?;
    let (count, rest) = rest.split_at_checked(4).ok_or(PackError::Malformed("no count"))?;
    let count = u32::from_le_bytes(count.try_into().expect("4 bytes")) as usize;
    if rest.len() != count * ENTRY_LEN {
        return Err(PackError::Malformed("entry count does not match length"));
    }
    rest.chunks_exact(ENTRY_LEN)
        .map(|e| {
            let u32_at = |i: usize| u32::from_le_bytes(e[i..i + 4].try_into().expect("4 bytes"));
            Ok(PackEntry {
                kind: BlobKind::from_u8(e[0]).ok_or(PackError::Malformed("unknown blob kind"))?,
                id: Id::from_slice(&e[1..33]).expect("32 bytes"),
                offset: u32_at(33),
                length: u32_at(37),
                raw_len: u32_at(41),
            })
        })
        .collect()
}

/// Read the header of a whole pack file.
pub fn read_header(keys: &Keys, pack: &[u8]) -> Result<Vec<PackEntry>, PackError> {
    let header_len = header_len(pack)? as usize;
    let body = &pack[..pack.len() - 4];
    let start = body.len().checked_sub(header_len).ok_or(PackError::TooShort)?;
    open_header(keys, &body[start..])
}

/// The length of the sealed header, from the last 4 bytes of a pack (or of its tail).
pub fn header_len(tail: &[u8]) -> Result<u32, PackError> {
    let len = tail.last_chunk::<4>().ok_or(PackError::TooShort)?;
    Ok(u32::from_le_bytes(*len))
}

/// Decrypt and parse a sealed header.
pub fn open_header(keys: &Keys, sealed: &[u8]) -> Result<Vec<PackEntry>, PackError> {
    let plain = keys.open(sealed, HEADER_AAD).map_err(|_| PackError::HeaderAuth)?;
    decode_header(&plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn header_encode_decode_is_identity(raw in proptest::collection::vec((any::<bool>(), any::<[u8; 32]>(), any::<u32>(), any::<u32>(), any::<u32>()), 0..50)) {
            let entries: Vec<PackEntry> = raw.into_iter().map(|(tree, id, offset, length, raw_len)| PackEntry {
                kind: if tree { BlobKind::Tree } else { BlobKind::Data }, id: Id(id), offset, length, raw_len,
            }).collect();
            prop_assert_eq!(decode_header(&encode_header(&entries)).unwrap(), entries);
        }
    }

    #[test]
    fn a_full_recycled_buffer_grows_by_a_quarter_not_double() {
        let mut b = PackBuilder::default();
        b.recycle(Vec::with_capacity(1 << 20));
        b.add(BlobKind::Data, Id([1; 32]), &vec![7; (1 << 20) - 10], 1);
        b.add(BlobKind::Data, Id([2; 32]), &[8; 100], 1);
        assert!(b.bytes.capacity() <= (1 << 20) + (1 << 18), "grew to {}", b.bytes.capacity());
        let (bytes, ..) = b.finish(&Keys::generate());
        assert!(bytes.capacity() <= (1 << 20) + (1 << 18), "the header doubled it: {}", bytes.capacity());
        assert_eq!(&bytes[(1 << 20) - 10..(1 << 20) + 90], &[8; 100]);
    }

    #[test]
    fn a_built_pack_reads_back() {
        let keys = Keys::generate();
        let mut b = PackBuilder::default();
        b.add(BlobKind::Data, Id([1; 32]), b"sealed-one", 3);
        b.add(BlobKind::Data, Id([2; 32]), b"sealed-two!", 4);
        let (bytes, id, entries) = b.finish(&keys);
        assert_eq!(id, Id::of_stored(&bytes));
        assert_eq!(read_header(&keys, &bytes).unwrap(), entries);
        assert_eq!(entries[1].offset, 10);
        assert!(read_header(&keys, &bytes[..bytes.len() - 1]).is_err());
    }
}
