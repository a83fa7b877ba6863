//! The channels that are one HTTP POST: ntfy, the generic webhook, Slack, Discord and
//! health-check pings.
//!
//! Each channel is a pure function from the message to a [`Post`]; [`post`] sends it. A 2xx
//! answer is success. Redirects are not followed: a redirected POST loses its body (or, for
//! 307/308, would carry it and its token to another place), so a 3xx is reported with a hint
//! to configure the final URL.

use std::io::Read;
use std::time::Duration;

use serde_json::json;

use super::{Message, SendError};
use crate::config::{NotifierConfig, NotifierKind, NotifyEvent};

/// Longest body ntfy shows as a message (longer ones become attachments).
const NTFY_MAX_BYTES: usize = 4096;
/// Discord rejects a `content` longer than 2000 characters (counted in UTF-16 units).
const DISCORD_MAX_UNITS: usize = 2000;
/// Slack truncates a `text` past 40 000 characters; stay well below.
const SLACK_MAX_CHARS: usize = 39_000;
/// healthchecks.io keeps the first 100 kB of a ping body.
const PING_MAX_BYTES: usize = 100_000;
const TRUNCATED: &str = "\n… (truncated)";

/// One request to make.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Post {
    pub url: String,
    pub content_type: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// Send `message` through an HTTP notifier (a health check ignores `stale`: it raises its
/// own alarm when pings stop).
pub(super) fn send(notifier: &NotifierConfig, message: &Message, timeout: Duration) -> Result<(), SendError> {
    let url = notifier.url.as_ref().map(|u| u.0 .0.as_str()).ok_or_else(|| SendError::permanent("`url` is missing"))?;
    let request = match notifier.kind {
        NotifierKind::Ntfy => ntfy(url, notifier, message),
        NotifierKind::Webhook => webhook(url, notifier, message),
        NotifierKind::Slack => slack(url, message),
        NotifierKind::Discord => discord(url, message),
        NotifierKind::Healthchecks => match healthchecks(url, message) {
            Some(request) => request,
            None => return Ok(()),
        },
        NotifierKind::Email => return Err(SendError::permanent("e-mail is not an HTTP channel")),
    };
    post(&request, timeout)
}

/// ntfy: the text as body; title, priority and tags as headers. Without a configured
/// priority, failures, partial runs and stale alarms are sent as high (4).
pub(super) fn ntfy(url: &str, notifier: &NotifierConfig, message: &Message) -> Post {
    let priority = notifier.priority.unwrap_or(match message.event {
        NotifyEvent::Start | NotifyEvent::Success => 3,
        NotifyEvent::Partial | NotifyEvent::Failure | NotifyEvent::Stale => 4,
    });
    // ntfy shows these tag names as emoji.
    let emoji = match message.event {
        NotifyEvent::Start => "arrow_forward",
        NotifyEvent::Success => "white_check_mark",
        NotifyEvent::Partial => "warning",
        NotifyEvent::Failure => "x",
        NotifyEvent::Stale => "hourglass",
    };
    let tags: Vec<&str> = std::iter::once(emoji).chain(notifier.tags.iter().map(String::as_str)).collect();
    let mut headers = vec![
        ("Title".to_string(), header_text(&message.title())),
        ("Priority".to_string(), priority.to_string()),
        ("Tags".to_string(), header_text(&tags.join(","))),
    ];
    if let Some(token) = &notifier.token {
        headers.push(("Authorization".to_string(), format!("Bearer {}", token.0 .0)));
    }
    let body = fit(&message.body(), NTFY_MAX_BYTES, char::len_utf8);
    Post { url: url.to_string(), content_type: "text/plain; charset=utf-8", headers, body }
}

/// The generic webhook: the message's JSON document and the configured headers.
pub(super) fn webhook(url: &str, notifier: &NotifierConfig, message: &Message) -> Post {
    let headers = notifier.headers.iter().map(|(name, value)| (name.clone(), value.0 .0.clone())).collect();
    Post { url: url.to_string(), content_type: "application/json", headers, body: message.json().to_string() }
}

/// Slack: the title in bold, the details in a code block (so nothing in an error message is
/// read as formatting). Slack wants `&`, `<` and `>` escaped.
pub(super) fn slack(url: &str, message: &Message) -> Post {
    let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let body = fit(&unfence(&message.body()), SLACK_MAX_CHARS, |_| 1);
    let text = format!("*{}*\n```{}```", escape(&message.title()), escape(&body));
    json_post(url, json!({ "text": text }))
}

/// Discord: like Slack, within Discord's 2000-character limit, and with mentions disabled
/// (an error message holding `@everyone` must not page a whole server).
pub(super) fn discord(url: &str, message: &Message) -> Post {
    let title = format!("**{}**\n```\n", message.title());
    let end = "```";
    let room = DISCORD_MAX_UNITS.saturating_sub(title.encode_utf16().count() + end.len());
    let body = fit(&unfence(&message.body()), room, char::len_utf16);
    json_post(url, json!({ "content": format!("{title}{body}{end}"), "allowed_mentions": { "parse": [] } }))
}

/// healthchecks.io: `start` pings `URL/start`, `success` pings `URL`, `failure` and
/// `partial` ping `URL/fail`, each with the text as body; `stale` sends nothing.
pub(super) fn healthchecks(url: &str, message: &Message) -> Option<Post> {
    let suffix = match message.event {
        NotifyEvent::Start => "/start",
        NotifyEvent::Success => "",
        NotifyEvent::Failure | NotifyEvent::Partial => "/fail",
        NotifyEvent::Stale => return None,
    };
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let mut ping = format!("{}{suffix}", base.trim_end_matches('/'));
    if let Some(query) = query {
        ping = format!("{ping}?{query}");
    }
    let body = fit(&message.body(), PING_MAX_BYTES, char::len_utf8);
    Some(Post { url: ping, content_type: "text/plain; charset=utf-8", headers: Vec::new(), body })
}

fn json_post(url: &str, body: serde_json::Value) -> Post {
    Post { url: url.to_string(), content_type: "application/json", headers: Vec::new(), body: body.to_string() }
}

/// Send one request; one attempt, bounded by `timeout` from connect to the end of the answer.
pub(super) fn post(request: &Post, timeout: Duration) -> Result<(), SendError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut builder = agent.post(&request.url).content_type(request.content_type);
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let mut response = builder.send(request.body.as_str()).map_err(|e| request_error(e, timeout))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let mut answer = Vec::new();
    let _ = response.body_mut().as_reader().take(200).read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    let answer = answer.lines().next().unwrap_or_default().trim();
    let mut text = format!("the server answered {} {}", status.as_u16(), status.canonical_reason().unwrap_or(""));
    if !answer.is_empty() {
        text = format!("{}: {answer}", text.trim_end());
    }
    if status.is_redirection() {
        text.push_str(" (redirects are not followed; configure the final URL)");
    }
    // Retrying helps when the server is busy or broken, not when it refuses the request.
    let code = status.as_u16();
    Err(SendError { message: text, transient: code >= 500 || code == 408 || code == 429 })
}

/// ureq's errors in words that name no URL (its `BadUri` quotes the URL whole).
fn request_error(error: ureq::Error, timeout: Duration) -> SendError {
    match error {
        ureq::Error::BadUri(_) => SendError::permanent("the URL is not valid"),
        ureq::Error::Http(_) => SendError::permanent("the URL or a header is not valid"),
        ureq::Error::Timeout(_) => SendError::transient(format!("no answer within {}s", timeout.as_secs())),
        ureq::Error::HostNotFound => SendError::transient("host not found"),
        ureq::Error::Io(e) => SendError::transient(format!("cannot connect: {e}")),
        other => SendError::transient(other.to_string()),
    }
}

/// Header values are visible ASCII: anything else becomes `?`.
fn header_text(text: &str) -> String {
    text.chars().map(|c| if (' '..='~').contains(&c) { c } else { '?' }).collect()
}

/// A code block inside the text would end the one it is put in.
fn unfence(text: &str) -> String {
    text.replace("```", "'''")
}

/// `text` cut to at most `max` units (as `measure` counts a character), marked when cut.
pub(super) fn fit(text: &str, max: usize, measure: fn(char) -> usize) -> String {
    let size = |s: &str| s.chars().map(measure).sum::<usize>();
    if size(text) <= max {
        return text.to_string();
    }
    let room = max.saturating_sub(size(TRUNCATED));
    let mut used = 0;
    let cut = text.char_indices().find(|(_, c)| {
        used += measure(*c);
        used > room
    });
    let kept = cut.map_or(text, |(i, _)| &text[..i]);
    format!("{kept}{TRUNCATED}")
}

#[cfg(test)]
mod tests {
    use super::super::message::tests::partial;
    use super::super::testkit::{config_of, HttpSink};
    use super::*;

    fn notifier(text: &str) -> NotifierConfig {
        config_of(text).file.notifiers.into_values().next().unwrap()
    }

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[test]
    fn ntfy_posts_text_with_title_priority_tags_and_token() {
        let sink = HttpSink::start(&[200]);
        let n = notifier(&format!(
            "[notifiers.phone]\ntype = \"ntfy\"\nurl = \"{}\"\npriority = 5\ntags = [\"backup\", \"prod\"]\ntoken = \"tk_secret\"\n",
            sink.url("/backups")
        ));
        send(&n, &partial(), TIMEOUT).unwrap();
        let requests = sink.requests();
        let r = &requests[0];
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/backups"));
        assert_eq!(r.header("title"), Some("cairn: backup app partly failed on web1"));
        assert_eq!(r.header("priority"), Some("5"));
        assert_eq!(r.header("tags"), Some("warning,backup,prod"));
        assert_eq!(r.header("authorization"), Some("Bearer tk_secret"));
        assert!(r.header("user-agent").unwrap().starts_with("cairn/"));
        assert_eq!(r.body, partial().body());
    }

    #[test]
    fn ntfy_defaults_and_limits() {
        let n = notifier("[notifiers.phone]\ntype = \"ntfy\"\nurl = \"https://ntfy.example/t\"\n");
        let mut m = partial();
        m.event = NotifyEvent::Success;
        m.host = "hôte".into();
        m.error = Some("x".repeat(10_000));
        let post = ntfy("https://ntfy.example/t", &n, &m);
        let header = |name: &str| post.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        assert_eq!(header("Priority").as_deref(), Some("3"));
        assert_eq!(header("Tags").as_deref(), Some("white_check_mark"));
        assert_eq!(header("Title").as_deref(), Some("cairn: backup app succeeded on h?te"));
        assert_eq!(header("Authorization"), None);
        assert!(post.body.len() <= NTFY_MAX_BYTES && post.body.ends_with("(truncated)"));
    }

    #[test]
    fn webhook_posts_the_json_document_with_its_headers() {
        let sink = HttpSink::start(&[204]);
        let n = notifier(&format!(
            "[notifiers.hook]\ntype = \"webhook\"\nurl = \"{}\"\nheaders = {{ X-Api-Key = \"k1\", X-Team = \"ops\" }}\n",
            sink.url("/in?source=cairn")
        ));
        send(&n, &partial(), TIMEOUT).unwrap();
        let r = &sink.requests()[0];
        assert_eq!(r.path, "/in?source=cairn");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!((r.header("x-api-key"), r.header("x-team")), (Some("k1"), Some("ops")));
        assert_eq!(r.json(), partial().json());
    }

    #[test]
    fn slack_and_discord_post_their_payloads() {
        let sink = HttpSink::start(&[200]);
        let mut m = partial();
        m.error = Some("a < b && ```x``` @everyone".into());
        let n = notifier(&format!("[notifiers.s]\ntype = \"slack\"\nurl = \"{}\"\n", sink.url("/services/T/B/x")));
        send(&n, &m, TIMEOUT).unwrap();
        let n = notifier(&format!("[notifiers.d]\ntype = \"discord\"\nurl = \"{}\"\n", sink.url("/api/webhooks/1/x")));
        send(&n, &m, TIMEOUT).unwrap();
        let requests = sink.requests();
        let text = requests[0].json()["text"].as_str().unwrap().to_string();
        assert!(text.starts_with("*cairn: backup app partly failed on web1*\n```Job:"), "{text}");
        assert!(text.contains("a &lt; b &amp;&amp; '''x''' @everyone") && text.ends_with("```"), "{text}");
        let doc = requests[1].json();
        assert_eq!(requests[1].path, "/api/webhooks/1/x");
        let content = doc["content"].as_str().unwrap();
        assert!(content.starts_with("**cairn: backup app partly failed on web1**\n```\nJob:"), "{content}");
        assert_eq!(doc["allowed_mentions"]["parse"], json!([]));
    }

    #[test]
    fn discord_content_stays_within_2000_characters() {
        let mut m = partial();
        m.error = Some("é😀".repeat(3000));
        let post = discord("http://127.0.0.1/x", &m);
        let content =
            serde_json::from_str::<serde_json::Value>(&post.body).unwrap()["content"].as_str().unwrap().to_string();
        assert!(content.encode_utf16().count() <= 2000, "{}", content.encode_utf16().count());
        assert!(content.ends_with("(truncated)```"), "{content}");
    }

    #[test]
    fn healthchecks_ping_start_success_and_fail() {
        let sink = HttpSink::start(&[200]);
        let url = sink.url("/ping/uuid-1234/");
        let n = notifier(&format!("[notifiers.hc]\ntype = \"healthchecks\"\nurl = \"{url}\"\n"));
        let mut m = partial();
        for event in [NotifyEvent::Start, NotifyEvent::Success, NotifyEvent::Failure, NotifyEvent::Partial] {
            m.event = event;
            send(&n, &m, TIMEOUT).unwrap();
        }
        m.event = NotifyEvent::Stale;
        send(&n, &m, TIMEOUT).unwrap();
        let requests = sink.requests();
        let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, ["/ping/uuid-1234/start", "/ping/uuid-1234", "/ping/uuid-1234/fail", "/ping/uuid-1234/fail"]);
        assert!(requests[2].body.contains("Outcome:    failure"), "{}", requests[2].body);
        let with_query = healthchecks("https://hc.example/p/k/slug?create=1", &m);
        assert_eq!(with_query, None);
        m.event = NotifyEvent::Failure;
        assert_eq!(
            healthchecks("https://hc.example/p/k/slug?create=1", &m).unwrap().url,
            "https://hc.example/p/k/slug/fail?create=1"
        );
    }

    #[test]
    fn answers_and_errors_in_words() {
        let sink = HttpSink::start(&[404, 302]);
        let n = notifier(&format!("[notifiers.s]\ntype = \"slack\"\nurl = \"{}\"\n", sink.url("/x")));
        let err = send(&n, &partial(), TIMEOUT).unwrap_err();
        assert_eq!(err.message, "the server answered 404 Not Found: no such topic");
        assert!(!err.transient);
        let err = send(&n, &partial(), TIMEOUT).unwrap_err();
        assert!(err.message.contains("302") && err.message.contains("redirects are not followed"), "{}", err.message);
        let err = post(&json_post("not a url", json!({})), TIMEOUT).unwrap_err();
        assert!(!err.transient && !err.message.contains("not a url"), "{}", err.message);
    }

    #[test]
    fn a_silent_server_times_out() {
        // Accepts the connection (the kernel backlog does) but never answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/x", listener.local_addr().unwrap());
        let started = std::time::Instant::now();
        let err = post(&json_post(&url, json!({})), Duration::from_secs(1)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(err.transient && err.message.contains("no answer within 1s"), "{}", err.message);
    }

    #[test]
    fn fit_cuts_at_character_boundaries() {
        assert_eq!(fit("short", 10, char::len_utf8), "short");
        let cut = fit(&"ü".repeat(100), 40, char::len_utf8);
        assert!(cut.len() <= 40 && cut.ends_with("(truncated)"), "{cut}");
    }
}
