//! Where other parts plug into the daemon: what happens around a run, and prune.
//!
//! **Seams for work in progress.** Run history (a small local database) and notifications
//! (ntfy, webhooks, e-mail, health checks) are each a [`RunSink`]; the daemon calls every
//! sink it was given, in order. Prune on `[daemon] prune_schedule` is a [`Pruner`]
//! (`runs::RepoPruner`). The default sink here only logs.

use crate::jobs::JobResult;
use crate::schedule::Trigger;

use super::log;

/// Hears about every job run of the daemon. Called from the run's own thread; must not
/// block for long (a slow notifier should hand work to its own thread).
pub trait RunSink: Send + Sync {
    /// A run of `job` starts.
    fn started(&self, job: &str, trigger: &Trigger);
    /// A run of `job` ended; one result per repository (see `jobs::run_job`).
    fn finished(&self, job: &str, trigger: &Trigger, results: &[JobResult]);
}

/// The default sink: one log line per start and per repository result.
pub struct LogSink;

impl RunSink for LogSink {
    fn started(&self, job: &str, trigger: &Trigger) {
        log(&format!("job {job}: started ({})", describe(trigger)));
    }

    fn finished(&self, job: &str, trigger: &Trigger, results: &[JobResult]) {
        for r in results {
            let what = match &r.snapshot {
                Some(id) => format!("snapshot {} saved to {}", &id[..8.min(id.len())], r.repository),
                None => format!("nothing saved to {}", r.repository),
            };
            let error = r.error.as_deref().map(|e| format!(": {}", e.replace('\n', " "))).unwrap_or_default();
            log(&format!(
                "job {job}: {} ({} run) in {:.1}s, {what}{error}",
                r.outcome.name(),
                trigger.name(),
                r.duration_secs
            ));
        }
    }
}

fn describe(trigger: &Trigger) -> String {
    match trigger {
        Trigger::Schedule { slot } => format!("schedule, slot {} UTC", slot.format("%Y-%m-%d %H:%M:%S")),
        Trigger::CatchUp { missed } => {
            format!("catching up the missed run of {} UTC", missed.format("%Y-%m-%d %H:%M:%S"))
        }
        Trigger::Watch => "watched paths changed".into(),
        Trigger::RunNow => "run-now".into(),
    }
}

/// Runs repository maintenance on `[daemon] prune_schedule`.
pub trait Pruner: Send + Sync {
    /// Prune every repository of the config; returns a line for the log.
    fn prune(&self, config: &crate::config::Config) -> anyhow::Result<String>;
}
