//! `cairn daemon` and `cairn run-now` through the real binary: a schedule fires within
//! seconds (the test-only `CAIRN_CRON_SECONDS` adds a seconds field to the cron
//! expressions), run-now starts a job and refuses a second run of a running one, a watched
//! folder triggers its job, SIGHUP with a broken config keeps the old one, SIGTERM stops an
//! idle daemon at once, and SIGTERM during a backup leaves a repository that passes
//! `check --read-data`.
//!
//! Every wait is bounded; a daemon left by a failing test is killed when its guard drops.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{code, describe, stderr, stdout, Cairn, Rng, PASSWORD};

/// A project: sources, a password file, a config, an initialised repository.
struct Project {
    _dir: tempfile::TempDir,
    root: PathBuf,
    cairn: Cairn,
}

impl Project {
    fn new(config: &str) -> Project {
        let dir = common::tempdir();
        let root = dir.path().to_path_buf();
        fs::create_dir_all(root.join("data")).unwrap();
        fs::write(root.join("data/notes.txt"), "some notes\n").unwrap();
        fs::create_dir_all(root.join("inbox")).unwrap();
        fs::write(root.join("password"), format!("{PASSWORD}\n")).unwrap();
        let path = root.join("cairn.toml");
        fs::write(&path, format!("[repository]\npath = \"repo\"\npassword_file = \"password\"\n\n{config}")).unwrap();
        let mut cairn = Cairn::with_config(&path);
        cairn.repo = root.join("repo");
        cairn.env.push(("CAIRN_CRON_SECONDS".into(), "*/2".into()));
        cairn.init();
        Project { _dir: dir, root, cairn }
    }

    fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }

    /// Start `cairn daemon`; its stderr goes to `daemon.log`.
    fn daemon(&self) -> Daemon {
        let log = self.root.join("daemon.log");
        let state = self.state_dir();
        let mut cmd: Command =
            self.cairn.command(&[OsStr::new("daemon"), OsStr::new("--state-dir"), state.as_os_str()]);
        cmd.stdout(Stdio::null()).stderr(fs::File::create(&log).unwrap());
        Daemon { child: Some(cmd.spawn().expect("starting cairn daemon")), log }
    }

    fn run_now(&self, job: &str) -> std::process::Output {
        let state = self.state_dir();
        self.cairn.cmd(&[OsStr::new("run-now"), OsStr::new(job), OsStr::new("--state-dir"), state.as_os_str()])
    }

    /// Snapshots of `job`.
    fn snapshots_of(&self, job: &str) -> Vec<serde_json::Value> {
        self.cairn.snapshots().into_iter().filter(|s| s["job"] == job).collect()
    }
}

/// A running daemon; killed (SIGKILL) if the test ends without stopping it.
struct Daemon {
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.pid().to_string()).status().unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// Wait (bounded) for the daemon to exit.
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(started.elapsed() < limit, "the daemon did not exit within {limit:?}; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait (bounded) until `done` holds; the daemon's log in the failure message.
    fn until(&self, what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(started.elapsed() < limit, "{what}: not within {limit:?}; daemon log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait until the control socket answers (the daemon is up).
    fn ready(&self, project: &Project) {
        let socket = project.state_dir().join("daemon.sock");
        self.until("the control socket appears", Duration::from_secs(30), || socket.exists());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

const SMALL_JOBS: &str = r#"
[daemon]
max_concurrent_jobs = 3
log = { dir = "logs", rotation = "daily", keep = 3 }

[jobs.tick]
schedule = "* * * * *"

[[jobs.tick.sources]]
type = "files"
path = "data"

[jobs.manual]

[[jobs.manual.sources]]
type = "files"
path = "data"

[jobs.slow]

[jobs.slow.hooks]
before = "sleep 4"

[[jobs.slow.sources]]
type = "files"
path = "data"

[jobs.watched]
watch = ["inbox"]
debounce = "1s"
cooldown = "1s"

[[jobs.watched.sources]]
type = "files"
path = "inbox"
"#;

#[test]
fn a_schedule_fires_within_seconds_and_run_now_starts_a_job() {
    let p = Project::new(SMALL_JOBS);
    let mut daemon = p.daemon();
    daemon.ready(&p);
    // `* * * * *` with the seconds field `*/2`: a run every two seconds.
    daemon.until("a scheduled snapshot of job tick", Duration::from_secs(60), || !p.snapshots_of("tick").is_empty());
    assert!(daemon.log().contains("job tick: started (schedule"), "{}", daemon.log());

    let out = p.run_now("manual");
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert!(stdout(&out).contains("job manual: started"), "{}", describe(&out));
    daemon.until("a snapshot of job manual", Duration::from_secs(60), || !p.snapshots_of("manual").is_empty());

    let out = p.run_now("nope");
    assert_eq!(code(&out), 1, "{}", describe(&out));
    assert!(stderr(&out).contains("no job \"nope\"") && stderr(&out).contains("manual"), "{}", describe(&out));

    // SIGTERM: the daemon stops (a running tick finishes first) and removes its socket.
    daemon.signal("TERM");
    let status = daemon.wait(Duration::from_secs(60));
    assert!(status.success(), "exit {status}; log:\n{}", daemon.log());
    assert!(!p.state_dir().join("daemon.sock").exists());
    assert!(daemon.log().contains("cairn daemon: stopped"), "{}", daemon.log());
    p.cairn.ok(&["check"]);

    // The same lines went to the daily log file.
    let files: Vec<_> = fs::read_dir(p.root.join("logs")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let logged = fs::read_to_string(&files[0]).unwrap();
    assert!(logged.contains("job tick: started (schedule") && logged.contains("INFO"), "{logged}");
    // Every run is in the run history, with its trigger.
    let mut history = p.cairn.command(&["history", "--json"]);
    let history = history.env("CAIRN_STATE_DIR", p.state_dir()).output().unwrap();
    assert_eq!(code(&history), 0, "{}", describe(&history));
    let history = common::json(&history);
    let triggers: Vec<&str> = history.as_array().unwrap().iter().filter_map(|r| r["trigger"].as_str()).collect();
    assert!(triggers.contains(&"schedule") && triggers.contains(&"run-now"), "{history}");
}

#[test]
fn run_now_refuses_a_second_run_and_a_watched_folder_triggers_its_job() {
    let p = Project::new(&SMALL_JOBS.replace("schedule = \"* * * * *\"", ""));
    let mut daemon = p.daemon();
    daemon.ready(&p);

    // The slow job's before hook keeps it running for 4 s: a second request is refused.
    let out = p.run_now("slow");
    assert!(stdout(&out).contains("job slow: started"), "{}", describe(&out));
    let out = p.run_now("slow");
    assert_eq!(code(&out), 1, "{}", describe(&out));
    assert!(stderr(&out).contains("job slow is already running"), "{}", describe(&out));

    // A file dropped into the watched folder: a run once changes settle (debounce 1 s).
    fs::write(p.root.join("inbox/new.txt"), "fresh\n").unwrap();
    daemon.until("a snapshot of the watched job", Duration::from_secs(60), || !p.snapshots_of("watched").is_empty());
    assert!(daemon.log().contains("job watched: started (watched paths changed)"), "{}", daemon.log());

    // SIGHUP with a broken file: the old config stays, and says why.
    let config = p.root.join("cairn.toml");
    let good = fs::read_to_string(&config).unwrap();
    let broken =
        "[jobs.broken]\nschedule = \"every day\"\n\n[[jobs.broken.sources]]\ntype = \"files\"\npath = \"data\"\n";
    fs::write(&config, format!("{good}\n{broken}")).unwrap();
    daemon.signal("HUP");
    daemon
        .until("the reload is refused", Duration::from_secs(30), || daemon.log().contains("keeping the config in use"));
    assert!(daemon.log().contains("every day"), "{}", daemon.log());
    fs::write(&config, good).unwrap();
    let out = p.run_now("manual");
    assert_eq!(code(&out), 0, "the old config still works:\n{}", describe(&out));

    daemon.until("the slow job's snapshot", Duration::from_secs(60), || !p.snapshots_of("slow").is_empty());
    daemon.signal("INT");
    assert!(daemon.wait(Duration::from_secs(60)).success(), "{}", daemon.log());
}

#[test]
fn sigterm_during_a_backup_leaves_a_valid_repository() {
    // A job big enough that the daemon is still writing packs (8 MiB each) when SIGTERM
    // comes; a shutdown timeout of 0 cuts the run off at once. If a run still wins the race
    // (a fast machine), the next attempt backs up twice as much.
    let mut size = 96usize << 20;
    for attempt in 0..3 {
        let p = Project::new(
            "[daemon]\nshutdown_timeout = \"0s\"\n\n[jobs.big]\n\n[[jobs.big.sources]]\ntype = \"files\"\npath = \"data\"\n",
        );
        let mut rng = Rng::new(attempt);
        for i in 0..4 {
            fs::write(p.root.join(format!("data/part{i}.bin")), rng.bytes(size / 4)).unwrap();
        }
        let mut daemon = p.daemon();
        daemon.ready(&p);
        assert_eq!(code(&p.run_now("big")), 0);
        let packs = p.cairn.repo.join("packs");
        daemon.until("the first pack is written", Duration::from_secs(120), || count_files(&packs) > 0);
        daemon.signal("TERM");
        let status = daemon.wait(Duration::from_secs(60));
        let log = daemon.log();

        // Whatever happened, the repository is whole.
        let check = p.cairn.ok(&["check", "--read-data"]);
        assert!(stdout(&check).contains("no errors"), "{}", describe(&check));
        if status.success() {
            eprintln!("attempt {attempt}: the backup of {} MiB finished before SIGTERM; trying more", size >> 20);
            size *= 2;
            continue;
        }
        assert_eq!(status.code(), Some(1), "{log}");
        assert!(log.contains("cancelled: job big") && log.contains("repository stays valid"), "{log}");
        assert!(p.snapshots_of("big").is_empty(), "a cut-off run lists no snapshot");
        // The next backup works and restores.
        p.cairn.ok(&["backup", "big"]);
        let to = p.root.join("restored");
        p.cairn.restore("latest", &to);
        assert_eq!(count_files(&to), 5, "notes.txt and the four parts");
        p.cairn.ok(&["check", "--read-data"]);
        return;
    }
    panic!("no SIGTERM landed during a backup in 3 attempts");
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    entries.flatten().map(|e| if e.path().is_dir() { count_files(&e.path()) } else { 1 }).sum()
}

/// A webhook receiver on 127.0.0.1: every request body, in order.
fn webhook_sink() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(50) {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut data = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers, then Content-Length bytes of body.
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                data.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&data).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if data.len() >= end + 4 + length {
                        seen.lock().unwrap().push(text[end + 4..].to_string());
                        break;
                    }
                }
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (url, bodies)
}

#[test]
fn a_job_that_stops_succeeding_raises_a_stale_alarm_once() {
    let (url, bodies) = webhook_sink();
    let p = Project::new(&format!(
        "[notifiers.hook]\ntype = \"webhook\"\nurl = \"{url}\"\n\n[jobs.broken]\nstale_after = \"1s\"\n\
         notify = [{{ notifier = \"hook\", on = [\"failure\", \"stale\"] }}]\n\n\
         [[jobs.broken.sources]]\ntype = \"files\"\npath = \"missing\"\n"
    ));
    let mut daemon = p.daemon();
    daemon.ready(&p);
    let out = p.run_now("broken");
    assert_eq!(code(&out), 0, "{}", describe(&out));
    let has = |what: &str| bodies.lock().unwrap().iter().filter(|b| b.contains(what)).count();
    daemon.until("a failure and then a stale notification", Duration::from_secs(60), || {
        has("\"failure\"") >= 1 && has("\"stale\"") >= 1
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(has("\"stale\""), 1, "the alarm is raised once, not every check: {:?}", bodies.lock().unwrap());
    daemon.signal("TERM");
    daemon.wait(Duration::from_secs(60));
}
