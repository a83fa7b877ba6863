//! `kill -9` at random moments. A backup killed anywhere must leave a repository that passes
//! `check` and lists only complete snapshots, each restoring exactly what was backed up; the
//! next backup must work and restore byte-identical. A killed restore must leave the
//! repository untouched, and a restore over its leftovers must give the exact tree.
//!
//! Deterministic: the data and every choice (which files change, `--force`, kill delays) come
//! from seeded generators. The delays scale with a timed, un-killed run, so kills land across
//! the whole run on fast and slow machines alike.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

const FILES: usize = 300;
const ITERATIONS: usize = 30;

/// The path of file `f` under the source root.
fn file_path(root: &Path, f: usize) -> PathBuf {
    root.join(format!("dir{:02}/sub{}/file{f:03}.dat", f % 12, f % 3))
}

/// Content of version `version` of file `f`: every 50th file is a multi-chunk 5–7 MiB file;
/// the rest 8–600 KB; about half pseudo-random, half compressible. ~125 MB in all.
fn content(f: usize, version: u32) -> Vec<u8> {
    let seed = ((f as u64) << 24) ^ u64::from(version) ^ 0xC4A5_0000_0000_0000;
    let mut rng = Rng::new(seed);
    let size = if f % 50 == 0 { rng.range(5 << 20, 7 << 20) } else { rng.range(8_000, 600_000) } as usize;
    if (f + version as usize) % 2 == 0 {
        rng.bytes(size)
    } else {
        compressible(seed, size)
    }
}

fn build_source(root: &Path, files: usize) {
    for f in 0..files {
        write(&file_path(root, f), &content(f, 0));
    }
}

/// Check a restored source tree against the file versions it should hold.
fn verify_restored(root: &Path, versions: &[u32]) -> Result<(), String> {
    let found = count_files(root);
    if found != versions.len() {
        return Err(format!("{} files restored, expected {}", found, versions.len()));
    }
    for (f, &v) in versions.iter().enumerate() {
        let path = file_path(root, f);
        let got = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if got != content(f, v) {
            return Err(format!("{}: not version {v} of file {f}", path.display()));
        }
    }
    Ok(())
}

fn millis(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap()
}

/// Spawn `cairn ARGS` and SIGKILL it after `delay` unless it finished first. Returns `None`
/// if it was killed, else how long it took (to within a few ms).
fn run_and_kill(cairn: &Cairn, args: &[&std::ffi::OsStr], delay: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut child = cairn.command(args).spawn().unwrap();
    let mut finished = None;
    loop {
        if child.try_wait().unwrap().is_some() {
            finished = Some(started.elapsed());
            break;
        }
        let left = delay.saturating_sub(started.elapsed());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(5)));
    }
    if finished.is_none() {
        child.kill().unwrap(); // SIGKILL; a no-op if it exited a moment ago
    }
    let out = child.wait_with_output().unwrap();
    cairn.assert_no_secrets(args, &out);
    if out.status.signal() == Some(9) {
        return None;
    }
    // Not killed: it must have finished, and successfully.
    assert!(out.status.success(), "cairn {args:?} failed on its own:\n{}", describe(&out));
    Some(finished.unwrap_or_else(|| started.elapsed()))
}

/// The shortest of `n` timed runs of `f`: a calibration less disturbed by other load.
fn fastest(n: usize, mut f: impl FnMut()) -> Duration {
    (0..n)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed()
        })
        .min()
        .unwrap()
}

#[test]
fn backups_killed_at_random_moments_leave_a_valid_repository() {
    let started = Instant::now();
    let tmp = tempdir();
    let src = tmp.path().join("src");
    build_source(&src, FILES);

    // Calibrate: how long a first, complete backup of the whole tree takes here.
    let scratch = Cairn::new(tmp.path().join("scratch-repo"));
    let full = fastest(2, || {
        scratch.init();
        scratch.ok(&["backup".as_ref(), "-q".as_ref(), src.as_os_str()]);
        fs::remove_dir_all(&scratch.repo).unwrap();
    });
    eprintln!("a full backup takes {full:?}");
    // Expected run time with and without --force: the full backup until a run of that kind
    // finishes, then the last such run (later runs reuse data and are quicker).
    let mut expected_ms = [millis(full); 2];

    let cairn = Cairn::new(tmp.path().join("repo"));
    cairn.init();
    let mut rng = Rng::new(0x5EED_C4A5);
    let mut versions = vec![0u32; FILES];
    let mut history: Vec<Vec<u32>> = Vec::new();
    let mut verified: BTreeMap<String, usize> = BTreeMap::new();
    let mut killed = 0;
    for i in 0..ITERATIONS {
        if i > 0 {
            // Change about 5% of the files, so every run has new data to write.
            for (f, version) in versions.iter_mut().enumerate() {
                if rng.chance(5) {
                    *version += 1;
                    write(&file_path(&src, f), &content(f, *version));
                }
            }
        }
        history.push(versions.clone());
        let tag = format!("iter-{i}");
        let force = rng.chance(75);
        let mut args: Vec<&std::ffi::OsStr> = vec!["backup".as_ref(), "-q".as_ref(), "--tag".as_ref(), tag.as_ref()];
        if force {
            args.push("--force".as_ref());
        }
        args.push(src.as_os_str());
        // Early (opening, first packs), anywhere, or late (last packs, index, snapshot).
        let max_ms = (expected_ms[usize::from(force)] * 3 / 2).max(30);
        let delay = match rng.range(0, 3) {
            0 => rng.range(0, max_ms / 4),
            1 => rng.range(0, max_ms),
            _ => rng.range(max_ms * 6 / 10, max_ms),
        };
        let outcome = run_and_kill(&cairn, &args, Duration::from_millis(delay));
        let was_killed = outcome.is_none();
        killed += usize::from(was_killed);
        if let Some(took) = outcome {
            expected_ms[usize::from(force)] = millis(took);
        }

        // The repository is consistent: the check passes (stray packs are only a warning).
        let check = if i % 5 == 4 { cairn.ok(&["check", "--read-data"]) } else { cairn.ok(&["check"]) };
        assert!(stdout(&check).contains("no errors"), "iteration {i}:\n{}", describe(&check));

        // Only complete snapshots are listed, and each restores exactly what it backed up.
        let snaps = cairn.snapshots();
        let ids: HashSet<String> = snaps.iter().map(|s| s["id"].as_str().unwrap().to_string()).collect();
        for old in verified.keys() {
            assert!(ids.contains(old), "iteration {i}: snapshot {old} disappeared");
        }
        let mut tags_seen = HashSet::new();
        for s in &snaps {
            let id = s["id"].as_str().unwrap().to_string();
            let t = s["tags"][0].as_str().unwrap_or_else(|| panic!("untagged snapshot {s:#}"));
            assert!(tags_seen.insert(t.to_string()), "two snapshots tagged {t}");
            let j: usize = t.strip_prefix("iter-").unwrap().parse().unwrap();
            assert!(j <= i);
            if verified.contains_key(&id) {
                continue;
            }
            let dir = tmp.path().join(format!("verify-{}", &id[..8]));
            cairn.restore(&id, &dir);
            if let Err(e) = verify_restored(&dir.join("src"), &history[j]) {
                panic!("iteration {i}: snapshot {} (of iteration {j}) restores wrongly: {e}", &id[..8]);
            }
            fs::remove_dir_all(&dir).unwrap();
            verified.insert(id, j);
        }
        if !was_killed {
            assert!(tags_seen.contains(&tag), "iteration {i} finished, but its snapshot is not listed");
        }
        let what = match outcome {
            None => format!("killed after {delay} ms"),
            Some(took) => format!("finished in {} ms, before the kill at {delay} ms", millis(took)),
        };
        let force = if force { " (--force)" } else { "" };
        eprintln!("iteration {i:2}{force}: {what}; {} snapshot(s)", snaps.len());
    }
    eprintln!("{killed} of {ITERATIONS} backups killed while running; {} snapshots verified", verified.len());
    assert!(killed >= ITERATIONS / 3, "too few kills landed during a run ({killed}); the test proves little");

    // After all that, a normal backup works and restores exactly (metadata included).
    let last = cairn.backup_json(&[&src], &[]);
    assert_eq!(last["stats"]["errors"], 0);
    let out = tmp.path().join("final");
    cairn.restore("latest", &out);
    assert_same_tree(&src, &out.join("src"));
    cairn.ok(&["check", "--read-data"]);
    eprintln!("took {:?}", started.elapsed());
}

#[test]
fn a_killed_restore_leaves_the_repository_intact_and_can_be_redone() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    build_source(&src, FILES / 2);
    let cairn = Cairn::new(tmp.path().join("repo"));
    cairn.init();
    cairn.backup_json(&[&src], &[]);
    let before = listing(&cairn.repo);

    // Calibrate with complete restores.
    let full_dir = tmp.path().join("full");
    let full = fastest(3, || {
        cairn.restore("latest", &full_dir);
        assert_same_tree(&src, &full_dir.join("src"));
        fs::remove_dir_all(&full_dir).unwrap();
    });
    let mut max_ms = (millis(full) * 11 / 10).max(20);
    eprintln!("a full restore takes {full:?}; kills land within {max_ms} ms");

    let mut rng = Rng::new(0xDEAD_BEEF);
    let mut killed = 0;
    for k in 0..10 {
        let dir = tmp.path().join(format!("restore-{k}"));
        let delay = rng.range(0, max_ms);
        let args = ["restore".as_ref(), "latest".as_ref(), "--to".as_ref(), dir.as_os_str()];
        let outcome = run_and_kill(&cairn, &args, Duration::from_millis(delay));
        let was_killed = outcome.is_none();
        killed += usize::from(was_killed);
        if let Some(took) = outcome {
            // Faster than calibrated (less load now): aim the next kills earlier.
            max_ms = max_ms.min((millis(took) * 11 / 10).max(20));
        }
        // Restoring never writes to the repository, killed or not.
        assert_eq!(listing(&cairn.repo), before, "restore {k} changed the repository");
        cairn.ok(&["check", "--read-data"]);
        // Restoring again over the leftovers gives the exact tree.
        cairn.ok(&["restore".as_ref(), "latest".as_ref(), "--to".as_ref(), dir.as_os_str(), "--yes".as_ref()]);
        assert_same_tree(&src, &dir.join("src"));
        fs::remove_dir_all(&dir).unwrap();
        eprintln!("restore {k}: {} after {delay} ms", if was_killed { "killed" } else { "finished" });
    }
    assert!(killed >= 3, "too few kills landed during a restore ({killed})");
}
