//! Throughput of the write pipeline alone (chunk → hash → compress → seal → pack), without
//! the file system: data comes from memory and packs go to a storage that drops them.
//!
//! `cargo bench -p cairn-repo --bench pipeline` (set `PIPELINE_MIB` for another size).

use std::sync::Arc;
use std::time::Instant;

use cairn_repo::{ChunkParams, WriterOptions};
use cairn_storage::{Entry, MemStorage, Result, Storage};

/// Keeps small objects (config, keys) and drops packs, so memory stays flat.
struct Sink(MemStorage);

impl Storage for Sink {
    fn location(&self) -> String {
        "sink".into()
    }
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        if key.starts_with("packs/") {
            return Ok(());
        }
        self.0.put(key, data)
    }
    fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.0.get(key)
    }
    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.0.get_range(key, offset, len)
    }
    fn list(&self, prefix: &str) -> Result<Vec<Entry>> {
        self.0.list(prefix)
    }
    fn delete(&self, key: &str) -> Result<()> {
        self.0.delete(key)
    }
    fn exists(&self, key: &str) -> Result<bool> {
        self.0.exists(key)
    }
}

fn random(len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new().update(b"random").finalize_xof().fill(&mut out);
    out
}

/// Log-like lines from a small vocabulary: compresses about 4x with zstd, like real logs.
fn text(len: usize) -> Vec<u8> {
    let words = [
        "GET",
        "POST",
        "/api/items",
        "/login",
        "status=200",
        "status=404",
        "user=alice",
        "user=bob",
        "took",
        "ms",
        "INFO",
        "WARN",
        "cache",
        "miss",
        "hit",
    ];
    let mut out = Vec::with_capacity(len + 100);
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut line = 0u64;
    while out.len() < len {
        line += 1;
        out.extend_from_slice(
            format!("2026-11-23T10:{:02}:{:02}.{:03}Z ", line / 60 % 60, line % 60, line % 1000).as_bytes(),
        );
        for _ in 0..8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(words[(x % words.len() as u64) as usize].as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(format!("id={}\n", x % 100_000).as_bytes());
    }
    out.truncate(len);
    out
}

fn run(name: &str, data: &[u8], compression: i32) {
    let storage = Arc::new(Sink(MemStorage::new()));
    let repo = cairn_repo::testing::repo_on(storage);
    let started = Instant::now();
    let writer = repo.writer(WriterOptions { compression, ..WriterOptions::default() });
    writer.save_stream(data, ChunkParams::FILES).expect("save");
    let totals = writer.finish().expect("finish");
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{name:<28} {:>7.0} MB/s   stored {:>5.1}% of input",
        data.len() as f64 / secs / 1e6,
        100.0 * totals.bytes_stored as f64 / data.len() as f64
    );
}

/// The caller-thread stages alone: chunking, then chunking plus keyed hashing.
fn stages(data: &[u8]) {
    let keys = cairn_repo::crypto::Keys::generate();
    let chunker = cairn_repo::chunker::Chunker::new(keys.gear(), ChunkParams::FILES);
    let started = Instant::now();
    let n = chunker.split(data).count();
    let secs = started.elapsed().as_secs_f64();
    println!("{:<28} {:>7.0} MB/s   ({n} chunks)", "chunking only, one thread", data.len() as f64 / secs / 1e6);
    let started = Instant::now();
    // Fold over the ids so the hashing cannot be optimised away.
    let mix = chunker.split(data).fold(0u8, |acc, c| acc ^ keys.blob_id(c).0[0]);
    let secs = started.elapsed().as_secs_f64();
    println!("{:<28} {:>7.0} MB/s   (mix {mix:02x})", "chunking + hashing", data.len() as f64 / secs / 1e6);
}

fn main() {
    let mib: usize = std::env::var("PIPELINE_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(512);
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    println!("pipeline, {mib} MiB per run, {threads} threads");
    let r = random(mib << 20);
    stages(&r);
    run("random, zstd-3", &r, 3);
    drop(r);
    let t = text(mib << 20);
    for level in [1, 2, 3] {
        run(&format!("text, zstd-{level}"), &t, level);
    }
    run("text, no compression", &t, 0);
}
