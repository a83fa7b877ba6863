//! Per-blob compression: zstd, or raw when zstd does not shrink the data.
//!
//! The framed form is one kind byte followed by the payload; it is what gets sealed.

use std::cell::RefCell;

/// Kind byte: payload stored as is.
pub const RAW: u8 = 0;
/// Kind byte: payload is one zstd frame.
pub const ZSTD: u8 = 1;

/// Why a framed blob could not be decompressed.
#[derive(Debug, thiserror::Error)]
pub enum DecompressError {
    #[error("empty blob")]
    Empty,
    #[error("unknown compression kind {0}")]
    UnknownKind(u8),
    #[error("zstd: {0}")]
    Zstd(std::io::Error),
    #[error("decompressed to {got} bytes, expected {expected}")]
    Length { got: usize, expected: usize },
}

thread_local! {
    // A compression context per thread and level: creating one per blob costs more than
    // compressing a small blob.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Run `f` with this thread's compression context for `level`; `None` if zstd refused it.
fn with_compressor<T>(level: i32, f: impl FnOnce(&mut zstd::bulk::Compressor<'static>) -> Option<T>) -> Option<T> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = zstd::bulk::Compressor::new(level).ok().map(|c| (level, c));
        }
        let (_, c) = slot.as_mut()?;
        f(c)
    })
}

/// Frame `data`, compressed at `level` if that helps; `level` 0 means never compress.
pub fn compress(data: &[u8], level: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 1);
    compress_into(data, level, &mut out);
    out
}

/// Append the framed form of `data` to `out` (which may already hold a prefix, such as room
/// for a nonce). zstd writes into spare capacity, so nothing is zero-filled first.
pub fn compress_into(data: &[u8], level: i32, out: &mut Vec<u8>) {
    let start = out.len();
    if level != 0 && !data.is_empty() && worth_compressing(data, level) {
        out.push(ZSTD);
        // Room for a frame one byte shorter than the data: anything longer is stored raw.
        out.reserve_exact(data.len() - 1);
        let mut cursor = std::io::Cursor::new(std::mem::take(out));
        cursor.set_position((start + 1) as u64);
        let written = with_compressor(level, |c| c.compress_to_buffer(data, &mut cursor).ok());
        *out = cursor.into_inner();
        if written.is_some_and(|n| n < data.len()) {
            return;
        }
        out.truncate(start);
    }
    out.reserve(data.len() + 1);
    out.push(RAW);
    out.extend_from_slice(data);
}

/// Chunks at least this long are tried on a sample first.
const SAMPLE_FROM: usize = 128 * 1024;
const SAMPLE_LEN: usize = 32 * 1024;

/// False when a sample from the middle of a large chunk does not shrink by 3%: media,
/// archives and encrypted data then cost a small fraction of a full compression attempt.
fn worth_compressing(data: &[u8], level: i32) -> bool {
    if data.len() < SAMPLE_FROM {
        return true;
    }
    let mid = data.len() / 2 - SAMPLE_LEN / 2;
    let sample = &data[mid..mid + SAMPLE_LEN];
    let compressed = with_compressor(level, |c| c.compress_to_buffer(sample, &mut Vec::with_capacity(SAMPLE_LEN)).ok());
    // No answer (the sample did not even fit) means it does not compress.
    compressed.is_some_and(|n| n < SAMPLE_LEN * 97 / 100)
}

/// Undo [`compress`] into `out` (cleared first), reusing its allocation.
pub fn decompress_into(framed: &[u8], raw_len: usize, out: &mut Vec<u8>) -> Result<(), DecompressError> {
    out.clear();
    let (&kind, payload) = framed.split_first().ok_or(DecompressError::Empty)?;
    match kind {
        RAW => out.extend_from_slice(payload),
        ZSTD => {
            out.reserve(raw_len);
            DECOMPRESSOR.with(|cell| {
                let mut slot = cell.borrow_mut();
                if slot.is_none() {
                    *slot = Some(zstd::bulk::Decompressor::new().map_err(DecompressError::Zstd)?);
                }
                let d = slot.as_mut().expect("just set");
                d.decompress_to_buffer(payload, out).map_err(DecompressError::Zstd)
            })?;
        }
        other => return Err(DecompressError::UnknownKind(other)),
    }
    if out.len() != raw_len {
        return Err(DecompressError::Length { got: out.len(), expected: raw_len });
    }
    Ok(())
}

/// Undo [`compress`]; `raw_len` is the expected plaintext length (from the index).
pub fn decompress(framed: &[u8], raw_len: usize) -> Result<Vec<u8>, DecompressError> {
    let mut out = Vec::new();
    decompress_into(framed, raw_len, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressible_data_is_compressed() {
        let data = b"hello hello hello hello hello hello hello hello".repeat(100);
        let framed = compress(&data, 3);
        assert_eq!(framed[0], ZSTD);
        assert!(framed.len() < data.len() / 10);
        assert_eq!(decompress(&framed, data.len()).unwrap(), data);
    }

    #[test]
    fn large_chunks_are_judged_by_a_sample() {
        let mut random = vec![0u8; 1 << 20];
        blake3::Hasher::new().update(b"r").finalize_xof().fill(&mut random);
        assert_eq!(compress(&random, 2)[0], RAW);
        let text = b"the quick brown fox jumps over the lazy dog ".repeat(30_000);
        let framed = compress(&text, 2);
        assert_eq!(framed[0], ZSTD);
        assert_eq!(decompress(&framed, text.len()).unwrap(), text);
    }

    #[test]
    fn incompressible_data_is_stored_raw() {
        let data: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let random = blake3::Hasher::new().update(&data).finalize_xof();
        let mut bytes = vec![0u8; 4096];
        random.clone().fill(&mut bytes);
        let framed = compress(&bytes, 3);
        assert_eq!(framed[0], RAW);
        assert_eq!(decompress(&framed, bytes.len()).unwrap(), bytes);
        assert!(decompress(&framed, 5).is_err(), "a wrong length is an error");
        assert_eq!(compress(b"", 3), vec![RAW]);
    }
}
