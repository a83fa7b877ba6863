//! Exit codes, and the one place errors become them.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | error: nothing was done, or the check found problems |
//! | 2 | wrong command-line usage |
//! | 3 | partial: done, but some files could not be backed up or restored |
//! | 4 | `cairn status`: a job is stale, or its last run failed or was interrupted |
//! | 10 | no repository at the given location |
//! | 11 | wrong password or key file |
//! | 130 | interrupted |

use cairn_repo::RepoError;
use cairn_storage::StorageError;

pub const OK: u8 = 0;
pub const ERROR: u8 = 1;
pub const USAGE: u8 = 2;
pub const PARTIAL: u8 = 3;
pub const ALARM: u8 = 4;
pub const NO_REPOSITORY: u8 = 10;
pub const WRONG_KEY: u8 = 11;

/// A command finished but not everything worked; the message says what.
#[derive(Debug)]
pub struct Partial(pub String);

impl std::fmt::Display for Partial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Partial {}

/// `cairn status` found a job that needs attention; the message says which.
#[derive(Debug)]
pub struct Alarm(pub String);

impl std::fmt::Display for Alarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Alarm {}

/// An error's text with its causes, each said once. Most errors name their cause in their
/// own message (so that `{}` alone tells the whole story); anyhow's `{:#}` would then say the
/// cause twice.
pub fn message(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
    }
    text
}

/// Exit code for an error, and a hint for people where one helps.
pub fn classify(err: &anyhow::Error) -> (u8, Option<String>) {
    if err.downcast_ref::<Partial>().is_some() {
        return (PARTIAL, None);
    }
    if err.downcast_ref::<Alarm>().is_some() {
        return (ALARM, None);
    }
    for cause in err.chain() {
        if let Some(repo_err) = cause.downcast_ref::<RepoError>() {
            return match repo_err {
                RepoError::NotARepository { location } => (
                    NO_REPOSITORY,
                    Some(format!("create one with `cairn init --repo {location}`, or check --repo / $CAIRN_REPO")),
                ),
                RepoError::WrongKey { .. } => (
                    WRONG_KEY,
                    Some(
                        "check $CAIRN_PASSWORD, --password-file or --key-file; `cairn key list` shows the slots".into(),
                    ),
                ),
                RepoError::SnapshotNotFound(_) | RepoError::AmbiguousSnapshot { .. } => {
                    (ERROR, Some("`cairn snapshots` lists snapshot ids; 'latest' names the newest".into()))
                }
                RepoError::Storage(e) => (ERROR, Some(storage_hint(e))),
                RepoError::Corrupt { .. } | RepoError::MissingBlob(_) => (ERROR, Some(CHECK_HINT.into())),
                RepoError::NoSuchKey(_) | RepoError::AmbiguousKey { .. } => {
                    (ERROR, Some("`cairn key list` shows the key slot ids".into()))
                }
                _ => (ERROR, None),
            };
        }
    }
    (ERROR, None)
}

const CHECK_HINT: &str = "run `cairn check --read-data` to see what is damaged";

/// What to do about a repository object that could not be read or written. A write that
/// fails changes nothing the repository held (objects appear whole or not at all), so the
/// hint is about the place, not about damage; a read that fails may be damage.
fn storage_hint(e: &StorageError) -> String {
    use std::io::ErrorKind::{FileTooLarge, PermissionDenied, QuotaExceeded, ReadOnlyFilesystem, StorageFull};
    let StorageError::Io { location, op, source, .. } = e else { return CHECK_HINT.into() };
    let writing = matches!(*op, "write" | "delete");
    let intact = "what the repository already held is intact; run the command again once it is fixed";
    match source.kind() {
        StorageFull | QuotaExceeded if writing => {
            format!("{location} is full or over quota: free space there; {intact}")
        }
        FileTooLarge if writing => {
            format!("a file size limit refused a file in {location} (see `ulimit -f`); {intact}")
        }
        ReadOnlyFilesystem if writing => format!("{location} is on a read-only file system; {intact}"),
        PermissionDenied if writing => format!("cairn may not write in {location}: check its owner and mode; {intact}"),
        PermissionDenied => format!("cairn may not read in {location}: check its owner and mode"),
        _ if writing => format!("{location} did not take the write; {intact}"),
        _ => CHECK_HINT.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Like most errors here: its message names its cause, which is also its source.
    #[derive(Debug)]
    struct NamesItsCause {
        path: String,
        source: std::io::Error,
    }

    impl std::fmt::Display for NamesItsCause {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}: {}", self.path, self.source)
        }
    }

    impl std::error::Error for NamesItsCause {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    fn storage_failure(op: &'static str, kind: std::io::ErrorKind) -> anyhow::Error {
        let source = std::io::Error::from(kind);
        let e = StorageError::Io { location: "/mnt/repo".into(), key: "packs/ab/abc".into(), op, source };
        anyhow::Error::new(RepoError::Storage(e)).context("backup of /srv")
    }

    #[test]
    fn a_failed_write_points_at_the_place_and_never_at_damage() {
        use std::io::ErrorKind::*;
        for (kind, says) in [
            (StorageFull, "full"),
            (QuotaExceeded, "full or over quota"),
            (FileTooLarge, "ulimit -f"),
            (ReadOnlyFilesystem, "read-only"),
            (PermissionDenied, "may not write"),
            (TimedOut, "did not take the write"),
        ] {
            let (code, hint) = classify(&storage_failure("write", kind));
            let hint = hint.expect("a hint");
            assert_eq!(code, ERROR);
            assert!(hint.contains(says) && hint.contains("/mnt/repo"), "{kind:?}: {hint}");
            assert!(hint.contains("intact") && !hint.contains("damaged"), "{kind:?}: {hint}");
        }
    }

    #[test]
    fn a_failed_read_may_be_damage() {
        let (_, hint) = classify(&storage_failure("read", std::io::ErrorKind::Other));
        assert_eq!(hint.as_deref(), Some(CHECK_HINT));
        let (_, hint) = classify(&storage_failure("read", std::io::ErrorKind::PermissionDenied));
        assert!(hint.unwrap().contains("may not read in /mnt/repo"));
        let missing = StorageError::NotFound { location: "/mnt/repo".into(), key: "packs/ab/abc".into() };
        let (_, hint) = classify(&anyhow::Error::new(RepoError::Storage(missing)));
        assert_eq!(hint.as_deref(), Some(CHECK_HINT));
    }

    #[test]
    fn a_cause_is_said_once() {
        let full = std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device");
        let err = anyhow::Error::new(NamesItsCause { path: "/mnt/x".into(), source: full });
        assert_eq!(message(&err), "/mnt/x: No space left on device");
        let err = err.context("restoring to /mnt");
        assert_eq!(message(&err), "restoring to /mnt: /mnt/x: No space left on device");
        let plain = anyhow::anyhow!(std::io::Error::other("denied")).context("opening y");
        assert_eq!(message(&plain), "opening y: denied");
    }
}
