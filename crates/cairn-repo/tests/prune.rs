//! Prune: what it reclaims, what it must never lose, and what a crash or a concurrent
//! backup leaves.
//!
//! Every test ends the same way: every remaining snapshot restores byte for byte, and
//! `check --read-data` finds no errors.

mod common;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_repo::prune::PruneError;
use cairn_repo::testing::{repo_on, secret};
use cairn_repo::writer::WriteTotals;
use cairn_repo::{check, ChunkParams, Id, PruneOptions, PruneReport, Repository, Snapshot, WriterOptions};
use cairn_storage::{Entry, LocalStorage, MemStorage, Storage, StorageError};
use common::{data, restore_tree, write_files, writer_options, Files};

fn prune_options(grace: Duration) -> PruneOptions {
    PruneOptions { grace, repack_threshold: 0.5, dry_run: false, pack_size: 32 * 1024 }
}

/// Mark, then (grace 0) sweep: the two runs that reclaim everything unused.
fn prune_twice(repo: &Repository) -> (PruneReport, PruneReport) {
    let first = repo.prune(&prune_options(Duration::ZERO)).unwrap();
    let second = repo.prune(&prune_options(Duration::ZERO)).unwrap();
    (first, second)
}

/// Back up `files` as one flat tree with a tag; returns the snapshot and what was written.
fn backup_with(
    repo: &Repository,
    files: &[(String, Vec<u8>)],
    tag: &str,
    options: WriterOptions,
) -> cairn_repo::Result<(Id, WriteTotals)> {
    let (snapshot, totals) = write_files(repo, files, tag, options)?;
    Ok((repo.save_snapshot(&snapshot)?, totals))
}

fn backup(repo: &Repository, files: &[(String, Vec<u8>)]) -> Id {
    backup_with(repo, files, "", writer_options()).unwrap().0
}

/// Every file of a snapshot, restored into memory; `Err` names the first file that failed.
fn restore_snapshot(repo: &Repository, snap: &Snapshot) -> Result<HashMap<String, Vec<u8>>, String> {
    let tree = repo.load_tree(&snap.sources[0].root.unwrap()).map_err(|e| e.to_string())?;
    restore_tree(repo, &tree)
        .into_iter()
        .map(|(name, bytes)| bytes.map(|b| (name.clone(), b)).map_err(|e| format!("{name}: {e}")))
        .collect()
}

fn assert_restores(repo: &Repository, id: &Id, files: &[(String, Vec<u8>)], context: &str) {
    let snap = repo.load_snapshot(id).unwrap_or_else(|e| panic!("{context}: snapshot {}: {e}", id.short()));
    assert_restores_snapshot(repo, id, &snap, files, context);
}

fn assert_restores_snapshot(repo: &Repository, id: &Id, snap: &Snapshot, files: &[(String, Vec<u8>)], context: &str) {
    let restored =
        restore_snapshot(repo, snap).unwrap_or_else(|e| panic!("{context}: snapshot {} fails: {e}", id.short()));
    assert_eq!(restored.len(), files.len(), "{context}");
    for (name, bytes) in files {
        assert!(restored[name] == *bytes, "{context}: {name} of snapshot {} differs", id.short());
    }
}

fn assert_checks_clean(repo: &Repository, context: &str) -> check::CheckReport {
    let report = check::check(repo, true, &()).unwrap();
    assert!(report.is_ok(), "{context}: {:?}", report.errors);
    report
}

/// Everything in storage, for before/after comparisons.
fn listing(storage: &dyn Storage) -> Vec<Entry> {
    storage.list("").unwrap()
}

fn stored_bytes(storage: &dyn Storage, prefix: &str) -> u64 {
    storage.list(prefix).unwrap().iter().map(|e| e.size).sum()
}

/// Six files; generation `g` shares three of them with generation `g - 1`.
fn generation(g: u64) -> Files {
    (0..6)
        .map(|i| {
            let seed = if i < 3 { (g / 2) * 100 + i } else { g * 100 + i };
            (format!("f{i}"), data(seed, 20_000 + i as usize * 7_000))
        })
        .collect()
}

#[test]
fn mark_then_sweep_reclaims_what_deleted_snapshots_used() {
    let mem = Arc::new(MemStorage::new());
    let repo = repo_on(mem.clone());
    let ids: Vec<Id> = (1..=4).map(|g| backup(&repo, &generation(g))).collect();
    let packs_before = stored_bytes(mem.as_ref(), "packs/");
    repo.delete_snapshot(&ids[0]).unwrap();
    repo.delete_snapshot(&ids[2]).unwrap();

    let (mark, sweep) = prune_twice(&repo);
    assert_eq!(mark.snapshots, 2);
    assert!(mark.mark.is_some() && mark.unused.packs + mark.repacked.packs > 0, "{mark:#?}");
    assert_eq!(mark.deleted, Default::default(), "the first run only marks");
    assert_eq!(mark.waiting.len(), 1);
    assert_eq!(mark.reclaimable_later(), mark.unused.bytes + mark.repacked.bytes);
    assert_eq!((sweep.marks_deleted, sweep.deleted), (1, mark.waiting[0].pending), "{sweep:#?}");
    assert_eq!(sweep.revived.packs, 0);
    assert!(sweep.mark.is_none() && sweep.waiting.is_empty(), "nothing left to mark: {sweep:#?}");
    assert!(stored_bytes(mem.as_ref(), "packs/") < packs_before);
    assert!(mem.list("marks/").unwrap().is_empty());

    let repo = Repository::open(mem.clone(), &secret()).unwrap();
    for (id, g) in [(ids[1], 2), (ids[3], 4)] {
        assert_restores(&repo, &id, &generation(g), "after prune");
    }
    let report = assert_checks_clean(&repo, "after prune");
    assert!(report.warnings.is_empty() && report.notes.is_empty(), "{report:#?}");

    // Nothing more to do: a third run changes nothing.
    let before = listing(mem.as_ref());
    let third = repo.prune(&prune_options(Duration::ZERO)).unwrap();
    assert!(third.mark.is_none() && third.deleted.packs == 0 && third.index_files_written == 0, "{third:#?}");
    assert_eq!(listing(mem.as_ref()), before);
}

#[test]
fn a_mostly_unused_pack_is_repacked_above_the_threshold_only() {
    let mem = Arc::new(MemStorage::new());
    let repo = repo_on(mem.clone());
    // One data pack: 200 kB that will be unused, 30 kB that stays used.
    let big = WriterOptions { pack_size: 1 << 20, ..writer_options() };
    let small: Files = vec![("b".into(), data(2, 30_000))];
    let both: Files = vec![("a".into(), data(1, 200_000)), small[0].clone()];
    let (first, _) = backup_with(&repo, &both, "", big).unwrap();
    let (second, _) = backup_with(&repo, &small, "", big).unwrap();
    repo.delete_snapshot(&first).unwrap();
    let data_pack = |repo: &Repository| {
        repo.index().packs().filter(|(_, k)| *k == cairn_repo::pack::BlobKind::Data).map(|(p, _)| p).collect::<Vec<_>>()
    };
    let original = data_pack(&repo);
    assert_eq!(original.len(), 1);

    // About 87% unused: under a 0.9 threshold the pack stays.
    let keep = PruneOptions { repack_threshold: 0.9, ..prune_options(Duration::ZERO) };
    let report = repo.prune(&keep).unwrap();
    assert_eq!((report.repacked.packs, report.written.packs), (0, 0), "{report:#?}");
    assert_eq!(report.unused.packs, 1, "the first snapshot's tree pack is unused: {report:#?}");
    assert_eq!(data_pack(&repo), original);
    assert_restores(&repo, &second, &small, "kept");

    // Over a 0.5 threshold it is repacked: a new, small pack holds the used blobs.
    let report = repo.prune(&prune_options(Duration::ZERO)).unwrap();
    assert_eq!(report.repacked.packs, 1, "{report:#?}");
    assert_eq!(report.written.packs, 1);
    assert!(report.written.bytes < report.repacked.bytes / 4, "{report:#?}");
    assert_eq!(report.deleted.packs, 1, "the tree pack marked by the first run");
    let repacked = data_pack(&repo);
    assert_eq!(repacked.len(), 1);
    assert_ne!(repacked, original);
    assert_restores(&repo, &second, &small, "repacked, old pack only marked");

    let report = repo.prune(&prune_options(Duration::ZERO)).unwrap();
    assert_eq!(report.deleted.packs, 1, "{report:#?}");
    assert!(!mem.exists(&cairn_repo::pack::pack_key(&original[0])).unwrap());
    let repo = Repository::open(mem.clone(), &secret()).unwrap();
    assert_restores(&repo, &second, &small, "after the sweep");
    let check = assert_checks_clean(&repo, "after the sweep");
    assert!(check.warnings.is_empty() && check.notes.is_empty(), "{check:#?}");
}

#[test]
fn a_dry_run_writes_nothing() {
    let mem = Arc::new(MemStorage::new());
    let repo = repo_on(mem.clone());
    let ids: Vec<Id> = (1..=3).map(|g| backup(&repo, &generation(g))).collect();
    repo.delete_snapshot(&ids[0]).unwrap();
    let dry = PruneOptions { dry_run: true, ..prune_options(Duration::ZERO) };

    let before = listing(mem.as_ref());
    let plan = repo.prune(&dry).unwrap();
    assert_eq!(listing(mem.as_ref()), before, "a dry run of the mark step wrote or deleted something");
    assert!(plan.dry_run && plan.mark.is_some() && plan.unused.packs + plan.repacked.packs > 0, "{plan:#?}");

    // The real run does what the plan said.
    let real = repo.prune(&prune_options(Duration::ZERO)).unwrap();
    assert_eq!((real.unused, real.repacked, real.kept), (plan.unused, plan.repacked, plan.kept));

    let before = listing(mem.as_ref());
    let plan = repo.prune(&dry).unwrap();
    assert_eq!(listing(mem.as_ref()), before, "a dry run of the sweep wrote or deleted something");
    assert!(plan.deleted.packs > 0 && plan.marks_deleted == 1, "{plan:#?}");
    let real = repo.prune(&prune_options(Duration::ZERO)).unwrap();
    assert_eq!((real.deleted, real.marks_deleted), (plan.deleted, plan.marks_deleted));
}

#[test]
fn a_backup_that_reused_blobs_before_the_mark_revives_them() {
    let mem = Arc::new(MemStorage::new());
    let repo = repo_on(mem.clone());
    let old = backup(&repo, &generation(7));
    repo.delete_snapshot(&old).unwrap();
    // Another process opens the repository while the blobs are still indexed...
    let other = Repository::open(mem.clone(), &secret()).unwrap();
    let mark = repo.prune(&prune_options(Duration::ZERO)).unwrap();
    assert!(mark.unused.packs > 0, "{mark:#?}");
    // ...and saves, after the mark, a snapshot that reuses all of them.
    let (new, totals) = backup_with(&other, &generation(7), "", writer_options()).unwrap();
    assert_eq!(totals.blobs_new, 0, "everything was deduplicated against the stale index");

    // Marked blobs can be read: the snapshot restores and checks clean before the sweep.
    let fresh = Repository::open(mem.clone(), &secret()).unwrap();
    assert_restores(&fresh, &new, &generation(7), "before the sweep");
    let check = assert_checks_clean(&fresh, "before the sweep");
    assert!(check.notes.iter().any(|n| n.contains("marked for deletion by prune")), "{check:#?}");
    assert!(check.warnings.is_empty(), "{check:#?}");

    let sweep = repo.prune(&prune_options(Duration::ZERO)).unwrap();
    assert_eq!(sweep.revived.packs, mark.unused.packs, "{sweep:#?}");
    assert_eq!(sweep.deleted.packs, 0, "{sweep:#?}");
    let fresh = Repository::open(mem.clone(), &secret()).unwrap();
    assert_restores(&fresh, &new, &generation(7), "after the sweep");
    let check = assert_checks_clean(&fresh, "after the sweep");
    assert!(check.notes.is_empty() && check.warnings.is_empty(), "{check:#?}");
    // Revived packs are ordinary again: a later backup reuses them.
    let (_, totals) = backup_with(&fresh, &generation(7), "", writer_options()).unwrap();
    assert_eq!(totals.blobs_new, 0);
}

#[test]
fn a_repository_opened_after_the_mark_does_not_reuse_marked_blobs() {
    let mem = Arc::new(MemStorage::new());
    let repo = repo_on(mem.clone());
    let old = backup(&repo, &generation(8));
    repo.delete_snapshot(&old).unwrap();
    repo.prune(&prune_options(Duration::ZERO)).unwrap();

    let later = Repository::open(mem.clone(), &secret()).unwrap();
    let (new, totals) = backup_with(&later, &generation(8), "", writer_options()).unwrap();
    assert_eq!(totals.blobs_new, totals.blobs_seen, "no blob of a marked pack is reused: {totals:?}");
    assert!(totals.blobs_new > 0);

    let sweep = repo.prune(&prune_options(Duration::ZERO)).unwrap();
    assert!(sweep.deleted.packs > 0 && sweep.revived.packs == 0, "{sweep:#?}");
    let fresh = Repository::open(mem.clone(), &secret()).unwrap();
    assert_restores(&fresh, &new, &generation(8), "after the sweep");
    assert_checks_clean(&fresh, "after the sweep");
}

#[test]
fn prune_changes_nothing_when_a_snapshot_or_tree_cannot_be_read() {
    let mem = Arc::new(MemStorage::new());
    let repo = repo_on(mem.clone());
    let ids: Vec<Id> = (1..=3).map(|g| backup(&repo, &generation(g))).collect();
    repo.delete_snapshot(&ids[0]).unwrap();

    let snapshot_key = format!("snapshots/{}", ids[1].to_hex());
    mem.corrupt(&snapshot_key, |b| b[20] ^= 1);
    let before = listing(mem.as_ref());
    let err = repo.prune(&prune_options(Duration::ZERO)).unwrap_err();
    assert!(matches!(err, PruneError::Incomplete { .. }), "{err}");
    assert!(err.to_string().contains(&ids[1].short()), "{err}");
    assert_eq!(listing(mem.as_ref()), before);
    mem.corrupt(&snapshot_key, |b| b[20] ^= 1);

    // A tree pack of the last snapshot, damaged.
    let root = repo.load_snapshot(&ids[2]).unwrap().sources[0].root.unwrap();
    let loc = repo.index().get(&root).unwrap();
    let pack_key = cairn_repo::pack::pack_key(&repo.index().pack(loc.pack).0);
    mem.corrupt(&pack_key, |b| b[loc.offset as usize + 14] ^= 1);
    let err = repo.prune(&prune_options(Duration::ZERO)).unwrap_err();
    assert!(matches!(err, PruneError::Incomplete { .. }) && err.to_string().contains("tree"), "{err}");
    assert_eq!(listing(mem.as_ref()), before);
}

#[test]
fn open_does_not_recover_marked_packs_from_their_headers() {
    let mem = Arc::new(MemStorage::new());
    let repo = repo_on(mem.clone());
    let ids: Vec<Id> = (1..=2).map(|g| backup(&repo, &generation(g))).collect();
    repo.delete_snapshot(&ids[0]).unwrap();
    repo.prune(&prune_options(Duration::from_secs(3600))).unwrap();
    let marked: Vec<Id> = repo.index().marked_packs().map(|(id, _)| id).collect();
    assert!(!marked.is_empty());

    // A damaged index file makes open read pack headers; marked packs must stay out.
    for entry in mem.list("index/").unwrap() {
        mem.corrupt(&entry.key, |b| b[30] ^= 1);
    }
    let repo = Repository::open(mem.clone(), &secret()).unwrap();
    assert!(!repo.damaged_index_files().is_empty());
    for id in &marked {
        assert!(repo.index().is_marked(id) && !repo.index().has_pack(id), "pack {} was recovered", id.short());
    }
    assert_restores(&repo, &ids[1], &generation(2), "recovered from headers");
}

#[test]
fn a_pack_marked_again_waits_for_its_younger_mark() {
    let mem = Arc::new(MemStorage::new());
    let repo = repo_on(mem.clone());
    let hour = Duration::from_secs(3600);
    let files: Files = vec![("x".into(), data(42, 200_000))];

    // A backup uploads packs; a prune marks them as unindexed (mark 1)...
    let writer = repo.writer(writer_options());
    writer.save_stream(files[0].1.as_slice(), ChunkParams::new(1 << 12).unwrap()).unwrap();
    let started = Instant::now();
    while mem.list("packs/").unwrap().len() < 2 && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let first = repo.prune(&prune_options(hour)).unwrap();
    assert!(first.unindexed.packs >= 2, "{first:#?}");
    std::thread::sleep(Duration::from_millis(1_200));
    // ...then names them in its index file: they are live again, and another process
    // loads an index that has them.
    writer.finish().unwrap();
    let other = Repository::open(mem.clone(), &secret()).unwrap();
    // No snapshot uses them, so the next prune takes them out of the index again (mark 2).
    let second = repo.prune(&prune_options(hour)).unwrap();
    assert!(second.unused.packs >= first.unindexed.packs, "{second:#?}");
    // The other process reuses them for a snapshot it has not saved yet.
    let (snapshot, totals) = write_files(&other, &files, "", writer_options()).unwrap();
    assert_eq!(totals.blobs_new, 1, "only the root tree is new");

    // Mark 1 is due, mark 2 is not: the packs must wait for mark 2.
    let third = repo.prune(&prune_options(Duration::from_secs(1))).unwrap();
    assert_eq!(third.marks_deleted, 1, "{third:#?}");
    assert_eq!(third.deleted.packs, 0, "a pack in a younger mark was deleted: {third:#?}");

    let id = other.save_snapshot(&snapshot).unwrap();
    let sweep = repo.prune(&prune_options(Duration::ZERO)).unwrap();
    assert!(sweep.revived.packs >= first.unindexed.packs, "{sweep:#?}");
    let fresh = Repository::open(mem.clone(), &secret()).unwrap();
    assert_restores(&fresh, &id, &files, "after the sweep");
    assert_checks_clean(&fresh, "after the sweep");
}

#[test]
fn a_damaged_mark_is_reported_then_replaced_by_prune() {
    let mem = Arc::new(MemStorage::new());
    let repo = repo_on(mem.clone());
    let ids: Vec<Id> = (1..=2).map(|g| backup(&repo, &generation(g))).collect();
    repo.delete_snapshot(&ids[0]).unwrap();
    let mark = repo.prune(&prune_options(Duration::ZERO)).unwrap().mark.unwrap();
    mem.corrupt(&mark, |b| b[40] ^= 1);

    let repo = Repository::open(mem.clone(), &secret()).unwrap();
    let check = check::check(&repo, false, &()).unwrap();
    assert!(check.errors.iter().any(|e| e.contains(&mark)), "{check:#?}");
    assert!(check.warnings.iter().any(|w| w.contains("not in any index")), "{check:#?}");

    // Prune marks the packs again (as unindexed), then deletes the damaged mark.
    let report = repo.prune(&prune_options(Duration::ZERO)).unwrap();
    assert!(report.warnings.iter().any(|w| w.contains(&mark)), "{report:#?}");
    assert!(report.unindexed.packs > 0 && report.deleted.packs == 0, "{report:#?}");
    assert!(!mem.exists(&mark).unwrap());
    prune_twice(&repo);
    let repo = Repository::open(mem.clone(), &secret()).unwrap();
    let check = assert_checks_clean(&repo, "after prune");
    assert!(check.warnings.is_empty() && check.notes.is_empty(), "{check:#?}");
    assert_restores(&repo, &ids[1], &generation(2), "after prune");
}

/// Simulates a prune between a reader's listing and its read: the first read of an index
/// file writes a replacement holding the same packs, deletes the file, and fails.
struct ReplacedWhileReading {
    inner: Arc<MemStorage>,
    done: AtomicBool,
}

impl Storage for ReplacedWhileReading {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn put(&self, key: &str, data: &[u8]) -> cairn_storage::Result<()> {
        self.inner.put(key, data)
    }
    fn get(&self, key: &str) -> cairn_storage::Result<Vec<u8>> {
        if key.starts_with("index/") && !self.done.swap(true, Ordering::SeqCst) {
            let bytes = self.inner.get(key)?;
            self.inner.put(&format!("index/{}", "f".repeat(64)), &bytes)?;
            self.inner.delete(key)?;
        }
        self.inner.get(key)
    }
    fn get_range(&self, key: &str, offset: u64, len: u64) -> cairn_storage::Result<Vec<u8>> {
        self.inner.get_range(key, offset, len)
    }
    fn list(&self, prefix: &str) -> cairn_storage::Result<Vec<Entry>> {
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> cairn_storage::Result<()> {
        self.inner.delete(key)
    }
    fn exists(&self, key: &str) -> cairn_storage::Result<bool> {
        self.inner.exists(key)
    }
}

#[test]
fn an_index_file_replaced_while_reading_is_found_under_its_new_name() {
    let mem = Arc::new(MemStorage::new());
    let repo = repo_on(mem.clone());
    let ids: Vec<Id> = (1..=3).map(|g| backup(&repo, &generation(g))).collect();
    let blobs = repo.index().blob_count();
    let racing = Arc::new(ReplacedWhileReading { inner: mem.clone(), done: AtomicBool::new(false) });
    let repo = Repository::open(racing.clone(), &secret()).unwrap();
    assert!(racing.done.load(Ordering::SeqCst));
    assert_eq!(repo.index().blob_count(), blobs);
    assert!(repo.damaged_index_files().is_empty());
    for (id, g) in ids.iter().zip(1..) {
        assert_restores(&repo, id, &generation(g), "index file replaced while reading");
    }
}

/// Runs `hook` once, right after the first listing of index files: another process acting
/// between a reader's listing and its reads.
struct HookAfterIndexListing {
    inner: Arc<MemStorage>,
    hook: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Storage for HookAfterIndexListing {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn put(&self, key: &str, data: &[u8]) -> cairn_storage::Result<()> {
        self.inner.put(key, data)
    }
    fn get(&self, key: &str) -> cairn_storage::Result<Vec<u8>> {
        self.inner.get(key)
    }
    fn get_range(&self, key: &str, offset: u64, len: u64) -> cairn_storage::Result<Vec<u8>> {
        self.inner.get_range(key, offset, len)
    }
    fn list(&self, prefix: &str) -> cairn_storage::Result<Vec<Entry>> {
        let listed = self.inner.list(prefix);
        if prefix == "index/" {
            if let Some(hook) = self.hook.lock().unwrap().take() {
                hook();
            }
        }
        listed
    }
    fn delete(&self, key: &str) -> cairn_storage::Result<()> {
        self.inner.delete(key)
    }
    fn exists(&self, key: &str) -> cairn_storage::Result<bool> {
        self.inner.exists(key)
    }
}

#[test]
fn a_reader_sees_packs_marked_while_it_reads_the_index() {
    let mem = Arc::new(MemStorage::new());
    let repo = Arc::new(repo_on(mem.clone()));
    // A backup has written its data; its snapshot is not saved yet, so prune finds the
    // packs unused. The hook marks them, deletes their index file, then saves the snapshot.
    let files = generation(5);
    let (snapshot, _) = write_files(&repo, &files, "", writer_options()).unwrap();
    let saved = Arc::new(std::sync::Mutex::new(None));
    let hook = {
        let (repo, saved) = (repo.clone(), saved.clone());
        Box::new(move || {
            let report = repo.prune(&prune_options(Duration::from_secs(3600))).unwrap();
            assert!(report.unused.packs > 0 && report.index_files_deleted > 0, "{report:#?}");
            *saved.lock().unwrap() = Some(repo.save_snapshot(&snapshot).unwrap());
        })
    };
    let racing = Arc::new(HookAfterIndexListing { inner: mem.clone(), hook: std::sync::Mutex::new(Some(hook)) });
    let reader = Repository::open(racing, &secret()).unwrap();
    let id = saved.lock().unwrap().expect("the hook ran");
    assert_restores(&reader, &id, &files, "marked while the reader read the index");
}

/// A storage that "crashes" at the N-th put or delete: that operation and every later one
/// fails, as if the process had been killed there. (`FaultStorage` counts only puts.)
struct Crashing {
    inner: Arc<MemStorage>,
    at: u64,
    mutations: AtomicU64,
    crashed: AtomicBool,
}

impl Crashing {
    fn new(inner: Arc<MemStorage>, at: u64) -> Crashing {
        Crashing { inner, at, mutations: AtomicU64::new(0), crashed: AtomicBool::new(false) }
    }

    fn alive(&self, key: &str, op: &'static str) -> cairn_storage::Result<()> {
        if self.crashed.load(Ordering::SeqCst) {
            return Err(StorageError::Injected { key: key.into(), op });
        }
        Ok(())
    }

    fn mutate(&self, key: &str, op: &'static str) -> cairn_storage::Result<()> {
        self.alive(key, op)?;
        if self.mutations.fetch_add(1, Ordering::SeqCst) + 1 == self.at {
            self.crashed.store(true, Ordering::SeqCst);
            return Err(StorageError::Injected { key: key.into(), op });
        }
        Ok(())
    }
}

impl Storage for Crashing {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn put(&self, key: &str, data: &[u8]) -> cairn_storage::Result<()> {
        self.mutate(key, "write")?;
        self.inner.put(key, data)
    }
    fn get(&self, key: &str) -> cairn_storage::Result<Vec<u8>> {
        self.alive(key, "read")?;
        self.inner.get(key)
    }
    fn get_range(&self, key: &str, offset: u64, len: u64) -> cairn_storage::Result<Vec<u8>> {
        self.alive(key, "read")?;
        self.inner.get_range(key, offset, len)
    }
    fn list(&self, prefix: &str) -> cairn_storage::Result<Vec<Entry>> {
        self.alive(prefix, "list")?;
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> cairn_storage::Result<()> {
        self.mutate(key, "delete")?;
        self.inner.delete(key)
    }
    fn exists(&self, key: &str) -> cairn_storage::Result<bool> {
        self.alive(key, "exists")?;
        self.inner.exists(key)
    }
}

fn copy_of(mem: &MemStorage) -> Arc<MemStorage> {
    let copy = Arc::new(MemStorage::new());
    for entry in mem.list("").unwrap() {
        copy.put(&entry.key, &mem.get(&entry.key).unwrap()).unwrap();
    }
    copy
}

/// Mark with a low repack threshold, then sweep: every kind of write and delete prune does.
fn mark_and_sweep(repo: &Repository) -> Result<(), PruneError> {
    let options = PruneOptions { repack_threshold: 0.2, ..prune_options(Duration::ZERO) };
    repo.prune(&options)?;
    repo.prune(&options)?;
    Ok(())
}

/// Eight small files, `a` to `h`, in one backup: packs mix blobs of several files.
fn mixed() -> Files {
    ('a'..='h').enumerate().map(|(i, name)| (name.to_string(), data(700 + i as u64, 12_000 + i * 1_500))).collect()
}

fn pick(files: &Files, names: &str) -> Files {
    files.iter().filter(|(n, _)| names.contains(n.as_str())).cloned().collect()
}

#[test]
fn a_crash_at_any_write_or_delete_of_prune_leaves_a_valid_repository() {
    // The starting point: a forgotten snapshot whose packs are used in part by two others
    // (some kept, some repacked, some unused, in index files that must be rewritten), and
    // the packs of a killed backup.
    let base = Arc::new(MemStorage::new());
    let repo = repo_on(base.clone());
    let all = mixed();
    let first = backup(&repo, &all);
    let mut second_files = pick(&all, "acdeg");
    second_files.push(("new".into(), data(800, 25_000)));
    let kept = [(backup(&repo, &second_files), second_files), (backup(&repo, &pick(&all, "bc")), pick(&all, "bc"))];
    repo.delete_snapshot(&first).unwrap();
    let packs = base.list("packs/").unwrap().len();
    let killed = repo.writer(writer_options());
    killed.save_stream(&data(99, 200_000)[..], ChunkParams::new(1 << 12).unwrap()).unwrap();
    let started = Instant::now();
    while base.list("packs/").unwrap().len() == packs && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(killed);
    assert!(base.list("packs/").unwrap().len() > packs, "the killed backup left packs");
    let plan =
        repo.prune(&PruneOptions { dry_run: true, repack_threshold: 0.2, ..prune_options(Duration::ZERO) }).unwrap();
    assert!(
        plan.kept.packs > 0 && plan.unused.packs > 0 && plan.repacked.packs > 0 && plan.unindexed.packs > 0,
        "the scenario should exercise every verdict: {plan:#?}"
    );

    let counter = Arc::new(Crashing::new(copy_of(&base), u64::MAX));
    mark_and_sweep(&Repository::open(counter.clone(), &secret()).unwrap()).unwrap();
    let positions = counter.mutations.load(Ordering::SeqCst);
    assert!(positions >= 10, "prune should write and delete many objects, did {positions}");

    for crash_at in 1..=positions {
        let mem = copy_of(&base);
        let crashing = Arc::new(Crashing::new(mem.clone(), crash_at));
        let repo = Repository::open(crashing.clone(), &secret()).unwrap();
        assert!(mark_and_sweep(&repo).is_err(), "crash at {crash_at} must surface as an error");
        drop(repo);

        let context = format!("crash at {crash_at} of {positions}");
        let repo = Repository::open(mem.clone(), &secret()).unwrap();
        assert_checks_clean(&repo, &context);
        assert_eq!(repo.snapshot_ids().unwrap().len(), 2, "{context}");
        for (id, files) in &kept {
            assert_restores(&repo, id, files, &context);
        }

        // A later prune finishes the job: nothing marked, nothing unindexed, all restores.
        mark_and_sweep(&repo).unwrap_or_else(|e| panic!("{context}: prune after the crash: {e}"));
        let repo = Repository::open(mem.clone(), &secret()).unwrap();
        let check = assert_checks_clean(&repo, &context);
        assert!(check.warnings.is_empty() && check.notes.is_empty(), "{context}: {check:#?}");
        assert!(mem.list("marks/").unwrap().is_empty(), "{context}");
        for (id, files) in &kept {
            assert_restores(&repo, id, files, &context);
        }
    }
}

/// `LocalStorage::list` fails when a file disappears between reading the directory and
/// reading the file's size (another process deleted it). Until it skips such files, retry
/// here, so the concurrency test sees prune's behaviour and not that race.
struct Retrying(LocalStorage, AtomicU64);

impl Storage for Retrying {
    fn location(&self) -> String {
        self.0.location()
    }
    fn put(&self, key: &str, data: &[u8]) -> cairn_storage::Result<()> {
        self.0.put(key, data)
    }
    fn get(&self, key: &str) -> cairn_storage::Result<Vec<u8>> {
        self.0.get(key)
    }
    fn get_range(&self, key: &str, offset: u64, len: u64) -> cairn_storage::Result<Vec<u8>> {
        self.0.get_range(key, offset, len)
    }
    fn list(&self, prefix: &str) -> cairn_storage::Result<Vec<Entry>> {
        let mut attempt = 0;
        loop {
            match self.0.list(prefix) {
                Err(e) if e.is_not_found() && attempt < 20 => {
                    attempt += 1;
                    self.1.fetch_add(1, Ordering::Relaxed);
                }
                other => return other,
            }
        }
    }
    fn delete(&self, key: &str) -> cairn_storage::Result<()> {
        self.0.delete(key)
    }
    fn exists(&self, key: &str) -> cairn_storage::Result<bool> {
        self.0.exists(key)
    }
}

/// A directory under the system's temporary directory, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let path = std::env::temp_dir().join(format!("cairn-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Files of backup `gen` by writer `w`: shared by all writers (changing every third
/// generation), growing with a changing tail, the writer's own, and one that comes back
/// to an earlier version every few generations.
fn concurrent_files(w: u64, gen: u64) -> Files {
    let mut grown = data(7, 60_000);
    grown.extend(data(1_000 + w * 100 + gen, 5_000));
    vec![
        ("shared".into(), data(500 + gen / 3, 40_000)),
        ("grown".into(), grown),
        ("own".into(), data(1_000_000 * (w + 1) + gen, 30_000)),
        ("cycle".into(), data(300 + gen % 7, 30_000)),
    ]
}

fn tag_of(w: u64, gen: u64) -> String {
    format!("w{w}-g{gen}")
}

fn files_of_tag(tag: &str) -> Files {
    let (w, gen) = tag.trim_start_matches('w').split_once("-g").unwrap();
    concurrent_files(w.parse().unwrap(), gen.parse().unwrap())
}

/// What the prune thread saw, summed over its runs.
#[derive(Debug, Default)]
struct PruneTotals {
    runs: usize,
    deleted: usize,
    revived: usize,
    repacked: usize,
    marked: usize,
}

/// Restore every snapshot that exists and compare it with what was backed up; returns how
/// many were checked. Stops early (to reopen) before its index gets older than `fresh_for`.
fn verify_live_snapshots(storage: Arc<dyn Storage>, fresh_for: Duration, context: &str) -> usize {
    let began = Instant::now();
    // Snapshots before the index, as a restore does: a snapshot saved after the index was
    // loaded may need packs this index does not know yet.
    let ids: Vec<Id> = storage.list("snapshots/").unwrap().iter().map(|e| e.key[10..].parse().unwrap()).collect();
    let repo = Repository::open(storage, &secret()).unwrap();
    let mut checked = 0;
    for id in ids {
        if began.elapsed() > fresh_for {
            break;
        }
        let snap = match repo.load_snapshot(&id) {
            Err(cairn_repo::RepoError::Storage(e)) if e.is_not_found() => continue, // forgotten meanwhile
            other => other.unwrap(),
        };
        assert_restores_snapshot(&repo, &id, &snap, &files_of_tag(&snap.tags[0]), context);
        checked += 1;
    }
    checked
}

/// Backups from `WRITERS` threads, prunes from one more and restores from another, each
/// with its own `Repository` as separate processes would have, for `duration` (and at
/// most `max_rounds` rounds per thread). Snapshots live longer than the grace period, and
/// every third backup is slow: it loads the index, forgets its oldest snapshots, waits
/// while prune marks their blobs, then backs up the same data again, reusing them — the
/// case prune must revive. Every snapshot must restore the whole time, and afterwards
/// everything left must check clean.
fn backups_and_prunes_concurrently(duration: Duration, max_rounds: u64) {
    const WRITERS: u64 = 2;
    let grace = Duration::from_secs(2);
    let keep_for = Duration::from_secs(3);
    let dir = TempDir::new("prune-concurrency");
    let storage = Arc::new(Retrying(LocalStorage::new(&dir.0), AtomicU64::new(0)));
    repo_on(storage.clone());
    let options = WriterOptions { pack_size: 64 * 1024, ..writer_options() };
    let started = Instant::now();
    let stop = AtomicBool::new(false);
    let slowest_backup = std::sync::Mutex::new(Duration::ZERO);

    let (totals, verified) = std::thread::scope(|s| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (storage, slowest) = (storage.clone(), &slowest_backup);
                s.spawn(move || {
                    let mut own: VecDeque<(Id, u64, Instant)> = VecDeque::new();
                    let mut gen = 0;
                    for round in 0..max_rounds {
                        if started.elapsed() >= duration {
                            break;
                        }
                        let began = Instant::now();
                        let repo = Repository::open(storage.clone(), &secret()).unwrap();
                        let mut forgotten = None;
                        while own.front().is_some_and(|(_, _, at)| at.elapsed() > keep_for) {
                            let (id, g, _) = own.pop_front().unwrap();
                            repo.delete_snapshot(&id).unwrap();
                            forgotten = Some(g);
                        }
                        let g = match forgotten.filter(|_| round % 3 == 2) {
                            Some(old) => {
                                std::thread::sleep(Duration::from_millis(600));
                                old
                            }
                            None => {
                                gen += 1;
                                gen
                            }
                        };
                        let (id, _) = backup_with(&repo, &concurrent_files(w, g), &tag_of(w, g), options)
                            .unwrap_or_else(|e| panic!("backup {} failed: {e}", tag_of(w, g)));
                        let took = began.elapsed();
                        assert!(took < grace, "backup {} took {took:?}, longer than the grace period", tag_of(w, g));
                        let mut slowest = slowest.lock().unwrap();
                        *slowest = (*slowest).max(took);
                        drop(slowest);
                        own.push_back((id, g, Instant::now()));
                        std::thread::sleep(Duration::from_millis(20));
                    }
                })
            })
            .collect();
        let pruner = {
            let (storage, stop) = (storage.clone(), &stop);
            s.spawn(move || {
                let mut totals = PruneTotals::default();
                let options = PruneOptions { grace, repack_threshold: 0.3, dry_run: false, pack_size: 64 * 1024 };
                while !stop.load(Ordering::SeqCst) && (totals.runs as u64) < max_rounds {
                    let repo = Repository::open(storage.clone(), &secret()).unwrap();
                    let report = repo.prune(&options).unwrap_or_else(|e| panic!("prune failed: {e}"));
                    totals.runs += 1;
                    totals.deleted += report.deleted.packs;
                    totals.revived += report.revived.packs;
                    totals.repacked += report.repacked.packs;
                    totals.marked += report.unused.packs + report.repacked.packs + report.unindexed.packs;
                    std::thread::sleep(Duration::from_millis(150));
                }
                totals
            })
        };
        let verifier = {
            let (storage, stop) = (storage.clone(), &stop);
            s.spawn(move || {
                let (mut verified, mut rounds) = (0, 0);
                while !stop.load(Ordering::SeqCst) && rounds < max_rounds {
                    verified += verify_live_snapshots(storage.clone(), grace / 2, "while running");
                    rounds += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                verified
            })
        };
        for w in writers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::SeqCst);
        (pruner.join().unwrap(), verifier.join().unwrap())
    });
    let slowest = *slowest_backup.lock().unwrap();
    eprintln!(
        "{totals:?}; {verified} snapshot restores while running; slowest backup {slowest:?}; list retries {}; {:?}",
        storage.1.load(Ordering::Relaxed),
        started.elapsed()
    );
    assert!(slowest < grace, "a backup took {slowest:?}, longer than the grace period: the test proves nothing");
    assert!(totals.runs >= 3 && totals.deleted > 0, "prune must have deleted packs: {totals:?}");
    assert!(totals.revived > 0, "slow backups must have needed marked packs: {totals:?}");

    let verify = |context: &str| {
        assert!(verify_live_snapshots(storage.clone(), Duration::MAX, context) > 0);
        let repo = Repository::open(storage.clone(), &secret()).unwrap();
        assert_checks_clean(&repo, context)
    };
    verify("after the concurrent runs");
    // With nobody else writing, a grace period of zero is safe: reclaim everything.
    let repo = Repository::open(storage.clone(), &secret()).unwrap();
    prune_twice(&repo);
    let check = verify("after the final prune");
    assert!(check.warnings.is_empty() && check.notes.is_empty(), "{check:#?}");
}

#[test]
fn backups_and_prunes_running_concurrently_lose_nothing() {
    backups_and_prunes_concurrently(Duration::from_secs(20), 400);
}

/// The same for five minutes. Run with
/// `cargo test -p cairn-repo --test prune -- --ignored`.
#[test]
#[ignore = "takes five minutes"]
fn backups_and_prunes_running_concurrently_for_minutes_lose_nothing() {
    backups_and_prunes_concurrently(Duration::from_secs(300), 20_000);
}
