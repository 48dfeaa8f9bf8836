//! The key vault: two-tier envelope encryption of provider keys.
//!
//! master secret → HKDF-SHA256 (with the vault's random salt) → key-encryption key (KEK) → wraps a
//! keyring of random 256-bit data keys (DEKs) stored in `vault_keys` → each DEK encrypts provider
//! keys with AES-256-GCM-SIV into blobs bound to their row ([`blob`]).
//!
//! Life cycle of data keys: `pending` (staged by `rotate`) → `active` (encrypts new blobs) →
//! `decrypt_only` (after the next rotation) → `retired` (after `retire`: the wrapped key is
//! erased, so blobs under it are unrecoverable). `vault_meta.generation` increases on every keyring
//! change; other instances poll it (and reload on an unknown key id) so a rotation reaches them
//! without a restart.
//!
//! Startup fails closed: see [`preflight`] and [`Vault::open`].

#![forbid(unsafe_code)]

pub mod blob;
pub mod crypto;
pub mod master_key;
#[cfg(test)]
mod rfc8452_c2;
#[cfg(test)]
mod vectors;

use crate::entities::{credential, vault_key, vault_meta};
pub use blob::CredentialContext;
use blob::{BlobError, Header, MAX_PLAINTEXT, VERSION};
use crypto::{KEY_LEN, NONCE_LEN, RandomError, SealingKey, TAG_LEN};
use keyward::credential::CredentialScope;
use master_key::{MasterKey, MasterKeyError};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use zeroize::Zeroizing;

const META_ID: i32 = 1;
const FORMAT_VERSION: i32 = 1;
const SALT_LEN: usize = 32;
const WRAPPED_LEN: usize = NONCE_LEN + KEY_LEN + TAG_LEN;
const DEK_AAD_LABEL: &[u8] = b"keyward/v1/data-key";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("vault: {0}")]
    MasterKey(#[from] MasterKeyError),
    #[error("vault: the master key does not match this database (key-check value differs)")]
    WrongMasterKey,
    #[error("vault: metadata is damaged: {0}")]
    Damaged(&'static str),
    #[error(
        "vault: keyring entry {key_id} failed authentication (tampered, or wrapped under another master key)"
    )]
    KeyringTampered { key_id: u32 },
    #[error(
        "vault: {count} stored credentials but no vault metadata; refusing to start (restore the vault tables from the same backup)"
    )]
    CredentialsWithoutVault { count: u64 },
    #[error("vault: ciphertext is malformed: {0}")]
    Blob(#[from] BlobError),
    #[error("vault: data key {0} is unknown")]
    UnknownKey(u32),
    #[error("vault: data key {0} is retired")]
    RetiredKey(u32),
    #[error("vault: ciphertext failed authentication")]
    Authentication,
    #[error("vault: provider key is too long (at most {MAX_PLAINTEXT} bytes)")]
    TooLarge,
    #[error("vault: the keyring has no active data key")]
    NoActiveKey,
    #[error(
        "vault: {count} credentials still use data keys older than {key_id}; run `keyward vault rewrap` first"
    )]
    RetireBlocked { count: u64, key_id: u32 },
    #[error("vault: {0}")]
    Random(#[from] RandomError),
    #[error("vault: database error: {0}")]
    Db(String),
    #[error("vault: decrypted key is not valid UTF-8")]
    NotUtf8,
}

impl From<DbErr> for VaultError {
    fn from(e: DbErr) -> Self {
        VaultError::Db(
            e.to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    Pending,
    Active,
    DecryptOnly,
    Retired,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::DecryptOnly => "decrypt_only",
            Self::Retired => "retired",
        }
    }

    fn parse(s: &str) -> Result<Self, VaultError> {
        Ok(match s {
            "pending" => Self::Pending,
            "active" => Self::Active,
            "decrypt_only" => Self::DecryptOnly,
            "retired" => Self::Retired,
            _ => return Err(VaultError::Damaged("unknown data key status")),
        })
    }
}

struct KeyEntry {
    status: KeyStatus,
    /// `None` once retired (the wrapped key is erased).
    key: Option<SealingKey>,
}

/// The unwrapped keyring as one immutable snapshot; replaced whole on reload.
struct Keyring {
    generation: i64,
    active: Option<u32>,
    min_key_id: u32,
    keys: BTreeMap<u32, KeyEntry>,
}

struct Inner {
    db: DatabaseConnection,
    kek: SealingKey,
    salt: Vec<u8>,
    ring: RwLock<Arc<Keyring>>,
}

/// The running vault. Cheap to clone; all clones share one keyring.
#[derive(Clone)]
pub struct Vault {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ring = self.ring();
        f.debug_struct("Vault")
            .field("generation", &ring.generation)
            .field("active_key_id", &ring.active)
            .field("keys", &ring.keys.len())
            .finish_non_exhaustive()
    }
}

/// What `keyward vault status` prints.
#[derive(Debug, Clone, Serialize)]
pub struct VaultStatus {
    pub generation: i64,
    pub active_key_id: Option<u32>,
    pub min_key_id: u32,
    pub credentials_total: u64,
    pub keys: Vec<KeyInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub id: u32,
    pub status: KeyStatus,
    pub credentials: u64,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub activated_at: Option<chrono::DateTime<chrono::Utc>>,
    pub retired_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RewrapReport {
    pub rewrapped: u64,
    /// Credentials that could not be decrypted (tampered rows); left as they are.
    pub failed: Vec<uuid::Uuid>,
    pub remaining: u64,
}

fn key_id_of(id: i32) -> Result<u32, VaultError> {
    u32::try_from(id).map_err(|_| VaultError::Damaged("negative data key id"))
}

fn wrap_aad(key_id: u32) -> Vec<u8> {
    let mut aad = DEK_AAD_LABEL.to_vec();
    aad.extend_from_slice(&key_id.to_be_bytes());
    aad
}

fn wrap_dek(kek: &SealingKey, key_id: u32, dek: &[u8; KEY_LEN]) -> Result<Vec<u8>, VaultError> {
    let nonce = crypto::random_bytes::<NONCE_LEN>()?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&kek.seal(&nonce, &wrap_aad(key_id), dek));
    Ok(out)
}

fn unwrap_dek(kek: &SealingKey, key_id: u32, wrapped: &[u8]) -> Result<SealingKey, VaultError> {
    if wrapped.len() != WRAPPED_LEN {
        return Err(VaultError::KeyringTampered { key_id });
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&wrapped[..NONCE_LEN]);
    let raw = kek
        .open(&nonce, &wrap_aad(key_id), &wrapped[NONCE_LEN..])
        .map_err(|_| VaultError::KeyringTampered { key_id })?;
    let mut dek = Zeroizing::new([0u8; KEY_LEN]);
    dek.copy_from_slice(&raw);
    Ok(SealingKey::new(&dek))
}

/// Checks the master key against the stored key-check value; returns the KEK.
fn verify_master(meta: &vault_meta::Model, master: &MasterKey) -> Result<SealingKey, VaultError> {
    if meta.key_check.is_empty() {
        return Err(VaultError::Damaged("key-check value missing"));
    }
    if meta.kdf_salt.len() != SALT_LEN {
        return Err(VaultError::Damaged(
            "key-derivation salt missing or wrong length",
        ));
    }
    if meta.format_version != FORMAT_VERSION {
        return Err(VaultError::Damaged("unsupported vault format version"));
    }
    let derived = crypto::derive_from_master(master.bytes(), &meta.kdf_salt);
    if !crypto::ct_eq(&derived.key_check, &meta.key_check) {
        return Err(VaultError::WrongMasterKey);
    }
    Ok(derived.kek)
}

async fn load_meta<C: ConnectionTrait>(db: &C) -> Result<Option<vault_meta::Model>, VaultError> {
    Ok(vault_meta::Entity::find_by_id(META_ID).one(db).await?)
}

async fn load_keyring<C: ConnectionTrait>(
    db: &C,
    meta: &vault_meta::Model,
    kek: &SealingKey,
) -> Result<Keyring, VaultError> {
    let rows = vault_key::Entity::find()
        .order_by_asc(vault_key::Column::Id)
        .all(db)
        .await?;
    let mut keys = BTreeMap::new();
    let mut active = None;
    for row in rows {
        let id = key_id_of(row.id)?;
        let status = KeyStatus::parse(&row.status)?;
        let key = match status {
            KeyStatus::Retired => None,
            _ => Some(unwrap_dek(kek, id, &row.wrapped)?),
        };
        if status == KeyStatus::Active {
            if active.is_some() {
                return Err(VaultError::Damaged("more than one active data key"));
            }
            active = Some(id);
        }
        keys.insert(id, KeyEntry { status, key });
    }
    Ok(Keyring {
        generation: meta.generation,
        active,
        min_key_id: key_id_of(meta.min_key_id)?,
        keys,
    })
}

async fn has_vault_tables(db: &DatabaseConnection) -> Result<bool, VaultError> {
    let manager = sea_orm_migration::SchemaManager::new(db);
    Ok(manager.has_table("vault_meta").await?)
}

/// Read-only checks before migrations run: if this database already has a vault, the master key
/// must match it and every wrapped data key must authenticate. Nothing is written, so a refusal
/// leaves the database exactly as it was.
pub async fn preflight(db: &DatabaseConnection, master: &MasterKey) -> Result<(), VaultError> {
    if !has_vault_tables(db).await? {
        return Ok(());
    }
    match load_meta(db).await? {
        Some(meta) => {
            let kek = verify_master(&meta, master)?;
            let ring = load_keyring(db, &meta, &kek).await?;
            if ring.active.is_none() {
                return Err(VaultError::NoActiveKey);
            }
            Ok(())
        }
        None => refuse_if_orphaned(db).await,
    }
}

/// Without metadata, the vault may only be created on an empty keyring and credentials table.
async fn refuse_if_orphaned<C: ConnectionTrait>(db: &C) -> Result<(), VaultError> {
    let count = credential::Entity::find().count(db).await?;
    if count > 0 {
        return Err(VaultError::CredentialsWithoutVault { count });
    }
    if vault_key::Entity::find().count(db).await? > 0 {
        return Err(VaultError::Damaged(
            "keyring present but vault metadata missing",
        ));
    }
    Ok(())
}

impl Vault {
    /// Opens the vault, creating it on first start (empty database only). Never re-initialises a
    /// vault that has data. Run migrations first (and [`preflight`] before them).
    pub async fn open(db: DatabaseConnection, master: &MasterKey) -> Result<Self, VaultError> {
        if load_meta(&db).await?.is_none() {
            Self::initialise(&db, master).await?;
        }
        let meta = load_meta(&db)
            .await?
            .ok_or(VaultError::Damaged("vault metadata missing"))?;
        let kek = verify_master(&meta, master)?;
        let ring = load_keyring(&db, &meta, &kek).await?;
        if ring.active.is_none() {
            return Err(VaultError::NoActiveKey);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                kek,
                salt: meta.kdf_salt.clone(),
                ring: RwLock::new(Arc::new(ring)),
            }),
        })
    }

    async fn initialise(db: &DatabaseConnection, master: &MasterKey) -> Result<(), VaultError> {
        let txn = crate::db::begin_write(db).await?;
        refuse_if_orphaned(&txn).await?;
        let salt = crypto::random_bytes::<SALT_LEN>()?;
        let derived = crypto::derive_from_master(master.bytes(), salt.as_ref());
        let now = chrono::Utc::now();
        let inserted = vault_meta::Entity::insert(vault_meta::ActiveModel {
            id: Set(META_ID),
            format_version: Set(FORMAT_VERSION),
            kdf_salt: Set(salt.to_vec()),
            key_check: Set(derived.key_check.to_vec()),
            min_key_id: Set(1),
            generation: Set(1),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .exec(&txn)
        .await;
        if inserted.is_err() {
            // Another instance initialised the vault at the same moment: use theirs.
            txn.rollback().await?;
            return Ok(());
        }
        let dek = crypto::random_bytes::<KEY_LEN>()?;
        vault_key::ActiveModel {
            id: Set(1),
            status: Set(KeyStatus::Active.as_str().into()),
            wrapped: Set(wrap_dek(&derived.kek, 1, &dek)?),
            created_at: Set(now),
            activated_at: Set(Some(now)),
            retired_at: Set(None),
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        tracing::info!("vault initialised with data key 1");
        Ok(())
    }

    fn ring(&self) -> Arc<Keyring> {
        // A poisoned lock only means a reload panicked; the snapshot inside is still whole.
        self.inner
            .ring
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn replace_ring(&self, ring: Keyring) {
        *self.inner.ring.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ring);
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.inner.db
    }

    pub fn generation(&self) -> i64 {
        self.ring().generation
    }

    pub fn active_key_id(&self) -> Option<u32> {
        self.ring().active
    }

    /// Encrypts a provider key for the row described by `ctx` with the active data key.
    /// Returns the blob and the id of the data key used.
    #[tracing::instrument(skip_all, fields(credential_id = %ctx.credential_id, provider = %ctx.provider))]
    pub fn encrypt(
        &self,
        ctx: &CredentialContext,
        plaintext: &SecretString,
    ) -> Result<(Vec<u8>, u32), VaultError> {
        let bytes = plaintext.expose_secret().as_bytes();
        if bytes.len() > MAX_PLAINTEXT {
            return Err(VaultError::TooLarge);
        }
        let ring = self.ring();
        let key_id = ring.active.ok_or(VaultError::NoActiveKey)?;
        let key = ring
            .keys
            .get(&key_id)
            .and_then(|k| k.key.as_ref())
            .ok_or(VaultError::NoActiveKey)?;
        let header = Header {
            version: VERSION,
            key_id,
            nonce: *crypto::random_bytes::<NONCE_LEN>()?,
        };
        let sealed = key.seal(&header.nonce, &blob::aad(ctx, VERSION, key_id), bytes);
        Ok((blob::assemble(&header, &sealed), key_id))
    }

    /// Encrypts for a write inside `txn` with a data key that cannot be retired before `txn`
    /// commits. The key's row is locked for share (PostgreSQL; SQLite write transactions are
    /// serial) and must not be retired: an instance whose keyring is stale (another instance
    /// rotated, re-wrapped and retired since its last refresh) reloads its keyring and encrypts
    /// again with the current key. `retire` locks the same rows for update before it counts the
    /// credentials still using them, so a write in flight either finishes first (and blocks the
    /// retire) or sees the key retired (and uses the new one): no credential is ever written
    /// under a key that `retire` erases.
    pub async fn encrypt_for_write<C: ConnectionTrait>(
        &self,
        txn: &C,
        ctx: &CredentialContext,
        plaintext: &SecretString,
    ) -> Result<(Vec<u8>, u32), VaultError> {
        for attempt in 0..2 {
            let (blob, key_id) = self.encrypt(ctx, plaintext)?;
            let row = vault_key::Entity::find_by_id(i32::try_from(key_id).unwrap_or(i32::MAX))
                .lock_shared()
                .one(txn)
                .await?;
            if row.is_some_and(|r| r.status != KeyStatus::Retired.as_str()) {
                return Ok((blob, key_id));
            }
            if attempt == 0 {
                tracing::info!(key_id, "the keyring was stale at a write; reloading it");
                self.refresh().await?;
            }
        }
        Err(VaultError::NoActiveKey)
    }

    /// Decrypts with the keyring in memory: no database read. Fails with `UnknownKey` if the
    /// blob names a key this instance has not loaded yet (see [`Vault::decrypt`]).
    pub fn decrypt_cached(
        &self,
        ctx: &CredentialContext,
        blob: &[u8],
    ) -> Result<SecretString, VaultError> {
        let (header, sealed) = blob::parse(blob)?;
        let ring = self.ring();
        let entry = ring
            .keys
            .get(&header.key_id)
            .ok_or(VaultError::UnknownKey(header.key_id))?;
        if header.key_id < ring.min_key_id || entry.status == KeyStatus::Retired {
            return Err(VaultError::RetiredKey(header.key_id));
        }
        let key = entry
            .key
            .as_ref()
            .ok_or(VaultError::RetiredKey(header.key_id))?;
        let plain = key
            .open(
                &header.nonce,
                &blob::aad(ctx, header.version, header.key_id),
                sealed,
            )
            .map_err(|_| VaultError::Authentication)?;
        let text = std::str::from_utf8(&plain).map_err(|_| VaultError::NotUtf8)?;
        Ok(SecretString::from(text))
    }

    /// Decrypts, reloading the keyring once if the blob was written with a data key another
    /// instance created after this one loaded its keyring.
    #[tracing::instrument(skip_all, fields(credential_id = %ctx.credential_id, provider = %ctx.provider))]
    pub async fn decrypt(
        &self,
        ctx: &CredentialContext,
        blob: &[u8],
    ) -> Result<SecretString, VaultError> {
        match self.decrypt_cached(ctx, blob) {
            Err(VaultError::UnknownKey(_)) => {
                self.refresh().await?;
                self.decrypt_cached(ctx, blob)
            }
            other => other,
        }
    }

    /// Reloads the keyring if another instance (or the CLI) changed it. Returns whether it did.
    pub async fn refresh(&self) -> Result<bool, VaultError> {
        let meta = load_meta(&self.inner.db)
            .await?
            .ok_or(VaultError::Damaged("vault metadata missing"))?;
        if meta.generation == self.generation() {
            return Ok(false);
        }
        if meta.kdf_salt != self.inner.salt {
            // Re-keyed under a new master key. The data keys this instance holds are still
            // valid; new ones cannot be unwrapped until it restarts with the new master key.
            tracing::error!(
                "the vault was re-keyed by another process; restart this instance with the new master key"
            );
            return Err(VaultError::WrongMasterKey);
        }
        let ring = load_keyring(&self.inner.db, &meta, &self.inner.kek).await?;
        self.replace_ring(ring);
        tracing::info!(generation = meta.generation, "vault keyring reloaded");
        Ok(true)
    }

    /// Polls for keyring changes every `every` until the returned task is aborted.
    pub fn spawn_refresher(&self, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let vault = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = vault.refresh().await {
                    tracing::warn!(error = %e, "vault keyring refresh failed");
                }
            }
        })
    }

    pub async fn status(&self) -> Result<VaultStatus, VaultError> {
        let db = &self.inner.db;
        let meta = load_meta(db)
            .await?
            .ok_or(VaultError::Damaged("vault metadata missing"))?;
        let counts: Vec<(i32, i64)> = credential::Entity::find()
            .select_only()
            .column(credential::Column::KeyId)
            .column_as(Expr::col(credential::Column::Id).count(), "n")
            .group_by(credential::Column::KeyId)
            .into_tuple()
            .all(db)
            .await?;
        let rows = vault_key::Entity::find()
            .order_by_asc(vault_key::Column::Id)
            .all(db)
            .await?;
        let mut keys = Vec::with_capacity(rows.len());
        let mut active_key_id = None;
        for row in rows {
            let status = KeyStatus::parse(&row.status)?;
            if status == KeyStatus::Active {
                active_key_id = Some(key_id_of(row.id)?);
            }
            let credentials = counts
                .iter()
                .find(|(k, _)| *k == row.id)
                .map_or(0, |(_, n)| u64::try_from(*n).unwrap_or(0));
            keys.push(KeyInfo {
                id: key_id_of(row.id)?,
                status,
                credentials,
                created_at: row.created_at,
                activated_at: row.activated_at,
                retired_at: row.retired_at,
            });
        }
        Ok(VaultStatus {
            generation: meta.generation,
            active_key_id,
            min_key_id: key_id_of(meta.min_key_id)?,
            credentials_total: counts
                .iter()
                .map(|(_, n)| u64::try_from(*n).unwrap_or(0))
                .sum(),
            keys,
        })
    }

    /// Bumps the generation first: on PostgreSQL the row lock (on SQLite the write lock)
    /// serialises concurrent keyring operations.
    async fn bump_generation<C: ConnectionTrait>(txn: &C) -> Result<(), VaultError> {
        vault_meta::Entity::update_many()
            .col_expr(
                vault_meta::Column::Generation,
                Expr::col(vault_meta::Column::Generation).add(1),
            )
            .col_expr(
                vault_meta::Column::UpdatedAt,
                Expr::value(chrono::Utc::now()),
            )
            .filter(vault_meta::Column::Id.eq(META_ID))
            .exec(txn)
            .await?;
        Ok(())
    }

    /// Creates a new data key and makes it the active one, in two committed steps: stage it as
    /// `pending` (so every instance can load it), then promote it (the old active key becomes
    /// `decrypt_only`). An interrupted rotation is finished by the next call. Returns its id.
    pub async fn rotate(&self) -> Result<u32, VaultError> {
        let db = &self.inner.db;
        let txn = crate::db::begin_write(db).await?;
        Self::bump_generation(&txn).await?;
        let pending = vault_key::Entity::find()
            .filter(vault_key::Column::Status.eq(KeyStatus::Pending.as_str()))
            .one(&txn)
            .await?;
        let new_id = match pending {
            Some(row) => key_id_of(row.id)?,
            None => {
                let max: Option<i32> = vault_key::Entity::find()
                    .select_only()
                    .column_as(Expr::col(vault_key::Column::Id).max(), "m")
                    .into_tuple()
                    .one(&txn)
                    .await?
                    .flatten();
                let id = key_id_of(max.unwrap_or(0))?
                    .checked_add(1)
                    .ok_or(VaultError::Damaged("data key ids exhausted"))?;
                let dek = crypto::random_bytes::<KEY_LEN>()?;
                vault_key::ActiveModel {
                    id: Set(i32::try_from(id)
                        .map_err(|_| VaultError::Damaged("data key ids exhausted"))?),
                    status: Set(KeyStatus::Pending.as_str().into()),
                    wrapped: Set(wrap_dek(&self.inner.kek, id, &dek)?),
                    created_at: Set(chrono::Utc::now()),
                    activated_at: Set(None),
                    retired_at: Set(None),
                }
                .insert(&txn)
                .await?;
                id
            }
        };
        txn.commit().await?;

        let txn = crate::db::begin_write(db).await?;
        Self::bump_generation(&txn).await?;
        let now = chrono::Utc::now();
        vault_key::Entity::update_many()
            .col_expr(
                vault_key::Column::Status,
                Expr::value(KeyStatus::DecryptOnly.as_str()),
            )
            .filter(vault_key::Column::Status.eq(KeyStatus::Active.as_str()))
            .exec(&txn)
            .await?;
        vault_key::Entity::update_many()
            .col_expr(
                vault_key::Column::Status,
                Expr::value(KeyStatus::Active.as_str()),
            )
            .col_expr(vault_key::Column::ActivatedAt, Expr::value(now))
            .filter(vault_key::Column::Id.eq(i32::try_from(new_id).unwrap_or(i32::MAX)))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        self.refresh().await?;
        tracing::info!(key_id = new_id, "vault data key rotated");
        Ok(new_id)
    }

    /// Re-encrypts credentials still on older data keys with the active one, `batch` rows per
    /// transaction. Idempotent and resumable: it always picks up what is left.
    pub async fn rewrap(
        &self,
        batch: u64,
        max_batches: Option<u64>,
    ) -> Result<RewrapReport, VaultError> {
        self.refresh().await?;
        let db = &self.inner.db;
        let active = self.active_key_id().ok_or(VaultError::NoActiveKey)?;
        let active_i32 = i32::try_from(active).unwrap_or(i32::MAX);
        let mut report = RewrapReport::default();
        let mut batches = 0u64;
        loop {
            if max_batches.is_some_and(|max| batches >= max) {
                break;
            }
            batches += 1;
            let rows = credential::Entity::find()
                .filter(credential::Column::KeyId.ne(active_i32))
                .filter(credential::Column::Id.is_not_in(report.failed.clone()))
                .order_by_asc(credential::Column::Id)
                .limit(std::cmp::max(batch, 1))
                .all(db)
                .await?;
            if rows.is_empty() {
                break;
            }
            let txn = crate::db::begin_write(db).await?;
            for row in rows {
                let ctx = context_of(&row)?;
                let plain = match self.decrypt(&ctx, &row.ciphertext).await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(credential_id = %row.id, error = %e, "rewrap: cannot decrypt; left as is");
                        report.failed.push(row.id);
                        continue;
                    }
                };
                let (blob, key_id) = self.encrypt(&ctx, &plain)?;
                // Only if the row still holds what we read: a concurrent replace wins.
                let updated = credential::Entity::update_many()
                    .col_expr(credential::Column::Ciphertext, Expr::value(blob))
                    .col_expr(
                        credential::Column::KeyId,
                        Expr::value(i32::try_from(key_id).unwrap_or(i32::MAX)),
                    )
                    .filter(credential::Column::Id.eq(row.id))
                    .filter(credential::Column::Ciphertext.eq(row.ciphertext.clone()))
                    .exec(&txn)
                    .await?;
                report.rewrapped += updated.rows_affected;
            }
            txn.commit().await?;
        }
        report.remaining = credential::Entity::find()
            .filter(credential::Column::KeyId.ne(active_i32))
            .count(db)
            .await?;
        tracing::info!(
            rewrapped = report.rewrapped,
            remaining = report.remaining,
            "vault rewrap finished"
        );
        Ok(report)
    }

    /// Raises the minimum decryptable key id to the active key and erases the wrapped form of
    /// every older data key. Refused while any credential still uses one. Returns the retired ids.
    pub async fn retire(&self) -> Result<Vec<u32>, VaultError> {
        self.refresh().await?;
        let db = &self.inner.db;
        let active = self.active_key_id().ok_or(VaultError::NoActiveKey)?;
        let active_i32 = i32::try_from(active).unwrap_or(i32::MAX);
        let txn = crate::db::begin_write(db).await?;
        Self::bump_generation(&txn).await?;
        // Lock the keys to retire first: a write holding one (see `encrypt_for_write`) finishes
        // before the count below, which then sees its credential.
        vault_key::Entity::find()
            .filter(vault_key::Column::Id.lt(active_i32))
            .lock_exclusive()
            .all(&txn)
            .await?;
        let count = credential::Entity::find()
            .filter(credential::Column::KeyId.lt(active_i32))
            .count(&txn)
            .await?;
        if count > 0 {
            txn.rollback().await?;
            return Err(VaultError::RetireBlocked {
                count,
                key_id: active,
            });
        }
        let old: Vec<i32> = vault_key::Entity::find()
            .select_only()
            .column(vault_key::Column::Id)
            .filter(vault_key::Column::Id.lt(active_i32))
            .filter(vault_key::Column::Status.ne(KeyStatus::Retired.as_str()))
            .into_tuple()
            .all(&txn)
            .await?;
        vault_key::Entity::update_many()
            .col_expr(
                vault_key::Column::Status,
                Expr::value(KeyStatus::Retired.as_str()),
            )
            .col_expr(vault_key::Column::Wrapped, Expr::value(Vec::<u8>::new()))
            .col_expr(
                vault_key::Column::RetiredAt,
                Expr::value(chrono::Utc::now()),
            )
            .filter(vault_key::Column::Id.is_in(old.clone()))
            .exec(&txn)
            .await?;
        vault_meta::Entity::update_many()
            .col_expr(vault_meta::Column::MinKeyId, Expr::value(active_i32))
            .filter(vault_meta::Column::Id.eq(META_ID))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        self.refresh().await?;
        let retired = old
            .into_iter()
            .filter_map(|id| u32::try_from(id).ok())
            .collect();
        tracing::info!(?retired, "vault data keys retired");
        Ok(retired)
    }
}

/// Re-wraps the keyring under a new master key in one transaction: nothing else changes (the data
/// keys, and so every credential blob, stay the same). Returns the number of data keys re-wrapped.
pub async fn rekey(
    db: &DatabaseConnection,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<usize, VaultError> {
    let txn = crate::db::begin_write(db).await?;
    Vault::bump_generation(&txn).await?;
    let meta = load_meta(&txn)
        .await?
        .ok_or(VaultError::Damaged("vault metadata missing"))?;
    let old_kek = verify_master(&meta, old)?;
    let salt = crypto::random_bytes::<SALT_LEN>()?;
    let derived = crypto::derive_from_master(new.bytes(), salt.as_ref());
    let rows = vault_key::Entity::find().all(&txn).await?;
    let mut count = 0;
    for row in rows {
        if row.status == KeyStatus::Retired.as_str() {
            continue;
        }
        let id = key_id_of(row.id)?;
        let nonce_and_sealed = &row.wrapped;
        // Unwrap to raw bytes, re-wrap under the new KEK.
        if nonce_and_sealed.len() != WRAPPED_LEN {
            return Err(VaultError::KeyringTampered { key_id: id });
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&nonce_and_sealed[..NONCE_LEN]);
        let raw = old_kek
            .open(&nonce, &wrap_aad(id), &nonce_and_sealed[NONCE_LEN..])
            .map_err(|_| VaultError::KeyringTampered { key_id: id })?;
        let mut dek = Zeroizing::new([0u8; KEY_LEN]);
        dek.copy_from_slice(&raw);
        let mut active: vault_key::ActiveModel = row.into();
        active.wrapped = Set(wrap_dek(&derived.kek, id, &dek)?);
        active.update(&txn).await?;
        count += 1;
    }
    vault_meta::Entity::update_many()
        .col_expr(vault_meta::Column::KdfSalt, Expr::value(salt.to_vec()))
        .col_expr(
            vault_meta::Column::KeyCheck,
            Expr::value(derived.key_check.to_vec()),
        )
        .filter(vault_meta::Column::Id.eq(META_ID))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    tracing::info!(keys = count, "vault re-keyed under a new master key");
    Ok(count)
}

/// The vault context of a stored credential row.
pub fn context_of(row: &credential::Model) -> Result<CredentialContext, VaultError> {
    Ok(CredentialContext {
        credential_id: row.id,
        workspace_id: row.workspace_id,
        scope: row
            .scope
            .parse::<CredentialScope>()
            .map_err(|_| VaultError::Damaged("unknown credential scope"))?,
        owner_id: row.owner_id,
        provider: row.provider.clone(),
        base_url: row.base_url.clone(),
    })
}
