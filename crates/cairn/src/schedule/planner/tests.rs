//! The planner's rules, driven by a fake clock: no test waits for real time.

use super::*;
use crate::schedule::{Clock, FakeClock, Zone};
use chrono::TimeZone;
use chrono_tz::Europe::Berlin;

fn berlin(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Berlin.with_ymd_and_hms(y, mo, d, h, mi, 0).earliest().unwrap().with_timezone(&Utc)
}

fn show(t: DateTime<Utc>) -> String {
    t.with_timezone(&Berlin).format("%a %d %H:%M:%S %Z").to_string()
}

fn job(name: &str) -> Task {
    Task::Job(name.to_string())
}

fn spec(exprs: &[&str]) -> Spec {
    let exprs: Vec<String> = exprs.iter().map(|s| s.to_string()).collect();
    Spec {
        schedule: Schedule::new(&exprs, Zone::Named(Berlin), None).unwrap(),
        jitter: Duration::ZERO,
        catch_up: false,
        debounce: Duration::from_secs(30),
        cooldown: Duration::from_secs(600),
    }
}

fn planner(specs: Vec<(Task, Spec)>, cap: usize, now: DateTime<Utc>) -> Planner {
    let mut p = Planner::new(cap, 42);
    p.configure(specs.into_iter().collect(), cap, now);
    p
}

/// The daemon's loop in miniature: poll, start what is due (each run takes `run_for`), and
/// wait (on the fake clock) for the next wake-up or the end of a run, until `until`.
/// Returns every start with its time.
fn simulate(
    p: &mut Planner,
    clock: &FakeClock,
    until: DateTime<Utc>,
    run_for: chrono::Duration,
) -> Vec<(DateTime<Utc>, Start)> {
    let mut starts = Vec::new();
    let mut ends: Vec<(DateTime<Utc>, Task)> = Vec::new();
    loop {
        let now = clock.now();
        ends.retain(|(end, task)| {
            let done = *end <= now;
            if done {
                p.finished(task);
            }
            !done
        });
        let poll = p.poll(now);
        for s in poll.start {
            ends.push((now + run_for, s.task.clone()));
            starts.push((now, s));
        }
        let next = poll.wake.into_iter().chain(ends.iter().map(|(e, _)| *e)).min();
        match next {
            Some(t) if t <= until => clock.set(t.max(now)),
            _ => return starts,
        }
    }
}

#[test]
fn several_schedules_per_job_fire_at_their_slots() {
    let t0 = berlin(2026, 1, 9, 17, 30); // a Friday
    let clock = FakeClock::new(t0);
    let mut p = planner(vec![(job("app"), spec(&["0 8-18 * * 1-5", "0 2 * * *"]))], 1, t0);
    let starts = simulate(&mut p, &clock, berlin(2026, 1, 12, 10, 0), chrono::Duration::minutes(5));
    let got: Vec<String> = starts.iter().map(|(t, s)| format!("{} {}", show(*t), s.trigger.name())).collect();
    assert_eq!(
        got,
        [
            "Fri 09 18:00:00 CET schedule",
            "Sat 10 02:00:00 CET schedule",
            "Sun 11 02:00:00 CET schedule",
            "Mon 12 02:00:00 CET schedule",
            "Mon 12 08:00:00 CET schedule",
            "Mon 12 09:00:00 CET schedule",
            "Mon 12 10:00:00 CET schedule",
        ]
    );
    assert!(starts.iter().all(|(t, s)| s.trigger == Trigger::Schedule { slot: *t }));
}

#[test]
fn dst_spring_forward_and_fall_back_in_berlin() {
    let t0 = berlin(2026, 3, 28, 12, 0);
    let clock = FakeClock::new(t0);
    let mut p = planner(vec![(job("night"), spec(&["30 2 * * *"]))], 1, t0);
    let got: Vec<String> = simulate(&mut p, &clock, berlin(2026, 3, 30, 12, 0), chrono::Duration::minutes(1))
        .into_iter()
        .map(|(t, _)| show(t))
        .collect();
    assert_eq!(
        got,
        ["Sun 29 03:00:00 CEST", "Mon 30 02:30:00 CEST"],
        "the skipped 02:30 runs once, right after the gap"
    );

    let t0 = berlin(2026, 10, 24, 12, 0);
    clock.set(t0);
    let mut p = planner(vec![(job("night"), spec(&["30 2 * * *"]))], 1, t0);
    let got: Vec<String> = simulate(&mut p, &clock, berlin(2026, 10, 26, 12, 0), chrono::Duration::minutes(1))
        .into_iter()
        .map(|(t, _)| show(t))
        .collect();
    assert_eq!(got, ["Sun 25 02:30:00 CEST", "Mon 26 02:30:00 CET"], "the repeated 02:30 runs once");
}

#[test]
fn jitter_delays_each_slot_within_its_bound_reproducibly() {
    let t0 = berlin(2026, 1, 1, 0, 0);
    let run = |seed: u64| {
        let clock = FakeClock::new(t0);
        let mut s = spec(&["0 * * * *"]);
        s.jitter = Duration::from_secs(300);
        let mut p = Planner::new(1, seed);
        p.configure([(job("app"), s)].into_iter().collect(), 1, t0);
        simulate(&mut p, &clock, berlin(2026, 1, 3, 0, 0), chrono::Duration::seconds(10))
    };
    let starts = run(7);
    assert_eq!(starts.len(), 47, "hourly from 01:00 on the 1st to 23:00 on the 2nd");
    let delays: Vec<i64> = starts
        .iter()
        .map(|(t, s)| match s.trigger {
            Trigger::Schedule { slot } => (*t - slot).num_milliseconds(),
            ref other => panic!("unexpected trigger {other:?}"),
        })
        .collect();
    assert!(delays.iter().all(|d| (0..=300_000).contains(d)), "{delays:?}");
    assert!(delays.iter().any(|d| *d > 150_000) && delays.iter().any(|d| *d < 150_000), "spread: {delays:?}");
    let again: Vec<DateTime<Utc>> = run(7).into_iter().map(|(t, _)| t).collect();
    assert_eq!(again, starts.iter().map(|(t, _)| *t).collect::<Vec<_>>(), "same seed, same delays");
    let other: Vec<DateTime<Utc>> = run(8).into_iter().map(|(t, _)| t).collect();
    assert_ne!(other, again, "another seed, other delays");
}

#[test]
fn catch_up_after_downtime_runs_once_not_once_per_missed_slot() {
    // Hourly job; the daemon was down from Monday 10:30 to Wednesday 09:15.
    let last_run = berlin(2026, 1, 12, 10, 5);
    let now = berlin(2026, 1, 14, 9, 15);
    let history: BTreeMap<Task, DateTime<Utc>> = [(job("app"), last_run)].into_iter().collect();
    let mut s = spec(&["0 * * * *"]);
    s.catch_up = true;
    let mut p = planner(vec![(job("app"), s.clone())], 1, now);
    assert!(p.catch_up(now, &history).is_empty());
    let poll = p.poll(now);
    assert_eq!(
        poll.start,
        [Start { task: job("app"), trigger: Trigger::CatchUp { missed: berlin(2026, 1, 14, 9, 0) } }]
    );
    p.finished(&job("app"));
    assert!(p.poll(now + chrono::Duration::minutes(1)).start.is_empty(), "once");
    assert_eq!(p.poll(now).wake, Some(berlin(2026, 1, 14, 10, 0)), "then the schedule goes on");

    // Without catch_up the miss is reported and nothing runs.
    s.catch_up = false;
    let mut p = planner(vec![(job("app"), s.clone())], 1, now);
    let notes = p.catch_up(now, &history);
    assert_eq!(notes, [Note::Missed { task: job("app"), slot: berlin(2026, 1, 14, 9, 0) }]);
    assert!(p.poll(now).start.is_empty());

    // Nothing was missed: the last run was after the last slot.
    s.catch_up = true;
    let mut p = planner(vec![(job("app"), s.clone())], 1, now);
    let recent: BTreeMap<Task, DateTime<Utc>> = [(job("app"), berlin(2026, 1, 14, 9, 2))].into_iter().collect();
    assert!(p.catch_up(now, &recent).is_empty());
    assert!(p.poll(now).start.is_empty());

    // No record at all (first start): nothing to catch up.
    let mut p = planner(vec![(job("app"), s)], 1, now);
    assert!(p.catch_up(now, &BTreeMap::new()).is_empty());
    assert!(p.poll(now).start.is_empty());
}

#[test]
fn a_machine_asleep_over_several_slots_runs_once_with_catch_up_else_reports() {
    let t0 = berlin(2026, 1, 12, 8, 30);
    for catch_up in [true, false] {
        let mut s = spec(&["0 * * * *"]);
        s.catch_up = catch_up;
        let mut p = planner(vec![(job("app"), s)], 1, t0);
        assert_eq!(p.poll(t0).wake, Some(berlin(2026, 1, 12, 9, 0)));
        // Asleep from 08:30 to 13:20: the loop's wait returns only then.
        let woke = berlin(2026, 1, 12, 13, 20);
        let poll = p.poll(woke);
        if catch_up {
            assert_eq!(
                poll.start,
                [Start { task: job("app"), trigger: Trigger::CatchUp { missed: berlin(2026, 1, 12, 9, 0) } }]
            );
        } else {
            assert!(poll.start.is_empty());
            assert_eq!(poll.notes, [Note::Missed { task: job("app"), slot: berlin(2026, 1, 12, 9, 0) }]);
        }
        assert_eq!(poll.wake, Some(berlin(2026, 1, 12, 14, 0)), "the slots in between are gone");
    }
    // A slot noticed a little late is just late.
    let mut p = planner(vec![(job("app"), spec(&["0 * * * *"]))], 1, t0);
    let poll = p.poll(berlin(2026, 1, 12, 9, 1));
    assert_eq!(
        poll.start,
        [Start { task: job("app"), trigger: Trigger::Schedule { slot: berlin(2026, 1, 12, 9, 0) } }]
    );
}

#[test]
fn a_running_job_never_runs_twice_at_once() {
    let t0 = berlin(2026, 1, 12, 8, 59);
    let mut p = planner(vec![(job("app"), spec(&["*/10 * * * *"]))], 2, t0);
    assert_eq!(p.run_now(&job("app")), Answer::Started);
    let started = p.poll(t0);
    assert_eq!(started.start.len(), 1);
    // Still running at the 09:00 slot: skipped, and said so.
    let at_nine = berlin(2026, 1, 12, 9, 0);
    let poll = p.poll(at_nine);
    assert!(poll.start.is_empty());
    assert_eq!(poll.notes, [Note::SkippedRunning { task: job("app"), slot: at_nine, since: t0 }]);
    assert!(poll.notes[0].to_string().contains("still running"), "{}", poll.notes[0]);
    // run-now is refused too, and not queued.
    assert_eq!(p.run_now(&job("app")), Answer::AlreadyRunning { since: t0 });
    assert_eq!(p.run_now(&job("nope")), Answer::NoSuchTask);
    p.finished(&job("app"));
    assert!(p.poll(at_nine + chrono::Duration::minutes(5)).start.is_empty(), "nothing was queued");
    assert_eq!(p.poll(berlin(2026, 1, 12, 9, 10)).start.len(), 1, "the next slot runs");
}

#[test]
fn the_concurrency_cap_queues_runs_first_come_first_served() {
    let t0 = berlin(2026, 1, 12, 1, 0);
    let specs = ["a", "b", "c"].iter().map(|n| (job(n), spec(&["0 2 * * *"]))).collect();
    let mut p = planner(specs, 2, t0);
    let two = berlin(2026, 1, 12, 2, 0);
    let poll = p.poll(two);
    let names: Vec<&Task> = poll.start.iter().map(|s| &s.task).collect();
    assert_eq!(names, [&job("a"), &job("b")]);
    // c waits; asking for it again says so, asking for a running one says that.
    assert_eq!(p.run_now(&job("c")), Answer::AlreadyQueued);
    assert!(matches!(p.run_now(&job("a")), Answer::AlreadyRunning { .. }));
    assert_eq!(p.running().count(), 2);
    assert!(p.poll(two + chrono::Duration::minutes(1)).start.is_empty());
    p.finished(&job("b"));
    let poll = p.poll(two + chrono::Duration::minutes(2));
    assert_eq!(poll.start, [Start { task: job("c"), trigger: Trigger::Schedule { slot: two } }]);
    // With both places taken, run-now queues and tells the position.
    let mut p = planner(["a", "b"].iter().map(|n| (job(n), spec(&[]))).collect(), 1, t0);
    assert_eq!(p.run_now(&job("a")), Answer::Started);
    assert_eq!(p.run_now(&job("b")), Answer::Queued { position: 2 });
    assert_eq!(p.poll(t0).start.len(), 1);
    assert_eq!(p.poll(t0).wake, None, "only the end of a run can start b");
}

#[test]
fn watched_changes_wait_for_quiet_and_for_the_cooldown() {
    let t0 = berlin(2026, 1, 12, 12, 0);
    let secs = chrono::Duration::seconds;
    let mut p = planner(vec![(job("db"), spec(&[]))], 1, t0);
    assert_eq!(p.poll(t0).wake, None);
    // A burst of changes: the run waits for 30 s without one.
    p.changed(&job("db"), t0);
    p.changed(&job("db"), t0 + secs(20));
    let poll = p.poll(t0 + secs(40));
    assert!(poll.start.is_empty());
    assert_eq!(poll.wake, Some(t0 + secs(50)));
    let poll = p.poll(t0 + secs(50));
    assert_eq!(poll.start, [Start { task: job("db"), trigger: Trigger::Watch }]);
    let run_start = t0 + secs(50);
    // A change during the run is kept: one more run after it, once the cooldown (10 min
    // from the last start) is over.
    p.changed(&job("db"), run_start + secs(5));
    assert!(p.poll(run_start + secs(60)).start.is_empty(), "still running");
    p.finished(&job("db"));
    let poll = p.poll(run_start + secs(70));
    assert!(poll.start.is_empty());
    assert_eq!(poll.wake, Some(run_start + secs(600)));
    assert_eq!(p.poll(run_start + secs(600)).start, [Start { task: job("db"), trigger: Trigger::Watch }]);
    p.finished(&job("db"));
    // Nothing changed since: nothing more.
    assert_eq!(p.poll(run_start + secs(2000)).wake, None);
}

#[test]
fn a_scheduled_run_covers_changes_made_before_it() {
    let t0 = berlin(2026, 1, 12, 1, 59);
    let mut p = planner(vec![(job("db"), spec(&["0 2 * * *"]))], 1, t0);
    p.changed(&job("db"), t0 + chrono::Duration::seconds(50));
    let poll = p.poll(berlin(2026, 1, 12, 2, 0));
    assert_eq!(poll.start.len(), 1);
    assert!(matches!(poll.start[0].trigger, Trigger::Schedule { .. }));
    p.finished(&job("db"));
    assert_eq!(p.poll(berlin(2026, 1, 12, 2, 30)).start, [], "the change was before the run started");
}

#[test]
fn reload_keeps_the_state_of_jobs_that_stay() {
    let t0 = berlin(2026, 1, 12, 12, 0);
    let mut p = planner(vec![(job("a"), spec(&[])), (job("b"), spec(&[]))], 1, t0);
    assert_eq!(p.run_now(&job("a")), Answer::Started);
    assert_eq!(p.run_now(&job("b")), Answer::Queued { position: 2 });
    p.poll(t0);
    // b is removed while queued, a changes its schedule while running.
    p.configure([(job("a"), spec(&["0 13 * * *"]))].into_iter().collect(), 1, t0);
    assert_eq!(p.run_now(&job("b")), Answer::NoSuchTask);
    assert_eq!(p.run_now(&job("a")), Answer::AlreadyRunning { since: t0 });
    p.finished(&job("a"));
    let poll = p.poll(t0 + chrono::Duration::minutes(1));
    assert!(poll.start.is_empty(), "b left the queue");
    assert_eq!(poll.wake, Some(berlin(2026, 1, 12, 13, 0)));
}
