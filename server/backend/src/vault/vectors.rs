//! Known-answer tests through the project's own AEAD wrapper: RFC 8452 Appendix C.2 and the
//! Wycheproof AES-GCM-SIV vectors (`server/backend/testdata/wycheproof`, copied from Project
//! Wycheproof, Apache-2.0, so that a fresh clone tests them).

use super::crypto::{NONCE_LEN, open_with_key, seal_with_key};
use super::rfc8452_c2::C2;
use serde::Deserialize;

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("vector hex")
}

fn nonce(bytes: &[u8]) -> Option<[u8; NONCE_LEN]> {
    bytes.try_into().ok()
}

#[test]
fn rfc8452_appendix_c2_all_vectors() {
    let mut ran = 0;
    for (key, iv, aad, msg, expected) in C2 {
        let (key, iv, aad, msg, expected) = (
            unhex(key),
            unhex(iv),
            unhex(aad),
            unhex(msg),
            unhex(expected),
        );
        let iv = nonce(&iv).unwrap();
        assert_eq!(seal_with_key(&key, &iv, &aad, &msg).unwrap(), expected);
        assert_eq!(open_with_key(&key, &iv, &aad, &expected).unwrap(), msg);
        ran += 1;
    }
    assert_eq!(ran, 24, "RFC 8452 C.2 has 24 AEAD_AES_256_GCM_SIV vectors");
}

#[derive(Deserialize)]
struct File {
    #[serde(rename = "testGroups")]
    groups: Vec<Group>,
}

#[derive(Deserialize)]
struct Group {
    #[serde(rename = "keySize")]
    key_size: u32,
    tests: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    #[serde(rename = "tcId")]
    id: u32,
    key: String,
    iv: String,
    aad: String,
    msg: String,
    ct: String,
    tag: String,
    result: String,
}

#[test]
fn wycheproof_aes_gcm_siv_all_202_cases() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/wycheproof/aes_gcm_siv_test.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!("Wycheproof vectors not found at {path} ({e}); they ship in server/backend/testdata")
    });
    let file: File = serde_json::from_str(&text).expect("Wycheproof JSON");
    let (mut valid, mut invalid, mut by_size) = (0, 0, [0u32; 2]);
    for group in &file.groups {
        for case in &group.tests {
            let key = unhex(&case.key);
            assert_eq!(key.len() * 8, group.key_size as usize, "tc {}", case.id);
            let (aad, msg) = (unhex(&case.aad), unhex(&case.msg));
            let mut sealed = unhex(&case.ct);
            sealed.extend(unhex(&case.tag));
            let iv = nonce(&unhex(&case.iv));
            match case.result.as_str() {
                "valid" => {
                    let iv = iv.expect("valid cases use 96-bit nonces");
                    assert_eq!(
                        seal_with_key(&key, &iv, &aad, &msg),
                        Some(sealed.clone()),
                        "tc {}",
                        case.id
                    );
                    assert_eq!(
                        open_with_key(&key, &iv, &aad, &sealed),
                        Some(msg),
                        "tc {}",
                        case.id
                    );
                    valid += 1;
                }
                "invalid" => {
                    let opened = iv.and_then(|iv| open_with_key(&key, &iv, &aad, &sealed));
                    assert_eq!(opened, None, "tc {} must not decrypt", case.id);
                    invalid += 1;
                }
                other => panic!("tc {}: unexpected result {other}", case.id),
            }
            by_size[usize::from(group.key_size == 256)] += 1;
        }
    }
    assert_eq!(valid + invalid, 202, "every Wycheproof case ran");
    assert_eq!((valid, invalid), (136, 66));
    assert_eq!(by_size, [99, 103], "128-bit and 256-bit keys");
}
