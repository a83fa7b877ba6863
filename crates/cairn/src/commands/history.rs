//! `cairn history`: past runs of jobs, from the local run history (see `history.rs`).

use anyhow::{anyhow, Result};
use chrono::{DateTime, Local, TimeDelta, Utc};

use crate::cli::{Global, HistoryArgs, OutcomeArg};
use crate::config::parse_interval;
use crate::history::{self, History, Run, RunFilter, RunOutcome};
use crate::output;
use crate::settings;

/// Characters of a run's error shown in the table (`--json` has all of it).
const ERROR_EXCERPT: usize = 60;

pub fn run(global: &Global, args: &HistoryArgs) -> Result<()> {
    // The config file only says where the state directory is.
    let config = settings::config(global)?;
    let dir = history::state_dir(config.as_ref());
    let filter = RunFilter {
        job: args.job.clone(),
        since: args.since.as_deref().map(|s| parse_since(s, Utc::now())).transpose()?,
        outcome: args.outcome.map(outcome),
        limit: args.limit,
    };
    let mut runs = match History::open_existing(&dir)? {
        Some(history) => history.runs(&filter)?,
        None => Vec::new(),
    };
    // Oldest first, so the newest run is the last line on a terminal.
    runs.reverse();
    if args.json {
        return super::print_json(&runs);
    }
    if runs.is_empty() {
        if !global.quiet {
            eprintln!("no runs recorded (history: {})", dir.join(history::FILE_NAME).display());
        }
        return Ok(());
    }
    print_table(&runs)?;
    Ok(())
}

fn outcome(arg: OutcomeArg) -> RunOutcome {
    match arg {
        OutcomeArg::Success => RunOutcome::Success,
        OutcomeArg::Partial => RunOutcome::Partial,
        OutcomeArg::Failed => RunOutcome::Failed,
        OutcomeArg::Interrupted => RunOutcome::Interrupted,
        OutcomeArg::Running => RunOutcome::Running,
    }
}

/// `--since`: an age (`12h`, `7d`: that long before `now`) or a time (as `backup --time`).
fn parse_since(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    if let Some(age) = parse_interval(text).and_then(|d| TimeDelta::from_std(d).ok()) {
        return Ok(now - age);
    }
    super::backup::parse_time(text).map(|t| t.with_timezone(&Utc)).map_err(|_| {
        anyhow!("cannot read --since {text:?}\nhint: an age such as 12h or 7d, or a time such as '2027-01-31 02:00'")
    })
}

fn print_table(runs: &[Run]) -> std::io::Result<()> {
    outln!(
        "{:<12}  {:<9}  {:<19}  {:>8}  {:<11}  {:>10}  {:>10}  {:<8}  error",
        "job",
        "trigger",
        "started",
        "duration",
        "outcome",
        "read",
        "added",
        "snapshot"
    )?;
    for run in runs {
        let snapshots: Vec<&str> = run.snapshots().collect();
        let snapshot = match snapshots.as_slice() {
            [] => "-".to_string(),
            [one] => short(one).to_string(),
            [first, rest @ ..] => format!("{}+{}", short(first), rest.len()),
        };
        let line = format!(
            "{:<12}  {:<9}  {:<19}  {:>8}  {:<11}  {:>10}  {:>10}  {:<8}  {}",
            run.job,
            run.trigger,
            run.started.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S"),
            run.duration_secs().map_or_else(|| "-".into(), output::duration),
            run.outcome.name(),
            output::bytes(run.bytes_read),
            output::bytes(run.bytes_added),
            snapshot,
            run.error.as_deref().map(excerpt).unwrap_or_default()
        );
        outln!("{}", line.trim_end())?;
    }
    outln!("{} run(s)", runs.len())?;
    Ok(())
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// The first line of an error, cut to [`ERROR_EXCERPT`] characters.
fn excerpt(text: &str) -> String {
    let first = text.lines().next().unwrap_or_default();
    if first.chars().count() <= ERROR_EXCERPT && first.len() == text.trim_end().len() {
        return first.to_string();
    }
    let cut: String = first.chars().take(ERROR_EXCERPT - 3).collect();
    format!("{}...", cut.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_an_age_or_a_time() {
        let now = DateTime::parse_from_rfc3339("2027-01-31T12:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(parse_since("12h", now).unwrap(), now - TimeDelta::hours(12));
        assert_eq!(parse_since("7d", now).unwrap(), now - TimeDelta::days(7));
        let t = parse_since("2027-01-01T00:00:00+01:00", now).unwrap();
        assert_eq!(t, DateTime::parse_from_rfc3339("2026-12-31T23:00:00Z").unwrap());
        assert!(parse_since("yesterday", now).unwrap_err().to_string().contains("--since"));
    }

    #[test]
    fn excerpts_are_one_short_line() {
        assert_eq!(excerpt("disk full"), "disk full");
        assert_eq!(excerpt("first\nsecond"), "first...");
        let long = "x".repeat(100);
        assert_eq!(excerpt(&long).len(), ERROR_EXCERPT);
    }
}
