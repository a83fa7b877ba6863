//! systemd timer and service units for a job: cron → `OnCalendar=`, and the unit texts.
//!
//! Every cron expression converts: fields become sets of values ([`CronExpr`]), and sets are
//! written back in systemd's calendar syntax (`*`, `08..18`, `00/15`, `Mon..Fri`, lists).
//! Cron's "either day field" rule becomes two `OnCalendar=` lines, which systemd ORs.

use std::time::Duration;

use super::cron::{CronExpr, Field};
use super::Invocation;

/// `cairn-JOB`, the stem of both unit names.
pub fn unit_stem(job: &str) -> String {
    format!("cairn-{job}")
}

/// The `OnCalendar=` values of one cron expression (one, or two when both day fields are
/// restricted), with the zone appended when one is configured.
pub fn on_calendar(expr: &CronExpr, zone: Option<&str>) -> Vec<String> {
    let time = format!("{}:{}:00", numbers(expr.hours, 0, 23), numbers(expr.minutes, 0, 59));
    let months = numbers(expr.months, 1, 12);
    let all_days = numbers(expr.days, 1, 31);
    let line = |weekdays: Option<String>, days: &str| {
        let mut text = weekdays.map(|w| format!("{w} ")).unwrap_or_default();
        text.push_str(&format!("*-{months}-{days} {time}"));
        if let Some(zone) = zone {
            text.push_str(&format!(" {zone}"));
        }
        text
    };
    if expr.days_restricted && expr.weekdays_restricted {
        // Cron runs on a day that matches either field; systemd ANDs them within a line.
        vec![line(Some(weekdays(expr.weekdays)), "*"), line(None, &all_days)]
    } else {
        let weekdays = (expr.weekdays != Field::range(0, 6)).then(|| weekdays(expr.weekdays));
        vec![line(weekdays, &all_days)]
    }
}

/// A set of numbers in calendar syntax: `*`, `START/STEP` for a progression that runs to
/// the end of the field, else ranges (`08..18`) and single values joined by commas.
fn numbers(field: Field, min: u32, max: u32) -> String {
    let values: Vec<u32> = field.values().filter(|v| (min..=max).contains(v)).collect();
    if values.len() as u32 == max - min + 1 {
        return "*".into();
    }
    if let [first, second, .., last] = values[..] {
        let step = second - first;
        if step > 1 && values.windows(2).all(|w| w[1] - w[0] == step) && last + step > max {
            return format!("{first:02}/{step}");
        }
    }
    runs(&values, |v| format!("{v:02}"))
}

/// Weekdays, Monday first as systemd counts them: `Mon..Fri`, `Sat,Sun`.
fn weekdays(field: Field) -> String {
    const NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    // Cron counts from Sunday = 0.
    let mut days: Vec<u32> = field.values().map(|d| (d + 6) % 7).collect();
    days.sort_unstable();
    runs(&days, |d| NAMES[d as usize].to_string())
}

/// Runs of three or more consecutive values as `A..B`, others one by one.
fn runs(values: &[u32], show: impl Fn(u32) -> String) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < values.len() {
        let mut j = i;
        while j + 1 < values.len() && values[j + 1] == values[j] + 1 {
            j += 1;
        }
        if j - i >= 2 {
            parts.push(format!("{}..{}", show(values[i]), show(values[j])));
        } else {
            parts.extend(values[i..=j].iter().map(|v| show(*v)));
        }
        i = j + 1;
    }
    parts.join(",")
}

/// The service: one run of `cairn backup JOB` with the config file it was installed from.
pub fn service_unit(job: &str, run: &Invocation, system: bool) -> String {
    let exec: Vec<String> = run.argv(job).iter().map(|a| exec_quote(a)).collect();
    // A user manager has no network-online.target of its own to wait for.
    let network = if system { "Wants=network-online.target\nAfter=network-online.target\n" } else { "" };
    format!(
        "{header}[Unit]\nDescription=cairn backup of job {job}\n{network}\n\
         [Service]\nType=oneshot\nExecStart={exec}\n",
        header = header(run),
        exec = exec.join(" "),
    )
}

/// The timer: one `OnCalendar=` per converted expression (each under a comment with the
/// cron text), catching up missed runs at boot, spread by the job's jitter.
pub fn timer_unit(
    job: &str,
    run: &Invocation,
    schedule: &[CronExpr],
    zone: Option<&str>,
    jitter: Option<Duration>,
) -> String {
    let mut timer = String::new();
    for expr in schedule {
        timer.push_str(&format!("# cron: {}\n", expr.text));
        for calendar in on_calendar(expr, zone) {
            timer.push_str(&format!("OnCalendar={calendar}\n"));
        }
    }
    timer.push_str("Persistent=true\n");
    if let Some(jitter) = jitter.filter(|j| !j.is_zero()) {
        timer.push_str(&format!("RandomizedDelaySec={}\n", jitter.as_secs()));
    }
    format!(
        "{header}[Unit]\nDescription=cairn backup of job {job} on its schedule\n\n\
         [Timer]\n{timer}\n[Install]\nWantedBy=timers.target\n",
        header = header(run),
    )
}

fn header(run: &Invocation) -> String {
    format!(
        "# Written by `cairn schedule install` from {}.\n\
         # Change the job there and install again; `cairn schedule uninstall` removes this file.\n",
        run.config
    )
}

/// One `ExecStart=` word: `%` and `$` escaped (systemd expands them), quoted when it holds
/// a space, a quote or a backslash.
fn exec_quote(arg: &str) -> String {
    let escaped = arg.replace('%', "%%").replace('$', "$$");
    if !escaped.is_empty() && !escaped.contains(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';')) {
        return escaped;
    }
    let mut quoted = String::from("\"");
    for c in escaped.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(cron: &str) -> Vec<String> {
        on_calendar(&CronExpr::parse(cron).unwrap(), None)
    }

    #[test]
    fn cron_becomes_on_calendar() {
        for (cron, calendar) in [
            ("0 8-18 * * 1-5", "Mon..Fri *-*-* 08..18:00:00"),
            ("0 2 * * *", "*-*-* 02:00:00"),
            ("*/15 * * * *", "*-*-* *:00/15:00"),
            ("30 4 1 * *", "*-*-01 04:30:00"),
            ("0 8 * * mon-fri", "Mon..Fri *-*-* 08:00:00"),
            ("0 0 1 jan *", "*-01-01 00:00:00"),
            ("0 0 1 JAN,Jul *", "*-01,07-01 00:00:00"),
            ("* * * * *", "*-*-* *:*:00"),
            ("0 */2 * * *", "*-*-* 00/2:00:00"),
            ("5-20/5 * * * *", "*-*-* *:05,10,15,20:00"),
            ("*/30 * * * *", "*-*-* *:00,30:00"),
            ("0 0 * * 0", "Sun *-*-* 00:00:00"),
            ("0 0 * * 7", "Sun *-*-* 00:00:00"),
            ("0 0 * * sat,sun", "Sat,Sun *-*-* 00:00:00"),
            ("0 0 * * fri-sun", "Fri..Sun *-*-* 00:00:00"),
            ("0 0 * * 0-6", "*-*-* 00:00:00"),
            ("0 0 */2 * 1", "Mon *-*-01/2 00:00:00"),
            ("0 12 * 1-3,10-12 *", "*-01..03,10..12-* 12:00:00"),
            ("15,45 9,17 * * *", "*-*-* 09,17:15,45:00"),
        ] {
            assert_eq!(convert(cron), [calendar], "{cron}");
        }
        // Both day fields restricted: the 1st of the month, or any Monday.
        assert_eq!(convert("0 3 1 * mon"), ["Mon *-*-* 03:00:00", "*-*-01 03:00:00"]);
        let berlin = on_calendar(&CronExpr::parse("0 2 * * *").unwrap(), Some("Europe/Berlin"));
        assert_eq!(berlin, ["*-*-* 02:00:00 Europe/Berlin"]);
    }

    #[test]
    fn exec_words_are_escaped_for_systemd() {
        assert_eq!(exec_quote("/usr/bin/cairn"), "/usr/bin/cairn");
        assert_eq!(exec_quote("/srv/my app/cairn.toml"), "\"/srv/my app/cairn.toml\"");
        assert_eq!(exec_quote("/srv/100%/$HOME"), "/srv/100%%/$$HOME");
        assert_eq!(exec_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(exec_quote(""), "\"\"");
    }

    /// What systemd itself makes of the converted lines: the normalized form is ours
    /// unchanged, and its next elapses (around clock changes too) are the runs
    /// [`CronExpr::next_after`] computes. Skipped where `systemd-analyze` is missing.
    #[test]
    fn systemd_analyze_agrees() {
        use chrono::{DateTime, NaiveDateTime, Utc};
        let probe = std::process::Command::new("systemd-analyze").arg("--version").output();
        if !probe.is_ok_and(|o| o.status.success()) {
            eprintln!("systemd-analyze not found: skipping the cross-check");
            return;
        }
        let exprs = [
            "0 8-18 * * 1-5",
            "30 2 * * *",
            "*/15 * * * *",
            "30 4 1 * *",
            "0 3 13 * fri",
            "0 0 */2 * 1",
            "5-20/5 1,2,3 * jan-mar,oct-dec sat,sun",
            "0 0 29 2 *",
        ];
        let bases = ["2026-03-28T12:00:00Z", "2026-10-24T12:00:00Z", "2026-03-07T12:00:00Z", "2026-11-23T12:34:56Z"];
        for zone in ["Europe/Berlin", "America/New_York"] {
            let tz: chrono_tz::Tz = zone.parse().unwrap();
            for cron in exprs {
                let expr = CronExpr::parse(cron).unwrap();
                for base in bases {
                    let base: DateTime<Utc> = base.parse().unwrap();
                    let mut theirs = Vec::new();
                    for line in on_calendar(&expr, Some(zone)) {
                        let out = std::process::Command::new("systemd-analyze")
                            .env("TZ", "UTC")
                            .args(["calendar", "--iterations=6"])
                            .arg(format!("--base-time={}", base.format("%Y-%m-%d %H:%M:%S UTC")))
                            .arg(&line)
                            .output()
                            .unwrap();
                        let text = String::from_utf8_lossy(&out.stdout);
                        assert!(text.contains(&format!("Normalized form: {line}\n")), "{cron} → {line}:\n{text}");
                        for l in text.lines() {
                            let l = l.trim();
                            if let Some((_, when)) = l
                                .split_once("Next elapse: ")
                                .or_else(|| l.split_once(": ").filter(|(k, _)| k.starts_with("Iter.")))
                            {
                                let when = when.trim_end_matches(" UTC");
                                let when = NaiveDateTime::parse_from_str(&when[4..], "%Y-%m-%d %H:%M:%S").unwrap();
                                theirs.push(when.and_utc());
                            }
                        }
                    }
                    theirs.sort();
                    theirs.dedup();
                    theirs.truncate(6);
                    assert_eq!(theirs.len(), 6, "{cron} in {zone} after {base}");
                    let mut ours = Vec::new();
                    let mut at = base.with_timezone(&tz);
                    for _ in 0..theirs.len() {
                        at = expr.next_after(&at, super::super::cron::Gap::Skip).unwrap();
                        ours.push(at.with_timezone(&Utc));
                    }
                    assert_eq!(ours, theirs, "{cron} in {zone} after {base}");
                }
            }
        }
    }
}
