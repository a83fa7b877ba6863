//! The clock seam: what time it is, and waiting for the next event until a deadline.
//!
//! The daemon never reads the time or sleeps on its own: it asks its [`Clock`]. The real one
//! is [`SystemClock`]; tests use [`FakeClock`], whose time moves only when the daemon would
//! otherwise wait (like tokio's paused time): a wait with nothing to receive jumps straight to
//! the deadline, or to the next timer a test set with [`FakeClock::at`]. No test sleeps.

#[cfg(test)]
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use crossbeam_channel::Receiver;

/// Longest single wait of the real clock. Waits use the monotonic clock, which stands still
/// while the machine is suspended; waking at least this often notices a suspend, or a change
/// of the wall clock, soon after it.
const MAX_WAIT: Duration = Duration::from_secs(30);

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;

    /// The next message of `rx`, or `None` once `deadline` is reached. May return `None`
    /// early (a spurious wake-up is harmless: the caller looks at the time again).
    fn recv_until<T>(&self, rx: &Receiver<T>, deadline: DateTime<Utc>) -> Option<T>;
}

/// The machine's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn recv_until<T>(&self, rx: &Receiver<T>, deadline: DateTime<Utc>) -> Option<T> {
        let wait = (deadline - Utc::now()).to_std().unwrap_or(Duration::ZERO).min(MAX_WAIT);
        rx.recv_timeout(wait).ok()
    }
}

#[cfg(test)]
type Timer = (DateTime<Utc>, Box<dyn FnOnce() + Send>);

/// A clock for tests: time moves when set, or when a wait finds nothing to receive.
#[cfg(test)]
#[derive(Clone)]
pub struct FakeClock {
    inner: Arc<Mutex<FakeInner>>,
}

#[cfg(test)]
struct FakeInner {
    now: DateTime<Utc>,
    timers: Vec<Timer>,
}

#[cfg(test)]
impl FakeClock {
    pub fn new(now: DateTime<Utc>) -> FakeClock {
        FakeClock { inner: Arc::new(Mutex::new(FakeInner { now, timers: Vec::new() })) }
    }

    pub fn set(&self, now: DateTime<Utc>) {
        self.inner.lock().expect("clock lock").now = now;
    }

    /// Run `f` (typically: send an event) when a wait reaches time `t`.
    pub fn at(&self, t: DateTime<Utc>, f: impl FnOnce() + Send + 'static) {
        self.inner.lock().expect("clock lock").timers.push((t, Box::new(f)));
    }

    /// The earliest timer due by `deadline`, taken out, with the clock moved to it.
    fn take_timer(&self, deadline: DateTime<Utc>) -> Option<Box<dyn FnOnce() + Send>> {
        let mut inner = self.inner.lock().expect("clock lock");
        let (i, &(t, _)) =
            inner.timers.iter().enumerate().filter(|(_, (t, _))| *t <= deadline).min_by_key(|(_, (t, _))| *t)?;
        inner.now = inner.now.max(t);
        Some(inner.timers.remove(i).1)
    }
}

#[cfg(test)]
impl Clock for FakeClock {
    fn now(&self) -> DateTime<Utc> {
        self.inner.lock().expect("clock lock").now
    }

    fn recv_until<T>(&self, rx: &Receiver<T>, deadline: DateTime<Utc>) -> Option<T> {
        loop {
            if let Ok(message) = rx.try_recv() {
                return Some(message);
            }
            match self.take_timer(deadline) {
                // Run it outside the lock: it may use the clock.
                Some(timer) => timer(),
                None => {
                    let mut inner = self.inner.lock().expect("clock lock");
                    inner.now = inner.now.max(deadline);
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn fake_waits_jump_to_timers_and_deadlines() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let clock = FakeClock::new(t0);
        let (tx, rx) = crossbeam_channel::unbounded();
        let tx2 = tx.clone();
        clock.at(t0 + chrono::Duration::seconds(30), move || tx2.send("timer").unwrap());
        tx.send("queued").unwrap();
        let deadline = t0 + chrono::Duration::minutes(1);
        assert_eq!(clock.recv_until(&rx, deadline), Some("queued"));
        assert_eq!(clock.now(), t0, "a message waiting does not move time");
        assert_eq!(clock.recv_until(&rx, deadline), Some("timer"));
        assert_eq!(clock.now(), t0 + chrono::Duration::seconds(30));
        assert_eq!(clock.recv_until(&rx, deadline), None);
        assert_eq!(clock.now(), deadline);
    }
}
