//! A conversation with `psql`: statements go in on stdin, the answer is every line printed
//! before a marker line (`\echo`), and every wait for an answer has a time limit.
//!
//! The session keeps its transaction open between questions, which is what lets `pg_dump`
//! share its snapshot. A thread reads psql's output into a channel so that a wait can give
//! up; giving up (or any failure) ends psql, and with it the transaction.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError};

use crate::tool::{Session, Tool};
use crate::SourceError;

pub(super) struct Conversation {
    /// `None` once psql has ended.
    session: Option<Session>,
    lines: Receiver<String>,
    /// Markers sent so far; each answer ends with a new one.
    asked: u32,
}

impl Conversation {
    /// Start `psql` (see [`super::client::Client::psql`]).
    pub fn open(psql: &Tool) -> Result<Conversation, SourceError> {
        let session = psql.session()?;
        // A second handle on psql's stdout, read by a thread of its own; it ends when psql
        // does. The session's buffered reader is never used, so no output is lost to it.
        let stdout = session
            .stdout
            .get_ref()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| SourceError::new(format!("cannot read the output of psql: {e}")))?;
        let (tx, lines) = unbounded();
        std::thread::spawn(move || {
            for line in BufReader::new(File::from(stdout)).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Conversation { session: Some(session), lines, asked: 0 })
    }

    /// Send `sql` (statements and psql commands, each ending its line) and return the lines
    /// printed in answer, waiting at most `limit`.
    pub fn ask(&mut self, sql: &str, limit: Duration) -> Result<Vec<String>, SourceError> {
        self.asked += 1;
        // Answers are snapshot ids, numbers and JSON objects: none can look like this.
        let marker = format!("--cairn-answer-{}-{}--", std::process::id(), self.asked);
        let session = self.session.as_mut().ok_or_else(|| SourceError::new("psql has already ended"))?;
        let stdin = session.stdin();
        let sent = stdin.write_all(format!("{sql}\n\\echo {marker}\n").as_bytes()).and_then(|()| stdin.flush());
        if sent.is_err() {
            return Err(self.ended());
        }
        let deadline = Instant::now() + limit;
        let mut answer = Vec::new();
        loop {
            match self.lines.recv_deadline(deadline) {
                Ok(line) if line == marker => return Ok(answer),
                Ok(line) => answer.push(line),
                Err(RecvTimeoutError::Disconnected) => return Err(self.ended()),
                Err(RecvTimeoutError::Timeout) => {
                    // Dropping the session kills psql, which ends the transaction.
                    self.session = None;
                    return Err(SourceError::new(format!("psql gave no answer within {limit:?}")));
                }
            }
        }
    }

    /// End the transaction and psql.
    pub fn close(mut self) -> Result<(), SourceError> {
        let session = self.session.as_mut().ok_or_else(|| SourceError::new("psql has already ended"))?;
        let stdin = session.stdin();
        // A failed write shows in psql's exit status, which `finish` reports.
        let _ = stdin.write_all(b"COMMIT;\n").and_then(|()| stdin.flush());
        self.session.take().map_or(Ok(()), Session::finish)
    }

    /// psql stopped answering: its exit status and last words say why.
    fn ended(&mut self) -> SourceError {
        match self.session.take().map(Session::finish) {
            Some(Err(e)) => e,
            _ => SourceError::new("psql ended without answering"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers like psql: every line back, `\echo X` as `X`.
    fn echo() -> Tool {
        Tool::new(&[], "sed").args(["-u", "s/^.echo //"])
    }

    #[test]
    fn answers_end_at_the_marker() {
        let mut talk = Conversation::open(&echo()).unwrap();
        assert_eq!(talk.ask("one\ntwo", Duration::from_secs(10)).unwrap(), ["one", "two"]);
        assert_eq!(talk.ask("three", Duration::from_secs(10)).unwrap(), ["three"]);
        talk.close().unwrap();
    }

    #[test]
    fn a_silent_tool_is_given_up_on_in_time() {
        let started = Instant::now();
        let mut talk = Conversation::open(&Tool::new(&[], "sh").args(["-c", "exec sleep 60"])).unwrap();
        let err = talk.ask("SELECT 1;", Duration::from_millis(300)).unwrap_err().to_string();
        assert!(err.contains("no answer within 300ms"), "{err}");
        assert!(talk.ask("SELECT 1;", Duration::from_secs(1)).is_err());
        drop(talk);
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_tool_that_ends_says_why() {
        let mut talk = Conversation::open(&Tool::new(&[], "sh").args(["-c", "echo 'FATAL: no' >&2; exit 3"])).unwrap();
        let err = talk.ask("SELECT 1;", Duration::from_secs(10)).unwrap_err().to_string();
        assert!(err.contains("exited with status 3") && err.contains("FATAL: no"), "{err}");
    }
}
