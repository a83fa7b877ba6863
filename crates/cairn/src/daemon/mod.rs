//! `cairn daemon`: runs the config's jobs on their schedules, on changes of watched paths
//! and on request, until SIGTERM/SIGINT.
//!
//! One loop owns all decisions ([`Daemon::run`]): it asks the [`Planner`] what is due, starts
//! runs through a [`Runner`] (the real one: a thread per run, calling `jobs::run_job`, the
//! code of `cairn backup JOB`), and waits on one channel of [`Event`]s — signals, file
//! changes, control-socket requests, ends of runs — or until the next wake-up. Time comes
//! only from the injected [`Clock`], so tests run the loop on a fake clock without sleeping
//! (as mini-redis's `run(listener, shutdown)` takes its listener and shutdown from outside).
//!
//! Shutdown: the first SIGTERM/SIGINT stops new runs; running ones get `[daemon]
//! shutdown_timeout` to finish, then the process exits anyway. A backup cut off there leaves
//! the repository valid by design (commit order: packs, then index, then snapshot; a crash
//! leaves only unreferenced objects). A second signal exits at once.
//!
//! SIGHUP reloads the config file; if the new one does not load, the old one stays and the
//! log says why. Runs under way finish with the config they started with.
//!
//! Not here: stale-backup alarms, log files (`[daemon] log`), the dashboard.

pub mod control;
pub mod seams;
mod state;
mod watch;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use chrono::{DateTime, Utc};
use crossbeam_channel::{Receiver, Sender};

pub use seams::{LogSink, Pruner, RunSink};

use crate::cli::Global;
use crate::config::{self, parse_interval, Config};
use crate::jobs;
use crate::schedule::{check_cron, Answer, Clock, Planner, Schedule, Spec, Start, Task, Zone};
use control::{Reply, Request, Status};

/// Everything the loop waits for.
pub enum Event {
    /// SIGTERM or SIGINT.
    Stop,
    /// SIGHUP.
    Reload,
    /// A watched path of this job changed.
    Changed(String),
    /// A control-socket request and where its answer goes.
    Request(Request, Sender<Reply>),
    /// A run of this task ended (sent by the runner whatever happened).
    Finished(Task),
}

/// A line on stderr, with the local time.
pub fn log(message: &str) {
    // Through the log subscriber (stderr and the `[daemon] log` files) once `cairn daemon`
    // has installed it; plain stderr otherwise (tests of the loop).
    if tracing::dispatcher::has_been_set() {
        tracing::info!("{message}");
    } else {
        eprintln!("{} {message}", chrono::Local::now().format("%Y-%m-%d %H:%M:%S"));
    }
}

/// The daemon's settings, from `[daemon]` and the jobs, resolved and checked in one place.
struct Plan {
    specs: BTreeMap<Task, Spec>,
    max_concurrent: usize,
    shutdown_timeout: Duration,
    zone: Zone,
}

impl Plan {
    /// `cron_seconds`: the test-only seconds field (`$CAIRN_CRON_SECONDS`).
    fn from_config(config: &Config, cron_seconds: Option<&str>) -> Result<Plan> {
        let file = config.path.display();
        let daemon = config.file.daemon.clone().unwrap_or_default();
        let zone = Zone::parse(daemon.timezone.as_deref()).map_err(|e| anyhow!("{file}: daemon.timezone: {e}"))?;
        // Intervals were checked when the file was loaded.
        let interval = |v: &Option<String>, default: u64| {
            v.as_deref().and_then(parse_interval).unwrap_or(Duration::from_secs(default))
        };
        let mut specs = BTreeMap::new();
        let schedule = |exprs: &[String], what: &str| {
            for expr in exprs {
                check_cron(expr).map_err(|e| anyhow!("{file}: {what}: schedule {expr:?}: {e}"))?;
            }
            Schedule::new(exprs, zone, cron_seconds).map_err(|e| anyhow!("{file}: {what}: {e}"))
        };
        for (name, job) in &config.file.jobs {
            let schedule = schedule(&job.schedule, &format!("job {name}"))?;
            let spec = Spec {
                schedule,
                jitter: interval(&job.jitter, 0),
                catch_up: job.catch_up.or(daemon.catch_up).unwrap_or(false),
                debounce: interval(&job.debounce, 30),
                cooldown: interval(&job.cooldown, 600),
            };
            specs.insert(Task::Job(name.clone()), spec);
        }
        if !daemon.prune_schedule.is_empty() {
            let schedule = schedule(&daemon.prune_schedule, "daemon.prune_schedule")?;
            let spec = Spec {
                schedule,
                jitter: Duration::ZERO,
                catch_up: daemon.catch_up.unwrap_or(false),
                debounce: Duration::ZERO,
                cooldown: Duration::ZERO,
            };
            specs.insert(Task::Prune, spec);
        }
        Ok(Plan {
            specs,
            max_concurrent: daemon.max_concurrent_jobs.unwrap_or(1).max(1),
            shutdown_timeout: interval(&daemon.shutdown_timeout, 300),
            zone,
        })
    }
}

/// Starts runs. The real one ([`Threads`]) runs each in its own thread; tests record them.
pub trait Runner {
    /// Start `start` with `config`; send [`Event::Finished`] on `done` when it ends,
    /// whatever happens (panics included).
    fn spawn(&self, config: Arc<Config>, start: Start, done: Sender<Event>);
}

/// The daemon: its loop state. Build with [`Daemon::new`], then [`Daemon::run`].
pub struct Daemon<C: Clock, R: Runner> {
    clock: C,
    runner: R,
    config: Arc<Config>,
    plan: Plan,
    planner: Planner,
    state: state::State,
    state_dir: PathBuf,
    events: Sender<Event>,
    watches: watch::Watches,
    cron_seconds: Option<String>,
}

impl<C: Clock, R: Runner> Daemon<C, R> {
    /// Check the config's schedules, read the saved state, start watching. `events` is the
    /// sending side of the channel [`run`](Daemon::run) receives on.
    pub fn new(
        clock: C,
        runner: R,
        config: Config,
        state_dir: PathBuf,
        events: Sender<Event>,
        cron_seconds: Option<String>,
    ) -> Result<Self> {
        let plan = Plan::from_config(&config, cron_seconds.as_deref())?;
        let now = clock.now();
        let seed = now.timestamp_nanos_opt().unwrap_or_default() as u64 ^ u64::from(std::process::id());
        let mut planner = Planner::new(plan.max_concurrent, seed);
        planner.configure(plan.specs.clone(), plan.max_concurrent, now);
        let (state, problem) = state::State::load(&state_dir);
        if let Some(problem) = problem {
            log(&format!("warning: {problem}"));
        }
        let watches = start_watching(&config, &state_dir, &events);
        Ok(Daemon {
            clock,
            runner,
            config: Arc::new(config),
            plan,
            planner,
            state,
            state_dir,
            events,
            watches,
            cron_seconds,
        })
    }

    /// Run until stopped. `listener`, if given, is served for `cairn run-now`. Returns an
    /// error when runs had to be cut off at the shutdown timeout.
    pub fn run(mut self, listener: Option<UnixListener>, events: Receiver<Event>) -> Result<()> {
        if let Some(listener) = listener {
            let tx = self.events.clone();
            std::thread::Builder::new().name("control".into()).spawn(move || control::serve(listener, tx))?;
        }
        let now = self.clock.now();
        for note in self.planner.catch_up(now, &self.state.missed_since()) {
            log(&note.to_string());
        }
        self.announce();
        // Set by the first stop signal: no new runs; the deadline for running ones.
        let mut stopping: Option<DateTime<Utc>> = None;
        loop {
            let now = self.clock.now();
            let mut wake = None;
            if stopping.is_none() {
                let poll = self.planner.poll(now);
                for note in &poll.notes {
                    log(&note.to_string());
                }
                for start in poll.start {
                    self.start(start, now);
                }
                wake = poll.wake;
            }
            let deadline = stopping.or(wake).unwrap_or(now + chrono::Duration::hours(1));
            match self.clock.recv_until(&events, deadline) {
                Some(Event::Stop) if stopping.is_some() => {
                    return Err(anyhow!("stopped at once by a second signal; {}", self.cut_off()));
                }
                Some(Event::Stop) => stopping = Some(self.begin_shutdown(self.clock.now())),
                Some(Event::Reload) => self.reload(),
                Some(Event::Changed(job)) => self.planner.changed(&Task::Job(job), self.clock.now()),
                Some(Event::Request(request, reply)) => {
                    let _ = reply.send(self.answer(request, stopping.is_some()));
                }
                Some(Event::Finished(task)) => self.finished(&task),
                None => {}
            }
            if let Some(deadline) = stopping {
                if self.planner.is_idle() {
                    log("cairn daemon: stopped");
                    return Ok(());
                }
                if self.clock.now() >= deadline {
                    return Err(anyhow!(
                        "shutdown timeout of {}s reached; {}",
                        self.plan.shutdown_timeout.as_secs(),
                        self.cut_off()
                    ));
                }
            }
        }
    }

    fn announce(&self) {
        let jobs = self.config.file.jobs.len();
        log(&format!(
            "cairn daemon: {jobs} job(s) from {}, schedules in {}, at most {} run(s) at once",
            self.config.path.display(),
            self.plan.zone,
            self.plan.max_concurrent
        ));
        for (task, slot) in self.planner.next_slots() {
            log(&format!("{task}: next scheduled run {}", self.plan.zone.show(slot)));
        }
    }

    fn start(&mut self, start: Start, now: DateTime<Utc>) {
        if let Err(e) = self.state.started(&start.task, now) {
            log(&format!("warning: {}", crate::exit::message(&e)));
        }
        self.runner.spawn(Arc::clone(&self.config), start, self.events.clone());
    }

    fn finished(&mut self, task: &Task) {
        self.planner.finished(task);
        if let Err(e) = self.state.finished(task, self.clock.now()) {
            log(&format!("warning: {}", crate::exit::message(&e)));
        }
    }

    fn begin_shutdown(&mut self, now: DateTime<Utc>) -> DateTime<Utc> {
        let running: Vec<String> = self.planner.running().map(|(t, _)| t.to_string()).collect();
        if !running.is_empty() {
            log(&format!(
                "stopping: no new runs; waiting up to {}s for {} (a second signal stops at once)",
                self.plan.shutdown_timeout.as_secs(),
                running.join(", ")
            ));
        }
        let timeout = chrono::Duration::from_std(self.plan.shutdown_timeout).unwrap_or(chrono::Duration::MAX);
        now.checked_add_signed(timeout).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// The message for runs cut off by the process ending.
    fn cut_off(&self) -> String {
        let running: Vec<String> = self.planner.running().map(|(t, _)| t.to_string()).collect();
        format!(
            "cancelled: {}. The repository stays valid: what a cancelled backup wrote is not referenced by any snapshot (`cairn prune` reclaims it)",
            running.join(", ")
        )
    }

    /// SIGHUP: load the file again; keep the old config if the new one has a problem.
    fn reload(&mut self) {
        let loaded = config::load(&self.config.path)
            .and_then(|c| Plan::from_config(&c, self.cron_seconds.as_deref()).map(|p| (c, p)));
        match loaded {
            Err(e) => {
                log(&format!("reload: keeping the config in use; the file has a problem: {}", crate::exit::message(&e)))
            }
            Ok((config, plan)) => {
                self.planner.configure(plan.specs.clone(), plan.max_concurrent, self.clock.now());
                // Stop the old watcher before the new one starts.
                self.watches = watch::Watches::none();
                self.watches = start_watching(&config, &self.state_dir, &self.events);
                self.config = Arc::new(config);
                self.plan = plan;
                log("reload: the config was read again");
                self.announce();
            }
        }
    }

    fn answer(&mut self, request: Request, stopping: bool) -> Reply {
        let Request::RunNow { job } = request;
        let reply = |status, message: String| Reply { status, message };
        if stopping {
            return reply(Status::ShuttingDown, format!("job {job}: not started, the daemon is stopping"));
        }
        let answer = self.planner.run_now(&Task::Job(job.clone()));
        let reply = match answer {
            Answer::Started => reply(Status::Started, format!("job {job}: started")),
            Answer::Queued { position } => reply(
                Status::Queued,
                format!(
                    "job {job}: queued at place {position}; it starts when one of the {} running job(s) ends",
                    self.plan.max_concurrent
                ),
            ),
            Answer::AlreadyRunning { since } => reply(
                Status::AlreadyRunning,
                format!("job {job} is already running (since {}); not started again", self.plan.zone.show(since)),
            ),
            Answer::AlreadyQueued => {
                reply(Status::AlreadyQueued, format!("job {job} is already waiting for a free place; not queued twice"))
            }
            Answer::NoSuchTask => {
                let names: Vec<&str> = self.config.file.jobs.keys().map(String::as_str).collect();
                reply(
                    Status::NoSuchJob,
                    format!(
                        "{} has no job {job:?}; jobs are: {}",
                        self.config.path.display(),
                        if names.is_empty() { "(none)".into() } else { names.join(", ") }
                    ),
                )
            }
        };
        log(&format!("run-now: {}", reply.message));
        reply
    }
}

/// Watch the jobs' paths, ignoring the repositories and the state directory.
fn start_watching(config: &Config, state_dir: &std::path::Path, events: &Sender<Event>) -> watch::Watches {
    let mut ignore: Vec<PathBuf> =
        config.repositories().iter().filter_map(|(_, r)| r.path.as_ref().map(|p| config.path(&p.0))).collect();
    ignore.push(state_dir.to_path_buf());
    let (watches, warnings) = watch::start(config, &ignore, events.clone());
    for w in warnings {
        log(&format!("warning: {w}"));
    }
    watches
}

/// The real runner: a thread per run. Jobs run as `cairn backup JOB` would
/// ([`jobs::run_job`]); every [`RunSink`] hears about them; prune goes to the [`Pruner`].
pub struct Threads {
    pub global: Global,
    pub sinks: Vec<Arc<dyn RunSink>>,
    pub pruner: Arc<dyn Pruner>,
}

impl Runner for Threads {
    fn spawn(&self, config: Arc<Config>, start: Start, done: Sender<Event>) {
        let (global, sinks, pruner) = (self.global.clone(), self.sinks.clone(), Arc::clone(&self.pruner));
        let guard = FinishedGuard(Some((start.task.clone(), done)));
        let what = start.task.to_string();
        let spawned = std::thread::Builder::new().name(what.clone()).spawn(move || {
            let _guard = guard;
            run_task(&global, &config, &start, &sinks, pruner.as_ref());
        });
        // On failure the closure, and with it the guard, is dropped: the loop hears of it.
        if let Err(e) = spawned {
            log(&format!("warning: cannot start a thread for {what}: {e}"));
        }
    }
}

/// Sends [`Event::Finished`] when dropped: at the end of a run, after a panic too.
struct FinishedGuard(Option<(Task, Sender<Event>)>);

impl Drop for FinishedGuard {
    fn drop(&mut self) {
        if let Some((task, done)) = self.0.take() {
            let _ = done.send(Event::Finished(task));
        }
    }
}

fn run_task(global: &Global, config: &Config, start: &Start, sinks: &[Arc<dyn RunSink>], pruner: &dyn Pruner) {
    match &start.task {
        Task::Job(name) => {
            for sink in sinks {
                sink.started(name, &start.trigger);
            }
            let options = jobs::RunOptions { time: None, force: false, tags: Vec::new(), compression: None };
            let display = jobs::Display { no_bar: true, quiet: global.quiet, announce: true };
            let results = jobs::run_job(global, config, name, &options, &display)
                .unwrap_or_else(|e| vec![jobs::failed(name, "-", crate::exit::message(&e))]);
            for sink in sinks {
                sink.finished(name, &start.trigger, &results);
            }
        }
        Task::Prune => match pruner.prune(config) {
            Ok(line) => log(&format!("prune: {line}")),
            Err(e) => log(&format!("prune failed: {}", crate::exit::message(&e))),
        },
    }
}
