//! What the engine's integration tests share besides `cairn_repo::testing`: seeded data, a
//! flat backup of in-memory files, and a restore of one back into memory.

#![allow(dead_code)] // each test file uses its own part

use std::collections::HashMap;

use cairn_repo::restore::plan;
use cairn_repo::writer::WriteTotals;
use cairn_repo::{ChunkParams, Id, Node, NodeKind, Repository, Snapshot, Tree, WriterOptions};

/// Named file contents, in tree order.
pub type Files = Vec<(String, Vec<u8>)>;

/// `len` bytes of xorshift noise from `seed`.
pub fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Small packs, so a few files make many packs (and a backup many places to fail).
pub fn writer_options() -> WriterOptions {
    WriterOptions { compression: 1, pack_size: 32 * 1024, threads: 2 }
}

fn chunking() -> ChunkParams {
    ChunkParams::new(1 << 12).unwrap()
}

/// Write `files` as one flat tree and return the snapshot naming it (tagged `tag`, not
/// saved yet) with what the writer wrote.
pub fn write_files(
    repo: &Repository,
    files: &[(String, Vec<u8>)],
    tag: &str,
    options: WriterOptions,
) -> cairn_repo::Result<(Snapshot, WriteTotals)> {
    let writer = repo.writer(options);
    let mut tree = Tree::default();
    for (name, bytes) in files {
        let saved = writer.save_stream(bytes.as_slice(), chunking()).map_err(|e| match e {
            cairn_repo::SaveError::Repo(r) => r,
            cairn_repo::SaveError::Source(e) => panic!("reading memory cannot fail: {e}"),
        })?;
        let mut node = Node::new(name.as_ref(), NodeKind::File);
        node.size = saved.size;
        node.content = saved.content;
        tree.nodes.push(node);
    }
    let root = writer.save_tree(&mut tree)?;
    let totals = writer.finish()?;
    let snap = Snapshot {
        version: 1,
        time: chrono::Local::now().fixed_offset(),
        host: "test".into(),
        username: String::new(),
        job: None,
        tags: vec![tag.to_string()],
        paths: vec![],
        parent: None,
        sources: vec![cairn_repo::SourceEntry {
            name: "files".into(),
            kind: "files".into(),
            status: cairn_repo::SourceStatus::Ok,
            error: None,
            root: Some(root),
            chunking: chunking(),
            metadata: Default::default(),
            stats: Default::default(),
            warnings: vec![],
        }],
        duration_secs: 0.0,
        program: String::new(),
    };
    Ok((snap, totals))
}

/// Every file of a flat tree, restored into memory by name; a file whose blob is missing
/// from the index or cannot be read maps to `Err` saying which blob and why.
pub fn restore_tree(repo: &Repository, tree: &Tree) -> HashMap<String, Result<Vec<u8>, String>> {
    let contents: Vec<&[Id]> = tree.nodes.iter().map(|n| n.content.as_slice()).collect();
    let p = plan(&repo.index(), &contents);
    let mut out: Vec<Result<Vec<u8>, String>> = tree.nodes.iter().map(|n| Ok(vec![0; n.size as usize])).collect();
    for (file, blob) in &p.missing {
        out[*file] = Err(format!("blob {} is not in the index", blob.short()));
    }
    for pack in &p.packs {
        repo.fetch_pack(pack, |blob, bytes| {
            for t in &blob.targets {
                let slot = &mut out[t.file];
                match (&bytes, slot.as_mut()) {
                    (Ok(b), Ok(buf)) => buf[t.offset as usize..t.offset as usize + b.len()].copy_from_slice(b),
                    (Err(e), Ok(_)) => *slot = Err(format!("blob {}: {e}", blob.id.short())),
                    _ => {}
                }
            }
        });
    }
    tree.nodes.iter().map(|n| n.name.clone()).zip(out).collect()
}
