//! When a job runs next, and whether it is stale: the part of `cairn status` (and of the
//! daemon's stale alarm) that is only arithmetic on times. Times in, verdicts out; no I/O,
//! no clock: every function takes `now`.
//!
//! Schedules are read with the daemon's own [`Schedule`], in `[daemon] timezone` (default:
//! local time), so `cairn status` shows the times the daemon will run and judges gaps by the
//! same daylight-saving rules.
//!
//! A job is **stale** when it has not succeeded for longer than its limit: `stale_after`,
//! else twice the longest gap between two of its scheduled runs; a job with neither has no
//! limit. Time counts from the start of the last successful run; a job that never
//! succeeded counts from its first recorded run, and a job that never ran is not stale
//! (there is nothing to count from). Partial runs are not successes: a source that keeps
//! failing makes its job stale in the end.

use chrono::{DateTime, TimeDelta, Utc};

use crate::config::{parse_interval, Config, JobConfig};
use crate::schedule::{Schedule, Zone};

/// How far ahead [`longest_gap`] looks: long enough for yearly and leap-day schedules.
const GAP_HORIZON_DAYS: i64 = 5 * 366;
/// At most this many runs are looked at for a gap: a minutely schedule stops after two
/// weeks, which still shows its weekly pattern.
const GAP_MAX_RUNS: usize = 20_000;

/// The job's next scheduled run after `now`; `None` without a schedule (or when no time
/// ever matches it).
pub fn next_run(job: &JobConfig, config: &Config, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    schedule_of(job, config)?.next_after(now)
}

/// How long the job may go without a success before it is stale: `stale_after`, else twice
/// the longest gap between its scheduled runs (looking ahead from `now`).
pub fn stale_limit(job: &JobConfig, config: &Config, now: DateTime<Utc>) -> Option<TimeDelta> {
    if let Some(text) = &job.stale_after {
        // Checked when the config was loaded.
        return parse_interval(text).and_then(|d| TimeDelta::from_std(d).ok());
    }
    longest_gap(job, config, now).map(|gap| gap * 2)
}

/// The longest time between two consecutive scheduled runs of the job, over the next
/// years (see [`GAP_HORIZON_DAYS`]); `None` with fewer than two runs in that time.
pub fn longest_gap(job: &JobConfig, config: &Config, from: DateTime<Utc>) -> Option<TimeDelta> {
    let crons = schedule_of(job, config)?;
    let horizon = from + TimeDelta::days(GAP_HORIZON_DAYS);
    let mut previous = crons.next_after(from)?;
    let mut longest: Option<TimeDelta> = None;
    for _ in 0..GAP_MAX_RUNS {
        let Some(next) = crons.next_after(previous).filter(|n| *n <= horizon) else { break };
        longest = Some(longest.map_or(next - previous, |l| l.max(next - previous)));
        previous = next;
    }
    longest
}

/// Why a job is stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stale {
    /// The last success, or the first run of a job that never succeeded.
    pub since: DateTime<Utc>,
    pub never_succeeded: bool,
    pub limit: TimeDelta,
}

/// Is the job stale at `now`? See the module docs for the rule.
pub fn stale(
    limit: Option<TimeDelta>,
    last_success: Option<DateTime<Utc>>,
    first_run: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<Stale> {
    let limit = limit?;
    let since = last_success.or(first_run)?;
    (now - since > limit).then_some(Stale { since, never_succeeded: last_success.is_none(), limit })
}

/// A job's schedule (perhaps empty: it never fires) in the daemon's time zone. Expressions
/// and the zone were checked when the config was loaded.
fn schedule_of(job: &JobConfig, config: &Config) -> Option<Schedule> {
    let zone = Zone::parse(config.file.daemon.as_ref().and_then(|d| d.timezone.as_deref())).ok()?;
    Schedule::new(&job.schedule, zone, None).ok()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::ConfigFile;

    fn config(timezone: &str) -> Config {
        let text = format!("[daemon]\ntimezone = \"{timezone}\"\n");
        Config { path: PathBuf::from("cairn.toml"), dir: PathBuf::from("."), file: toml::from_str(&text).unwrap() }
    }

    fn job(schedule: &[&str], stale_after: Option<&str>) -> JobConfig {
        JobConfig {
            schedule: schedule.iter().map(|s| s.to_string()).collect(),
            stale_after: stale_after.map(String::from),
            ..JobConfig::default()
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn next_run_is_the_earliest_of_the_schedules_in_the_zone() {
        let utc = config("UTC");
        let app = job(&["0 8-18 * * 1-5", "0 2 * * *"], None);
        // Friday 2027-01-01 18:30 UTC: the next is Saturday's 02:00.
        assert_eq!(next_run(&app, &utc, at("2027-01-01T18:30:00Z")), Some(at("2027-01-02T02:00:00Z")));
        // Friday 09:00 exactly: the next is 10:00, not 09:00 itself.
        assert_eq!(next_run(&app, &utc, at("2027-01-01T09:00:00Z")), Some(at("2027-01-01T10:00:00Z")));
        // 02:00 in Berlin is 01:00 UTC in winter.
        let berlin = config("Europe/Berlin");
        assert_eq!(
            next_run(&job(&["0 2 * * *"], None), &berlin, at("2027-01-01T12:00:00Z")),
            Some(at("2027-01-02T01:00:00Z"))
        );
        assert_eq!(next_run(&job(&[], None), &utc, at("2027-01-01T12:00:00Z")), None);
        let empty = Config { path: "x".into(), dir: ".".into(), file: ConfigFile::default() };
        assert!(next_run(&job(&["*/5 * * * *"], None), &empty, at("2027-01-01T12:00:00Z")).is_some(), "local time");
    }

    #[test]
    fn the_default_limit_is_twice_the_longest_gap() {
        let utc = config("UTC");
        let now = at("2027-01-01T12:00:00Z");
        assert_eq!(longest_gap(&job(&["0 2 * * *"], None), &utc, now), Some(TimeDelta::hours(24)));
        assert_eq!(stale_limit(&job(&["0 2 * * *"], None), &utc, now), Some(TimeDelta::hours(48)));
        // Hourly 08-18 on weekdays: Friday 18:00 → Monday 08:00. With a nightly run as well,
        // the weekend's nights are the longest gap.
        assert_eq!(longest_gap(&job(&["0 8-18 * * 1-5"], None), &utc, now), Some(TimeDelta::hours(62)));
        let design = job(&["0 8-18 * * 1-5", "0 2 * * *"], None);
        assert_eq!(longest_gap(&design, &utc, now), Some(TimeDelta::hours(24)));
        // Hourly 08-18 plus 20:00: the night, 20:00 → 08:00, on weekdays.
        let evenings = job(&["0 8-18 * * *", "0 20 * * *"], None);
        assert_eq!(longest_gap(&evenings, &utc, now), Some(TimeDelta::hours(12)));
        // Weekdays only: Friday 02:00 → Monday 02:00.
        assert_eq!(longest_gap(&job(&["0 2 * * 1-5"], None), &utc, now), Some(TimeDelta::hours(72)));
        // Every minute: the cap on runs looked at keeps this quick.
        assert_eq!(longest_gap(&job(&["* * * * *"], None), &utc, now), Some(TimeDelta::minutes(1)));
        // First of the month: 31 days is the longest month.
        assert_eq!(longest_gap(&job(&["0 0 1 * *"], None), &utc, now), Some(TimeDelta::days(31)));
        // stale_after wins; no schedule and no stale_after: no limit.
        assert_eq!(stale_limit(&job(&["0 2 * * *"], Some("3h")), &utc, now), Some(TimeDelta::hours(3)));
        assert_eq!(stale_limit(&job(&[], Some("1d")), &utc, now), Some(TimeDelta::days(1)));
        assert_eq!(stale_limit(&job(&[], None), &utc, now), None);
        // A date that never comes.
        assert_eq!(stale_limit(&job(&["0 0 30 2 *"], None), &utc, now), None);
    }

    #[test]
    fn a_daylight_saving_change_lengthens_a_gap_by_an_hour() {
        // Berlin leaves summer time on 2027-10-31: that night is 25 hours long.
        let berlin = config("Europe/Berlin");
        let gap = longest_gap(&job(&["0 2 * * *"], None), &berlin, at("2027-10-01T00:00:00Z"));
        assert_eq!(gap, Some(TimeDelta::hours(25)));
    }

    #[test]
    fn stale_counts_from_the_last_success_or_the_first_run() {
        let now = at("2027-01-10T00:00:00Z");
        let day = TimeDelta::days(1);
        let two_days = at("2027-01-08T00:00:00Z");
        let two_days_ago = Some(two_days);
        let hour_ago = Some(at("2027-01-09T23:00:00Z"));
        // Succeeded an hour ago: fine. Two days ago with a one-day limit: stale.
        assert_eq!(stale(Some(day), hour_ago, two_days_ago, now), None);
        let s = stale(Some(day), two_days_ago, two_days_ago, now).unwrap();
        assert_eq!((s.since, s.never_succeeded, s.limit), (two_days, false, day));
        // Never succeeded: counted from the first run.
        assert!(stale(Some(day), None, two_days_ago, now).unwrap().never_succeeded);
        assert_eq!(stale(Some(day), None, hour_ago, now), None);
        // Never ran, or no limit: never stale.
        assert_eq!(stale(Some(day), None, None, now), None);
        assert_eq!(stale(None, None, two_days_ago, now), None);
        // Exactly at the limit is not yet stale.
        assert_eq!(stale(Some(TimeDelta::days(2)), two_days_ago, None, now), None);
    }
}
