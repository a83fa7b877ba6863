//! `cairn daemon` (run the jobs on their schedules and triggers) and `cairn run-now JOB`
//! (ask the running daemon to start a job). The loop itself is `crate::daemon`.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};

use crate::cli::{DaemonArgs, Global, RunNowArgs};
use crate::config::{self, Config};
use crate::daemon::control::{self, Request};
use crate::daemon::{log, Daemon, Event, LogSink, Threads};
use crate::schedule::SystemClock;
use crate::{env, settings};

pub fn run(global: &Global, args: &DaemonArgs) -> Result<()> {
    let path = config::locate(global.config.as_deref())?.ok_or_else(|| {
        anyhow!("the daemon runs the jobs of a config file, and none was found\nhint: pass --config FILE or create cairn.toml")
    })?;
    let config = config::load(&path)?;
    crate::logging::init(Some(&config), false)?;
    let state_dir = state_dir(args.state_dir.as_deref(), Some(&config));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&state_dir)
        .with_context(|| format!("creating the state directory {}", state_dir.display()))?;
    let socket = state_dir.join(control::SOCKET);
    let listener = control::bind(&socket)?;
    let _socket = RemoveOnDrop(socket.clone());
    let (tx, rx) = crossbeam_channel::unbounded();
    forward_signals(tx.clone())?;
    let sinks: Vec<Arc<dyn crate::daemon::seams::RunSink>> = vec![
        Arc::new(LogSink),
        Arc::new(crate::runs::HistorySink::open(&state_dir)),
        Arc::new(crate::runs::NotifySink::new(global.clone(), true)),
    ];
    // The stale alarm looks once a minute (every second under the test-only fast cron).
    let every = std::time::Duration::from_secs(if env::get(env::CRON_SECONDS).is_some() { 1 } else { 60 });
    crate::runs::watch_staleness(global.clone(), state_dir.clone(), every);
    let runner =
        Threads { global: global.clone(), sinks, pruner: Arc::new(crate::runs::RepoPruner { global: global.clone() }) };
    let daemon = Daemon::new(SystemClock, runner, config, state_dir, tx, env::get(env::CRON_SECONDS))?;
    log(&format!("control socket {}", socket.display()));
    daemon.run(Some(listener), rx)
}

pub fn run_now(global: &Global, args: &RunNowArgs) -> Result<()> {
    let config = if args.state_dir.is_some() { None } else { settings::config(global)? };
    let dir = state_dir(args.state_dir.as_deref(), config.as_ref());
    let reply = control::ask(&dir.join(control::SOCKET), &Request::RunNow { job: args.job.clone() })?;
    if !reply.status.accepted() {
        bail!("{}", reply.message);
    }
    if !global.quiet {
        outln!("{}", reply.message)?;
    }
    Ok(())
}

/// `--state-dir` (or `$CAIRN_STATE_DIR`), else `[daemon] state_dir`, else `/var/lib/cairn`
/// for root, `$XDG_STATE_HOME/cairn` or `~/.local/state/cairn` for others.
pub fn state_dir(flag: Option<&Path>, config: Option<&Config>) -> PathBuf {
    if let Some(dir) = flag {
        return dir.to_path_buf();
    }
    let configured = config.and_then(|c| c.file.daemon.as_ref()?.state_dir.as_ref().map(|d| c.path(&d.0)));
    if let Some(dir) = configured {
        return dir;
    }
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    match (root, env::get("XDG_STATE_HOME"), env::get("HOME")) {
        (false, Some(xdg), _) => PathBuf::from(xdg).join("cairn"),
        (false, None, Some(home)) => PathBuf::from(home).join(".local/state/cairn"),
        _ => PathBuf::from("/var/lib/cairn"),
    }
}

/// SIGTERM and SIGINT stop the daemon, SIGHUP reloads its config.
fn forward_signals(events: crossbeam_channel::Sender<Event>) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        for signal in signals.forever() {
            let event = if signal == SIGHUP { Event::Reload } else { Event::Stop };
            if events.send(event).is_err() {
                break;
            }
        }
    })?;
    Ok(())
}

/// Removes the control socket when the daemon ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
