//! The folder source against a real directory and an in-memory repository.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_repo::testing::memory_repo as repo;
use cairn_repo::{ChunkParams, WriterOptions};
use cairn_sources::files::{self, BackupOptions, Patterns, Progress, RestoreOptions};

#[derive(Default)]
struct Warnings(std::sync::Mutex<Vec<String>>);

impl Progress for Warnings {
    fn warning(&self, message: &str) {
        self.0.lock().unwrap().push(message.to_string());
    }
}

#[test]
fn a_file_that_keeps_changing_is_flagged_not_stored_silently() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("growing.log");
    std::fs::write(&path, vec![b'x'; 8 << 20]).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // Append for as long as the backup runs (bounded to 30 s in any case).
    let writer_thread = {
        let (path, stop) = (path.clone(), stop.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(30) {
                f.write_all(&[b'y'; 4096]).unwrap();
                f.flush().unwrap();
            }
        })
    };
    // Start only once the file is visibly growing.
    let started = Instant::now();
    while std::fs::metadata(&path).unwrap().len() == 8 << 20 && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let repo = repo();
    let warnings = Warnings::default();
    let writer = repo.writer(WriterOptions::default());
    let options = BackupOptions::new(Patterns::none(), ChunkParams::new(1 << 16).unwrap());
    let outcome = files::backup(&repo, &writer, std::slice::from_ref(&path), None, &options, &warnings).unwrap();
    writer.finish().unwrap();
    stop.store(true, Ordering::Relaxed);
    writer_thread.join().unwrap();

    let root = repo.load_tree(&outcome.root).unwrap();
    let node = &root.nodes[0];
    assert!(node.changed_during_backup, "a file growing throughout must be flagged");
    let warned = warnings.0.lock().unwrap();
    assert!(warned.iter().any(|w| w.contains("growing.log") && w.contains("changed while being read")), "{warned:?}");
    assert_eq!(outcome.warnings.len(), 1);
}

#[test]
fn unchanged_files_are_not_read_again_and_changed_ones_are() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    for i in 0..20 {
        std::fs::write(src.join("sub").join(format!("f{i}")), format!("file {i}").repeat(1000)).unwrap();
    }
    let repo = repo();
    let options = BackupOptions::new(Patterns::none(), ChunkParams::FILES);
    let backup = |parent| {
        let writer = repo.writer(WriterOptions::default());
        let out = files::backup(&repo, &writer, std::slice::from_ref(&src), parent, &options, &()).unwrap();
        writer.finish().unwrap();
        out
    };
    let first = backup(None);
    assert_eq!((first.stats.files_new, first.stats.files_unchanged), (20, 0));
    let second = backup(Some(first.root));
    assert_eq!((second.stats.files_unchanged, second.stats.bytes_read), (20, 0));
    assert_eq!(second.root, first.root, "an unchanged tree must give the same root tree");
    std::fs::write(src.join("sub/f3"), "changed").unwrap();
    let third = backup(Some(second.root));
    assert_eq!((third.stats.files_changed, third.stats.files_unchanged), (1, 19));
    assert_eq!(third.stats.bytes_read, 7);

    let out = dir.path().join("out");
    let restored = files::restore(&repo, third.root, &out, &RestoreOptions::default(), &()).unwrap();
    assert!(restored.damaged.is_empty() && restored.warnings.is_empty());
    assert_eq!(std::fs::read(out.join("src/sub/f3")).unwrap(), b"changed");
    assert_eq!(std::fs::read(out.join("src/sub/f4")).unwrap(), "file 4".repeat(1000).as_bytes());
}

/// A backup leaves the access times of the files it reads as they were (`O_NOATIME`). On a
/// file system mounted `noatime` this passes either way; with `relatime` (the default) a read
/// of a file whose atime is a day old updates it.
#[test]
fn a_backup_leaves_access_times_alone() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let old = filetime::FileTime::from_unix_time(1_600_000_000, 0);
    for (name, len) in [("small", 100), ("large", 3 << 20)] {
        let path = src.join(name);
        std::fs::write(&path, noise(9, len)).unwrap();
        filetime::set_file_times(&path, old, old).unwrap();
    }
    let repo = repo();
    let writer = repo.writer(WriterOptions::default());
    let options = BackupOptions::new(Patterns::none(), ChunkParams::FILES);
    let out = files::backup(&repo, &writer, std::slice::from_ref(&src), None, &options, &()).unwrap();
    writer.finish().unwrap();
    assert_eq!(out.stats.bytes_read, 100 + (3 << 20));
    for name in ["small", "large"] {
        let atime = std::fs::metadata(src.join(name)).unwrap().atime();
        assert_eq!(atime, 1_600_000_000, "{name}: the backup changed its access time");
    }
}

/// Bytes that do not compress, from a seed.
fn noise(seed: u8, len: usize) -> Vec<u8> {
    use proptest::prelude::Rng;
    use proptest::test_runner::{RngAlgorithm, TestRng};
    let mut out = vec![0; len];
    TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]).fill_bytes(&mut out);
    out
}

#[test]
fn files_of_many_chunks_in_many_packs_are_restored_whole_by_many_threads() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    // Small chunks in small packs: each file's blobs lie in dozens of packs, fetched on
    // different threads, and the two files share their first half.
    let shared = noise(1, 1 << 20);
    for (name, seed) in [("a.bin", 2), ("b.bin", 3)] {
        let mut data = shared.clone();
        data.extend(noise(seed, 1 << 20));
        let path = src.join(name);
        std::fs::write(&path, &data).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let mtime = filetime::FileTime::from_unix_time(1_700_000_000 + i64::from(seed), 123_456_789);
        filetime::set_file_mtime(&path, mtime).unwrap();
    }
    let repo = repo();
    let options = BackupOptions::new(Patterns::none(), ChunkParams::new(1 << 12).unwrap());
    let writer = repo.writer(WriterOptions { pack_size: 64 << 10, ..WriterOptions::default() });
    let saved = files::backup(&repo, &writer, std::slice::from_ref(&src), None, &options, &()).unwrap();
    writer.finish().unwrap();

    let out = dir.path().join("out");
    let restore = RestoreOptions { threads: 8, ..RestoreOptions::default() };
    let restored = files::restore(&repo, saved.root, &out, &restore, &()).unwrap();
    assert!(restored.damaged.is_empty() && restored.warnings.is_empty(), "{restored:?}");
    for name in ["a.bin", "b.bin"] {
        let (original, copy) = (src.join(name), out.join("src").join(name));
        assert!(std::fs::read(&original).unwrap() == std::fs::read(&copy).unwrap(), "{name} differs");
        let (before, after) = (std::fs::metadata(&original).unwrap(), std::fs::metadata(&copy).unwrap());
        assert_eq!(before.permissions().mode(), after.permissions().mode(), "{name}");
        assert_eq!(
            filetime::FileTime::from_last_modification_time(&after),
            filetime::FileTime::from_last_modification_time(&before),
            "{name}"
        );
    }
}
