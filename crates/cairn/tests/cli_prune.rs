//! `cairn prune` through the real binary: forgotten data comes back after the grace period,
//! a dry run changes nothing, a prune killed at any moment leaves a valid repository, and
//! backups and prunes running at the same time (separate processes) lose nothing.

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{assert_same_tree, compressible, describe, json, stdout, Cairn};

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() { dir_bytes(&entry.path()) } else { meta.len() };
    }
    total
}

fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.metadata().unwrap().is_dir() {
            out.extend(listing(&entry.path()));
        } else {
            out.push(entry.path().display().to_string());
        }
    }
    out.sort();
    out
}

#[test]
fn forgotten_data_is_reclaimed_after_the_grace_period() {
    let dir = common::tempdir();
    let data = dir.path().join("data");
    fs::create_dir_all(&data).unwrap();
    let cairn = Cairn::new(dir.path().join("repo"));
    cairn.init();
    fs::write(data.join("big"), compressible(1, 8 << 20)).unwrap();
    cairn.ok(&["backup", data.to_str().unwrap()]);
    fs::write(data.join("big"), compressible(2, 1 << 20)).unwrap();
    cairn.ok(&["backup", data.to_str().unwrap()]);
    let first = cairn.snapshots()[0]["id"].as_str().unwrap().to_string();
    cairn.ok(&["forget", &first]);
    let repo = dir.path().join("repo");
    let before = dir_bytes(&repo);

    let objects = listing(&repo);
    let out = cairn.ok(&["prune", "--grace", "0", "--dry-run"]);
    assert!(stdout(&out).contains("would mark"), "{}", describe(&out));
    assert_eq!(listing(&repo), objects, "a dry run writes nothing");

    // First run marks, the next one (grace over) deletes.
    cairn.ok(&["prune", "--grace", "0"]);
    let report = json(&cairn.ok(&["prune", "--grace", "0", "--json"]));
    let reclaimed = report["deleted"]["bytes"].as_u64().unwrap();
    assert!(report["deleted"]["packs"].as_u64().unwrap() > 0 && reclaimed > 0, "{report}");
    let after = dir_bytes(&repo);
    assert!(after + reclaimed / 2 < before, "space is reclaimed: {before} -> {after}");
    cairn.ok(&["check", "--read-data"]);
    let target = dir.path().join("restored");
    cairn.restore("latest", &target);
    assert_same_tree(&data, &target.join("data"));
}

#[test]
fn a_killed_prune_leaves_a_valid_repository() {
    let dir = common::tempdir();
    let data = dir.path().join("data");
    fs::create_dir_all(&data).unwrap();
    let cairn = Cairn::new(dir.path().join("repo"));
    cairn.init();
    for round in 0..6u64 {
        for f in 0..20u64 {
            fs::write(data.join(format!("f{f}")), compressible(round * 100 + f, 200_000)).unwrap();
        }
        cairn.ok(&["backup", data.to_str().unwrap()]);
    }
    cairn.ok(&["forget", "--keep-last", "2"]);
    for delay_ms in [5u64, 20, 40, 80, 150, 300] {
        let mut child = cairn.command(&["prune", "--grace", "0", "--repack-threshold", "0.1"]).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        cairn.ok(&["check", "--read-data"]);
    }
    cairn.ok(&["prune", "--grace", "0"]);
    cairn.ok(&["prune", "--grace", "0"]);
    cairn.ok(&["check", "--read-data"]);
    let target = dir.path().join("restored");
    cairn.restore("latest", &target);
    assert_same_tree(&data, &target.join("data"));
}

#[test]
fn backups_and_prunes_at_the_same_time_lose_nothing() {
    let dir = common::tempdir();
    let cairn = Cairn::new(dir.path().join("repo"));
    cairn.init();
    let deadline = Instant::now() + Duration::from_secs(25);
    std::thread::scope(|scope| {
        // Two backup loops, each in its own folder, sharing some content (dedup across them),
        // forgetting their old snapshots as they go.
        for worker in 0..2u64 {
            let cairn = cairn.clone();
            let data = dir.path().join(format!("data{worker}"));
            scope.spawn(move || {
                fs::create_dir_all(&data).unwrap();
                let mut round = 0u64;
                while Instant::now() < deadline && round < 200 {
                    fs::write(data.join("shared"), compressible(round % 3, 300_000)).unwrap();
                    fs::write(data.join("own"), compressible(1000 * worker + round, 300_000)).unwrap();
                    cairn.ok(&["backup", data.to_str().unwrap()]);
                    if round % 3 == 2 {
                        cairn.ok(&["forget", "--keep-last", "4"]);
                    }
                    round += 1;
                }
            });
        }
        let cairn = cairn.clone();
        scope.spawn(move || {
            let mut runs = 0;
            while Instant::now() < deadline && runs < 500 {
                cairn.ok(&["prune", "--grace", "2s", "--repack-threshold", "0.3"]);
                runs += 1;
            }
        });
    });
    cairn.ok(&["check", "--read-data"]);
    // Every snapshot left restores byte for byte what was backed up: verify restores it
    // and re-hashes every file against the chunk ids recorded at backup time.
    let snapshots = cairn.snapshots();
    assert!(!snapshots.is_empty());
    for snap in snapshots {
        let id = snap["short_id"].as_str().unwrap().to_string();
        cairn.ok(&["verify", &id, "--scratch-dir", dir.path().to_str().unwrap()]);
    }
}
