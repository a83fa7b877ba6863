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
                RepoError::Corrupt { .. } | RepoError::MissingBlob(_) | RepoError::Storage(_) => {
                    (ERROR, Some("run `cairn check --read-data` to see what is damaged".into()))
                }
                RepoError::NoSuchKey(_) | RepoError::AmbiguousKey { .. } => {
                    (ERROR, Some("`cairn key list` shows the key slot ids".into()))
                }
                _ => (ERROR, None),
            };
        }
    }
    (ERROR, None)
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
