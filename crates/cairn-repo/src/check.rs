//! Repository integrity checks.
//!
//! Structure (always): every index file opens; every indexed pack exists and is long enough;
//! every snapshot opens; every tree it reaches loads and every blob it names is indexed.
//! Data (`read_data`): every pack is read whole, its name matches its BLAKE3, and every blob
//! in it authenticates and hashes to its id. Damaged blobs are traced back to the snapshots
//! and paths that depend on them.
//!
//! Packs prune marked for deletion (see [`crate::prune`]) are normal while their grace period
//! runs: they are reported as notes, not as unindexed packs, and a snapshot blob found only
//! in one counts as present (prune revives such a pack instead of deleting it). Their data
//! is not read: no index file names them.

use std::collections::{HashMap, HashSet};

use crate::error::Result;
use crate::id::Id;
use crate::index::IdPrefix;
use crate::pack::{pack_key, BlobKind};
use crate::repo::Repository;
use crate::tree::NodeKind;

/// Progress callbacks of a check.
pub trait CheckProgress {
    /// `done` of `total` packs read (data check only).
    fn packs_read(&self, _done: u64, _total: u64) {}
}

impl CheckProgress for () {}

/// A snapshot path that needs a damaged or missing blob.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Affected {
    pub snapshot: String,
    pub source: String,
    pub path: String,
}

/// Everything a check found.
#[derive(Debug, Default, serde::Serialize)]
pub struct CheckReport {
    pub snapshots: usize,
    pub packs: usize,
    pub blobs: usize,
    pub packs_read: usize,
    /// Problems that make data unrestorable or the repository inconsistent.
    pub errors: Vec<String>,
    /// Harmless findings, such as packs left by an interrupted backup.
    pub warnings: Vec<String>,
    /// The normal state of things worth knowing, such as packs waiting to be deleted by prune.
    pub notes: Vec<String>,
    /// Packs whose bytes are damaged, with what is wrong.
    pub damaged_packs: Vec<(String, String)>,
    /// Snapshot paths that depend on damaged or missing blobs.
    pub affected: Vec<Affected>,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Run the check.
pub fn check(repo: &Repository, read_data: bool, progress: &dyn CheckProgress) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    repo.reload_index()?;
    for damaged in repo.damaged_index_files() {
        report.errors.push(format!("{damaged} (its packs were read from their own headers instead)"));
    }
    for damaged in repo.damaged_marks() {
        report.errors.push(format!("{damaged} (the next prune marks its packs again and deletes it)"));
    }
    let stored: HashMap<String, u64> = repo.storage().list("packs/")?.into_iter().map(|e| (e.key, e.size)).collect();
    let mut bad_blobs = check_packs_exist(repo, &stored, &mut report);
    if read_data {
        bad_blobs.extend(read_all_packs(repo, &stored, &mut report, progress));
    }
    walk_snapshots(repo, &bad_blobs, &mut report)?;
    Ok(report)
}

/// Compare the index with the packs in storage; returns blobs whose pack is missing.
fn check_packs_exist(repo: &Repository, stored: &HashMap<String, u64>, report: &mut CheckReport) -> HashSet<IdPrefix> {
    let index = repo.index();
    report.blobs = index.blob_count();
    let mut needed: HashMap<u32, u64> = HashMap::new();
    for (_, loc) in index.blobs() {
        let end = u64::from(loc.offset) + u64::from(loc.length);
        let e = needed.entry(loc.pack).or_default();
        *e = (*e).max(end);
    }
    let mut bad_packs = HashSet::new();
    for (pos, (id, _)) in index.packs().enumerate() {
        report.packs += 1;
        let key = pack_key(&id);
        match stored.get(&key) {
            None => {
                report.errors.push(format!("pack {}: named by the index but missing from storage", id.short()));
                bad_packs.insert(pos as u32);
            }
            Some(&size) if size < needed.get(&(pos as u32)).copied().unwrap_or(0) => {
                report.errors.push(format!("pack {}: truncated ({size} bytes)", id.short()));
                bad_packs.insert(pos as u32);
            }
            Some(_) => {}
        }
    }
    let (mut unindexed, mut marked, mut marked_bytes) = (0, 0, 0);
    for (key, size) in stored {
        match key.rsplit('/').next().and_then(|n| n.parse::<Id>().ok()) {
            Some(id) if index.has_pack(&id) => {}
            Some(id) if index.is_marked(&id) => {
                marked += 1;
                marked_bytes += size;
            }
            _ => unindexed += 1,
        }
    }
    if unindexed > 0 {
        report.warnings.push(format!(
            "{unindexed} pack(s) are not in any index (left by an interrupted backup or prune); they are unused and harmless, and the next prune marks them for deletion"
        ));
    }
    if marked > 0 {
        report.notes.push(format!(
            "{marked} pack(s) ({marked_bytes} bytes) are marked for deletion by prune; a later prune deletes them once their grace period is over"
        ));
    }
    index.blobs().filter(|(_, loc)| bad_packs.contains(&loc.pack)).map(|(id, _)| id).collect()
}

/// Read every indexed pack and verify it; returns the damaged blobs.
fn read_all_packs(
    repo: &Repository,
    stored: &HashMap<String, u64>,
    report: &mut CheckReport,
    progress: &dyn CheckProgress,
) -> HashSet<IdPrefix> {
    let index = repo.index();
    let mut by_pack: HashMap<u32, Vec<(IdPrefix, crate::index::BlobLoc)>> = HashMap::new();
    for (id, loc) in index.blobs() {
        by_pack.entry(loc.pack).or_default().push((id, loc));
    }
    let packs: Vec<(Id, BlobKind)> = index.packs().collect();
    let total = packs.len() as u64;
    let mut bad = HashSet::new();
    for (pos, (pack, _)) in packs.iter().enumerate() {
        progress.packs_read(pos as u64, total);
        let key = pack_key(pack);
        let indexed = by_pack.remove(&(pos as u32)).unwrap_or_default();
        if !stored.contains_key(&key) {
            continue;
        }
        let bytes = match repo.storage().get(&key) {
            Ok(b) => b,
            Err(e) => {
                report.errors.push(format!("pack {}: cannot be read: {e}", pack.short()));
                bad.extend(indexed.iter().map(|(id, _)| *id));
                continue;
            }
        };
        report.packs_read += 1;
        let problems = verify_pack(repo, pack, &bytes, &indexed, &mut bad);
        if !problems.is_empty() {
            report.errors.push(format!("pack {} is damaged: {}", pack.short(), problems.join("; ")));
            report.damaged_packs.push((pack.to_hex(), problems.join("; ")));
        }
    }
    progress.packs_read(total, total);
    bad
}

/// Check one pack's bytes against its name, its header and the index; collect bad blobs.
fn verify_pack(
    repo: &Repository,
    pack: &Id,
    bytes: &[u8],
    indexed: &[(IdPrefix, crate::index::BlobLoc)],
    bad: &mut HashSet<IdPrefix>,
) -> Vec<String> {
    let mut problems = Vec::new();
    if Id::of_stored(bytes) != *pack {
        problems.push("content does not match its name".to_string());
    }
    // The header holds the full ids that authenticating a blob needs.
    let header = match crate::pack::read_header(repo.keys(), bytes) {
        Ok(h) => h,
        Err(e) => {
            problems.push(format!("header: {e}; its {} blob(s) cannot be verified", indexed.len()));
            bad.extend(indexed.iter().map(|(id, _)| *id));
            return problems;
        }
    };
    let by_offset: HashMap<u32, &crate::pack::PackEntry> = header.iter().map(|e| (e.offset, e)).collect();
    for (prefix, loc) in indexed {
        let Some(entry) = by_offset.get(&loc.offset).filter(|e| prefix.matches(&e.id) && e.length == loc.length) else {
            problems.push(format!("blob {}: in the index but not in the pack header", hex::encode(&prefix.0[..4])));
            bad.insert(*prefix);
            continue;
        };
        let range = entry.offset as usize..(entry.offset + entry.length) as usize;
        let result = bytes
            .get(range)
            .ok_or_else(|| "blob lies past the end".to_string())
            .and_then(|s| repo.open_blob(&entry.id, s, entry.raw_len));
        if let Err(e) = result {
            problems.push(format!("blob {}: {e}", entry.id.short()));
            bad.insert(*prefix);
        }
    }
    problems
}

/// Load every snapshot and walk its trees; record missing blobs and paths using bad ones.
fn walk_snapshots(repo: &Repository, bad: &HashSet<IdPrefix>, report: &mut CheckReport) -> Result<()> {
    let mut trees_ok: HashSet<Id> = HashSet::new();
    for id in repo.snapshot_ids()? {
        let snap = match repo.load_snapshot(&id) {
            Ok(s) => s,
            Err(e) => {
                report.errors.push(format!("snapshot {}: {e}", id.short()));
                continue;
            }
        };
        report.snapshots += 1;
        for source in &snap.sources {
            let Some(root) = source.root else { continue };
            let mut stack = vec![(root, String::new())];
            // Bounded by the number of trees: each tree is expanded once per snapshot.
            let mut seen = HashSet::new();
            while let Some((tree_id, path)) = stack.pop() {
                if !seen.insert(tree_id) {
                    continue;
                }
                let affected =
                    |p: &str| Affected { snapshot: id.short(), source: source.name.clone(), path: p.to_string() };
                if bad.contains(&IdPrefix::of(&tree_id)) {
                    report.affected.push(affected(if path.is_empty() { "/" } else { &path }));
                }
                let tree = match repo.load_tree(&tree_id) {
                    Ok(t) => t,
                    Err(e) => {
                        report.errors.push(format!("snapshot {} source {} path /{path}: {e}", id.short(), source.name));
                        continue;
                    }
                };
                trees_ok.insert(tree_id);
                for node in &tree.nodes {
                    let child = format!("{path}/{}", node.name);
                    match node.kind {
                        NodeKind::Dir => {
                            if let Some(sub) = node.subtree {
                                stack.push((sub, child));
                            }
                        }
                        NodeKind::File => {
                            let index = repo.index();
                            // `get`, not `contains`: a blob in a marked pack can be read.
                            if let Some(missing) = node.content.iter().find(|b| index.get(b).is_none()) {
                                report.errors.push(format!(
                                    "snapshot {} {child}: chunk {} is missing",
                                    id.short(),
                                    missing.short()
                                ));
                                report.affected.push(affected(&child));
                            } else if node.content.iter().any(|b| bad.contains(&IdPrefix::of(b))) {
                                report.affected.push(affected(&child));
                            }
                        }
                        NodeKind::Symlink => {}
                    }
                }
            }
        }
    }
    Ok(())
}
