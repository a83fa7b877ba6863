//! Helpers shared by the CLI integration tests: running the real `cairn` binary against a
//! repository in a temporary directory, building sample trees, seeded pseudo-random data,
//! and comparing two directory trees in Rust (contents, modes, mtimes, symlinks, hard links).
//!
//! Every integration-test binary compiles this module separately and uses only part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use filetime::FileTime;

/// The repository password of the tests; distinctive, so a leak into any output is found.
pub const PASSWORD: &str = "Zx9-tEsT-pAsSwOrD-q7Lm";

/// Environment variables of cairn that must not leak in from the caller's environment.
pub const CAIRN_VARS: &[&str] = &[
    "CAIRN_CONFIG",
    "CAIRN_REPO",
    "CAIRN_PASSWORD",
    "CAIRN_PASSWORD_FILE",
    "CAIRN_KEY_FILE",
    "CAIRN_NEW_PASSWORD",
    "CAIRN_KDF_MEMORY_KIB",
    "CAIRN_NO_PROGRESS",
    "CAIRN_STATE_DIR",
    "CAIRN_CRON_SECONDS",
];

/// The `cairn` binary bound to one repository and password.
#[derive(Clone)]
pub struct Cairn {
    pub repo: PathBuf,
    /// `None`: run without `CAIRN_PASSWORD`.
    pub password: Option<String>,
    /// Extra environment for every command.
    pub env: Vec<(String, String)>,
    /// Strings that must never appear in any output (passwords, key file contents).
    pub secrets: Vec<String>,
    /// Run with `--config FILE` and without `--repo`: the config file names the repository.
    pub config: Option<PathBuf>,
}

impl Cairn {
    pub fn new(repo: impl Into<PathBuf>) -> Cairn {
        Cairn {
            repo: repo.into(),
            password: Some(PASSWORD.into()),
            env: Vec::new(),
            secrets: vec![PASSWORD.into()],
            config: None,
        }
    }

    /// The binary driven by a config file (which names the repository and its password).
    pub fn with_config(config: impl Into<PathBuf>) -> Cairn {
        let mut c = Cairn::new("");
        c.password = None;
        c.config = Some(config.into());
        c
    }

    /// The same repository opened with another password (`None`: no password at all).
    pub fn with_password(&self, password: Option<&str>) -> Cairn {
        let mut c = self.clone();
        c.password = password.map(str::to_string);
        if let Some(p) = password {
            c.secrets.push(p.to_string());
        }
        c
    }

    /// A command line for `cairn --repo REPO ARGS…`, with a clean, cheap, quiet environment
    /// and stdin from /dev/null (so a password prompt fails instead of hanging).
    pub fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
        for var in CAIRN_VARS {
            cmd.env_remove(var);
        }
        // No config file of the caller's may be picked up.
        cmd.env("CAIRN_KDF_MEMORY_KIB", "1024").env("CAIRN_NO_PROGRESS", "1").env("XDG_CONFIG_HOME", "/nonexistent");
        if let Some(p) = &self.password {
            cmd.env("CAIRN_PASSWORD", p);
        }
        // The run history stays in the test's directory: never the caller's home, nor
        // /var/lib/cairn when the tests run as root.
        cmd.env("CAIRN_STATE_DIR", self.state_dir());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        match &self.config {
            Some(config) => cmd.arg("--config").arg(config).args(args),
            None => cmd.arg("--repo").arg(&self.repo).args(args),
        };
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd
    }

    /// Run `cairn ARGS…` to completion. Fails the test if a secret shows up in its output.
    pub fn cmd<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        let out = self.command(args).output().expect("running cairn");
        self.assert_no_secrets(args, &out);
        out
    }

    /// Run and require exit code 0.
    pub fn ok<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        let out = self.cmd(args);
        assert_eq!(code(&out), 0, "cairn {} failed:\n{}", show_args(args), describe(&out));
        out
    }

    /// Run and require a given exit code.
    pub fn expect_code<S: AsRef<OsStr>>(&self, expected: i32, args: &[S]) -> Output {
        let out = self.cmd(args);
        assert_eq!(code(&out), expected, "cairn {}: unexpected exit code:\n{}", show_args(args), describe(&out));
        out
    }

    pub fn assert_no_secrets<S: AsRef<OsStr>>(&self, args: &[S], out: &Output) {
        for secret in &self.secrets {
            let s = secret.as_bytes();
            for (what, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
                assert!(
                    !bytes.windows(s.len()).any(|w| w == s),
                    "a secret appeared on the {what} of `cairn {}`:\n{}",
                    show_args(args),
                    describe(out)
                );
            }
        }
    }

    /// The state directory (run history) of the commands: `cairn-state` beside the config
    /// file, else beside the repository (`REPO.state`); `env` may override it.
    pub fn state_dir(&self) -> PathBuf {
        match &self.config {
            Some(config) => config.with_file_name("cairn-state"),
            None => {
                let mut dir = self.repo.clone().into_os_string();
                dir.push(".state");
                PathBuf::from(dir)
            }
        }
    }

    pub fn init(&self) {
        self.ok(&["init"]);
    }

    /// `backup --json PATHS… EXTRA…`, requiring success; returns the parsed summary.
    pub fn backup_json<P: AsRef<OsStr>>(&self, paths: &[P], extra: &[&str]) -> serde_json::Value {
        let mut args: Vec<OsString> = vec!["backup".into(), "--json".into()];
        args.extend(extra.iter().map(OsString::from));
        args.extend(paths.iter().map(|p| p.as_ref().to_os_string()));
        json(&self.ok(&args))
    }

    /// `snapshots --json`, parsed.
    pub fn snapshots(&self) -> Vec<serde_json::Value> {
        match json(&self.ok(&["snapshots", "--json"])) {
            serde_json::Value::Array(list) => list,
            other => panic!("snapshots --json is not a list: {other}"),
        }
    }

    /// `restore SNAPSHOT --to DIR`, requiring success.
    pub fn restore(&self, snapshot: &str, to: &Path) -> Output {
        self.ok(&[OsStr::new("restore"), OsStr::new(snapshot), OsStr::new("--to"), to.as_os_str()])
    }
}

fn show_args<S: AsRef<OsStr>>(args: &[S]) -> String {
    args.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
}

/// Exit code (-1 if killed by a signal).
pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Everything about an output, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!("exit status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}", out.status, stdout(out), stderr(out))
}

/// Parse a command's stdout as JSON.
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", describe(out)))
}

// ---------------------------------------------------------------------------------------------
// Seeded pseudo-random data
// ---------------------------------------------------------------------------------------------

/// SplitMix64: tiny, fast, seeded; good enough for test data and choices.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` (`hi > lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(hi > lo);
        lo + self.next_u64() % (hi - lo)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.range(0, 100) < percent
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        self.fill(&mut v);
        v
    }
}

/// `n` bytes that compress very well but are not one repeated byte.
pub fn compressible(seed: u64, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 64);
    let mut i = 0u64;
    while out.len() < n {
        out.extend_from_slice(
            format!("seed {seed} line {i}: the quick brown fox jumps over the lazy dog\n").as_bytes(),
        );
        i += 1;
    }
    out.truncate(n);
    out
}

// ---------------------------------------------------------------------------------------------
// Building trees
// ---------------------------------------------------------------------------------------------

pub fn write(path: &Path, data: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, data).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

pub fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Set the mtime (and atime) of a file, directory or symlink itself, with nanoseconds.
pub fn set_mtime(path: &Path, secs: i64, nanos: u32) {
    let t = FileTime::from_unix_time(secs, nanos);
    filetime::set_symlink_file_times(path, t, t).unwrap_or_else(|e| panic!("setting mtime of {}: {e}", path.display()));
}

/// A path from raw bytes (for names that are not UTF-8).
pub fn raw(base: &Path, name: &[u8]) -> PathBuf {
    base.join(OsStr::from_bytes(name))
}

/// The non-UTF-8 file name of the sample tree.
pub const NON_UTF8_NAME: &[u8] = b"caf\xe9-\xff.bin";

/// What [`build_sample_tree`] made.
pub struct Sample {
    pub root: PathBuf,
    /// Regular files, counting every hard link.
    pub files: usize,
}

/// A tree with every kind of entry cairn keeps: nested and empty directories, an empty file,
/// a 3 MiB pseudo-random file and a copy of it, a compressible file, relative, absolute,
/// dangling and non-UTF-8 symlinks, a hard-linked pair, modes 0600/0755/4755/0700,
/// nanosecond mtimes (also before 1970 and after 2038), a file name that is not UTF-8. Directory mtimes are set last, so they
/// stick.
pub fn build_sample_tree(root: &Path, seed: u64) -> Sample {
    let mut rng = Rng::new(seed);
    fs::create_dir_all(root).unwrap();
    write(&root.join("empty.txt"), b"");
    fs::create_dir(root.join("empty_dir")).unwrap();
    write(&root.join("random.bin"), &rng.bytes(3 << 20));
    write(&root.join("compressible.txt"), &compressible(seed, 2 << 20));
    write(&root.join("private.txt"), b"for my eyes only\n");
    write(&root.join("script.sh"), b"#!/bin/sh\necho hello\n");
    write(&root.join("setuid"), &rng.bytes(1000));
    write(&root.join("sub/a.txt"), b"alpha\n");
    write(&root.join("sub/b.txt"), b"bravo\n");
    write(&root.join("sub/notes.md"), b"# notes\n");
    write(&root.join("sub/deeper/deepest/leaf.txt"), &rng.bytes(70_000));
    write(&root.join("hard1"), &rng.bytes(5000));
    fs::hard_link(root.join("hard1"), root.join("sub/hard2")).unwrap();
    write(&raw(root, NON_UTF8_NAME), b"not utf-8 name\n");
    // Same content as random.bin: restore writes the same blobs into two files.
    fs::copy(root.join("random.bin"), root.join("sub/copy-of-random.bin")).unwrap();
    std::os::unix::fs::symlink("sub/a.txt", root.join("link_rel")).unwrap();
    std::os::unix::fs::symlink(root.join("random.bin"), root.join("link_abs")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", root.join("link_dangling")).unwrap();
    std::os::unix::fs::symlink("../../sub", root.join("sub/deeper/link_up")).unwrap();
    std::os::unix::fs::symlink(OsStr::from_bytes(NON_UTF8_NAME), root.join("link_raw")).unwrap();

    set_mode(&root.join("private.txt"), 0o600);
    set_mode(&root.join("script.sh"), 0o755);
    set_mode(&root.join("setuid"), 0o4755);
    set_mode(&root.join("sub/notes.md"), 0o640);
    set_mode(&root.join("empty_dir"), 0o700);
    set_mode(&root.join("sub/deeper"), 0o750);

    // Every entry gets its own mtime with nanoseconds, deepest first so directories keep theirs.
    let mut all = Vec::new();
    collect_paths(root, &mut all);
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, p) in all.iter().enumerate() {
        set_mtime(p, 1_500_000_000 + (rng.range(0, 200_000_000) as i64), (i as u32 * 7_919 + 123_457) % 1_000_000_000);
    }
    set_mtime(root, 1_600_000_000, 987_654_321);
    // Before 1970 (negative seconds) and after 2038 (beyond 32 bits).
    write(&root.join("sub/before-1970.dat"), b"old");
    set_mtime(&root.join("sub/before-1970.dat"), -31_536_001, 750_000_000);
    write(&root.join("sub/after-2038.dat"), b"new");
    set_mtime(&root.join("sub/after-2038.dat"), 4_200_000_000, 1);
    set_mtime(&root.join("sub"), 1_234_567_890, 999_999_999);
    let files = count_files(root);
    assert_eq!(files, 16, "the sample tree changed; update the tests that count its files");
    Sample { root: root.to_path_buf(), files }
}

/// Every path under `dir` (not `dir` itself), without following symlinks.
pub fn collect_paths(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let is_dir = fs::symlink_metadata(&p).unwrap().is_dir();
        out.push(p.clone());
        if is_dir {
            collect_paths(&p, out);
        }
    }
}

/// Regular files under `dir`, counting each hard link.
pub fn count_files(dir: &Path) -> usize {
    let mut all = Vec::new();
    collect_paths(dir, &mut all);
    all.iter().filter(|p| fs::symlink_metadata(p).unwrap().is_file()).count()
}

// ---------------------------------------------------------------------------------------------
// Comparing trees
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink(Vec<u8>),
    Other,
}

#[derive(Debug, Clone)]
struct Info {
    kind: Kind,
    mode: u32,
    mtime_ns: i128,
    uid: u32,
    gid: u32,
    size: u64,
    dev_ino: (u64, u64),
    nlink: u64,
}

/// Relative path (raw bytes; the root itself is empty) → metadata.
fn scan(root: &Path) -> BTreeMap<Vec<u8>, Info> {
    fn info(path: &Path) -> Info {
        let m = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
        let ft = m.file_type();
        let kind = if ft.is_symlink() {
            Kind::Symlink(fs::read_link(path).unwrap().into_os_string().into_vec())
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File
        } else {
            Kind::Other
        };
        Info {
            kind,
            mode: m.mode() & 0o7777,
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            uid: m.uid(),
            gid: m.gid(),
            size: m.len(),
            dev_ino: (m.dev(), m.ino()),
            nlink: m.nlink(),
        }
    }
    fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<Vec<u8>, Info>) {
        let path = if rel.as_os_str().is_empty() { root.to_path_buf() } else { root.join(rel) };
        let i = info(&path);
        let is_dir = i.kind == Kind::Dir;
        out.insert(rel.as_os_str().as_bytes().to_vec(), i);
        if is_dir {
            for e in fs::read_dir(&path).unwrap() {
                walk(root, &rel.join(e.unwrap().file_name()), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

fn show(rel: &[u8]) -> String {
    if rel.is_empty() {
        ".".into()
    } else {
        String::from_utf8_lossy(rel).into_owned()
    }
}

fn same_contents(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (fs::File::open(a).unwrap(), fs::File::open(b).unwrap());
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let na = read_full(&mut fa, &mut ba);
        let nb = read_full(&mut fb, &mut bb);
        if na != nb || ba[..na] != bb[..nb] {
            return false;
        }
        if na == 0 {
            return true;
        }
    }
}

fn read_full(f: &mut fs::File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]).unwrap() {
            0 => break,
            k => n += k,
        }
    }
    n
}

/// `root/rel`, or `root` for the empty `rel` (no trailing slash, which would break files).
fn join(root: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(OsStr::from_bytes(rel))
    }
}

/// Hard-link groups: sets of relative paths sharing an inode (only inodes with >1 path).
fn link_groups(entries: &BTreeMap<Vec<u8>, Info>) -> BTreeSet<BTreeSet<Vec<u8>>> {
    let mut by_inode: HashMap<(u64, u64), BTreeSet<Vec<u8>>> = HashMap::new();
    for (rel, i) in entries {
        if i.kind == Kind::File {
            by_inode.entry(i.dev_ino).or_default().insert(rel.clone());
        }
    }
    by_inode.into_values().filter(|g| g.len() > 1).collect()
}

/// Differences between two trees (empty when identical): entries and their kinds, file
/// contents, modes (`st_mode & 0o7777`), mtimes in ns (also of directories and symlinks),
/// owners, symlink targets and hard-link groups. The roots are compared too.
pub fn tree_differences(a: &Path, b: &Path) -> Vec<String> {
    let (ea, eb) = (scan(a), scan(b));
    let mut diffs = Vec::new();
    for rel in ea.keys().filter(|k| !eb.contains_key(*k)) {
        diffs.push(format!("{}: only in {}", show(rel), a.display()));
    }
    for rel in eb.keys().filter(|k| !ea.contains_key(*k)) {
        diffs.push(format!("{}: only in {}", show(rel), b.display()));
    }
    for (rel, ia) in &ea {
        let Some(ib) = eb.get(rel) else { continue };
        let name = show(rel);
        if ia.kind != ib.kind {
            diffs.push(format!("{name}: kind {:?} vs {:?}", ia.kind, ib.kind));
            continue;
        }
        if ia.mode != ib.mode {
            diffs.push(format!("{name}: mode {:o} vs {:o}", ia.mode, ib.mode));
        }
        if ia.mtime_ns != ib.mtime_ns {
            diffs.push(format!("{name}: mtime {} vs {} ns", ia.mtime_ns, ib.mtime_ns));
        }
        if (ia.uid, ia.gid) != (ib.uid, ib.gid) {
            diffs.push(format!("{name}: owner {}:{} vs {}:{}", ia.uid, ia.gid, ib.uid, ib.gid));
        }
        if ia.kind == Kind::File {
            if ia.size != ib.size {
                diffs.push(format!("{name}: size {} vs {}", ia.size, ib.size));
            } else if !same_contents(&join(a, rel), &join(b, rel)) {
                diffs.push(format!("{name}: contents differ"));
            }
            // A file linked from outside the tree would show nlink > group size; compare counts.
            if ia.nlink != ib.nlink {
                diffs.push(format!("{name}: link count {} vs {}", ia.nlink, ib.nlink));
            }
        }
    }
    let (ga, gb) = (link_groups(&ea), link_groups(&eb));
    if ga != gb {
        let fmt = |g: &BTreeSet<BTreeSet<Vec<u8>>>| {
            g.iter().map(|s| s.iter().map(|r| show(r)).collect::<Vec<_>>().join(" = ")).collect::<Vec<_>>()
        };
        diffs.push(format!("hard-link groups differ: {:?} vs {:?}", fmt(&ga), fmt(&gb)));
    }
    diffs
}

/// Panic with every difference unless the trees are identical (see [`tree_differences`]).
pub fn assert_same_tree(a: &Path, b: &Path) {
    let diffs = tree_differences(a, b);
    assert!(diffs.is_empty(), "trees {} and {} differ:\n  {}", a.display(), b.display(), diffs.join("\n  "));
}

/// Names, sizes and mtimes (ns) of every file under `dir`, for "nothing changed" checks.
pub fn listing(dir: &Path) -> BTreeMap<PathBuf, (u64, i128)> {
    let mut all = Vec::new();
    collect_paths(dir, &mut all);
    all.into_iter()
        .map(|p| {
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            (rel, (m.len(), i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())))
        })
        .collect()
}

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("cairn-test-").tempdir().unwrap()
}
