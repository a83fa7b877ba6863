//! Capturing directory trees.
//!
//! Each directory is handled in three steps: list and filter its entries; queue the files
//! that changed since the parent snapshot for the reader threads (one per core, shared by the
//! whole walk) and, while they read, descend into the subdirectories (some on other walker
//! threads while a core is free); then collect the reads and assemble its tree in name order.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use cairn_repo::{ChunkParams, Id, Node, NodeKind, RepoError, Repository, SaveError, SourceStats, Tree, Writer};

use super::{FilesError, Patterns, Progress, MAX_KEPT_WARNINGS};

/// How often a file that changes while being read is read again before it is flagged.
const READ_ATTEMPTS: usize = 3;

/// What to back up and how.
pub struct BackupOptions {
    pub excludes: Patterns,
    pub chunking: ChunkParams,
    /// Read every file even when the parent snapshot says it is unchanged.
    pub reread_all: bool,
    /// Reader threads (files read at the same time), and walker threads (directories
    /// listed at the same time).
    pub read_threads: usize,
}

impl BackupOptions {
    pub fn new(excludes: Patterns, chunking: ChunkParams) -> BackupOptions {
        let read_threads = std::thread::available_parallelism().map_or(2, usize::from);
        BackupOptions { excludes, chunking, reread_all: false, read_threads }
    }
}

/// Result of backing up a set of paths.
#[derive(Debug)]
pub struct BackupOutcome {
    /// Tree holding one node per backed-up path, named by its last component.
    pub root: Id,
    pub stats: SourceStats,
    /// The first warnings; `stats.errors` counts the items that failed.
    pub warnings: Vec<String>,
}

/// Back up `paths` into one root tree. `parent` is the root tree of the previous snapshot of
/// the same paths, whose unchanged files are not read again.
pub fn backup(
    repo: &Repository,
    writer: &Writer<'_>,
    paths: &[PathBuf],
    parent: Option<Id>,
    options: &BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupOutcome, FilesError> {
    let started = Instant::now();
    let items = top_level_items(repo, paths, parent)?;
    let readers = options.read_threads.max(1);
    let (reads, jobs) = crossbeam_channel::bounded::<ReadJob>(READ_QUEUE_PER_READER * readers);
    let budget = Budget { active: AtomicUsize::new(1), max: options.read_threads.max(1) };
    std::thread::scope(|scope| {
        for i in 0..readers {
            let jobs = jobs.clone();
            std::thread::Builder::new()
                .name(format!("cairn-read-{i}"))
                .spawn_scoped(scope, move || reader(&jobs, writer, options.chunking, progress))
                .expect("spawning a reader thread");
        }
        drop(jobs);
        // The calling thread is the first walker. The walkers hold the only senders of the
        // queue, so the readers finish when the walk is over, however it ends.
        let mut walker = Walker {
            repo,
            writer,
            options,
            progress,
            budget: &budget,
            reads,
            stats: SourceStats::default(),
            warnings: Vec::new(),
            hard_links: HashMap::new(),
        };
        let mut root = walker.save_items(items)?;
        let root_id = writer.save_tree(&mut root)?;
        walker.stats.duration_secs = started.elapsed().as_secs_f64();
        Ok(BackupOutcome { root: root_id, stats: walker.stats, warnings: walker.warnings })
    })
}

/// One item per top-level path, each with its node in the parent snapshot's root tree.
fn top_level_items(repo: &Repository, paths: &[PathBuf], parent: Option<Id>) -> Result<Vec<Item>, FilesError> {
    let parent_root = parent.and_then(|p| repo.load_tree(&p).ok());
    let mut items = Vec::new();
    let mut names: HashMap<Vec<u8>, PathBuf> = HashMap::new();
    for path in paths {
        let meta = fs::symlink_metadata(path).map_err(|source| FilesError::Path { path: path.clone(), source })?;
        let name = top_level_name(path)?;
        if let Some(first) = names.insert(name.as_bytes().to_vec(), path.clone()) {
            return Err(FilesError::DuplicateName {
                name: name.to_string_lossy().into_owned(),
                first,
                second: path.clone(),
            });
        }
        let previous = parent_root.as_ref().and_then(|t| t.find(name.as_bytes())).cloned();
        items.push(Item { name, path: path.clone(), rel: PathBuf::new(), meta, previous });
    }
    Ok(items)
}

/// The name a top-level path is stored under: its last component, after resolving `.`/`..`.
fn top_level_name(path: &Path) -> Result<OsString, FilesError> {
    let absolute = std::path::absolute(path).map_err(|source| FilesError::Path { path: path.to_path_buf(), source })?;
    Ok(super::normalize(&absolute).file_name().map_or_else(|| "root".into(), OsStr::to_os_string))
}

/// One directory entry about to be saved.
struct Item {
    name: OsString,
    path: PathBuf,
    /// Path relative to the backed-up root, for exclude patterns.
    rel: PathBuf,
    meta: Metadata,
    /// The same entry in the parent snapshot.
    previous: Option<Node>,
}

/// How many walker threads may run at once; a thread waiting for others does not count.
struct Budget {
    active: AtomicUsize,
    max: usize,
}

impl Budget {
    fn try_take(&self) -> bool {
        self.active.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1)).is_ok()
    }
    fn release(&self) {
        self.active.fetch_sub(1, Ordering::AcqRel);
    }
    fn resume(&self) {
        self.active.fetch_add(1, Ordering::AcqRel);
    }
}

struct Walker<'a, 'w> {
    repo: &'a Repository,
    writer: &'a Writer<'w>,
    options: &'a BackupOptions,
    progress: &'a dyn Progress,
    budget: &'a Budget,
    /// Files to read go to the reader threads through this.
    reads: crossbeam_channel::Sender<ReadJob>,
    stats: SourceStats,
    warnings: Vec<String>,
    /// Content already saved for (device, inode) of files with several links.
    hard_links: HashMap<(u64, u64), Vec<Id>>,
}

impl<'a, 'w> Walker<'a, 'w> {
    /// A walker for a subtree on another thread, with its own counters.
    fn child(&self) -> Walker<'a, 'w> {
        Walker {
            repo: self.repo,
            writer: self.writer,
            options: self.options,
            progress: self.progress,
            budget: self.budget,
            reads: self.reads.clone(),
            stats: SourceStats::default(),
            warnings: Vec::new(),
            hard_links: HashMap::new(),
        }
    }

    /// Fold a child's counters and warnings into this walker's.
    fn merge(&mut self, child: Walker<'_, '_>) {
        self.stats.add(&child.stats);
        let room = MAX_KEPT_WARNINGS.saturating_sub(self.warnings.len());
        self.warnings.extend(child.warnings.into_iter().take(room));
        self.hard_links.extend(child.hard_links);
    }

    /// Save the directories among `items`, some on other threads while cores are free.
    fn save_dirs(&mut self, items: &[Item], dirs: Vec<usize>) -> Result<Vec<(usize, Option<Node>)>, FilesError> {
        let mut done = Vec::with_capacity(dirs.len());
        let mut first_error = None;
        std::thread::scope(|scope| {
            let mut running = Vec::new();
            for i in dirs {
                if self.budget.try_take() {
                    let mut child = self.child();
                    let item = &items[i];
                    running.push((
                        i,
                        scope.spawn(move || {
                            let result = child.save_other(item);
                            child.budget.release();
                            (child, result)
                        }),
                    ));
                    continue;
                }
                match self.save_other(&items[i]) {
                    Ok(node) => done.push((i, node)),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            // While waiting, this thread's slot is free for the others.
            self.budget.release();
            for (i, handle) in running {
                let (child, result) = handle.join().expect("a walker thread panicked");
                self.merge(child);
                match result {
                    Ok(node) => done.push((i, node)),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            self.budget.resume();
        });
        match first_error {
            Some(e) => Err(e),
            None => Ok(done),
        }
    }

    fn warn(&mut self, message: String) {
        self.progress.warning(&message);
        if self.warnings.len() < MAX_KEPT_WARNINGS {
            self.warnings.push(message);
        }
    }

    fn fail(&mut self, path: &Path, error: &dyn std::fmt::Display) {
        self.stats.errors += 1;
        self.warn(format!("{}: {error}", path.display()));
    }

    /// Save a list of entries (a directory's, or the top-level paths) as one tree.
    fn save_items(&mut self, items: Vec<Item>) -> Result<Tree, FilesError> {
        let mut files: Vec<Option<Node>> = vec![None; items.len()];
        let mut to_read = Vec::new();
        for (i, item) in items.iter().enumerate().filter(|(_, item)| item.meta.is_file()) {
            self.progress.item();
            let mut node = node_from_meta(&item.name, NodeKind::File, &item.meta);
            self.stats.total_bytes += node.size;
            match self.reusable_content(&node, item.previous.as_ref()) {
                Some(content) => {
                    node.content = content;
                    self.stats.files_unchanged += 1;
                    files[i] = Some(node);
                }
                None => to_read.push((i, node)),
            }
        }
        // The readers work on this directory's files while this thread goes on into its
        // subdirectories (which queue theirs): no core waits for one directory to finish.
        let reading = self.submit_reads(&items, to_read);
        let dirs: Vec<usize> = (0..items.len()).filter(|&i| items[i].meta.is_dir()).collect();
        let mut others: Vec<Option<Node>> = vec![None; items.len()];
        for (i, node) in self.save_dirs(&items, dirs)? {
            others[i] = node;
        }
        for (i, result) in reading.collect() {
            match result {
                Ok(read) => files[i] = Some(self.record_read(&items[i], read)),
                Err(ReadFailure::Source(e)) => self.fail(&items[i].path, &e),
                Err(ReadFailure::Repo(e)) => return Err(e.into()),
            }
        }
        let mut tree = Tree::default();
        for ((item, file), other) in items.iter().zip(files).zip(others) {
            let node = match (file, other) {
                (Some(node), _) | (None, Some(node)) => Some(node),
                (None, None) if item.meta.is_file() || item.meta.is_dir() => None,
                (None, None) => self.save_other(item)?,
            };
            tree.nodes.extend(node);
        }
        Ok(tree)
    }

    /// Content that need not be read again: from the parent snapshot, or an earlier link.
    fn reusable_content(&self, node: &Node, previous: Option<&Node>) -> Option<Vec<Id>> {
        if let Some(prev) = previous.filter(|p| !self.options.reread_all && unchanged(p, node)) {
            let index = self.repo.index();
            if prev.content.iter().all(|id| index.contains(id)) {
                return Some(prev.content.clone());
            }
        }
        if node.links > 1 {
            return self.hard_links.get(&(node.dev, node.inode)).cloned();
        }
        None
    }

    /// Queue files for the readers; [`Reading::collect`] waits for them.
    fn submit_reads(&self, items: &[Item], to_read: Vec<(usize, Node)>) -> Reading {
        if to_read.is_empty() {
            // The common case of an unchanged directory: no channel to make.
            return Reading { results: crossbeam_channel::never(), expected: 0 };
        }
        let (done, results) = crossbeam_channel::unbounded();
        let expected = to_read.len();
        for (position, node) in to_read {
            let job = ReadJob { position, path: items[position].path.clone(), node, done: done.clone() };
            self.reads.send(job).expect("the readers live as long as the walk");
        }
        Reading { results, expected }
    }

    /// Count a file that was read and remember its content for later hard links.
    fn record_read(&mut self, item: &Item, read: FileRead) -> Node {
        self.stats.bytes_read += read.bytes;
        if item.previous.as_ref().is_some_and(|p| p.kind == NodeKind::File) {
            self.stats.files_changed += 1;
        } else {
            self.stats.files_new += 1;
        }
        if read.node.changed_during_backup {
            self.warn(format!(
                "{}: changed while being read {READ_ATTEMPTS} times; stored the last read, flagged as possibly inconsistent",
                item.path.display()
            ));
        }
        if read.node.links > 1 {
            self.hard_links.insert((read.node.dev, read.node.inode), read.node.content.clone());
        }
        read.node
    }

    /// Save a directory, symlink or special file; `None` when it is skipped.
    fn save_other(&mut self, item: &Item) -> Result<Option<Node>, FilesError> {
        let file_type = item.meta.file_type();
        self.progress.item();
        if file_type.is_dir() {
            let mut node = node_from_meta(&item.name, NodeKind::Dir, &item.meta);
            let parent = item.previous.as_ref().filter(|p| p.kind == NodeKind::Dir).and_then(|p| p.subtree);
            let parent_tree = parent.and_then(|id| self.repo.load_tree(&id).ok().map(|t| (id, t)));
            let Some(id) = self.save_dir(&item.path, &item.rel, parent_tree.as_ref())? else { return Ok(None) };
            node.subtree = Some(id);
            self.stats.dirs += 1;
            return Ok(Some(node));
        }
        if file_type.is_symlink() {
            let mut node = node_from_meta(&item.name, NodeKind::Symlink, &item.meta);
            return match fs::read_link(&item.path) {
                Ok(target) => {
                    node.set_target(target.as_os_str());
                    Ok(Some(node))
                }
                Err(e) => {
                    self.fail(&item.path, &e);
                    Ok(None)
                }
            };
        }
        let what = if file_type.is_socket() {
            "socket"
        } else if file_type.is_fifo() {
            "FIFO"
        } else {
            "device"
        };
        self.warn(format!("{}: skipped ({what})", item.path.display()));
        Ok(None)
    }

    /// Save a directory's tree; `None` if it could not be listed. `parent` is the same
    /// directory's tree in the parent snapshot, with its id.
    fn save_dir(&mut self, path: &Path, rel: &Path, parent: Option<&(Id, Tree)>) -> Result<Option<Id>, FilesError> {
        let mut entries = match fs::read_dir(path).and_then(|rd| rd.collect::<Result<Vec<_>, _>>()) {
            Ok(e) => e,
            Err(e) => {
                self.fail(path, &e);
                return Ok(None);
            }
        };
        entries.sort_by_cached_key(std::fs::DirEntry::file_name);
        let mut items = Vec::with_capacity(entries.len());
        for entry in entries {
            let name = entry.file_name();
            let child_path = entry.path();
            let child_rel = rel.join(&name);
            // Through the open directory (fstatat), not the full path: on a large tree,
            // walking every path again from the root costs more than the stat itself.
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue, // deleted meanwhile
                Err(e) => {
                    self.fail(&child_path, &e);
                    continue;
                }
            };
            if self.options.excludes.matches(&child_rel, meta.is_dir()) {
                continue;
            }
            let previous = parent.and_then(|(_, t)| t.find(name.as_bytes())).cloned();
            items.push(Item { name, path: child_path, rel: child_rel, meta, previous });
        }
        let mut tree = self.save_items(items)?;
        // An unchanged directory is the parent's tree, byte for byte: no need to encode it —
        // unless prune has marked the pack that holds it (then it is not reused, but saved).
        if let Some((id, _)) = parent.filter(|(id, t)| t.nodes == tree.nodes && self.repo.index().contains(id)) {
            return Ok(Some(*id));
        }
        Ok(Some(self.writer.save_tree(&mut tree)?))
    }
}

/// The outcome of reading the file at a position in a directory's list.
type ReadResult = (usize, Result<FileRead, ReadFailure>);

/// Files queued per reader thread: enough that a reader finds work the moment it is done,
/// few enough that a walker does not run far ahead.
const READ_QUEUE_PER_READER: usize = 8;

/// A file for a reader thread, and where its outcome goes.
struct ReadJob {
    position: usize,
    path: PathBuf,
    node: Node,
    done: crossbeam_channel::Sender<ReadResult>,
}

/// One directory's files with the readers.
struct Reading {
    results: crossbeam_channel::Receiver<ReadResult>,
    expected: usize,
}

impl Reading {
    /// Every outcome, in the directory's order.
    fn collect(self) -> Vec<ReadResult> {
        let mut out: Vec<ReadResult> = self.results.iter().take(self.expected).collect();
        out.sort_unstable_by_key(|(i, _)| *i);
        out
    }
}

/// A reader thread: read queued files until the walk closes the queue.
fn reader(
    jobs: &crossbeam_channel::Receiver<ReadJob>,
    writer: &Writer<'_>,
    chunking: ChunkParams,
    progress: &dyn Progress,
) {
    for ReadJob { position, path, node, done } in jobs {
        let read = read_stable(writer, &path, node, chunking, progress);
        let _ = done.send((position, read));
    }
}

/// A file's content as read.
struct FileRead {
    node: Node,
    bytes: u64,
}

/// Why a file could not be saved: its own problem, or the repository's.
enum ReadFailure {
    Source(std::io::Error),
    Repo(RepoError),
}

/// Read a file until two stats around the read agree; after [`READ_ATTEMPTS`] the last read
/// is kept and flagged as changed during backup. The walker's stat (in `node`) is the first
/// read's "before": it was taken before the read, and a file replaced since then has another
/// inode, which the stat after the read shows.
fn read_stable(
    writer: &Writer<'_>,
    path: &Path,
    mut node: Node,
    chunking: ChunkParams,
    progress: &dyn Progress,
) -> Result<FileRead, ReadFailure> {
    let mut bytes = 0;
    let mut before = Version::of(&node);
    for attempt in 1..=READ_ATTEMPTS {
        let file = open_for_reading(path, node.uid).map_err(ReadFailure::Source)?;
        if attempt > 1 {
            apply_meta(&mut node, &file.metadata().map_err(ReadFailure::Source)?);
            before = Version::of(&node);
        }
        // Read no further than the size before: a file that keeps growing must not keep the
        // backup reading forever. Growth shows up as a changed size below.
        let reader = CountingReader { inner: &file, progress }.take(before.size);
        let saved = match writer.save_stream(reader, chunking) {
            Ok(s) => s,
            Err(SaveError::Source(e)) => return Err(ReadFailure::Source(e)),
            Err(SaveError::Repo(e)) => return Err(ReadFailure::Repo(e)),
        };
        bytes += saved.size;
        let after = file.metadata().map_err(ReadFailure::Source)?;
        // The node describes the version that was read, as of the stat after the read.
        apply_meta(&mut node, &after);
        node.content = saved.content;
        if saved.size == node.size && before == Version::of(&node) {
            break;
        }
        node.changed_during_backup = attempt == READ_ATTEMPTS;
    }
    Ok(FileRead { node, bytes })
}

/// `path` opened for reading, without updating its access time (`O_NOATIME`) where that is
/// allowed: a backup reads every file, and must not make them all look used (tools that clean
/// up by atime would keep them forever), nor dirty every inode it reads. Only the file's
/// `owner` (as the walker's stat says) or root may ask for that; others' files are opened
/// plainly, rather than refused first on every open.
fn open_for_reading(path: &Path, owner: u32) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    if !matches!(super::effective_uid(), Some(uid) if uid == 0 || uid == owner) {
        return File::open(path);
    }
    match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOATIME).open(path) {
        // The owner changed since the stat, or an id mapping says otherwise.
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => File::open(path),
        opened => opened,
    }
}

/// What tells two versions of a file apart: a write changes the size or mtime, any change
/// the ctime, a replacement the inode.
#[derive(PartialEq)]
struct Version {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    dev: u64,
    inode: u64,
}

impl Version {
    /// The version a node's stat describes.
    fn of(node: &Node) -> Version {
        Version { size: node.size, mtime_ns: node.mtime_ns, ctime_ns: node.ctime_ns, dev: node.dev, inode: node.inode }
    }
}

/// The parent snapshot's node describes the same file version.
fn unchanged(prev: &Node, now: &Node) -> bool {
    prev.kind == NodeKind::File
        && !prev.changed_during_backup
        && prev.size == now.size
        && prev.mtime_ns == now.mtime_ns
        && prev.ctime_ns == now.ctime_ns
        && prev.inode == now.inode
        && (prev.size == 0 || !prev.content.is_empty())
}

fn node_from_meta(name: &OsStr, kind: NodeKind, meta: &Metadata) -> Node {
    let mut node = Node::new(name, kind);
    apply_meta(&mut node, meta);
    node
}

/// Copy what a stat says into a node.
fn apply_meta(node: &mut Node, meta: &Metadata) {
    node.mode = meta.mode() & 0o7777;
    node.mtime_ns = meta.mtime() * 1_000_000_000 + meta.mtime_nsec();
    node.ctime_ns = meta.ctime() * 1_000_000_000 + meta.ctime_nsec();
    node.uid = meta.uid();
    node.gid = meta.gid();
    node.dev = meta.dev();
    node.inode = meta.ino();
    node.links = meta.nlink();
    if node.kind == NodeKind::File {
        node.size = meta.len();
    }
}

/// Reports bytes to the progress sink as they are read.
struct CountingReader<'a> {
    inner: &'a File,
    progress: &'a dyn Progress,
}

impl Read for CountingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.bytes(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use cairn_repo::testing::memory_repo;
    use cairn_repo::WriterOptions;

    use super::*;

    #[test]
    fn a_file_replaced_after_the_walk_is_read_as_it_is_now_and_not_flagged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"before").unwrap();
        let walked = node_from_meta(OsStr::new("f"), NodeKind::File, &fs::symlink_metadata(&path).unwrap());
        // Between the walker's stat and the read, another, longer file takes its name.
        let next = dir.path().join("g");
        fs::write(&next, b"after, and longer").unwrap();
        fs::rename(&next, &path).unwrap();

        let repo = memory_repo();
        let writer = repo.writer(WriterOptions::default());
        let Ok(read) = read_stable(&writer, &path, walked, ChunkParams::FILES, &()) else { panic!("the read failed") };
        writer.finish().unwrap();
        assert!(!read.node.changed_during_backup, "a stable file read again is not 'changed during backup'");
        assert_eq!((read.node.size, read.node.inode), (17, fs::metadata(&path).unwrap().ino()));
        let content: Vec<u8> = read.node.content.iter().flat_map(|id| repo.load_blob(id).unwrap()).collect();
        assert_eq!(content, b"after, and longer");
    }
}
