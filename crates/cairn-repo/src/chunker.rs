//! Content-defined chunking (FastCDC with normalised chunking, level 2).
//!
//! The rolling "gear" hash is `h = (h << 1) + GEAR[byte]`; a cut is made where the top bits of
//! `h` are all zero. Before the average size a stricter mask (2 more bits) applies, after it a
//! looser one (2 fewer bits), which narrows the size distribution. The whole 256-entry gear
//! table is derived from the repository key, so chunk boundaries — and with them chunk
//! sizes — reveal nothing to someone without the key.
//!
//! This module knows only bytes; reading from files or streams is the caller's affair.

use std::io::{self, Read};

/// Chunk size parameters of one stream, recorded with the stream in the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChunkParams {
    /// Average chunk size; a power of two between 4 KiB and 8 MiB.
    pub avg: u32,
}

impl ChunkParams {
    /// Ordinary files: 1 MiB on average.
    pub const FILES: ChunkParams = ChunkParams { avg: 1 << 20 };
    /// Database dumps and other slowly changing streams: 64 KiB on average.
    pub const DUMPS: ChunkParams = ChunkParams { avg: 1 << 16 };

    /// Checked constructor.
    pub fn new(avg: u32) -> Option<ChunkParams> {
        (avg.is_power_of_two() && (1 << 12..=1 << 23).contains(&avg)).then_some(ChunkParams { avg })
    }
    pub fn min(&self) -> usize {
        self.avg as usize / 4
    }
    pub fn max(&self) -> usize {
        self.avg as usize * 4
    }
    fn bits(&self) -> u32 {
        self.avg.trailing_zeros()
    }
}

impl Default for ChunkParams {
    fn default() -> Self {
        ChunkParams::FILES
    }
}

/// The 256 random 64-bit values of the gear hash.
#[derive(Clone)]
pub struct GearTable([u64; 256]);

impl GearTable {
    /// Expand a 32-byte key into the table with BLAKE3's extendable output.
    pub fn from_key(key: &[u8; 32]) -> GearTable {
        let mut bytes = [0u8; 256 * 8];
        blake3::Hasher::new_keyed(key).update(b"gear").finalize_xof().fill(&mut bytes);
        let mut table = [0u64; 256];
        for (slot, word) in table.iter_mut().zip(bytes.chunks_exact(8)) {
            *slot = u64::from_le_bytes(word.try_into().expect("8-byte chunk"));
        }
        GearTable(table)
    }
}

/// Finds chunk boundaries with one gear table and one set of parameters.
#[derive(Clone)]
pub struct Chunker {
    gear: GearTable,
    params: ChunkParams,
    mask_small: u64,
    mask_large: u64,
}

impl Chunker {
    pub fn new(gear: &GearTable, params: ChunkParams) -> Chunker {
        // Masks take the top bits: after the shift-left hash they depend on the most bytes.
        let top = |bits: u32| !0u64 << (64 - bits);
        Chunker { gear: gear.clone(), params, mask_small: top(params.bits() + 2), mask_large: top(params.bits() - 2) }
    }

    pub fn params(&self) -> ChunkParams {
        self.params
    }

    /// Length of the chunk that starts at `data[0]`.
    ///
    /// `data` must hold at least `max` bytes unless it is the end of the stream; the answer
    /// depends only on the first `max` bytes.
    pub fn cut(&self, data: &[u8]) -> usize {
        let (min, max) = (self.params.min(), self.params.max());
        if data.len() <= min {
            return data.len();
        }
        let end = data.len().min(max);
        let normal = (self.params.avg as usize).min(end);
        self.scan(data, min, normal, self.mask_small)
            .or_else(|| self.scan(data, normal, end, self.mask_large))
            .unwrap_or(end)
    }

    /// The first cut in `data[from..to]` under `mask`: the position just after the first byte
    /// at which the gear hash of the bytes from `min` to it has the mask's bits clear.
    ///
    /// The hash at a byte depends only on the 64 bytes up to it (older ones are shifted out),
    /// so a range is scanned as two lanes side by side, each warmed up on the 64 bytes before
    /// it: one hash is a chain of dependent adds, and two independent chains go nearly twice
    /// as fast. The answer is the sequential one (property-tested against it below).
    fn scan(&self, data: &[u8], from: usize, to: usize, mask: u64) -> Option<usize> {
        const LANE: usize = 16 << 10;
        let mut at = from;
        while to - at >= 2 * LANE {
            let (a, b) = (&data[at..at + LANE], &data[at + LANE..at + 2 * LANE]);
            let (mut ha, mut hb) = (self.warm(data, at), self.warm(data, at + LANE));
            for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
                ha = self.step(ha, x);
                hb = self.step(hb, y);
                if ha & mask == 0 {
                    return Some(at + i + 1);
                }
                if hb & mask == 0 {
                    // The first lane may still cut before this.
                    return self.scan_one(a, i + 1, ha, mask).map_or(Some(at + LANE + i + 1), |j| Some(at + j));
                }
            }
            at += 2 * LANE;
        }
        let h = self.warm(data, at);
        self.scan_one(&data[..to], at, h, mask)
    }

    /// [`Chunker::scan`] in one lane: from `data[at]` on, with `h` the hash before it.
    fn scan_one(&self, data: &[u8], at: usize, mut h: u64, mask: u64) -> Option<usize> {
        for (i, &byte) in data[at..].iter().enumerate() {
            h = self.step(h, byte);
            if h & mask == 0 {
                return Some(at + i + 1);
            }
        }
        None
    }

    /// The hash before `data[at]`: that of the (at most 64) bytes before it, from `min` on.
    fn warm(&self, data: &[u8], at: usize) -> u64 {
        data[at.saturating_sub(64).max(self.params.min())..at].iter().fold(0, |h, &byte| self.step(h, byte))
    }

    #[inline(always)]
    fn step(&self, h: u64, byte: u8) -> u64 {
        (h << 1).wrapping_add(self.gear.0[usize::from(byte)])
    }

    /// All chunk lengths of an in-memory buffer.
    pub fn split<'a>(&'a self, mut data: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        std::iter::from_fn(move || {
            if data.is_empty() {
                return None;
            }
            let (chunk, rest) = data.split_at(self.cut(data));
            data = rest;
            Some(chunk)
        })
    }

    /// Chunks of a reader, each as an owned buffer; memory use is bounded by a few `max`.
    pub fn stream<R: Read>(&self, reader: R) -> ChunkStream<'_, R> {
        self.stream_with_buffer(reader, Vec::new())
    }

    /// Like [`Chunker::stream`], reading through `buffer` (its contents are ignored), which
    /// [`ChunkStream::into_buffer`] gives back for the next stream: a reused buffer costs no
    /// allocation, no fresh pages and no zeroing.
    pub fn stream_with_buffer<R: Read>(&self, reader: R, buffer: Vec<u8>) -> ChunkStream<'_, R> {
        ChunkStream { chunker: self, reader, buf: buffer, start: 0, end: 0, eof: false }
    }
}

/// The first size of a new read buffer; it doubles as long as reads fill it, up to twice
/// the largest chunk.
const FIRST_READ_SIZE: usize = 64 << 10;

/// Iterator over the chunks of a reader; see [`Chunker::stream`].
pub struct ChunkStream<'c, R> {
    chunker: &'c Chunker,
    reader: R,
    /// `buf[start..end]` is read and not yet cut. The bytes after `end` are initialised but
    /// hold nothing: they are what the next read fills, without zeroing them again.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
}

impl<R: Read> ChunkStream<'_, R> {
    /// Top the buffer up to at least `max` unread bytes, or to the end of the stream.
    fn fill(&mut self) -> io::Result<()> {
        let max = self.chunker.params.max();
        if self.eof || self.end - self.start >= max {
            return Ok(());
        }
        // Move the unread bytes to the front once less than `max` of room is left past
        // `start`, so that the buffer never needs more than twice `max`. (Moving them on every
        // call copied three bytes for every byte chunked.)
        if self.start > max {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        // Every pass reads, grows the buffer, or ends: the loop ends with the stream. The
        // buffer never has to grow past twice `max`: `start` is at most `max` here.
        while !self.eof && self.end - self.start < max {
            if self.end == self.buf.len() {
                let grown = (self.buf.len() * 2).max(FIRST_READ_SIZE).min(2 * max);
                self.buf.resize(grown, 0);
            }
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The reader is exhausted: every chunk still to come is already in memory.
    pub fn buffered_to_end(&self) -> bool {
        self.eof
    }

    /// The next chunk, copied into a buffer from `buffer` (called with the chunk's length;
    /// the buffer is cleared first), which is asked for only when there is a chunk: reusing
    /// buffers spares the allocator and the kernel the work of fresh pages for every chunk.
    pub fn next_with(&mut self, buffer: impl FnOnce(usize) -> Vec<u8>) -> Option<io::Result<Vec<u8>>> {
        if let Err(e) = self.fill() {
            return Some(Err(e));
        }
        let pending = &self.buf[self.start..self.end];
        if pending.is_empty() {
            return None;
        }
        let len = self.chunker.cut(pending);
        let mut chunk = buffer(len);
        chunk.clear();
        chunk.extend_from_slice(&pending[..len]);
        self.start += len;
        Some(Ok(chunk))
    }

    /// The read buffer, for [`Chunker::stream_with_buffer`].
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }
}

impl<R: Read> Iterator for ChunkStream<'_, R> {
    type Item = io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_with(Vec::with_capacity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seeded_bytes(seed: u64, len: usize) -> Vec<u8> {
        // xorshift64*: a fixed, dependency-free stream for reproducible boundaries.
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
            })
            .collect()
    }

    fn chunker(avg: u32) -> Chunker {
        Chunker::new(&GearTable::from_key(&[7; 32]), ChunkParams::new(avg).unwrap())
    }

    /// Any change here is a repository format change: boundaries must stay put.
    #[test]
    fn boundaries_of_a_seeded_stream_are_stable() {
        let data = seeded_bytes(42, 1 << 20);
        let sizes: Vec<usize> = chunker(1 << 14).split(&data).map(<[u8]>::len).collect();
        insta::assert_debug_snapshot!(sizes);
    }

    #[test]
    fn gear_table_depends_on_the_key() {
        let data = seeded_bytes(1, 1 << 20);
        let p = ChunkParams::new(1 << 13).unwrap();
        let a: Vec<usize> = Chunker::new(&GearTable::from_key(&[1; 32]), p).split(&data).map(<[u8]>::len).collect();
        let b: Vec<usize> = Chunker::new(&GearTable::from_key(&[2; 32]), p).split(&data).map(<[u8]>::len).collect();
        assert_ne!(a, b);
    }

    #[test]
    fn average_is_near_the_parameter() {
        let data = seeded_bytes(9, 8 << 20);
        let c = chunker(1 << 16);
        let n = c.split(&data).count();
        let avg = data.len() / n;
        assert!((1 << 15..1 << 17).contains(&avg), "average chunk {avg} too far from 64 KiB");
    }

    #[test]
    fn an_insertion_moves_only_nearby_boundaries() {
        let data = seeded_bytes(5, 4 << 20);
        let c = chunker(1 << 14);
        let mut edited = data.clone();
        edited.splice(1_000_000..1_000_000, *b"inserted!");
        let set = |d: &[u8]| c.split(d).map(blake3::hash).collect::<std::collections::HashSet<_>>();
        let (before, after) = (set(&data), set(&edited));
        let lost = before.difference(&after).count();
        assert!(lost <= 3, "an insertion changed {lost} chunks");
    }

    /// The cut as first written: one hash, byte by byte, from `min` on.
    fn sequential_cut(c: &Chunker, data: &[u8]) -> usize {
        let (min, max) = (c.params.min(), c.params.max());
        if data.len() <= min {
            return data.len();
        }
        let end = data.len().min(max);
        let normal = (c.params.avg as usize).min(end);
        let mut h = 0u64;
        for (i, &b) in data.iter().enumerate().take(end).skip(min) {
            h = (h << 1).wrapping_add(c.gear.0[usize::from(b)]);
            let mask = if i < normal { c.mask_small } else { c.mask_large };
            if h & mask == 0 {
                return i + 1;
            }
        }
        end
    }

    #[test]
    fn two_lane_cuts_are_the_sequential_ones_on_every_kind_of_data() {
        // Random bytes cut rarely where the mask is strict; runs of one byte never cut (the hash
        // goes constant), so lanes run to the end; a short period cuts often or never.
        let c = chunker(1 << 16);
        let random = seeded_bytes(11, 4 << 20);
        let zeros = vec![0u8; 1 << 20];
        let periodic: Vec<u8> = (0..(1 << 20)).map(|i| (i % 7) as u8).collect();
        for data in [&random[..], &zeros, &periodic] {
            let mut at = 0;
            while at < data.len() {
                let cut = c.cut(&data[at..]);
                assert_eq!(cut, sequential_cut(&c, &data[at..]), "cut at {at}");
                at += cut;
            }
        }
    }

    proptest! {
        #[test]
        fn two_lane_cut_equals_the_sequential_cut(seed in any::<u64>(), len in 0usize..600_000, avg_bits in 12u32..17, skew in 0usize..4096) {
            let data = seeded_bytes(seed, len + skew);
            let c = chunker(1 << avg_bits);
            prop_assert_eq!(c.cut(&data[skew..]), sequential_cut(&c, &data[skew..]));
        }

        #[test]
        fn chunks_concatenate_to_the_input(seed in any::<u64>(), len in 0usize..300_000, avg_bits in 12u32..15) {
            let data = seeded_bytes(seed, len);
            let c = chunker(1 << avg_bits);
            let chunks: Vec<&[u8]> = c.split(&data).collect();
            prop_assert_eq!(chunks.concat(), data.clone());
            for (i, ch) in chunks.iter().enumerate() {
                prop_assert!(ch.len() <= c.params().max());
                if i + 1 < chunks.len() {
                    prop_assert!(ch.len() > c.params().min());
                }
            }
        }

        #[test]
        fn streaming_equals_in_memory(seed in any::<u64>(), len in 0usize..200_000, read_size in 1usize..70_000) {
            let data = seeded_bytes(seed, len);
            let c = chunker(1 << 12);
            struct Trickle<'a>(&'a [u8], usize);
            impl Read for Trickle<'_> {
                fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                    let n = buf.len().min(self.1).min(self.0.len());
                    buf[..n].copy_from_slice(&self.0[..n]);
                    self.0 = &self.0[n..];
                    Ok(n)
                }
            }
            let streamed: Vec<Vec<u8>> = c.stream(Trickle(&data, read_size)).map(Result::unwrap).collect();
            let direct: Vec<Vec<u8>> = c.split(&data).map(<[u8]>::to_vec).collect();
            prop_assert_eq!(streamed, direct);
        }

        #[test]
        fn a_reused_buffer_changes_no_chunk(first in 0usize..200_000, second in 0usize..200_000, avg_bits in 12u32..15) {
            let c = chunker(1 << avg_bits);
            // A stream with larger chunks leaves a bigger buffer, full of its own bytes.
            let big = chunker(1 << 16);
            let seeded = seeded_bytes(1, first);
            let mut stream = big.stream(seeded.as_slice());
            while stream.next().is_some() {}
            let mut buffer = stream.into_buffer();
            for (seed, len) in [(2, second), (3, first)] {
                let data = seeded_bytes(seed, len);
                let mut stream = c.stream_with_buffer(data.as_slice(), buffer);
                let streamed: Vec<Vec<u8>> = stream.by_ref().map(Result::unwrap).collect();
                buffer = stream.into_buffer();
                let direct: Vec<Vec<u8>> = c.split(&data).map(<[u8]>::to_vec).collect();
                prop_assert_eq!(streamed, direct);
            }
        }
    }
}
