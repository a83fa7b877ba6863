//! Test servers on 127.0.0.1 that record what the channels send: an HTTP server answering
//! with given status codes, and an SMTP sink (optionally STARTTLS or TLS, with the test CA in
//! `testdata/`, valid for 127.0.0.1 and localhost until 2126; its key is for these tests only).
//!
//! Every loop is bounded: a server stops when dropped, after [`LIFETIME`], or after
//! [`MAX_CONNECTIONS`]; every read has a timeout.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::Config;

const LIFETIME: Duration = Duration::from_secs(30);
const MAX_CONNECTIONS: usize = 50;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

pub const CA_PEM: &[u8] = include_bytes!("testdata/ca.pem");
const SERVER_PEM: &[u8] = include_bytes!("testdata/server.pem");
const SERVER_KEY: &[u8] = include_bytes!("testdata/server.key");

/// A config with `text` as its file, checked as `cairn` checks it.
pub fn config_of(text: &str) -> Config {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cairn.toml");
    std::fs::write(&path, text).unwrap();
    crate::config::load(&path).unwrap()
}

/// Accepts connections on 127.0.0.1:0 and hands each to `serve` until stopped.
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(serve: impl Fn(TcpStream) + Send + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut served = 0;
            while !stopped.load(Ordering::SeqCst) && started.elapsed() < LIFETIME && served < MAX_CONNECTIONS {
                match listener.accept() {
                    Ok((stream, _)) => {
                        served += 1;
                        stream.set_nonblocking(false).unwrap();
                        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
                        stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
                        serve(stream);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Server { port, stop, thread: Some(thread) }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One HTTP request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == &name.to_ascii_lowercase()).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// An HTTP server answering the n-th request with the n-th status (the last one repeats).
pub struct HttpSink {
    server: Server,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl HttpSink {
    pub fn start(statuses: &[u16]) -> HttpSink {
        let statuses = statuses.to_vec();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        let server = Server::start(move |mut stream| {
            let Some(request) = read_request(&mut stream) else { return };
            let n = {
                let mut seen = seen.lock().unwrap();
                seen.push(request);
                seen.len()
            };
            let status = statuses[(n - 1).min(statuses.len() - 1)];
            let body = if status < 300 { "ok" } else { "no such topic" };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        });
        HttpSink { server, requests }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.server.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

/// Request line, headers, and a body of `Content-Length` bytes.
fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut words = line.split_whitespace();
    let (method, path) = (words.next()?.to_string(), words.next()?.to_string());
    let mut headers = Vec::new();
    for _ in 0..100 {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let length: usize = headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok())?;
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request { method, path, headers, body: String::from_utf8(body).ok()? })
}

/// How the SMTP sink speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpMode {
    /// Plain text; no STARTTLS offered.
    Plain,
    /// Plain text, offering STARTTLS.
    StartTls,
    /// TLS from the first byte (port 465 style).
    Tls,
}

/// One mail transaction as received.
#[derive(Debug, Clone, Default)]
pub struct Mail {
    pub hello: String,
    /// `(user, password)` from AUTH PLAIN or LOGIN.
    pub auth: Option<(String, String)>,
    pub from: String,
    pub to: Vec<String>,
    /// The message text, dot-unstuffed, without the final `.`.
    pub data: String,
    /// Whether the transaction ran inside TLS.
    pub tls: bool,
}

/// A minimal SMTP server: 220, EHLO/HELO, STARTTLS, AUTH PLAIN/LOGIN, MAIL, RCPT, DATA,
/// RSET, NOOP, QUIT. It accepts every sender, recipient and password.
pub struct SmtpSink {
    server: Server,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpSink {
    pub fn start(mode: SmtpMode) -> SmtpSink {
        let mails = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&mails);
        let server = Server::start(move |stream| {
            let _ = serve_smtp(stream, mode, &seen);
        });
        SmtpSink { server, mails }
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

fn tls_config() -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs =
        vec![CertificateDer::from_pem_slice(SERVER_PEM).unwrap(), CertificateDer::from_pem_slice(CA_PEM).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(SERVER_KEY).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    Arc::new(config)
}

/// The sink's side of a connection, plain or inside TLS.
trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

fn serve_smtp(stream: TcpStream, mode: SmtpMode, mails: &Mutex<Vec<Mail>>) -> std::io::Result<()> {
    let mut tls = mode == SmtpMode::Tls;
    let mut conn: BufReader<Box<dyn Stream>> = if tls {
        let session = rustls::ServerConnection::new(tls_config()).map_err(std::io::Error::other)?;
        BufReader::new(Box::new(rustls::StreamOwned::new(session, stream)))
    } else {
        BufReader::new(Box::new(stream))
    };
    reply(&mut conn, "220 sink ESMTP")?;
    let mut mail = Mail::default();
    for _ in 0..100 {
        let line = read_line(&mut conn)?;
        let (verb, arg) = line.split_once(' ').unwrap_or((&line, ""));
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" => {
                mail.hello = arg.to_string();
                let starttls = if mode == SmtpMode::StartTls && !tls { "250-STARTTLS\r\n" } else { "" };
                reply(&mut conn, &format!("250-sink\r\n{starttls}250-AUTH PLAIN LOGIN\r\n250 8BITMIME"))?;
            }
            "HELO" => {
                mail.hello = arg.to_string();
                reply(&mut conn, "250 sink")?;
            }
            "STARTTLS" if mode == SmtpMode::StartTls && !tls => {
                reply(&mut conn, "220 go ahead")?;
                // Nothing was pipelined after STARTTLS, so the buffer is empty.
                let plain = conn.into_inner();
                let session = rustls::ServerConnection::new(tls_config()).map_err(std::io::Error::other)?;
                conn = BufReader::new(Box::new(rustls::StreamOwned::new(session, plain)));
                tls = true;
                mail = Mail::default();
            }
            "AUTH" => {
                mail.auth = Some(auth(&mut conn, arg)?);
                reply(&mut conn, "235 authenticated")?;
            }
            "MAIL" => {
                mail.from = address(arg);
                reply(&mut conn, "250 ok")?;
            }
            "RCPT" => {
                mail.to.push(address(arg));
                reply(&mut conn, "250 ok")?;
            }
            "DATA" => {
                reply(&mut conn, "354 end with .")?;
                let mut data = String::new();
                loop {
                    let line = read_line(&mut conn)?;
                    if line == "." {
                        break;
                    }
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                    data.push('\n');
                }
                mail.data = data;
                mail.tls = tls;
                mails.lock().unwrap().push(mail.clone());
                reply(&mut conn, "250 queued")?;
            }
            "RSET" | "NOOP" => reply(&mut conn, "250 ok")?,
            "QUIT" => return reply(&mut conn, "221 bye"),
            _ => reply(&mut conn, "502 not implemented")?,
        }
    }
    Ok(())
}

fn auth(conn: &mut BufReader<Box<dyn Stream>>, arg: &str) -> std::io::Result<(String, String)> {
    let (mechanism, initial) = arg.split_once(' ').unwrap_or((arg, ""));
    if mechanism.eq_ignore_ascii_case("LOGIN") {
        let user = if initial.is_empty() {
            reply(conn, "334 VXNlcm5hbWU6")?;
            read_line(conn)?
        } else {
            initial.to_string()
        };
        reply(conn, "334 UGFzc3dvcmQ6")?;
        let password = read_line(conn)?;
        return Ok((base64_text(&user), base64_text(&password)));
    }
    let response = if initial.is_empty() {
        reply(conn, "334 ")?;
        read_line(conn)?
    } else {
        initial.to_string()
    };
    // PLAIN: authzid NUL user NUL password.
    let decoded = base64_text(&response);
    let mut parts = decoded.split('\0').skip(1);
    Ok((parts.next().unwrap_or_default().to_string(), parts.next().unwrap_or_default().to_string()))
}

/// `FROM:<a@b> SIZE=1` → `a@b`.
fn address(arg: &str) -> String {
    arg.split_once('<').and_then(|(_, rest)| rest.split_once('>')).map(|(a, _)| a.to_string()).unwrap_or_default()
}

fn reply(conn: &mut BufReader<Box<dyn Stream>>, text: &str) -> std::io::Result<()> {
    let stream = conn.get_mut();
    stream.write_all(format!("{text}\r\n").as_bytes())?;
    stream.flush()
}

fn read_line(conn: &mut BufReader<Box<dyn Stream>>) -> std::io::Result<String> {
    let mut line = String::new();
    if conn.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Standard base64 (with padding) to text.
pub fn base64_text(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()) {
        let Some(value) = ALPHABET.iter().position(|a| *a == c) else { break };
        bits = (bits << 6) | value as u32;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn base64_decodes() {
    assert_eq!(base64_text("AHVzZXIAcGFzcw=="), "\0user\0pass");
    assert_eq!(base64_text("VXNlcm5hbWU6"), "Username:");
}
