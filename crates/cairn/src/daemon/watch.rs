//! File-change triggers: the jobs' `watch` paths, through `notify` (inotify on Linux).
//!
//! A folder is watched with everything below it. A file is watched through its folder, and
//! any name that starts with the file's name counts, so a SQLite database changes with its
//! `-wal` and `-journal` files. Only changes count: opening and reading files does not, so
//! the job's own backup of a watched folder does not trigger it again. Changes inside a
//! configured repository or the daemon's state directory are ignored for the same reason.
//!
//! Debounce and cooldown are the planner's business: this only says "job X changed".

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crossbeam_channel::Sender;
use notify::event::{AccessKind, AccessMode, EventKind, MetadataKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};

use super::Event;
use crate::config::Config;

/// What one watched path of a job matches.
#[derive(Debug, Clone)]
struct Target {
    job: String,
    /// A folder: everything below it. A file: names in its folder starting with its name.
    path: PathBuf,
    folder: bool,
}

impl Target {
    fn matches(&self, changed: &Path) -> bool {
        if self.folder {
            return changed.starts_with(&self.path);
        }
        let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name()) else { return false };
        changed.parent() == Some(dir)
            && changed.file_name().is_some_and(|n| n.as_encoded_bytes().starts_with(name.as_encoded_bytes()))
    }
}

/// The running watcher; dropping it stops watching.
pub struct Watches {
    _watcher: Option<RecommendedWatcher>,
}

impl Watches {
    /// Watching nothing.
    pub fn none() -> Watches {
        Watches { _watcher: None }
    }
}

/// Watch every job's `watch` paths; changes are sent as [`Event::Changed`]. Returns the
/// watcher and a warning per path that cannot be watched (the daemon runs on without it).
pub fn start(config: &Config, ignore: &[PathBuf], events: Sender<Event>) -> (Watches, Vec<String>) {
    let mut warnings = Vec::new();
    let mut targets = Vec::new();
    for (job, jc) in &config.file.jobs {
        for text in &jc.watch {
            let path = config.path(&text.0);
            let folder = path.is_dir();
            if !folder && !path.parent().is_some_and(Path::is_dir) {
                warnings.push(format!("job {job}: cannot watch {}: neither it nor its folder exists", path.display()));
                continue;
            }
            targets.push(Target { job: job.clone(), path, folder });
        }
    }
    if targets.is_empty() {
        return (Watches::none(), warnings);
    }
    let matchers = targets.clone();
    let ignore = ignore.to_vec();
    let handler = move |result: notify::Result<notify::Event>| {
        let Ok(event) = result else { return };
        if !is_change(&event.kind) {
            return;
        }
        let mut jobs = BTreeSet::new();
        for path in event.paths.iter().filter(|p| !ignore.iter().any(|i| p.starts_with(i))) {
            jobs.extend(matchers.iter().filter(|t| t.matches(path)).map(|t| t.job.clone()));
        }
        for job in jobs {
            let _ = events.send(Event::Changed(job));
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            warnings.push(format!("cannot watch files: {e}; watch triggers are off"));
            return (Watches::none(), warnings);
        }
    };
    let mut watched = BTreeSet::new();
    for t in &targets {
        let (dir, mode) = if t.folder {
            (t.path.clone(), RecursiveMode::Recursive)
        } else {
            (t.path.parent().expect("checked above").to_path_buf(), RecursiveMode::NonRecursive)
        };
        if !watched.insert((dir.clone(), t.folder)) {
            continue;
        }
        if let Err(e) = watcher.watch(&dir, mode) {
            warnings.push(format!("job {}: cannot watch {}: {e}", t.job, dir.display()));
        }
    }
    (Watches { _watcher: Some(watcher) }, warnings)
}

/// Does this event say something was written, created, removed or renamed?
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_matches_its_companions_a_folder_its_contents() {
        let db = Target { job: "j".into(), path: PathBuf::from("/data/app.db"), folder: false };
        assert!(db.matches(Path::new("/data/app.db")));
        assert!(db.matches(Path::new("/data/app.db-wal")));
        assert!(!db.matches(Path::new("/data/other.db")));
        assert!(!db.matches(Path::new("/data/sub/app.db")));
        let dir = Target { job: "j".into(), path: PathBuf::from("/data/uploads"), folder: true };
        assert!(dir.matches(Path::new("/data/uploads/a/b.txt")));
        assert!(!dir.matches(Path::new("/data/uploads2/x")));
        assert!(!is_change(&EventKind::Access(AccessKind::Open(AccessMode::Any))));
        assert!(is_change(&EventKind::Access(AccessKind::Close(AccessMode::Write))));
        assert!(!is_change(&EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime))));
        assert!(is_change(&EventKind::Modify(ModifyKind::Any)));
    }
}
