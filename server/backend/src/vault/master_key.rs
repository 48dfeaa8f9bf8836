//! The master secret: 32 random bytes, base64, from `KEYWARD_MASTER_KEY_FILE` (preferred) or
//! `KEYWARD_MASTER_KEY` (read once at the top of `main`, before any thread starts, then removed
//! from the environment). Never a command-line argument, never stored in the database.
//!
//! Loading fails closed with a one-line reason that never contains key material.

use super::crypto::{KEY_LEN, random_bytes};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::io::Write;
use std::path::Path;
use zeroize::Zeroizing;

pub const MASTER_KEY_LEN: usize = KEY_LEN;

/// Master keys that appear in documentation; a server refuses them.
pub const DOCUMENTED_EXAMPLES: &[&str] = &[
    // README.md, "Master key and vault operations".
    "0Xj1dPZ0c5zH1+2m0DOCUMENTEDEXAMPLEKEY000000=",
];

/// The master secret. Wiped on drop; no `Debug`, `Display` or `Serialize`.
pub struct MasterKey(Zeroizing<[u8; MASTER_KEY_LEN]>);

impl MasterKey {
    pub(super) fn bytes(&self) -> &[u8; MASTER_KEY_LEN] {
        &self.0
    }

    /// Parses base64 text (surrounding whitespace ignored) and rejects weak or malformed keys.
    pub fn parse(text: &str) -> Result<Self, MasterKeyError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(MasterKeyError::Empty);
        }
        if DOCUMENTED_EXAMPLES.contains(&text) {
            return Err(MasterKeyError::DocumentedExample);
        }
        let decoded = Zeroizing::new(
            STANDARD
                .decode(text)
                .map_err(|_| MasterKeyError::NotBase64)?,
        );
        match decoded.len() {
            n if n < MASTER_KEY_LEN => return Err(MasterKeyError::TooShort { len: n }),
            n if n > MASTER_KEY_LEN => return Err(MasterKeyError::TooLong { len: n }),
            _ => {}
        }
        let mut key = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        key.copy_from_slice(&decoded);
        if key.iter().all(|b| *b == key[0]) {
            return Err(MasterKeyError::Degenerate);
        }
        Ok(Self(key))
    }

    /// A fresh random key (used by tests and `gen-master-key`).
    pub fn generate() -> Result<Self, MasterKeyError> {
        Ok(Self(random_bytes().map_err(|_| MasterKeyError::Random)?))
    }

    /// Base64 text of the key, for writing the key file only.
    fn encode(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.0.as_ref()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error(
        "no master key configured: set KEYWARD_MASTER_KEY_FILE (create one with `keyward gen-master-key --out FILE`)"
    )]
    Missing,
    #[error("both KEYWARD_MASTER_KEY_FILE and KEYWARD_MASTER_KEY are set; use only the file")]
    Both,
    #[error("master key file {path} cannot be read: {reason}")]
    Read { path: String, reason: String },
    #[error(
        "master key file {path} is readable by group or others (mode {mode:03o}); run `chmod 600 {path}` (or set KEYWARD_ALLOW_INSECURE_MASTER_KEY_FILE=true to only warn)"
    )]
    Permissions { path: String, mode: u32 },
    #[error("master key is empty")]
    Empty,
    #[error("master key is not valid base64")]
    NotBase64,
    #[error("master key is too short: {len} bytes, need exactly 32")]
    TooShort { len: usize },
    #[error("master key is too long: {len} bytes, need exactly 32")]
    TooLong { len: usize },
    #[error("master key is all one repeated byte (e.g. all zero); generate a random one")]
    Degenerate,
    #[error(
        "master key is the documented example; generate your own with `keyward gen-master-key`"
    )]
    DocumentedExample,
    #[error("{path} already exists; refusing to overwrite a master key")]
    Exists { path: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
    #[error("the operating system's random number generator failed")]
    Random,
}

/// Where the master key comes from, as configured.
pub struct MasterKeySource<'a> {
    pub file: Option<&'a Path>,
    /// The value of `KEYWARD_MASTER_KEY`, already removed from the environment by `main`.
    pub env_value: Option<&'a str>,
    /// Downgrades loose key-file permissions from an error to a warning.
    pub allow_insecure_permissions: bool,
}

/// Loads and validates the master key from the configured source.
pub fn load(source: &MasterKeySource<'_>) -> Result<MasterKey, MasterKeyError> {
    match (source.file, source.env_value) {
        (Some(_), Some(_)) => Err(MasterKeyError::Both),
        (None, None) => Err(MasterKeyError::Missing),
        (None, Some(value)) => {
            tracing::warn!(
                "the master key comes from KEYWARD_MASTER_KEY; prefer KEYWARD_MASTER_KEY_FILE"
            );
            MasterKey::parse(value)
        }
        (Some(path), None) => {
            check_permissions(path, source.allow_insecure_permissions)?;
            let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                MasterKeyError::Read {
                    path: path.display().to_string(),
                    reason: e.kind().to_string(),
                }
            })?);
            MasterKey::parse(&text)
        }
    }
}

fn check_permissions(path: &Path, allow_insecure: bool) -> Result<(), MasterKeyError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| MasterKeyError::Read {
            path: path.display().to_string(),
            reason: e.kind().to_string(),
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            let err = MasterKeyError::Permissions {
                path: path.display().to_string(),
                mode,
            };
            if !allow_insecure {
                return Err(err);
            }
            tracing::warn!("{err}");
        }
    }
    #[cfg(not(unix))]
    let _ = (path, allow_insecure);
    Ok(())
}

/// Writes a new random master key to `path` with mode 0600. Never overwrites a file.
pub fn generate_file(path: &Path) -> Result<(), MasterKeyError> {
    let key = MasterKey::generate()?;
    write_file(path, &key)
}

pub fn write_file(path: &Path, key: &MasterKey) -> Result<(), MasterKeyError> {
    let mut encoded = key.encode();
    encoded.push('\n');
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| write_err(path, &e))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            MasterKeyError::Exists {
                path: path.display().to_string(),
            }
        } else {
            write_err(path, &e)
        }
    })?;
    file.write_all(encoded.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| write_err(path, &e))
}

fn write_err(path: &Path, e: &std::io::Error) -> MasterKeyError {
    MasterKeyError::Write {
        path: path.display().to_string(),
        reason: e.kind().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("kw-mk-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn generated_files_hold_32_random_bytes_mode_0600_and_are_never_overwritten() {
        let dir = tmp();
        let (a, b) = (dir.join("a.key"), dir.join("b.key"));
        generate_file(&a).unwrap();
        generate_file(&b).unwrap();
        let ka = std::fs::read_to_string(&a).unwrap();
        let kb = std::fs::read_to_string(&b).unwrap();
        assert_eq!(STANDARD.decode(ka.trim()).unwrap().len(), MASTER_KEY_LEN);
        assert_ne!(ka, kb, "two keys differ");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&a).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert!(matches!(
            generate_file(&a),
            Err(MasterKeyError::Exists { .. })
        ));
        assert_eq!(std::fs::read_to_string(&a).unwrap(), ka, "left untouched");
        let source = MasterKeySource {
            file: Some(&a),
            env_value: None,
            allow_insecure_permissions: false,
        };
        assert!(load(&source).is_ok());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn weak_and_malformed_keys_are_refused_without_echo() {
        let good = STANDARD.encode(
            [0x5au8; 31]
                .iter()
                .chain(&[1u8])
                .copied()
                .collect::<Vec<_>>(),
        );
        assert!(MasterKey::parse(&good).is_ok());
        assert!(
            MasterKey::parse(&format!("  {good}\n")).is_ok(),
            "whitespace trimmed"
        );

        let cases: Vec<(String, &str)> = vec![
            (String::new(), "empty"),
            ("   \n".into(), "empty"),
            ("not base64 at all!!".into(), "not valid base64"),
            (STANDARD.encode([7u8; 16]), "too short: 16 bytes"),
            (STANDARD.encode([7u8; 48]), "too long: 48 bytes"),
            (STANDARD.encode([0u8; 32]), "repeated byte"),
            (STANDARD.encode([0xffu8; 32]), "repeated byte"),
            (DOCUMENTED_EXAMPLES[0].into(), "documented example"),
        ];
        for (text, needle) in cases {
            let err = MasterKey::parse(&text).err().expect(needle).to_string();
            assert!(err.contains(needle), "{needle}: {err}");
            if !text.trim().is_empty() {
                assert!(!err.contains(text.trim()), "no echo: {err}");
            }
        }
    }

    #[test]
    fn sources_are_exclusive_and_required() {
        let none = MasterKeySource {
            file: None,
            env_value: None,
            allow_insecure_permissions: false,
        };
        assert!(matches!(load(&none), Err(MasterKeyError::Missing)));
        let p = std::path::Path::new("/nonexistent");
        let both = MasterKeySource {
            file: Some(p),
            env_value: Some("x"),
            allow_insecure_permissions: false,
        };
        assert!(matches!(load(&both), Err(MasterKeyError::Both)));
    }

    #[cfg(unix)]
    #[test]
    fn loose_permissions_fail_unless_explicitly_allowed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tmp();
        let path = dir.join("m.key");
        generate_file(&path).unwrap();
        for mode in [0o640, 0o604, 0o644, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let strict = MasterKeySource {
                file: Some(&path),
                env_value: None,
                allow_insecure_permissions: false,
            };
            let err = load(&strict).err().expect("refused").to_string();
            assert!(err.contains("readable by group or others"), "{err}");
            let lenient = MasterKeySource {
                allow_insecure_permissions: true,
                ..strict
            };
            assert!(load(&lenient).is_ok());
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
