//! The vault against a real database (SQLite and PostgreSQL): round trips, tamper resistance,
//! binding to the row, and the rotate → rewrap → retire → rekey life cycle.

use crate::helpers::{Backend, TestVault, both_backends, open_vault};
use keyward::credential::CredentialScope;
use keyward_server::entities::{credential, vault_key};
use keyward_server::vault::{
    CredentialContext, Vault, VaultError, context_of, master_key::MasterKey,
};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashSet;
use uuid::Uuid;

fn ctx() -> CredentialContext {
    let ws = Uuid::new_v4();
    CredentialContext {
        credential_id: Uuid::new_v4(),
        workspace_id: Some(ws),
        scope: CredentialScope::Workspace,
        owner_id: ws,
        provider: "openai".into(),
        base_url: "https://api.openai.com/v1".into(),
    }
}

async fn store(t: &TestVault, ctx: &CredentialContext, key: &str) -> credential::Model {
    crate::helpers::store_credential(t, ctx, key).await
}

fn secret_of(bytes: usize) -> String {
    (0..bytes)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect()
}

async fn round_trips_at_edge_sizes_and_the_cap(backend: Backend) {
    let t = open_vault(backend).await;
    let c = ctx();
    for n in [0, 1, 16, 17, 164, 8192] {
        let plain = secret_of(n);
        let (blob, _) = t
            .vault
            .encrypt(&c, &SecretString::from(plain.as_str()))
            .unwrap();
        assert_eq!(blob.len(), 1 + 4 + 12 + n + 16);
        let back = t.vault.decrypt(&c, &blob).await.unwrap();
        assert_eq!(back.expose_secret(), plain);
    }
    let too_big = SecretString::from(secret_of(8193));
    assert!(matches!(
        t.vault.encrypt(&c, &too_big),
        Err(VaultError::TooLarge)
    ));
}
both_backends!(
    round_trips_at_edge_sizes_and_the_cap,
    super::round_trips_at_edge_sizes_and_the_cap
);

async fn ten_thousand_encryptions_all_differ(backend: Backend) {
    let t = open_vault(backend).await;
    let c = ctx();
    let secret = SecretString::from("sk-proj-0123456789abcdefghijklmnop");
    let blobs: HashSet<Vec<u8>> = (0..10_000)
        .map(|_| t.vault.encrypt(&c, &secret).unwrap().0)
        .collect();
    assert_eq!(blobs.len(), 10_000);
}
both_backends!(
    ten_thousand_encryptions_all_differ,
    super::ten_thousand_encryptions_all_differ
);

async fn every_bit_flip_and_every_malformed_length_fails(backend: Backend) {
    let t = open_vault(backend).await;
    let c = ctx();
    let (blob, _) = t
        .vault
        .encrypt(&c, &SecretString::from(secret_of(40)))
        .unwrap();
    let mut flips = 0;
    for byte in 0..blob.len() {
        for bit in 0..8 {
            let mut bad = blob.clone();
            bad[byte] ^= 1 << bit;
            assert!(
                t.vault.decrypt_cached(&c, &bad).is_err(),
                "flip {byte}.{bit}"
            );
            flips += 1;
        }
    }
    assert_eq!(flips, blob.len() * 8, "header, nonce, ciphertext and tag");
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        blob[..1].to_vec(),
        blob[..32].to_vec(),
        blob[..blob.len() - 1].to_vec(),
        [blob.clone(), vec![0]].concat(),
        vec![1; 20 * 1024 * 1024],
        vec![0; 64],
    ];
    for bad in cases {
        assert!(
            t.vault.decrypt(&c, &bad).await.is_err(),
            "len {}",
            bad.len()
        );
    }
    let mut other_version = blob.clone();
    other_version[0] = 2;
    assert!(matches!(
        t.vault.decrypt_cached(&c, &other_version),
        Err(VaultError::Blob(_))
    ));
    let mut unknown_key = blob.clone();
    unknown_key[1..5].copy_from_slice(&999u32.to_be_bytes());
    assert!(matches!(
        t.vault.decrypt(&c, &unknown_key).await,
        Err(VaultError::UnknownKey(999))
    ));
}
both_backends!(
    every_bit_flip_and_every_malformed_length_fails,
    super::every_bit_flip_and_every_malformed_length_fails
);

async fn a_blob_moved_to_another_row_fails(backend: Backend) {
    let t = open_vault(backend).await;
    let c = ctx();
    let (blob, _) = t
        .vault
        .encrypt(&c, &SecretString::from("sk-ant-canary-0123456789"))
        .unwrap();
    let moved = [
        CredentialContext {
            credential_id: Uuid::new_v4(),
            ..c.clone()
        },
        CredentialContext {
            workspace_id: Some(Uuid::new_v4()),
            ..c.clone()
        },
        CredentialContext {
            provider: "anthropic".into(),
            ..c.clone()
        },
        CredentialContext {
            scope: CredentialScope::Chatbot,
            ..c.clone()
        },
        CredentialContext {
            scope: CredentialScope::Platform,
            workspace_id: None,
            ..c.clone()
        },
        CredentialContext {
            owner_id: Uuid::new_v4(),
            ..c.clone()
        },
        CredentialContext {
            base_url: "https://attacker.example/v1".into(),
            ..c.clone()
        },
    ];
    for other in &moved {
        assert!(
            matches!(
                t.vault.decrypt_cached(other, &blob),
                Err(VaultError::Authentication)
            ),
            "{other:?}"
        );
    }
    assert!(t.vault.decrypt_cached(&c, &blob).is_ok());
}
both_backends!(
    a_blob_moved_to_another_row_fails,
    super::a_blob_moved_to_another_row_fails
);

async fn rotate_rewrap_retire_life_cycle(backend: Backend) {
    let t = open_vault(backend).await;
    let mut rows = Vec::new();
    for i in 0..5 {
        let c = ctx();
        rows.push((
            c.clone(),
            store(&t, &c, &format!("sk-key-number-{i}-0123456789")).await,
        ));
    }
    assert_eq!(t.vault.active_key_id(), Some(1));
    let before = t.vault.status().await.unwrap();
    assert_eq!(before.keys[0].credentials, 5);

    let new_id = t.vault.rotate().await.unwrap();
    assert_eq!(new_id, 2);
    assert_eq!(t.vault.active_key_id(), Some(2));
    let (fresh, used) = t.vault.encrypt(&ctx(), &SecretString::from("x")).unwrap();
    assert_eq!(used, 2);
    assert_eq!(&fresh[1..5], &2u32.to_be_bytes());
    // Old blobs still decrypt (key 1 is decrypt-only now).
    for (c, row) in &rows {
        assert!(t.vault.decrypt(c, &row.ciphertext).await.is_ok());
    }
    // Retiring before rewrapping is refused and changes nothing.
    assert!(matches!(
        t.vault.retire().await,
        Err(VaultError::RetireBlocked {
            count: 5,
            key_id: 2
        })
    ));

    // An interrupted rewrap (one batch of two) resumes where it stopped.
    let first = t.vault.rewrap(2, Some(1)).await.unwrap();
    assert_eq!((first.rewrapped, first.remaining), (2, 3));
    let rest = t.vault.rewrap(2, None).await.unwrap();
    assert_eq!((rest.rewrapped, rest.remaining), (3, 0));
    let again = t.vault.rewrap(2, None).await.unwrap();
    assert_eq!(again.rewrapped, 0, "idempotent");

    let retired = t.vault.retire().await.unwrap();
    assert_eq!(retired, vec![1]);
    let key1 = vault_key::Entity::find_by_id(1)
        .one(&t.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(key1.status, "retired");
    assert!(key1.wrapped.is_empty(), "retired key material is erased");
    for (c, _) in &rows {
        let row = credential::Entity::find_by_id(c.credential_id)
            .one(&t.db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.key_id, 2);
        let plain = t.vault.decrypt(c, &row.ciphertext).await.unwrap();
        assert!(plain.expose_secret().starts_with("sk-key-number-"));
        // The pre-rotation blob is now undecryptable.
    }
    let (c0, old_row) = &rows[0];
    assert!(matches!(
        t.vault.decrypt(c0, &old_row.ciphertext).await,
        Err(VaultError::RetiredKey(1))
    ));
}
both_backends!(
    rotate_rewrap_retire_life_cycle,
    super::rotate_rewrap_retire_life_cycle
);

async fn a_second_instance_picks_up_a_rotation(backend: Backend) {
    let t = open_vault(backend).await;
    let second = Vault::open(t.db.clone(), &t.master).await.unwrap();
    assert_eq!(second.active_key_id(), Some(1));

    t.vault.rotate().await.unwrap();
    let c = ctx();
    let (blob, key_id) = t
        .vault
        .encrypt(&c, &SecretString::from("sk-after-rotation-0123456"))
        .unwrap();
    assert_eq!(key_id, 2);
    // The second instance has never seen key 2: it reloads on the unknown id.
    let plain = second.decrypt(&c, &blob).await.unwrap();
    assert_eq!(plain.expose_secret(), "sk-after-rotation-0123456");
    assert_eq!(second.active_key_id(), Some(2), "and now encrypts with it");
    assert!(!second.refresh().await.unwrap(), "nothing new");
}
both_backends!(
    a_second_instance_picks_up_a_rotation,
    super::a_second_instance_picks_up_a_rotation
);

async fn rekey_rewraps_only_the_keyring(backend: Backend) {
    let t = open_vault(backend).await;
    let c = ctx();
    let row = store(&t, &c, "sk-rekey-canary-0123456789").await;
    t.vault.rotate().await.unwrap();
    let new_master = MasterKey::generate().unwrap();
    let n = keyward_server::vault::rekey(&t.db, &t.master, &new_master)
        .await
        .unwrap();
    assert_eq!(n, 2);

    assert!(matches!(
        Vault::open(t.db.clone(), &t.master).await,
        Err(VaultError::WrongMasterKey)
    ));
    let reopened = Vault::open(t.db.clone(), &new_master).await.unwrap();
    let stored = credential::Entity::find_by_id(c.credential_id)
        .one(&t.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.ciphertext, row.ciphertext,
        "credential blobs untouched"
    );
    let plain = reopened.decrypt(&c, &stored.ciphertext).await.unwrap();
    assert_eq!(plain.expose_secret(), "sk-rekey-canary-0123456789");
    // Rekey with the wrong "old" key is refused.
    assert!(matches!(
        keyward_server::vault::rekey(&t.db, &t.master, &new_master).await,
        Err(VaultError::WrongMasterKey)
    ));
}
both_backends!(
    rekey_rewraps_only_the_keyring,
    super::rekey_rewraps_only_the_keyring
);

async fn opening_fails_closed_on_damage(backend: Backend) {
    let t = open_vault(backend).await;
    let c = ctx();
    store(&t, &c, "sk-damage-0123456789abcd").await;

    // Wrong master key.
    let other = MasterKey::generate().unwrap();
    assert!(matches!(
        Vault::open(t.db.clone(), &other).await,
        Err(VaultError::WrongMasterKey)
    ));

    // A tampered wrapped data key.
    let key1 = vault_key::Entity::find_by_id(1)
        .one(&t.db)
        .await
        .unwrap()
        .unwrap();
    let mut tampered = key1.wrapped.clone();
    tampered[20] ^= 0x01;
    let mut am: vault_key::ActiveModel = key1.clone().into();
    am.wrapped = Set(tampered);
    am.update(&t.db).await.unwrap();
    assert!(matches!(
        Vault::open(t.db.clone(), &t.master).await,
        Err(VaultError::KeyringTampered { key_id: 1 })
    ));

    // Vault metadata deleted while credentials exist: never re-initialised.
    keyward_server::entities::vault_meta::Entity::delete_many()
        .exec(&t.db)
        .await
        .unwrap();
    assert!(matches!(
        Vault::open(t.db.clone(), &t.master).await,
        Err(VaultError::CredentialsWithoutVault { count: 1 })
    ));
    let left = credential::Entity::find()
        .filter(credential::Column::Id.eq(c.credential_id))
        .all(&t.db)
        .await
        .unwrap();
    assert_eq!(left.len(), 1, "nothing deleted");
    assert!(context_of(&left[0]).is_ok());
}
both_backends!(
    opening_fails_closed_on_damage,
    super::opening_fails_closed_on_damage
);

/// Two instances on one database: while A's keyring is stale, B rotates, re-wraps and retires.
/// A's next write must not land under the retired (erased) key, and a write A has in flight
/// holds a retire off instead of being shredded by it.
async fn a_stale_instance_never_writes_under_a_retired_key(backend: Backend) {
    use keyward_server::vault::Vault;
    let t = open_vault(backend).await;
    let b = Vault::open(t.db.clone(), &t.master).await.unwrap();
    let old = ctx();
    store(&t, &old, "sk-before-rotation-0000000000").await;
    assert_eq!(b.rotate().await.unwrap(), 2);
    b.rewrap(10, None).await.unwrap();
    assert_eq!(b.retire().await.unwrap(), vec![1]);
    assert_eq!(
        t.vault.active_key_id(),
        Some(1),
        "A has not reloaded its keyring"
    );

    // A adds a key: it reloads and seals with key 2, which B (and A) can open.
    let c = ctx();
    let secret = SecretString::from("sk-added-by-the-stale-one-00000");
    let txn = keyward_server::db::begin_write(&t.db).await.unwrap();
    let (blob, key_id) = t.vault.encrypt_for_write(&txn, &c, &secret).await.unwrap();
    crate::helpers::insert_sealed(&txn, &c, blob.clone(), key_id, "sk-added").await;
    txn.commit().await.unwrap();
    assert_eq!(key_id, 2, "not the retired key 1");
    assert_eq!(
        b.decrypt(&c, &blob).await.unwrap().expose_secret(),
        secret.expose_secret()
    );

    // In flight: B rotates to 3 and re-wraps; A (still on 2) is writing when B retires.
    assert_eq!(b.rotate().await.unwrap(), 3);
    b.rewrap(10, None).await.unwrap();
    let c2 = ctx();
    let txn = keyward_server::db::begin_write(&t.db).await.unwrap();
    let (blob2, key2) = t.vault.encrypt_for_write(&txn, &c2, &secret).await.unwrap();
    assert_eq!(
        key2, 2,
        "A's keyring still says 2, which is not retired yet"
    );
    let retiring = {
        let b = b.clone();
        tokio::spawn(async move { b.retire().await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!retiring.is_finished(), "the retire waits for the write");
    crate::helpers::insert_sealed(&txn, &c2, blob2.clone(), key2, "sk-added").await;
    txn.commit().await.unwrap();
    let retired = retiring.await.unwrap();
    assert!(
        matches!(retired, Err(VaultError::RetireBlocked { count: 1, .. })),
        "{retired:?}"
    );
    assert!(b.decrypt(&c2, &blob2).await.is_ok(), "not shredded");
    // After another re-wrap the retire goes through, and every credential still opens.
    b.rewrap(10, None).await.unwrap();
    assert_eq!(b.retire().await.unwrap(), vec![2]);
    for row in credential::Entity::find().all(&t.db).await.unwrap() {
        let cx = CredentialContext {
            credential_id: row.id,
            workspace_id: row.workspace_id,
            scope: CredentialScope::Workspace,
            owner_id: row.owner_id,
            provider: row.provider.clone(),
            base_url: row.base_url.clone(),
        };
        assert!(b.decrypt(&cx, &row.ciphertext).await.is_ok());
    }
}
both_backends!(
    a_stale_instance_never_writes_under_a_retired_key,
    super::a_stale_instance_never_writes_under_a_retired_key
);
