//! Key slots: the repository master secret, wrapped once per password or key file.
//!
//! A slot is plaintext JSON at `keys/<BLAKE3 of its bytes>`. Its wrapping key comes from a
//! password through Argon2id, or from a key file's bytes through BLAKE3 key derivation; the
//! master secret is sealed under it with AES-256-GCM, bound to the repository id. Adding or
//! removing a slot never touches data.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::crypto::{open_with_key, random_bytes, seal_with_key};
use crate::id::Id;

const CTX_KEYFILE: &str = "cairn v1 2026-11 key file wrapping";
const WRAP_AAD: &[u8] = b"cairn key slot ";

/// What unlocks a repository.
pub enum Secret {
    Password(String),
    /// The bytes of a key file (surrounding whitespace is ignored).
    KeyFile(Vec<u8>),
}

impl Secret {
    fn kind(&self) -> SlotKind {
        match self {
            Secret::Password(_) => SlotKind::Password,
            Secret::KeyFile(_) => SlotKind::KeyFile,
        }
    }
}

/// Argon2id cost parameters, stored in each password slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 32 MiB, 4 passes: about a fifth of a second on one core. Memory is kept at 32 MiB
    /// so that unlocking does not set the peak memory of small runs; more passes make up
    /// the cost (OWASP's Argon2id minimum is 19 MiB with 2 passes).
    fn default() -> Self {
        KdfParams { memory_kib: 32 * 1024, iterations: 4, parallelism: 1 }
    }
}

/// Password or key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotKind {
    Password,
    #[serde(rename = "keyfile")]
    KeyFile,
}

/// One key slot as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeySlot {
    pub version: u32,
    pub kind: SlotKind,
    pub created: DateTime<Utc>,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kdf: Option<KdfParams>,
    /// Hex salt for the KDF or key-file derivation.
    pub salt: String,
    /// Hex of the sealed master secret.
    pub wrapped: String,
}

impl KeySlot {
    /// Wrap `master` for `secret`.
    pub fn create(
        master: &[u8; 32],
        repo_id: &Id,
        secret: &Secret,
        kdf: KdfParams,
        label: &str,
        host: &str,
    ) -> KeySlot {
        let salt: [u8; 16] = random_bytes();
        let kdf = matches!(secret, Secret::Password(_)).then_some(kdf);
        let wrapping = wrapping_key(secret, &salt, kdf).expect("fresh parameters are valid");
        KeySlot {
            version: 1,
            kind: secret.kind(),
            created: Utc::now(),
            host: host.to_string(),
            label: label.to_string(),
            kdf,
            salt: hex::encode(salt),
            wrapped: hex::encode(seal_with_key(&wrapping, master, &aad(repo_id))),
        }
    }

    /// The master secret, if `secret` opens this slot.
    pub fn unlock(&self, repo_id: &Id, secret: &Secret) -> Option<[u8; 32]> {
        if self.kind != secret.kind() {
            return None;
        }
        let salt = hex::decode(&self.salt).ok()?;
        let wrapping = wrapping_key(secret, &salt, self.kdf)?;
        let sealed = hex::decode(&self.wrapped).ok()?;
        open_with_key(&wrapping, &sealed, &aad(repo_id)).ok()?.try_into().ok()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("key slots always serialise")
    }

    /// Storage key of this slot.
    pub fn storage_key(bytes: &[u8]) -> String {
        format!("keys/{}", Id::of_stored(bytes).to_hex())
    }
}

fn aad(repo_id: &Id) -> Vec<u8> {
    [WRAP_AAD, &repo_id.0[..]].concat()
}

fn wrapping_key(secret: &Secret, salt: &[u8], kdf: Option<KdfParams>) -> Option<[u8; 32]> {
    match secret {
        Secret::Password(password) => {
            let p = kdf?;
            let params = argon2::Params::new(p.memory_kib, p.iterations, p.parallelism, Some(32)).ok()?;
            let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
            let mut out = [0u8; 32];
            argon.hash_password_into(password.as_bytes(), salt, &mut out).ok()?;
            Some(out)
        }
        Secret::KeyFile(bytes) => {
            let material = [bytes.trim_ascii(), salt].concat();
            Some(blake3::derive_key(CTX_KEYFILE, &material))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::CHEAP_KDF as FAST;

    #[test]
    fn password_slot_unlocks_only_with_the_password() {
        let repo = Id([3; 32]);
        let slot = KeySlot::create(&[7; 32], &repo, &Secret::Password("pw".into()), FAST, "l", "h");
        let parsed: KeySlot = serde_json::from_slice(&slot.to_bytes()).unwrap();
        assert_eq!(parsed.unlock(&repo, &Secret::Password("pw".into())), Some([7; 32]));
        assert_eq!(parsed.unlock(&repo, &Secret::Password("nope".into())), None);
        assert_eq!(parsed.unlock(&Id([4; 32]), &Secret::Password("pw".into())), None);
        assert_eq!(parsed.unlock(&repo, &Secret::KeyFile(b"pw".to_vec())), None);
    }

    #[test]
    fn key_file_slot_ignores_surrounding_whitespace() {
        let repo = Id([3; 32]);
        let slot = KeySlot::create(&[9; 32], &repo, &Secret::KeyFile(b"abc".to_vec()), FAST, "", "");
        assert_eq!(slot.unlock(&repo, &Secret::KeyFile(b"abc\n".to_vec())), Some([9; 32]));
        assert_eq!(slot.unlock(&repo, &Secret::KeyFile(b"abd".to_vec())), None);
    }
}
