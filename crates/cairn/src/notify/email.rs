//! E-mail over SMTP (lettre on rustls): the title as subject, the text as a plain-text body,
//! to every address of `to`.
//!
//! `tls = "starttls"` (default, port 587) requires the upgrade: a server that does not offer
//! STARTTLS gets nothing, neither password nor mail. `tls = "tls"` (port 465) speaks TLS from
//! the first byte. `tls = "none"` (port 25) sends in clear text and is refused unless the
//! server is this machine (a local relay). Certificates are checked against the Mozilla
//! roots compiled in (webpki-roots).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{SmtpTransport, Transport};

use super::{scrub, Message, SendError};
use crate::config::{Config, NotifierConfig, SmtpTls};

/// `host:port` of the notifier's server (not a secret).
pub(super) fn server(notifier: &NotifierConfig) -> String {
    let host = notifier.host.as_ref().map_or("", |h| h.0.as_str());
    format!("{host}:{}", port(notifier))
}

fn port(notifier: &NotifierConfig) -> u16 {
    notifier.port.unwrap_or(match notifier.tls.unwrap_or(SmtpTls::Starttls) {
        SmtpTls::Starttls => 587,
        SmtpTls::Tls => 465,
        SmtpTls::None => 25,
    })
}

/// Send one mail. `roots` (PEM) are trusted besides the built-in ones (tests use their own
/// CA; the config file has no key for it yet).
pub(super) fn send(
    config: &Config,
    notifier: &NotifierConfig,
    message: &Message,
    timeout: Duration,
    roots: &[&[u8]],
) -> Result<(), SendError> {
    let host = notifier.host.as_ref().map(|h| h.0.as_str()).ok_or_else(|| SendError::permanent("`host` is missing"))?;
    let tls = notifier.tls.unwrap_or(SmtpTls::Starttls);
    if tls == SmtpTls::None && !is_local(host) {
        return Err(SendError::permanent(format!(
            "tls = \"none\" sends mail and password in clear text, so it is only allowed to localhost or \
             127.0.0.1, not {host}\nhint: use tls = \"starttls\" (port 587) or tls = \"tls\" (port 465)"
        )));
    }
    let password = password(config, notifier)?;
    let credentials = match (&notifier.username, &password) {
        (Some(user), Some(password)) => Some(Credentials::new(user.0.clone(), password.clone())),
        (None, None) => None,
        (Some(_), None) => {
            return Err(SendError::permanent("`username` is set but neither `password` nor `password_file`"))
        }
        (None, Some(_)) => return Err(SendError::permanent("a password is set but no `username`")),
    };
    let mail = mail(notifier, message)?;
    let mut builder = SmtpTransport::builder_dangerous(host)
        .port(port(notifier))
        .timeout(Some(timeout))
        .hello_name(ClientId::Domain(hello_name()));
    builder = match tls {
        SmtpTls::Starttls => builder.tls(Tls::Required(tls_parameters(host, roots)?)),
        SmtpTls::Tls => builder.tls(Tls::Wrapper(tls_parameters(host, roots)?)),
        SmtpTls::None => builder.tls(Tls::None),
    };
    if let Some(credentials) = credentials {
        builder = builder.credentials(credentials);
    }
    builder.build().send(&mail).map(|_| ()).map_err(|e| {
        let secrets: Vec<String> = password.into_iter().filter(|p| p.len() > 2).collect();
        smtp_error(&e, &secrets)
    })
}

/// The password from `password` or `password_file` (read now, so a rotated file is used).
fn password(config: &Config, notifier: &NotifierConfig) -> Result<Option<String>, SendError> {
    if let Some(password) = &notifier.password {
        return Ok(Some(password.0 .0.clone()));
    }
    let Some(file) = &notifier.password_file else { return Ok(None) };
    crate::settings::read_password_file(&config.path(&file.0))
        .map(Some)
        .map_err(|e| SendError::permanent(crate::exit::message(&e)))
}

fn mail(notifier: &NotifierConfig, message: &Message) -> Result<lettre::Message, SendError> {
    let address = |key: &str, text: &str| {
        text.parse::<Mailbox>()
            .map_err(|e| SendError::permanent(format!("`{key}` {text:?} is not an e-mail address ({e})")))
    };
    let from = notifier.from.as_deref().ok_or_else(|| SendError::permanent("`from` is missing"))?;
    if notifier.to.is_empty() {
        return Err(SendError::permanent("`to` lists no address"));
    }
    let from = address("from", from)?;
    let mut builder = lettre::Message::builder()
        .message_id(Some(message_id(from.email.domain())))
        .from(from)
        .subject(message.title())
        .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")).to_string())
        .header(ContentType::TEXT_PLAIN);
    for to in &notifier.to {
        builder = builder.to(address("to", to)?);
    }
    builder.body(message.body()).map_err(|e| SendError::permanent(format!("cannot build the mail: {e}")))
}

/// `<time.pid.count@domain-of-from>`: some providers refuse mail without a Message-ID, and
/// lettre would name `localhost` as its domain.
fn message_id(domain: &str) -> String {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let count = COUNT.fetch_add(1, Ordering::Relaxed);
    format!("<{nanos:x}.{:x}.{count}.cairn@{domain}>", std::process::id())
}

fn tls_parameters(host: &str, roots: &[&[u8]]) -> Result<TlsParameters, SendError> {
    let mut builder = TlsParameters::builder(host.to_string());
    for pem in roots {
        let root =
            Certificate::from_pem(pem).map_err(|e| SendError::permanent(format!("bad root certificate: {e}")))?;
        builder = builder.add_root_certificate(root);
    }
    builder.build_rustls().map_err(|e| SendError::permanent(format!("TLS setup for {host}: {e}")))
}

/// Our name in EHLO: this machine's host name.
fn hello_name() -> String {
    let name = crate::settings::hostname();
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name
    }
}

fn is_local(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A 5xx answer, a missing STARTTLS or a certificate problem will not go away by retrying;
/// a refused connection, a timeout or a 4xx answer may.
fn smtp_error(error: &lettre::transport::smtp::Error, secrets: &[String]) -> SendError {
    let text = scrub(&error.to_string(), secrets);
    let transient = !(error.is_permanent() || error.is_client() || error.is_tls() || refused_by_tls(error));
    SendError { message: text, transient }
}

/// rustls reports a certificate it does not trust as invalid data on the stream, which
/// lettre passes on as a network error.
fn refused_by_tls(error: &dyn std::error::Error) -> bool {
    let mut source = error.source();
    while let Some(e) = source {
        if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData) {
            return true;
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::super::message::tests::partial;
    use super::super::testkit::{base64_text, config_of, SmtpMode, SmtpSink, CA_PEM};
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);

    fn notifier(text: &str) -> (Config, NotifierConfig) {
        let config = config_of(text);
        let notifier = config.file.notifiers.values().next().unwrap().clone();
        (config, notifier)
    }

    #[test]
    fn plain_smtp_to_localhost_with_auth() {
        let sink = SmtpSink::start(SmtpMode::Plain);
        let (config, n) = notifier(&format!(
            "[notifiers.mail]\ntype = \"email\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
             username = \"cairn\"\npassword = \"hunter22\"\nfrom = \"Backups <backup@example.com>\"\n\
             to = [\"ops@example.com\", \"oncall@example.com\"]\n",
            sink.port()
        ));
        send(&config, &n, &partial(), TIMEOUT, &[]).unwrap();
        let mails = sink.mails();
        assert_eq!(mails.len(), 1);
        let mail = &mails[0];
        assert_eq!(mail.hello, hello_name());
        assert_eq!(mail.auth, Some(("cairn".to_string(), "hunter22".to_string())));
        assert_eq!(mail.from, "backup@example.com");
        assert_eq!(mail.to, ["ops@example.com", "oncall@example.com"]);
        assert!(!mail.tls);
        let data = &mail.data;
        assert!(data.contains("From: Backups <backup@example.com>\n"), "{data}");
        assert!(data.contains("To: ops@example.com, oncall@example.com\n"), "{data}");
        assert!(data.contains("Subject: cairn: backup app partly failed on web1\n"), "{data}");
        assert!(data.contains("Content-Type: text/plain; charset=utf-8\n"), "{data}");
        assert!(data.contains(".cairn@example.com>\n") && data.contains("Message-ID: <"), "{data}");
        let body = decoded_body(data);
        assert!(body.contains("Snapshot:   1a2b3c"), "{body}");
        assert!(body.contains("pg (postgres): failed: pg_dump: connection refused"), "{body}");
    }

    #[test]
    fn password_file_and_no_auth() {
        let sink = SmtpSink::start(SmtpMode::Plain);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("smtp-password");
        std::fs::write(&file, "from-file\nignored\n").unwrap();
        let (config, n) = notifier(&format!(
            "[notifiers.mail]\ntype = \"email\"\nhost = \"localhost\"\nport = {}\ntls = \"none\"\n\
             username = \"u\"\npassword_file = \"{}\"\nfrom = \"a@example.com\"\nto = [\"b@example.com\"]\n",
            sink.port(),
            file.display()
        ));
        send(&config, &n, &partial(), TIMEOUT, &[]).unwrap();
        assert_eq!(sink.mails()[0].auth, Some(("u".to_string(), "from-file".to_string())));

        let sink = SmtpSink::start(SmtpMode::Plain);
        let (config, n) = notifier(&format!(
            "[notifiers.mail]\ntype = \"email\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
             from = \"a@example.com\"\nto = [\"b@example.com\"]\n",
            sink.port()
        ));
        send(&config, &n, &partial(), TIMEOUT, &[]).unwrap();
        assert_eq!(sink.mails()[0].auth, None);
    }

    #[test]
    fn starttls_upgrades_before_authenticating() {
        let sink = SmtpSink::start(SmtpMode::StartTls);
        let (config, n) = notifier(&format!(
            "[notifiers.mail]\ntype = \"email\"\nhost = \"127.0.0.1\"\nport = {}\nusername = \"u\"\n\
             password = \"p4ss\"\nfrom = \"a@example.com\"\nto = [\"b@example.com\"]\n",
            sink.port()
        ));
        send(&config, &n, &partial(), TIMEOUT, &[CA_PEM]).unwrap();
        let mail = &sink.mails()[0];
        assert!(mail.tls, "the mail went in clear text");
        assert_eq!(mail.auth, Some(("u".to_string(), "p4ss".to_string())));
    }

    #[test]
    fn implicit_tls() {
        let sink = SmtpSink::start(SmtpMode::Tls);
        let (config, n) = notifier(&format!(
            "[notifiers.mail]\ntype = \"email\"\nhost = \"localhost\"\nport = {}\ntls = \"tls\"\n\
             from = \"a@example.com\"\nto = [\"b@example.com\"]\n",
            sink.port()
        ));
        send(&config, &n, &partial(), TIMEOUT, &[CA_PEM]).unwrap();
        assert!(sink.mails()[0].tls);
    }

    #[test]
    fn tls_is_never_given_up() {
        // A server without STARTTLS gets neither the password nor the mail.
        let sink = SmtpSink::start(SmtpMode::Plain);
        let (config, n) = notifier(&format!(
            "[notifiers.mail]\ntype = \"email\"\nhost = \"127.0.0.1\"\nport = {}\nusername = \"u\"\n\
             password = \"p4ss\"\nfrom = \"a@example.com\"\nto = [\"b@example.com\"]\n",
            sink.port()
        ));
        let err = send(&config, &n, &partial(), TIMEOUT, &[CA_PEM]).unwrap_err();
        assert!(err.message.contains("STARTTLS is not supported") && !err.transient, "{}", err.message);
        assert!(sink.mails().is_empty());
        // A certificate the client does not trust (no test CA given) stops it as well.
        let sink = SmtpSink::start(SmtpMode::StartTls);
        let (config, n) = notifier(&format!(
            "[notifiers.mail]\ntype = \"email\"\nhost = \"127.0.0.1\"\nport = {}\n\
             from = \"a@example.com\"\nto = [\"b@example.com\"]\n",
            sink.port()
        ));
        let err = send(&config, &n, &partial(), TIMEOUT, &[]).unwrap_err();
        assert!(err.message.contains("invalid peer certificate") && !err.transient, "{}", err.message);
        assert!(sink.mails().is_empty());
    }

    #[test]
    fn clear_text_only_to_this_machine() {
        let (config, n) = notifier(
            "[notifiers.mail]\ntype = \"email\"\nhost = \"smtp.example.com\"\ntls = \"none\"\n\
             from = \"a@example.com\"\nto = [\"b@example.com\"]\n",
        );
        let err = send(&config, &n, &partial(), TIMEOUT, &[]).unwrap_err();
        assert!(!err.transient);
        assert!(
            err.message.contains("only allowed to localhost or 127.0.0.1, not smtp.example.com"),
            "{}",
            err.message
        );
        assert_eq!(server(&n), "smtp.example.com:25");
        assert!(is_local("localhost") && is_local("127.0.0.1") && is_local("[::1]"));
        assert!(!is_local("10.0.0.1") && !is_local("mail.localhost.example"));
    }

    #[test]
    fn default_ports_and_config_mistakes() {
        let (config, n) = notifier(
            "[notifiers.mail]\ntype = \"email\"\nhost = \"smtp.example.com\"\nfrom = \"not an address\"\n\
             to = [\"b@example.com\"]\nusername = \"u\"\n",
        );
        assert_eq!(server(&n), "smtp.example.com:587");
        let err = send(&config, &n, &partial(), TIMEOUT, &[]).unwrap_err();
        assert!(err.message.contains("neither `password` nor `password_file`") && !err.transient, "{}", err.message);
        let n = NotifierConfig { username: None, ..n };
        let err = send(&config, &n, &partial(), TIMEOUT, &[]).unwrap_err();
        assert!(err.message.contains("`from` \"not an address\" is not an e-mail address"), "{}", err.message);
        let n = NotifierConfig { tls: Some(SmtpTls::Tls), ..n };
        assert_eq!(server(&n), "smtp.example.com:465");
    }

    #[test]
    fn refused_connections_are_transient() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (config, n) = notifier(&format!(
            "[notifiers.mail]\ntype = \"email\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
             username = \"u\"\npassword = \"s3cret-pw\"\nfrom = \"a@example.com\"\nto = [\"b@example.com\"]\n"
        ));
        let err = send(&config, &n, &partial(), TIMEOUT, &[]).unwrap_err();
        assert!(err.transient && !err.message.contains("s3cret-pw"), "{}", err.message);
    }

    /// The body after the headers, undoing quoted-printable or base64 if lettre chose one.
    fn decoded_body(data: &str) -> String {
        let (headers, body) = data.split_once("\n\n").unwrap();
        if headers.contains("Content-Transfer-Encoding: base64") {
            base64_text(body)
        } else if headers.contains("Content-Transfer-Encoding: quoted-printable") {
            body.replace("=\n", "").replace("=3D", "=").replace("=20", " ")
        } else {
            body.to_string()
        }
    }
}
