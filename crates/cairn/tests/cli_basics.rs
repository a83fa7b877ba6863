//! The everyday CLI contract, end to end with the real binary: init, backup, snapshots, ls,
//! restore (full and with --include), incremental backups, excludes, tags, --time, skipped
//! special files, and key slots.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use serde_json::Value;

fn stat(v: &Value, field: &str) -> u64 {
    v["stats"][field].as_u64().unwrap_or_else(|| panic!("no stats.{field} in {v:#}"))
}

/// Paths listed by `ls SNAPSHOT --json`.
fn ls_paths(cairn: &Cairn, snapshot: &str) -> BTreeSet<String> {
    let list = json(&cairn.ok(&["ls", snapshot, "--json"]));
    list.as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap().to_string()).collect()
}

#[test]
fn backup_and_restore_round_trip_keeps_everything() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    let sample = build_sample_tree(&src, 1);
    let cairn = Cairn::new(tmp.path().join("repo"));
    cairn.init();

    // First backup: every file is new (the second name of the hard link reuses the first's data).
    let first = cairn.backup_json(&[&src], &[]);
    assert_eq!(stat(&first, "errors"), 0, "{first:#}");
    assert_eq!(stat(&first, "files_changed"), 0, "{first:#}");
    assert_eq!(stat(&first, "files_new") + stat(&first, "files_unchanged"), sample.files as u64, "{first:#}");
    assert!(stat(&first, "files_new") >= sample.files as u64 - 1, "{first:#}");
    assert_eq!(stat(&first, "dirs"), 5, "src, empty_dir, sub, sub/deeper, sub/deeper/deepest: {first:#}");
    assert!(first["parent"].is_null());
    let first_id = first["snapshot"].as_str().unwrap().to_string();
    assert_eq!(first_id.len(), 64);

    // snapshots --json: one entry, with its id and the absolute path backed up.
    let snaps = cairn.snapshots();
    assert_eq!(snaps.len(), 1, "{snaps:#?}");
    assert_eq!(snaps[0]["id"], first_id.as_str());
    assert_eq!(snaps[0]["short_id"], &first_id[..8]);
    assert!(src.is_absolute());
    assert_eq!(snaps[0]["paths"], serde_json::json!([src.to_str().unwrap()]));
    assert_eq!(snaps[0]["sources"][0]["status"], "ok");
    // The human listing names it too.
    let text = stdout(&cairn.ok(&["snapshots"]));
    assert!(text.contains(&first_id[..8]) && text.contains("1 snapshot(s)"), "{text}");

    // ls: every entry, with symlink targets; --json with types and modes; a path filter.
    let text = stdout(&cairn.ok(&["ls", "latest"]));
    for needle in [
        "/src/sub/deeper/deepest/leaf.txt",
        "/src/empty_dir",
        "/src/link_rel -> sub/a.txt",
        "/src/link_dangling -> does/not/exist",
        &format!("/src/link_abs -> {}", src.join("random.bin").display()),
    ] {
        assert!(text.contains(needle), "ls lacks {needle:?}:\n{text}");
    }
    let list = json(&cairn.ok(&["ls", &first_id[..8], "--json"]));
    let entries = list.as_array().unwrap();
    let mut all = Vec::new();
    collect_paths(&src, &mut all);
    assert_eq!(entries.len(), all.len() + 1, "one entry per path plus /src itself: {list:#}");
    let find = |p: &str| entries.iter().find(|e| e["path"] == p).unwrap_or_else(|| panic!("{p} not listed"));
    assert_eq!(find("/src/setuid")["mode"], "4755");
    assert_eq!(find("/src/private.txt")["mode"], "600");
    assert_eq!(find("/src/empty_dir")["type"], "dir");
    assert_eq!(find("/src/random.bin")["size"], 3 << 20);
    assert_eq!(find("/src/link_rel")["type"], "symlink");
    assert!(entries.iter().any(|e| e["path"].as_str().unwrap().starts_with("/src/caf")), "non-UTF-8 name listed");
    let sub: Vec<_> = json(&cairn.ok(&["ls", "latest", "/src/sub/deeper", "--json"]))
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        sub,
        ["/src/sub/deeper", "/src/sub/deeper/deepest", "/src/sub/deeper/deepest/leaf.txt", "/src/sub/deeper/link_up"]
    );

    // Restore: the tree comes back identical under OUT/src, and nothing else appears.
    let out = tmp.path().join("out");
    cairn.restore("latest", &out);
    assert_same_tree(&src, &out.join("src"));
    assert_eq!(fs::read_dir(&out).unwrap().count(), 1);

    // Backing up the unchanged tree again reads nothing and reuses every file.
    let second = cairn.backup_json(&[&src], &[]);
    assert_eq!(stat(&second, "files_unchanged"), sample.files as u64, "{second:#}");
    assert_eq!(stat(&second, "files_new"), 0, "{second:#}");
    assert_eq!(stat(&second, "files_changed"), 0, "{second:#}");
    assert_eq!(stat(&second, "bytes_read"), 0, "{second:#}");
    assert_eq!(second["parent"], first_id.as_str(), "the first snapshot is the parent");

    // One modified file is the only one read.
    let a = src.join("sub/a.txt");
    let (old_perm, old_mtime) =
        (fs::metadata(&a).unwrap().permissions(), fs::metadata(&a).unwrap().modified().unwrap());
    fs::write(&a, b"alpha, changed\n").unwrap();
    fs::set_permissions(&a, old_perm).unwrap();
    let third = cairn.backup_json(&[&src], &[]);
    assert_eq!(stat(&third, "files_changed"), 1, "{third:#}");
    assert_eq!(stat(&third, "files_unchanged"), sample.files as u64 - 1, "{third:#}");
    assert_eq!(stat(&third, "files_new"), 0, "{third:#}");
    assert_eq!(stat(&third, "bytes_read"), 15, "{third:#}");
    assert!(fs::metadata(&a).unwrap().modified().unwrap() != old_mtime);
    assert_eq!(cairn.snapshots().len(), 3);

    let out3 = tmp.path().join("out3");
    cairn.restore("latest", &out3);
    assert_same_tree(&src, &out3.join("src"));
    // The first snapshot still holds the old version: it restores like the first restore.
    let out1 = tmp.path().join("out1");
    cairn.restore(&first_id[..10], &out1);
    assert_eq!(fs::read(out1.join("src/sub/a.txt")).unwrap(), b"alpha\n");
    assert_same_tree(&out.join("src"), &out1.join("src"));

    // Same size and mtime, new content: the changed ctime still gives it away.
    let b = src.join("sub/b.txt");
    let mtime = filetime::FileTime::from_last_modification_time(&fs::metadata(&b).unwrap());
    fs::write(&b, b"BRAVO\n").unwrap();
    filetime::set_file_mtime(&b, mtime).unwrap();
    let fourth = cairn.backup_json(&[&src], &[]);
    assert_eq!(stat(&fourth, "files_changed"), 1, "{fourth:#}");
    assert_eq!(stat(&fourth, "bytes_read"), 6, "{fourth:#}");
    let out4 = tmp.path().join("out4");
    cairn.restore("latest", &out4);
    assert_same_tree(&src, &out4.join("src"));

    cairn.ok(&["check", "--read-data"]);
}

#[test]
fn quiet_hosts_and_no_compression() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    write(&src.join("text.txt"), &compressible(9, 1 << 20));
    let cairn = Cairn::new(tmp.path().join("repo"));
    cairn.init();
    let out = cairn.ok(&["-q".as_ref(), "backup".as_ref(), "--host".as_ref(), "box-a".as_ref(), src.as_os_str()]);
    assert!(out.stdout.is_empty(), "{}", describe(&out));
    let raw = cairn.backup_json(&[&src], &["--host", "box-b", "--compression", "0", "--force"]);
    // Deduplicated against the first snapshot, so nothing new either way...
    assert_eq!(stat(&raw, "blobs_added"), 0, "{raw:#}");
    // ...but in a fresh repository, level 0 stores the data as is.
    let plain = Cairn::new(tmp.path().join("repo-plain"));
    plain.init();
    let stored = plain.backup_json(&[&src], &["--compression", "0"]);
    assert!(stat(&stored, "bytes_added") > 1 << 20, "{stored:#}");
    let squeezed = cairn.snapshots()[0]["sources"][0]["stats"]["bytes_added"].as_u64().unwrap();
    assert!(squeezed < 1 << 18, "level 3 compresses text: {squeezed}");
    let restored = tmp.path().join("out");
    plain.restore("latest", &restored);
    assert_same_tree(&src, &restored.join("src"));

    let hosts = |h: &str| json(&cairn.ok(&["snapshots", "--json", "--host", h])).as_array().unwrap().len();
    assert_eq!((hosts("box-a"), hosts("box-b"), hosts("box-c")), (1, 1, 0));
    // A backup from box-b finds box-b's snapshot as its parent, not box-a's.
    let again = cairn.backup_json(&[&src], &["--host", "box-b"]);
    assert_eq!(again["parent"], raw["snapshot"]);
}

#[test]
fn several_paths_become_top_level_entries() {
    let tmp = tempdir();
    let one = tmp.path().join("one");
    let two = tmp.path().join("nested/two");
    write(&one.join("x.txt"), b"x");
    write(&two.join("y.txt"), b"y");
    let single = tmp.path().join("single-file.dat");
    write(&single, b"just a file");
    set_mode(&single, 0o640);
    set_mtime(&single, 1_234_567_890, 123_456_789);
    let cairn = Cairn::new(tmp.path().join("repo"));
    cairn.init();
    cairn.backup_json(&[&one, &two, &single], &[]);
    let out = tmp.path().join("out");
    cairn.restore("latest", &out);
    let names: BTreeSet<_> = fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["one", "single-file.dat", "two"].into_iter().map(Into::into).collect());
    assert_same_tree(&one, &out.join("one"));
    assert_same_tree(&two, &out.join("two"));
    assert_same_tree(&single, &out.join("single-file.dat"));
}

/// `backup --json ARGS…` run in `cwd`.
fn backup_in(cairn: &Cairn, cwd: &Path, args: &[&str]) -> Value {
    let mut all = vec!["backup", "--json"];
    all.extend(args);
    let out = cairn.command(&all).current_dir(cwd).output().unwrap();
    cairn.assert_no_secrets(&all, &out);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    json(&out)
}

#[test]
fn the_same_directory_named_differently_still_finds_its_parent() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    write(&src.join("sub/f.bin"), &Rng::new(3).bytes(100_000));
    let cairn = Cairn::new(tmp.path().join("repo"));
    cairn.init();
    let first = cairn.backup_json(&[&src], &[]);
    for (cwd, arg) in [(tmp.path(), "src"), (tmp.path(), "./src"), (src.as_path(), ".")] {
        let again = backup_in(&cairn, cwd, &[arg]);
        assert_eq!(stat(&again, "bytes_read"), 0, "{arg:?} in {}: {again:#}", cwd.display());
        assert_eq!(stat(&again, "files_unchanged"), 1, "{arg:?}: {again:#}");
        assert!(again["parent"].is_string(), "{arg:?}: {again:#}");
    }
    let paths: BTreeSet<_> = cairn.snapshots().iter().map(|s| s["paths"].to_string()).collect();
    assert_eq!(paths.len(), 1, "one set of paths: {paths:?}");
    assert_eq!(ls_paths(&cairn, "latest"), ls_paths(&cairn, first["snapshot"].as_str().unwrap()));
}

#[test]
fn a_trailing_slash_or_dotdot_still_finds_the_parent() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    write(&src.join("sub/f.bin"), &Rng::new(3).bytes(100_000));
    fs::create_dir(tmp.path().join("a")).unwrap();
    let cairn = Cairn::new(tmp.path().join("repo"));
    cairn.init();
    cairn.backup_json(&[&src], &[]);
    for arg in ["src/", "a/../src"] {
        let again = backup_in(&cairn, tmp.path(), &[arg]);
        assert_eq!(stat(&again, "bytes_read"), 0, "{arg:?}: {again:#}");
        assert!(again["parent"].is_string(), "{arg:?}: {again:#}");
    }
}

#[test]
fn excludes_from_the_command_line_and_from_a_file() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    for (path, data) in [
        ("keep.txt", "keep"),
        ("app.log", "log"),
        ("sub/deep.log", "log"),
        ("sub/keep.md", "keep"),
        (".git/config", "git"),
        ("sub/.git/HEAD", "git"),
        ("cache/blob", "cache"),
        ("sub/cache/blob", "cache"),
        ("old.bak", "bak"),
        ("sub/logbook.txt", "keep: not *.log"),
    ] {
        write(&src.join(path), data.as_bytes());
    }
    let exclude_file = tmp.path().join("excludes");
    write(&exclude_file, b"# a comment line\n\ncache/\n*.bak\n");
    let cairn = Cairn::new(tmp.path().join("repo"));
    cairn.init();
    let args = ["--exclude", "*.log", "-e", ".git", "--exclude-file", exclude_file.to_str().unwrap()];
    cairn.backup_json(&[&src], &args);
    let expected: BTreeSet<String> =
        ["/src", "/src/keep.txt", "/src/sub", "/src/sub/keep.md", "/src/sub/logbook.txt"].map(String::from).into();
    assert_eq!(ls_paths(&cairn, "latest"), expected);

    // Restored, the excluded entries are simply absent.
    let out = tmp.path().join("out");
    cairn.restore("latest", &out);
    assert_eq!(fs::read(out.join("src/sub/logbook.txt")).unwrap(), b"keep: not *.log");
    assert!(!out.join("src/.git").exists() && !out.join("src/cache").exists() && !out.join("src/app.log").exists());

    // Without excludes everything is there.
    cairn.backup_json(&[&src], &[]);
    assert_eq!(ls_paths(&cairn, "latest").len(), 16);
}

#[test]
fn tags_and_snapshot_time() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    write(&src.join("f"), b"data");
    let mut cairn = Cairn::new(tmp.path().join("repo"));
    // Local time is what `--time 'YYYY-MM-DD HH:MM:SS'` means; pin it.
    cairn.env.push(("TZ".into(), "UTC".into()));
    cairn.init();
    let tagged = cairn.backup_json(&[&src], &["--tag", "daily", "--tag", "important"]);
    let dated = cairn.backup_json(&[&src], &["--tag", "weekly", "--time", "2020-01-02 03:04:05"]);
    let offset = cairn.backup_json(&[&src], &["--time", "2021-06-07T08:09:10+05:30"]);

    let snaps = cairn.snapshots();
    assert_eq!(snaps.len(), 3);
    let by_id = |v: &Value| snaps.iter().find(|s| s["id"] == v["snapshot"]).unwrap().clone();
    assert_eq!(by_id(&tagged)["tags"], serde_json::json!(["daily", "important"]));
    let dated_snap = by_id(&dated);
    assert_eq!(dated_snap["tags"], serde_json::json!(["weekly"]));
    let t = chrono::DateTime::parse_from_rfc3339(dated_snap["time"].as_str().unwrap()).unwrap();
    assert_eq!(t.timestamp(), 1_577_934_245, "2020-01-02 03:04:05 UTC, got {t}");
    let t = chrono::DateTime::parse_from_rfc3339(by_id(&offset)["time"].as_str().unwrap()).unwrap();
    assert_eq!(t.timestamp(), 1_623_033_550, "2021-06-07T08:09:10+05:30, got {t}");
    // Snapshots are listed oldest first by their time, whatever the order they were made in.
    assert_eq!(snaps[0]["id"], dated["snapshot"]);
    assert_eq!(snaps[1]["id"], offset["snapshot"]);
    assert_eq!(snaps[2]["id"], tagged["snapshot"]);

    // Filtering by tag: every given tag must match.
    let filter = |tags: &[&str]| -> Vec<Value> {
        let mut args = vec!["snapshots", "--json"];
        for t in tags {
            args.extend(["--tag", t]);
        }
        json(&cairn.ok(&args)).as_array().unwrap().clone()
    };
    assert_eq!(filter(&["daily"]).len(), 1);
    assert_eq!(filter(&["daily", "important"]).len(), 1);
    assert_eq!(filter(&["daily", "weekly"]).len(), 0);
    assert_eq!(filter(&["weekly"])[0]["id"], dated["snapshot"]);
    let text = stdout(&cairn.ok(&["snapshots"]));
    assert!(text.contains("daily,important") && text.contains("2020-01-02 03:04:05"), "{text}");
}

#[test]
fn restore_include_restores_only_matches_and_their_parents() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    build_sample_tree(&src, 2);
    write(&src.join("sub/deeper/nested.txt"), b"one level too deep for sub/*.txt");
    set_mtime(&src.join("sub/deeper"), 1_555_555_555, 5);
    set_mtime(&src.join("sub"), 1_444_444_444, 4);
    let cairn = Cairn::new(tmp.path().join("repo"));
    cairn.init();
    cairn.backup_json(&[&src], &[]);

    // Patterns are relative to the restore root, whose entries are the backed-up paths' names.
    let out = tmp.path().join("out");
    cairn.ok(&[
        "restore".as_ref(),
        "latest".as_ref(),
        "--to".as_ref(),
        out.as_os_str(),
        "--include".as_ref(),
        "src/sub/*.txt".as_ref(),
    ]);
    let mut got = Vec::new();
    collect_paths(&out, &mut got);
    let got: BTreeSet<_> = got.iter().map(|p| p.strip_prefix(&out).unwrap().to_path_buf()).collect();
    let want: BTreeSet<_> = ["src", "src/sub", "src/sub/a.txt", "src/sub/b.txt"].iter().map(Into::into).collect();
    assert_eq!(got, want);
    for f in ["sub/a.txt", "sub/b.txt"] {
        assert_same_tree(&src.join(f), &out.join("src").join(f));
    }
    // Parent directories get their metadata too.
    assert_eq!(
        fs::metadata(out.join("src/sub")).unwrap().modified().unwrap(),
        fs::metadata(src.join("sub")).unwrap().modified().unwrap()
    );

    // A pattern matching a directory restores all of it.
    let out2 = tmp.path().join("out2");
    cairn.ok(&[
        "restore".as_ref(),
        "latest".as_ref(),
        "--to".as_ref(),
        out2.as_os_str(),
        "-i".as_ref(),
        "src/sub/deeper".as_ref(),
        "-i".as_ref(),
        "*.md".as_ref(),
    ]);
    assert_same_tree(&src.join("sub/deeper"), &out2.join("src/sub/deeper"));
    assert_same_tree(&src.join("sub/notes.md"), &out2.join("src/sub/notes.md"));
    assert!(!out2.join("src/sub/a.txt").exists());
    assert!(!out2.join("src/random.bin").exists());
}

#[test]
fn fifos_and_sockets_are_skipped_with_a_warning() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    write(&src.join("regular.txt"), b"regular");
    let fifo = src.join("a-fifo");
    let status = std::process::Command::new("mkfifo").arg(&fifo).status().expect("running mkfifo");
    assert!(status.success());
    let socket = src.join("sub/a-socket");
    fs::create_dir_all(socket.parent().unwrap()).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let cairn = Cairn::new(tmp.path().join("repo"));
    cairn.init();

    // Exit 0 (skipping them is not an error), and a warning naming each on stderr.
    let out = cairn.ok(&["backup".as_ref(), src.as_os_str()]);
    let err = stderr(&out);
    assert!(err.lines().any(|l| l.starts_with("warning:") && l.contains("a-fifo") && l.contains("FIFO")), "{err}");
    assert!(err.lines().any(|l| l.starts_with("warning:") && l.contains("a-socket") && l.contains("socket")), "{err}");
    let snaps = cairn.snapshots();
    assert_eq!(snaps[0]["sources"][0]["status"], "ok");
    assert_eq!(snaps[0]["sources"][0]["warnings"].as_array().unwrap().len(), 2, "{:#}", snaps[0]);

    let restored = tmp.path().join("out");
    cairn.restore("latest", &restored);
    let expected: BTreeSet<_> = ["src", "src/regular.txt", "src/sub"].iter().map(Into::into).collect();
    let mut got = Vec::new();
    collect_paths(&restored, &mut got);
    let got: BTreeSet<_> = got.iter().map(|p| p.strip_prefix(&restored).unwrap().to_path_buf()).collect();
    assert_eq!(got, expected);

    // The JSON summary mode also exits 0 and keeps the warnings in the snapshot.
    let summary = cairn.backup_json(&[&src], &[]);
    assert_eq!(stat(&summary, "errors"), 0);
    let latest = cairn.snapshots().into_iter().find(|s| s["id"] == summary["snapshot"]).unwrap();
    assert_eq!(latest["sources"][0]["warnings"].as_array().unwrap().len(), 2, "{latest:#}");
}

/// `key list --json` as (id, kind, label).
fn key_slots(cairn: &Cairn) -> Vec<(String, String, String)> {
    let list = json(&cairn.ok(&["key", "list", "--json"]));
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["kind"].as_str().unwrap().to_string(),
                s["label"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn key_slots_add_list_use_and_remove() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    write(&src.join("f"), b"data");
    let mut cairn = Cairn::new(tmp.path().join("repo"));
    let new_password = "n3w-pAsSwOrD-for-slot-2";
    cairn.secrets.push(new_password.into());
    cairn.init();
    cairn.backup_json(&[&src], &[]);

    let slots = key_slots(&cairn);
    assert_eq!(slots.len(), 1, "{slots:?}");
    assert_eq!((slots[0].1.as_str(), slots[0].2.as_str()), ("password", "initial key"));
    assert_eq!(slots[0].0.len(), 64);
    let initial = slots[0].0.clone();

    // The last slot can never be removed, and trying changes nothing.
    let out = cairn.expect_code(1, &["key", "remove", &initial[..8]]);
    assert!(stderr(&out).contains("last key slot"), "{}", describe(&out));
    assert_eq!(key_slots(&cairn).len(), 1);

    // A second password, from $CAIRN_NEW_PASSWORD; both open the repository.
    let mut adder = cairn.clone();
    adder.env.push(("CAIRN_NEW_PASSWORD".into(), new_password.into()));
    adder.ok(&["key", "add", "--label", "second password"]);
    let with_new = cairn.with_password(Some(new_password));
    assert_eq!(with_new.snapshots().len(), 1);
    assert_eq!(cairn.snapshots().len(), 1);

    // A key file, created by `key add` (owner-only), then used with no password at all.
    let key_file = tmp.path().join("cairn.key");
    cairn.ok(&["key".as_ref(), "add".as_ref(), "--new-key-file".as_ref(), key_file.as_os_str()]);
    let mode = fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a new key file is readable by its owner only");
    let key_text = fs::read_to_string(&key_file).unwrap();
    assert_eq!(key_text.trim().len(), 64, "{key_text:?}");
    let mut by_key = cairn.with_password(None);
    by_key.secrets.push(key_text.trim().to_string());
    let snaps =
        json(&by_key.ok(&["--key-file".as_ref(), key_file.as_os_str(), "snapshots".as_ref(), "--json".as_ref()]));
    assert_eq!(snaps.as_array().unwrap().len(), 1);
    let out = tmp.path().join("out");
    by_key.ok(&[
        "--key-file".as_ref(),
        key_file.as_os_str(),
        "restore".as_ref(),
        "latest".as_ref(),
        "--to".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(fs::read(out.join("src/f")).unwrap(), b"data");
    // Another key file does not unlock it.
    let other_key = tmp.path().join("other.key");
    write(&other_key, b"0123456789abcdef0123456789abcdef");
    by_key.expect_code(11, &["--key-file".as_ref(), other_key.as_os_str(), "snapshots".as_ref()]);

    // A password from --new-password-file.
    let pw_file = tmp.path().join("third-password");
    write(&pw_file, b"third-pAsSwOrD-xyz\nignored second line\n");
    cairn.ok(&["key".as_ref(), "add".as_ref(), "--new-password-file".as_ref(), pw_file.as_os_str()]);
    cairn.with_password(Some("third-pAsSwOrD-xyz")).ok(&["snapshots"]);

    let slots = key_slots(&cairn);
    assert_eq!(slots.len(), 4, "{slots:?}");
    let kinds: Vec<_> = slots.iter().map(|s| s.1.as_str()).collect::<BTreeSet<_>>().into_iter().collect();
    assert_eq!(kinds, ["keyfile", "password"]);
    let second = slots.iter().find(|s| s.2 == "second password").expect("labelled slot listed").0.clone();
    let text = stdout(&cairn.ok(&["key", "list"]));
    assert!(text.contains(&second[..8]) && text.contains("keyfile") && text.contains("second password"), "{text}");

    // Removing a slot locks out its password and nothing else.
    cairn.ok(&["key", "remove", &second[..12]]);
    with_new.expect_code(11, &["snapshots"]);
    cairn.ok(&["snapshots"]);
    by_key.ok(&["--key-file".as_ref(), key_file.as_os_str(), "snapshots".as_ref()]);
    assert_eq!(key_slots(&cairn).len(), 3);
    // An unknown slot id is an error, and so is a prefix of several.
    cairn.expect_code(1, &["key", "remove", "ffffffffffff"]);
    cairn.expect_code(1, &["key", "remove", ""]);
    assert_eq!(key_slots(&cairn).len(), 3);
    cairn.ok(&["check"]);
    assert!(Path::new(&key_file).exists());
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    build_sample_tree(&src, 2);
    let cairn = Cairn::new(tmp.path().join("repo"));
    cairn.init();
    cairn.backup_json(&[&src], &[]);
    // `cairn ... | head -0`: the reader is gone before the first line is written.
    for args in [&["snapshots"][..], &["ls", "latest"], &["show", "latest"], &["snapshots", "--json"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = cairn.command(args).stdout(writer).output().unwrap();
        assert_eq!(code(&out), 0, "{args:?}: {}", describe(&out));
        assert!(stderr(&out).is_empty(), "{args:?} said something on stderr: {}", describe(&out));
    }
    // A closed pipe never hides an outcome: a check that finds damage still fails.
    for dir in fs::read_dir(tmp.path().join("repo/packs")).unwrap() {
        for pack in fs::read_dir(dir.unwrap().path()).unwrap() {
            let path = pack.unwrap().path();
            let mut bytes = fs::read(&path).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x55;
            fs::write(&path, bytes).unwrap();
        }
    }
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = cairn.command(&["check", "--read-data"]).stdout(writer).output().unwrap();
    assert_eq!(code(&out), 1, "{}", describe(&out));
}

#[test]
fn diff_shows_what_changed_between_two_snapshots() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    build_sample_tree(&src, 3);
    let cairn = Cairn::new(tmp.path().join("repo"));
    cairn.init();
    let first = cairn.backup_json(&[&src], &[])["snapshot"].as_str().unwrap().to_string();
    write(&src.join("sub/a.txt"), b"alpha, changed\n");
    set_mode(&src.join("script.sh"), 0o700);
    write(&src.join("sub/new.txt"), b"new\n");
    fs::remove_file(src.join("sub/b.txt")).unwrap();
    fs::remove_file(src.join("private.txt")).unwrap();
    fs::create_dir(src.join("private.txt")).unwrap();
    fs::remove_dir_all(src.join("sub/deeper")).unwrap();
    let second = cairn.backup_json(&[&src], &[])["snapshot"].as_str().unwrap().to_string();

    let text = stdout(&cairn.ok(&["diff", &first, "latest"]));
    let lines: Vec<&str> = text.lines().collect();
    for expected in [
        "M  /src/sub/a.txt",
        "U  /src/script.sh",
        "+  /src/sub/new.txt",
        "-  /src/sub/b.txt",
        "T  /src/private.txt",
        "-  /src/sub/deeper",
        "-  /src/sub/deeper/deepest/leaf.txt",
    ] {
        assert!(lines.contains(&expected), "no line {expected:?} in:\n{text}");
    }
    // Directories whose entries changed are not reported themselves, and nothing else is.
    assert!(!text.contains("/src/sub\n") && !text.contains("random.bin"), "{text}");
    assert!(text.contains("1 added, 5 removed, 1 modified, 1 changed type, 1 metadata only"), "{text}");

    let json = json(&cairn.ok(&["diff", &first, &second, "--json"]));
    assert_eq!(json["summary"]["added"], 1, "{json:#}");
    assert_eq!(json["summary"]["removed"], 5, "{json:#}");
    let a = json["changes"].as_array().unwrap().iter().find(|c| c["path"] == "/src/sub/a.txt").unwrap();
    assert_eq!(a["change"], "modified");
    assert_eq!(a["type"], "file");
    assert_eq!(a["source"], "files");
    assert_eq!(a["size_before"], 6);
    assert_eq!(a["size_after"], 15);

    assert!(stdout(&cairn.ok(&["diff", &second, &second])).contains("no changes"));
    let out = cairn.expect_code(1, &["diff", &first, &second, "--source", "nope"]);
    assert!(stderr(&out).contains("source named \"nope\"") && stderr(&out).contains("hint:"), "{}", describe(&out));
}
