//! Opening, creating and reading a repository.

use std::collections::HashSet;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use cairn_storage::Storage;
use serde::{Deserialize, Serialize};

use crate::compress;
use crate::crypto::Keys;
use crate::error::{RepoError, Result};
use crate::id::Id;
use crate::index::{self, BlobLoc, Index, IndexedPack};
use crate::keyslot::{KdfParams, KeySlot, Secret};
use crate::pack::pack_key;
use crate::snapshot::{Snapshot, SNAPSHOT_AAD, SNAPSHOT_VERSION};
use crate::tree::Tree;

/// The repository format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const CONFIG_KEY: &str = "config";

/// The plaintext `config` object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepoConfig {
    pub version: u32,
    pub id: Id,
    pub created: chrono::DateTime<chrono::Utc>,
}

/// Who is creating a key slot, for `key list`.
#[derive(Debug, Clone, Default)]
pub struct SlotInfo {
    pub label: String,
    pub host: String,
    pub kdf: KdfParams,
}

/// An open, unlocked repository.
pub struct Repository {
    storage: Arc<dyn Storage>,
    keys: Arc<Keys>,
    config: RepoConfig,
    /// Shared with writers, whose workers look blobs up while hashing.
    index: Arc<RwLock<Index>>,
    /// Index files that could not be read at the last load, with the reason.
    damaged_index: std::sync::Mutex<Vec<String>>,
    /// Marks that could not be read at the last load, with the reason.
    damaged_marks: std::sync::Mutex<Vec<String>>,
}

impl Repository {
    /// Create a new repository in empty storage, with one key slot for `secret`.
    pub fn init(storage: Arc<dyn Storage>, secret: &Secret, slot: &SlotInfo) -> Result<Repository> {
        if storage.exists(CONFIG_KEY)? {
            return Err(RepoError::AlreadyExists { location: storage.location() });
        }
        let keys = Keys::generate();
        let config =
            RepoConfig { version: FORMAT_VERSION, id: Id(crate::crypto::random_bytes()), created: chrono::Utc::now() };
        let slot = KeySlot::create(keys.master(), &config.id, secret, slot.kdf, &slot.label, &slot.host);
        let bytes = slot.to_bytes();
        // The key slot goes first: a config without a usable slot would be a locked repository.
        storage.put(&KeySlot::storage_key(&bytes), &bytes)?;
        storage.put(CONFIG_KEY, &serde_json::to_vec_pretty(&config).expect("config serialises"))?;
        Ok(Repository {
            storage,
            keys: Arc::new(keys),
            config,
            index: Arc::default(),
            damaged_index: Default::default(),
            damaged_marks: Default::default(),
        })
    }

    /// Open and unlock an existing repository, and load its index.
    pub fn open(storage: Arc<dyn Storage>, secret: &Secret) -> Result<Repository> {
        let config = read_config(storage.as_ref())?;
        let slots = key_slots(storage.as_ref())?;
        let master = slots
            .iter()
            .find_map(|(_, slot)| slot.unlock(&config.id, secret))
            .ok_or_else(|| RepoError::WrongKey { location: storage.location(), slots: slots.len() })?;
        let repo = Repository {
            storage,
            keys: Arc::new(Keys::from_master(master)),
            config,
            index: Arc::default(),
            damaged_index: Default::default(),
            damaged_marks: Default::default(),
        };
        repo.reload_index()?;
        Ok(repo)
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    pub fn keys(&self) -> &Arc<Keys> {
        &self.keys
    }

    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// Where the repository lives, for messages.
    pub fn location(&self) -> String {
        self.storage.location()
    }

    /// Read access to the in-memory index.
    pub fn index(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().expect("index lock poisoned")
    }

    /// The index itself, for threads that outlive a borrow of the repository.
    pub(crate) fn shared_index(&self) -> Arc<RwLock<Index>> {
        self.index.clone()
    }

    /// Read every index file again, and the marks prune left.
    ///
    /// An index file that fails to decrypt or parse is skipped and remembered (see
    /// [`Repository::damaged_index_files`]); the locations it held are then recovered from the
    /// headers of the packs no other index file or mark names, so reading and writing go on
    /// working. Packs listed in marks are added as readable but not reusable (see
    /// [`Index::add_marked_packs`]).
    pub fn reload_index(&self) -> Result<()> {
        // Marks, index files, then marks again. Prune writes a mark before deleting the index
        // files that named its packs, and an index file naming a revived pack before deleting
        // its mark; so a pack that moves from one to the other while we read is seen in the
        // first marks, the index files or the second marks.
        let mut marks = self.read_marks()?;
        let (mut fresh, damaged) = self.read_index_files(|index: &mut Index, _, packs| index.stage(&packs))?;
        fresh.commit();
        self.read_new_marks(&mut marks)?;
        if !damaged.is_empty() {
            let marked: HashSet<Id> = marks.packs().map(|p| p.pack.id).collect();
            self.recover_from_packs(&mut fresh, &marked)?;
        }
        let marked: Vec<IndexedPack> = marks.packs().map(|p| p.pack.clone()).collect();
        fresh.add_marked_packs(&marked);
        *self.index.write().expect("index lock poisoned") = fresh;
        *self.damaged_index.lock().expect("damaged index lock poisoned") =
            damaged.iter().map(ToString::to_string).collect();
        *self.damaged_marks.lock().expect("damaged marks lock poisoned") =
            marks.damaged.iter().map(|(_, e)| e.to_string()).collect();
        Ok(())
    }

    /// Read every index file into `T`, calling `add` with each file's key and packs; returns
    /// the result and the files that failed to decrypt or parse.
    ///
    /// Prune deletes an index file only after writing the files that replace it. So a file
    /// that vanishes between listing and reading is skipped, and the listing is read again
    /// for files not seen yet, which include its replacement; a file read before prune
    /// deleted it is as good as a slightly older view of the index. This ends when a round
    /// finds nothing vanished (or, after many rounds, with the error).
    pub(crate) fn read_index_files<T: Default>(
        &self,
        mut add: impl FnMut(&mut T, &str, Vec<IndexedPack>),
    ) -> Result<(T, Vec<RepoError>)> {
        const ROUNDS: usize = 20;
        const INDEX_READERS: usize = 4;
        let (mut out, mut damaged, mut seen) = (T::default(), Vec::new(), HashSet::new());
        for round in 1.. {
            let mut vanished = None;
            let keys: Vec<String> =
                self.storage.list("index/")?.into_iter().map(|e| e.key).filter(|k| seen.insert(k.clone())).collect();
            // A few files at a time: each is a storage round trip plus decryption, so they
            // overlap well, and what waits to be added stays small.
            for batch in keys.chunks(INDEX_READERS) {
                let read: Vec<Result<Vec<IndexedPack>>> = std::thread::scope(|scope| {
                    let readers: Vec<_> =
                        batch.iter().map(|key| scope.spawn(move || self.read_index_file(key))).collect();
                    readers.into_iter().map(|r| r.join().expect("an index reader panicked")).collect()
                });
                for (key, packs) in batch.iter().zip(read) {
                    match packs {
                        Ok(packs) => add(&mut out, key, packs),
                        Err(RepoError::Storage(e)) if e.is_not_found() => vanished = Some(e),
                        Err(e @ RepoError::Corrupt { .. }) => damaged.push(e),
                        Err(e) => return Err(e),
                    }
                }
            }
            match vanished {
                None => break,
                Some(e) if round == ROUNDS => return Err(e.into()),
                Some(_) => {}
            }
        }
        Ok((out, damaged))
    }

    /// Index files skipped at the last load because they are damaged.
    pub fn damaged_index_files(&self) -> Vec<String> {
        self.damaged_index.lock().expect("damaged index lock poisoned").clone()
    }

    /// Marks skipped at the last load because they are damaged.
    pub fn damaged_marks(&self) -> Vec<String> {
        self.damaged_marks.lock().expect("damaged marks lock poisoned").clone()
    }

    /// Add the packs no index file and no mark names, read from their own headers. Marked
    /// packs stay out: prune took them out of the index on purpose.
    fn recover_from_packs(&self, index: &mut Index, marked: &HashSet<Id>) -> Result<()> {
        for entry in self.storage.list("packs/")? {
            let Some(id) = entry.key.rsplit('/').next().and_then(|n| n.parse::<Id>().ok()) else { continue };
            if index.has_pack(&id) || marked.contains(&id) {
                continue;
            }
            // A pack whose header is damaged too stays unindexed; check reports it.
            if let Some(pack) = self.read_pack_header(&id, entry.size)? {
                index.stage(&[pack]);
            }
        }
        index.commit();
        Ok(())
    }

    /// A pack's entries from its own header; `None` if the header is damaged or the pack
    /// too short to hold one, or is gone.
    pub(crate) fn read_pack_header(&self, id: &Id, size: u64) -> Result<Option<IndexedPack>> {
        let key = pack_key(id);
        if size < 4 {
            return Ok(None);
        }
        let tail = match self.storage.get_range(&key, size - 4, 4) {
            Err(e) if e.is_not_found() => return Ok(None),
            other => other?,
        };
        let Ok(len) = crate::pack::header_len(&tail) else { return Ok(None) };
        let Some(start) = (size - 4).checked_sub(u64::from(len)) else { return Ok(None) };
        let sealed = match self.storage.get_range(&key, start, len.into()) {
            Err(e) if e.is_not_found() => return Ok(None),
            other => other?,
        };
        let Ok(entries) = crate::pack::open_header(&self.keys, &sealed) else { return Ok(None) };
        let Some(kind) = entries.first().map(|e| e.kind) else { return Ok(None) };
        Ok(Some(IndexedPack { id: *id, kind, entries }))
    }

    /// Decrypt and parse one index file.
    pub fn read_index_file(&self, key: &str) -> Result<Vec<IndexedPack>> {
        let sealed = self.storage.get(key)?;
        let plain = self.keys.open(&sealed, index::INDEX_AAD).map_err(|e| RepoError::corrupt(key, e))?;
        index::decode(&plain).map_err(|e| RepoError::corrupt(key, e))
    }

    pub(crate) fn add_to_index(&self, packs: &[IndexedPack]) {
        self.index.write().expect("index lock poisoned").add_packs(packs);
    }

    /// Plaintext of one blob, authenticated and checked against its id.
    pub fn load_blob(&self, id: &Id) -> Result<Vec<u8>> {
        let found = {
            let index = self.index();
            index.get(id).map(|loc| (loc, index.pack(loc.pack).0))
        };
        let (loc, pack) = found.ok_or(RepoError::MissingBlob(*id))?;
        self.read_blob(id, &pack, loc)
    }

    /// [`Repository::load_blob`] through another index than the repository's own.
    pub(crate) fn load_blob_in(&self, index: &Index, id: &Id) -> Result<Vec<u8>> {
        let loc = index.get(id).ok_or(RepoError::MissingBlob(*id))?;
        self.read_blob(id, &index.pack(loc.pack).0, loc)
    }

    /// [`Repository::load_tree`] through another index than the repository's own.
    pub(crate) fn load_tree_in(&self, index: &Index, id: &Id) -> Result<Tree> {
        let bytes = self.load_blob_in(index, id)?;
        Tree::from_bytes(&bytes).map_err(|e| RepoError::corrupt(format!("tree {}", id.short()), e))
    }

    fn read_blob(&self, id: &Id, pack: &Id, loc: BlobLoc) -> Result<Vec<u8>> {
        let mut sealed = self.storage.get_range(&pack_key(pack), loc.offset.into(), loc.length.into())?;
        let mut scratch = Vec::new();
        let plain = self.open_blob_in_place(id, &mut sealed, loc.raw_len, &mut scratch).map(<[u8]>::to_vec);
        plain.map_err(|detail| RepoError::Corrupt {
            what: format!("blob {} in pack {}", id.short(), pack.short()),
            detail,
        })
    }

    /// Decrypt, decompress and verify a sealed blob in place: the plaintext is a part of
    /// `sealed` for raw blobs, or decompressed into `scratch`, whose allocation is reused.
    pub fn open_blob_in_place<'b>(
        &self,
        id: &Id,
        sealed: &'b mut [u8],
        raw_len: u32,
        scratch: &'b mut Vec<u8>,
    ) -> Result<&'b [u8], String> {
        let framed = self.keys.open_in_place(sealed, &id.0).map_err(|e| e.to_string())?;
        let plain: &'b [u8] = match framed.split_first() {
            Some((&compress::RAW, payload)) if payload.len() == raw_len as usize => payload,
            _ => {
                compress::decompress_into(framed, raw_len as usize, scratch).map_err(|e| e.to_string())?;
                scratch
            }
        };
        if self.keys.blob_id(plain) != *id {
            return Err("content does not match its id".to_string());
        }
        Ok(plain)
    }

    /// Decrypt, decompress and verify one sealed blob, leaving `sealed` as it is.
    pub fn open_blob(&self, id: &Id, sealed: &[u8], raw_len: u32) -> Result<Vec<u8>, String> {
        let (mut copy, mut scratch) = (sealed.to_vec(), Vec::new());
        self.open_blob_in_place(id, &mut copy, raw_len, &mut scratch).map(<[u8]>::to_vec)
    }

    pub fn load_tree(&self, id: &Id) -> Result<Tree> {
        let bytes = self.load_blob(id)?;
        Tree::from_bytes(&bytes).map_err(|e| RepoError::corrupt(format!("tree {}", id.short()), e))
    }

    /// Seal and store a snapshot manifest; this is the commit point of a backup.
    pub fn save_snapshot(&self, snapshot: &Snapshot) -> Result<Id> {
        let json = serde_json::to_vec(snapshot).expect("snapshots serialise");
        let sealed = self.keys.seal(&json, SNAPSHOT_AAD);
        let id = Id::of_stored(&sealed);
        self.storage.put(&format!("snapshots/{}", id.to_hex()), &sealed)?;
        Ok(id)
    }

    pub fn load_snapshot(&self, id: &Id) -> Result<Snapshot> {
        let key = format!("snapshots/{}", id.to_hex());
        let sealed = self.storage.get(&key)?;
        let plain = self.keys.open(&sealed, SNAPSHOT_AAD).map_err(|e| RepoError::corrupt(&key, e))?;
        let snap: Snapshot = serde_json::from_slice(&plain).map_err(|e| RepoError::corrupt(&key, e))?;
        if snap.version > SNAPSHOT_VERSION {
            return Err(RepoError::corrupt(
                &key,
                format!("manifest version {} is newer than this cairn", snap.version),
            ));
        }
        Ok(snap)
    }

    /// Remove a snapshot manifest (`cairn forget`). The data it used stays until prune.
    pub fn delete_snapshot(&self, id: &Id) -> Result<()> {
        Ok(self.storage.delete(&format!("snapshots/{}", id.to_hex()))?)
    }

    /// Ids of all snapshots, unordered.
    pub fn snapshot_ids(&self) -> Result<Vec<Id>> {
        let mut ids = Vec::new();
        for entry in self.storage.list("snapshots/")? {
            let name = entry.key.rsplit('/').next().unwrap_or_default();
            // Anything not named by an id is not ours; check reports it.
            if let Ok(id) = name.parse() {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// All snapshots, oldest first. A snapshot removed by a concurrent `forget` between
    /// listing and reading is simply not there.
    pub fn snapshots(&self) -> Result<Vec<(Id, Snapshot)>> {
        let mut all = Vec::new();
        for id in self.snapshot_ids()? {
            match self.load_snapshot(&id) {
                Ok(snap) => all.push((id, snap)),
                Err(RepoError::Storage(e)) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        all.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        Ok(all)
    }

    /// Resolve `latest` or a unique id prefix among `candidates` (oldest first).
    pub fn resolve(candidates: &[(Id, Snapshot)], spec: &str) -> Result<(Id, Snapshot)> {
        if spec == "latest" {
            return candidates.last().cloned().ok_or_else(|| RepoError::SnapshotNotFound(spec.to_string()));
        }
        let spec_lower = spec.to_ascii_lowercase();
        let matches: Vec<_> = candidates.iter().filter(|(id, _)| id.to_hex().starts_with(&spec_lower)).collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(RepoError::SnapshotNotFound(spec.to_string())),
            many => Err(RepoError::AmbiguousSnapshot { prefix: spec.to_string(), count: many.len() }),
        }
    }

    /// Find a snapshot by `latest` or id prefix.
    pub fn find_snapshot(&self, spec: &str) -> Result<(Id, Snapshot)> {
        Self::resolve(&self.snapshots()?, spec)
    }

    /// All key slots with their storage keys.
    pub fn key_slots(&self) -> Result<Vec<(String, KeySlot)>> {
        key_slots(self.storage.as_ref())
    }

    /// Add a key slot for `secret`; returns its storage key.
    pub fn add_key(&self, secret: &Secret, slot: &SlotInfo) -> Result<String> {
        let slot = KeySlot::create(self.keys.master(), &self.config.id, secret, slot.kdf, &slot.label, &slot.host);
        let bytes = slot.to_bytes();
        let key = KeySlot::storage_key(&bytes);
        self.storage.put(&key, &bytes)?;
        Ok(key)
    }

    /// Remove the key slot whose id starts with `prefix`; never the last one.
    pub fn remove_key(&self, prefix: &str) -> Result<String> {
        let slots = self.key_slots()?;
        let matching: Vec<_> =
            slots.iter().filter(|(k, _)| k.trim_start_matches("keys/").starts_with(prefix)).collect();
        let key = match matching.as_slice() {
            [(key, _)] => key.clone(),
            [] => return Err(RepoError::NoSuchKey(prefix.to_string())),
            many => return Err(RepoError::AmbiguousKey { prefix: prefix.to_string(), count: many.len() }),
        };
        if slots.len() == 1 {
            return Err(RepoError::LastKey);
        }
        self.storage.delete(&key)?;
        Ok(key)
    }
}

fn read_config(storage: &dyn Storage) -> Result<RepoConfig> {
    let bytes = match storage.get(CONFIG_KEY) {
        Err(e) if e.is_not_found() => return Err(RepoError::NotARepository { location: storage.location() }),
        other => other?,
    };
    let config: RepoConfig = serde_json::from_slice(&bytes).map_err(|e| RepoError::corrupt("config", e))?;
    if config.version != FORMAT_VERSION {
        return Err(RepoError::UnsupportedVersion {
            location: storage.location(),
            found: config.version,
            supported: FORMAT_VERSION,
        });
    }
    Ok(config)
}

fn key_slots(storage: &dyn Storage) -> Result<Vec<(String, KeySlot)>> {
    storage
        .list("keys/")?
        .into_iter()
        .map(|entry| {
            let bytes = storage.get(&entry.key)?;
            let slot = serde_json::from_slice(&bytes).map_err(|e| RepoError::corrupt(&entry.key, e))?;
            Ok((entry.key, slot))
        })
        .collect()
}
