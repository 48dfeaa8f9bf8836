//! The stored form of an encrypted provider key and the data bound to it.
//!
//! Blob: `version(1) ‖ key_id(4, big-endian) ‖ nonce(12) ‖ ciphertext ‖ tag(16)`.
//! AAD: a canonical, length-prefixed encoding of the domain label, version, key id, workspace id,
//! credential id, scope and owner id, provider, and SHA-256 of the base URL. Version and key id are
//! in the AAD too, so the header is authenticated: the data key is chosen by an authenticated id.

use super::crypto::{NONCE_LEN, TAG_LEN, sha256};
use keyward::credential::CredentialScope;
use uuid::Uuid;

pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 1 + 4 + NONCE_LEN;
/// Largest provider key accepted (service-account JSON included).
pub const MAX_PLAINTEXT: usize = 8 * 1024;
pub const MIN_BLOB: usize = HEADER_LEN + TAG_LEN;
pub const MAX_BLOB: usize = HEADER_LEN + MAX_PLAINTEXT + TAG_LEN;

const DOMAIN: &[u8] = b"keyward/credential";

/// Where a credential lives: everything its ciphertext is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialContext {
    pub credential_id: Uuid,
    /// `None` for platform keys.
    pub workspace_id: Option<Uuid>,
    pub scope: CredentialScope,
    /// The workspace for workspace keys, the chatbot for chatbot keys, nil for platform keys.
    pub owner_id: Uuid,
    pub provider: String,
    /// The upstream base URL; a key moved to another URL must not decrypt.
    pub base_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub key_id: u32,
    pub nonce: [u8; NONCE_LEN],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    #[error("ciphertext too short")]
    TooShort,
    #[error("ciphertext too long")]
    TooLong,
    #[error("unsupported ciphertext version {0}")]
    Version(u8),
}

/// Splits a blob into its header and `ciphertext ‖ tag`, checking lengths and version.
pub fn parse(blob: &[u8]) -> Result<(Header, &[u8]), BlobError> {
    if blob.len() < MIN_BLOB {
        return Err(BlobError::TooShort);
    }
    if blob.len() > MAX_BLOB {
        return Err(BlobError::TooLong);
    }
    let version = blob[0];
    if version != VERSION {
        return Err(BlobError::Version(version));
    }
    let key_id = u32::from_be_bytes([blob[1], blob[2], blob[3], blob[4]]);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&blob[5..HEADER_LEN]);
    Ok((
        Header {
            version,
            key_id,
            nonce,
        },
        &blob[HEADER_LEN..],
    ))
}

pub fn assemble(header: &Header, ciphertext_and_tag: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + ciphertext_and_tag.len());
    out.push(header.version);
    out.extend_from_slice(&header.key_id.to_be_bytes());
    out.extend_from_slice(&header.nonce);
    out.extend_from_slice(ciphertext_and_tag);
    out
}

/// The canonical AAD: each field as `u32 BE length ‖ bytes`, in a fixed order, so no two
/// different contexts can encode to the same bytes.
pub fn aad(ctx: &CredentialContext, version: u8, key_id: u32) -> Vec<u8> {
    let workspace = ctx.workspace_id.map(|w| *w.as_bytes());
    let url_hash = sha256(ctx.base_url.as_bytes());
    let fields: [&[u8]; 9] = [
        DOMAIN,
        &[version],
        &key_id.to_be_bytes(),
        workspace.as_ref().map_or(&[][..], |w| &w[..]),
        ctx.credential_id.as_bytes(),
        ctx.scope.as_str().as_bytes(),
        ctx.owner_id.as_bytes(),
        ctx.provider.as_bytes(),
        &url_hash,
    ];
    let mut out = Vec::with_capacity(fields.iter().map(|f| 4 + f.len()).sum());
    for field in fields {
        // Every field is far below 4 GiB (the provider id is short, the rest fixed-size).
        out.extend_from_slice(&(field.len() as u32).to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> CredentialContext {
        CredentialContext {
            credential_id: Uuid::from_u128(1),
            workspace_id: Some(Uuid::from_u128(2)),
            scope: CredentialScope::Workspace,
            owner_id: Uuid::from_u128(2),
            provider: "openai".into(),
            base_url: "https://api.openai.com/v1".into(),
        }
    }

    #[test]
    fn header_round_trips() {
        let h = Header {
            version: VERSION,
            key_id: 0x0102_0304,
            nonce: [7; NONCE_LEN],
        };
        let blob = assemble(&h, &[9; 20]);
        assert_eq!(&blob[..5], &[1, 1, 2, 3, 4]);
        let (parsed, rest) = parse(&blob).unwrap();
        assert_eq!(parsed, h);
        assert_eq!(rest, &[9; 20]);
    }

    #[test]
    fn lengths_and_versions_are_checked() {
        assert_eq!(parse(&[]), Err(BlobError::TooShort));
        assert_eq!(parse(&[1; MIN_BLOB - 1]), Err(BlobError::TooShort));
        assert!(parse(&[1; MIN_BLOB]).is_ok());
        assert_eq!(parse(&vec![1; MAX_BLOB + 1]), Err(BlobError::TooLong));
        let mut blob = vec![1; MIN_BLOB];
        blob[0] = 2;
        assert_eq!(parse(&blob), Err(BlobError::Version(2)));
    }

    #[test]
    fn every_context_field_changes_the_aad() {
        let base = aad(&ctx(), VERSION, 1);
        let variants: Vec<CredentialContext> = vec![
            CredentialContext {
                credential_id: Uuid::from_u128(9),
                ..ctx()
            },
            CredentialContext {
                workspace_id: Some(Uuid::from_u128(9)),
                ..ctx()
            },
            CredentialContext {
                workspace_id: None,
                ..ctx()
            },
            CredentialContext {
                scope: CredentialScope::Chatbot,
                ..ctx()
            },
            CredentialContext {
                owner_id: Uuid::from_u128(9),
                ..ctx()
            },
            CredentialContext {
                provider: "groq".into(),
                ..ctx()
            },
            CredentialContext {
                base_url: "https://api.openai.com/v1/".into(),
                ..ctx()
            },
        ];
        for v in &variants {
            assert_ne!(aad(v, VERSION, 1), base, "{v:?}");
        }
        assert_ne!(aad(&ctx(), VERSION, 2), base, "key id");
    }

    #[test]
    fn length_prefixes_prevent_field_shifting() {
        // "ab" + "c" and "a" + "bc" must not collide.
        let a = CredentialContext {
            provider: "ab".into(),
            base_url: "c".into(),
            ..ctx()
        };
        let b = CredentialContext {
            provider: "a".into(),
            base_url: "bc".into(),
            ..ctx()
        };
        assert_ne!(aad(&a, VERSION, 1), aad(&b, VERSION, 1));
    }
}
