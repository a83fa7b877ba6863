//! `cairn schedule install|status|uninstall` through the real binary, always into temporary
//! places: `--dir`, `--crontab-file`, or a `systemctl`/`crontab` stand-in on `PATH` that logs
//! its arguments. Nothing here touches the machine's units or crontabs.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{code, describe, json, listing, stderr, stdout, Cairn, PASSWORD};

const JOBS: &str = r#"
[daemon]
timezone = "UTC"

[jobs.app]
schedule = ["0 8-18 * * 1-5", "0 2 * * *"]
jitter = "5m"
[[jobs.app.sources]]
type = "files"
path = "data"

[jobs.db]
schedule = "30 4 1 * *"
[[jobs.db.sources]]
type = "files"
path = "data"

[jobs.manual]
[[jobs.manual.sources]]
type = "files"
path = "data"
"#;

/// A config in a temporary directory, with a state directory of its own.
struct Project {
    _dir: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
}

impl Project {
    fn new(jobs: &str) -> Project {
        let dir = common::tempdir();
        let root = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir_all(root.join("data")).unwrap();
        fs::write(root.join("password"), format!("{PASSWORD}\n")).unwrap();
        let config = root.join("cairn.toml");
        fs::write(&config, format!("[repository]\npath = \"repo\"\npassword_file = \"password\"\n{jobs}")).unwrap();
        Project { _dir: dir, root, config }
    }

    fn cairn(&self) -> Cairn {
        let mut c = Cairn::with_config(&self.config);
        c.env.push(("XDG_STATE_HOME".into(), self.root.join("state").display().to_string()));
        c
    }

    fn units(&self) -> PathBuf {
        self.root.join("units")
    }

    fn units_arg(&self) -> String {
        self.units().display().to_string()
    }
}

/// The binary's absolute path, as units name it.
fn binary() -> String {
    fs::canonicalize(env!("CARGO_BIN_EXE_cairn")).unwrap().display().to_string()
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

fn job<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["jobs"].as_array().unwrap().iter().find(|j| j["job"] == name).unwrap()
}

#[test]
fn install_writes_units_with_absolute_paths_and_status_shows_them() {
    let p = Project::new(JOBS);
    let cairn = p.cairn();
    let out = cairn.ok(&["schedule", "install", "--user", "--dir", &p.units_arg()]);
    assert!(stdout(&out).contains("wrote") && stderr(&out).contains("systemctl was not run"), "{}", describe(&out));
    let files = names(&p.units());
    assert_eq!(files.len(), 5, "{files:?}");
    assert!(files.iter().any(|f| f.starts_with("cairn-schedule-") && f.ends_with(".json")), "manifest: {files:?}");
    for unit in ["cairn-app.service", "cairn-app.timer", "cairn-db.service", "cairn-db.timer"] {
        assert!(files.contains(&unit.to_string()), "{unit} missing: {files:?}");
    }

    let service = fs::read_to_string(p.units().join("cairn-app.service")).unwrap();
    let exec = format!("ExecStart={} --config {} backup app\n", binary(), p.config.display());
    assert!(service.contains("Type=oneshot\n") && service.contains(&exec), "{service}");
    assert!(!service.contains(PASSWORD) && !service.contains("network-online"), "{service}");
    let timer = fs::read_to_string(p.units().join("cairn-app.timer")).unwrap();
    for line in [
        "OnCalendar=Mon..Fri *-*-* 08..18:00:00 UTC\n",
        "OnCalendar=*-*-* 02:00:00 UTC\n",
        "Persistent=true\n",
        "RandomizedDelaySec=300\n",
        "WantedBy=timers.target\n",
    ] {
        assert!(timer.contains(line), "{line:?} missing:\n{timer}");
    }
    let db = fs::read_to_string(p.units().join("cairn-db.timer")).unwrap();
    assert!(db.contains("OnCalendar=*-*-01 04:30:00 UTC\n") && !db.contains("RandomizedDelaySec"), "{db}");
    verify_units(&p.units());

    let status = json(&cairn.ok(&["schedule", "status", "--dir", &p.units_arg(), "--json"]));
    assert_eq!(status["installed"]["kind"], "systemd-user");
    let app = job(&status, "app");
    assert_eq!(app["installed"], "systemd-user");
    assert_eq!(app["up_to_date"], true);
    assert!(app["files"].as_array().unwrap().iter().all(|f| f["state"] == "ok"), "{app}");
    assert_eq!(app["lines"][0], "OnCalendar=Mon..Fri *-*-* 08..18:00:00 UTC");
    assert_eq!(app["jitter_secs"], 300);
    let next = chrono::DateTime::parse_from_rfc3339(app["next_run"].as_str().unwrap()).unwrap().to_utc();
    let now = chrono::Utc::now();
    assert!(next > now && next - now <= chrono::Duration::hours(24), "{next}");
    let db_next = job(&status, "db")["next_run"].as_str().unwrap().to_string();
    assert!(db_next.contains("-01T04:30:00"), "{db_next}");
    let manual = job(&status, "manual");
    assert!(manual["installed"].is_null() && manual["next_run"].is_null(), "{manual}");

    let text = stdout(&cairn.ok(&["schedule", "status", "--dir", &p.units_arg()]));
    assert!(text.contains("job app: systemd timer (user)") && text.contains("next run  "), "{text}");
    assert!(text.contains("job manual: no schedule") && text.contains("(ok)"), "{text}");
}

/// `systemd-analyze verify` accepts the units, where it is installed.
fn verify_units(dir: &Path) {
    let units: Vec<PathBuf> = names(dir).iter().filter(|n| !n.ends_with(".json")).map(|n| dir.join(n)).collect();
    match std::process::Command::new("systemd-analyze").arg("verify").args(&units).output() {
        Ok(out) => {
            assert!(out.status.success() && out.stderr.is_empty(), "systemd-analyze verify:\n{}", describe(&out))
        }
        Err(_) => eprintln!("systemd-analyze not found: units not verified"),
    }
}

#[test]
fn a_second_install_changes_nothing() {
    let p = Project::new(JOBS);
    let cairn = p.cairn();
    let install = ["schedule", "install", "--user", "--dir", &p.units_arg()];
    cairn.ok(&install);
    let before = listing(&p.units());
    let contents: Vec<Vec<u8>> = names(&p.units()).iter().map(|n| fs::read(p.units().join(n)).unwrap()).collect();
    let out = cairn.ok(&install);
    let text = stdout(&out);
    assert_eq!(text.matches("unchanged").count(), 4, "{text}");
    assert!(!text.contains("wrote"), "{text}");
    assert_eq!(listing(&p.units()), before, "nothing was rewritten, the manifest neither");
    let after: Vec<Vec<u8>> = names(&p.units()).iter().map(|n| fs::read(p.units().join(n)).unwrap()).collect();
    assert_eq!(after, contents);
}

#[test]
fn uninstall_removes_exactly_what_was_written() {
    let p = Project::new(JOBS);
    let cairn = p.cairn();
    fs::create_dir_all(p.units()).unwrap();
    // Files that were there before: another program's unit, and one that looks like ours.
    fs::write(p.units().join("other.service"), "[Service]\nExecStart=/bin/true\n").unwrap();
    fs::write(p.units().join("cairn-old.timer"), "[Timer]\nOnCalendar=daily\n").unwrap();
    cairn.ok(&["schedule", "install", "--user", "--dir", &p.units_arg()]);
    let out = cairn.ok(&["schedule", "uninstall", "--dir", &p.units_arg()]);
    assert_eq!(stdout(&out).matches("removed").count(), 4, "{}", describe(&out));
    assert_eq!(names(&p.units()), ["cairn-old.timer", "other.service"], "only the foreign files are left");
    // Nothing installed any more.
    let status = json(&cairn.ok(&["schedule", "status", "--dir", &p.units_arg(), "--json"]));
    assert!(status["installed"].is_null() && job(&status, "app")["installed"].is_null(), "{status}");
    let out = cairn.ok(&["schedule", "uninstall", "--dir", &p.units_arg()]);
    assert!(stdout(&out).contains("nothing is installed"), "{}", describe(&out));
}

#[test]
fn a_file_changed_since_install_is_kept_until_forced() {
    let p = Project::new(JOBS);
    let cairn = p.cairn();
    cairn.ok(&["schedule", "install", "--user", "--dir", &p.units_arg()]);
    let timer = p.units().join("cairn-db.timer");
    let edited = format!("{}# my own note\n", fs::read_to_string(&timer).unwrap());
    fs::write(&timer, &edited).unwrap();

    // Install refuses to overwrite it.
    let out = cairn.expect_code(1, &["schedule", "install", "--user", "--dir", &p.units_arg()]);
    assert!(stderr(&out).contains("cairn-db.timer was changed since cairn wrote it"), "{}", describe(&out));
    assert!(stderr(&out).contains("hint:") && stderr(&out).contains("--force"), "{}", describe(&out));
    assert_eq!(fs::read_to_string(&timer).unwrap(), edited);

    // Uninstall removes the rest, keeps it, and says so (exit 3: partial).
    let out = cairn.expect_code(3, &["schedule", "uninstall", "--dir", &p.units_arg()]);
    let err = stderr(&out);
    assert!(err.contains("kept") && err.contains("cairn-db.timer") && err.contains("hint:"), "{}", describe(&out));
    assert_eq!(fs::read_to_string(&timer).unwrap(), edited);
    let left: Vec<String> = names(&p.units()).into_iter().filter(|n| !n.ends_with(".json")).collect();
    assert_eq!(left, ["cairn-db.timer"]);
    let status = json(&cairn.ok(&["schedule", "status", "--dir", &p.units_arg(), "--json"]));
    assert_eq!(job(&status, "db")["files"][0]["state"], "changed", "{status}");

    cairn.ok(&["schedule", "uninstall", "--dir", &p.units_arg(), "--force"]);
    assert!(names(&p.units()).is_empty(), "{:?}", names(&p.units()));
}

#[test]
fn install_refuses_to_overwrite_a_file_it_did_not_write() {
    let p = Project::new(JOBS);
    let cairn = p.cairn();
    fs::create_dir_all(p.units()).unwrap();
    let theirs = p.units().join("cairn-app.service");
    fs::write(&theirs, "[Service]\nExecStart=/usr/bin/someone-elses\n").unwrap();
    let out = cairn.expect_code(1, &["schedule", "install", "--user", "--dir", &p.units_arg()]);
    assert!(stderr(&out).contains("was not written by `cairn schedule install`"), "{}", describe(&out));
    assert_eq!(names(&p.units()), ["cairn-app.service"], "nothing was written");
    cairn.ok(&["schedule", "install", "--user", "--dir", &p.units_arg(), "--force"]);
    assert!(fs::read_to_string(&theirs).unwrap().contains("backup app"));
}

#[test]
fn named_jobs_add_up_and_jobs_that_lose_their_schedule_go() {
    let p = Project::new(JOBS);
    let cairn = p.cairn();
    cairn.ok(&["schedule", "install", "app", "--user", "--dir", &p.units_arg()]);
    assert!(!p.units().join("cairn-db.timer").exists());
    cairn.ok(&["schedule", "install", "db", "--user", "--dir", &p.units_arg()]);
    assert!(p.units().join("cairn-app.timer").exists() && p.units().join("cairn-db.timer").exists());

    // db loses its schedule: the next install removes its units, and app's stay.
    fs::write(&p.config, fs::read_to_string(&p.config).unwrap().replace("schedule = \"30 4 1 * *\"\n", "")).unwrap();
    let out = cairn.ok(&["schedule", "install", "--user", "--dir", &p.units_arg()]);
    assert!(stdout(&out).contains("removed") && stdout(&out).contains("cairn-db.timer"), "{}", describe(&out));
    assert!(!p.units().join("cairn-db.service").exists() && p.units().join("cairn-app.service").exists());

    // Uninstalling one job leaves the other.
    let p = Project::new(JOBS);
    let cairn = p.cairn();
    cairn.ok(&["schedule", "install", "--user", "--dir", &p.units_arg()]);
    cairn.ok(&["schedule", "uninstall", "db", "--dir", &p.units_arg()]);
    assert!(!p.units().join("cairn-db.timer").exists() && p.units().join("cairn-app.timer").exists());
    let out = cairn.expect_code(1, &["schedule", "uninstall", "db", "--dir", &p.units_arg()]);
    assert!(stderr(&out).contains("job db is not installed") && stderr(&out).contains("installed jobs: app"));
}

const THEIR_CRONTAB: &str = "MAILTO=ops@example.org\n# poll the queue\n*/5 * * * * /usr/local/bin/poll\n";

#[test]
fn cron_mode_keeps_the_other_lines_of_a_crontab_file() {
    let p = Project::new(JOBS);
    let cairn = p.cairn();
    let crontab = p.root.join("crontab");
    fs::write(&crontab, THEIR_CRONTAB).unwrap();
    let file = crontab.display().to_string();
    let out = cairn.ok(&["schedule", "install", "--cron", "--user", "--crontab-file", &file]);
    assert!(stderr(&out).contains("jitter of job app is not applied"), "{}", describe(&out));
    let text = fs::read_to_string(&crontab).unwrap();
    assert!(text.starts_with(THEIR_CRONTAB), "{text}");
    let command = format!("{} --quiet --config {} backup", binary(), p.config.display());
    for line in [
        format!("0 8-18 * * 1-5 {command} app\n"),
        format!("0 2 * * * {command} app\n"),
        format!("30 4 1 * * {command} db\n"),
        "CRON_TZ=UTC\n".to_string(),
    ] {
        assert!(text.contains(&line), "{line:?} missing:\n{text}");
    }
    assert!(!text.contains("manual"), "{text}");

    // Again: nothing changes.
    let out = cairn.ok(&["schedule", "install", "--cron", "--user", "--crontab-file", &file]);
    assert!(stdout(&out).contains("unchanged block"), "{}", describe(&out));
    assert_eq!(fs::read_to_string(&crontab).unwrap(), text);

    // The user adds a line after the block; status sees the block as written.
    fs::write(&crontab, format!("{text}0 0 * * 0 /usr/local/bin/weekly\n")).unwrap();
    let status = json(&cairn.ok(&["schedule", "status", "--json"]));
    let app = job(&status, "app");
    assert_eq!(app["installed"], "cron-user");
    assert_eq!(app["files"][0]["state"], "ok", "{app}");
    assert_eq!(app["lines"][1], format!("0 2 * * * {command} app"));
    assert!(app["next_run"].is_string() && app["jitter_secs"].is_null(), "{app}");

    // Installing another way needs an uninstall first, so that no job runs twice.
    let out = cairn.expect_code(1, &["schedule", "install", "--cron", "--system", "--crontab-file", &file]);
    assert!(stderr(&out).contains("installed already as crontab (user)"), "{}", describe(&out));
    assert!(stderr(&out).contains("hint: run `cairn schedule uninstall` first"), "{}", describe(&out));

    cairn.ok(&["schedule", "uninstall"]);
    assert_eq!(fs::read_to_string(&crontab).unwrap(), format!("{THEIR_CRONTAB}0 0 * * 0 /usr/local/bin/weekly\n"));
}

#[test]
fn cron_system_writes_a_cron_d_file_with_the_user_field() {
    let p = Project::new(JOBS);
    let cairn = p.cairn();
    cairn.ok(&["schedule", "install", "db", "--cron", "--system", "--dir", &p.units_arg()]);
    let text = fs::read_to_string(p.units().join("cairn")).unwrap();
    assert!(text.contains(&format!("30 4 1 * * root {} --quiet", binary())), "{text}");
    let status = json(&cairn.ok(&["schedule", "status", "--dir", &p.units_arg(), "--json"]));
    assert_eq!(job(&status, "db")["installed"], "cron-system");
    // The file did not exist before: uninstall removes it, and the manifest.
    cairn.ok(&["schedule", "uninstall", "--dir", &p.units_arg()]);
    assert!(names(&p.units()).is_empty(), "{:?}", names(&p.units()));
}

#[test]
fn bad_input_is_refused_with_a_hint() {
    let p = Project::new(JOBS);
    let cairn = p.cairn();
    let dir = p.units_arg();
    let cases: [(&[&str], &str); 3] = [
        (&["nope"], "has no job \"nope\""),
        (&["manual"], "job manual has no schedule\nhint: add e.g. `schedule"),
        (&["app", "--crontab-file", "x"], "--cron"),
    ];
    for (extra, says) in cases {
        let mut args = vec!["schedule", "install", "--user", "--dir", &dir];
        args.extend(extra);
        let out = cairn.cmd(&args);
        assert_ne!(code(&out), 0);
        assert!(stderr(&out).contains(says), "{args:?}: {}", describe(&out));
    }
    assert!(!p.units().exists(), "nothing was written");

    for (jobs, says) in [
        (
            "[jobs.x]\nschedule = \"0 0 L * *\"\n",
            "job x: schedule \"0 0 L * *\": day of month \"L\" cannot be converted",
        ),
        ("[jobs.x]\nschedule = \"0 0 30 2 *\"\n", "never runs"),
        ("[jobs.x]\nschedule = \"0 25 * * *\"\n", "hour 25 is out of range 0-23"),
        ("[daemon]\ntimezone = \"Mars/Olympus\"\n[jobs.x]\nschedule = \"0 2 * * *\"\n", "is not an IANA zone name"),
        ("[jobs.x]\n", "has a schedule\nhint:"),
    ] {
        let p = Project::new(&format!("{jobs}[[jobs.x.sources]]\ntype = \"files\"\npath = \"data\"\n"));
        let out = p.cairn().expect_code(1, &["schedule", "install", "--user", "--dir", &p.units_arg()]);
        assert!(stderr(&out).contains(says), "{jobs}: {}", describe(&out));
        assert!(!p.units().exists(), "nothing was written");
    }
}

/// A stand-in for `systemctl` or `crontab` on `PATH`: logs its arguments, then runs `body`.
fn fake_tool(bin: &Path, name: &str, body: &str) {
    fs::create_dir_all(bin).unwrap();
    let log = bin.join(format!("{name}.log"));
    let script = format!("#!/bin/sh\necho \"$*\" >> '{}'\n{body}\n", log.display());
    fs::write(bin.join(name), script).unwrap();
    fs::set_permissions(bin.join(name), fs::Permissions::from_mode(0o755)).unwrap();
}

fn with_path(cairn: &mut Cairn, p: &Project, bin: &Path) {
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    cairn.env.push(("PATH".into(), path));
    cairn.env.push(("XDG_CONFIG_HOME".into(), p.root.join("config").display().to_string()));
    cairn.env.push(("USER".into(), "cairn-test-user".into()));
}

#[test]
fn a_real_install_enables_the_timers_through_systemctl() {
    let p = Project::new(JOBS);
    let bin = p.root.join("bin");
    fake_tool(&bin, "systemctl", "[ \"$2\" = is-active ] && echo active\nexit 0");
    let mut cairn = p.cairn();
    with_path(&mut cairn, &p, &bin);
    let out = cairn.ok(&["schedule", "install", "--user"]);
    assert!(stderr(&out).contains("loginctl enable-linger cairn-test-user"), "{}", describe(&out));
    let unit_dir = p.root.join("config/systemd/user");
    assert!(unit_dir.join("cairn-app.timer").exists() && unit_dir.join("cairn-db.service").exists());
    let log = fs::read_to_string(bin.join("systemctl.log")).unwrap();
    assert_eq!(log, "--user daemon-reload\n--user enable --now cairn-app.timer cairn-db.timer\n");

    let status = json(&cairn.ok(&["schedule", "status", "--json"]));
    assert_eq!(job(&status, "app")["timer"], "active");

    cairn.ok(&["schedule", "uninstall"]);
    let log = fs::read_to_string(bin.join("systemctl.log")).unwrap();
    assert!(log.ends_with("--user disable --now cairn-app.timer cairn-db.timer\n--user daemon-reload\n"), "{log}");
    assert!(names(&unit_dir).is_empty(), "{:?}", names(&unit_dir));
}

#[test]
fn a_failing_systemctl_is_reported_and_the_units_stay_recorded() {
    let p = Project::new(JOBS);
    let bin = p.root.join("bin");
    fake_tool(&bin, "systemctl", "echo 'Failed to connect to bus: No medium found' >&2\nexit 1");
    let mut cairn = p.cairn();
    with_path(&mut cairn, &p, &bin);
    let out = cairn.expect_code(3, &["schedule", "install", "--user"]);
    let err = stderr(&out);
    assert!(err.contains("`systemctl --user daemon-reload` failed: Failed to connect to bus"), "{}", describe(&out));
    assert!(err.contains("hint: the units are written") && err.contains("enable --now cairn-app.timer"), "{err}");
    // The manifest knows what was written, so uninstall still cleans up.
    let status = json(&cairn.ok(&["schedule", "status", "--json"]));
    assert_eq!(job(&status, "app")["installed"], "systemd-user");
    cairn.expect_code(3, &["schedule", "uninstall"]);
    assert!(names(&p.root.join("config/systemd/user")).is_empty());
}

#[test]
fn the_users_crontab_goes_through_the_crontab_command() {
    let p = Project::new(JOBS);
    let bin = p.root.join("bin");
    let table = p.root.join("spool");
    fs::write(&table, THEIR_CRONTAB).unwrap();
    let t = table.display();
    let body = format!(
        "case \"$1\" in\n-l) [ -f '{t}' ] || {{ echo 'no crontab for test' >&2; exit 1; }}; cat '{t}';;\n-) cat > '{t}';;\n-r) rm '{t}';;\nesac"
    );
    fake_tool(&bin, "crontab", &body);
    let mut cairn = p.cairn();
    with_path(&mut cairn, &p, &bin);
    cairn.ok(&["schedule", "install", "--cron", "--user"]);
    let text = fs::read_to_string(&table).unwrap();
    assert!(text.starts_with(THEIR_CRONTAB) && text.contains("backup db\n"), "{text}");
    cairn.ok(&["schedule", "uninstall"]);
    assert_eq!(fs::read_to_string(&table).unwrap(), THEIR_CRONTAB);

    // A crontab cairn created is removed again when nothing else is in it.
    fs::remove_file(&table).unwrap();
    cairn.ok(&["schedule", "install", "--cron", "--user"]);
    assert!(table.exists());
    cairn.ok(&["schedule", "uninstall"]);
    assert!(!table.exists());
    let log = fs::read_to_string(bin.join("crontab.log")).unwrap();
    assert!(log.ends_with("-l\n-r\n"), "{log}");
}
