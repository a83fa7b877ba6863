//! cairn source adapters.
//!
//! Each module captures one kind of data store into a repository through the engine's
//! writer API, and restores it again. Adapters know how their store is read and written;
//! they know nothing of the repository's byte layout, the command line or config files.

pub mod files;
