//! Restoring a whole database file, written beside the target and renamed over it.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use cairn_repo::{Id, SourceEntry};
use rusqlite::Connection;
use serde_json::Value;

use super::{integrity_check, open_existing, remove_db_files, safety_copy, sibling, sql_error, TempDb, STREAM};
use crate::{streams, Progress, RestoreReport, RestoreRequest, SourceError};

/// What restore needs of a recorded capture.
pub(super) struct Recorded {
    pub root: Id,
    /// Where the database was captured from.
    pub path: PathBuf,
    /// Size of the page stream, when recorded.
    pub bytes: Option<u64>,
}

impl Recorded {
    fn from_entry(entry: &SourceEntry) -> Result<Recorded, SourceError> {
        let root = entry.root.ok_or_else(|| {
            SourceError::with_hint(
                format!("source {}: nothing was captured", entry.name),
                "its backup failed; restore it from another snapshot",
            )
        })?;
        let path = entry.metadata.get("path").and_then(Value::as_str).map(PathBuf::from).ok_or_else(|| {
            SourceError::new(format!("source {}: the capture does not record the database's path", entry.name))
        })?;
        Ok(Recorded { root, path, bytes: entry.metadata.get("bytes").and_then(Value::as_u64) })
    }
}

/// Restore a captured SQLite database: the whole file to `req.to` or its original path, or
/// only `req.tables` into a database file there. See the module documentation.
pub fn restore(req: &RestoreRequest<'_>) -> Result<RestoreReport, SourceError> {
    let recorded = Recorded::from_entry(req.entry)?;
    let mut target = req.to.as_ref().map_or_else(|| recorded.path.clone(), PathBuf::from);
    if target.is_dir() {
        // `--to DIR`: into that directory, under the database's own file name.
        target.push(recorded.path.file_name().unwrap_or(STREAM.as_ref()));
    }
    if req.tables.is_empty() {
        whole(req, &recorded, &target)
    } else {
        super::tables::restore(req, &recorded, &target)
    }
}

fn whole(req: &RestoreRequest<'_>, recorded: &Recorded, target: &Path) -> Result<RestoreReport, SourceError> {
    // Through a symlink, replace the file it points to rather than the link.
    let target = fs::canonicalize(target).unwrap_or_else(|_| target.to_path_buf());
    let exists = fs::symlink_metadata(&target).is_ok();
    if exists && !req.yes {
        return Err(SourceError::with_hint(
            format!("{}: a file is already there; not replacing it", target.display()),
            "pass --yes to replace it (the current database is kept beside it as <file>.before-restore-<time>), \
             or --to ANOTHER_PATH",
        ));
    }
    let dir = parent_dir(&target);
    fs::create_dir_all(dir).map_err(|e| SourceError::new(format!("{}: cannot create: {e}", dir.display())))?;
    let temp = TempDb::new(sibling(&target, &format!(".cairn-restore-{}", std::process::id())));
    let bytes = write_stream(req, recorded, temp.path())?;
    integrity_check(temp.path())?;
    let warnings = if exists { keep_owner(&target, temp.path()).into_iter().collect() } else { Vec::new() };
    let copy = if exists { Some(prepare_replace(&target)?) } else { None };
    let swapped = remove_companions(&target).and_then(|()| {
        fs::rename(temp.path(), &target).map_err(|e| {
            SourceError::new(format!("{}: cannot move the restored file into place: {e}", target.display()))
        })
    });
    if let Err(e) = swapped {
        copy.iter().for_each(|c| remove_db_files(c));
        return Err(e.context("the database was not replaced"));
    }
    temp.keep();
    sync_dir(dir)?;
    let restored = format!(
        "{}: database restored ({bytes} bytes) from the capture of {}",
        target.display(),
        recorded.path.display()
    );
    let safety_copies = copy.iter().map(|c| c.display().to_string()).collect();
    Ok(RestoreReport { restored: vec![restored], safety_copies, warnings })
}

/// Give the restored file the mode and owner of the file it replaces, so that the
/// application can still open it; a failure is a warning.
fn keep_owner(target: &Path, temp: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let (old, new) = (fs::metadata(target).ok()?, fs::metadata(temp).ok()?);
    let mut result = fs::set_permissions(temp, old.permissions());
    if (old.uid(), old.gid()) != (new.uid(), new.gid()) {
        result = result.and_then(|()| std::os::unix::fs::chown(temp, Some(old.uid()), Some(old.gid())));
    }
    let e = result.err()?;
    Some(format!("{}: the restored file could not get the mode and owner of the old one: {e}", target.display()))
}

/// Make the database at `target` ready to be replaced: a safety copy beside it, and its WAL
/// folded in. Returns the safety copy's path.
fn prepare_replace(target: &Path) -> Result<PathBuf, SourceError> {
    let conn = open_existing(target).map_err(|e| e.context("cannot make a safety copy of the database to replace"))?;
    let copy = safety_copy(&conn, target)?;
    if let Err(e) = checkpoint(&conn, target) {
        remove_db_files(&copy);
        return Err(e);
    }
    Ok(copy)
}

/// Remove `<target>-wal`, `-shm` and `-journal` before a new file takes the target's name.
///
/// Nothing records which database file a `-wal` belongs to: SQLite replays every valid frame
/// of `<db>-wal` onto whatever `<db>` is when it next opens it, in WAL mode or not, and rolls
/// a hot `<db>-journal` back onto it. Frames or journal pages of the old database left there
/// would be written over pages of the restored one and corrupt it. Of a database being
/// replaced they are stale once checkpointed (the safety copy has them too); beside a missing
/// file they are orphans, which SQLite itself would discard.
fn remove_companions(target: &Path) -> Result<(), SourceError> {
    for suffix in ["-wal", "-shm", "-journal"] {
        let stale = sibling(target, suffix);
        match fs::remove_file(&stale) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(SourceError::new(format!("{}: cannot remove: {e}", stale.display())));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Fold the write-ahead log into the database file and empty it; an error if a reader or
/// writer keeps it from completing (non-WAL databases have nothing to do).
fn checkpoint(conn: &Connection, path: &Path) -> Result<(), SourceError> {
    let in_use = || {
        SourceError::with_hint(
            format!("{}: the database is in use: its write-ahead log could not be checkpointed", path.display()),
            "stop the applications using it and retry; nothing was changed",
        )
    };
    let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0)).map_err(|e| {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => in_use(),
            _ => sql_error(path, "checkpoint failed", e),
        }
    })?;
    if busy != 0 {
        return Err(in_use());
    }
    Ok(())
}

/// Write the capture's page stream to `path` and flush it to disk; returns its size.
pub(super) fn write_stream(req: &RestoreRequest<'_>, recorded: &Recorded, path: &Path) -> Result<u64, SourceError> {
    let node = streams::find(req.repo, recorded.root, STREAM)?;
    let mut file =
        File::create(path).map_err(|e| SourceError::new(format!("{}: cannot create: {e}", path.display())))?;
    let written = streams::read(req.repo, &node, |reader| copy_stream(reader, &mut file, path, req.progress))
        .map_err(|e| e.context(format!("restoring {}", recorded.path.display())))?;
    file.sync_all().map_err(|e| SourceError::new(format!("{}: cannot flush: {e}", path.display())))?;
    if written != node.size || recorded.bytes.is_some_and(|b| b != written) {
        return Err(SourceError::new(format!(
            "{}: the capture's page stream has {written} bytes, {} were recorded",
            recorded.path.display(),
            recorded.bytes.unwrap_or(node.size)
        )));
    }
    Ok(written)
}

fn copy_stream(
    reader: &mut dyn Read,
    file: &mut File,
    path: &Path,
    progress: &dyn Progress,
) -> Result<u64, SourceError> {
    let mut buf = vec![0; 1 << 20];
    let mut total = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(SourceError::with_hint(
                    format!("reading the capture from the repository failed: {e}"),
                    "the repository is damaged; `cairn check --read-data` tells which snapshots are affected",
                ))
            }
        };
        file.write_all(&buf[..n]).map_err(|e| SourceError::new(format!("{}: {e}", path.display())))?;
        progress.bytes(n as u64);
        total += n as u64;
    }
}

/// The directory holding `path` (`.` for a bare file name).
pub(super) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Make a rename in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), SourceError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SourceError::new(format!("{}: cannot flush the directory: {e}", dir.display())))
}
