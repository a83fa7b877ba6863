//! Trees: the serialised listing of one directory.
//!
//! A tree is a [`crate::pack::BlobKind::Tree`] blob holding UTF-8 JSON `{"nodes":[…]}`, nodes
//! sorted by name bytes. Unchanged directories serialise to identical bytes and so deduplicate
//! to the same tree blob. File contents are lists of data blob ids.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use serde::{Deserialize, Serialize};

use crate::id::Id;

/// The type of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    File,
    Dir,
    Symlink,
}

/// One entry of a directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The name; lossy when [`Node::name_raw`] is set.
    pub name: String,
    /// Hex of the exact name bytes, present only when the name is not valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_raw: Option<String>,
    #[serde(rename = "type")]
    pub kind: NodeKind,
    /// Permission bits, including setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Status change time; used only to detect changes, never restored.
    #[serde(default)]
    pub ctime_ns: i64,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    /// File size in bytes (0 for directories).
    #[serde(default)]
    pub size: u64,
    /// Device, inode and link count: used to restore hard links and detect changes.
    #[serde(default)]
    pub dev: u64,
    #[serde(default)]
    pub inode: u64,
    #[serde(default)]
    pub links: u64,
    /// Data blob ids of a file's content, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<Id>,
    /// The tree of a directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<Id>,
    /// Target of a symlink; lossy when [`Node::target_raw`] is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_raw: Option<String>,
    /// The file kept changing while it was read; its content may be torn.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub changed_during_backup: bool,
}

impl Node {
    /// A node with the given name and kind and every other field zero.
    pub fn new(name: &OsStr, kind: NodeKind) -> Node {
        let (name, name_raw) = encode_os(name);
        Node {
            name,
            name_raw,
            kind,
            mode: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            uid: 0,
            gid: 0,
            size: 0,
            dev: 0,
            inode: 0,
            links: 0,
            content: Vec::new(),
            subtree: None,
            target: None,
            target_raw: None,
            changed_during_backup: false,
        }
    }

    /// The exact name bytes (borrowed unless the name is not UTF-8).
    pub fn name_bytes(&self) -> Cow<'_, [u8]> {
        match &self.name_raw {
            None => Cow::Borrowed(self.name.as_bytes()),
            Some(raw) => Cow::Owned(decode_os(&self.name, Some(raw))),
        }
    }

    pub fn set_target(&mut self, target: &OsStr) {
        let (t, raw) = encode_os(target);
        self.target = Some(t);
        self.target_raw = raw;
    }

    /// The exact symlink target bytes.
    pub fn target_bytes(&self) -> Option<Vec<u8>> {
        self.target.as_deref().map(|t| decode_os(t, self.target_raw.as_deref()))
    }
}

fn encode_os(s: &OsStr) -> (String, Option<String>) {
    match s.to_str() {
        Some(text) => (text.to_string(), None),
        None => (s.to_string_lossy().into_owned(), Some(hex::encode(s.as_bytes()))),
    }
}

fn decode_os(text: &str, raw: Option<&str>) -> Vec<u8> {
    raw.and_then(|r| hex::decode(r).ok()).unwrap_or_else(|| text.as_bytes().to_vec())
}

/// A directory listing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Serialise, sorting nodes by name bytes first so equal directories give equal bytes.
    pub fn to_bytes(&mut self) -> Vec<u8> {
        self.nodes.sort_by(|a, b| a.name_bytes().cmp(&b.name_bytes()));
        serde_json::to_vec(self).expect("trees always serialise")
    }

    pub fn from_bytes(bytes: &[u8]) -> serde_json::Result<Tree> {
        serde_json::from_slice(bytes)
    }

    /// The node with this exact name, by binary search: stored trees are sorted by name
    /// bytes (see [`Tree::to_bytes`]).
    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        let i = self.nodes.binary_search_by(|n| n.name_bytes().as_ref().cmp(name)).ok()?;
        Some(&self.nodes[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn non_utf8_names_round_trip() {
        let raw = OsStr::from_bytes(b"caf\xe9");
        let mut n = Node::new(raw, NodeKind::File);
        n.set_target(OsStr::from_bytes(b"/t\xff"));
        let mut tree = Tree { nodes: vec![n] };
        let back = Tree::from_bytes(&tree.to_bytes()).unwrap();
        assert_eq!(back.nodes[0].name_bytes().as_ref(), b"caf\xe9");
        assert_eq!(back.nodes[0].target_bytes().unwrap(), b"/t\xff");
    }

    #[test]
    fn find_uses_name_order() {
        let mut tree =
            Tree { nodes: ["b", "a", "c"].iter().map(|n| Node::new(OsStr::new(n), NodeKind::File)).collect() };
        let tree = Tree::from_bytes(&tree.to_bytes()).unwrap();
        for name in ["a", "b", "c"] {
            assert_eq!(tree.find(name.as_bytes()).unwrap().name, name);
        }
        assert!(tree.find(b"d").is_none());
    }

    #[test]
    fn serialisation_is_canonical() {
        let a = Node::new(OsStr::new("a"), NodeKind::File);
        let b = Node::new(OsStr::new("b"), NodeKind::Dir);
        let x = Tree { nodes: vec![b.clone(), a.clone()] }.to_bytes();
        let y = Tree { nodes: vec![a, b] }.to_bytes();
        assert_eq!(x, y);
        insta::assert_snapshot!(String::from_utf8(x).unwrap());
    }
}
