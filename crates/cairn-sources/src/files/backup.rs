//! Capturing directory trees.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use cairn_repo::{ChunkParams, Id, Node, NodeKind, Repository, SaveError, SourceStats, Tree, Writer};

use super::{FilesError, Patterns, Progress, MAX_KEPT_WARNINGS};

/// How often a file that changes while being read is read again before it is flagged.
const READ_ATTEMPTS: usize = 3;

/// What to back up and how.
pub struct BackupOptions {
    pub excludes: Patterns,
    pub chunking: ChunkParams,
    /// Read every file even when the parent snapshot says it is unchanged.
    pub reread_all: bool,
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
    let mut walker = Walker {
        repo,
        writer,
        options,
        progress,
        stats: SourceStats::default(),
        warnings: Vec::new(),
        hard_links: HashMap::new(),
    };
    let parent_root = parent.and_then(|p| repo.load_tree(&p).ok());
    let mut root = Tree::default();
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
        let previous = parent_root.as_ref().and_then(|t| t.find(name.as_bytes()));
        if let Some(node) = walker.save_entry(path, Path::new(""), &name, &meta, previous)? {
            root.nodes.push(node);
        }
    }
    let root_id = writer.save_tree(&mut root)?;
    walker.stats.duration_secs = started.elapsed().as_secs_f64();
    Ok(BackupOutcome { root: root_id, stats: walker.stats, warnings: walker.warnings })
}

/// The name a top-level path is stored under: its last component, after resolving `.`/`..`.
fn top_level_name(path: &Path) -> Result<std::ffi::OsString, FilesError> {
    let absolute = std::path::absolute(path).map_err(|source| FilesError::Path { path: path.to_path_buf(), source })?;
    let normal: PathBuf = absolute.components().fold(PathBuf::new(), |mut acc, c| {
        match c {
            std::path::Component::ParentDir => {
                acc.pop();
            }
            std::path::Component::CurDir => {}
            other => acc.push(other),
        }
        acc
    });
    Ok(normal.file_name().map_or_else(|| "root".into(), OsStr::to_os_string))
}

struct Walker<'a, 'w> {
    repo: &'a Repository,
    writer: &'a Writer<'w>,
    options: &'a BackupOptions,
    progress: &'a dyn Progress,
    stats: SourceStats,
    warnings: Vec<String>,
    /// Content already saved for (device, inode) of files with several links.
    hard_links: HashMap<(u64, u64), Vec<Id>>,
}

impl Walker<'_, '_> {
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

    /// Save one entry; `None` when it is skipped.
    fn save_entry(
        &mut self,
        path: &Path,
        rel: &Path,
        name: &OsStr,
        meta: &Metadata,
        previous: Option<&Node>,
    ) -> Result<Option<Node>, FilesError> {
        let file_type = meta.file_type();
        let kind = if file_type.is_dir() {
            NodeKind::Dir
        } else if file_type.is_file() {
            NodeKind::File
        } else if file_type.is_symlink() {
            NodeKind::Symlink
        } else {
            let what = if file_type.is_socket() {
                "socket"
            } else if file_type.is_fifo() {
                "FIFO"
            } else {
                "device"
            };
            self.warn(format!("{}: skipped ({what})", path.display()));
            return Ok(None);
        };
        let mut node = node_from_meta(name, kind, meta);
        self.progress.item();
        match kind {
            NodeKind::Dir => {
                let parent_tree = previous
                    .filter(|p| p.kind == NodeKind::Dir)
                    .and_then(|p| p.subtree)
                    .and_then(|id| self.repo.load_tree(&id).ok());
                match self.save_dir(path, rel, parent_tree.as_ref())? {
                    Some(id) => node.subtree = Some(id),
                    None => return Ok(None),
                }
                self.stats.dirs += 1;
            }
            NodeKind::Symlink => match fs::read_link(path) {
                Ok(target) => node.set_target(target.as_os_str()),
                Err(e) => {
                    self.fail(path, &e);
                    return Ok(None);
                }
            },
            NodeKind::File => {
                if !self.save_file(path, &mut node, previous)? {
                    return Ok(None);
                }
            }
        }
        Ok(Some(node))
    }

    /// Save a directory's tree; `None` if it could not be listed.
    fn save_dir(&mut self, path: &Path, rel: &Path, parent: Option<&Tree>) -> Result<Option<Id>, FilesError> {
        let mut entries = match fs::read_dir(path).and_then(|rd| rd.collect::<Result<Vec<_>, _>>()) {
            Ok(e) => e,
            Err(e) => {
                self.fail(path, &e);
                return Ok(None);
            }
        };
        entries.sort_by_key(|a| a.file_name());
        let mut tree = Tree::default();
        for entry in entries {
            let name = entry.file_name();
            let child_path = entry.path();
            let child_rel = rel.join(&name);
            let meta = match fs::symlink_metadata(&child_path) {
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
            let previous = parent.and_then(|t| t.find(name.as_bytes()));
            if let Some(node) = self.save_entry(&child_path, &child_rel, &name, &meta, previous)? {
                tree.nodes.push(node);
            }
        }
        Ok(Some(self.writer.save_tree(&mut tree)?))
    }

    /// Fill in a file's content; `false` if it could not be read.
    fn save_file(&mut self, path: &Path, node: &mut Node, previous: Option<&Node>) -> Result<bool, FilesError> {
        self.stats.total_bytes += node.size;
        if let Some(prev) = previous.filter(|p| !self.options.reread_all && unchanged(p, node)) {
            let index = self.repo.index();
            if prev.content.iter().all(|id| index.contains(id)) {
                node.content = prev.content.clone();
                self.stats.files_unchanged += 1;
                return Ok(true);
            }
        }
        if node.links > 1 {
            if let Some(content) = self.hard_links.get(&(node.dev, node.inode)) {
                node.content = content.clone();
                self.stats.files_unchanged += 1;
                return Ok(true);
            }
        }
        match self.read_stable(path, node)? {
            Ok(()) => {}
            Err(e) => {
                self.fail(path, &e);
                return Ok(false);
            }
        }
        if previous.is_some_and(|p| p.kind == NodeKind::File) {
            self.stats.files_changed += 1;
        } else {
            self.stats.files_new += 1;
        }
        if node.links > 1 {
            self.hard_links.insert((node.dev, node.inode), node.content.clone());
        }
        Ok(true)
    }

    /// Read a file until two stats around the read agree, or flag it as changed.
    /// The outer error is a repository failure; the inner one a problem with this file.
    fn read_stable(&mut self, path: &Path, node: &mut Node) -> Result<Result<(), std::io::Error>, FilesError> {
        for attempt in 1..=READ_ATTEMPTS {
            let file = match File::open(path) {
                Ok(f) => f,
                Err(e) => return Ok(Err(e)),
            };
            let before = match file.metadata() {
                Ok(m) => m,
                Err(e) => return Ok(Err(e)),
            };
            let counting = CountingReader { inner: &file, progress: self.progress };
            let saved = match self.writer.save_stream(counting, self.options.chunking) {
                Ok(s) => s,
                Err(SaveError::Source(e)) => return Ok(Err(e)),
                Err(SaveError::Repo(e)) => return Err(e.into()),
            };
            self.stats.bytes_read += saved.size;
            let after = file.metadata().map_err(|source| FilesError::Path { path: path.to_path_buf(), source })?;
            let stable = saved.size == after.len() && same_version(&before, &after);
            // The node describes the version that was read, as of the stat after the read.
            apply_meta(node, &after);
            node.content = saved.content;
            if stable {
                return Ok(Ok(()));
            }
            if attempt == READ_ATTEMPTS {
                node.changed_during_backup = true;
                self.warn(format!("{}: changed while being read {READ_ATTEMPTS} times; stored the last read, flagged as possibly inconsistent", path.display()));
            }
        }
        Ok(Ok(()))
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

fn same_version(a: &Metadata, b: &Metadata) -> bool {
    a.len() == b.len()
        && a.mtime() == b.mtime()
        && a.mtime_nsec() == b.mtime_nsec()
        && a.ctime() == b.ctime()
        && a.ctime_nsec() == b.ctime_nsec()
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

impl std::io::Read for CountingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.bytes(n as u64);
        Ok(n)
    }
}
