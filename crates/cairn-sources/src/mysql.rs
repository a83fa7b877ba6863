//! mysql (being written).

use std::path::PathBuf;

use crate::{Capture, CaptureContext, Password, RestoreReport, RestoreRequest, SourceError};

/// Connection settings and what to capture.
#[derive(Debug, Clone)]
pub struct MysqlSource {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<Password>,
    /// Databases to capture; `None` captures all (but the server's own).
    pub databases: Option<Vec<String>>,
    /// Run the tools through this command (e.g. `docker exec -i db`); empty: run directly.
    pub prefix: Vec<String>,
    /// Directory of the client tools; default: found on this machine.
    pub bin_dir: Option<PathBuf>,
}

impl MysqlSource {
    /// Settings from a URL like `mysql://root@127.0.0.1:3306/app` (the path names one database).
    pub fn from_url(_url: &str) -> Result<MysqlSource, SourceError> {
        Err(SourceError::new("the mysql source is not built yet"))
    }

    pub fn backup(&self, _ctx: &CaptureContext<'_, '_>) -> Result<Capture, SourceError> {
        Err(SourceError::new("the mysql source is not built yet"))
    }

    pub fn restore(&self, _req: &RestoreRequest<'_>) -> Result<RestoreReport, SourceError> {
        Err(SourceError::new("the mysql source is not built yet"))
    }
}
