//! Every environment variable cairn reads, in one place.

/// Config file location.
pub const CONFIG: &str = "CAIRN_CONFIG";
/// Repository location.
pub const REPO: &str = "CAIRN_REPO";
/// Repository password.
pub const PASSWORD: &str = "CAIRN_PASSWORD";
/// File holding the repository password.
pub const PASSWORD_FILE: &str = "CAIRN_PASSWORD_FILE";
/// Key file unlocking the repository.
pub const KEY_FILE: &str = "CAIRN_KEY_FILE";
/// New password for `cairn key add`.
pub const NEW_PASSWORD: &str = "CAIRN_NEW_PASSWORD";
/// Argon2id memory for new key slots (KiB); lowers the cost in tests.
pub const KDF_MEMORY_KIB: &str = "CAIRN_KDF_MEMORY_KIB";
/// Set to disable progress bars even on a terminal.
pub const NO_PROGRESS: &str = "CAIRN_NO_PROGRESS";
/// State directory (run history, the daemon's control socket and state file, installed
/// schedules), over `[daemon] state_dir` and the default; `--state-dir`.
pub const STATE_DIR: &str = "CAIRN_STATE_DIR";
/// Set to turn colours off in log lines (<https://no-color.org>).
pub const NO_COLOR: &str = "NO_COLOR";
/// Tests only: a seconds field put in front of every cron expression of the daemon, so
/// `* * * * *` with `*/2` fires every two seconds. Not for production use.
pub const CRON_SECONDS: &str = "CAIRN_CRON_SECONDS";

/// A variable's value, if set and not empty.
pub fn get(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}
