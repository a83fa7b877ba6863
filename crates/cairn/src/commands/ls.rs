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
    let mut rows = Vec::new();
    for source in &snap.sources {
        let Some(root) = source.root else { continue };
        walk(&repo, root, String::new(), &mut |path, node| {
            let wanted = prefix.as_ref().is_none_or(|p| path == *p || path.starts_with(&format!("{p}/")));
            if wanted {
                rows.push((path.to_string(), node.clone()));
            }
        })?;
    }
    if args.json {
        let list: Vec<_> = rows
            .iter()
            .map(|(path, n)| json!({"path": path, "type": n.kind, "mode": format!("{:o}", n.mode), "size": n.size, "mtime_ns": n.mtime_ns, "uid": n.uid, "gid": n.gid, "target": n.target}))
            .collect();
        return super::print_json(&list);
    }
    for (path, n) in &rows {
        let mtime = chrono::Local.timestamp_nanos(n.mtime_ns).format("%Y-%m-%d %H:%M:%S");
        let size = if n.kind == NodeKind::File { output::bytes(n.size) } else { String::new() };
        let link = n.target.as_ref().map(|t| format!(" -> {t}")).unwrap_or_default();
        outln!("{}  {:>10}  {mtime}  {path}{link}", mode_string(n.kind, n.mode), size)?;
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

/// Visit every node under `tree`, parents before children, in name order.
fn walk(repo: &Repository, tree: cairn_repo::Id, path: String, f: &mut dyn FnMut(&str, &Node)) -> Result<()> {
    for node in repo.load_tree(&tree)?.nodes {
        let child = format!("{path}/{}", node.name);
        f(&child, &node);
        if let Some(sub) = node.subtree {
            walk(repo, sub, child, f)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_read_like_ls() {
        assert_eq!(mode_string(NodeKind::Dir, 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(NodeKind::File, 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string(NodeKind::File, 0o1644), "-rw-r--r-T");
        assert_eq!(mode_string(NodeKind::Symlink, 0o777), "lrwxrwxrwx");
    }
}
