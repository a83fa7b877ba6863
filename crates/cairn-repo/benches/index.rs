//! Memory and lookup speed of the in-memory index with 10 million synthetic blobs.
//!
//! `cargo bench -p cairn-repo --bench index` (set `INDEX_BLOBS` for another count).
//! Prints bytes per blob as held by the index and as seen by the process (peak RSS growth).

use std::time::Instant;

use cairn_repo::id::Id;
use cairn_repo::index::{Index, IndexedPack};
use cairn_repo::pack::{BlobKind, PackEntry};

/// Peak resident set size of this process in bytes (Linux).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn id(n: u64) -> Id {
    Id(*blake3::hash(&n.to_le_bytes()).as_bytes())
}

fn main() {
    let blobs: u64 = std::env::var("INDEX_BLOBS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000_000);
    let per_pack = 5_000u64;
    let before = peak_rss();
    let started = Instant::now();
    let mut index = Index::default();
    // Feed it as index files would: one batch of packs at a time.
    let mut pack_no = 0u64;
    while pack_no * per_pack < blobs {
        let batch: Vec<IndexedPack> = (0..32)
            .map(|k| pack_no + k)
            .take_while(|p| p * per_pack < blobs)
            .map(|p| IndexedPack {
                id: id(u64::MAX - p),
                kind: BlobKind::Data,
                entries: (p * per_pack..((p + 1) * per_pack).min(blobs))
                    .map(|n| PackEntry {
                        kind: BlobKind::Data,
                        id: id(n),
                        offset: n as u32,
                        length: 1000,
                        raw_len: 2000,
                    })
                    .collect(),
            })
            .collect();
        pack_no += batch.len() as u64;
        index.stage(&batch);
    }
    index.commit();
    let built = started.elapsed();
    let rss = peak_rss().saturating_sub(before);
    assert_eq!(index.blob_count() as u64, blobs);

    let lookups = 1_000_000u64;
    let started = Instant::now();
    let mut found = 0u64;
    for n in 0..lookups {
        found += u64::from(index.contains(&id(n * 7 % blobs)));
        found += u64::from(index.contains(&id(blobs + n)));
    }
    let per_lookup = started.elapsed().as_nanos() as f64 / (2 * lookups) as f64;
    assert_eq!(found, lookups);

    println!("index of {blobs} blobs, built in {:.2}s", built.as_secs_f64());
    println!("  held by the index:   {:.1} bytes per blob", index.memory_bytes() as f64 / blobs as f64);
    println!("  peak RSS growth:     {:.1} bytes per blob (includes building)", rss as f64 / blobs as f64);
    println!("  lookup (hit + miss): {per_lookup:.0} ns each, including hashing the probe id");
}
