//! When the daemon runs what: cron schedules in a time zone, the clock, and the planner.
//!
//! Everything here is pure logic over times handed in: no threads, no I/O, no config file.
//! The daemon (`crate::daemon`) owns the threads, the watcher and the socket and asks the
//! [`Planner`] what to start; the tests drive the same planner with a [`FakeClock`].
//!
//! - [`cron`]: cron expressions (five fields, Vixie semantics) and their next occurrence in
//!   a zone, daylight saving time handled by `croner`: a time skipped by a spring-forward
//!   fires at the first instant after the gap; a repeated autumn hour fires once.
//! - [`clock`]: the [`Clock`] seam, real and fake.
//! - [`planner`]: due runs, catch-up, jitter, debounce/cooldown, no overlap, concurrency cap.

pub mod clock;
pub mod cron;
pub mod planner;

#[cfg(test)]
pub use clock::FakeClock;
pub use clock::{Clock, SystemClock};
#[allow(unused_imports)] // check_zone: for `config check`, which the config owner wires
pub use cron::{check_cron, check_zone, Schedule, Zone};
pub use planner::{Answer, Planner, Spec, Start, Task, Trigger};
