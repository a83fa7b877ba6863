//! Command-line types (clap). Kept apart from the logic in `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::env;

/// Backups of the data stores applications live on: deduplicated, compressed, encrypted.
#[derive(Parser, Debug)]
#[command(name = "cairn", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Config file (default: ./cairn.toml, ~/.config/cairn/cairn.toml, /etc/cairn/cairn.toml)
    #[arg(long, short = 'c', global = true, env = env::CONFIG, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Repository: a directory, or the name of one in the config file
    #[arg(long, short = 'r', global = true, env = env::REPO, value_name = "PATH|NAME")]
    pub repo: Option<PathBuf>,
    /// Read the repository password from this file
    #[arg(long, global = true, env = env::PASSWORD_FILE, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Unlock the repository with a key file instead of a password
    #[arg(long, global = true, env = env::KEY_FILE, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Print less (no summaries, no progress)
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a repository
    Init(InitArgs),
    /// Run jobs from the config file, or back up files and folders
    Backup(BackupArgs),
    /// List snapshots
    Snapshots(SnapshotsArgs),
    /// Show everything a snapshot records
    Show(ShowArgs),
    /// List the files in a snapshot
    Ls(LsArgs),
    /// Show what changed between two snapshots
    Diff(DiffArgs),
    /// Restore a snapshot into a directory
    Restore(RestoreArgs),
    /// Check the repository's integrity
    Check(CheckArgs),
    /// Remove snapshots by retention policy (or by id); --dry-run shows the plan
    Forget(ForgetArgs),
    /// Restore a snapshot into scratch targets and prove it matches what was recorded
    Verify(VerifyArgs),
    /// Reclaim the space of data no snapshot uses (safe beside running backups)
    Prune(PruneArgs),
    /// List past runs of jobs from the local run history
    History(HistoryArgs),
    /// Per job: last run, last success, next run, repository size; exit 4 when one needs attention
    Status(StatusArgs),
    /// Manage the passwords and key files that unlock the repository
    #[command(subcommand)]
    Key(KeyCommand),
    /// Check or print the config file
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Install, show or remove systemd timers or crontab lines that run the jobs' schedules
    #[command(subcommand)]
    Schedule(crate::commands::schedule::ScheduleCommand),
    /// Run the config's jobs on their schedules and watched paths until SIGTERM/SIGINT
    Daemon(DaemonArgs),
    /// Ask the running daemon to start a job now
    RunNow(RunNowArgs),
}

#[derive(Args, Debug)]
pub struct DaemonArgs {
    /// Directory of the control socket and the daemon's state (default: [daemon] state_dir,
    /// else $XDG_STATE_HOME/cairn or ~/.local/state/cairn; /var/lib/cairn for root)
    #[arg(long, env = env::STATE_DIR, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RunNowArgs {
    /// The job to start
    pub job: String,
    /// The state directory of the daemon to ask (as given to `cairn daemon`)
    #[arg(long, env = env::STATE_DIR, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Read the config file and report every problem (exit 0 when it is valid)
    Check,
    /// Print the config file as cairn reads it, secrets shown as ***
    Show {
        /// Print as JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Snapshot id (or a unique prefix), or 'latest'
    pub snapshot: String,
    /// With 'latest': the newest snapshot of this job
    #[arg(long)]
    pub job: Option<String>,
    /// Print as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Argon2id memory in KiB for the first key slot (default 32768)
    #[arg(long, hide = true, env = env::KDF_MEMORY_KIB)]
    pub kdf_memory_kib: Option<u32>,
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Jobs of the config file to run, or files and folders to back up (each stored under
    /// its last path component)
    #[arg(value_name = "JOB|PATH", required_unless_present = "all")]
    pub targets: Vec<PathBuf>,
    /// Run every job of the config file
    #[arg(long, conflicts_with = "targets")]
    pub all: bool,
    /// Tag the snapshot (repeatable)
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Skip paths matching this gitignore-style pattern (repeatable), e.g. '*.log' or '.git'
    #[arg(long = "exclude", short = 'e', value_name = "PATTERN")]
    pub excludes: Vec<String>,
    /// Read exclude patterns from a file, one per line (repeatable)
    #[arg(long = "exclude-file", value_name = "FILE")]
    pub exclude_files: Vec<PathBuf>,
    /// Snapshot time instead of now: RFC 3339, or 'YYYY-MM-DD HH:MM:SS' in local time
    #[arg(long, value_name = "TIME")]
    pub time: Option<String>,
    /// Host name recorded in the snapshot (default: this machine's)
    #[arg(long)]
    pub host: Option<String>,
    /// Compare against this snapshot instead of the latest one of the same paths
    #[arg(long, value_name = "SNAPSHOT")]
    pub parent: Option<String>,
    /// Read every file, even those unchanged since the parent snapshot
    #[arg(long)]
    pub force: bool,
    /// zstd compression level (0 = off; 2, the default, balances speed and size; 3+ is smaller and slower)
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub compression: Option<i32>,
    /// Print the summary as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SnapshotsArgs {
    /// Print as JSON
    #[arg(long)]
    pub json: bool,
    /// Only snapshots with this tag (repeatable; all must match)
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Only snapshots of this host
    #[arg(long)]
    pub host: Option<String>,
    /// Only snapshots of this job
    #[arg(long)]
    pub job: Option<String>,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// The older snapshot: id (or a unique prefix), or 'latest'
    pub from: String,
    /// The newer snapshot: id (or a unique prefix), or 'latest'
    pub to: String,
    /// Only this source (by name)
    #[arg(long)]
    pub source: Option<String>,
    /// Print as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Snapshot id (or a unique prefix), or 'latest'
    pub snapshot: String,
    /// Only entries under this path in the snapshot, e.g. /data/sub
    pub path: Option<String>,
    /// Print as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// Snapshot id (or a unique prefix), or 'latest'
    pub snapshot: String,
    /// With 'latest': the newest snapshot of this job
    #[arg(long)]
    pub job: Option<String>,
    /// Where to restore: a directory (files, --raw), a file (sqlite), a database name (postgres,
    /// mysql). Without it, databases are restored where they came from (needs --yes if they exist)
    #[arg(long, value_name = "TARGET")]
    pub to: Option<String>,
    /// Restore only this table (repeatable; sqlite, postgres as [schema.]table, mysql)
    #[arg(long = "table", short = 't', value_name = "TABLE")]
    pub tables: Vec<String>,
    /// Restore only this database of a server source (repeatable)
    #[arg(long = "database", value_name = "NAME")]
    pub databases: Vec<String>,
    /// Write the source's captured streams (dump files, page image) into the --to directory
    /// instead of loading them into a database
    #[arg(long)]
    pub raw: bool,
    /// Restore only what matches this gitignore-style pattern (repeatable), e.g. 'data/*.csv'
    #[arg(long = "include", short = 'i', value_name = "PATTERN")]
    pub includes: Vec<String>,
    /// Which source of the snapshot to restore (default: the only one)
    #[arg(long)]
    pub source: Option<String>,
    /// Allow replacing live data: files in a non-empty directory, an existing database or
    /// database file (a safety copy is kept first)
    #[arg(long)]
    pub yes: bool,
    /// Print the summary as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Time between marking unused data and deleting it; must be longer than any backup
    /// takes (a backup that started before the mark may still use it)
    #[arg(long, default_value = "24h", value_name = "INTERVAL")]
    pub grace: String,
    /// Repack a pack when more than this share of its bytes is unused (0..1)
    #[arg(long, default_value_t = 0.5, value_name = "SHARE")]
    pub repack_threshold: f64,
    /// Show the plan and what would be reclaimed; change nothing
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Snapshot id (or a unique prefix), or 'latest' (the default)
    pub snapshot: Option<String>,
    /// The newest snapshot (of --job, if given)
    #[arg(long, conflicts_with = "snapshot")]
    pub latest: bool,
    /// With 'latest': the newest snapshot of this job
    #[arg(long)]
    pub job: Option<String>,
    /// Only this source of the snapshot
    #[arg(long)]
    pub source: Option<String>,
    /// Where scratch folders and SQLite files go (default: the system temp directory)
    #[arg(long, value_name = "DIR")]
    pub scratch_dir: Option<PathBuf>,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ForgetArgs {
    /// Remove exactly these snapshots (ids or unique prefixes) instead of applying a policy
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Keep the N newest snapshots
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N hours that have one
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the last N days that have one
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the last N ISO weeks that have one
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the last N months that have one
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the last N years that have one
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot within this time of the group's newest, e.g. 30d, 2w, 12h
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,
    /// Keep every snapshot with this tag (repeatable)
    #[arg(long = "keep-tag", value_name = "TAG")]
    pub keep_tags: Vec<String>,
    /// Only snapshots of this job
    #[arg(long)]
    pub job: Option<String>,
    /// Only snapshots of this host
    #[arg(long)]
    pub host: Option<String>,
    /// Group snapshots by these, comma-separated: host, job, tags
    #[arg(long, default_value = "host,job", value_name = "FIELDS")]
    pub group_by: String,
    /// Show what would be kept and removed, and why, without removing anything
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Print the plan as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Only runs of this job
    #[arg(long)]
    pub job: Option<String>,
    /// Only runs started since then: an age (90s, 30m, 12h, 7d), RFC 3339, or
    /// 'YYYY-MM-DD[ HH:MM[:SS]]' in local time
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only runs that ended so (or are running)
    #[arg(long, value_enum)]
    pub outcome: Option<OutcomeArg>,
    /// Only the newest N runs
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Print full records as JSON, with per-repository and per-source results
    #[arg(long)]
    pub json: bool,
}

/// Outcomes `cairn history --outcome` selects.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum OutcomeArg {
    Success,
    Partial,
    Failed,
    Interrupted,
    Running,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Print as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Also read every pack and authenticate every blob
    #[arg(long)]
    pub read_data: bool,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// List key slots
    List {
        #[arg(long)]
        json: bool,
    },
    /// Add a key slot for a new password or key file
    Add(KeyAddArgs),
    /// Remove a key slot (never the last one)
    Remove {
        /// Key slot id or unique prefix, as shown by `cairn key list`
        id: String,
    },
}

#[derive(Args, Debug)]
pub struct KeyAddArgs {
    /// Read the new password from this file (else $CAIRN_NEW_PASSWORD, else a prompt)
    #[arg(long, value_name = "FILE", conflicts_with = "new_key_file")]
    pub new_password_file: Option<PathBuf>,
    /// Add a key file; a new random one is written there if the file does not exist
    #[arg(long, value_name = "FILE")]
    pub new_key_file: Option<PathBuf>,
    /// A note shown by `cairn key list`
    #[arg(long, default_value = "")]
    pub label: String,
}
