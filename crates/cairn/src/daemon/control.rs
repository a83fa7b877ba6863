//! The control socket: how `cairn run-now JOB` asks a running daemon to start a job.
//!
//! A Unix socket in the state directory (`daemon.sock`, in a directory only its owner may
//! enter), so only the daemon's user (and root) can talk to it. One JSON line each way per
//! connection: a [`Request`], then a [`Reply`]. Every read and write is bounded in time.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use crossbeam_channel::Sender;
use serde::{Deserialize, Serialize};

use super::Event;

pub const SOCKET: &str = "daemon.sock";

/// How long either side waits for the other.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Request {
    RunNow { job: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Started,
    Queued,
    AlreadyRunning,
    AlreadyQueued,
    NoSuchJob,
    ShuttingDown,
    BadRequest,
}

impl Status {
    /// Did the daemon take the request?
    pub fn accepted(self) -> bool {
        matches!(self, Status::Started | Status::Queued)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    pub status: Status,
    /// One line for people.
    pub message: String,
}

/// Listen on `path`. A socket file left by a daemon that died is replaced; one that a
/// living daemon answers on is an error.
pub fn bind(path: &Path) -> Result<UnixListener> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            bail!(
                "another cairn daemon is running with the control socket {}\nhint: stop it first, or give this one another --state-dir",
                path.display()
            );
        }
        std::fs::remove_file(path).with_context(|| format!("removing the stale socket {}", path.display()))?;
    }
    UnixListener::bind(path).with_context(|| format!("listening on {}", path.display()))
}

/// Answer requests on `listener` until the process ends: each connection in its own short
/// thread, the answer coming from the daemon's loop through `events`.
pub fn serve(listener: UnixListener, events: Sender<Event>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let events = events.clone();
        let _ = std::thread::Builder::new().name("control".into()).spawn(move || {
            let _ = answer(stream, &events);
        });
    }
}

fn answer(stream: UnixStream, events: &Sender<Event>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let mut line = String::new();
    BufReader::new((&stream).take(64 * 1024)).read_line(&mut line)?;
    let reply = match serde_json::from_str::<Request>(&line) {
        Err(e) => Reply { status: Status::BadRequest, message: format!("cannot read the request: {e}") },
        Ok(request) => {
            let (tx, rx) = crossbeam_channel::bounded(1);
            let asked = events.send(Event::Request(request, tx)).is_ok();
            match rx.recv_timeout(TIMEOUT) {
                Ok(reply) if asked => reply,
                _ => Reply { status: Status::ShuttingDown, message: "the daemon is stopping".into() },
            }
        }
    };
    let mut out = serde_json::to_vec(&reply).expect("reply serialises");
    out.push(b'\n');
    (&stream).write_all(&out)
}

/// Send `request` to the daemon listening on `path` and return its reply.
pub fn ask(path: &Path, request: &Request) -> Result<Reply> {
    let stream = UnixStream::connect(path).with_context(|| {
        format!(
            "no cairn daemon is listening on {}\nhint: start `cairn daemon`, and give run-now the same config and --state-dir",
            path.display()
        )
    })?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let mut out = serde_json::to_vec(request).expect("request serialises");
    out.push(b'\n');
    (&stream).write_all(&out).with_context(|| format!("sending to {}", path.display()))?;
    let mut line = String::new();
    BufReader::new((&stream).take(64 * 1024))
        .read_line(&mut line)
        .with_context(|| format!("waiting for the daemon's answer on {}", path.display()))?;
    serde_json::from_str(&line).with_context(|| format!("reading the daemon's answer {line:?}"))
}
