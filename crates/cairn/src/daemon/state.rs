//! What the daemon remembers across restarts: when each task last started and finished.
//!
//! One small JSON file in the state directory, replaced atomically (temporary file and
//! rename) after every start and end of a run. It decides catch-up at the next start: a slot
//! after the end of a task's last run, before now, was missed. A run that started but never
//! ended (the daemon was killed) counts as not run, so its slot is caught up.
//!
//! The run history database (being built separately) will know more; this file stays the
//! daemon's own, so catch-up does not depend on it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::schedule::Task;

pub const FILE: &str = "daemon-state.json";

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    #[serde(skip)]
    path: PathBuf,
    /// By task key: `job:NAME` or `prune`.
    #[serde(default)]
    tasks: BTreeMap<String, Record>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Record {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_start: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_finish: Option<DateTime<Utc>>,
}

fn key(task: &Task) -> String {
    match task {
        Task::Job(name) => format!("job:{name}"),
        Task::Prune => "prune".into(),
    }
}

fn task(key: &str) -> Option<Task> {
    match key {
        "prune" => Some(Task::Prune),
        _ => key.strip_prefix("job:").map(|n| Task::Job(n.to_string())),
    }
}

impl State {
    /// The state in `dir`; an unreadable file is reported and treated as empty (the cost
    /// is at most one missed catch-up).
    pub fn load(dir: &Path) -> (State, Option<String>) {
        let path = dir.join(FILE);
        let (mut state, problem) = match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (State::default(), None),
            Err(e) => (State::default(), Some(format!("cannot read {}: {e}; starting without it", path.display()))),
            Ok(bytes) => match serde_json::from_slice::<State>(&bytes) {
                Ok(s) => (s, None),
                Err(e) => (State::default(), Some(format!("{} is damaged ({e}); starting without it", path.display()))),
            },
        };
        state.path = path;
        (state, problem)
    }

    pub fn started(&mut self, task: &Task, at: DateTime<Utc>) -> Result<()> {
        self.tasks.entry(key(task)).or_default().last_start = Some(at);
        self.save()
    }

    pub fn finished(&mut self, task: &Task, at: DateTime<Utc>) -> Result<()> {
        self.tasks.entry(key(task)).or_default().last_finish = Some(at);
        self.save()
    }

    /// Per task, the time after which a slot without a run counts as missed.
    pub fn missed_since(&self) -> BTreeMap<Task, DateTime<Utc>> {
        self.tasks
            .iter()
            .filter_map(|(k, r)| {
                let since = match (r.last_start, r.last_finish) {
                    (Some(s), Some(f)) if f >= s => f,
                    // Started, never ended: the slot that started it was not served.
                    (Some(s), _) => s - chrono::Duration::seconds(1),
                    (None, Some(f)) => f,
                    (None, None) => return None,
                };
                Some((task(k)?, since))
            })
            .collect()
    }

    fn save(&self) -> Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(self).expect("state serialises");
        std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path).with_context(|| format!("replacing {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn an_interrupted_run_counts_as_not_run() {
        let dir = tempfile::tempdir().unwrap();
        let t = |h| Utc.with_ymd_and_hms(2026, 1, 1, h, 0, 0).unwrap();
        let (mut state, problem) = State::load(dir.path());
        assert!(problem.is_none());
        let (a, b) = (Task::Job("a".into()), Task::Job("b".into()));
        state.started(&a, t(1)).unwrap();
        state.finished(&a, t(2)).unwrap();
        state.started(&b, t(3)).unwrap();
        state.started(&Task::Prune, t(4)).unwrap();
        state.finished(&Task::Prune, t(5)).unwrap();
        let (state, _) = State::load(dir.path());
        let since = state.missed_since();
        assert_eq!(since[&a], t(2));
        assert_eq!(since[&b], t(3) - chrono::Duration::seconds(1));
        assert_eq!(since[&Task::Prune], t(5));
        std::fs::write(dir.path().join(FILE), "{ not json").unwrap();
        let (state, problem) = State::load(dir.path());
        assert!(problem.unwrap().contains("damaged") && state.missed_since().is_empty());
    }
}
