//! The crontab block: cairn's lines between two marker comments, merged into a crontab (or
//! an `/etc/cron.d` file) without touching any other line.
//!
//! The markers name the config file, so several configs can each keep a block in one
//! crontab. Cron runs the expressions itself: they are copied, not converted.

use std::collections::BTreeMap;
use std::ops::Range;

use super::Invocation;

/// The first line of the block of `config`.
pub fn begin_marker(config: &str) -> String {
    format!("# BEGIN cairn schedule {config}")
}

/// The last line of the block of `config`.
pub fn end_marker(config: &str) -> String {
    format!("# END cairn schedule {config}")
}

/// The crontab lines of one job: `MIN HOUR DAY MONTH WEEKDAY [USER] COMMAND` per expression.
/// `user` is for `/etc/cron.d` files, which name who runs the command.
pub fn job_lines(job: &str, run: &Invocation, schedule: &[String], user: Option<&str>) -> Vec<String> {
    let command: Vec<String> = run.argv(job).iter().map(|a| shell_quote(a)).collect();
    let command = command.join(" ");
    let user = user.map(|u| format!(" {u}")).unwrap_or_default();
    schedule.iter().map(|cron| format!("{cron}{user} {command}")).collect()
}

/// The zone of a block's lines: `CRON_TZ=zone` before them, which cronie honours (Debian's
/// cron does not). cronie applies it to every line that follows, so the block ends by
/// setting it back to the machine's zone (`restore`) when that is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CronZone<'a> {
    pub zone: &'a str,
    pub restore: Option<&'a str>,
}

/// The whole block, markers included, ending in a newline.
pub fn block(config: &str, zone: Option<CronZone>, jobs: &BTreeMap<String, Vec<String>>) -> String {
    let mut text = format!(
        "{}\n# Written by `cairn schedule install`: change the jobs in {config} and install again;\n\
         # `cairn schedule uninstall` removes this block.\n",
        begin_marker(config)
    );
    if let Some(zone) = zone {
        text.push_str(&format!("CRON_TZ={}\n", zone.zone));
    }
    for (job, lines) in jobs {
        text.push_str(&format!("# job {job}\n"));
        for line in lines {
            text.push_str(line);
            text.push('\n');
        }
    }
    match zone.map(|z| z.restore) {
        Some(Some(restore)) => text.push_str(&format!("CRON_TZ={restore}\n")),
        Some(None) => text.push_str("# (cronie applies the CRON_TZ above to the lines below this block too)\n"),
        None => {}
    }
    text.push_str(&end_marker(config));
    text.push('\n');
    text
}

/// Why a crontab's block cannot be found or replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockError(pub String);

impl std::fmt::Display for BlockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BlockError {}

/// The byte range of `config`'s block in `text` (whole lines, the final newline included).
pub fn find_block(text: &str, config: &str) -> Result<Option<Range<usize>>, BlockError> {
    let (begin, end) = (begin_marker(config), end_marker(config));
    let mut start = None;
    let mut offset = 0;
    for (number, line) in text.split_inclusive('\n').enumerate() {
        let next = offset + line.len();
        match line.trim_end() {
            l if l == begin && start.is_some() => {
                return Err(BlockError(format!("line {}: a second `{begin}` before its END line", number + 1)));
            }
            l if l == begin => start = Some(offset),
            l if l == end => {
                let Some(start) = start else {
                    return Err(BlockError(format!("line {}: `{end}` without its BEGIN line", number + 1)));
                };
                return Ok(Some(start..next));
            }
            _ => {}
        }
        offset = next;
    }
    match start {
        Some(_) => Err(BlockError(format!("`{begin}` without its END line"))),
        None => Ok(None),
    }
}

/// `text` with `config`'s block replaced by `block`, or `block` appended at the end.
pub fn merge(text: &str, config: &str, block: &str) -> Result<String, BlockError> {
    Ok(match find_block(text, config)? {
        Some(range) => format!("{}{block}{}", &text[..range.start], &text[range.end..]),
        None if text.is_empty() || text.ends_with('\n') => format!("{text}{block}"),
        None => format!("{text}\n{block}"),
    })
}

/// `text` without `config`'s block; `None` when there is no block.
pub fn remove(text: &str, config: &str) -> Result<Option<String>, BlockError> {
    Ok(find_block(text, config)?.map(|range| format!("{}{}", &text[..range.start], &text[range.end..])))
}

/// One word for `sh`: as is when plain, else single-quoted; `%` escaped, which cron would
/// otherwise turn into a newline.
fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c));
    let quoted = if plain { arg.to_string() } else { format!("'{}'", arg.replace('\'', r"'\''")) };
    quoted.replace('%', r"\%")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "/srv/app/cairn.toml";

    fn sample_block(lines: &[&str]) -> String {
        let jobs = BTreeMap::from([("app".to_string(), lines.iter().map(|l| l.to_string()).collect())]);
        block(CONFIG, None, &jobs)
    }

    #[test]
    fn merge_appends_then_replaces_and_keeps_other_lines() {
        let mine = "MAILTO=me@example.org\n# my jobs\n*/5 * * * * /usr/local/bin/poll\n";
        let first = merge(mine, CONFIG, &sample_block(&["0 2 * * * /bin/cairn backup app"])).unwrap();
        assert!(first.starts_with(mine), "{first}");
        assert!(first.ends_with(&format!("0 2 * * * /bin/cairn backup app\n{}\n", end_marker(CONFIG))), "{first}");
        // The user adds a line after the block; a new install replaces the block in place.
        let edited = format!("{first}30 1 * * * /usr/local/bin/later\n");
        let second = merge(&edited, CONFIG, &sample_block(&["0 3 * * * /bin/cairn backup app"])).unwrap();
        assert!(second.starts_with(mine) && second.ends_with("30 1 * * * /usr/local/bin/later\n"), "{second}");
        assert!(second.contains("0 3 * * *") && !second.contains("0 2 * * *"), "{second}");
        assert_eq!(second.matches(&begin_marker(CONFIG)).count(), 1);
        // Removing the block gives back exactly the user's lines.
        assert_eq!(remove(&second, CONFIG).unwrap().unwrap(), format!("{mine}30 1 * * * /usr/local/bin/later\n"));
        assert_eq!(remove(mine, CONFIG).unwrap(), None);
    }

    #[test]
    fn merge_handles_empty_and_unterminated_crontabs() {
        let block = sample_block(&["0 2 * * * x"]);
        assert_eq!(merge("", CONFIG, &block).unwrap(), block);
        let merged = merge("0 1 * * * y", CONFIG, &block).unwrap();
        assert_eq!(merged, format!("0 1 * * * y\n{block}"));
        assert_eq!(remove(&merged, CONFIG).unwrap().unwrap(), "0 1 * * * y\n");
    }

    #[test]
    fn other_configs_blocks_are_left_alone() {
        let other = "/home/u/cairn.toml";
        let theirs = block(other, None, &BTreeMap::from([("db".into(), vec!["0 4 * * * z".into()])]));
        let both = merge(&theirs, CONFIG, &sample_block(&["0 2 * * * x"])).unwrap();
        assert!(both.starts_with(&theirs));
        assert_eq!(remove(&both, CONFIG).unwrap().unwrap(), theirs);
    }

    #[test]
    fn broken_markers_are_reported() {
        let begin = format!("{}\n0 2 * * * x\n", begin_marker(CONFIG));
        assert!(find_block(&begin, CONFIG).unwrap_err().0.contains("without its END line"));
        let end = format!("x\n{}\n", end_marker(CONFIG));
        assert!(find_block(&end, CONFIG).unwrap_err().0.starts_with("line 2:"));
        let twice = format!("{begin}{begin}{}\n", end_marker(CONFIG));
        assert!(find_block(&twice, CONFIG).unwrap_err().0.contains("second"));
    }

    #[test]
    fn lines_quote_for_the_shell_and_cron() {
        let run = Invocation { binary: "/usr/bin/cairn".into(), config: "/srv/my app/50%.toml".into(), quiet: true };
        let lines = job_lines("app", &run, &["0 2 * * *".into()], Some("root"));
        assert_eq!(lines, ["0 2 * * * root /usr/bin/cairn --quiet --config '/srv/my app/50\\%.toml' backup app"]);
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        let jobs = BTreeMap::from([("app".to_string(), lines)]);
        let zone = CronZone { zone: "Europe/Berlin", restore: Some("America/New_York") };
        let with_zone = block(CONFIG, Some(zone), &jobs);
        // The zone applies to the block's lines only: it is set back before the END marker.
        let expected = "\nCRON_TZ=Europe/Berlin\n# job app\n0 2 * * * root /usr/bin/cairn";
        assert!(with_zone.contains(expected), "{with_zone}");
        assert!(
            with_zone.ends_with(&format!("backup app\nCRON_TZ=America/New_York\n{}\n", end_marker(CONFIG))),
            "{with_zone}"
        );
    }
}
