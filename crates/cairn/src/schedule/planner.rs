//! The planner: given the tasks, what happened and the time, which runs start now and when
//! to look again. Pure: times come in as arguments, nothing here waits, spawns or reads.
//!
//! Rules (docs/daemon.md says the same for users):
//!
//! - **Schedule**: each cron occurrence (slot) fires once, `jitter` later at most (a random
//!   delay drawn per slot from a seeded generator). Several slots that passed while the
//!   daemon could not look (a suspended machine) make one run, not one per slot.
//! - **Missed slots**: a slot noticed more than [`MISSED_AFTER`] late, or a slot that passed
//!   while the daemon was down ([`Planner::catch_up`]), is *missed*. With `catch_up` the task
//!   runs once for all of them; without, the planner says it skipped them.
//! - **Watch**: a change starts a run once no further change came for `debounce`, and no
//!   sooner than `cooldown` after the start of the task's previous run (any trigger). A
//!   change during a run is kept: the run may not have seen it, so it triggers one more run
//!   after this one.
//! - **No overlap**: a task never runs twice at once. A schedule slot or a `run-now` for a
//!   running task is skipped and reported (`AlreadyRunning`); it is not queued, since the
//!   run under way already covers that point in time closely enough, and a queue of stale
//!   requests would only repeat it.
//! - **Cap**: at most `max_concurrent` runs at once; the rest wait in one first-come queue,
//!   each task at most once in it.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::cron::Schedule;

/// A slot noticed later than this was missed (the machine was asleep), not just late.
pub const MISSED_AFTER: Duration = Duration::from_secs(120);

/// What runs: a job of the config, or the repository maintenance (prune) on its schedule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Task {
    Job(String),
    Prune,
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Task::Job(name) => write!(f, "job {name}"),
            Task::Prune => f.write_str("prune"),
        }
    }
}

/// Why a run started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// A cron slot (the instant of the slot, before jitter).
    Schedule { slot: DateTime<Utc> },
    /// Slots were missed; this run stands for all of them (the newest is named).
    CatchUp { missed: DateTime<Utc> },
    /// Watched paths changed.
    Watch,
    /// `cairn run-now`.
    RunNow,
}

impl Trigger {
    /// One word for logs, history and hooks: `schedule`, `catch-up`, `watch`, `run-now`.
    pub fn name(&self) -> &'static str {
        match self {
            Trigger::Schedule { .. } => "schedule",
            Trigger::CatchUp { .. } => "catch-up",
            Trigger::Watch => "watch",
            Trigger::RunNow => "run-now",
        }
    }
}

/// How a task is triggered, from the config file.
#[derive(Debug, Clone)]
pub struct Spec {
    pub schedule: Schedule,
    pub jitter: Duration,
    pub catch_up: bool,
    pub debounce: Duration,
    pub cooldown: Duration,
}

/// The answer to a request to run a task now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// It starts now.
    Started,
    /// It waits for a free slot (`position` 1 is next).
    Queued {
        position: usize,
    },
    AlreadyRunning {
        since: DateTime<Utc>,
    },
    AlreadyQueued,
    NoSuchTask,
}

/// Something the planner decided not to run, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// A slot came while the task was still running; it was skipped.
    SkippedRunning { task: Task, slot: DateTime<Utc>, since: DateTime<Utc> },
    /// A slot came while the task waited in the queue; the queued run covers it.
    AlreadyQueued { task: Task, slot: DateTime<Utc> },
    /// Slots were missed (daemon down, machine asleep) and `catch_up` is off.
    Missed { task: Task, slot: DateTime<Utc> },
}

/// A run to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub task: Task,
    pub trigger: Trigger,
}

/// The outcome of [`Planner::poll`].
#[derive(Debug, Default)]
pub struct Poll {
    pub start: Vec<Start>,
    pub notes: Vec<Note>,
    /// When something may next become due (`None`: only an event can change anything).
    pub wake: Option<DateTime<Utc>>,
}

#[derive(Debug)]
struct TaskState {
    spec: Spec,
    /// The next slot not yet handled, and when it fires (slot + jitter).
    next: Option<(DateTime<Utc>, DateTime<Utc>)>,
    last_start: Option<DateTime<Utc>>,
    last_change: Option<DateTime<Utc>>,
}

/// The planner. See the module documentation for its rules.
#[derive(Debug)]
pub struct Planner {
    tasks: BTreeMap<Task, TaskState>,
    /// Running tasks and when they started (also tasks removed by a reload while running).
    running: BTreeMap<Task, DateTime<Utc>>,
    queue: VecDeque<Start>,
    max_concurrent: usize,
    rng: SplitMix64,
}

impl Planner {
    /// `seed` makes the jitter reproducible (tests); the daemon seeds from the time.
    pub fn new(max_concurrent: usize, seed: u64) -> Planner {
        Planner {
            tasks: BTreeMap::new(),
            running: BTreeMap::new(),
            queue: VecDeque::new(),
            max_concurrent: max_concurrent.max(1),
            rng: SplitMix64(seed),
        }
    }

    /// Set (or, on reload, replace) the tasks. Tasks that stay keep their last start and
    /// pending changes; every task's next slot is computed afresh from `now`. A removed task
    /// that is running finishes; a removed task that is queued is dropped from the queue.
    pub fn configure(&mut self, specs: BTreeMap<Task, Spec>, max_concurrent: usize, now: DateTime<Utc>) {
        self.max_concurrent = max_concurrent.max(1);
        let mut old = std::mem::take(&mut self.tasks);
        for (task, spec) in specs {
            let (last_start, last_change) = old.remove(&task).map_or((None, None), |s| (s.last_start, s.last_change));
            let mut state = TaskState { spec, next: None, last_start, last_change };
            state.next = next_slot(&mut self.rng, &state.spec, now);
            self.tasks.insert(task, state);
        }
        self.queue.retain(|s| self.tasks.contains_key(&s.task));
    }

    /// At daemon start: `last_runs` holds, per task, the time after which a slot without a
    /// run counts as missed (the end of its last run). A task with a missed slot runs once
    /// if it has `catch_up`; otherwise the miss is reported. No record: nothing was missed
    /// (a fresh daemon does not run everything at once).
    pub fn catch_up(&mut self, now: DateTime<Utc>, last_runs: &BTreeMap<Task, DateTime<Utc>>) -> Vec<Note> {
        let mut notes = Vec::new();
        let mut due = Vec::new();
        for (task, state) in &mut self.tasks {
            let Some(&last) = last_runs.get(task) else { continue };
            state.last_start = state.last_start.max(Some(last));
            let Some(missed) = state.spec.schedule.next_after(last).filter(|slot| *slot <= now) else { continue };
            let newest = state.spec.schedule.last_until(now).unwrap_or(missed);
            if state.spec.catch_up {
                due.push(Start { task: task.clone(), trigger: Trigger::CatchUp { missed: newest } });
            } else {
                notes.push(Note::Missed { task: task.clone(), slot: newest });
            }
        }
        for start in due {
            self.request(start, &mut notes);
        }
        notes
    }

    /// Watched paths of `task` changed at `at`.
    pub fn changed(&mut self, task: &Task, at: DateTime<Utc>) {
        if let Some(state) = self.tasks.get_mut(task) {
            state.last_change = state.last_change.max(Some(at));
        }
    }

    /// `cairn run-now`: start the task now, or queue it behind the cap. The run itself starts
    /// at the next [`poll`](Planner::poll).
    pub fn run_now(&mut self, task: &Task) -> Answer {
        if !self.tasks.contains_key(task) {
            return Answer::NoSuchTask;
        }
        self.request(Start { task: task.clone(), trigger: Trigger::RunNow }, &mut Vec::new())
    }

    /// A run of `task` ended.
    pub fn finished(&mut self, task: &Task) {
        self.running.remove(task);
    }

    pub fn running(&self) -> impl Iterator<Item = (&Task, &DateTime<Utc>)> {
        self.running.iter()
    }

    pub fn is_idle(&self) -> bool {
        self.running.is_empty()
    }

    /// The next slot of every task with a schedule (for `status`-like output and logs).
    pub fn next_slots(&self) -> impl Iterator<Item = (&Task, DateTime<Utc>)> {
        self.tasks.iter().filter_map(|(t, s)| s.next.map(|(slot, _)| (t, slot)))
    }

    /// What starts at `now`, what was skipped, and when to look again.
    pub fn poll(&mut self, now: DateTime<Utc>) -> Poll {
        let mut notes = Vec::new();
        let mut due = Vec::new();
        let tasks: Vec<Task> = self.tasks.keys().cloned().collect();
        for task in tasks {
            if let Some(trigger) = self.due_slot(&task, now, &mut notes) {
                due.push(Start { task: task.clone(), trigger });
            }
            if self.watch_due(&task, now) {
                due.push(Start { task, trigger: Trigger::Watch });
            }
        }
        for start in due {
            self.request(start, &mut notes);
        }
        let mut start = Vec::new();
        while self.running.len() < self.max_concurrent {
            let Some(next) = self.queue.pop_front() else { break };
            self.running.insert(next.task.clone(), now);
            if let Some(state) = self.tasks.get_mut(&next.task) {
                state.last_start = Some(now);
            }
            start.push(next);
        }
        Poll { start, notes, wake: self.wake() }
    }

    /// The trigger of a slot of `task` that is due at `now`, if any; moves to the next slot.
    fn due_slot(&mut self, task: &Task, now: DateTime<Utc>, notes: &mut Vec<Note>) -> Option<Trigger> {
        let Planner { tasks, rng, .. } = self;
        let state = tasks.get_mut(task)?;
        let (slot, fires) = state.next.filter(|(_, fires)| *fires <= now)?;
        // The next slot after both the one handled and now: missed slots collapse into one.
        state.next = next_slot(rng, &state.spec, now.max(slot));
        let late = (now - fires).to_std().unwrap_or(Duration::ZERO);
        if late <= MISSED_AFTER {
            Some(Trigger::Schedule { slot })
        } else if state.spec.catch_up {
            Some(Trigger::CatchUp { missed: slot })
        } else {
            notes.push(Note::Missed { task: task.clone(), slot });
            None
        }
    }

    /// Is a change of `task` settled (debounce) and its cooldown over?
    fn watch_due(&self, task: &Task, now: DateTime<Utc>) -> bool {
        self.watch_time(task).is_some_and(|t| t <= now)
    }

    /// When the pending change of `task` may start a run (`None`: no pending change, or the
    /// task is running or queued and the change waits for that).
    fn watch_time(&self, task: &Task) -> Option<DateTime<Utc>> {
        let state = self.tasks.get(task)?;
        let change = state.last_change?;
        if state.last_start.is_some_and(|s| s >= change)
            || self.running.contains_key(task)
            || self.queue.iter().any(|s| &s.task == task)
        {
            return None;
        }
        let settled = change + state.spec.debounce;
        Some(match state.last_start {
            Some(s) => settled.max(s + state.spec.cooldown),
            None => settled,
        })
    }

    /// Queue a run unless the task is running or already queued.
    fn request(&mut self, start: Start, notes: &mut Vec<Note>) -> Answer {
        let slot = match &start.trigger {
            Trigger::Schedule { slot } | Trigger::CatchUp { missed: slot } => Some(*slot),
            _ => None,
        };
        if let Some(&since) = self.running.get(&start.task) {
            if let Some(slot) = slot {
                notes.push(Note::SkippedRunning { task: start.task.clone(), slot, since });
            }
            return Answer::AlreadyRunning { since };
        }
        if self.queue.iter().any(|s| s.task == start.task) {
            if let Some(slot) = slot {
                notes.push(Note::AlreadyQueued { task: start.task.clone(), slot });
            }
            return Answer::AlreadyQueued;
        }
        self.queue.push_back(start);
        if self.running.len() < self.max_concurrent && self.queue.len() == 1 {
            Answer::Started
        } else {
            Answer::Queued { position: self.queue.len() }
        }
    }

    fn wake(&self) -> Option<DateTime<Utc>> {
        let slots = self.tasks.values().filter_map(|s| s.next.map(|(_, fires)| fires));
        let changes = self.tasks.keys().filter_map(|t| self.watch_time(t));
        slots.chain(changes).min()
    }
}

/// The first slot after `t` and when it fires, a random delay of up to `jitter` added.
fn next_slot(rng: &mut SplitMix64, spec: &Spec, t: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let slot = spec.schedule.next_after(t)?;
    let jitter_ms = u64::try_from(spec.jitter.as_millis()).unwrap_or(u64::MAX);
    let delay = if jitter_ms == 0 { 0 } else { rng.next() % (jitter_ms.saturating_add(1)) };
    Some((slot, slot + chrono::Duration::milliseconds(i64::try_from(delay).unwrap_or(i64::MAX))))
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Note::SkippedRunning { task, slot, since } => write!(
                f,
                "{task}: skipped the run of {} (UTC): still running since {} (UTC)",
                slot.format("%Y-%m-%d %H:%M:%S"),
                since.format("%H:%M:%S")
            ),
            Note::AlreadyQueued { task, slot } => write!(
                f,
                "{task}: the run of {} (UTC) joins the run already waiting for a free slot",
                slot.format("%Y-%m-%d %H:%M:%S")
            ),
            Note::Missed { task, slot } => write!(
                f,
                "{task}: missed the run of {} (UTC) (daemon down or machine asleep); not caught up, catch_up is off",
                slot.format("%Y-%m-%d %H:%M:%S")
            ),
        }
    }
}

/// SplitMix64: a tiny seeded generator, enough to spread jitter.
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests;
