//! SQLite databases (being written).

use std::path::PathBuf;

use crate::{Capture, CaptureContext, RestoreReport, RestoreRequest, SourceError};

/// One SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteSource {
    pub path: PathBuf,
    /// Capture a VACUUMed copy (smaller, but every page moves: dedups worse day to day).
    pub vacuum: bool,
}

impl SqliteSource {
    pub fn backup(&self, _ctx: &CaptureContext<'_, '_>) -> Result<Capture, SourceError> {
        Err(SourceError::new("the sqlite source is not built yet"))
    }
}

/// Restore a captured SQLite database (the original path is in the capture's metadata).
pub fn restore(_req: &RestoreRequest<'_>) -> Result<RestoreReport, SourceError> {
    Err(SourceError::new("the sqlite source is not built yet"))
}
