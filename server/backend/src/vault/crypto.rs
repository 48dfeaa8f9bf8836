//! Every cryptographic primitive Keyward uses, in one small module with one-purpose functions:
//! AES-256-GCM-SIV (RFC 8452) sealing and opening, HKDF-SHA256 derivation, SHA-256, and OS
//! randomness. Nothing outside this module touches a cipher or a raw key.
//!
//! AES-GCM-SIV is chosen for nonce-misuse resistance: a repeated random nonce leaks only whether
//! two plaintexts were equal, instead of breaking confidentiality and integrity as with AES-GCM.

use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use aes_gcm_siv::{Aes128GcmSiv, Aes256GcmSiv, Nonce};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

pub const KEY_LEN: usize = 32;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;

/// HKDF `info` labels: one per derived value, versioned.
const INFO_KEK: &[u8] = b"keyward/v1/key-encryption-key";
const INFO_KEY_CHECK: &[u8] = b"keyward/v1/key-check-value";

/// The OS random number generator failed.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the operating system's random number generator failed")]
pub struct RandomError;

/// Decryption failed: wrong key, wrong AAD or modified bytes. Deliberately carries nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed")]
pub struct OpenError;

/// `N` bytes from the OS generator, wiped on drop.
pub fn random_bytes<const N: usize>() -> Result<Zeroizing<[u8; N]>, RandomError> {
    let mut out = Zeroizing::new([0u8; N]);
    getrandom::fill(out.as_mut()).map_err(|_| RandomError)?;
    Ok(out)
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// An AES-256-GCM-SIV key with its expanded key schedule, built once and reused. The cipher state
/// is zeroized on drop (the `zeroize` features of `aes` and `aes-gcm-siv`). No `Debug`.
pub struct SealingKey(Aes256GcmSiv);

impl SealingKey {
    pub fn new(key: &[u8; KEY_LEN]) -> Self {
        Self(Aes256GcmSiv::new(key.into()))
    }

    /// `ciphertext ‖ tag` of `plaintext` under `nonce` and `aad`.
    pub fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        self.0
            .encrypt(
                &Nonce::from(*nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            // Only fails past RFC 8452's 2^36-byte limits, far above the vault's size cap.
            .unwrap_or_default()
    }

    /// The plaintext of `ciphertext ‖ tag`, wiped on drop.
    pub fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        ciphertext_and_tag: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        if ciphertext_and_tag.len() < TAG_LEN {
            return Err(OpenError);
        }
        self.0
            .decrypt(
                &Nonce::from(*nonce),
                Payload {
                    msg: ciphertext_and_tag,
                    aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| OpenError)
    }
}

/// The key-encryption key and key-check value derived from the master secret and the vault's
/// random salt (HKDF-SHA256; one extract, two expands with distinct labels).
pub struct MasterDerived {
    pub kek: SealingKey,
    pub key_check: [u8; 32],
}

pub fn derive_from_master(master: &[u8; KEY_LEN], salt: &[u8]) -> MasterDerived {
    let hk = Hkdf::<Sha256>::new(Some(salt), master);
    let mut kek = Zeroizing::new([0u8; KEY_LEN]);
    let mut key_check = [0u8; 32];
    // Both lengths are far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
    let _ = hk.expand(INFO_KEK, kek.as_mut());
    let _ = hk.expand(INFO_KEY_CHECK, &mut key_check);
    MasterDerived {
        kek: SealingKey::new(&kek),
        key_check,
    }
}

/// Constant-time equality for key-check values.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// AES-GCM-SIV with a 128- or 256-bit key and an explicit nonce. Production code only uses
/// [`SealingKey`] (256-bit, random nonces); these exist so that the RFC 8452 and Wycheproof
/// vectors exercise the same crate and call path with their fixed nonces and both key sizes.
pub fn seal_with_key(
    key: &[u8],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Option<Vec<u8>> {
    let payload = Payload {
        msg: plaintext,
        aad,
    };
    let nonce = Nonce::from(*nonce);
    match key.len() {
        16 => Aes128GcmSiv::new_from_slice(key)
            .ok()?
            .encrypt(&nonce, payload)
            .ok(),
        32 => Aes256GcmSiv::new_from_slice(key)
            .ok()?
            .encrypt(&nonce, payload)
            .ok(),
        _ => None,
    }
}

pub fn open_with_key(
    key: &[u8],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    ciphertext_and_tag: &[u8],
) -> Option<Vec<u8>> {
    let payload = Payload {
        msg: ciphertext_and_tag,
        aad,
    };
    let nonce = Nonce::from(*nonce);
    match key.len() {
        16 => Aes128GcmSiv::new_from_slice(key)
            .ok()?
            .decrypt(&nonce, payload)
            .ok(),
        32 => Aes256GcmSiv::new_from_slice(key)
            .ok()?
            .decrypt(&nonce, payload)
            .ok(),
        _ => None,
    }
}

// ---- Passwords and opaque tokens -------------------------------------------------------------

/// argon2id with OWASP's recommended parameters (m = 19 MiB, t = 2, p = 1).
fn argon2() -> argon2::Argon2<'static> {
    let params = argon2::Params::new(19_456, 2, 1, None).unwrap_or_default();
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// A PHC-format argon2id hash of `password` with a random salt. CPU-heavy: call it from
/// `spawn_blocking`.
pub fn hash_password(password: &str) -> Result<String, RandomError> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt_bytes = random_bytes::<16>()?;
    let salt = SaltString::encode_b64(salt_bytes.as_ref()).map_err(|_| RandomError)?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| RandomError)
}

/// Whether `password` matches the PHC `hash`. CPU-heavy: call it from `spawn_blocking`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash)
        .map(|parsed| {
            argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A random 256-bit token as unpadded base64url (session cookies, invitation links).
pub fn random_token() -> Result<Zeroizing<String>, RandomError> {
    use base64::Engine;
    let bytes = random_bytes::<32>()?;
    Ok(Zeroizing::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref()),
    ))
}

/// How a token is stored: SHA-256, hex. Tokens have 256 bits of entropy, so a fast hash suffices.
pub fn token_hash(token: &str) -> String {
    hex::encode(sha256(token.as_bytes()))
}

#[cfg(test)]
mod password_tests {
    use super::*;

    #[test]
    fn argon2id_with_owasp_parameters() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterY", &h));
        assert!(!verify_password("x", "not a hash"));
        assert_ne!(h, hash_password("correct horse battery").unwrap(), "salted");
    }

    #[test]
    fn tokens_are_random_and_stored_hashed() {
        let a = random_token().unwrap();
        let b = random_token().unwrap();
        assert_ne!(*a, *b);
        assert_eq!(a.len(), 43);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), *a);
    }
}
