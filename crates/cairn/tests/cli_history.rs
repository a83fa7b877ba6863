//! Run history and status through the real binary: `backup JOB` records its runs; `history`
//! lists them (filters, `--json` with per-source results); a failing source makes a partial
//! run with its error; a killed run shows as interrupted; `status` shows last run, last
//! success, next run and repository size, and exits 4 for a stale or failed job.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{collect_paths, describe, json, stderr, stdout, Cairn, PASSWORD};
use serde_json::Value;

/// `cairn status` exit code when a job needs attention.
const ALARM: i32 = 4;

/// A project directory with two folders, a password file and a config with `jobs`.
struct Project {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Project {
    fn new(jobs: &str) -> Project {
        let dir = common::tempdir();
        let root = dir.path().to_path_buf();
        fs::create_dir_all(root.join("app")).unwrap();
        fs::write(root.join("app/main.py"), "print('hello')\n").unwrap();
        fs::create_dir_all(root.join("uploads")).unwrap();
        fs::write(root.join("uploads/a.bin"), vec![7u8; 300_000]).unwrap();
        fs::write(root.join("password"), format!("{PASSWORD}\n")).unwrap();
        let p = Project { _dir: dir, root };
        p.configure(jobs);
        p
    }

    fn configure(&self, jobs: &str) {
        let text = format!("[repository]\npath = \"repo\"\npassword_file = \"password\"\n\n{jobs}");
        fs::write(self.root.join("cairn.toml"), text).unwrap();
    }

    fn cairn(&self) -> Cairn {
        let mut c = Cairn::with_config(self.root.join("cairn.toml"));
        c.repo = self.root.join("repo");
        c
    }
}

const APP: &str = r#"
[jobs.app]
[[jobs.app.sources]]
name = "program"
type = "files"
path = "app"

[[jobs.app.sources]]
name = "uploads"
type = "files"
path = "uploads"
"#;

fn history(cairn: &Cairn, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["history", "--json"];
    args.extend(extra);
    match json(&cairn.ok(&args)) {
        Value::Array(runs) => runs,
        other => panic!("history --json is not a list: {other}"),
    }
}

fn status(cairn: &Cairn, code: i32) -> Value {
    json(&cairn.expect_code(code, &["status", "--json"]))
}

fn source<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["repositories"][0]["sources"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap()
}

/// Bytes of every file under `dir`.
fn du(dir: &Path) -> u64 {
    let mut all = Vec::new();
    collect_paths(dir, &mut all);
    all.iter().map(|p| fs::symlink_metadata(p).unwrap()).filter(|m| m.is_file()).map(|m| m.len()).sum()
}

#[test]
fn backup_runs_appear_in_history_with_their_sources() {
    let p = Project::new(APP);
    let cairn = p.cairn();
    cairn.init();
    // Nothing recorded yet: not an error, and nothing is created.
    let out = cairn.ok(&["history"]);
    assert!(stderr(&out).contains("no runs recorded"), "{}", describe(&out));
    assert!(history(&cairn, &[]).is_empty());
    assert!(!cairn.state_dir().exists());

    cairn.ok(&["backup", "app"]);
    fs::write(p.root.join("uploads/b.bin"), vec![9u8; 1000]).unwrap();
    cairn.ok(&["backup", "app"]);
    assert!(cairn.state_dir().join("history.db").is_file());

    let runs = history(&cairn, &[]);
    assert_eq!(runs.len(), 2, "{runs:?}");
    let snapshots = cairn.snapshots();
    for (run, snapshot) in runs.iter().zip(&snapshots) {
        assert_eq!(run["job"], "app");
        assert_eq!(run["trigger"], "manual");
        assert_eq!(run["outcome"], "success");
        assert!(run["finished"].is_string() && run.get("error").is_none(), "{run}");
        let repo = &run["repositories"][0];
        assert_eq!(repo["repository"], "default");
        assert_eq!(repo["snapshot"], snapshot["id"], "runs are listed oldest first");
        assert_eq!(source(run, "program")["status"], "ok");
    }
    // Per-source sizes: the first run read everything, the second only the new file.
    assert_eq!(source(&runs[0], "uploads")["total_bytes"], 300_000);
    assert_eq!(source(&runs[0], "uploads")["bytes_read"], 300_000);
    assert_eq!(source(&runs[1], "uploads")["bytes_read"], 1000);
    assert_eq!(runs[1]["bytes_read"], 1000);
    assert!(runs[0]["bytes_added"].as_u64().unwrap() > 0);

    // The table: one line per run.
    let table = stdout(&cairn.ok(&["history"]));
    let short = &snapshots[1]["id"].as_str().unwrap()[..8];
    assert!(table.contains("app") && table.contains("manual") && table.contains(short), "{table}");
    assert!(table.contains("293.0 KiB") && table.contains("2 run(s)"), "{table}");

    // Filters.
    assert_eq!(history(&cairn, &["--limit", "1"])[0]["id"], runs[1]["id"], "--limit keeps the newest");
    assert!(history(&cairn, &["--job", "other"]).is_empty());
    assert_eq!(history(&cairn, &["--since", "1h"]).len(), 2);
    assert!(history(&cairn, &["--since", "2999-01-01"]).is_empty());
    assert!(history(&cairn, &["--outcome", "failed"]).is_empty());
    let out = cairn.expect_code(1, &["history", "--since", "soon"]);
    assert!(stderr(&out).contains("cannot read --since"), "{}", describe(&out));
    cairn.expect_code(2, &["history", "--outcome", "great"]);
}

#[test]
fn a_failing_source_is_a_partial_run_with_its_error() {
    let jobs = format!("{APP}\n[[jobs.app.sources]]\nname = \"gone\"\ntype = \"files\"\npath = \"does-not-exist\"\n");
    let p = Project::new(&jobs);
    let cairn = p.cairn();
    cairn.init();
    cairn.expect_code(3, &["backup", "app"]);

    let runs = history(&cairn, &["--outcome", "partial"]);
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert!(run["error"].as_str().unwrap().starts_with("source gone: "), "{run}");
    assert!(run["error"].as_str().unwrap().contains("does-not-exist"), "{run}");
    assert_eq!(run["repositories"][0]["outcome"], "partial");
    assert!(run["repositories"][0]["snapshot"].is_string(), "the others were saved");
    let gone = source(run, "gone");
    assert_eq!(gone["status"], "failed");
    assert!(gone["error"].as_str().unwrap().contains("does-not-exist"));
    assert_eq!(source(run, "uploads")["status"], "ok");
    assert!(history(&cairn, &["--outcome", "success"]).is_empty());

    let table = stdout(&cairn.ok(&["history"]));
    assert!(table.contains("partial") && table.contains("source gone:"), "{table}");

    // A partial run is neither a success nor an alarm by itself.
    let s = status(&cairn, 0);
    assert_eq!(s["jobs"][0]["state"], "partial");
    assert!(s["jobs"][0]["last_success"].is_null());
}

#[test]
fn status_shows_last_run_last_success_next_run_and_size() {
    let jobs =
        format!("[daemon]\ntimezone = \"UTC\"\n{}", APP.replace("[jobs.app]", "[jobs.app]\nschedule = \"0 2 * * *\""));
    let p = Project::new(&jobs);
    let cairn = p.cairn();
    cairn.init();
    let before = status(&cairn, 0);
    let job = &before["jobs"][0];
    assert_eq!(job["job"], "app");
    assert_eq!(job["state"], "never-run");
    assert!(job["last_run"].is_null() && job["last_success"].is_null());
    assert_eq!(job["stale_after_secs"], 2 * 86_400, "twice the daily gap");

    cairn.ok(&["backup", "app"]);
    let s = status(&cairn, 0);
    let job = &s["jobs"][0];
    assert_eq!(job["state"], "ok");
    assert!(job.get("alarm").is_none());
    assert_eq!(job["last_run"]["outcome"], "success");
    assert_eq!(job["last_success"]["id"], job["last_run"]["id"]);
    let next = job["next_run"].as_str().unwrap();
    assert!(next.ends_with("T02:00:00Z"), "{next}");
    let next = chrono::DateTime::parse_from_rfc3339(next).unwrap().to_utc();
    let now = chrono::Utc::now();
    assert!(next > now && next - now <= chrono::TimeDelta::days(1), "{next}");
    let repo = &job["repositories"][0];
    assert_eq!(repo["name"], "default");
    assert_eq!(repo["bytes"], du(&p.root.join("repo")));
    assert!(repo["objects"].as_u64().unwrap() >= 4, "{repo}");

    let table = stdout(&cairn.ok(&["status"]));
    let line = table.lines().find(|l| l.starts_with("app ")).unwrap();
    assert!(line.contains(" ok ") && line.contains("success") && line.contains("02:00"), "{table}");
    assert!(line.contains("default ") && line.contains("KiB"), "{table}");
}

#[test]
fn status_flags_a_stale_job_with_its_exit_code() {
    let p = Project::new(&APP.replace("[jobs.app]", "[jobs.app]\nstale_after = \"1s\""));
    let cairn = p.cairn();
    cairn.init();
    cairn.ok(&["backup", "app"]);
    // A success older than a second is stale (the unit tests of `health` cover "not yet").
    std::thread::sleep(Duration::from_millis(1100));
    let s = status(&cairn, ALARM);
    assert_eq!(s["jobs"][0]["stale_after_secs"], 1);
    assert_eq!(s["jobs"][0]["state"], "stale");
    assert!(s["jobs"][0]["alarm"].as_str().unwrap().contains("expected within 1s"), "{s}");
    let out = cairn.expect_code(ALARM, &["status"]);
    assert!(stdout(&out).contains("STALE"), "{}", describe(&out));
    assert!(stderr(&out).contains("job app: stale: last success"), "{}", describe(&out));
    // Quiet: only the exit code and the reason on stderr.
    let out = cairn.expect_code(ALARM, &["status", "--quiet"]);
    assert!(stdout(&out).is_empty() && stderr(&out).contains("stale"), "{}", describe(&out));
}

#[test]
fn status_flags_a_job_whose_last_run_failed() {
    let jobs = format!("{APP}\n[jobs.bad]\n[[jobs.bad.sources]]\ntype = \"files\"\npath = \"nope\"\n");
    let p = Project::new(&jobs);
    let cairn = p.cairn();
    cairn.init();
    cairn.ok(&["backup", "app"]);
    cairn.expect_code(1, &["backup", "bad"]);
    let runs = history(&cairn, &["--job", "bad"]);
    assert_eq!(runs[0]["outcome"], "failed");
    assert!(runs[0]["error"].as_str().unwrap().contains("every source failed"), "{runs:?}");

    let s = status(&cairn, ALARM);
    let states = s["jobs"].as_array().unwrap();
    assert_eq!(states[0]["job"], "app");
    assert_eq!(states[0]["state"], "ok");
    assert_eq!(states[1]["state"], "failed");
    let out = cairn.expect_code(ALARM, &["status"]);
    assert!(stdout(&out).contains("FAILED"), "{}", describe(&out));
    assert!(
        stderr(&out).contains("job bad: the last run") && stderr(&out).contains("every source failed"),
        "{}",
        describe(&out)
    );
    assert!(!stderr(&out).contains("job app"), "{}", describe(&out));

    // A later success clears the alarm.
    p.configure(&jobs.replace("path = \"nope\"", "path = \"app\""));
    cairn.ok(&["backup", "bad"]);
    assert_eq!(status(&cairn, 0)["jobs"][1]["state"], "ok");
}

#[test]
fn a_killed_run_shows_as_interrupted() {
    // The before hook holds the run open until the test kills cairn.
    let p = Project::new(&format!("{APP}\n[jobs.app.hooks]\nbefore = \"sleep 10\"\n"));
    let cairn = p.cairn();
    cairn.init();
    let mut child = cairn.command(&["backup", "app"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    while history(&cairn, &["--outcome", "running"]).is_empty() {
        assert!(started.elapsed() < Duration::from_secs(20), "the run never showed as running");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(status(&cairn, 0)["jobs"][0]["state"], "running");
    child.kill().unwrap();
    child.wait().unwrap();

    let runs = history(&cairn, &[]);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["outcome"], "interrupted");
    assert!(runs[0]["finished"].is_null());
    assert_eq!(history(&cairn, &["--outcome", "interrupted"]).len(), 1);
    let out = cairn.expect_code(ALARM, &["status"]);
    assert!(stderr(&out).contains("interrupted"), "{}", describe(&out));
    // The next run (without the slow hook) writes the verdict down and goes on.
    p.configure(APP);
    cairn.ok(&["backup", "app"]);
    let outcomes: Vec<Value> = history(&cairn, &[]).iter().map(|r| r["outcome"].clone()).collect();
    assert_eq!(outcomes, ["interrupted", "success"]);
}

#[test]
fn status_needs_a_config_file() {
    let dir = common::tempdir();
    let cairn = Cairn::new(dir.path().join("repo"));
    let out = cairn.expect_code(1, &["status"]);
    assert!(stderr(&out).contains("status shows the jobs of a config file"), "{}", describe(&out));
}
