//! Notifications: telling people and monitors how a job's runs went.
//!
//! A job's `notify` rules name `[notifiers.NAME]` channels and the events each hears about;
//! [`deliver`] sends one [`Message`] to every rule that wants its event. The channels are
//! ntfy, a generic JSON webhook, Slack, Discord and health-check pings (`http`), and e-mail
//! over SMTP (`email`). docs/notifications.md documents what each one sends.
//!
//! What holds here:
//! - **A notification never fails a backup.** `deliver` returns the failures as text and
//!   logs them; it has no error type, and network trouble cannot make it panic.
//! - **Failed deliveries are retried** with exponential backoff, a bounded number of times
//!   within a bounded time ([`Retry`]); answers that retrying cannot change (a 404, a wrong
//!   password, a config mistake) are not retried.
//! - **Secrets stay inside.** URLs (Slack, Discord and health-check URLs *are* credentials),
//!   tokens, header values and passwords never reach a log line or a returned failure: a
//!   target is shown as scheme and host, and every error text is scrubbed of the notifier's
//!   secrets before it leaves this module.
//!
//! This module does not decide *when* to notify (the backup command and the daemon do) and
//! does not read the config file (it gets the loaded [`Config`]).

mod email;
mod http;
mod message;
#[cfg(test)]
mod testkit;

use std::time::{Duration, Instant};

pub use message::Message;

use crate::config::{Config, NotifierConfig, NotifierKind, NotifyEvent, NotifyRule};

/// Seconds one attempt may take when the notifier sets no `timeout`.
const DEFAULT_TIMEOUT_SECS: u64 = 10;

/// How failed deliveries are retried: `attempts` in all, waiting `base`, then twice as long
/// after each further failure (at most `max_delay`), and no attempt started later than
/// `budget` after the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub attempts: u32,
    pub base: Duration,
    pub max_delay: Duration,
    pub budget: Duration,
}

impl Default for Retry {
    /// 4 attempts, 2 s, 4 s and 8 s apart, all started within 2 minutes.
    fn default() -> Retry {
        Retry {
            attempts: 4,
            base: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
            budget: Duration::from_secs(120),
        }
    }
}

impl Retry {
    /// The wait before retry number `n` (1 is the first retry).
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max_delay)
    }
}

/// Why one attempt failed. `message` may still hold secrets: callers scrub it.
#[derive(Debug)]
pub(crate) struct SendError {
    pub message: String,
    /// Could another attempt succeed (a timeout, a 503), or not (a 404, a config mistake)?
    pub transient: bool,
}

impl SendError {
    pub fn transient(message: impl Into<String>) -> SendError {
        SendError { message: message.into(), transient: true }
    }

    pub fn permanent(message: impl Into<String>) -> SendError {
        SendError { message: message.into(), transient: false }
    }
}

/// The events a notifier hears about when its rule has no `on`.
pub fn default_events(kind: NotifierKind) -> &'static [NotifyEvent] {
    match kind {
        // A health check measures runs and alarms on silence itself: it wants every run.
        NotifierKind::Healthchecks => {
            &[NotifyEvent::Start, NotifyEvent::Success, NotifyEvent::Failure, NotifyEvent::Partial]
        }
        _ => &[NotifyEvent::Failure, NotifyEvent::Partial, NotifyEvent::Stale],
    }
}

/// Does `rule` (for a notifier of `kind`) want to hear about `event`?
pub fn wants(rule: &NotifyRule, kind: NotifierKind, event: NotifyEvent) -> bool {
    if rule.on.is_empty() {
        default_events(kind).contains(&event)
    } else {
        rule.on.contains(&event)
    }
}

/// Send `message` to every notifier of `rules` that wants its event, retrying failures
/// ([`Retry::default`]) and logging them to stderr. Returns one text per notifier that
/// could not be reached; never fails otherwise.
pub fn deliver(config: &Config, rules: &[NotifyRule], message: &Message) -> Vec<String> {
    deliver_with(config, rules, message, &Retry::default(), &|line| eprintln!("{line}"))
}

/// [`deliver`] with its retry policy and log sink given. Notifiers are served in parallel,
/// so one slow channel does not hold the others back. Failures: rules naming no notifier
/// first, then the others in rule order.
pub fn deliver_with(
    config: &Config,
    rules: &[NotifyRule],
    message: &Message,
    retry: &Retry,
    log: &(dyn Fn(&str) + Sync),
) -> Vec<String> {
    let mut chosen: Vec<&str> = Vec::new();
    let mut failures = Vec::new();
    for rule in rules {
        let name = rule.notifier.as_str();
        match config.file.notifiers.get(name) {
            // `Config::check` makes this impossible for a loaded file; say so, do not panic.
            None => failures.push(format!("notifier {name}: no such notifier in {}", config.path.display())),
            Some(n) if wants(rule, n.kind, message.event) && !chosen.contains(&name) => chosen.push(name),
            Some(_) => {}
        }
    }
    for failure in &failures {
        log(&format!("warning: {failure}"));
    }
    std::thread::scope(|scope| {
        let running: Vec<_> = chosen
            .iter()
            .map(|&name| {
                let notifier = &config.file.notifiers[name];
                let one = move || deliver_one(config, name, notifier, message, retry, log);
                // No thread to be had (a process limit): deliver here, one after another.
                let thread = std::thread::Builder::new().spawn_scoped(scope, one).map_err(|_| one());
                (name, thread)
            })
            .collect();
        for (name, thread) in running {
            let result = match thread {
                Ok(thread) => thread.join().unwrap_or_else(|_| {
                    let failure = format!("notifier {name}: internal error while sending");
                    log(&format!("warning: {failure}"));
                    Err(failure)
                }),
                Err(result) => result,
            };
            failures.extend(result.err());
        }
    });
    failures
}

/// One notifier, with retries. The `Err` is the final failure, already logged.
fn deliver_one(
    config: &Config,
    name: &str,
    notifier: &NotifierConfig,
    message: &Message,
    retry: &Retry,
    log: &(dyn Fn(&str) + Sync),
) -> Result<(), String> {
    let secrets = secrets(notifier);
    let prefix = format!("notifier {name}: {}", target(notifier));
    let timeout = Duration::from_secs(notifier.timeout.unwrap_or(DEFAULT_TIMEOUT_SECS).max(1));
    let attempts = retry.attempts.max(1);
    let started = Instant::now();
    let mut attempt = 1;
    loop {
        let error = match send(config, notifier, message, timeout) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let reason = scrub(&error.message, &secrets);
        let delay = retry.delay(attempt);
        let again = error.transient && attempt < attempts && started.elapsed() + delay <= retry.budget;
        if !again {
            let failure = if attempt == 1 {
                format!("{prefix}: {reason}")
            } else {
                format!("{prefix}: failed after {attempt} attempts: {reason}")
            };
            log(&format!("warning: {failure}"));
            return Err(failure);
        }
        log(&format!(
            "warning: {prefix}: {reason}; retrying in {} (attempt {attempt} of {attempts})",
            crate::output::duration(delay.as_secs_f64())
        ));
        std::thread::sleep(delay);
        attempt += 1;
    }
}

/// One attempt through the notifier's channel.
fn send(config: &Config, notifier: &NotifierConfig, message: &Message, timeout: Duration) -> Result<(), SendError> {
    match notifier.kind {
        NotifierKind::Email => email::send(config, notifier, message, timeout, &[]),
        _ => http::send(notifier, message, timeout),
    }
}

/// Where a notifier sends to, safe to show: `ntfy https://ntfy.sh`, `email smtp.example:587`.
fn target(notifier: &NotifierConfig) -> String {
    match (notifier.kind, &notifier.url) {
        (NotifierKind::Email, _) => format!("email {}", email::server(notifier)),
        (kind, Some(url)) => format!("{} {}", kind.name(), origin(&url.0 .0)),
        (kind, None) => kind.name().to_string(),
    }
}

/// Scheme, host and port of a URL, without user, path or query: `https://hooks.slack.com`.
pub(crate) fn origin(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(URL not shown)".to_string();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    format!("{scheme}://{host}")
}

/// The secret values of a notifier: the URL and its parts after the host, the token, the
/// header values, the password. (A `password_file`'s content is the e-mail channel's to
/// keep out of its errors.)
fn secrets(notifier: &NotifierConfig) -> Vec<String> {
    let mut secrets = Vec::new();
    if let Some(url) = &notifier.url {
        let url = url.0 .0.as_str();
        secrets.push(url.to_string());
        if let Some((_, rest)) = url.split_once("://") {
            if let Some(i) = rest.find(['/', '?', '#']) {
                secrets.push(rest[i..].to_string());
            }
            if let Some((user, _)) = rest.split(['/', '?', '#']).next().unwrap_or_default().rsplit_once('@') {
                secrets.push(user.to_string());
            }
        }
    }
    secrets.extend(notifier.token.iter().map(|t| t.0 .0.clone()));
    secrets.extend(notifier.headers.values().map(|v| v.0 .0.clone()));
    secrets.extend(notifier.password.iter().map(|p| p.0 .0.clone()));
    // Longest first, so a URL is cut whole before its path is looked for. A secret of one
    // or two characters would cut ordinary words apart and protect nothing.
    secrets.retain(|s| s.len() > 2 && s != "/");
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets
}

/// `text` with every secret replaced by `***`.
pub(crate) fn scrub(text: &str, secrets: &[String]) -> String {
    secrets.iter().fold(text.to_string(), |text, secret| text.replace(secret.as_str(), "***"))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::testkit::{config_of, HttpSink};
    use super::*;

    fn rule(notifier: &str, on: &[NotifyEvent]) -> NotifyRule {
        NotifyRule { notifier: notifier.to_string(), on: on.to_vec() }
    }

    fn fast(attempts: u32) -> Retry {
        Retry {
            attempts,
            base: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
            budget: Duration::from_secs(10),
        }
    }

    /// Runs `deliver_with` and returns its failures and log lines.
    fn run(config: &Config, rules: &[NotifyRule], message: &Message, retry: Retry) -> (Vec<String>, Vec<String>) {
        let lines = Mutex::new(Vec::new());
        let failures =
            deliver_with(config, rules, message, &retry, &|line| lines.lock().unwrap().push(line.to_string()));
        (failures, lines.into_inner().unwrap())
    }

    #[test]
    fn events_by_default_and_by_rule() {
        use NotifyEvent::*;
        let plain = rule("ops", &[]);
        let heard: Vec<NotifyEvent> = [Start, Success, Partial, Failure, Stale]
            .into_iter()
            .filter(|e| wants(&plain, NotifierKind::Ntfy, *e))
            .collect();
        assert_eq!(heard, [Partial, Failure, Stale]);
        let heard: Vec<NotifyEvent> = [Start, Success, Partial, Failure, Stale]
            .into_iter()
            .filter(|e| wants(&plain, NotifierKind::Healthchecks, *e))
            .collect();
        assert_eq!(heard, [Start, Success, Partial, Failure]);
        let chosen = rule("ops", &[Success]);
        assert!(wants(&chosen, NotifierKind::Email, Success));
        assert!(!wants(&chosen, NotifierKind::Email, Failure));
    }

    #[test]
    fn backoff_doubles_and_is_bounded() {
        let retry = Retry::default();
        let delays: Vec<u64> = (1..=3).map(|n| retry.delay(n).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8]);
        assert_eq!(retry.delay(7), Duration::from_secs(60));
        assert_eq!(retry.delay(u32::MAX), Duration::from_secs(60));
        // The default policy's waits and attempts fit well inside its budget.
        let waits: Duration = (1..retry.attempts).map(|n| retry.delay(n)).sum();
        assert!(waits + Duration::from_secs(DEFAULT_TIMEOUT_SECS) * retry.attempts <= retry.budget);
        let huge = Retry { base: Duration::MAX, ..retry };
        assert_eq!(huge.delay(3), Duration::from_secs(60));
    }

    #[test]
    fn secrets_are_scrubbed_and_targets_show_only_the_origin() {
        let config = config_of(
            r#"
            [notifiers.hook]
            type = "webhook"
            url = "https://user:pw@hooks.example.com:8443/T0/B0/s3cr3t?key=abc"
            headers = { X-Api-Key = "k-123456" }
            "#,
        );
        let notifier = &config.file.notifiers["hook"];
        assert_eq!(target(notifier), "webhook https://hooks.example.com:8443");
        let secrets = secrets(notifier);
        let text = "POST https://user:pw@hooks.example.com:8443/T0/B0/s3cr3t?key=abc failed; \
                    path /T0/B0/s3cr3t?key=abc; key k-123456; user user:pw";
        let clean = scrub(text, &secrets);
        for secret in ["s3cr3t", "k-123456", "user:pw", "key=abc"] {
            assert!(!clean.contains(secret), "{clean}");
        }
        assert_eq!(origin("no url"), "(URL not shown)");
    }

    #[test]
    fn only_rules_that_want_the_event_are_served_once_each() {
        let sink = HttpSink::start(&[200]);
        let config = config_of(&format!(
            "[notifiers.hook]\ntype = \"webhook\"\nurl = \"{}\"\n[notifiers.other]\ntype = \"slack\"\nurl = \"{}\"\n",
            sink.url("/hook"),
            sink.url("/slack")
        ));
        let message = message::tests::partial();
        let rules = [
            rule("hook", &[]),
            rule("hook", &[NotifyEvent::Partial]),
            rule("other", &[NotifyEvent::Success]),
            rule("missing", &[]),
        ];
        let (failures, _) = run(&config, &rules, &message, fast(1));
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].starts_with("notifier missing: no such notifier"), "{failures:?}");
        let paths: Vec<String> = sink.requests().into_iter().map(|r| r.path).collect();
        assert_eq!(paths, ["/hook"]);
    }

    #[test]
    fn a_closed_port_is_retried_then_reported_without_secrets() {
        // Bind and drop a listener: nothing listens on its port any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = config_of(&format!(
            "[notifiers.ops]\ntype = \"ntfy\"\nurl = \"http://127.0.0.1:{port}/secret-topic\"\ntoken = \"tk_abcdef\"\n"
        ));
        let started = Instant::now();
        let (failures, log) = run(&config, &[rule("ops", &[])], &message::tests::partial(), fast(3));
        assert!(started.elapsed() >= Duration::from_millis(30), "two waits: 10 ms and 20 ms");
        assert_eq!(failures.len(), 1);
        let failure = &failures[0];
        assert!(
            failure.starts_with(&format!("notifier ops: ntfy http://127.0.0.1:{port}: failed after 3 attempts: ")),
            "{failure}"
        );
        assert_eq!(log.len(), 3, "{log:?}");
        assert!(log[0].contains("retrying in") && log[0].contains("(attempt 1 of 3)"), "{log:?}");
        assert_eq!(log[2], format!("warning: {failure}"));
        for line in log.iter().chain(&failures) {
            assert!(!line.contains("secret-topic") && !line.contains("tk_abcdef"), "{line}");
        }
    }

    #[test]
    fn server_errors_are_retried_until_delivered() {
        let sink = HttpSink::start(&[500, 500, 200]);
        let config = config_of(&format!("[notifiers.hook]\ntype = \"webhook\"\nurl = \"{}\"\n", sink.url("/in")));
        let (failures, log) = run(&config, &[rule("hook", &[])], &message::tests::partial(), fast(4));
        assert!(failures.is_empty(), "{failures:?}");
        assert_eq!(sink.requests().len(), 3);
        assert_eq!(log.len(), 2, "{log:?}");
        assert!(log[0].contains("the server answered 500"), "{log:?}");
    }

    #[test]
    fn client_errors_are_not_retried_and_attempts_are_bounded() {
        let sink = HttpSink::start(&[404]);
        let config = config_of(&format!("[notifiers.hook]\ntype = \"slack\"\nurl = \"{}\"\n", sink.url("/T1/B2/xyz")));
        let (failures, _) = run(&config, &[rule("hook", &[])], &message::tests::partial(), fast(4));
        assert_eq!(sink.requests().len(), 1);
        assert!(failures[0].contains("answered 404") && !failures[0].contains("xyz"), "{failures:?}");

        let sink = HttpSink::start(&[503]);
        let config = config_of(&format!("[notifiers.hook]\ntype = \"slack\"\nurl = \"{}\"\n", sink.url("/x")));
        let (failures, _) = run(&config, &[rule("hook", &[])], &message::tests::partial(), fast(3));
        assert_eq!(sink.requests().len(), 3);
        assert!(failures[0].contains("failed after 3 attempts"), "{failures:?}");
    }

    #[test]
    fn the_budget_stops_retries() {
        let sink = HttpSink::start(&[503]);
        let config = config_of(&format!("[notifiers.hook]\ntype = \"webhook\"\nurl = \"{}\"\n", sink.url("/x")));
        let retry = Retry {
            attempts: 10,
            base: Duration::from_millis(50),
            max_delay: Duration::from_secs(1),
            budget: Duration::from_millis(500),
        };
        let (failures, _) = run(&config, &[rule("hook", &[])], &message::tests::partial(), retry);
        // Waits of 50, 100 and 200 ms; after a fourth wait of 400 ms the fifth attempt would
        // start past the budget, so there is none.
        assert_eq!(sink.requests().len(), 4);
        assert!(failures[0].contains("failed after 4 attempts"), "{failures:?}");
    }
}
