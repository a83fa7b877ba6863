//! The daemon's loop on a fake clock, with a runner that only records: schedules fire,
//! stop waits for (or cuts off) running jobs, reload keeps a good config, run-now answers,
//! catch-up at start. Nothing sleeps: the fake clock jumps to each next event.

use std::sync::Mutex;

use chrono::TimeZone;
use chrono_tz::Europe::Berlin;
use crossbeam_channel::unbounded;

use super::*;
use crate::schedule::{FakeClock, Trigger};

fn berlin(h: u32, mi: u32) -> DateTime<Utc> {
    Berlin.with_ymd_and_hms(2026, 1, 12, h, mi, 0).unwrap().with_timezone(&Utc)
}

/// Every start the runner saw, with its (fake) time.
type Started = Arc<Mutex<Vec<(DateTime<Utc>, Start)>>>;

/// Records starts; each run ends `takes` later on the fake clock.
struct FakeRunner {
    clock: FakeClock,
    takes: chrono::Duration,
    started: Started,
}

impl Runner for FakeRunner {
    fn spawn(&self, _config: Arc<Config>, start: Start, done: Sender<Event>) {
        let now = self.clock.now();
        let task = start.task.clone();
        self.started.lock().unwrap().push((now, start));
        self.clock.at(now + self.takes, move || {
            let _ = done.send(Event::Finished(task));
        });
    }
}

struct Setup {
    dir: tempfile::TempDir,
    clock: FakeClock,
    tx: Sender<Event>,
    rx: Receiver<Event>,
    started: Started,
}

fn config_text(schedule: &str, extra_daemon: &str) -> String {
    format!(
        "[repository]\npath = \"repo\"\n\n[daemon]\ntimezone = \"Europe/Berlin\"\n{extra_daemon}\n\n[jobs.app]\nschedule = \"{schedule}\"\n\n[[jobs.app.sources]]\ntype = \"files\"\npath = \"data\"\n"
    )
}

impl Setup {
    fn new(text: &str, t0: DateTime<Utc>) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cairn.toml"), text).unwrap();
        let (tx, rx) = unbounded();
        Setup { dir, clock: FakeClock::new(t0), tx, rx, started: Arc::default() }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("cairn.toml")
    }

    /// Send `event` when the fake clock reaches `t`.
    fn at(&self, t: DateTime<Utc>, event: impl FnOnce() -> Event + Send + 'static) {
        let tx = self.tx.clone();
        self.clock.at(t, move || tx.send(event()).unwrap());
    }

    fn run(&self, takes: chrono::Duration) -> Result<()> {
        let config = config::load(&self.config_path()).unwrap();
        let runner = FakeRunner { clock: self.clock.clone(), takes, started: Arc::clone(&self.started) };
        let daemon =
            Daemon::new(self.clock.clone(), runner, config, self.dir.path().to_path_buf(), self.tx.clone(), None)
                .unwrap();
        daemon.run(None, self.rx.clone())
    }

    fn start_times(&self) -> Vec<DateTime<Utc>> {
        self.started.lock().unwrap().iter().map(|(t, _)| *t).collect()
    }
}

#[test]
fn schedules_fire_and_a_stop_waits_for_the_running_job() {
    let s = Setup::new(&config_text("*/10 * * * *", ""), berlin(12, 1));
    s.at(berlin(12, 35), || Event::Stop);
    s.run(chrono::Duration::minutes(2)).unwrap();
    assert_eq!(s.start_times(), [berlin(12, 10), berlin(12, 20), berlin(12, 30)]);
    assert_eq!(s.clock.now(), berlin(12, 35), "idle at the stop: stopped at once");

    // Stopped during a 20-minute run: it may finish (within the 30m timeout); nothing new starts.
    let s = Setup::new(&config_text("*/10 * * * *", "shutdown_timeout = \"30m\""), berlin(12, 1));
    s.at(berlin(12, 15), || Event::Stop);
    s.run(chrono::Duration::minutes(20)).unwrap();
    assert_eq!(s.start_times(), [berlin(12, 10)]);
    assert_eq!(s.clock.now(), berlin(12, 30), "the loop ended when the run did");
}

#[test]
fn a_run_longer_than_the_shutdown_timeout_is_cut_off() {
    let s = Setup::new(&config_text("*/10 * * * *", "shutdown_timeout = \"5m\""), berlin(12, 1));
    s.at(berlin(12, 15), || Event::Stop);
    let err = s.run(chrono::Duration::minutes(20)).unwrap_err().to_string();
    assert!(err.contains("shutdown timeout of 300s") && err.contains("job app"), "{err}");
    assert!(err.contains("repository stays valid"), "{err}");
    assert_eq!(s.clock.now(), berlin(12, 20));
}

#[test]
fn reload_keeps_the_old_config_when_the_new_one_is_broken() {
    let s = Setup::new(&config_text("*/10 * * * *", ""), berlin(12, 1));
    let path = s.config_path();
    let broken = path.clone();
    s.at(berlin(12, 5), move || {
        std::fs::write(&broken, "[jobs.app\nschedule = ").unwrap();
        Event::Reload
    });
    let good = path.clone();
    s.at(berlin(12, 25), move || {
        std::fs::write(&good, config_text("*/30 * * * *", "")).unwrap();
        Event::Reload
    });
    s.at(berlin(13, 5), || Event::Stop);
    s.run(chrono::Duration::minutes(1)).unwrap();
    assert_eq!(s.start_times(), [berlin(12, 10), berlin(12, 20), berlin(12, 30), berlin(13, 0)]);
}

#[test]
fn run_now_starts_refuses_overlap_and_names_unknown_jobs() {
    let s = Setup::new(&config_text("0 3 * * *", ""), berlin(12, 0));
    let (reply_tx, reply_rx) = unbounded();
    for (minute, job) in [(1, "app"), (2, "app"), (3, "nope"), (20, "app")] {
        let reply_tx = reply_tx.clone();
        s.at(berlin(12, minute), move || Event::Request(Request::RunNow { job: job.into() }, reply_tx));
    }
    s.at(berlin(12, 30), || Event::Stop);
    s.run(chrono::Duration::minutes(10)).unwrap();
    let replies: Vec<Reply> = reply_rx.try_iter().collect();
    let statuses: Vec<Status> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [Status::Started, Status::AlreadyRunning, Status::NoSuchJob, Status::Started]);
    assert!(replies[1].message.contains("already running"), "{}", replies[1].message);
    assert!(replies[2].message.contains("jobs are: app"), "{}", replies[2].message);
    let started = s.started.lock().unwrap();
    assert_eq!(started.iter().map(|(t, _)| *t).collect::<Vec<_>>(), [berlin(12, 1), berlin(12, 20)]);
    assert!(started.iter().all(|(_, st)| st.trigger == Trigger::RunNow));
}

#[test]
fn a_missed_run_is_caught_up_once_at_start() {
    let s = Setup::new(&config_text("0 * * * *", "catch_up = true"), berlin(12, 10));
    // The last run ended at 08:05; the daemon was down for the 09:00 to 12:00 slots.
    let mut state = state::State::load(s.dir.path()).0;
    state.started(&Task::Job("app".into()), berlin(8, 0)).unwrap();
    state.finished(&Task::Job("app".into()), berlin(8, 5)).unwrap();
    s.at(berlin(13, 30), || Event::Stop);
    s.run(chrono::Duration::minutes(1)).unwrap();
    let started = s.started.lock().unwrap();
    let got: Vec<(DateTime<Utc>, &str)> = started.iter().map(|(t, st)| (*t, st.trigger.name())).collect();
    assert_eq!(got, [(berlin(12, 10), "catch-up"), (berlin(13, 0), "schedule")]);
}
