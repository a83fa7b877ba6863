//! Running external tools (`pg_dump`, `mariadb-dump`, …) with their output streamed.
//!
//! A [`Tool`] is a program, its arguments, an optional command prefix (e.g. `docker exec -i
//! db`) and extra environment variables. Secrets go only into the environment of the child,
//! never into its arguments, and never into error messages: errors name the program, its
//! exit status and the last lines it printed on stderr.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;

use crate::SourceError;

/// Bytes of a tool's stderr kept for error messages (the tail).
const STDERR_KEPT: usize = 16 * 1024;
/// Lines of stderr quoted in an error message.
const STDERR_LINES: usize = 6;

/// An external program to run.
#[derive(Clone)]
pub struct Tool {
    prefix: Vec<String>,
    program: String,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
}

impl std::fmt::Debug for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Environment values may be secrets: only their names are shown.
        let env: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Tool").field("command", &self.describe()).field("env", &env).finish()
    }
}

impl Tool {
    /// `program` run through `prefix` (empty: run directly).
    pub fn new(prefix: &[String], program: impl Into<String>) -> Tool {
        Tool { prefix: prefix.to_vec(), program: program.into(), args: Vec::new(), env: Vec::new() }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Tool {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Tool {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Set an environment variable of the child (the place for passwords). With a prefix
    /// such as `docker exec`, the prefix must pass it on (`-e NAME`).
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Tool {
        self.env.push((name.into(), value.into()));
        self
    }

    /// The program's name as the user knows it, for messages.
    pub fn name(&self) -> &str {
        self.program.rsplit('/').next().unwrap_or(&self.program)
    }

    /// The command line, for messages (never contains secrets: those are in the environment).
    pub fn describe(&self) -> String {
        let mut words: Vec<String> = self.prefix.clone();
        words.push(self.program.clone());
        words.extend(self.args.iter().map(|a| a.to_string_lossy().into_owned()));
        words.join(" ")
    }

    fn command(&self) -> Command {
        let mut words = self.prefix.iter().map(OsString::from).chain([OsString::from(&self.program)]);
        let mut cmd = Command::new(words.next().expect("a program is always given"));
        cmd.args(words).args(&self.args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        cmd
    }

    fn spawn(&self, mut cmd: Command) -> Result<Running, SourceError> {
        let mut child = cmd.spawn().map_err(|e| {
            let first = self.prefix.first().unwrap_or(&self.program);
            if e.kind() == std::io::ErrorKind::NotFound {
                SourceError::with_hint(
                    format!("cannot run {}: {first} not found", self.name()),
                    format!("install it, or make sure it is on PATH ({first})"),
                )
            } else {
                SourceError::new(format!("cannot run {}: {e}", self.name()))
            }
        })?;
        let stderr = child.stderr.take().map(|mut err| {
            std::thread::spawn(move || {
                let mut tail = Vec::new();
                let mut buf = [0u8; 8192];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    tail.extend_from_slice(&buf[..n]);
                    if tail.len() > 2 * STDERR_KEPT {
                        tail.drain(..tail.len() - STDERR_KEPT);
                    }
                }
                String::from_utf8_lossy(&tail).into_owned()
            })
        });
        Ok(Running { name: self.name().to_string(), child, stderr })
    }

    /// Run to the end and return what it printed on stdout.
    pub fn output(&self) -> Result<String, SourceError> {
        let mut cmd = self.command();
        cmd.stdout(Stdio::piped());
        let mut running = self.spawn(cmd)?;
        let mut out = Vec::new();
        let read = running.child.stdout.take().expect("stdout is piped").read_to_end(&mut out);
        running.wait()?;
        read.map_err(|e| SourceError::new(format!("reading the output of {}: {e}", self.name())))?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Run with stdout piped to `consume`. The tool is killed if `consume` fails; an exit
    /// status other than 0 is an error even when `consume` succeeded.
    pub fn read_stdout<T>(
        &self,
        consume: impl FnOnce(&mut ChildStdout) -> Result<T, SourceError>,
    ) -> Result<T, SourceError> {
        let mut cmd = self.command();
        cmd.stdout(Stdio::piped());
        let mut running = self.spawn(cmd)?;
        let mut stdout = running.child.stdout.take().expect("stdout is piped");
        let result = consume(&mut stdout);
        drop(stdout);
        if result.is_err() {
            let _ = running.child.kill();
        }
        let status = running.wait();
        let value = result?;
        status?;
        Ok(value)
    }

    /// Run with stdin fed by `produce`; returns what it printed on stdout. The tool is
    /// killed if `produce` fails.
    pub fn write_stdin(
        &self,
        produce: impl FnOnce(&mut ChildStdin) -> Result<(), SourceError>,
    ) -> Result<String, SourceError> {
        let mut cmd = self.command();
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut running = self.spawn(cmd)?;
        let mut stdout = running.child.stdout.take().expect("stdout is piped");
        let out = std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = stdout.read_to_end(&mut out);
            out
        });
        let mut stdin = running.child.stdin.take().expect("stdin is piped");
        let result = produce(&mut stdin)
            .and_then(|()| stdin.flush().map_err(|e| SourceError::new(format!("writing to {}: {e}", running.name))));
        drop(stdin);
        // Did the tool stop by itself (then its complaint explains the broken pipe), or did
        // our side fail (then ours is the reason, not the kill below)?
        let tool_stopped = result.is_err() && matches!(running.child.try_wait(), Ok(Some(_)));
        if result.is_err() {
            let _ = running.child.kill();
        }
        let status = running.wait();
        let out = out.join().unwrap_or_default();
        match (result, status) {
            (Err(_), Err(status_err)) if tool_stopped => Err(status_err),
            (Err(e), _) => Err(e),
            (Ok(()), status) => status.map(|()| String::from_utf8_lossy(&out).into_owned()),
        }
    }

    /// Start with stdin and stdout piped, for a conversation (e.g. a `psql` session that
    /// holds a transaction open). Call [`Session::finish`] at the end.
    pub fn session(&self) -> Result<Session, SourceError> {
        let mut cmd = self.command();
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut running = self.spawn(cmd)?;
        let stdin = running.child.stdin.take().expect("stdin is piped");
        let stdout = std::io::BufReader::new(running.child.stdout.take().expect("stdout is piped"));
        Ok(Session { running, stdin: Some(stdin), stdout })
    }
}

struct Running {
    name: String,
    child: Child,
    stderr: Option<JoinHandle<String>>,
}

impl Running {
    /// Wait for the exit; a status other than 0 becomes an error quoting stderr's last lines.
    fn wait(&mut self) -> Result<(), SourceError> {
        let status = self.child.wait().map_err(|e| SourceError::new(format!("waiting for {}: {e}", self.name)))?;
        let stderr = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        if status.success() {
            return Ok(());
        }
        let said: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let said = said[said.len().saturating_sub(STDERR_LINES)..].join("\n  ");
        let how = match status.code() {
            Some(code) => format!("exited with status {code}"),
            None => "was killed by a signal".to_string(),
        };
        Err(SourceError::new(if said.is_empty() {
            format!("{} {how}", self.name)
        } else {
            format!("{} {how}:\n  {said}", self.name)
        }))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A tool is never left running behind an error.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A running tool with stdin and stdout piped.
pub struct Session {
    running: Running,
    stdin: Option<ChildStdin>,
    pub stdout: std::io::BufReader<ChildStdout>,
}

impl Session {
    pub fn stdin(&mut self) -> &mut ChildStdin {
        self.stdin.as_mut().expect("stdin is open until finish")
    }

    /// Close stdin and wait for the tool to exit.
    pub fn finish(mut self) -> Result<(), SourceError> {
        drop(self.stdin.take());
        self.running.wait()
    }
}

/// A file the tools can read, removed again when dropped: a temporary file on this machine,
/// or, when the tools run through a prefix (another machine, a container), one made where
/// they run, by `sh` and `mktemp` through the same prefix.
pub struct PlacedFile {
    path: String,
    held: Held,
}

enum Held {
    /// Removed when this is dropped.
    Here {
        _file: tempfile::TempPath,
    },
    There(Vec<String>),
}

impl PlacedFile {
    /// A file named `<name>.XXXXXX`, readable only by its owner, holding `content`.
    pub fn new(prefix: &[String], name: &str, content: &str) -> Result<PlacedFile, SourceError> {
        let failed =
            |e: &dyn std::fmt::Display| SourceError::new(format!("cannot write the temporary file {name}: {e}"));
        if prefix.is_empty() {
            let mut file = tempfile::Builder::new().prefix(&format!("{name}.")).tempfile().map_err(|e| failed(&e))?;
            file.write_all(content.as_bytes()).and_then(|()| file.flush()).map_err(|e| failed(&e))?;
            let path = file.path().to_string_lossy().into_owned();
            return Ok(PlacedFile { path, held: Held::Here { _file: file.into_temp_path() } });
        }
        let make = format!(
            "umask 077 && f=$(mktemp \"${{TMPDIR:-/tmp}}/{name}.XXXXXX\") && cat > \"$f\" && printf '%s' \"$f\""
        );
        let made = Tool::new(prefix, "sh")
            .args(["-c", make.as_str()])
            .write_stdin(|stdin| stdin.write_all(content.as_bytes()).map_err(|e| write_error("sh", &e)));
        let path = made.map_err(|e| failed(&e))?;
        if path.is_empty() || path.contains('\n') {
            return Err(failed(&format!("sh printed {path:?} for its name")));
        }
        Ok(PlacedFile { path, held: Held::There(prefix.to_vec()) })
    }

    /// Where the tools find it.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl Drop for PlacedFile {
    fn drop(&mut self) {
        // A file left behind is harmless (and in a temporary directory): no error to report.
        if let Held::There(prefix) = &self.held {
            let _ = Tool::new(prefix, "rm").args(["-f", "--", self.path.as_str()]).output();
        }
    }
}

/// Exit status check for writers into a pipe: a closed pipe means the tool stopped reading.
pub fn write_error(tool: &str, e: &std::io::Error) -> SourceError {
    SourceError::new(format!("writing to {tool}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_and_failure_with_stderr() {
        let out = Tool::new(&[], "sh").args(["-c", "echo hello"]).output().unwrap();
        assert_eq!(out, "hello\n");
        let err = Tool::new(&[], "sh").args(["-c", "echo one >&2; echo two >&2; exit 3"]).output().unwrap_err();
        let text = err.to_string();
        assert!(text.contains("sh exited with status 3"), "{text}");
        assert!(text.contains("one") && text.contains("two"), "{text}");
    }

    #[test]
    fn missing_program_is_named() {
        let err = Tool::new(&[], "/nonexistent/pg_dump").output().unwrap_err().to_string();
        assert!(err.contains("cannot run pg_dump"), "{err}");
        assert!(err.contains("hint:"), "{err}");
    }

    #[test]
    fn secrets_are_in_the_environment_only() {
        let tool = Tool::new(&[], "sh").args(["-c", "printf %s \"$SECRET_VAR\""]).env("SECRET_VAR", "s3cret");
        assert!(!tool.describe().contains("s3cret"));
        assert!(!format!("{tool:?}").contains("s3cret"));
        assert_eq!(tool.output().unwrap(), "s3cret");
    }

    #[test]
    fn prefix_runs_the_tool() {
        let out =
            Tool::new(&["env".to_string(), "FOO=bar".to_string()], "sh").args(["-c", "echo $FOO"]).output().unwrap();
        assert_eq!(out, "bar\n");
    }

    #[test]
    fn streams_in_and_out() {
        let n = Tool::new(&[], "sh")
            .args(["-c", "head -c 1000000 /dev/zero"])
            .read_stdout(|out| {
                let mut n = 0u64;
                let mut buf = [0u8; 65536];
                loop {
                    match out.read(&mut buf) {
                        Ok(0) => return Ok(n),
                        Ok(k) => n += k as u64,
                        Err(e) => return Err(SourceError::new(e.to_string())),
                    }
                }
            })
            .unwrap();
        assert_eq!(n, 1_000_000);
        let out = Tool::new(&[], "wc")
            .arg("-c")
            .write_stdin(|w| w.write_all(&[1u8; 4096]).map_err(|e| write_error("wc", &e)))
            .unwrap();
        assert_eq!(out.trim(), "4096");
    }

    #[test]
    fn failing_consumer_kills_the_tool() {
        let started = std::time::Instant::now();
        let err = Tool::new(&[], "sh")
            .args(["-c", "yes"])
            .read_stdout(|_| Err::<(), _>(SourceError::new("stop")))
            .unwrap_err();
        assert_eq!(err.to_string(), "stop");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn our_failure_is_reported_not_the_kill() {
        let err = Tool::new(&[], "cat").write_stdin(|_| Err(SourceError::new("blob damaged"))).unwrap_err();
        assert_eq!(err.to_string(), "blob damaged");
        let err = Tool::new(&[], "sh")
            .args(["-c", "echo refusing >&2; exit 5"])
            .write_stdin(|w| {
                std::thread::sleep(std::time::Duration::from_millis(200));
                w.write_all(&[0u8; 1 << 20]).map_err(|e| write_error("sh", &e))
            })
            .unwrap_err();
        assert!(err.to_string().contains("refusing"), "{err}");
    }
}
