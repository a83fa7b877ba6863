//! Rebuilding directory trees from a snapshot.
//!
//! Order: walk the trees and select entries; create directories, symlinks and empty files;
//! fetch content pack by pack on several threads, writing each blob at its offsets (a file is
//! created by its first write and gets its metadata through the open handle right after its
//! last; a file of several blobs is written by one thread at a time, through one handle);
//! remove files whose data was damaged and report them; link hard links; finally set the
//! metadata of directories, deepest first, and symlinks.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cairn_repo::restore::{plan, PackPlan};
use cairn_repo::{Id, Node, NodeKind, Repository};
use filetime::FileTime;

use super::{FilesError, Patterns, Progress};

/// What to restore and how.
pub struct RestoreOptions {
    /// Only entries matching these (or under a matching directory); all when empty.
    pub include: Patterns,
    /// Threads fetching packs; also the cap on packs in flight.
    pub threads: usize,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            include: Patterns::none(),
            // One more than cores: while a thread waits to write a file another is writing,
            // the spare one decompresses.
            threads: std::thread::available_parallelism().map_or(2, usize::from) + 1,
        }
    }
}

/// What a restore did.
#[derive(Debug, Default)]
pub struct RestoreOutcome {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
    /// Files not restored because their data is damaged or missing (relative paths).
    pub damaged: Vec<String>,
    /// Other problems with single entries.
    pub warnings: Vec<String>,
}

struct Entry {
    rel: PathBuf,
    node: Node,
    /// Chosen by the include patterns (directories may be kept only as parents).
    selected: bool,
}

/// Restore the tree `root` under `target`.
pub fn restore(
    repo: &Repository,
    root: Id,
    target: &Path,
    options: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreOutcome, FilesError> {
    let entries = select(repo, root, &options.include, options.threads)?;
    let mut out = RestoreOutcome::default();
    // Into an empty target nothing can be in the way; otherwise each path is checked first.
    let target_was_empty = target.read_dir().map_or(true, |mut d| d.next().is_none());
    fs::create_dir_all(target).map_err(|source| FilesError::Path { path: target.to_path_buf(), source })?;

    // Directories first, then everything that is not file content.
    let mut files: Vec<&Entry> = Vec::new();
    let mut links: Vec<(&Entry, usize)> = Vec::new();
    let mut first_of_inode: HashMap<(u64, u64), usize> = HashMap::new();
    for e in &entries {
        let path = target.join(&e.rel);
        let made = match e.node.kind {
            NodeKind::Dir => make_dir(&path).map(|()| out.dirs += 1),
            NodeKind::Symlink => make_symlink(&e.node, &path).map(|()| out.symlinks += 1),
            NodeKind::File => {
                if e.node.links > 1 {
                    if let Some(&first) = first_of_inode.get(&(e.node.dev, e.node.inode)) {
                        links.push((e, first));
                        continue;
                    }
                    first_of_inode.insert((e.node.dev, e.node.inode), files.len());
                }
                files.push(e);
                clear_and_create(&path, &e.node, target_was_empty)
            }
        };
        match made {
            Err(source) if target_is_full(&source) => return Err(FilesError::TargetFull { path, source }),
            Err(err) => {
                out.warnings.push(format!("{}: {err}", path.display()));
                progress.warning(&format!("{}: {err}", path.display()));
            }
            Ok(()) => {}
        }
    }

    let written = write_contents(repo, target, &files, options.threads, progress, &mut out)?;
    // A file that could not be restored whole is not left behind looking restored.
    for &i in written.damaged.iter().chain(&written.unwritten) {
        let _ = fs::remove_file(target.join(&files[i].rel));
    }
    out.damaged.extend(written.damaged.iter().map(|&i| files[i].rel.display().to_string()));
    out.files = (files.len() - written.damaged.len() - written.unwritten.len()) as u64;
    for (e, first) in &links {
        let path = target.join(&e.rel);
        if written.damaged.contains(first) {
            out.damaged.push(e.rel.display().to_string());
            continue;
        }
        if written.unwritten.contains(first) {
            out.warnings.push(format!("{}: not linked, its first name could not be written", path.display()));
            continue;
        }
        let _ = fs::remove_file(&path);
        match fs::hard_link(target.join(&files[*first].rel), &path) {
            Ok(()) => out.files += 1,
            Err(err) => out.warnings.push(format!("{}: {err}", path.display())),
        }
    }
    out.damaged.sort();

    // Directories last, deepest first; files got theirs when their last byte was written.
    for e in entries.iter().rev().filter(|e| e.node.kind != NodeKind::File) {
        let path = target.join(&e.rel);
        if let Err(err) = set_metadata(&e.node, &path) {
            out.warnings.push(format!("{}: setting metadata: {err}", path.display()));
        }
    }
    Ok(out)
}

/// Walk the snapshot trees and keep what the include patterns select, parents first. The
/// trees of one level are loaded on `threads` threads.
fn select(repo: &Repository, root: Id, include: &Patterns, threads: usize) -> Result<Vec<Entry>, FilesError> {
    let mut out = Vec::new();
    let mut level = vec![(root, PathBuf::new(), include.is_empty())];
    while !level.is_empty() {
        let trees = super::parallel_map(&level, threads, |(tree_id, _, _)| repo.load_tree(tree_id));
        let mut next = Vec::new();
        for ((_, rel, all), tree) in level.into_iter().zip(trees) {
            for node in tree?.nodes {
                let name = node.name_bytes().into_owned();
                if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0) {
                    return Err(FilesError::UnsafeName(node.name));
                }
                let child = rel.join(OsStr::from_bytes(&name));
                let is_dir = node.kind == NodeKind::Dir;
                let selected = all || include.matches(&child, is_dir);
                if is_dir {
                    if let Some(sub) = node.subtree {
                        next.push((sub, child.clone(), selected));
                    }
                    // An unselected directory is kept only if something below it is selected.
                    out.push(Entry { rel: child, node, selected });
                    continue;
                }
                if selected {
                    out.push(Entry { rel: child, node, selected });
                }
            }
        }
        level = next;
    }
    // Entries come level by level; sort so parents come before children, in name order.
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    if !include.is_empty() {
        prune_unselected_dirs(&mut out);
    }
    Ok(out)
}

/// Drop directories that were not selected and hold nothing selected.
fn prune_unselected_dirs(entries: &mut Vec<Entry>) {
    let needed: HashSet<PathBuf> = entries
        .iter()
        .filter(|e| e.selected)
        .flat_map(|e| e.rel.ancestors().skip(1).map(Path::to_path_buf).collect::<Vec<_>>())
        .collect();
    entries.retain(|e| e.selected || needed.contains(&e.rel));
}

/// Files whose content could not be restored, by position.
struct Written {
    /// Their data is damaged or missing in the repository.
    damaged: HashSet<usize>,
    /// Writing them failed (each failure is in the outcome's warnings).
    unwritten: HashSet<usize>,
}

/// Fetch and write all file contents. A target that takes no more stops the restore: files
/// not yet written whole are removed and the error returned.
fn write_contents(
    repo: &Repository,
    target: &Path,
    files: &[&Entry],
    threads: usize,
    progress: &dyn Progress,
    out: &mut RestoreOutcome,
) -> Result<Written, FilesError> {
    let contents: Vec<&[Id]> = files.iter().map(|e| e.node.content.as_slice()).collect();
    let restore_plan = plan(&repo.index(), &contents);
    let state = WriteState {
        target,
        entries: files,
        files: files.iter().map(|e| Mutex::new(FileSlot { handle: None, remaining: e.node.content.len() })).collect(),
        damaged: Mutex::new(restore_plan.missing.iter().map(|(f, _)| *f).collect()),
        unwritten: Mutex::default(),
        full: OnceLock::new(),
        warnings: Mutex::default(),
        progress,
    };
    let bytes: usize =
        super::parallel_map(&restore_plan.packs, threads, |pack| state.write_pack(repo, pack)).iter().sum();
    let damaged = state.damaged.into_inner().expect("damaged set lock poisoned");
    let mut unwritten = state.unwritten.into_inner().expect("unwritten set lock poisoned");
    if let Some((file, source)) = state.full.into_inner() {
        let path = target.join(&files[file].rel);
        for (i, slot) in state.files.into_iter().enumerate() {
            let whole = slot.into_inner().expect("file slot lock poisoned").remaining == 0;
            if !whole || damaged.contains(&i) || unwritten.contains(&i) {
                let _ = fs::remove_file(target.join(&files[i].rel));
            }
        }
        return Err(FilesError::TargetFull { path, source });
    }
    out.bytes = bytes as u64;
    out.warnings.extend(state.warnings.into_inner().expect("warnings lock poisoned"));
    // Each file counts once: damaged data is the more useful thing to report.
    unwritten.retain(|i| !damaged.contains(i));
    Ok(Written { damaged, unwritten })
}

/// The error says the target file system takes no more writes at all, rather than that one
/// file failed.
fn target_is_full(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{QuotaExceeded, ReadOnlyFilesystem, StorageFull};
    matches!(e.kind(), StorageFull | QuotaExceeded | ReadOnlyFilesystem)
}

/// What the pack writers share.
struct WriteState<'a> {
    target: &'a Path,
    /// The files being written, by position (paths are joined when needed: a list of them
    /// would hold every path of the restore twice).
    entries: &'a [&'a Entry],
    /// Each file is written by one thread at a time. The kernel serialises writes to one file
    /// anyway, and a thread waiting for it there spins, burning a core that could be
    /// decompressing the next blob; waiting here, it sleeps.
    files: Vec<Mutex<FileSlot>>,
    damaged: Mutex<HashSet<usize>>,
    unwritten: Mutex<HashSet<usize>>,
    /// The first write the target refused for want of room: nothing more is written.
    full: OnceLock<(usize, std::io::Error)>,
    warnings: Mutex<Vec<String>>,
    progress: &'a dyn Progress,
}

impl WriteState<'_> {
    fn path(&self, file: usize) -> PathBuf {
        self.target.join(&self.entries[file].rel)
    }

    fn write_pack(&self, repo: &Repository, pack: &PackPlan) -> usize {
        let mut written = 0;
        if self.full.get().is_some() {
            return 0;
        }
        repo.fetch_pack(pack, |blob, data| match data {
            Ok(_) if self.full.get().is_some() => {}
            Ok(bytes) => {
                for t in &blob.targets {
                    match self.write_blob(t.file, Some((bytes, t.offset))) {
                        Ok(()) => {
                            written += bytes.len();
                            self.progress.bytes(bytes.len() as u64);
                        }
                        Err(e) if target_is_full(&e) => {
                            let _ = self.full.set((t.file, e));
                        }
                        Err(e) => {
                            self.mark_unwritten(t.file, &e);
                            let _ = self.write_blob(t.file, None);
                        }
                    }
                }
            }
            Err(reason) => {
                for t in &blob.targets {
                    let message =
                        format!("{}: chunk {} is damaged: {reason}", self.path(t.file).display(), blob.id.short());
                    self.progress.warning(&message);
                    self.mark_damaged(t.file);
                    let _ = self.write_blob(t.file, None);
                }
            }
        });
        written
    }

    /// Write one blob to `file` at its offset, or with `None` count one that will not be
    /// written (damaged, or its write failed). The file's last blob closes it, with its
    /// metadata set through the handle if its data is whole; a failed write closes it too.
    fn write_blob(&self, file: usize, blob: Option<(&[u8], u64)>) -> std::io::Result<()> {
        let mut slot = self.files[file].lock().expect("file slot lock poisoned");
        if let Some((bytes, offset)) = blob {
            let handle = match &mut slot.handle {
                Some(handle) => handle,
                empty => {
                    empty.insert(OpenOptions::new().write(true).create(true).truncate(false).open(self.path(file))?)
                }
            };
            if let Err(e) = handle.write_all_at(bytes, offset) {
                slot.handle = None;
                return Err(e);
            }
        }
        slot.remaining -= 1;
        if slot.remaining > 0 {
            return Ok(());
        }
        if let Some(handle) = slot.handle.take() {
            if !self.is_damaged(file) {
                if let Err(e) = set_file_metadata(&self.entries[file].node, &handle) {
                    let message = format!("{}: setting metadata: {e}", self.path(file).display());
                    self.warnings.lock().expect("warnings lock poisoned").push(message);
                }
            }
        }
        Ok(())
    }

    /// Record a file that could not be written; its first failure is reported.
    fn mark_unwritten(&self, file: usize, e: &std::io::Error) {
        if self.unwritten.lock().expect("unwritten set lock poisoned").insert(file) {
            let message = format!("{}: {e}", self.path(file).display());
            self.progress.warning(&message);
            self.warnings.lock().expect("warnings lock poisoned").push(message);
        }
    }

    fn mark_damaged(&self, file: usize) {
        self.damaged.lock().expect("damaged set lock poisoned").insert(file);
    }

    fn is_damaged(&self, file: usize) -> bool {
        self.damaged.lock().expect("damaged set lock poisoned").contains(&file)
    }
}

/// A file being restored: its handle, open from its first blob written to its last, and the
/// blobs it still waits for (written, or counted as not written).
struct FileSlot {
    handle: Option<File>,
    remaining: usize,
}

/// A real directory at `path`: whatever else is there (a symlink above all, which would send
/// everything below it elsewhere) is replaced. Parents exist: entries come parents first.
fn make_dir(path: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => {
            fs::remove_file(path)?;
            fs::create_dir(path)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::create_dir(path),
        Err(e) => Err(e),
    }
}

/// Make room for a file: remove whatever is at its path (it could be a hard link into data we
/// must not touch, or a symlink), unless the target was empty. A file without content is
/// created, with its metadata, at once; others are created by their first write.
fn clear_and_create(path: &Path, node: &Node, target_was_empty: bool) -> std::io::Result<()> {
    if !target_was_empty && fs::symlink_metadata(path).is_ok() {
        fs::remove_file(path)?;
    }
    if node.content.is_empty() {
        let file = File::create(path)?;
        file.set_len(node.size)?;
        set_file_metadata(node, &file)?;
    }
    Ok(())
}

/// Owner (as root), mode and mtime of a file, through its handle.
fn set_file_metadata(node: &Node, file: &File) -> std::io::Result<()> {
    if is_root() {
        std::os::unix::fs::fchown(file, Some(node.uid), Some(node.gid))?;
    }
    file.set_permissions(fs::Permissions::from_mode(node.mode))?;
    let mtime = file_time(node.mtime_ns);
    filetime::set_file_handle_times(file, Some(mtime), Some(mtime))
}

fn file_time(ns: i64) -> FileTime {
    FileTime::from_unix_time(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000) as u32)
}

fn make_symlink(node: &Node, path: &Path) -> std::io::Result<()> {
    let target = node.target_bytes().unwrap_or_default();
    if fs::symlink_metadata(path).is_ok() {
        fs::remove_file(path)?;
    }
    std::os::unix::fs::symlink(OsStr::from_bytes(&target), path)
}

fn set_metadata(node: &Node, path: &Path) -> std::io::Result<()> {
    let mtime = file_time(node.mtime_ns);
    if is_root() {
        // Ownership only makes sense (and only works) for root; others keep their own.
        std::os::unix::fs::lchown(path, Some(node.uid), Some(node.gid))?;
    }
    if node.kind == NodeKind::Symlink {
        return filetime::set_symlink_file_times(path, mtime, mtime);
    }
    fs::set_permissions(path, fs::Permissions::from_mode(node.mode))?;
    filetime::set_file_times(path, mtime, mtime)
}

fn is_root() -> bool {
    super::effective_uid() == Some(0)
}
