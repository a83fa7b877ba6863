//! cairn source adapters.
//!
//! Each module captures one kind of data store into a repository through the engine's
//! writer API, and restores it again. Adapters know how their store is read and written;
//! they know nothing of the repository's byte layout, the command line or config files.
//!
//! The folder source ([`files`]) stores directory trees. The database sources store their
//! capture as named streams (a page stream, a dump per database) in one flat tree
//! ([`streams`]), so every capture can also be extracted as plain files. External dump tools
//! run through [`tool`], which keeps secrets out of their command lines.

pub mod files;
pub mod mysql;
pub mod postgres;
pub mod sqlite;
pub mod streams;
pub mod tool;
pub mod verify;

use cairn_repo::{ChunkParams, Id, RepoError, Repository, SaveError, SourceEntry, SourceStats, Writer};

pub use files::Progress;

/// Why a source could not be captured or restored.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The store, its tool or the request was at fault; other sources may still succeed.
    #[error("{message}{}", hint.as_ref().map(|h| format!("\nhint: {h}")).unwrap_or_default())]
    Source { message: String, hint: Option<String> },
    /// The repository failed; the whole run must stop.
    #[error(transparent)]
    Repo(#[from] RepoError),
}

impl SourceError {
    pub fn new(message: impl Into<String>) -> SourceError {
        SourceError::Source { message: message.into(), hint: None }
    }

    pub fn with_hint(message: impl Into<String>, hint: impl Into<String>) -> SourceError {
        SourceError::Source { message: message.into(), hint: Some(hint.into()) }
    }

    /// The same error with `context: ` in front of its message.
    pub fn context(self, context: impl std::fmt::Display) -> SourceError {
        match self {
            SourceError::Source { message, hint } => {
                SourceError::Source { message: format!("{context}: {message}"), hint }
            }
            repo => repo,
        }
    }
}

impl From<SaveError> for SourceError {
    fn from(e: SaveError) -> SourceError {
        match e {
            SaveError::Source(io) => SourceError::new(format!("reading the source failed: {io}")),
            SaveError::Repo(r) => SourceError::Repo(r),
        }
    }
}

impl From<files::FilesError> for SourceError {
    fn from(e: files::FilesError) -> SourceError {
        match e {
            files::FilesError::Repo(r) => SourceError::Repo(r),
            other => SourceError::new(other.to_string()),
        }
    }
}

/// A percent-encoded part of a database URL (user, password, database), decoded. `what` and
/// `store` name it in the error, which never quotes the text (it may be a password).
pub(crate) fn url_part(text: &str, what: &str, store: &str) -> Result<String, SourceError> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| SourceError::new(format!("the {what} in the {store} URL is not valid UTF-8 once decoded")))
}

/// A password or similar secret: never printed by `Debug`, never put on a command line.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Password(pub String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Where a capture goes.
pub struct CaptureContext<'a, 'r> {
    pub repo: &'r Repository,
    /// A writer of this source alone, so that its sizes can be told apart from other sources'.
    pub writer: &'a Writer<'r>,
    pub chunking: ChunkParams,
    pub progress: &'a dyn Progress,
}

/// What a source captured: the root of its tree and what is needed to restore and verify it.
#[derive(Debug, Clone)]
pub struct Capture {
    pub root: Id,
    /// Adapter-defined; see each adapter's module documentation for its keys.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// `bytes_added`/`blobs_added` are filled in by the caller from its writer.
    pub stats: SourceStats,
    pub warnings: Vec<String>,
}

/// Saves a copy of live data about to be overwritten by a restore (SQL servers: a dump of
/// the current database into the repository, tagged `pre-restore`).
pub trait SafetyCopy {
    /// Run `capture` with a fresh writer, commit its result as a snapshot, and return a
    /// description of where it went (e.g. "snapshot 1a2b3c4d, tagged pre-restore").
    fn save(
        &self,
        capture: &mut dyn FnMut(&CaptureContext<'_, '_>) -> Result<Capture, SourceError>,
    ) -> Result<String, SourceError>;
}

/// What to restore of one source, and where.
pub struct RestoreRequest<'a> {
    pub repo: &'a Repository,
    /// The source as recorded in the snapshot (its root tree and metadata).
    pub entry: &'a SourceEntry,
    /// Alternative target: a file path (SQLite) or a database name (SQL servers). `None`
    /// restores to where the data came from.
    pub to: Option<String>,
    /// Databases of a server source to restore (all that were captured when empty).
    pub databases: Vec<String>,
    /// Only these tables (all when empty).
    pub tables: Vec<String>,
    /// Live data may be replaced (after a safety copy).
    pub yes: bool,
    pub safety: &'a dyn SafetyCopy,
    pub progress: &'a dyn Progress,
}

/// What a restore did, for the report.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RestoreReport {
    /// One line per restored item, e.g. "database app_copy: 3 tables".
    pub restored: Vec<String>,
    /// Where safety copies of replaced data were kept.
    pub safety_copies: Vec<String>,
    pub warnings: Vec<String>,
}
