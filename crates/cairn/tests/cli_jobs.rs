//! Jobs from `cairn.toml` through the real binary: config check/show, backup JOB/--all, one
//! snapshot per job with per-source status, a failing source (partial run), hooks, show,
//! restore by source name.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{code, describe, json, stderr, stdout, Cairn, PASSWORD};

/// A project directory with two folders, a password file and a config naming them.
struct Project {
    _dir: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
}

impl Project {
    fn new(jobs: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        fs::create_dir_all(root.join("app/src")).unwrap();
        fs::write(root.join("app/src/main.py"), "print('hello')\n").unwrap();
        fs::write(root.join("app/debug.log"), "noise\n").unwrap();
        fs::create_dir_all(root.join("uploads")).unwrap();
        fs::write(root.join("uploads/a.bin"), vec![7u8; 300_000]).unwrap();
        fs::write(root.join("password"), format!("{PASSWORD}\n")).unwrap();
        let config = root.join("cairn.toml");
        fs::write(&config, format!("[repository]\npath = \"repo\"\npassword_file = \"password\"\n\n{jobs}")).unwrap();
        Project { _dir: dir, root, config }
    }

    fn cairn(&self) -> Cairn {
        let mut c = Cairn::with_config(&self.config);
        c.repo = self.root.join("repo");
        c
    }
}

const TWO_FOLDERS: &str = r#"
[jobs.app]
tags = ["prod"]

[[jobs.app.sources]]
name = "program"
type = "files"
path = "app"
exclude = ["*.log"]

[[jobs.app.sources]]
name = "uploads"
type = "files"
path = "uploads"
"#;

fn source<'a>(snapshot: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    snapshot["sources"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap()
}

#[test]
fn a_job_makes_one_snapshot_holding_all_its_sources() {
    let p = Project::new(TWO_FOLDERS);
    let cairn = p.cairn();
    cairn.ok(&["config", "check"]);
    cairn.init();
    let out = cairn.ok(&["backup", "app"]);
    let text = stdout(&out);
    assert!(text.contains("job app: snapshot") && text.contains("(success)"), "{text}");

    let snaps = cairn.snapshots();
    assert_eq!(snaps.len(), 1);
    let snap = &snaps[0];
    assert_eq!(snap["job"], "app");
    assert_eq!(snap["tags"], serde_json::json!(["prod"]));
    assert_eq!(snap["sources"].as_array().unwrap().len(), 2);
    assert_eq!(source(snap, "program")["status"], "ok");
    assert_eq!(source(snap, "uploads")["stats"]["total_bytes"], 300_000);

    // The table shows job and per-source status and size.
    let table = stdout(&cairn.ok(&["snapshots", "--job", "app"]));
    assert!(table.contains("program ok") && table.contains("uploads ok 293.0 KiB"), "{table}");

    // show: everything recorded, human and JSON.
    let shown = stdout(&cairn.ok(&["show", "latest", "--job", "app"]));
    assert!(shown.contains("source program (files): ok") && shown.contains("paths:"), "{shown}");
    let shown = json(&cairn.ok(&["show", "latest", "--json"]));
    assert_eq!(shown["id"], snap["id"]);

    // Restore one source by name; the excluded log is not there.
    let target = p.root.join("restored");
    cairn.ok(&["restore", "latest", "--job", "app", "--source", "program", "--to", target.to_str().unwrap()]);
    assert_eq!(fs::read_to_string(target.join("app/src/main.py")).unwrap(), "print('hello')\n");
    assert!(!target.join("app/debug.log").exists());
    // Several sources and no --source: the error lists them.
    let out = cairn.expect_code(1, &["restore", "latest", "--to", p.root.join("x").to_str().unwrap()]);
    assert!(stderr(&out).contains("--source NAME (program, uploads)"), "{}", describe(&out));
}

#[test]
fn the_second_run_reads_only_what_changed() {
    let p = Project::new(TWO_FOLDERS);
    let cairn = p.cairn();
    cairn.init();
    cairn.ok(&["backup", "app"]);
    fs::write(p.root.join("uploads/b.bin"), vec![9u8; 1000]).unwrap();
    json(&cairn.ok(&["backup", "app", "--json"]));
    let snaps = cairn.snapshots();
    let second = &snaps[1];
    assert_eq!(second["parent"], snaps[0]["id"], "the job's previous snapshot is the parent");
    let uploads = source(second, "uploads");
    assert_eq!(uploads["stats"]["files_unchanged"], 1);
    assert_eq!(uploads["stats"]["files_new"], 1);
    assert_eq!(uploads["stats"]["bytes_read"], 1000);
}

#[test]
fn a_failing_source_does_not_stop_the_others() {
    let jobs =
        format!("{TWO_FOLDERS}\n[[jobs.app.sources]]\nname = \"gone\"\ntype = \"files\"\npath = \"does-not-exist\"\n");
    let p = Project::new(&jobs);
    let cairn = p.cairn();
    cairn.init();
    let out = cairn.expect_code(3, &["backup", "app"]);
    let text = stdout(&out);
    assert!(text.contains("(partial)"), "{}", describe(&out));
    assert!(text.contains("gone") && text.contains("failed") && text.contains("does-not-exist"), "{text}");

    let snap = &cairn.snapshots()[0];
    let gone = source(snap, "gone");
    assert_eq!(gone["status"], "failed");
    assert!(gone["error"].as_str().unwrap().contains("does-not-exist"));
    assert!(gone.get("root").is_none(), "a failed source holds no data");
    assert_eq!(source(snap, "uploads")["status"], "ok");
    let table = stdout(&cairn.ok(&["snapshots"]));
    assert!(table.contains("partial") && table.contains("gone failed"), "{table}");
    // Its data cannot be restored, and the error says why.
    let out =
        cairn.expect_code(1, &["restore", "latest", "--source", "gone", "--to", p.root.join("r").to_str().unwrap()]);
    assert!(stderr(&out).contains("holds no data"), "{}", describe(&out));
}

#[test]
fn every_source_failing_saves_nothing() {
    let jobs = "[jobs.bad]\n[[jobs.bad.sources]]\ntype = \"files\"\npath = \"nope\"\n";
    let p = Project::new(jobs);
    let cairn = p.cairn();
    cairn.init();
    let out = cairn.expect_code(1, &["backup", "bad"]);
    assert!(stderr(&out).contains("job bad failed: every source failed"), "{}", describe(&out));
    assert!(cairn.snapshots().is_empty());
}

#[test]
fn hooks_run_around_the_job_with_its_outcome() {
    let jobs = format!(
        "{TWO_FOLDERS}\n[jobs.app.hooks]\nbefore = \"echo before > hook-before.txt\"\n\
         after = [\"sh\", \"-c\", \"echo $CAIRN_JOB $CAIRN_OUTCOME $CAIRN_SNAPSHOT > hook-after.txt\"]\n"
    );
    let p = Project::new(&jobs);
    let mut cairn = p.cairn();
    cairn.init();
    // Hooks run in the current directory of cairn.
    let out = {
        let mut cmd = cairn.command(&["backup", "app"]);
        cmd.current_dir(&p.root);
        cmd.output().unwrap()
    };
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert_eq!(fs::read_to_string(p.root.join("hook-before.txt")).unwrap(), "before\n");
    let after = fs::read_to_string(p.root.join("hook-after.txt")).unwrap();
    let id = cairn.snapshots()[0]["id"].as_str().unwrap().to_string();
    assert_eq!(after, format!("app success {id}\n"));

    // A failing `before` hook: nothing is backed up, `after` still hears about it.
    let jobs = format!(
        "{TWO_FOLDERS}\n[jobs.app.hooks]\nbefore = \"exit 4\"\nafter = \"echo $CAIRN_OUTCOME > {}\"\n",
        p.root.join("hook-after.txt").display()
    );
    fs::write(&p.config, format!("[repository]\npath = \"repo\"\npassword_file = \"password\"\n{jobs}")).unwrap();
    cairn.secrets.clear();
    cairn.secrets.push(PASSWORD.into());
    let out = cairn.expect_code(1, &["backup", "app"]);
    assert!(stderr(&out).contains("before hook failed"), "{}", describe(&out));
    assert_eq!(fs::read_to_string(p.root.join("hook-after.txt")).unwrap(), "failed\n");
    assert_eq!(cairn.snapshots().len(), 1);
}

#[test]
fn backup_all_runs_every_job() {
    let jobs = format!("{TWO_FOLDERS}\n[jobs.other]\n[[jobs.other.sources]]\ntype = \"files\"\npath = \"uploads\"\n");
    let p = Project::new(&jobs);
    let cairn = p.cairn();
    cairn.init();
    let results = json(&cairn.ok(&["backup", "--all", "--json"]));
    let jobs: Vec<&str> = results.as_array().unwrap().iter().map(|r| r["job"].as_str().unwrap()).collect();
    assert_eq!(jobs, ["app", "other"]);
    assert_eq!(cairn.snapshots().len(), 2);
}

#[test]
fn jobs_and_paths_are_told_apart() {
    let p = Project::new(TWO_FOLDERS);
    let cairn = p.cairn();
    cairn.init();
    let out = cairn.expect_code(1, &["backup", "nosuchjob"]);
    assert!(stderr(&out).contains("neither a job") && stderr(&out).contains("jobs are: app"), "{}", describe(&out));
    let out = cairn.expect_code(1, &["backup", "app", p.root.join("uploads").to_str().unwrap()]);
    assert!(stderr(&out).contains("is not a job"), "{}", describe(&out));
    // A path still works with a config file present (the repository comes from the config).
    cairn.ok(&["backup", p.root.join("uploads").to_str().unwrap()]);
}

fn check_error(config_text: &str) -> String {
    let p = Project::new("");
    fs::write(&p.config, config_text).unwrap();
    let out = p.cairn().expect_code(1, &["config", "check"]);
    stderr(&out)
}

#[test]
fn config_errors_name_file_line_and_key() {
    let err = check_error("[repository]\npath = \"r\"\n\n[jobs.a]\ntagz = [\"x\"]\n");
    assert!(err.contains("cairn.toml:5:") && err.contains("unknown field `tagz`"), "{err}");
    let err = check_error("[repository]\npath = \"r\"\n[jobs.a]\n[[jobs.a.sources]]\ntype = \"files\"\npath = 5\n");
    assert!(err.contains("cairn.toml:6:") && err.contains("path"), "{err}");
    let err = check_error(
        "[repository]\npath = \"r\"\n[jobs.a]\n[[jobs.a.sources]]\ntype = \"files\"\npath = \"x\"\nvacuum = true\n",
    );
    assert!(err.contains("cairn.toml:7:") && err.contains("`vacuum` does not apply to files sources"), "{err}");
}

#[test]
fn config_show_redacts_secrets() {
    let jobs = r#"
[jobs.db]
[[jobs.db.sources]]
type = "postgres"
url = "postgres://app:UrlSecret-123@127.0.0.1:5432/app"
password = "${CAIRN_TEST_DB_PASSWORD}"
"#;
    let p = Project::new(jobs);
    let text = fs::read_to_string(&p.config)
        .unwrap()
        .replace("password_file = \"password\"", "password = \"${CAIRN_TEST_REPO_PASSWORD}\"");
    fs::write(&p.config, text).unwrap();
    let mut cairn = p.cairn();
    cairn.env.push(("CAIRN_TEST_DB_PASSWORD".into(), "EnvSecret-456".into()));
    cairn.env.push(("CAIRN_TEST_REPO_PASSWORD".into(), PASSWORD.into()));
    cairn.secrets.extend(["EnvSecret-456".to_string(), "UrlSecret-123".to_string()]);
    let shown = stdout(&cairn.ok(&["config", "show"]));
    assert!(shown.contains("postgres://app:***@127.0.0.1:5432/app") && shown.contains("password = \"***\""), "{shown}");
    let shown = json(&cairn.ok(&["config", "show", "--json"]));
    assert_eq!(shown["jobs"]["db"]["sources"][0]["password"], "***");
    // The variable must be set: a missing one is an error naming it.
    cairn.env.retain(|(k, _)| k != "CAIRN_TEST_DB_PASSWORD");
    let out = cairn.expect_code(1, &["config", "check"]);
    assert!(stderr(&out).contains("CAIRN_TEST_DB_PASSWORD is not set"), "{}", describe(&out));
}

#[test]
fn a_config_file_is_needed_for_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let cairn = Cairn::new(dir.path().join("repo"));
    let out = cairn.expect_code(1, &["config", "check"]);
    assert!(stderr(&out).contains("no config file found"), "{}", describe(&out));
    let out = cairn.expect_code(1, &["backup", "--all"]);
    assert!(stderr(&out).contains("none was found"), "{}", describe(&out));
    let _ = Path::new("");
}

#[test]
fn the_example_config_is_valid() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/cairn.toml");
    let out = Cairn::with_config(&example).ok(&["config", "check"]);
    assert!(stdout(&out).contains("ok (1 repository, 2 job(s), 4 source(s))"), "{}", describe(&out));
}

#[test]
fn diff_leaves_out_a_source_whose_capture_failed_instead_of_showing_it_all_removed() {
    let p = Project::new(TWO_FOLDERS);
    let cairn = p.cairn();
    cairn.init();
    cairn.ok(&["backup", "app"]);
    // The second run cannot read `uploads` at all; `program` changes.
    fs::rename(p.root.join("uploads"), p.root.join("uploads-moved")).unwrap();
    fs::write(p.root.join("app/src/main.py"), "print('changed')\n").unwrap();
    cairn.expect_code(3, &["backup", "app"]);
    let snaps = cairn.snapshots();
    let (first, second) = (snaps[0]["id"].as_str().unwrap(), snaps[1]["id"].as_str().unwrap());
    assert_eq!(source(&snaps[1], "uploads")["status"], "failed");

    let text = stdout(&cairn.ok(&["diff", first, second]));
    assert!(text.lines().any(|l| l.starts_with("M  program:/") && l.ends_with("/main.py")), "{text}");
    assert!(!text.contains("uploads:/"), "a failed capture is not a removal:\n{text}");
    assert!(text.contains(&format!("!  uploads: not compared, its capture failed in {}", &second[..8])), "{text}");

    let json = json(&cairn.ok(&["diff", first, second, "--json"]));
    let not_compared = json["not_compared"].as_array().unwrap();
    assert_eq!(not_compared.len(), 1, "{json:#}");
    assert_eq!(not_compared[0]["source"], "uploads");
    assert_eq!(not_compared[0]["snapshot"], second);
    assert!(not_compared[0]["error"].as_str().unwrap().contains("uploads"), "{json:#}");
    assert_eq!(json["summary"]["removed"], 0, "{json:#}");
}
