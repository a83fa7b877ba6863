//! Crash and fault tests of the engine against fault-injecting storage.
//!
//! A crash at any write must leave a repository that opens, checks clean, lists only
//! complete snapshots, and accepts the next backup. A failing read must be reported, never
//! turned into wrong data.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use cairn_repo::testing::{repo_on, secret};
use cairn_repo::{check, ChunkParams, Id, Repository, Secret};
use cairn_storage::{Fault, FaultStorage, MemStorage, Storage};
use common::{data, restore_tree, write_files, writer_options};

/// Back up `files` as one flat tree and save a snapshot; returns its id.
fn backup(repo: &Repository, files: &[(String, Vec<u8>)]) -> cairn_repo::Result<Id> {
    let (snap, _) = write_files(repo, files, "", writer_options())?;
    repo.save_snapshot(&snap)
}

/// Restore every file of a snapshot into memory; damaged files map to `Err`.
fn restore(repo: &Repository, id: &Id) -> HashMap<String, Result<Vec<u8>, String>> {
    let snap = repo.load_snapshot(id).unwrap();
    let tree = repo.load_tree(&snap.sources[0].root.unwrap()).unwrap();
    restore_tree(repo, &tree)
}

fn sample(generation: u64) -> Vec<(String, Vec<u8>)> {
    (0..6).map(|i| (format!("f{i}"), data(generation * 100 + i, 20_000 + i as usize * 7_000))).collect()
}

#[test]
fn a_crash_at_any_write_leaves_a_valid_repository() {
    // Count the writes of one full backup after the first, so every position is tried.
    let probe = Arc::new(MemStorage::new());
    let repo = repo_on(probe.clone());
    backup(&repo, &sample(1)).unwrap();
    let counter = Arc::new(FaultStorage::new(probe.clone(), Fault::None));
    let counted = Repository::open(counter.clone(), &secret()).unwrap();
    backup(&counted, &sample(2)).unwrap();
    let writes = counter.writes();
    assert!(writes >= 5, "the backup should write several objects, wrote {writes}");

    for crash_at in 1..=writes {
        let mem = Arc::new(MemStorage::new());
        let repo = repo_on(mem.clone());
        let first = backup(&repo, &sample(1)).unwrap();
        drop(repo);

        let faulty = Arc::new(FaultStorage::new(mem.clone(), Fault::CrashAtWrite(crash_at)));
        let repo = Repository::open(faulty, &secret()).unwrap();
        assert!(backup(&repo, &sample(2)).is_err(), "crash at write {crash_at} must surface as an error");
        drop(repo);

        // "Restart": the repository must be consistent and hold only the first snapshot.
        let repo = Repository::open(mem.clone(), &secret()).unwrap();
        let report = check::check(&repo, true, &()).unwrap();
        assert!(report.is_ok(), "crash at write {crash_at}: {:?}", report.errors);
        assert_eq!(repo.snapshot_ids().unwrap(), vec![first], "crash at write {crash_at}");
        let second = backup(&repo, &sample(2)).unwrap();
        for (id, gen) in [(first, 1), (second, 2)] {
            let restored = restore(&repo, &id);
            for (name, bytes) in sample(gen) {
                assert_eq!(restored[&name].as_ref().unwrap(), &bytes, "crash at {crash_at}: {name} of gen {gen}");
            }
        }
    }
}

#[test]
fn a_failed_write_fails_the_backup_without_a_snapshot() {
    for fail_at in 1..=4 {
        let mem = Arc::new(MemStorage::new());
        repo_on(mem.clone());
        let faulty = Arc::new(FaultStorage::new(mem.clone(), Fault::FailWrite(fail_at)));
        let repo = Repository::open(faulty, &secret()).unwrap();
        assert!(backup(&repo, &sample(3)).is_err());
        assert!(repo.snapshot_ids().unwrap().is_empty());
    }
}

#[test]
fn failed_reads_are_reported_not_restored_wrong() {
    let mem = Arc::new(MemStorage::new());
    let repo = repo_on(mem.clone());
    let id = backup(&repo, &sample(4)).unwrap();
    drop(repo);
    let (mut tested, mut reported) = (0, 0);
    for fail_at in 1..=12 {
        let faulty = Arc::new(FaultStorage::new(mem.clone(), Fault::FailRead(fail_at)));
        let Ok(repo) = Repository::open(faulty, &secret()) else { continue };
        let Ok(snap) = repo.load_snapshot(&id) else { continue };
        let Ok(tree) = repo.load_tree(&snap.sources[0].root.unwrap()) else { continue };
        let restored = restore_tree(&repo, &tree);
        let expected: HashMap<String, Vec<u8>> = sample(4).into_iter().collect();
        let mut failed = 0;
        for (name, result) in restored {
            match result {
                Ok(bytes) => assert_eq!(bytes, expected[&name], "read fault {fail_at}: {name} restored wrong"),
                Err(_) => failed += 1,
            }
        }
        tested += 1;
        reported += usize::from(failed > 0);
    }
    assert!(tested > 0 && reported > 0, "some read faults must land on data and be reported");
}

#[test]
fn a_flipped_byte_is_found_and_traced_to_its_file() {
    let mem = Arc::new(MemStorage::new());
    let repo = repo_on(mem.clone());
    let id = backup(&repo, &sample(5)).unwrap();
    // Damage the middle of the first data pack.
    let victim = mem
        .list("packs/")
        .unwrap()
        .into_iter()
        .find(|e| {
            let pack: Id = e.key.rsplit('/').next().unwrap().parse().unwrap();
            repo.index().packs().any(|(p, k)| p == pack && k == cairn_repo::pack::BlobKind::Data)
        })
        .unwrap();
    mem.corrupt(&victim.key, |b| {
        let mid = b.len() / 3;
        b[mid] ^= 0x40;
    });
    let report = check::check(&repo, true, &()).unwrap();
    assert!(!report.is_ok());
    let short = &victim.key.rsplit('/').next().unwrap()[..8];
    assert!(report.errors.iter().any(|e| e.contains(short)), "{:?}", report.errors);
    assert!(!report.affected.is_empty(), "the damaged file must be named");
    let restored = restore(&repo, &id);
    let expected: HashMap<String, Vec<u8>> = sample(5).into_iter().collect();
    let mut damaged = 0;
    for (name, result) in restored {
        match result {
            Ok(bytes) => assert_eq!(bytes, expected[&name]),
            Err(_) => {
                damaged += 1;
                assert!(report.affected.iter().any(|a| a.path == format!("/{name}")), "{name} not traced");
            }
        }
    }
    assert!(damaged >= 1);
}

#[test]
fn wrong_password_is_refused_and_changes_nothing() {
    let mem = Arc::new(MemStorage::new());
    repo_on(mem.clone());
    let before = mem.list("").unwrap();
    let err = Repository::open(mem.clone(), &Secret::Password("nope".into())).err().unwrap();
    assert!(matches!(err, cairn_repo::RepoError::WrongKey { .. }), "{err}");
    assert_eq!(mem.list("").unwrap(), before);
    let empty = Arc::new(MemStorage::new());
    let err = Repository::open(empty, &secret()).err().unwrap();
    assert!(matches!(err, cairn_repo::RepoError::NotARepository { .. }), "{err}");
}

#[test]
fn an_abandoned_writer_leaves_no_packs_behind() {
    let storage = Arc::new(MemStorage::new());
    let repo = repo_on(storage.clone());
    let writer = repo.writer(writer_options());
    // Enough data for several small packs to be uploaded before the writer gives up.
    writer.save_stream(&data(7, 400_000)[..], ChunkParams::new(1 << 14).unwrap()).unwrap();
    let started = std::time::Instant::now();
    while storage.list("packs/").unwrap().is_empty() && started.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let deleted = writer.abandon();
    assert!(deleted > 0, "packs were uploaded before the writer was abandoned");
    assert!(storage.list("packs/").unwrap().is_empty(), "every unindexed pack is deleted");
    assert!(storage.list("index/").unwrap().is_empty());
    // The repository is as before: a new backup works and checks clean.
    let id = backup(&repo, &[("a".into(), data(8, 100_000))]).unwrap();
    let reopened = Repository::open(storage, &secret()).unwrap();
    assert!(reopened.load_snapshot(&id).is_ok());
}
