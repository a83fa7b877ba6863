//! Captures made of named streams: a SQLite page stream, one dump per database.
//!
//! A stream capture is stored as one flat tree of file nodes (mode 0600), one per stream, so
//! the generic folder restore can extract every dump as a plain file, and each adapter can
//! read its streams back in order without a temporary copy.

use std::ffi::OsStr;
use std::io::Read;
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use cairn_repo::{ChunkParams, Id, Node, NodeKind, Repository, SourceStats, Tree, Writer};
use crossbeam_channel::{bounded, Receiver};

use crate::{Progress, SourceError};

/// Blobs fetched ahead of a stream reader.
const READ_AHEAD: usize = 8;

/// Collects the streams of one capture.
pub struct StreamSet<'a, 'r> {
    writer: &'a Writer<'r>,
    chunking: ChunkParams,
    progress: &'a dyn Progress,
    nodes: Mutex<Vec<Node>>,
    started: Instant,
}

impl<'a, 'r> StreamSet<'a, 'r> {
    pub fn new(writer: &'a Writer<'r>, chunking: ChunkParams, progress: &'a dyn Progress) -> StreamSet<'a, 'r> {
        StreamSet { writer, chunking, progress, nodes: Mutex::new(Vec::new()), started: Instant::now() }
    }

    /// Chunk and save everything `reader` yields as the stream `name` (a plain file name,
    /// no `/`); returns its size. May be called from several threads at once.
    pub fn save(&self, name: &str, reader: impl Read) -> Result<u64, SourceError> {
        assert!(!name.is_empty() && !name.contains('/') && name != "." && name != "..", "bad stream name {name:?}");
        let counting = Counting { inner: reader, progress: self.progress };
        let saved = self.writer.save_stream(counting, self.chunking)?;
        let mut node = Node::new(OsStr::new(name), NodeKind::File);
        node.mode = 0o600;
        node.mtime_ns = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        node.size = saved.size;
        node.links = 1;
        node.content = saved.content;
        self.nodes.lock().expect("stream list lock poisoned").push(node);
        self.progress.item();
        Ok(saved.size)
    }

    /// Save the tree of streams; returns its id and the capture's sizes.
    pub fn finish(self) -> Result<(Id, SourceStats), SourceError> {
        let nodes = self.nodes.into_inner().expect("stream list lock poisoned");
        let total: u64 = nodes.iter().map(|n| n.size).sum();
        let stats = SourceStats {
            files_new: nodes.len() as u64,
            total_bytes: total,
            bytes_read: total,
            duration_secs: self.started.elapsed().as_secs_f64(),
            ..SourceStats::default()
        };
        let mut tree = Tree { nodes };
        Ok((self.writer.save_tree(&mut tree)?, stats))
    }
}

struct Counting<'p, R> {
    inner: R,
    progress: &'p dyn Progress,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.bytes(n as u64);
        Ok(n)
    }
}

/// A stream name for `name` (a database, say) with `extension`: a plain file name whatever
/// `name` holds, since `%`, `/` and a leading `.` are escaped as `%25`, `%2F`, `%2E`.
pub fn file_name(name: &str, extension: &str) -> String {
    let mut out = String::with_capacity(name.len() + extension.len() + 1);
    for (i, c) in name.chars().enumerate() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            '.' if i == 0 => out.push_str("%2E"),
            c => out.push(c),
        }
    }
    out.push('.');
    out.push_str(extension);
    out
}

/// The streams of a capture, by name.
pub fn list(repo: &Repository, root: Id) -> Result<Vec<Node>, SourceError> {
    let tree = repo.load_tree(&root)?;
    Ok(tree.nodes.into_iter().filter(|n| n.kind == NodeKind::File).collect())
}

/// The stream called `name`, or an error naming the ones there are.
pub fn find(repo: &Repository, root: Id, name: &str) -> Result<Node, SourceError> {
    let nodes = list(repo, root)?;
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    nodes.into_iter().find(|n| n.name == name).ok_or_else(|| {
        SourceError::new(format!("the capture holds no stream {name:?} (it holds: {})", names.join(", ")))
    })
}

/// Read a stream back: `consume` gets a reader of its bytes while another thread fetches a
/// few blobs ahead. Every blob is authenticated; a damaged one ends the stream with an error.
pub fn read<T>(
    repo: &Repository,
    node: &Node,
    consume: impl FnOnce(&mut dyn Read) -> Result<T, SourceError>,
) -> Result<T, SourceError> {
    let (tx, rx) = bounded::<Result<Vec<u8>, String>>(READ_AHEAD);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            for id in &node.content {
                let blob = repo.load_blob(id).map_err(|e| e.to_string());
                let failed = blob.is_err();
                // A closed channel means the consumer stopped early.
                if tx.send(blob).is_err() || failed {
                    return;
                }
            }
        });
        let mut reader = StreamReader { blobs: rx, current: Vec::new(), pos: 0 };
        consume(&mut reader)
    })
}

struct StreamReader {
    blobs: Receiver<Result<Vec<u8>, String>>,
    current: Vec<u8>,
    pos: usize,
}

impl Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.current.len() {
            match self.blobs.recv() {
                Err(_) => return Ok(0),
                Ok(blob) => {
                    self.current = blob.map_err(std::io::Error::other)?;
                    self.pos = 0;
                }
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
