//! What surrounds every job run, whoever started it (`cairn backup JOB` or the daemon): the
//! run history and the notifications. Both are [`RunSink`]s; neither ever fails a run (a
//! failing history write or notifier is a warning).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use crate::cli::Global;
use crate::daemon::seams::RunSink;
use crate::history::{self, History, RunId};
use crate::jobs::JobResult;
use crate::notify::{self, Message};
use crate::schedule::Trigger;
use crate::settings;

/// How a run was started, in the words of the history and the notifications.
#[derive(Debug, Clone, Copy)]
pub enum Started<'t> {
    Manual,
    Daemon(&'t Trigger),
}

impl Started<'_> {
    fn history(self) -> history::Trigger {
        match self {
            Started::Manual => history::Trigger::Manual,
            Started::Daemon(Trigger::Schedule { .. }) => history::Trigger::Schedule,
            Started::Daemon(Trigger::CatchUp { .. }) => history::Trigger::CatchUp,
            Started::Daemon(Trigger::Watch) => history::Trigger::Watch,
            Started::Daemon(Trigger::RunNow) => history::Trigger::RunNow,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Started::Manual => "manual",
            Started::Daemon(t) => t.name(),
        }
    }
}

/// Records runs in the run history. One connection, shared by the runs' threads.
pub struct HistorySink {
    history: Mutex<Option<History>>,
    /// The open run of each job (a job never runs twice at once).
    open: Mutex<HashMap<String, RunId>>,
}

impl HistorySink {
    /// The history in `dir`, or a sink that records nothing after a warning.
    pub fn open(dir: &Path) -> HistorySink {
        let history = warn(History::open(dir));
        HistorySink { history: Mutex::new(history), open: Mutex::new(HashMap::new()) }
    }

    pub fn start(&self, job: &str, how: Started<'_>) {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = history.as_ref().and_then(|h| warn(h.record_start(job, how.history()))) {
            self.open.lock().unwrap_or_else(|e| e.into_inner()).insert(job.to_string(), id);
        }
    }

    pub fn finish(&self, job: &str, results: &[JobResult]) {
        let Some(id) = self.open.lock().unwrap_or_else(|e| e.into_inner()).remove(job) else { return };
        if let Some(h) = self.history.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            warn(h.record_finish(id, results));
        }
    }
}

fn warn<T>(result: anyhow::Result<T>) -> Option<T> {
    result.map_err(|e| eprintln!("warning: run history: {}; this run is not recorded", crate::exit::message(&e))).ok()
}

impl RunSink for HistorySink {
    fn started(&self, job: &str, trigger: &Trigger) {
        self.start(job, Started::Daemon(trigger));
    }

    fn finished(&self, job: &str, _trigger: &Trigger, results: &[JobResult]) {
        self.finish(job, results);
    }
}

/// Sends the job's notifications. The daemon sends them from a thread of their own, so a
/// slow notifier never holds a run; `cairn backup` waits for them before it exits.
pub struct NotifySink {
    global: Global,
    background: bool,
}

impl NotifySink {
    pub fn new(global: Global, background: bool) -> NotifySink {
        NotifySink { global, background }
    }

    pub fn start(&self, job: &str, how: Started<'_>) {
        let host = settings::hostname();
        self.send(job, vec![Message::start(job, &host, how.name())]);
    }

    pub fn finish(&self, job: &str, how: Started<'_>, results: &[JobResult]) {
        let host = settings::hostname();
        self.send(job, results.iter().map(|r| Message::from_result(r, &host, how.name())).collect());
    }

    /// Deliver with the config as it is now (the daemon reloads it on SIGHUP).
    fn send(&self, job: &str, messages: Vec<Message>) {
        let global = self.global.clone();
        let job = job.to_string();
        let deliver = move || {
            let config = match settings::config(&global) {
                Ok(Some(c)) => c,
                _ => return,
            };
            let Some(rules) = config.file.jobs.get(&job).map(|j| j.notify.clone()) else { return };
            if rules.is_empty() {
                return;
            }
            for message in &messages {
                notify::deliver(&config, &rules, message);
            }
        };
        if self.background {
            std::thread::spawn(deliver);
        } else {
            deliver();
        }
    }
}

impl RunSink for NotifySink {
    fn started(&self, job: &str, trigger: &Trigger) {
        self.start(job, Started::Daemon(trigger));
    }

    fn finished(&self, job: &str, trigger: &Trigger, results: &[JobResult]) {
        self.finish(job, Started::Daemon(trigger), results);
    }
}

/// Prune on `[daemon] prune_schedule`: every repository of the config, default options
/// (24 h grace), each opened afresh so that its index is current.
pub struct RepoPruner {
    pub global: Global,
}

impl crate::daemon::seams::Pruner for RepoPruner {
    fn prune(&self, config: &crate::config::Config) -> anyhow::Result<String> {
        let mut lines = Vec::new();
        for (name, repo) in config.repositories() {
            let target = settings::configured(config, name, repo);
            let repo = settings::open_target(&self.global, &target)?;
            let report = repo.prune(&cairn_repo::PruneOptions::default())?;
            lines.push(format!(
                "{name}: reclaimed {} now, {} later",
                crate::output::bytes(report.deleted.bytes),
                crate::output::bytes(report.reclaimable_later())
            ));
        }
        Ok(format!("prune: {}", lines.join("; ")))
    }
}

/// The daemon's stale-backup alarm: every `every`, each job of the config (as it is now)
/// that has not succeeded within its expected interval (`health::stale`, as `cairn status`
/// judges it) is notified once as `stale`; it may alarm again only after it recovered.
pub fn watch_staleness(global: Global, state_dir: std::path::PathBuf, every: std::time::Duration) {
    std::thread::spawn(move || {
        let mut alarmed: std::collections::HashSet<String> = std::collections::HashSet::new();
        loop {
            std::thread::sleep(every);
            let Ok(Some(config)) = settings::config(&global) else { continue };
            let Ok(Some(history)) = History::open_existing(&state_dir) else { continue };
            let now = chrono::Utc::now();
            for (name, job) in &config.file.jobs {
                let Ok(runs) = history.job_runs(name) else { continue };
                let limit = crate::health::stale_limit(job, &config, now);
                let last_success = runs.last_success.as_ref().map(|r| r.started);
                let stale = crate::health::stale(limit, last_success, runs.first_started, now);
                if stale.is_none() {
                    alarmed.remove(name);
                    continue;
                }
                if !alarmed.insert(name.clone()) || job.notify.is_empty() {
                    continue;
                }
                crate::daemon::log(&format!("job {name}: STALE (no success within its expected interval)"));
                let since = last_success.map(|t| t.with_timezone(&chrono::Local).fixed_offset());
                let message = Message::stale(name, &settings::hostname(), since);
                notify::deliver(&config, &job.notify, &message);
            }
        }
    });
}
