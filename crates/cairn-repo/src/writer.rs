//! The write pipeline of a backup.
//!
//! ```text
//! caller thread:  read → chunk ─┬─ small stream: keyed hash → dedup ─ new blobs only ─┐
//!                               └─ large stream: every chunk, unhashed ───────────────┤
//!                                                                      bounded queue │
//! worker threads: [keyed hash → dedup (index + pending set)] → compress → seal → append
//!                 to the open pack of its kind
//!                         │ pack full: sealed header, pack id, handed to a free uploader
//! 2 upload threads: upload pack → every N packs, upload an index file (one at a time)
//! ```
//!
//! A stream that fits in one read buffer (most files) is hashed by the caller: many callers
//! then read many files at once. A longer one is only read and cut by its caller, and its
//! chunks are hashed by the workers, so that one large file keeps every core busy; their ids
//! come back in stream order through a [`StreamIds`] list. Uploads have their own two threads
//! so that a slow write or fsync never stops compression, and one pack is written while the
//! other waits for its fsync.
//!
//! Commit order, which is what makes a killed run harmless: a pack is uploaded before any
//! index file names it, index files before the snapshot that needs them (the snapshot is
//! saved by the caller only after [`Writer::finish`] returns). A crash therefore leaves at
//! most packs no index names, or indexed blobs no snapshot uses — never a broken snapshot.

use std::collections::HashSet;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use cairn_storage::Storage;
use crossbeam_channel::{bounded, Receiver, Sender};

use crate::chunker::{ChunkParams, Chunker};
use crate::compress;
use crate::crypto::Keys;
use crate::error::{RepoError, Result};
use crate::id::Id;
use crate::index::{self, Index, IndexedPack};
use crate::pack::{pack_key, BlobKind, PackBuilder};
use crate::repo::Repository;
use crate::tree::Tree;

/// Index files are written after this many packs, so a long run killed late still leaves
/// its work reusable by the next run.
const PACKS_PER_INDEX: usize = 32;

/// Packs uploaded at once: while one waits for its fsync, the next is being written.
const UPLOAD_THREADS: usize = 2;

/// Tuning of a [`Writer`].
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// zstd level; 0 stores every blob raw.
    pub compression: i32,
    /// A pack is closed once its blobs reach this many bytes.
    pub pack_size: usize,
    /// Worker threads compressing and sealing.
    pub threads: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            // Measured on a 2.5 GiB toolchain tree: level 2 is 1.8x faster than level 3 for 3%
            // more bytes; level 1 gains little more speed for 4% more.
            compression: 2,
            pack_size: 8 << 20,
            threads: std::thread::available_parallelism().map_or(2, usize::from),
        }
    }
}

/// Counters of what a writer stored, readable while it runs (for progress).
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Blobs handed in, new or not.
    pub blobs_seen: AtomicU64,
    /// Plaintext bytes handed in.
    pub bytes_seen: AtomicU64,
    /// Blobs that were new to the repository.
    pub blobs_new: AtomicU64,
    /// Bytes written to storage: sealed blobs, pack headers and index files.
    pub bytes_stored: AtomicU64,
}

/// A snapshot of [`WriterStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteTotals {
    pub blobs_seen: u64,
    pub bytes_seen: u64,
    pub blobs_new: u64,
    pub bytes_stored: u64,
}

impl WriterStats {
    pub fn totals(&self) -> WriteTotals {
        WriteTotals {
            blobs_seen: self.blobs_seen.load(Ordering::Relaxed),
            bytes_seen: self.bytes_seen.load(Ordering::Relaxed),
            blobs_new: self.blobs_new.load(Ordering::Relaxed),
            bytes_stored: self.bytes_stored.load(Ordering::Relaxed),
        }
    }
}

/// Why saving a stream failed: the source could not be read, or the repository write failed.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("{0}")]
    Source(std::io::Error),
    #[error(transparent)]
    Repo(#[from] RepoError),
}

/// A stream cut into chunks and saved.
#[derive(Debug, Clone, Default)]
pub struct SavedStream {
    pub content: Vec<Id>,
    pub size: u64,
}

struct Job {
    kind: BlobKind,
    data: Vec<u8>,
    dest: Dest,
}

/// What a worker knows of a job's blob.
enum Dest {
    /// Hashed by the caller and new to the repository.
    New(Id),
    /// Not hashed yet: its id goes to position `.1` of a stream's list.
    Stream(Arc<StreamIds>, usize),
}

/// Ids of a stream's chunks, filled in by the workers as they hash them.
#[derive(Default)]
struct StreamIds {
    state: Mutex<StreamIdsState>,
    filled: Condvar,
}

#[derive(Default)]
struct StreamIdsState {
    ids: Vec<Id>,
    missing: usize,
}

impl StreamIds {
    /// Room for the next chunk's id; returns its position.
    fn reserve(&self) -> usize {
        let mut state = self.state.lock().expect("stream ids lock poisoned");
        state.ids.push(Id([0; 32]));
        state.missing += 1;
        state.ids.len() - 1
    }

    /// Record the id at `at` (or, with `None`, that a failed pipeline dropped the chunk).
    fn fill(&self, at: usize, id: Option<Id>) {
        let mut state = self.state.lock().expect("stream ids lock poisoned");
        if let Some(id) = id {
            state.ids[at] = id;
        }
        state.missing -= 1;
        if state.missing == 0 {
            self.filled.notify_all();
        }
    }

    /// Wait until every reserved id is filled in, or the pipeline failed.
    fn wait(&self, failed: &AtomicBool) -> Option<Vec<Id>> {
        let mut state = self.state.lock().expect("stream ids lock poisoned");
        while state.missing > 0 {
            if failed.load(Ordering::SeqCst) {
                return None;
            }
            // Workers fill every job they take, failed or not; the timeout only bounds the
            // wait should a worker die without doing so.
            state = self.filled.wait_timeout(state, Duration::from_millis(200)).expect("stream ids lock poisoned").0;
        }
        (!failed.load(Ordering::SeqCst)).then(|| std::mem::take(&mut state.ids))
    }
}

/// Packs uploaded so far; those from `indexed` on are not yet in an index file.
#[derive(Default)]
struct Written {
    packs: Vec<IndexedPack>,
    indexed: usize,
}

/// A finished pack on its way to storage.
struct Upload {
    kind: BlobKind,
    id: Id,
    bytes: Vec<u8>,
    entries: Vec<crate::pack::PackEntry>,
}

struct Shared {
    storage: Arc<dyn Storage>,
    keys: Arc<Keys>,
    /// The repository's index, for the workers' dedup lookups.
    index: Arc<RwLock<Index>>,
    options: WriterOptions,
    /// Blobs queued or written by this writer, not yet in the repository's index.
    pending: Mutex<HashSet<Id>>,
    packers: [Mutex<PackBuilder>; 2],
    /// Finished packs go to the upload threads through this; `None` once closed.
    uploads: Mutex<Option<Sender<Upload>>>,
    /// Every pack this writer uploaded, and how many of them index files already name.
    written: Mutex<Written>,
    /// Held while an index file is written.
    index_writes: Mutex<()>,
    failed: AtomicBool,
    error: Mutex<Option<RepoError>>,
    stats: WriterStats,
    spares: Spares,
}

/// Buffers of finished work, kept for the next stream, chunk or pack: a fresh allocation of
/// this size costs page faults and zeroed pages, which the kernel bills at several percent
/// of a backup.
struct Spares {
    /// Read buffers, one per stream read at a time (usually one per core).
    reads: Pool,
    /// As many as chunks can be in flight: queued, with the workers, being filled by callers.
    chunks: Pool,
    /// Data packs rotate through building, waiting for an uploader and uploading.
    packs: Pool,
}

impl Spares {
    fn new(threads: usize) -> Spares {
        Spares { reads: Pool::new(16), chunks: Pool::new(4 * threads), packs: Pool::new(3) }
    }
}

/// Spare buffers of one use, at most `kept` of them.
struct Pool {
    buffers: Mutex<Vec<Vec<u8>>>,
    kept: usize,
}

impl Pool {
    fn new(kept: usize) -> Pool {
        Pool { buffers: Mutex::default(), kept }
    }

    /// A buffer for `len` bytes: the smallest spare that holds them without growing (growing
    /// means a fresh allocation), else the largest; an empty one if there is no spare.
    fn take(&self, len: usize) -> Vec<u8> {
        let mut pool = self.buffers.lock().expect("spares lock poisoned");
        let fits = pool.iter().enumerate().filter(|(_, b)| b.capacity() >= len).min_by_key(|(_, b)| b.capacity());
        let best = fits.or_else(|| pool.iter().enumerate().max_by_key(|(_, b)| b.capacity())).map(|(i, _)| i);
        best.map(|i| pool.swap_remove(i)).unwrap_or_default()
    }

    /// Keep a buffer for later; a full pool keeps its largest.
    fn give(&self, buffer: Vec<u8>) {
        if buffer.capacity() == 0 {
            return;
        }
        let mut pool = self.buffers.lock().expect("spares lock poisoned");
        if pool.len() < self.kept {
            pool.push(buffer);
        } else if let Some(smallest) = pool.iter_mut().min_by_key(|b| b.capacity()) {
            if smallest.capacity() < buffer.capacity() {
                *smallest = buffer;
            }
        }
    }
}

/// Saves blobs into a repository; see the module documentation for the pipeline.
pub struct Writer<'r> {
    repo: &'r Repository,
    shared: Arc<Shared>,
    tx: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    uploaders: Vec<JoinHandle<()>>,
}

impl Repository {
    /// Start writing blobs.
    pub fn writer(&self, options: WriterOptions) -> Writer<'_> {
        Writer::new(self, options)
    }
}

impl<'r> Writer<'r> {
    fn new(repo: &'r Repository, options: WriterOptions) -> Writer<'r> {
        // A finished pack goes straight to a free upload thread; with two of them one pack is
        // written while the other waits for its fsync, and a queue would only cost memory.
        let (upload_tx, upload_rx) = bounded::<Upload>(0);
        let shared = Arc::new(Shared {
            storage: repo.storage().clone(),
            keys: repo.keys().clone(),
            index: repo.shared_index(),
            options,
            pending: Mutex::default(),
            packers: Default::default(),
            uploads: Mutex::new(Some(upload_tx)),
            written: Mutex::default(),
            index_writes: Mutex::default(),
            failed: AtomicBool::new(false),
            error: Mutex::default(),
            stats: WriterStats::default(),
            spares: Spares::new(options.threads.max(1)),
        });
        let threads = options.threads.max(1);
        // Two jobs per worker in flight: enough to keep them busy, little memory.
        let (tx, rx) = bounded::<Job>(threads * 2);
        let workers = spawn(threads, "cairn-pack", &rx, &shared, worker);
        let uploaders = spawn(UPLOAD_THREADS, "cairn-upload", &upload_rx, &shared, uploader);
        Writer { repo, shared, tx: Some(tx), workers, uploaders }
    }

    /// Close the job queue and wait for the workers to drain it.
    fn join_workers(&mut self) {
        self.tx = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }

    /// Stop all threads; the upload threads last, so they take every finished pack.
    fn join_threads(&mut self) {
        self.join_workers();
        self.shared.uploads.lock().expect("uploads lock poisoned").take();
        for u in self.uploaders.drain(..) {
            let _ = u.join();
        }
    }

    /// Live counters, for progress display.
    pub fn stats(&self) -> &WriterStats {
        &self.shared.stats
    }

    fn check_failed(&self) -> Result<()> {
        if self.shared.failed.load(Ordering::SeqCst) {
            return Err(self.take_error());
        }
        Ok(())
    }

    fn take_error(&self) -> RepoError {
        self.shared.error.lock().expect("error lock poisoned").take().unwrap_or_else(|| RepoError::Corrupt {
            what: "write pipeline".into(),
            detail: "a worker failed; see the first error".into(),
        })
    }

    /// Save one blob; returns its id. Known blobs are not stored again.
    pub fn save_blob(&self, kind: BlobKind, data: Vec<u8>) -> Result<Id> {
        self.check_failed()?;
        let id = self.shared.keys.blob_id(&data);
        if self.shared.is_new(id, data.len()) {
            self.send(Job { kind, data, dest: Dest::New(id) })?;
        } else {
            self.shared.spares.chunks.give(data);
        }
        Ok(id)
    }

    fn send(&self, job: Job) -> Result<()> {
        let tx = self.tx.as_ref().expect("sender lives until finish");
        tx.send(job).map_err(|_| self.take_error())
    }

    /// Cut a stream into chunks and save them. A stream that fits in one read buffer is
    /// hashed here; a longer one is hashed by the workers (its ids collected in order in a
    /// [`StreamIds`]) while this thread goes on reading, so one large file keeps every
    /// core busy.
    pub fn save_stream(&self, reader: impl Read, params: ChunkParams) -> Result<SavedStream, SaveError> {
        let chunker = Chunker::new(self.shared.keys.gear(), params);
        let mut chunks = chunker.stream_with_buffer(reader, self.shared.spares.reads.take(2 * params.max()));
        let mut saved = SavedStream::default();
        let mut by_workers: Option<Arc<StreamIds>> = None;
        while let Some(chunk) = chunks.next_with(|len| self.shared.spares.chunks.take(len)) {
            let chunk = chunk.map_err(SaveError::Source)?;
            // Decided at the first chunk, when the reader has filled one buffer.
            if saved.size == 0 && !chunks.buffered_to_end() {
                by_workers = Some(Arc::default());
            }
            saved.size += chunk.len() as u64;
            match &by_workers {
                None => saved.content.push(self.save_blob(BlobKind::Data, chunk)?),
                Some(ids) => {
                    self.check_failed()?;
                    let dest = Dest::Stream(ids.clone(), ids.reserve());
                    self.send(Job { kind: BlobKind::Data, data: chunk, dest })?;
                }
            }
        }
        self.shared.spares.reads.give(chunks.into_buffer());
        if let Some(ids) = by_workers {
            saved.content = ids.wait(&self.shared.failed).ok_or_else(|| self.take_error())?;
        }
        Ok(saved)
    }

    /// Save a directory listing.
    pub fn save_tree(&self, tree: &mut Tree) -> Result<Id> {
        self.save_blob(BlobKind::Tree, tree.to_bytes())
    }

    /// Wait for every queued blob, write the last packs and index file, and make the new
    /// blobs visible in the repository's index. Only after this may a snapshot be saved.
    pub fn finish(mut self) -> Result<WriteTotals> {
        self.join_workers();
        self.check_failed()?;
        for kind in [BlobKind::Data, BlobKind::Tree] {
            let packer = std::mem::take(&mut *self.shared.packers[kind as usize].lock().expect("packer lock poisoned"));
            if !packer.is_empty() {
                send_pack(&self.shared, kind, packer)?;
            }
        }
        self.join_threads();
        self.check_failed()?;
        write_index(&self.shared, true)?;
        self.repo.add_to_index(&self.shared.written.lock().expect("written lock poisoned").packs);
        Ok(self.shared.stats.totals())
    }
}

impl Writer<'_> {
    /// Give up: stop the pipeline and delete the packs this writer uploaded that no index
    /// file names yet. Nobody can refer to their blobs (they enter the repository's index
    /// only through `finish`, and other processes learn of packs only from index files), so
    /// a failed source leaves nothing behind but what an index file already named, which is
    /// garbage for `prune`. Returns how many packs were deleted.
    pub fn abandon(mut self) -> usize {
        self.shared.failed.store(true, Ordering::SeqCst);
        self.join_threads();
        let unindexed: Vec<Id> = {
            let written = self.shared.written.lock().expect("written lock poisoned");
            written.packs[written.indexed..].iter().map(|p| p.id).collect()
        };
        unindexed.iter().filter(|id| self.shared.storage.delete(&pack_key(id)).is_ok()).count()
    }
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        // An abandoned writer stops its workers; what it uploaded is garbage for prune.
        self.shared.failed.store(true, Ordering::SeqCst);
        self.join_threads();
    }
}

impl Shared {
    /// Count a blob handed in; true if neither the repository nor this writer has it yet
    /// (it is then this caller's to store).
    fn is_new(&self, id: Id, len: usize) -> bool {
        self.stats.blobs_seen.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes_seen.fetch_add(len as u64, Ordering::Relaxed);
        if self.index.read().expect("index lock poisoned").contains(&id)
            || !self.pending.lock().expect("pending lock poisoned").insert(id)
        {
            return false;
        }
        self.stats.blobs_new.fetch_add(1, Ordering::Relaxed);
        true
    }
}

fn worker(rx: &Receiver<Job>, shared: &Shared) {
    // One buffer for every blob this worker seals.
    let mut sealed = Vec::new();
    for Job { kind, data, dest } in rx {
        // After a failure keep draining (and releasing stream waiters) so that no producer
        // blocks on a full queue.
        if shared.failed.load(Ordering::SeqCst) {
            if let Dest::Stream(ids, at) = dest {
                ids.fill(at, None);
            }
            continue;
        }
        let id = match dest {
            Dest::New(id) => id,
            Dest::Stream(ids, at) => {
                let id = shared.keys.blob_id(&data);
                ids.fill(at, Some(id));
                if !shared.is_new(id, data.len()) {
                    shared.spares.chunks.give(data);
                    continue;
                }
                id
            }
        };
        if let Err(e) = store_blob(shared, kind, id, &data, &mut sealed) {
            fail(shared, e);
        }
        shared.spares.chunks.give(data);
    }
}

/// `count` threads named `name-N`, each running `run` on the queue `rx`.
fn spawn<T: Send + 'static>(
    count: usize,
    name: &str,
    rx: &Receiver<T>,
    shared: &Arc<Shared>,
    run: fn(&Receiver<T>, &Shared),
) -> Vec<JoinHandle<()>> {
    (0..count)
        .map(|i| {
            let (rx, shared) = (rx.clone(), shared.clone());
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || run(&rx, &shared))
                .unwrap_or_else(|e| panic!("spawning thread {name}-{i}: {e}"))
        })
        .collect()
}

/// Record the first error and stop the pipeline.
fn fail(shared: &Shared, e: RepoError) {
    shared.error.lock().expect("error lock poisoned").get_or_insert(e);
    shared.failed.store(true, Ordering::SeqCst);
}

fn uploader(rx: &Receiver<Upload>, shared: &Shared) {
    for upload in rx {
        if shared.failed.load(Ordering::SeqCst) {
            continue;
        }
        if let Err(e) = upload_pack(shared, upload).and_then(|()| write_index(shared, false)) {
            fail(shared, e);
        }
    }
}

fn store_blob(shared: &Shared, kind: BlobKind, id: Id, data: &[u8], sealed: &mut Vec<u8>) -> Result<()> {
    sealed.clear();
    sealed.reserve(data.len() + 1 + crate::crypto::SEAL_OVERHEAD);
    sealed.resize(crate::crypto::NONCE_LEN, 0);
    compress::compress_into(data, shared.options.compression, sealed);
    shared.keys.seal_in_place(sealed, &id.0);
    let raw_len = u32::try_from(data.len()).expect("chunks stay far below 4 GiB");
    let full = {
        let mut packer = shared.packers[kind as usize].lock().expect("packer lock poisoned");
        // A data pack starts in a finished pack's buffer. Trees arrive slowly: a tree pack
        // grows as it fills rather than hold a whole pack's worth of touched pages for the run.
        if packer.is_empty() && kind == BlobKind::Data {
            packer.recycle(shared.spares.packs.take(shared.options.pack_size));
        }
        packer.add(kind, id, sealed, raw_len);
        (packer.size() >= shared.options.pack_size).then(|| std::mem::take(&mut *packer))
    };
    if let Some(packer) = full {
        send_pack(shared, kind, packer)?;
    }
    Ok(())
}

/// Seal a full pack's header and queue it for upload.
fn send_pack(shared: &Shared, kind: BlobKind, packer: PackBuilder) -> Result<()> {
    let (bytes, id, entries) = packer.finish(&shared.keys);
    let tx = shared.uploads.lock().expect("uploads lock poisoned").clone();
    let sent = tx.is_some_and(|tx| tx.send(Upload { kind, id, bytes, entries }).is_ok());
    if !sent {
        return Err(RepoError::Corrupt { what: "write pipeline".into(), detail: "the upload threads stopped".into() });
    }
    Ok(())
}

fn upload_pack(shared: &Shared, upload: Upload) -> Result<()> {
    let Upload { kind, id, bytes, entries } = upload;
    shared.storage.put(&pack_key(&id), &bytes)?;
    shared.stats.bytes_stored.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    shared.spares.packs.give(bytes);
    shared.written.lock().expect("written lock poisoned").packs.push(IndexedPack { id, kind, entries });
    Ok(())
}

/// Write an index file for uploaded packs once enough have gathered (or always, at the end).
fn write_index(shared: &Shared, always: bool) -> Result<()> {
    // One index write at a time, so the packs counted here are still unindexed when the
    // write below completes (packs keep arriving meanwhile; they go into the next file).
    let _one_at_a_time = shared.index_writes.lock().expect("index writes lock poisoned");
    let (key, sealed, count) = {
        let written = shared.written.lock().expect("written lock poisoned");
        let fresh = &written.packs[written.indexed..];
        if fresh.is_empty() || (!always && fresh.len() < PACKS_PER_INDEX) {
            return Ok(());
        }
        let (key, sealed) = index::seal(&shared.keys, fresh);
        (key, sealed, fresh.len())
    };
    shared.storage.put(&key, &sealed)?;
    shared.written.lock().expect("written lock poisoned").indexed += count;
    shared.stats.bytes_stored.fetch_add(sealed.len() as u64, Ordering::Relaxed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use cairn_storage::{Fault, FaultStorage, MemStorage};

    use super::*;
    use crate::testing::repo_on as repo;

    fn noise(seed: u8, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        blake3::Hasher::new().update(&[seed]).finalize_xof().fill(&mut out);
        out
    }

    const SMALL: ChunkParams = ChunkParams { avg: 1 << 12 };
    const OPTIONS: WriterOptions = WriterOptions { compression: 1, pack_size: 64 << 10, threads: 2 };

    /// What sequential chunking and hashing would give: the stream's ids, in order.
    fn expected_ids(repo: &Repository, data: &[u8]) -> Vec<Id> {
        Chunker::new(repo.keys().gear(), SMALL).split(data).map(|c| repo.keys().blob_id(c)).collect()
    }

    #[test]
    fn a_pool_hands_out_the_smallest_buffer_that_fits_and_keeps_its_largest() {
        let pool = Pool::new(2);
        for capacity in [10, 1000, 100] {
            pool.give(Vec::with_capacity(capacity));
        }
        pool.give(Vec::new());
        // 10 was dropped for 100 once the pool was full; an empty buffer is never kept.
        assert!(pool.take(50).capacity() >= 100);
        assert!(pool.take(5000).capacity() >= 1000, "nothing fits: the largest");
        assert_eq!(pool.take(1).capacity(), 0, "the pool is empty");
    }

    #[test]
    fn a_long_stream_hashed_by_the_workers_keeps_its_order_and_dedups() {
        let repo = repo(Arc::new(MemStorage::new()));
        // Far longer than one read buffer (2 x 16 KiB), with a repeated stretch inside.
        let a = noise(1, 300_000);
        let data = [a.as_slice(), &noise(2, 100_000), a.as_slice()].concat();
        let writer = repo.writer(OPTIONS);
        let saved = writer.save_stream(data.as_slice(), SMALL).unwrap();
        let totals = writer.finish().unwrap();
        let expected = expected_ids(&repo, &data);
        assert_eq!(saved.content, expected);
        assert_eq!(saved.size, data.len() as u64);
        let unique: HashSet<_> = expected.iter().collect();
        assert_eq!(totals.blobs_seen as usize, expected.len());
        assert_eq!(totals.blobs_new as usize, unique.len(), "the repeated stretch is stored once");
        let back: Vec<u8> = saved.content.iter().flat_map(|id| repo.load_blob(id).unwrap()).collect();
        assert_eq!(back, data);
    }

    #[test]
    fn a_short_stream_is_hashed_by_its_caller_with_the_same_result() {
        let repo = repo(Arc::new(MemStorage::new()));
        let data = noise(3, 20_000);
        let writer = repo.writer(OPTIONS);
        let saved = writer.save_stream(data.as_slice(), SMALL).unwrap();
        let again = writer.save_stream(data.as_slice(), SMALL).unwrap();
        let totals = writer.finish().unwrap();
        assert_eq!(saved.content, expected_ids(&repo, &data));
        assert_eq!(again.content, saved.content);
        assert_eq!(totals.blobs_new as usize, saved.content.len());
        assert!(all_indexed(&repo, &saved.content));
    }

    fn all_indexed(repo: &Repository, ids: &[Id]) -> bool {
        ids.iter().all(|id| repo.index().contains(id))
    }

    #[test]
    fn a_failing_upload_ends_a_long_stream_with_an_error_not_a_hang() {
        let probe = Arc::new(FaultStorage::new(MemStorage::new(), Fault::None));
        repo(probe.clone());
        let first_pack = probe.writes() + 1;
        let repo = repo(Arc::new(FaultStorage::new(MemStorage::new(), Fault::CrashAtWrite(first_pack))));
        let data = noise(4, 4 << 20);
        let writer = repo.writer(OPTIONS);
        match writer.save_stream(data.as_slice(), SMALL) {
            Err(SaveError::Repo(e)) => assert!(e.to_string().contains("injected"), "{e}"),
            other => panic!("expected the upload's error, got {other:?}"),
        }
    }
}
