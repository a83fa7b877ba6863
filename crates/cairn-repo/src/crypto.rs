//! Keys and authenticated encryption of stored objects.
//!
//! One random 32-byte master secret per repository; every working key is derived from it
//! with BLAKE3's key-derivation mode, so rotating a password never touches data. Objects are
//! sealed with AES-256-GCM under a random 96-bit nonce: `nonce ‖ ciphertext ‖ tag`. The
//! associated data binds an object to its role (a blob to its id, an index file to "index"),
//! so a valid object cannot be swapped in for another.

pub use ring::aead::NONCE_LEN;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::rand::{SecureRandom, SystemRandom};

use crate::chunker::GearTable;
use crate::id::Id;

/// Bytes added to every sealed object: nonce plus tag.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + 16;

const CTX_ENCRYPT: &str = "cairn v1 2026-11 object encryption";
const CTX_BLOB_ID: &str = "cairn v1 2026-11 blob id";
const CTX_GEAR: &str = "cairn v1 2026-11 chunker gear table";

/// Failure to authenticate a sealed object: it was damaged, or sealed under another key.
#[derive(Debug, thiserror::Error)]
#[error("authentication failed (damaged data or wrong key)")]
pub struct AuthError;

/// The repository master secret and the keys derived from it.
pub struct Keys {
    master: [u8; 32],
    aead: LessSafeKey,
    id_key: [u8; 32],
    gear: GearTable,
}

impl Keys {
    /// Derive all working keys from a master secret.
    pub fn from_master(master: [u8; 32]) -> Keys {
        let enc = blake3::derive_key(CTX_ENCRYPT, &master);
        let aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &enc).expect("32-byte AES key"));
        let id_key = blake3::derive_key(CTX_BLOB_ID, &master);
        let gear_key = blake3::derive_key(CTX_GEAR, &master);
        Keys { master, aead, id_key, gear: GearTable::from_key(&gear_key) }
    }

    /// A fresh random master secret.
    pub fn generate() -> Keys {
        Keys::from_master(random_bytes())
    }

    pub fn master(&self) -> &[u8; 32] {
        &self.master
    }

    /// Keyed hash of a blob's plaintext: its id.
    pub fn blob_id(&self, plaintext: &[u8]) -> Id {
        Id(*blake3::keyed_hash(&self.id_key, plaintext).as_bytes())
    }

    /// The chunker's gear table, secret like the key it comes from.
    pub fn gear(&self) -> &GearTable {
        &self.gear
    }

    /// Encrypt and authenticate `plaintext`, binding it to `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        seal_with(&self.aead, plaintext, aad)
    }

    /// Seal in place: `buf` holds [`NONCE_LEN`] bytes of room followed by the plaintext; the
    /// room receives the nonce and the tag is appended. Saves a copy of large blobs.
    pub fn seal_in_place(&self, buf: &mut Vec<u8>, aad: &[u8]) {
        seal_in_place_with(&self.aead, buf, aad);
    }

    /// Check and decrypt in place; returns the plaintext, a part of `sealed`.
    pub fn open_in_place<'b>(&self, sealed: &'b mut [u8], aad: &[u8]) -> Result<&'b mut [u8], AuthError> {
        open_in_place_with(&self.aead, sealed, aad)
    }

    /// Check and decrypt an object made by [`Keys::seal`] with the same `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, AuthError> {
        open_with(&self.aead, sealed, aad)
    }
}

/// Seal with an arbitrary 32-byte key (used for key slots).
pub fn seal_with_key(key: &[u8; 32], plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32-byte AES key"));
    seal_with(&k, plaintext, aad)
}

/// Open with an arbitrary 32-byte key (used for key slots).
pub fn open_with_key(key: &[u8; 32], sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, AuthError> {
    let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32-byte AES key"));
    open_with(&k, sealed, aad)
}

fn seal_with(key: &LessSafeKey, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
    buf.resize(NONCE_LEN, 0);
    buf.extend_from_slice(plaintext);
    seal_in_place_with(key, &mut buf, aad);
    buf
}

/// `buf` is [`NONCE_LEN`] bytes of room, then the plaintext; the tag is appended.
fn seal_in_place_with(key: &LessSafeKey, buf: &mut Vec<u8>, aad: &[u8]) {
    let nonce: [u8; NONCE_LEN] = random_bytes();
    buf[..NONCE_LEN].copy_from_slice(&nonce);
    let tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut buf[NONCE_LEN..])
        .expect("AES-GCM sealing cannot fail for in-range lengths");
    buf.extend_from_slice(tag.as_ref());
}

fn open_with(key: &LessSafeKey, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, AuthError> {
    let mut buf = sealed.to_vec();
    let plain_len = open_in_place_with(key, &mut buf, aad)?.len();
    buf.drain(..NONCE_LEN);
    buf.truncate(plain_len);
    Ok(buf)
}

fn open_in_place_with<'b>(key: &LessSafeKey, sealed: &'b mut [u8], aad: &[u8]) -> Result<&'b mut [u8], AuthError> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(AuthError);
    }
    let (nonce, rest) = sealed.split_at_mut(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| AuthError)?;
    key.open_in_place(nonce, Aad::from(aad), rest).map_err(|_| AuthError)
}

/// `N` bytes from the operating system's secure random source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    SystemRandom::new().fill(&mut out).expect("the OS random source failed");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_aad_binding() {
        let keys = Keys::generate();
        let sealed = keys.seal(b"secret data", b"blob-1");
        assert_eq!(sealed.len(), 11 + SEAL_OVERHEAD);
        assert_eq!(keys.open(&sealed, b"blob-1").unwrap(), b"secret data");
        assert!(keys.open(&sealed, b"blob-2").is_err(), "aad must bind");
        let mut flipped = sealed.clone();
        flipped[15] ^= 1;
        assert!(keys.open(&flipped, b"blob-1").is_err(), "a flipped bit must fail");
        assert!(Keys::generate().open(&sealed, b"blob-1").is_err(), "another key must fail");
        let mut buf = vec![0u8; NONCE_LEN];
        buf.extend_from_slice(b"in place");
        keys.seal_in_place(&mut buf, b"aad");
        assert_eq!(keys.open(&buf, b"aad").unwrap(), b"in place");
    }

    #[test]
    fn blob_ids_are_keyed() {
        let a = Keys::from_master([1; 32]);
        let b = Keys::from_master([2; 32]);
        assert_eq!(a.blob_id(b"x"), a.blob_id(b"x"));
        assert_ne!(a.blob_id(b"x"), b.blob_id(b"x"));
    }
}
