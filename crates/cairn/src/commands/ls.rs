//! `cairn ls SNAPSHOT [PATH]`: list what a snapshot holds.

use anyhow::Result;
use cairn_repo::{Node, NodeKind, Repository};
use chrono::TimeZone;
use serde_json::json;

use crate::cli::{Global, LsArgs};
use crate::output;
use crate::settings;

pub fn run(global: &Global, args: &LsArgs) -> Result<()> {
    let repo = settings::open(global)?;
    let (_, snap) = super::find_snapshot(&repo, &args.snapshot, None)?;
    let prefix = args.path.as_deref().map(|p| format!("/{}", p.trim_matches('/'))).filter(|p| p != "/");
    let prefix = prefix.as_deref();
    // Lines go out as the trees are read: the first comes at once however large the
    // snapshot, and a closed stdout (`| head`) stops the walk. JSON is one document.
    let mut list = Vec::new();
    for root in snap.sources.iter().filter_map(|s| s.root) {
        walk(&repo, root, "", prefix, &mut |path, n| {
            if args.json {
                list.push(json!({"path": path, "type": n.kind, "mode": format!("{:o}", n.mode), "size": n.size, "mtime_ns": n.mtime_ns, "uid": n.uid, "gid": n.gid, "target": n.target}));
                return Ok(());
            }
            let mtime = chrono::Local.timestamp_nanos(n.mtime_ns).format("%Y-%m-%d %H:%M:%S");
            let size = if n.kind == NodeKind::File { output::bytes(n.size) } else { String::new() };
            let link = n.target.as_ref().map(|t| format!(" -> {t}")).unwrap_or_default();
            outln!("{}  {:>10}  {mtime}  {path}{link}", mode_string(n.kind, n.mode), size)?;
            Ok(())
        })?;
    }
    if args.json {
        return super::print_json(&list);
    }
    Ok(())
}

/// `drwxr-xr-x`, as `ls -l` shows it (setuid, setgid and sticky included).
fn mode_string(kind: NodeKind, mode: u32) -> String {
    let mut out = String::with_capacity(10);
    out.push(match kind {
        NodeKind::Dir => 'd',
        NodeKind::File => '-',
        NodeKind::Symlink => 'l',
    });
    // (permission bit, letter, special bit, letter when both, letter when only special)
    let triads = [
        (0o400, 'r'),
        (0o200, 'w'),
        (0o100, 'x'),
        (0o040, 'r'),
        (0o020, 'w'),
        (0o010, 'x'),
        (0o004, 'r'),
        (0o002, 'w'),
        (0o001, 'x'),
    ];
    for (i, (bit, letter)) in triads.into_iter().enumerate() {
        let special = match i {
            2 => Some((0o4000, 's', 'S')),
            5 => Some((0o2000, 's', 'S')),
            8 => Some((0o1000, 't', 'T')),
            _ => None,
        };
        let set = mode & bit != 0;
        out.push(match special {
            Some((sbit, both, only)) if mode & sbit != 0 => {
                if set {
                    both
                } else {
                    only
                }
            }
            _ if set => letter,
            _ => '-',
        });
    }
    out
}

/// Visit every node under `tree` at or below `prefix` (all when `None`), parents before
/// children, in name order; only the subtrees on the way to `prefix` are read.
fn walk(
    repo: &Repository,
    tree: cairn_repo::Id,
    path: &str,
    prefix: Option<&str>,
    f: &mut dyn FnMut(&str, &Node) -> Result<()>,
) -> Result<()> {
    if output::stdout_closed() {
        return Ok(());
    }
    for node in repo.load_tree(&tree)?.nodes {
        let child = format!("{path}/{}", node.name);
        let inside = prefix.is_none_or(|p| child == p || is_below(&child, p));
        if inside {
            f(&child, &node)?;
        }
        if let Some(sub) = node.subtree {
            if inside || prefix.is_some_and(|p| is_below(p, &child)) {
                walk(repo, sub, &child, prefix, f)?;
            }
        }
    }
    Ok(())
}

/// `path` lies strictly below the directory `dir`.
fn is_below(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_means_inside_the_directory_not_a_longer_name() {
        assert!(is_below("/src/sub/a.txt", "/src/sub"));
        assert!(is_below("/src/sub/a.txt", "/src"));
        assert!(!is_below("/src/sub", "/src/sub"));
        assert!(!is_below("/src/subway", "/src/sub"));
        assert!(!is_below("/src", "/src/sub"));
    }

    #[test]
    fn modes_read_like_ls() {
        assert_eq!(mode_string(NodeKind::Dir, 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(NodeKind::File, 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string(NodeKind::File, 0o1644), "-rw-r--r-T");
        assert_eq!(mode_string(NodeKind::Symlink, 0o777), "lrwxrwxrwx");
    }
}
