//! Startup fails closed: for every bad master key or damaged vault, `keyward serve` exits
//! non-zero with one line saying why, prints no key material, and leaves the database unchanged
//! byte for byte (the SQLite file; a `pg_dump` of the PostgreSQL database).

use crate::helpers::{Backend, TestVault, both_backends, open_vault};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use keyward_server::entities::{vault_key, vault_meta};
use keyward_server::vault::master_key::{self, MasterKey};
use sea_orm::{ActiveModelTrait, EntityTrait, Set};
use sha2::{Digest, Sha256};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Fixture {
    t: TestVault,
    dir: PathBuf,
    good_key_file: PathBuf,
    backend: Backend,
}

async fn fixture(backend: Backend) -> Fixture {
    let t = open_vault(backend).await;
    // Something worth protecting: a stored credential.
    let ws = uuid::Uuid::new_v4();
    let ctx = keyward_server::vault::CredentialContext {
        credential_id: uuid::Uuid::new_v4(),
        workspace_id: Some(ws),
        scope: keyward::credential::CredentialScope::Workspace,
        owner_id: ws,
        provider: "openai".into(),
        base_url: String::new(),
    };
    crate::helpers::store_credential(&t, &ctx, "sk-startup-canary-0123456789").await;
    let dir = std::env::temp_dir().join(format!("kw-start-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let good_key_file = dir.join("good.key");
    master_key::write_file(&good_key_file, &t.master).unwrap();
    Fixture {
        t,
        dir,
        good_key_file,
        backend,
    }
}

impl Fixture {
    /// Every byte of the database as the server would find it.
    fn snapshot(&self) -> Vec<u8> {
        match self.backend {
            Backend::Sqlite => {
                let path = self.t.url.trim_start_matches("sqlite://");
                let mut hasher = Sha256::new();
                for suffix in ["", "-wal"] {
                    if let Ok(bytes) = std::fs::read(format!("{path}{suffix}")) {
                        hasher.update(&bytes);
                    }
                }
                hasher.finalize().to_vec()
            }
            Backend::Postgres => {
                let out = Command::new("pg_dump")
                    .arg("--no-owner")
                    .arg(&self.t.url)
                    .output()
                    .expect("pg_dump");
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                // pg_dump 15.14+ brackets each dump with a random \restrict token.
                String::from_utf8(out.stdout)
                    .unwrap()
                    .lines()
                    .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
                    .collect::<Vec<_>>()
                    .join("\n")
                    .into_bytes()
            }
        }
    }

    fn key_file(&self, name: &str, content: &str, mode: u32) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    /// Runs `keyward serve` and checks it refused cleanly without touching the database.
    async fn refuses(&self, key_file: Option<&Path>, needle: &str) {
        self.t.db.clone().close().await.ok();
        if self.backend == Backend::Sqlite {
            // Fold any write-ahead log into the main file first, so that the comparison
            // measures only what the refusing process does (an open and close of a database
            // with a pending WAL checkpoints it: same content, different bytes).
            let db = keyward_server::db::connect_url(
                &keyward_server::config::DatabaseUrl::new(self.t.url.as_str()),
                1,
            )
            .await
            .unwrap();
            use sea_orm::ConnectionTrait;
            db.execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
                .await
                .unwrap();
            db.close().await.unwrap();
        }
        let before = self.snapshot();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyward"));
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KEYWARD_DATABASE_URL", &self.t.url)
            .env("KEYWARD_BIND", "127.0.0.1:0")
            .env("KEYWARD_LOG_FILTER", "trace")
            .current_dir(&self.dir);
        if let Some(path) = key_file {
            cmd.env("KEYWARD_MASTER_KEY_FILE", path);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{needle}: should refuse");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with("keyward: error: "), "{needle}: {stderr}");
        assert!(last.contains(needle), "expected {needle:?} in {last:?}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        // No key material: not the real master key, not the file being tried, not the canary.
        let mut secrets = vec![
            std::fs::read_to_string(&self.good_key_file)
                .unwrap()
                .trim()
                .to_string(),
            "sk-startup-canary".to_string(),
        ];
        if let Some(p) = key_file
            && let Ok(text) = std::fs::read_to_string(p)
            && text.trim().len() >= 8
        {
            secrets.push(text.trim().to_string());
        }
        for s in &secrets {
            assert!(
                !stderr.contains(s.as_str()) && !stdout.contains(s.as_str()),
                "{needle}: leaked"
            );
        }
        let after = self.snapshot();
        assert!(
            after == before,
            "{needle}: database changed:\n{}\n---\n{}",
            String::from_utf8_lossy(&before),
            String::from_utf8_lossy(&after)
        );
    }
}

async fn bad_master_keys_are_refused(backend: Backend) {
    let f = fixture(backend).await;
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "master key is empty"),
        ("\n".into(), "master key is empty"),
        (STANDARD.encode([9u8; 31]), "too short: 31 bytes"),
        (STANDARD.encode([9u8; 33]), "too long: 33 bytes"),
        ("this is ~ not base64 at all ~".into(), "not valid base64"),
        (STANDARD.encode([0u8; 32]), "repeated byte"),
        (
            master_key::DOCUMENTED_EXAMPLES[0].into(),
            "documented example",
        ),
    ];
    for (i, (content, needle)) in cases.iter().enumerate() {
        let path = f.key_file(&format!("bad{i}.key"), content, 0o600);
        f.refuses(Some(&path), needle).await;
    }
    f.refuses(None, "no master key configured").await;
    f.refuses(Some(&f.dir.join("nope.key")), "cannot be read")
        .await;
    let loose = std::fs::read_to_string(&f.good_key_file).unwrap();
    let loose = f.key_file("loose.key", &loose, 0o640);
    f.refuses(Some(&loose), "readable by group or others").await;
    let other = f.dir.join("other.key");
    master_key::write_file(&other, &MasterKey::generate().unwrap()).unwrap();
    f.refuses(Some(&other), "does not match this database")
        .await;
    std::fs::remove_dir_all(&f.dir).ok();
}
both_backends!(
    bad_master_keys_are_refused,
    super::bad_master_keys_are_refused
);

async fn a_damaged_vault_is_refused(backend: Backend) {
    let f = fixture(backend).await;
    // A tampered wrapped data key.
    let key1 = vault_key::Entity::find_by_id(1)
        .one(&f.t.db)
        .await
        .unwrap()
        .unwrap();
    let original = key1.wrapped.clone();
    let mut am: vault_key::ActiveModel = key1.into();
    let mut tampered = original.clone();
    tampered[30] ^= 0x80;
    am.wrapped = Set(tampered);
    let restored = am.update(&f.t.db).await.unwrap();
    f.refuses(
        Some(&f.good_key_file),
        "keyring entry 1 failed authentication",
    )
    .await;

    // Restore it; delete the key-check value instead.
    let db = keyward_server::db::connect_url(
        &keyward_server::config::DatabaseUrl::new(f.t.url.as_str()),
        2,
    )
    .await
    .unwrap();
    let mut am: vault_key::ActiveModel = restored.into();
    am.wrapped = Set(original);
    am.update(&db).await.unwrap();
    let meta = vault_meta::Entity::find_by_id(1)
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    let mut am: vault_meta::ActiveModel = meta.into();
    am.key_check = Set(Vec::new());
    am.update(&db).await.unwrap();
    db.close().await.unwrap();
    f.refuses(Some(&f.good_key_file), "key-check value missing")
        .await;

    // Metadata gone while credentials exist.
    let db = keyward_server::db::connect_url(
        &keyward_server::config::DatabaseUrl::new(f.t.url.as_str()),
        2,
    )
    .await
    .unwrap();
    vault_meta::Entity::delete_many().exec(&db).await.unwrap();
    db.close().await.unwrap();
    f.refuses(
        Some(&f.good_key_file),
        "stored credentials but no vault metadata",
    )
    .await;
    std::fs::remove_dir_all(&f.dir).ok();
}
both_backends!(
    a_damaged_vault_is_refused,
    super::a_damaged_vault_is_refused
);

async fn the_right_key_starts_and_env_key_is_accepted(backend: Backend) {
    let f = fixture(backend).await;
    f.t.db.clone().close().await.ok();
    // `keyward vault status` opens the vault with the right key from the environment variable.
    let key = std::fs::read_to_string(&f.good_key_file).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["vault", "status"])
        .env_clear()
        .env("KEYWARD_DATABASE_URL", &f.t.url)
        .env("KEYWARD_MASTER_KEY", key.trim())
        .env("KEYWARD_LOG_FILTER", "off")
        .current_dir(&f.dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("active data key 1"), "{stdout}");
    assert!(stdout.contains("1 credentials"), "{stdout}");
    assert!(!stdout.contains(key.trim()));
    std::fs::remove_dir_all(&f.dir).ok();
}
both_backends!(
    the_right_key_starts_and_env_key_is_accepted,
    super::the_right_key_starts_and_env_key_is_accepted
);

fn keyward_vault(f: &Fixture, key_file: &Path, args: &[&str]) -> String {
    let (ok, stdout, stderr) = keyward_vault_raw(f, key_file, args);
    assert!(ok, "vault {args:?}: {stderr}");
    stdout
}

fn keyward_vault_raw(f: &Fixture, key_file: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .arg("vault")
        .args(args)
        .env_clear()
        .env("KEYWARD_DATABASE_URL", &f.t.url)
        .env("KEYWARD_MASTER_KEY_FILE", key_file)
        .env("KEYWARD_LOG_FILTER", "off")
        .current_dir(&f.dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The README runbook, command by command, through the real binary.
async fn the_operator_runbook_works_from_the_cli(backend: Backend) {
    let f = fixture(backend).await;
    f.t.db.clone().close().await.ok();
    let key = &f.good_key_file;

    let out = keyward_vault(&f, key, &["rotate"]);
    assert!(out.contains("data key 2 is now active"), "{out}");
    // Retiring before the rewrap would destroy a key still in use: refused, nothing changes.
    let (ok, _, err) = keyward_vault_raw(&f, key, &["retire"]);
    assert!(
        !ok && err.contains("1 credentials still use data keys older than 2"),
        "{err}"
    );
    let out = keyward_vault(&f, key, &["rewrap", "--batch", "1"]);
    assert!(
        out.contains("re-encrypted 1 credentials; 0 remain"),
        "{out}"
    );
    let out = keyward_vault(&f, key, &["retire"]);
    assert!(out.contains("retired data keys [1]"), "{out}");
    let out = keyward_vault(&f, key, &["status"]);
    assert!(
        out.contains("active data key 2 · minimum key id 2 · 1 credentials"),
        "{out}"
    );
    assert!(out.contains("retired"), "{out}");

    let new_key = f.dir.join("new.key");
    master_key::write_file(&new_key, &MasterKey::generate().unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["vault", "rekey", "--old-key-file"])
        .arg(key)
        .arg("--new-key-file")
        .arg(&new_key)
        .env_clear()
        .env("KEYWARD_DATABASE_URL", &f.t.url)
        .env("KEYWARD_LOG_FILTER", "off")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("re-wrapped 1 data keys"));
    // The old key no longer opens the vault; the new one does, and the credential still decrypts.
    f.refuses(Some(key), "does not match this database").await;
    // Rotating and rewrapping under the new master decrypts the credential through the re-keyed
    // keyring.
    let out = keyward_vault(&f, &new_key, &["rotate"]);
    assert!(out.contains("data key 3 is now active"), "{out}");
    let out = keyward_vault(&f, &new_key, &["rewrap"]);
    assert!(
        out.contains(
            "re-encrypted 1 credentials; 0 remain on older keys; 0 could not be decrypted"
        ),
        "{out}"
    );
    // Every vault operation is in the instance-wide audit log, in order.
    let db = keyward_server::db::connect_url(
        &keyward_server::config::DatabaseUrl::new(f.t.url.as_str()),
        2,
    )
    .await
    .unwrap();
    let log = keyward_server::services::audit::list(&db, None, &Default::default())
        .await
        .unwrap();
    let actions: Vec<&str> = log
        .entries
        .iter()
        .rev()
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "vault.rotated",
            "vault.rewrapped",
            "vault.retired",
            "vault.rekeyed",
            "vault.rotated",
            "vault.rewrapped"
        ]
    );
    assert!(
        log.entries
            .iter()
            .all(|e| e.actor.as_deref() == Some("operator (command line)"))
    );
    db.close().await.ok();
    std::fs::remove_dir_all(&f.dir).ok();
}
both_backends!(
    the_operator_runbook_works_from_the_cli,
    super::the_operator_runbook_works_from_the_cli
);
