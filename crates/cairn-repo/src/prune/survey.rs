//! The survey: everything a prune run reads before it changes anything, and which blobs
//! the snapshots use.
//!
//! Reading order matters. Snapshots are listed first: every index file a listed snapshot
//! needs was written before it, so the index read next covers its trees. Then marks, then
//! index files: only prune moves packs between the two, and only one prune runs at a time,
//! so one pass of each is consistent. Packs are listed last, so every pack an index file or
//! mark names and that still exists is in the listing. A snapshot saved after the listing
//! is not counted — that is what the grace period is for.
//!
//! After the survey the run keeps it as its view of the repository: the sweep and the mark
//! step update it as they write and delete.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::mark::Mark;
use super::{Amount, IndexFile, PruneError, PruneProgress, WaitingMark};
use crate::error::RepoError;
use crate::id::Id;
use crate::index::{Index, IndexedPack};
use crate::repo::Repository;

/// What a prune run knows of the repository.
pub(super) struct Survey {
    /// Taken before snapshots are listed: a mark due at `now` is due for every snapshot seen.
    pub now: DateTime<Utc>,
    pub snapshots: usize,
    /// Every blob (data and tree) the snapshots reach.
    pub used: HashSet<Id>,
    pub used_bytes: u64,
    /// Readable marks with their keys.
    pub marks: Vec<(String, Mark)>,
    /// Keys of marks that failed to open, with the error.
    pub damaged_marks: Vec<(String, String)>,
    pub index_files: Vec<IndexFile>,
    /// Packs in storage and their sizes.
    pub stored: HashMap<Id, u64>,
}

impl Survey {
    /// Read the repository and walk every snapshot; fails without side effects if anything
    /// that decides what is used cannot be read.
    pub fn take(repo: &Repository, progress: &dyn PruneProgress) -> Result<Survey, PruneError> {
        let now = Utc::now();
        let (snapshots, roots) = snapshot_roots(repo)?;
        let marks = repo.read_marks()?;
        let (index_files, damaged) = repo.read_index_files(|files: &mut Vec<IndexFile>, key, packs| {
            files.push(IndexFile { key: key.to_string(), packs });
        })?;
        if let Some(e) = damaged.into_iter().next() {
            // Its packs would look unindexed and be marked; better to stop and let check
            // report the damage.
            return Err(PruneError::Incomplete { what: "an index file".into(), source: e });
        }
        let stored = stored_packs(repo)?;

        // Trees may sit in marked packs (a backup reused a blob just before it was marked).
        let mut lookup = Index::default();
        for file in &index_files {
            lookup.stage(&file.packs);
        }
        lookup.commit();
        let marked: Vec<IndexedPack> = marks.packs().map(|p| p.pack.clone()).collect();
        lookup.add_marked_packs(&marked);
        let used = walk(repo, &lookup, &roots, progress)?;
        let used_bytes = used.iter().filter_map(|id| lookup.get(id)).map(|loc| u64::from(loc.length)).sum();

        Ok(Survey {
            now,
            snapshots,
            used,
            used_bytes,
            damaged_marks: marks.damaged.iter().map(|(key, e)| (key.clone(), e.to_string())).collect(),
            marks: marks.marks,
            index_files,
            stored,
        })
    }

    /// Every pack an index file names, once.
    pub fn live_packs(&self) -> HashMap<Id, &IndexedPack> {
        let mut live = HashMap::new();
        for file in &self.index_files {
            for pack in &file.packs {
                live.entry(pack.id).or_insert(pack);
            }
        }
        live
    }

    /// The marks still waiting, with what each will reclaim, soonest due first.
    pub fn waiting(&self, grace: Duration) -> Vec<WaitingMark> {
        let live = self.live_packs();
        let mut waiting: Vec<WaitingMark> = self
            .marks
            .iter()
            .map(|(key, mark)| {
                let mut pending = Amount::default();
                for p in mark.packs.iter().filter(|p| !live.contains_key(&p.pack.id)) {
                    if let Some(&size) = self.stored.get(&p.pack.id) {
                        pending.add(size);
                    }
                }
                WaitingMark { mark: key.clone(), created: mark.created, due: mark.due(grace), pending }
            })
            .collect();
        waiting.sort_by(|a, b| a.due.cmp(&b.due).then_with(|| a.mark.cmp(&b.mark)));
        waiting
    }
}

/// How many snapshots there are, and the root trees of each with the snapshot's id. A
/// snapshot deleted between listing and reading was forgotten: it no longer counts.
fn snapshot_roots(repo: &Repository) -> Result<(usize, Vec<(Id, Id)>), PruneError> {
    let (mut count, mut roots) = (0, Vec::new());
    for id in repo.snapshot_ids()? {
        let snap = match repo.load_snapshot(&id) {
            Ok(s) => s,
            Err(RepoError::Storage(e)) if e.is_not_found() => continue,
            Err(source) => return Err(PruneError::Incomplete { what: format!("snapshot {}", id.short()), source }),
        };
        count += 1;
        roots.extend(snap.sources.iter().filter_map(|s| s.root).map(|root| (id, root)));
    }
    Ok((count, roots))
}

/// Packs in storage by id, with their sizes; keys that are not pack names are skipped.
fn stored_packs(repo: &Repository) -> Result<HashMap<Id, u64>, PruneError> {
    let mut stored = HashMap::new();
    for entry in repo.storage().list("packs/")? {
        if let Some(id) = entry.key.rsplit('/').next().and_then(|n| n.parse::<Id>().ok()) {
            stored.insert(id, entry.size);
        }
    }
    Ok(stored)
}

/// Every blob reachable from `roots`. Each tree is loaded once, however many snapshots
/// share it.
fn walk(
    repo: &Repository,
    lookup: &Index,
    roots: &[(Id, Id)],
    progress: &dyn PruneProgress,
) -> Result<HashSet<Id>, PruneError> {
    let mut used = HashSet::new();
    // Apart from `used`: a data blob may have the same id (the same bytes) as a tree.
    let mut trees = HashSet::new();
    for (done, (snapshot, root)) in roots.iter().enumerate() {
        progress.snapshots_walked(done, roots.len());
        let mut stack = vec![*root];
        while let Some(tree_id) = stack.pop() {
            if !trees.insert(tree_id) {
                continue;
            }
            used.insert(tree_id);
            let tree = repo.load_tree_in(lookup, &tree_id).map_err(|source| PruneError::Incomplete {
                what: format!("tree {} of snapshot {}", tree_id.short(), snapshot.short()),
                source,
            })?;
            for node in tree.nodes {
                used.extend(node.content);
                stack.extend(node.subtree);
            }
        }
    }
    progress.snapshots_walked(roots.len(), roots.len());
    Ok(used)
}
