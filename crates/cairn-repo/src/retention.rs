//! Retention: which snapshots of a group a policy keeps, and why.
//!
//! The rules are restic's `forget` rules where the two overlap, so that people who know one
//! know the other:
//!
//! - Snapshots are considered newest first.
//! - `last = n` keeps the n newest.
//! - `hourly`/`daily`/`weekly`/`monthly`/`yearly = n` keep the newest snapshot of each of the
//!   n most recent hours/days/ISO weeks/months/years *that have a snapshot* (buckets are
//!   counted from the newest; empty periods do not use up the count).
//! - `within = d` keeps every snapshot taken within d of the group's newest snapshot (not of
//!   now, so a group that stopped being backed up is not emptied).
//! - `tags` keeps every snapshot carrying any of them.
//! - A snapshot kept by several rules is kept once, with every reason.
//!
//! Buckets use the wall-clock time in the offset recorded with each snapshot, as restic
//! does: around a DST change, the repeated hour (e.g. 02:00–03:00 twice in autumn) is one
//! hourly bucket, and the skipped hour in spring simply has no snapshots.

use chrono::{DateTime, Datelike, Duration, FixedOffset, Timelike};

/// How many snapshots of each kind to keep. Empty keeps nothing: callers must refuse it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub last: Option<u32>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
    pub within: Option<Duration>,
    pub tags: Vec<String>,
}

impl Policy {
    /// True when no rule is set (such a policy would remove everything).
    pub fn is_empty(&self) -> bool {
        *self == Policy::default()
    }
}

/// One snapshot as retention sees it.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub time: DateTime<FixedOffset>,
    pub tags: &'a [String],
}

/// The verdict on one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Decision {
    pub keep: bool,
    /// The rules that keep it, e.g. `last`, `daily 2026-11-23`, `within 30d`, `tag prod`.
    pub reasons: Vec<String>,
}

/// Apply `policy` to one group; returns one decision per candidate, in the given order.
pub fn apply(candidates: &[Candidate<'_>], policy: &Policy) -> Vec<Decision> {
    let mut decisions = vec![Decision::default(); candidates.len()];
    // Newest first; ties keep their given order, so the result does not depend on sorting.
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|&a, &b| candidates[b].time.cmp(&candidates[a].time));

    if let Some(n) = policy.last {
        for &i in order.iter().take(n as usize) {
            decisions[i].reasons.push("last".into());
        }
    }
    type Bucket = fn(&DateTime<FixedOffset>) -> (i64, String);
    let periods: [(&str, Option<u32>, Bucket); 5] = [
        ("hourly", policy.hourly, |t| (hour_key(t), t.format("%Y-%m-%d %H:00").to_string())),
        ("daily", policy.daily, |t| (day_key(t), t.format("%Y-%m-%d").to_string())),
        ("weekly", policy.weekly, |t| {
            let w = t.iso_week();
            (i64::from(w.year()) * 100 + i64::from(w.week()), format!("{}-W{:02}", w.year(), w.week()))
        }),
        ("monthly", policy.monthly, |t| {
            (i64::from(t.year()) * 100 + i64::from(t.month()), t.format("%Y-%m").to_string())
        }),
        ("yearly", policy.yearly, |t| (i64::from(t.year()), t.format("%Y").to_string())),
    ];
    for (name, count, bucket) in periods {
        let Some(mut left) = count else { continue };
        let mut last_bucket = None;
        for &i in &order {
            if left == 0 {
                break;
            }
            let (key, label) = bucket(&candidates[i].time);
            if last_bucket != Some(key) {
                decisions[i].reasons.push(format!("{name} {label}"));
                last_bucket = Some(key);
                left -= 1;
            }
        }
    }
    if let (Some(within), Some(&newest)) = (policy.within, order.first()) {
        let since = candidates[newest].time - within;
        for &i in &order {
            if candidates[i].time >= since {
                decisions[i].reasons.push(format!("within {}", format_duration(within)));
            }
        }
    }
    for (i, c) in candidates.iter().enumerate() {
        if let Some(tag) = c.tags.iter().find(|t| policy.tags.contains(t)) {
            decisions[i].reasons.push(format!("tag {tag}"));
        }
    }
    for d in &mut decisions {
        d.keep = !d.reasons.is_empty();
    }
    decisions
}

/// Wall-clock hour in the snapshot's own offset, as a sortable number.
fn hour_key(t: &DateTime<FixedOffset>) -> i64 {
    day_key(t) * 100 + i64::from(t.hour())
}

fn day_key(t: &DateTime<FixedOffset>) -> i64 {
    i64::from(t.year()) * 10_000 + i64::from(t.month()) * 100 + i64::from(t.day())
}

/// `30d`, `12h`, `90m`: the largest unit that divides the duration.
pub fn format_duration(d: Duration) -> String {
    let minutes = d.num_minutes();
    if minutes % (24 * 60) == 0 {
        format!("{}d", minutes / (24 * 60))
    } else if minutes % 60 == 0 {
        format!("{}h", minutes / 60)
    } else {
        format!("{minutes}m")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(text).unwrap()
    }

    /// The times `policy` keeps out of `times`, newest first, with their reasons.
    fn kept(times: &[&str], policy: &Policy) -> Vec<(String, String)> {
        let no_tags: Vec<String> = Vec::new();
        let candidates: Vec<Candidate> = times.iter().map(|x| Candidate { time: t(x), tags: &no_tags }).collect();
        let decisions = apply(&candidates, policy);
        let mut out: Vec<(String, String)> = times
            .iter()
            .zip(&decisions)
            .filter(|(_, d)| d.keep)
            .map(|(x, d)| (x.to_string(), d.reasons.join(", ")))
            .collect();
        out.sort_by_key(|x| std::cmp::Reverse(t(&x.0)));
        out
    }

    fn times_of(kept: &[(String, String)]) -> Vec<&str> {
        kept.iter().map(|(x, _)| x.as_str()).collect()
    }

    #[test]
    fn several_snapshots_in_one_bucket_keep_the_newest() {
        let times = [
            "2026-11-20T01:00:00+01:00",
            "2026-11-20T13:00:00+01:00",
            "2026-11-20T23:00:00+01:00",
            "2026-11-21T08:00:00+01:00",
            "2026-11-21T09:00:00+01:00",
        ];
        let k = kept(&times, &Policy { daily: Some(2), ..Policy::default() });
        assert_eq!(times_of(&k), ["2026-11-21T09:00:00+01:00", "2026-11-20T23:00:00+01:00"]);
        assert_eq!(k[0].1, "daily 2026-11-21");
    }

    #[test]
    fn empty_buckets_do_not_use_up_the_count() {
        let times = ["2026-11-01T02:00:00+01:00", "2026-11-05T02:00:00+01:00", "2026-11-09T02:00:00+01:00"];
        let k = kept(&times, &Policy { daily: Some(3), ..Policy::default() });
        assert_eq!(k.len(), 3, "three days with snapshots, however far apart");
        let k = kept(&times, &Policy { daily: Some(2), ..Policy::default() });
        assert_eq!(times_of(&k), ["2026-11-09T02:00:00+01:00", "2026-11-05T02:00:00+01:00"]);
    }

    #[test]
    fn iso_week_53_spans_the_year_boundary() {
        // 2026 starts on a Thursday, so it has an ISO week 53: Mon 2026-12-28 to Sun 2027-01-03.
        let times = ["2026-12-27T12:00:00+01:00", "2026-12-29T12:00:00+01:00", "2027-01-02T12:00:00+01:00"];
        let k = kept(&times, &Policy { weekly: Some(5), ..Policy::default() });
        assert_eq!(
            k,
            [
                ("2027-01-02T12:00:00+01:00".to_string(), "weekly 2026-W53".to_string()),
                ("2026-12-27T12:00:00+01:00".to_string(), "weekly 2026-W52".to_string()),
            ]
        );
        // Monthly and yearly buckets split at the calendar boundary instead.
        let k = kept(&times, &Policy { monthly: Some(5), yearly: Some(5), ..Policy::default() });
        assert_eq!(k[0].1, "monthly 2027-01, yearly 2027");
        assert_eq!(k[1], ("2026-12-29T12:00:00+01:00".to_string(), "monthly 2026-12, yearly 2026".to_string()));
        assert_eq!(k.len(), 2);
    }

    #[test]
    fn dst_changes_use_the_recorded_wall_clock() {
        // Autumn (Europe/Berlin, 2026-10-25): 02:30 happens twice, first at +02:00, then at
        // +01:00; both are the wall-clock hour 02, one bucket, and the later one is kept.
        let autumn = ["2026-10-25T01:30:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-25T02:30:00+01:00"];
        let k = kept(&autumn, &Policy { hourly: Some(5), ..Policy::default() });
        assert_eq!(times_of(&k), ["2026-10-25T02:30:00+01:00", "2026-10-25T01:30:00+02:00"]);
        // Spring (2026-03-29): 02:00-03:00 does not exist; 01:30 and 03:30 are an hour
        // apart in real time but two different hours, both kept.
        let spring = ["2026-03-29T01:30:00+01:00", "2026-03-29T03:30:00+02:00"];
        assert_eq!(kept(&spring, &Policy { hourly: Some(2), ..Policy::default() }).len(), 2);
        // The 23-hour and 25-hour days are still one daily bucket each.
        let days = [
            "2026-03-29T00:10:00+01:00",
            "2026-03-29T23:50:00+02:00",
            "2026-10-25T00:10:00+02:00",
            "2026-10-25T23:50:00+01:00",
        ];
        let k = kept(&days, &Policy { daily: Some(10), ..Policy::default() });
        assert_eq!(times_of(&k), ["2026-10-25T23:50:00+01:00", "2026-03-29T23:50:00+02:00"]);
    }

    #[test]
    fn rules_combine_and_a_snapshot_is_kept_once_with_every_reason() {
        let times = ["2026-11-01T10:00:00Z", "2026-11-02T10:00:00Z", "2026-11-03T10:00:00Z", "2026-11-03T11:00:00Z"];
        let policy = Policy { last: Some(1), daily: Some(2), ..Policy::default() };
        let k = kept(&times, &policy);
        assert_eq!(
            k,
            [
                ("2026-11-03T11:00:00Z".to_string(), "last, daily 2026-11-03".to_string()),
                ("2026-11-02T10:00:00Z".to_string(), "daily 2026-11-02".to_string()),
            ]
        );
    }

    #[test]
    fn within_counts_from_the_newest_snapshot_not_from_now() {
        let times = ["2020-01-01T00:00:00Z", "2020-01-20T00:00:00Z", "2020-01-31T00:00:00Z"];
        let policy = Policy { within: Duration::try_days(15), ..Policy::default() };
        let k = kept(&times, &policy);
        assert_eq!(times_of(&k), ["2020-01-31T00:00:00Z", "2020-01-20T00:00:00Z"]);
        assert_eq!(k[0].1, "within 15d");
    }

    #[test]
    fn tags_keep_whatever_else_happens() {
        let prod = vec!["prod".to_string()];
        let none: Vec<String> = Vec::new();
        let candidates = [
            Candidate { time: t("2026-01-01T00:00:00Z"), tags: &prod },
            Candidate { time: t("2026-01-02T00:00:00Z"), tags: &none },
            Candidate { time: t("2026-01-03T00:00:00Z"), tags: &none },
        ];
        let d = apply(&candidates, &Policy { last: Some(1), tags: vec!["prod".into()], ..Policy::default() });
        assert_eq!(d.iter().map(|d| d.keep).collect::<Vec<_>>(), [true, false, true]);
        assert_eq!(d[0].reasons, ["tag prod"]);
    }

    #[test]
    fn an_empty_policy_is_recognised() {
        assert!(Policy::default().is_empty());
        assert!(!Policy { yearly: Some(1), ..Policy::default() }.is_empty());
        // And applied anyway, it keeps nothing: callers must refuse it.
        assert!(kept(&["2026-01-01T00:00:00Z"], &Policy::default()).is_empty());
    }

    #[test]
    fn the_classic_policy_over_a_year_of_hourly_backups() {
        // A snapshot every hour for 400 days, in a zone without DST.
        let start = t("2025-10-20T00:00:00+01:00");
        let times: Vec<String> = (0..400 * 24).map(|h| (start + Duration::hours(h)).to_rfc3339()).collect();
        let refs: Vec<&str> = times.iter().map(String::as_str).collect();
        let policy =
            Policy { hourly: Some(24), daily: Some(7), weekly: Some(4), monthly: Some(12), ..Policy::default() };
        let k = kept(&refs, &policy);
        let listing: Vec<String> = k.iter().map(|(x, why)| format!("{x}  {why}")).collect();
        insta::assert_snapshot!(listing.join("\n"));
    }
}
