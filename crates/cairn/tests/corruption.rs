//! Damage to the repository on disk: a flipped byte in a data pack, a flipped byte in an
//! index file, a missing or truncated pack. `check` must find and explain it, and `restore`
//! must restore everything that is intact and never write damaged data.
//!
//! The tree's files are distinct and at most 250 KB, below the 256 KiB minimum chunk size, so
//! each file is exactly one blob; a small backup makes one data pack (the larger pack file)
//! and one tree pack. The second backup of the fixture adds a small data and tree pack. A flipped byte inside the data pack therefore damages exactly one file.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use common::*;

const FILES: usize = 12;

struct Fixture {
    tmp: tempfile::TempDir,
    cairn: Cairn,
    src: PathBuf,
    /// Short ids of the two snapshots (the second adds one file to the first).
    snapshots: Vec<String>,
}

fn fixture() -> Fixture {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    let mut rng = Rng::new(42);
    for i in 0..FILES {
        let size = rng.range(100_000, 250_000) as usize;
        write(&src.join(format!("dir{}/file{i:02}.bin", i % 3)), &rng.bytes(size));
    }
    write(&src.join("empty.txt"), b"");
    std::os::unix::fs::symlink("dir0/file00.bin", src.join("link")).unwrap();
    let cairn = Cairn::new(tmp.path().join("repo"));
    cairn.init();
    let first = cairn.backup_json(&[&src], &[]);
    write(&src.join("later.txt"), b"added for the second snapshot");
    let second = cairn.backup_json(&[&src], &[]);
    let snapshots = [first, second].iter().map(|s| s["short_id"].as_str().unwrap().to_string()).collect();
    Fixture { tmp, cairn, src, snapshots }
}

/// Pack files as (path, size), largest first.
fn packs(repo: &Path) -> Vec<(PathBuf, u64)> {
    let mut all = Vec::new();
    collect_paths(&repo.join("packs"), &mut all);
    let mut packs: Vec<_> = all
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| {
            let size = fs::metadata(&p).unwrap().len();
            (p, size)
        })
        .collect();
    packs.sort_by_key(|(_, size)| std::cmp::Reverse(*size));
    packs
}

/// The data pack of the fixture: the larger of its two packs.
fn data_pack(repo: &Path) -> PathBuf {
    let packs = packs(repo);
    // The first backup's data and tree packs, the second's (later.txt and two trees).
    assert_eq!(packs.len(), 4, "{packs:?}");
    assert!(packs[0].1 > (FILES as u64) * 100_000 && packs[1].1 < 100_000, "{packs:?}");
    packs[0].0.clone()
}

fn short_name(path: &Path) -> String {
    path.file_name().unwrap().to_str().unwrap()[..8].to_string()
}

fn flip_byte(path: &Path, offset: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset] ^= 0x5a;
    fs::write(path, bytes).unwrap();
}

/// `affected: snapshot S source files /PATH` lines of a check, as (S, PATH).
fn affected(out: &std::process::Output) -> BTreeSet<(String, String)> {
    stdout(out)
        .lines()
        .filter_map(|l| l.strip_prefix("affected: snapshot "))
        .map(|rest| {
            let mut parts = rest.splitn(4, ' ');
            let snapshot = parts.next().unwrap().to_string();
            assert_eq!(parts.next(), Some("source"));
            assert_eq!(parts.next(), Some("files"));
            (snapshot, parts.next().unwrap().to_string())
        })
        .collect()
}

fn restore_args<'a>(snapshot: &'a str, to: &'a Path, extra: &[&'a str]) -> Vec<&'a std::ffi::OsStr> {
    let mut a: Vec<&std::ffi::OsStr> = vec!["restore".as_ref(), snapshot.as_ref(), "--to".as_ref(), to.as_os_str()];
    a.extend(extra.iter().map(|e| std::ffi::OsStr::new(*e)));
    a
}

#[test]
fn a_flipped_byte_in_a_data_pack_damages_one_file_and_nothing_else() {
    let f = fixture();
    let pack = data_pack(&f.cairn.repo);
    let size = fs::metadata(&pack).unwrap().len() as usize;
    flip_byte(&pack, size / 2);

    // Without reading data the damage may go unnoticed; that is allowed.
    let quick = f.cairn.cmd(&["check"]);
    assert!([0, 1].contains(&code(&quick)), "{}", describe(&quick));

    // Reading data finds it, names the pack and traces it to one file in both snapshots.
    let out = f.cairn.expect_code(1, &["check", "--read-data"]);
    let text = stdout(&out);
    let pack_short = short_name(&pack);
    assert!(
        text.lines()
            .any(|l| l.starts_with("error:") && l.contains(&format!("pack {pack_short}")) && l.contains("damaged")),
        "the damaged pack {pack_short} is named:\n{}",
        describe(&out)
    );
    assert!(text.contains("ERRORS FOUND"), "{}", describe(&out));
    let hits = affected(&out);
    let paths: BTreeSet<_> = hits.iter().map(|(_, p)| p.clone()).collect();
    assert_eq!(paths.len(), 1, "one blob, one file: {hits:?}\n{}", describe(&out));
    let damaged = paths.into_iter().next().unwrap();
    assert!(damaged.starts_with("/src/dir") && damaged.ends_with(".bin"), "{damaged}");
    let snaps: BTreeSet<_> = hits.iter().map(|(s, _)| s.clone()).collect();
    assert_eq!(snaps, f.snapshots.iter().cloned().collect(), "both snapshots hold that file");

    // The JSON report says the same.
    let report = json(&f.cairn.expect_code(1, &["check", "--read-data", "--json"]));
    assert_eq!(report["damaged_packs"].as_array().unwrap().len(), 1, "{report:#}");
    assert!(report["damaged_packs"][0][0].as_str().unwrap().starts_with(&pack_short));
    assert_eq!(report["affected"].as_array().unwrap().len(), 2, "{report:#}");

    // Restore: exit 3 (partial), the damaged file reported and absent, everything else exact.
    let rel = damaged.trim_start_matches('/');
    let out_dir = f.tmp.path().join("out");
    let out = f.cairn.expect_code(3, &restore_args("latest", &out_dir, &[]));
    let err = stderr(&out);
    assert!(err.contains(&format!("damaged, not restored: {rel}")), "{}", describe(&out));
    assert!(!out_dir.join(rel).exists(), "damaged data must not be written");
    let diffs = tree_differences(&f.src, &out_dir.join("src"));
    let expected = format!("{}: only in {}", rel.trim_start_matches("src/"), f.src.display());
    assert_eq!(diffs, vec![expected], "only the damaged file may differ");

    // The same through --json.
    let out_dir2 = f.tmp.path().join("out2");
    let summary = json(&f.cairn.expect_code(3, &restore_args(&f.snapshots[0], &out_dir2, &["--json"])));
    assert_eq!(summary["damaged"], serde_json::json!([rel]), "{summary:#}");
    assert!(!out_dir2.join(rel).exists());

    // Restoring only intact files is a full success.
    let other = if rel.ends_with("file00.bin") { "src/dir1/file01.bin" } else { "src/dir0/file00.bin" };
    let out_dir3 = f.tmp.path().join("out3");
    f.cairn.ok(&restore_args("latest", &out_dir3, &["--include", other]));
    assert_same_tree(&f.src.join(other.trim_start_matches("src/")), &out_dir3.join(other));
}

#[test]
fn a_flipped_byte_in_an_index_file_is_reported_with_its_name() {
    let f = fixture();
    let mut index_files = Vec::new();
    collect_paths(&f.cairn.repo.join("index"), &mut index_files);
    assert_eq!(index_files.len(), 2, "one index file per backup: {index_files:?}");
    let index = &index_files[0];
    let size = fs::metadata(index).unwrap().len() as usize;
    flip_byte(index, size / 2);

    let name = index.file_name().unwrap().to_str().unwrap().to_string();
    for read_data in [false, true] {
        let args: &[&str] = if read_data { &["check", "--read-data"] } else { &["check"] };
        let out = f.cairn.expect_code(1, args);
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(all.contains(&name[..8]), "the damaged index file {name} is named:\n{}", describe(&out));
        assert!(!all.contains("no errors"), "{}", describe(&out));
    }
}

#[test]
fn a_damaged_index_file_still_gets_a_check_report() {
    let f = fixture();
    let mut index_files = Vec::new();
    collect_paths(&f.cairn.repo.join("index"), &mut index_files);
    let index = &index_files[0];
    let size = fs::metadata(index).unwrap().len() as usize;
    flip_byte(index, size / 2);
    let name = index.file_name().unwrap().to_str().unwrap().to_string();
    let report = json(&f.cairn.expect_code(1, &["check", "--read-data", "--json"]));
    let errors = report["errors"].as_array().unwrap();
    assert!(errors.iter().any(|e| e.as_str().unwrap().contains(&name[..8])), "{report:#}");
    // Snapshots are still listed.
    assert_eq!(f.cairn.snapshots().len(), 2);
}

#[test]
fn a_missing_data_pack_is_reported_with_every_affected_file() {
    let f = fixture();
    let pack = data_pack(&f.cairn.repo);
    fs::remove_file(&pack).unwrap();
    let pack_short = short_name(&pack);

    for args in [&["check"][..], &["check", "--read-data"][..]] {
        let out = f.cairn.expect_code(1, args);
        assert!(
            stdout(&out).lines().any(|l| l.starts_with("error:") && l.contains(&pack_short) && l.contains("missing")),
            "{args:?}: the missing pack {pack_short} is named:\n{}",
            describe(&out)
        );
        let hits = affected(&out);
        let paths: BTreeSet<_> = hits.iter().map(|(_, p)| p.clone()).collect();
        let expected: BTreeSet<String> = (0..FILES).map(|i| format!("/src/dir{}/file{i:02}.bin", i % 3)).collect();
        assert_eq!(paths, expected, "{args:?}: every file with data in that pack is affected, no other");
        assert_eq!(hits.len(), 2 * FILES, "both snapshots: {hits:?}");
    }

    // Restore brings back what needs no data from the pack and reports the rest.
    let out_dir = f.tmp.path().join("out");
    let out = f.cairn.expect_code(3, &restore_args("latest", &out_dir, &[]));
    let err = stderr(&out);
    assert_eq!(err.matches("damaged, not restored: ").count(), FILES, "{}", describe(&out));
    assert!(out_dir.join("src/empty.txt").is_file());
    assert_eq!(fs::read(out_dir.join("src/later.txt")).unwrap(), b"added for the second snapshot");
    assert_eq!(fs::read_link(out_dir.join("src/link")).unwrap(), Path::new("dir0/file00.bin"));
    assert!(!out_dir.join("src/dir0/file00.bin").exists());
}

#[test]
fn a_missing_tree_pack_or_a_truncated_data_pack_is_reported() {
    let f = fixture();
    let all = packs(&f.cairn.repo);
    // The first backup's data pack, and its tree pack (the trees of dir0..dir2 that both
    // snapshots use).
    let (data, tree) = (all[0].0.clone(), all[1].0.clone());

    // Truncated data pack: found without reading data.
    let bytes = fs::read(&data).unwrap();
    fs::write(&data, &bytes[..bytes.len() / 3]).unwrap();
    let out = f.cairn.expect_code(1, &["check"]);
    assert!(
        stdout(&out).lines().any(|l| l.contains(&short_name(&data)) && l.contains("truncated")),
        "{}",
        describe(&out)
    );
    assert!(!affected(&out).is_empty(), "{}", describe(&out));
    fs::write(&data, &bytes).unwrap();
    f.cairn.ok(&["check", "--read-data"]);

    // Missing tree pack: every snapshot's tree is gone.
    fs::remove_file(&tree).unwrap();
    let out = f.cairn.expect_code(1, &["check"]);
    let text = stdout(&out);
    assert!(text.lines().any(|l| l.contains(&short_name(&tree)) && l.contains("missing")), "{}", describe(&out));
    let snaps: BTreeSet<_> = affected(&out).into_iter().map(|(s, _)| s).collect();
    assert_eq!(snaps, f.snapshots.iter().cloned().collect(), "{}", describe(&out));
    let out_dir = f.tmp.path().join("out");
    let out = f.cairn.cmd(&restore_args("latest", &out_dir, &[]));
    assert_eq!(code(&out), 1, "{}", describe(&out));
    assert!(stderr(&out).contains(&short_name(&tree)), "{}", describe(&out));
}
