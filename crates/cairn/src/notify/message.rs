//! What a notification says: [`Message`], built from a job's result, the start of a run or a
//! stale alarm, and its renderings: a title and a plain-text body that every channel shares,
//! and the JSON document of the generic webhook.
//!
//! The JSON field names are a contract (docs/notifications.md): fields are added, never
//! renamed or removed without raising [`JSON_VERSION`].

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use cairn_repo::{SourceEntry, SourceStatus};

use crate::config::NotifyEvent;
use crate::jobs::{JobResult, Outcome};
use crate::output;

/// Version of the webhook's JSON document.
pub const JSON_VERSION: u32 = 1;

/// One notification about one job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub event: NotifyEvent,
    pub job: String,
    pub host: String,
    /// What started the run: `schedule`, `manual`, `watch`, `catch-up`; empty for a stale
    /// alarm.
    pub trigger: String,
    /// The repository the run wrote to.
    pub repository: Option<String>,
    /// When the run started; for a stale alarm, when it was raised.
    pub time: DateTime<FixedOffset>,
    /// How long the run took (not for `start` and `stale`).
    pub duration_secs: Option<f64>,
    pub snapshot: Option<String>,
    /// Why the run failed as a whole (a hook, the repository, every source).
    pub error: Option<String>,
    /// Stale alarms: the last successful run, `None` if the job never succeeded.
    pub last_success: Option<DateTime<FixedOffset>>,
    pub sources: Vec<SourceLine>,
}

/// One source of a finished run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceLine {
    pub name: String,
    /// `files`, `sqlite`, `postgres`, `mysql`.
    pub kind: String,
    pub status: SourceStatus,
    /// Size of what was captured.
    pub total_bytes: u64,
    /// Bytes read from the source (unchanged files are not read).
    pub bytes_read: u64,
    /// Bytes the repository grew by, after dedup and compression.
    pub bytes_added: u64,
    pub duration_secs: f64,
    pub error: Option<String>,
}

impl From<&SourceEntry> for SourceLine {
    fn from(entry: &SourceEntry) -> SourceLine {
        SourceLine {
            name: entry.name.clone(),
            kind: entry.kind.clone(),
            status: entry.status,
            total_bytes: entry.stats.total_bytes,
            bytes_read: entry.stats.bytes_read,
            bytes_added: entry.stats.bytes_added,
            duration_secs: entry.stats.duration_secs,
            error: entry.error.clone(),
        }
    }
}

/// The event a finished run is.
pub fn event_of(outcome: Outcome) -> NotifyEvent {
    match outcome {
        Outcome::Success => NotifyEvent::Success,
        Outcome::Partial => NotifyEvent::Partial,
        Outcome::Failed => NotifyEvent::Failure,
    }
}

/// The event's name in the config file and the JSON document.
pub fn event_name(event: NotifyEvent) -> &'static str {
    match event {
        NotifyEvent::Start => "start",
        NotifyEvent::Success => "success",
        NotifyEvent::Partial => "partial",
        NotifyEvent::Failure => "failure",
        NotifyEvent::Stale => "stale",
    }
}

impl Message {
    /// A finished run, right after it ended (its start is now minus its duration).
    pub fn from_result(result: &JobResult, host: &str, trigger: &str) -> Message {
        let now = chrono::Local::now().fixed_offset();
        let took = chrono::Duration::milliseconds((result.duration_secs * 1000.0) as i64);
        Message {
            event: event_of(result.outcome),
            job: result.job.clone(),
            host: host.to_string(),
            trigger: trigger.to_string(),
            repository: Some(result.repository.clone()),
            time: now - took,
            duration_secs: Some(result.duration_secs),
            snapshot: result.snapshot.clone(),
            error: result.error.clone(),
            last_success: None,
            sources: result.sources.iter().map(SourceLine::from).collect(),
        }
    }

    /// A run that starts now (health checks measure run time from it).
    pub fn start(job: &str, host: &str, trigger: &str) -> Message {
        Message { trigger: trigger.to_string(), ..Message::bare(NotifyEvent::Start, job, host) }
    }

    /// The job has not succeeded since `last_success` (`None`: never).
    pub fn stale(job: &str, host: &str, last_success: Option<DateTime<FixedOffset>>) -> Message {
        Message { last_success, ..Message::bare(NotifyEvent::Stale, job, host) }
    }

    fn bare(event: NotifyEvent, job: &str, host: &str) -> Message {
        Message {
            event,
            job: job.to_string(),
            host: host.to_string(),
            trigger: String::new(),
            repository: None,
            time: chrono::Local::now().fixed_offset(),
            duration_secs: None,
            snapshot: None,
            error: None,
            last_success: None,
            sources: Vec::new(),
        }
    }

    /// One line: `cairn: backup app failed on web1`.
    pub fn title(&self) -> String {
        let what = match self.event {
            NotifyEvent::Start => "started",
            NotifyEvent::Success => "succeeded",
            NotifyEvent::Partial => "partly failed",
            NotifyEvent::Failure => "failed",
            NotifyEvent::Stale => "is stale",
        };
        format!("cairn: backup {} {what} on {}", self.job, self.host)
    }

    /// The details, one `Key: value` per line, then one line per source.
    pub fn body(&self) -> String {
        let mut fields: Vec<(&str, String)> = vec![
            ("Job", self.job.clone()),
            ("Host", self.host.clone()),
            ("Outcome", event_name(self.event).to_string()),
        ];
        if !self.trigger.is_empty() {
            fields.push(("Trigger", self.trigger.clone()));
        }
        if let Some(repo) = &self.repository {
            fields.push(("Repository", repo.clone()));
        }
        if self.event == NotifyEvent::Stale {
            let last = match self.last_success {
                Some(t) => format!("{} ({} ago)", when(t), ago(self.time - t)),
                None => "never".to_string(),
            };
            fields.push(("Last success", last));
            fields.push(("Checked", when(self.time)));
        } else {
            fields.push(("Started", when(self.time)));
        }
        if let Some(secs) = self.duration_secs {
            fields.push(("Duration", output::duration(secs)));
        }
        if let Some(id) = &self.snapshot {
            fields.push(("Snapshot", id.clone()));
        } else if matches!(self.event, NotifyEvent::Failure) {
            fields.push(("Snapshot", "none saved".to_string()));
        }
        if let Some(error) = &self.error {
            fields.push(("Error", error.clone()));
        }
        let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 2;
        let mut text = String::new();
        for (key, value) in fields {
            text.push_str(&format!("{:<width$}{}\n", format!("{key}:"), indent(&value, width)));
        }
        if !self.sources.is_empty() {
            text.push_str("\nSources:\n");
            for source in &self.sources {
                text.push_str(&format!("  {}\n", source_line(source)));
            }
        }
        text
    }

    /// The webhook's JSON document: every field of the message, plus `version`, `title`
    /// and `text` (the rendered body).
    pub fn json(&self) -> serde_json::Value {
        #[derive(Serialize)]
        struct Document<'a> {
            version: u32,
            title: String,
            text: String,
            #[serde(flatten)]
            message: &'a Message,
        }
        let doc = Document { version: JSON_VERSION, title: self.title(), text: self.body(), message: self };
        // Serializing plain data (strings, numbers, times) into a Value cannot fail.
        serde_json::to_value(doc).expect("a message serializes to JSON")
    }
}

/// `main-db (sqlite): ok, 1.2 MiB, read 1.2 MiB, added 34.0 KiB, 0.52s`.
fn source_line(s: &SourceLine) -> String {
    let status = match s.status {
        SourceStatus::Ok => "ok",
        SourceStatus::Partial => "partial",
        SourceStatus::Failed => "failed",
    };
    let mut line = format!("{} ({}): {status}", s.name, s.kind);
    if s.status != SourceStatus::Failed {
        line.push_str(&format!(
            ", {}, read {}, added {}, {}",
            output::bytes(s.total_bytes),
            output::bytes(s.bytes_read),
            output::bytes(s.bytes_added),
            output::duration(s.duration_secs)
        ));
    }
    if let Some(error) = &s.error {
        line.push_str(&format!(": {}", indent(error, 4)));
    }
    line
}

fn when(t: DateTime<FixedOffset>) -> String {
    t.format("%Y-%m-%d %H:%M:%S %:z").to_string()
}

/// `3d 4h`, `5h 10m`, `12m`.
fn ago(d: chrono::Duration) -> String {
    let mins = d.num_minutes().max(0);
    let (days, hours, mins) = (mins / 1440, mins / 60 % 24, mins % 60);
    match (days, hours) {
        (0, 0) => format!("{mins}m"),
        (0, _) => format!("{hours}h {mins}m"),
        _ => format!("{days}d {hours}h"),
    }
}

/// Continuation lines of a multi-line value start under its first line.
fn indent(value: &str, width: usize) -> String {
    value.trim_end().replace('\n', &format!("\n{}", " ".repeat(width)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn time(text: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(text).unwrap()
    }

    /// A partial run: one source ok, one failed.
    pub fn partial() -> Message {
        Message {
            event: NotifyEvent::Partial,
            job: "app".into(),
            host: "web1".into(),
            trigger: "schedule".into(),
            repository: Some("default".into()),
            time: time("2024-05-01T02:00:00+02:00"),
            duration_secs: Some(12.3),
            snapshot: Some("1a2b3c".into()),
            error: None,
            last_success: None,
            sources: vec![
                SourceLine {
                    name: "main-db".into(),
                    kind: "sqlite".into(),
                    status: SourceStatus::Ok,
                    total_bytes: 3 << 20,
                    bytes_read: 3 << 20,
                    bytes_added: 40 << 10,
                    duration_secs: 0.5,
                    error: None,
                },
                SourceLine {
                    name: "pg".into(),
                    kind: "postgres".into(),
                    status: SourceStatus::Failed,
                    total_bytes: 0,
                    bytes_read: 0,
                    bytes_added: 0,
                    duration_secs: 0.1,
                    error: Some("pg_dump: connection refused\nis the server running?".into()),
                },
            ],
        }
    }

    #[test]
    fn text_of_a_partial_run() {
        let m = partial();
        assert_eq!(m.title(), "cairn: backup app partly failed on web1");
        let expected = "\
Job:        app
Host:       web1
Outcome:    partial
Trigger:    schedule
Repository: default
Started:    2024-05-01 02:00:00 +02:00
Duration:   12.30s
Snapshot:   1a2b3c

Sources:
  main-db (sqlite): ok, 3.0 MiB, read 3.0 MiB, added 40.0 KiB, 0.50s
  pg (postgres): failed: pg_dump: connection refused
    is the server running?
";
        assert_eq!(m.body(), expected);
    }

    #[test]
    fn text_of_a_failure_and_a_stale_alarm() {
        let mut m = partial();
        m.event = NotifyEvent::Failure;
        m.snapshot = None;
        m.sources.clear();
        m.error = Some("the before hook failed (exit status: 1)".into());
        assert_eq!(m.title(), "cairn: backup app failed on web1");
        assert!(m.body().contains("Snapshot:   none saved\nError:      the before hook failed"), "{}", m.body());

        let mut stale = Message::stale("app", "web1", Some(time("2024-05-01T02:00:00+02:00")));
        stale.time = time("2024-05-04T06:30:00+02:00");
        assert_eq!(stale.title(), "cairn: backup app is stale on web1");
        let body = stale.body();
        assert!(body.contains("Last success: 2024-05-01 02:00:00 +02:00 (3d 4h ago)\n"), "{body}");
        assert!(!body.contains("Started") && !body.contains("Trigger"), "{body}");
        let never = Message::stale("app", "web1", None);
        assert!(never.body().contains("Last success: never\n"), "{}", never.body());
    }

    #[test]
    fn from_a_job_result() {
        let result = JobResult {
            job: "app".into(),
            repository: "offsite".into(),
            outcome: Outcome::Failed,
            snapshot: None,
            error: Some("every source failed; no snapshot was saved".into()),
            sources: Vec::new(),
            duration_secs: 2.0,
        };
        let m = Message::from_result(&result, "web1", "manual");
        assert_eq!(m.event, NotifyEvent::Failure);
        assert_eq!(m.repository.as_deref(), Some("offsite"));
        assert_eq!(m.trigger, "manual");
        let age = chrono::Local::now().fixed_offset() - m.time;
        assert!(age >= chrono::Duration::seconds(2) && age < chrono::Duration::seconds(60), "{age}");
        assert_eq!(event_of(Outcome::Success), NotifyEvent::Success);
        assert_eq!(event_of(Outcome::Partial), NotifyEvent::Partial);
    }

    #[test]
    fn json_field_names_are_stable() {
        let doc = partial().json();
        let keys: Vec<&str> = doc.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected = [
            "version",
            "title",
            "text",
            "event",
            "job",
            "host",
            "trigger",
            "repository",
            "time",
            "duration_secs",
            "snapshot",
            "error",
            "last_success",
            "sources",
        ];
        expected.sort_unstable();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(doc["version"], 1);
        assert_eq!(doc["event"], "partial");
        assert_eq!(doc["time"], "2024-05-01T02:00:00+02:00");
        assert_eq!(doc["error"], serde_json::Value::Null);
        let source = &doc["sources"][1];
        assert_eq!(source["name"], "pg");
        assert_eq!(source["status"], "failed");
        assert_eq!(doc["sources"][0]["bytes_added"], 40 << 10);
        let mut source_keys: Vec<&str> = doc["sources"][0].as_object().unwrap().keys().map(String::as_str).collect();
        source_keys.sort_unstable();
        assert_eq!(
            source_keys,
            ["bytes_added", "bytes_read", "duration_secs", "error", "kind", "name", "status", "total_bytes"]
        );
    }
}
