//! Cron expressions and their occurrences in a time zone.
//!
//! Parsing and matching are `croner`'s (POSIX/Vixie semantics: five fields, `1-5` is Monday
//! to Friday, 0 and 7 are Sunday, a restricted day-of-month OR a restricted weekday matches;
//! names like `mon` and `jan`, `L`, `#` and `@daily` work too). Daylight saving time follows
//! the Open Cron Pattern Specification, which croner implements:
//!
//! - spring forward: a fixed time inside the gap (`30 2 * * *` in Europe/Berlin on the last
//!   Sunday of March) fires at the first instant after the gap (03:00); wildcard fields
//!   (`*/15 * * * *`) simply have no occurrences inside the gap;
//! - fall back: a fixed time in the repeated hour fires once, at its first occurrence;
//!   wildcard fields fire in both passes (they run by elapsed time).
//!
//! Occurrences are returned in UTC: the planner compares instants, never wall-clock times.

use std::str::FromStr;

use chrono::{DateTime, Local, TimeZone, Utc};
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

/// The zone cron expressions are read in: the machine's local time or an IANA zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    Local,
    Named(chrono_tz::Tz),
}

impl Zone {
    /// `[daemon] timezone`, or local time when unset.
    pub fn parse(name: Option<&str>) -> Result<Zone, String> {
        match name {
            None => Ok(Zone::Local),
            Some(name) => chrono_tz::Tz::from_str(name.trim()).map(Zone::Named).map_err(|_| {
                format!("unknown time zone {name:?}; use an IANA name such as \"Europe/Berlin\" or \"UTC\"")
            }),
        }
    }

    /// Wall-clock rendering of an instant, for logs.
    pub fn show(&self, t: DateTime<Utc>) -> String {
        match self {
            Zone::Local => t.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S %Z").to_string(),
            Zone::Named(tz) => t.with_timezone(tz).format("%Y-%m-%d %H:%M:%S %Z").to_string(),
        }
    }
}

impl std::fmt::Display for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Zone::Local => f.write_str("local time"),
            Zone::Named(tz) => f.write_str(tz.name()),
        }
    }
}

/// Is `expr` a cron expression cairn accepts (five fields: minute hour day month weekday)?
/// Also refuses expressions that never fire (`0 0 30 2 *`).
pub fn check_cron(expr: &str) -> Result<(), String> {
    let cron =
        parser(false).parse(expr).map_err(|e| format!("not a cron expression (minute hour day month weekday): {e}"))?;
    let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).single().expect("a valid date");
    cron.find_next_occurrence(&start, false).map_err(|_| "this cron expression never fires".to_string())?;
    Ok(())
}

/// Is `name` an IANA time zone name (`[daemon] timezone`)? For `config check`; the daemon
/// itself reads the zone with [`Zone::parse`].
#[allow(dead_code)] // until `config check` calls it
pub fn check_zone(name: &str) -> Result<(), String> {
    Zone::parse(Some(name)).map(|_| ())
}

/// Five fields normally; six (seconds first) in the test-only seconds mode.
fn parser(seconds: bool) -> CronParser {
    CronParser::builder()
        .seconds(if seconds { Seconds::Required } else { Seconds::Disallowed })
        .year(Year::Disallowed)
        .build()
}

/// A task's cron expressions (any number; the union of their occurrences) in one zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    crons: Vec<Cron>,
    zone: Zone,
}

impl Schedule {
    /// Parse `exprs`. `seconds` is the test-only seconds field (`$CAIRN_CRON_SECONDS`, e.g.
    /// `*/2`) put in front of every expression, so `* * * * *` can fire every two seconds.
    pub fn new(exprs: &[String], zone: Zone, seconds: Option<&str>) -> Result<Schedule, String> {
        let crons = exprs
            .iter()
            .map(|e| {
                let result = match seconds {
                    Some(s) => parser(true).parse(&format!("{s} {e}")),
                    None => parser(false).parse(e),
                };
                result.map_err(|err| format!("schedule {e:?}: not a cron expression: {err}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Schedule { crons, zone })
    }

    /// The first occurrence strictly after `t`, over all expressions.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.crons.iter().filter_map(|c| self.in_zone(c, t, Direction::Next)).min()
    }

    /// The last occurrence at or before `t`, over all expressions.
    pub fn last_until(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.crons.iter().filter_map(|c| self.in_zone(c, t, Direction::Previous)).max()
    }

    fn in_zone(&self, cron: &Cron, t: DateTime<Utc>, direction: Direction) -> Option<DateTime<Utc>> {
        match self.zone {
            Zone::Local => find(cron, &t.with_timezone(&Local), direction),
            Zone::Named(tz) => find(cron, &t.with_timezone(&tz), direction),
        }
    }
}

#[derive(Clone, Copy)]
enum Direction {
    Next,
    Previous,
}

fn find<Tz: TimeZone>(cron: &Cron, from: &DateTime<Tz>, direction: Direction) -> Option<DateTime<Utc>> {
    let found = match direction {
        Direction::Next => cron.find_next_occurrence(from, false),
        Direction::Previous => cron.find_previous_occurrence(from, true),
    };
    found.ok().map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Europe::Berlin;

    fn berlin(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Berlin.with_ymd_and_hms(y, mo, d, h, mi, 0).earliest().unwrap().with_timezone(&Utc)
    }

    fn schedule(exprs: &[&str]) -> Schedule {
        let exprs: Vec<String> = exprs.iter().map(|s| s.to_string()).collect();
        Schedule::new(&exprs, Zone::Named(Berlin), None).unwrap()
    }

    /// Every occurrence after `from`, `n` of them, as Berlin wall-clock text.
    fn walk(s: &Schedule, from: DateTime<Utc>, n: usize) -> Vec<String> {
        let mut t = from;
        (0..n)
            .map(|_| {
                t = s.next_after(t).unwrap();
                t.with_timezone(&Berlin).format("%a %d %H:%M %Z").to_string()
            })
            .collect()
    }

    #[test]
    fn several_expressions_weekday_and_hour_ranges() {
        // Hourly 08-18 on weekdays, plus 02:00 every day. Friday 2026-01-09 17:30 onwards.
        let s = schedule(&["0 8-18 * * 1-5", "0 2 * * *"]);
        let got = walk(&s, berlin(2026, 1, 9, 17, 30), 6);
        assert_eq!(
            got,
            [
                "Fri 09 18:00 CET",
                "Sat 10 02:00 CET",
                "Sun 11 02:00 CET",
                "Mon 12 02:00 CET",
                "Mon 12 08:00 CET",
                "Mon 12 09:00 CET"
            ]
        );
    }

    #[test]
    fn spring_forward_runs_a_skipped_time_once_after_the_gap() {
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that night.
        let s = schedule(&["30 2 * * *"]);
        let got = walk(&s, berlin(2026, 3, 28, 12, 0), 3);
        assert_eq!(got, ["Sun 29 03:00 CEST", "Mon 30 02:30 CEST", "Tue 31 02:30 CEST"]);
        // Wildcard minutes have nothing inside the gap and go on after it.
        let s = schedule(&["*/30 * * * *"]);
        assert_eq!(
            walk(&s, berlin(2026, 3, 29, 1, 10), 3),
            ["Sun 29 01:30 CET", "Sun 29 03:00 CEST", "Sun 29 03:30 CEST"]
        );
    }

    #[test]
    fn fall_back_runs_a_repeated_time_once() {
        // 2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice.
        let s = schedule(&["30 2 * * *"]);
        let got = walk(&s, berlin(2026, 10, 24, 12, 0), 2);
        assert_eq!(got, ["Sun 25 02:30 CEST", "Mon 26 02:30 CET"]);
        // Two expressions meeting the repeated hour still make one run per instant.
        let s = schedule(&["30 2 * * *", "30 2 25 10 *"]);
        assert_eq!(walk(&s, berlin(2026, 10, 24, 12, 0), 2), ["Sun 25 02:30 CEST", "Mon 26 02:30 CET"]);
    }

    #[test]
    fn last_until_finds_the_newest_past_occurrence() {
        let s = schedule(&["0 8-18 * * 1-5", "0 2 * * *"]);
        let t = s.last_until(berlin(2026, 1, 10, 12, 0)).unwrap(); // Saturday noon
        assert_eq!(t, berlin(2026, 1, 10, 2, 0));
        assert_eq!(s.last_until(berlin(2026, 1, 10, 2, 0)), Some(berlin(2026, 1, 10, 2, 0)));
    }

    #[test]
    fn checks() {
        assert!(check_cron("0 8-18 * * 1-5").is_ok());
        assert!(check_cron("*/15 * * * mon-fri").is_ok());
        assert!(check_cron("0 2 * * *").is_ok());
        let err = check_cron("daily").unwrap_err();
        assert!(err.contains("not a cron expression"), "{err}");
        assert!(check_cron("0 0 2 * * *").is_err(), "six fields (seconds) are not accepted");
        assert!(check_cron("61 * * * *").is_err());
        assert!(check_cron("0 0 30 2 *").unwrap_err().contains("never fires"));
        assert!(check_zone("Europe/Berlin").is_ok());
        assert!(check_zone("UTC").is_ok());
        assert!(check_zone("Mars/Olympus").unwrap_err().contains("IANA"));
    }

    #[test]
    fn seconds_mode_for_tests() {
        let s = Schedule::new(&["* * * * *".to_string()], Zone::Named(Berlin), Some("*/2")).unwrap();
        let t = berlin(2026, 1, 1, 0, 0);
        assert_eq!(s.next_after(t), Some(t + chrono::Duration::seconds(2)));
    }
}
