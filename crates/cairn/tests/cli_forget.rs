//! `cairn forget` through the real binary: dry run with reasons, removal, JSON, policies from
//! the command line and from a job's `retention`, `auto_forget` after a backup, and refusals.

mod common;

use std::fs;

use common::{describe, json, stderr, stdout, Cairn, PASSWORD};

/// A repository with ad hoc backups of one folder at the given times.
fn repo_with_backups(times: &[&str]) -> (tempfile::TempDir, Cairn) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fs::create_dir_all(&data).unwrap();
    let cairn = Cairn::new(dir.path().join("repo"));
    cairn.init();
    for (i, time) in times.iter().enumerate() {
        fs::write(data.join("file"), format!("version {i}")).unwrap();
        cairn.ok(&["backup", data.to_str().unwrap(), "--time", time]);
    }
    (dir, cairn)
}

fn times(cairn: &Cairn) -> Vec<String> {
    cairn.snapshots().iter().map(|s| s["time"].as_str().unwrap().to_string()).collect()
}

const WEEK: [&str; 6] = [
    "2026-11-16T02:00:00+01:00",
    "2026-11-17T02:00:00+01:00",
    "2026-11-18T02:00:00+01:00",
    "2026-11-18T14:00:00+01:00",
    "2026-11-19T02:00:00+01:00",
    "2026-11-20T02:00:00+01:00",
];

#[test]
fn dry_run_shows_the_plan_and_removes_nothing() {
    let (_dir, cairn) = repo_with_backups(&WEEK);
    let out = cairn.ok(&["forget", "--keep-daily", "3", "--keep-last", "1", "--dry-run"]);
    let text = stdout(&out);
    assert!(text.contains("keep 3, remove 3"), "{text}");
    assert!(text.contains("last, daily 2026-11-20"), "{text}");
    assert!(text.contains("daily 2026-11-18"), "{text}");
    assert!(text.contains("would remove 3 snapshot(s)"), "{text}");
    assert_eq!(cairn.snapshots().len(), 6, "a dry run removes nothing");

    let plan = json(&cairn.ok(&["forget", "--keep-daily", "3", "--dry-run", "--json"]));
    let group = &plan[0];
    assert_eq!(group["policy"], "command line");
    let kept: Vec<&str> = group["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["keep"] == true)
        .map(|s| s["time"].as_str().unwrap())
        .collect();
    assert_eq!(kept, ["2026-11-20T02:00:00+01:00", "2026-11-19T02:00:00+01:00", "2026-11-18T14:00:00+01:00"]);
}

#[test]
fn forget_removes_what_the_policy_does_not_keep() {
    let (_dir, cairn) = repo_with_backups(&WEEK);
    let out = cairn.ok(&["forget", "--keep-daily", "2", "--keep-tag", "never-used"]);
    assert!(stdout(&out).contains("removed 4 snapshot(s)"), "{}", describe(&out));
    assert_eq!(times(&cairn), ["2026-11-19T02:00:00+01:00", "2026-11-20T02:00:00+01:00"]);
    // What is left restores, and check is clean (the data of the removed ones stays).
    let target = _dir.path().join("restored");
    cairn.restore("latest", &target);
    assert_eq!(fs::read_to_string(target.join("data/file")).unwrap(), "version 5");
    cairn.ok(&["check", "--read-data"]);
}

#[test]
fn named_snapshots_and_refusals() {
    let (_dir, cairn) = repo_with_backups(&WEEK[..2]);
    let out = cairn.expect_code(1, &["forget"]);
    assert!(stderr(&out).contains("no retention policy applies"), "{}", describe(&out));
    let out = cairn.expect_code(1, &["forget", "latest"]);
    assert!(stderr(&out).contains("name the snapshot by its id"), "{}", describe(&out));
    let out = cairn.expect_code(1, &["forget", "--keep-within", "soon"]);
    assert!(stderr(&out).contains("--keep-within"), "{}", describe(&out));
    let first = cairn.snapshots()[0]["short_id"].as_str().unwrap().to_string();
    cairn.ok(&["forget", &first]);
    assert_eq!(times(&cairn), [WEEK[1]]);
}

#[test]
fn a_jobs_retention_applies_by_itself_and_after_backups() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("data")).unwrap();
    fs::write(root.join("password"), format!("{PASSWORD}\n")).unwrap();
    let config = root.join("cairn.toml");
    let write_config = |auto: bool| {
        fs::write(
            &config,
            format!(
                "[repository]\npath = \"repo\"\npassword_file = \"password\"\n\n[jobs.app]\n\
                 retention = {{ daily = 2 }}\nauto_forget = {auto}\n\n[[jobs.app.sources]]\ntype = \"files\"\npath = \"data\"\n"
            ),
        )
        .unwrap()
    };
    write_config(false);
    let mut cairn = Cairn::with_config(&config);
    cairn.repo = root.join("repo");
    cairn.init();
    for time in &WEEK[..4] {
        cairn.ok(&["backup", "app", "--time", time]);
    }
    assert_eq!(cairn.snapshots().len(), 4);
    let out = cairn.ok(&["forget", "--dry-run"]);
    assert!(
        stdout(&out).contains("job app") && stdout(&out).contains("(policy: job app): keep 2, remove 2"),
        "{}",
        describe(&out)
    );

    write_config(true);
    cairn.ok(&["backup", "app", "--time", WEEK[4]]);
    assert_eq!(times(&cairn), [WEEK[3], WEEK[4]], "the job's retention ran after its backup");
}

#[test]
fn an_empty_retention_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cairn.toml");
    fs::write(
        &config,
        "[repository]\npath = \"repo\"\n[jobs.app]\nretention = {}\n[[jobs.app.sources]]\ntype = \"files\"\npath = \".\"\n",
    )
    .unwrap();
    let out = Cairn::with_config(&config).expect_code(1, &["config", "check"]);
    assert!(stderr(&out).contains("retention keeps nothing"), "{}", describe(&out));
}
