//! What changed between two trees: entries added, removed, changed in content or in type,
//! or changed only in metadata.
//!
//! Trees are merged by name (they are sorted by name bytes). Two subtrees with the same id
//! hold the same bytes, so they are skipped without being read: a diff costs what changed,
//! not the size of the snapshots. Metadata means what a restore sets: mode, owner and, for
//! files and symlinks, mtime. A directory's mtime is left out, since it moves whenever an
//! entry is added or removed, which the diff already shows.

use std::cmp::Ordering;

use serde::Serialize;

use crate::id::Id;
use crate::repo::Repository;
use crate::tree::{Node, NodeKind, Tree};
use crate::Result;

/// How an entry changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Added,
    Removed,
    /// Different content (a file) or target (a symlink).
    Modified,
    /// A file became a directory, a directory a symlink, and so on.
    TypeChanged,
    /// Same content, different mode, owner or mtime.
    Metadata,
}

impl Change {
    pub const ALL: [Change; 5] =
        [Change::Added, Change::Removed, Change::Modified, Change::TypeChanged, Change::Metadata];

    /// One letter, as `cairn diff` prints it: `+ - M T U`.
    pub fn letter(self) -> char {
        match self {
            Change::Added => '+',
            Change::Removed => '-',
            Change::Modified => 'M',
            Change::TypeChanged => 'T',
            Change::Metadata => 'U',
        }
    }

    /// What a count of such changes is called: `3 added`, `1 changed type`.
    pub fn counted(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Modified => "modified",
            Change::TypeChanged => "changed type",
            Change::Metadata => "metadata only",
        }
    }
}

/// One changed entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub change: Change,
    /// `/`-separated path from the tree's root, starting with `/`.
    pub path: String,
    /// The entry's type: the newer one, or the older one when it was removed.
    #[serde(rename = "type")]
    pub kind: NodeKind,
    /// File size before and after (absent for what is not a file on that side).
    pub size_before: Option<u64>,
    pub size_after: Option<u64>,
}

/// Report every difference between trees `before` and `after` (`None`: empty) under
/// `path`, parents before children, in name order.
pub fn diff_trees(
    repo: &Repository,
    before: Option<Id>,
    after: Option<Id>,
    path: &str,
    report: &mut dyn FnMut(Difference),
) -> Result<()> {
    if before == after {
        return Ok(());
    }
    let load = |id: Option<Id>| id.map_or_else(|| Ok(Tree::default()), |id| repo.load_tree(&id));
    let (old, new) = (load(before)?.nodes, load(after)?.nodes);
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        let order = match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) => a.name_bytes().cmp(&b.name_bytes()),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        match order {
            Ordering::Less => {
                one_side(repo, &old[i], Change::Removed, path, report)?;
                i += 1;
            }
            Ordering::Greater => {
                one_side(repo, &new[j], Change::Added, path, report)?;
                j += 1;
            }
            Ordering::Equal => {
                compare(repo, &old[i], &new[j], path, report)?;
                i += 1;
                j += 1;
            }
        }
    }
    Ok(())
}

fn child_path(path: &str, node: &Node) -> String {
    format!("{path}/{}", node.name)
}

fn file_size(node: &Node) -> Option<u64> {
    (node.kind == NodeKind::File).then_some(node.size)
}

/// `node` and everything below it is only on one side: `Removed` (before) or `Added` (after).
fn one_side(
    repo: &Repository,
    node: &Node,
    change: Change,
    path: &str,
    report: &mut dyn FnMut(Difference),
) -> Result<()> {
    let path = child_path(path, node);
    let removed = change == Change::Removed;
    let size = file_size(node);
    report(Difference {
        change,
        path: path.clone(),
        kind: node.kind,
        size_before: if removed { size } else { None },
        size_after: if removed { None } else { size },
    });
    match node.subtree {
        Some(sub) if removed => diff_trees(repo, Some(sub), None, &path, report),
        Some(sub) => diff_trees(repo, None, Some(sub), &path, report),
        None => Ok(()),
    }
}

/// The same name on both sides.
fn compare(repo: &Repository, old: &Node, new: &Node, path: &str, report: &mut dyn FnMut(Difference)) -> Result<()> {
    let here = child_path(path, new);
    let change = if old.kind != new.kind {
        Some(Change::TypeChanged)
    } else if old.size != new.size || old.content != new.content || old.target != new.target {
        Some(Change::Modified)
    } else if old.mode != new.mode
        || old.uid != new.uid
        || old.gid != new.gid
        || (new.kind != NodeKind::Dir && old.mtime_ns != new.mtime_ns)
    {
        Some(Change::Metadata)
    } else {
        None
    };
    if let Some(change) = change {
        report(Difference {
            change,
            path: here.clone(),
            kind: new.kind,
            size_before: file_size(old),
            size_after: file_size(new),
        });
    }
    if old.subtree.is_some() || new.subtree.is_some() {
        diff_trees(repo, old.subtree, new.subtree, &here, report)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::memory_repo as repo;
    use crate::WriterOptions;

    fn file(name: &str, content: &[Id], size: u64, mode: u32) -> Node {
        let mut n = Node::new(name.as_ref(), NodeKind::File);
        n.content = content.to_vec();
        n.size = size;
        n.mode = mode;
        n
    }

    fn dir(name: &str, subtree: Id) -> Node {
        let mut n = Node::new(name.as_ref(), NodeKind::Dir);
        n.subtree = Some(subtree);
        n.mode = 0o755;
        n
    }

    fn changes(repo: &Repository, a: Id, b: Id) -> Vec<(char, String)> {
        let mut out = Vec::new();
        diff_trees(repo, Some(a), Some(b), "", &mut |d| out.push((d.change.letter(), d.path))).unwrap();
        out
    }

    #[test]
    fn every_kind_of_change_is_found_in_name_order_and_equal_subtrees_are_not_read() {
        let repo = repo();
        let writer = repo.writer(WriterOptions::default());
        let (x, y) = (Id([1; 32]), Id([2; 32]));
        // A subtree both sides share: its id is never loaded (it is not even stored).
        let shared = Id([9; 32]);
        let mut gone_dir = Tree { nodes: vec![file("inner", &[x], 1, 0o644)] };
        let gone_dir = writer.save_tree(&mut gone_dir).unwrap();
        let mut before = Tree {
            nodes: vec![
                file("content", &[x], 1, 0o644),
                file("mode", &[x], 1, 0o644),
                dir("old", gone_dir),
                dir("same", shared),
                file("swap", &[x], 1, 0o644),
                file("unchanged", &[x], 1, 0o644),
            ],
        };
        let before = writer.save_tree(&mut before).unwrap();
        let mut link = Node::new("swap".as_ref(), NodeKind::Symlink);
        link.target = Some("elsewhere".into());
        let mut after = Tree {
            nodes: vec![
                file("content", &[y], 1, 0o644),
                file("mode", &[x], 1, 0o600),
                file("new", &[y], 1, 0o644),
                dir("same", shared),
                link,
                file("unchanged", &[x], 1, 0o644),
            ],
        };
        let after = writer.save_tree(&mut after).unwrap();
        writer.finish().unwrap();
        let found = changes(&repo, before, after);
        let expected: Vec<(char, String)> =
            [('M', "/content"), ('U', "/mode"), ('+', "/new"), ('-', "/old"), ('-', "/old/inner"), ('T', "/swap")]
                .into_iter()
                .map(|(c, p)| (c, p.to_string()))
                .collect();
        assert_eq!(found, expected);
        assert!(changes(&repo, before, before).is_empty());
    }
}
