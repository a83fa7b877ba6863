//! Five-field cron expressions: parsing into sets of allowed values, and the next times
//! they fire in a time zone.
//!
//! The dialect is Vixie cron's: `minute hour day-of-month month weekday`, each field a
//! comma-separated list of `*`, `N`, `A-B`, `*/S` or `A-B/S`; months `jan`–`dec` and
//! weekdays `sun`–`sat` by name; weekday 7 is Sunday. When both day fields are restricted
//! (neither starts with `*`), a day matches if *either* does — cron's rule, which the
//! systemd conversion reproduces with two `OnCalendar=` lines. Extensions of other crons
//! (`L`, `W`, `#`, `?`, seconds, `@daily`) are refused with a message saying so: nothing
//! here can convert them faithfully.
//!
//! Clock changes differ between runners, so [`Gap`] says what happens to a time that a
//! spring-forward skips: systemd skips it, cron runs it when the clock jumps. A time that
//! a fall-back repeats runs once, at its first occurrence, in both.

use std::fmt;

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone};

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronExpr {
    /// The expression with single spaces between fields, as it goes into a crontab.
    pub text: String,
    pub minutes: Field,
    pub hours: Field,
    pub days: Field,
    pub months: Field,
    /// 0 = Sunday … 6 = Saturday.
    pub weekdays: Field,
    /// The day-of-month field does not start with `*`.
    pub days_restricted: bool,
    /// The weekday field does not start with `*`.
    pub weekdays_restricted: bool,
}

/// The allowed values of one field, as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field(u64);

impl Field {
    pub fn contains(self, value: u32) -> bool {
        value < 64 && self.0 & (1 << value) != 0
    }

    /// The allowed values, ascending.
    pub fn values(self) -> impl Iterator<Item = u32> {
        (0..64).filter(move |v| self.contains(*v))
    }

    pub fn range(lo: u32, hi: u32) -> Field {
        Field((lo..=hi).fold(0, |bits, v| bits | 1 << v))
    }

    fn insert(&mut self, value: u32) {
        self.0 |= 1 << value;
    }
}

/// Why an expression was refused: the message, and where useful a hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError {
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for CronError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CronError {}

fn error(message: impl Into<String>, hint: Option<&str>) -> CronError {
    CronError { message: message.into(), hint: hint.map(str::to_string) }
}

/// What each field is called, its bounds and its names (the first name is `min`).
struct Spec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

const SPECS: [Spec; 5] = [
    Spec { name: "minute", min: 0, max: 59, names: &[] },
    Spec { name: "hour", min: 0, max: 23, names: &[] },
    Spec { name: "day of month", min: 1, max: 31, names: &[] },
    Spec { name: "month", min: 1, max: 12, names: &MONTHS },
    // 7 is Sunday too; folded into 0 after parsing.
    Spec { name: "weekday", min: 0, max: 7, names: &WEEKDAYS },
];

impl CronExpr {
    pub fn parse(text: &str) -> Result<CronExpr, CronError> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        if let Some(nickname) = fields.first().filter(|f| f.starts_with('@')) {
            return Err(error(
                format!("`{nickname}` is a nickname some crons know; write the five fields"),
                Some("@daily is `0 0 * * *`, @hourly `0 * * * *`, @weekly `0 0 * * 0`, @monthly `0 0 1 * *`"),
            ));
        }
        if fields.len() != 5 {
            return Err(error(
                format!("{} fields; a cron expression has five: minute hour day-of-month month weekday", fields.len()),
                (fields.len() == 6).then_some("seconds are not supported; drop the first field"),
            ));
        }
        let mut parsed = [Field(0); 5];
        for (i, (field, spec)) in fields.iter().zip(&SPECS).enumerate() {
            parsed[i] = parse_field(field, spec)?;
        }
        let mut weekdays = parsed[4];
        if weekdays.contains(7) {
            weekdays = Field(weekdays.0 & !(1 << 7));
            weekdays.insert(0);
        }
        Ok(CronExpr {
            text: fields.join(" "),
            minutes: parsed[0],
            hours: parsed[1],
            days: parsed[2],
            months: parsed[3],
            weekdays,
            days_restricted: !fields[2].starts_with('*'),
            weekdays_restricted: !fields[4].starts_with('*'),
        })
    }

    /// Does the expression run on this date? Cron's rule: when both day fields are
    /// restricted, either may match; otherwise both must.
    pub fn runs_on(&self, date: NaiveDate) -> bool {
        if !self.months.contains(date.month()) {
            return false;
        }
        let by_day = self.days.contains(date.day());
        let by_weekday = self.weekdays.contains(date.weekday().num_days_from_sunday());
        if self.days_restricted && self.weekdays_restricted {
            by_day || by_weekday
        } else {
            by_day && by_weekday
        }
    }

    /// The first time strictly after `after` at which the expression fires in `after`'s
    /// zone, or `None` if it never does (e.g. `0 0 30 2 *`).
    pub fn next_after<Z: TimeZone>(&self, after: &DateTime<Z>, gap: Gap) -> Option<DateTime<Z>> {
        let zone = after.timezone();
        let local = after.naive_local();
        // Four leap years apart, twice over (1900-like century years skip one).
        let last_day = local.date() + Duration::days(8 * 366 + 1);
        let mut date = local.date();
        while date <= last_day {
            if self.runs_on(date) {
                for hour in self.hours.values() {
                    for minute in self.minutes.values() {
                        let naive = date.and_hms_opt(hour, minute, 0).expect("cron fields are in range");
                        match resolve(&zone, naive, gap) {
                            Some(t) if t > *after => return Some(t),
                            _ => {}
                        }
                    }
                }
            }
            date = date.succ_opt()?;
        }
        None
    }
}

/// What a runner does with a local time that a spring-forward clock change skips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gap {
    /// The run does not happen that day (systemd timers).
    Skip,
    /// The run happens when the clock has jumped (cron, for changes of up to 3 hours).
    RunAfter,
}

/// The instant of a local time: the first of two in a fall-back, per `gap` in a spring-forward.
fn resolve<Z: TimeZone>(zone: &Z, naive: NaiveDateTime, gap: Gap) -> Option<DateTime<Z>> {
    match zone.from_local_datetime(&naive) {
        LocalResult::Single(t) => Some(t),
        LocalResult::Ambiguous(first, _) => Some(first),
        LocalResult::None if gap == Gap::RunAfter => {
            // The first minute that exists again is the moment the clock jumped.
            (1..=180).find_map(|m| zone.from_local_datetime(&(naive + Duration::minutes(m))).earliest())
        }
        LocalResult::None => None,
    }
}

fn parse_field(text: &str, spec: &Spec) -> Result<Field, CronError> {
    let mut field = Field(0);
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(parse_step(step, spec)?)),
            None => (item, None),
        };
        let (lo, hi) = if range == "*" {
            (spec.min, spec.max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (lo, mut hi) = (parse_value(a, spec)?, parse_value(b, spec)?);
            // `fri-sun` ends on Sunday: 0, read as 7.
            if spec.max == 7 && hi == 0 && lo > 0 {
                hi = 7;
            }
            if lo > hi {
                return Err(error(
                    format!("{} range {range:?} runs backwards", spec.name),
                    Some("ranges go from low to high; split a wrapping one, e.g. 22-23,0-2"),
                ));
            }
            (lo, hi)
        } else {
            let value = parse_value(range, spec)?;
            if step.is_some() {
                return Err(error(
                    format!("{} {item:?}: a step needs a range or `*`", spec.name),
                    Some(&format!("write {range}-{}/{} (or */{})", spec.max, step.unwrap_or(1), step.unwrap_or(1))),
                ));
            }
            (value, value)
        };
        for v in (lo..=hi).step_by(step.unwrap_or(1) as usize) {
            field.insert(v);
        }
    }
    Ok(field)
}

fn parse_step(text: &str, spec: &Spec) -> Result<u32, CronError> {
    match text.parse::<u32>() {
        Ok(step) if step >= 1 && step <= spec.max.max(1) => Ok(step),
        _ => Err(error(format!("{} step {text:?} must be a number from 1 to {}", spec.name, spec.max), None)),
    }
}

fn parse_value(text: &str, spec: &Spec) -> Result<u32, CronError> {
    if let Ok(n) = text.parse::<u32>() {
        if (spec.min..=spec.max).contains(&n) {
            return Ok(n);
        }
        return Err(error(format!("{} {n} is out of range {}-{}", spec.name, spec.min, spec.max), None));
    }
    let lower = text.to_ascii_lowercase();
    if let Some(i) = spec.names.iter().position(|n| *n == lower) {
        return Ok(spec.min + i as u32);
    }
    if text.is_empty() {
        return Err(error(format!("empty {} value", spec.name), Some("separate fields by spaces, values by commas")));
    }
    if is_extension(text) {
        return Err(error(
            format!("{} {text:?} cannot be converted: `L`, `W`, `#` and `?` are extensions of some crons, not standard cron", spec.name),
            Some("list the days instead, e.g. 28-31 or mon-fri"),
        ));
    }
    let hint = match spec.names {
        [] => None,
        names => Some(format!("use {}-{} or the names {}", spec.min, spec.max, names.join(", "))),
    };
    Err(CronError { message: format!("{} {text:?} is not a number or a name", spec.name), hint })
}

/// `L`, `15W`, `LW`, `5#3`, `5L`, `?`: Quartz and other crons' extensions.
fn is_extension(text: &str) -> bool {
    let upper = text.to_ascii_uppercase();
    let digits_then = |suffix: &str| upper.strip_suffix(suffix).is_some_and(|d| d.chars().all(|c| c.is_ascii_digit()));
    upper == "?" || upper.contains('#') || digits_then("L") || digits_then("W") || upper == "LW"
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn next(expr: &str, after: &str) -> String {
        CronExpr::parse(expr).unwrap().next_after(&at(after), Gap::Skip).unwrap().to_rfc3339()
    }

    #[test]
    fn fields_read_lists_ranges_steps_and_names() {
        let e = CronExpr::parse("0,30 8-18/2 1 jan-MAR mon-fri").unwrap();
        assert_eq!(e.minutes.values().collect::<Vec<_>>(), [0, 30]);
        assert_eq!(e.hours.values().collect::<Vec<_>>(), [8, 10, 12, 14, 16, 18]);
        assert_eq!(e.months.values().collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(e.weekdays.values().collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        assert!(e.days_restricted && e.weekdays_restricted);
        let e = CronExpr::parse("*/15  *  * * 7").unwrap();
        assert_eq!(e.text, "*/15 * * * 7");
        assert_eq!(e.minutes.values().collect::<Vec<_>>(), [0, 15, 30, 45]);
        assert_eq!(e.weekdays.values().collect::<Vec<_>>(), [0], "7 is Sunday");
        let e = CronExpr::parse("0 0 * * fri-sun").unwrap();
        assert_eq!(e.weekdays.values().collect::<Vec<_>>(), [0, 5, 6]);
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        for (expr, says) in [
            ("0 2 * *", "4 fields"),
            ("0 0 2 * * *", "seconds are not supported"),
            ("@daily", "nickname"),
            ("60 * * * *", "minute 60 is out of range 0-59"),
            ("0 24 * * *", "hour 24"),
            ("0 0 0 * *", "day of month 0"),
            ("0 0 L * *", "cannot be converted"),
            ("0 0 * * 5#3", "cannot be converted"),
            ("0 0 * * funday", "use 0-7 or the names sun"),
            ("0 18-6 * * *", "runs backwards"),
            ("*/0 * * * *", "step \"0\""),
            ("5/15 * * * *", "write 5-59/15"),
            ("0 0 * foo *", "month \"foo\""),
            ("0,,1 * * * *", "empty minute"),
        ] {
            let err = CronExpr::parse(expr).unwrap_err().to_string();
            assert!(err.contains(says), "{expr}: {err}");
        }
    }

    #[test]
    fn next_runs() {
        assert_eq!(next("0 2 * * *", "2026-05-01T10:00:00Z"), "2026-05-02T02:00:00+00:00");
        assert_eq!(next("0 2 * * *", "2026-05-01T01:59:59Z"), "2026-05-01T02:00:00+00:00");
        // Strictly after: a run at exactly `after` is not the next one.
        assert_eq!(next("0 2 * * *", "2026-05-01T02:00:00Z"), "2026-05-02T02:00:00+00:00");
        assert_eq!(next("*/15 * * * *", "2026-05-01T10:07:30Z"), "2026-05-01T10:15:00+00:00");
        // Friday evening → Monday 08:00.
        assert_eq!(next("0 8-18 * * 1-5", "2026-05-01T18:30:00Z"), "2026-05-04T08:00:00+00:00");
        assert_eq!(next("30 4 1 * *", "2026-05-01T05:00:00Z"), "2026-06-01T04:30:00+00:00");
        assert_eq!(next("0 0 29 2 *", "2026-03-01T00:00:00Z"), "2028-02-29T00:00:00+00:00");
        // Both day fields restricted: the 13th, or any Friday.
        assert_eq!(next("0 0 13 * 5", "2026-05-01T12:00:00Z"), "2026-05-08T00:00:00+00:00");
        assert_eq!(next("0 0 13 * 5", "2026-05-09T12:00:00Z"), "2026-05-13T00:00:00+00:00");
        // A star-prefixed day field keeps AND: odd days that are Mondays.
        assert_eq!(next("0 0 */2 * 1", "2026-05-01T12:00:00Z"), "2026-05-11T00:00:00+00:00");
        assert!(CronExpr::parse("0 0 30 2 *").unwrap().next_after(&at("2026-01-01T00:00:00Z"), Gap::Skip).is_none());
    }

    #[test]
    fn clock_changes() {
        let berlin = chrono_tz::Europe::Berlin;
        let before = at("2026-03-28T12:00:00Z").with_timezone(&berlin);
        let e = CronExpr::parse("30 2 * * *").unwrap();
        // 02:30 does not exist on 2026-03-29 in Berlin.
        assert_eq!(e.next_after(&before, Gap::Skip).unwrap().to_rfc3339(), "2026-03-30T02:30:00+02:00");
        assert_eq!(e.next_after(&before, Gap::RunAfter).unwrap().to_rfc3339(), "2026-03-29T03:00:00+02:00");
        // 02:30 happens twice on 2026-10-25: the run is at the first.
        let before = at("2026-10-24T12:00:00Z").with_timezone(&berlin);
        let first = e.next_after(&before, Gap::Skip).unwrap();
        assert_eq!(first.to_rfc3339(), "2026-10-25T02:30:00+02:00");
        assert_eq!(e.next_after(&first, Gap::Skip).unwrap().to_rfc3339(), "2026-10-26T02:30:00+01:00");
    }
}
