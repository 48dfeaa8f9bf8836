//! People and their sessions: first-run setup, sign-in (throttled), server-side sessions with
//! idle and absolute expiry, sign-out (here or everywhere), password changes, CLI admin creation.

use crate::entities::{membership, session, setting, user, workspace};
use crate::error::ServiceError;
use crate::throttle::Throttle;
use crate::vault::crypto;
use chrono::{DateTime, Duration, Utc};
use keyward::account::{Email, check_new_password, parse_display_name, parse_workspace_name};
use keyward::policy::{Plan, Role};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    PaginatorTrait, QueryFilter, Set,
};
use std::net::IpAddr;
use std::sync::Arc;
use uuid::Uuid;
use zeroize::Zeroizing;

/// Idle sessions end after this long without a request.
pub const IDLE_TIMEOUT: Duration = Duration::days(7);
/// Every session ends this long after sign-in, however active.
pub const ABSOLUTE_TIMEOUT: Duration = Duration::days(30);
/// `last_seen_at` is written at most this often per session.
const TOUCH_EVERY: Duration = Duration::seconds(60);
const SETUP_DONE: &str = "setup_completed";
/// The settings row holding the SHA-256 of the current one-time set-up token.
const SETUP_TOKEN: &str = "setup_token_sha256";
/// The answer when an account cannot be created with an email. The same whether the address
/// is taken or not usable, so that sign-up does not tell strangers who has an account.
pub const ACCOUNT_REFUSED: &str =
    "an account cannot be created with this email here; if you already have one, sign in";

/// A user as the rest of the server sees them after authentication. No secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionUser {
    pub user_id: Uuid,
    pub email: String,
    pub display_name: String,
    pub platform_admin: bool,
    pub current_workspace: Option<Uuid>,
    /// The stored hash of this session's token (identifies the session without the token).
    pub session_hash: String,
}

/// A new session's cookie token. Shown to the browser once; only its hash is stored.
pub struct NewSession {
    pub token: Zeroizing<String>,
    pub user: SessionUser,
}

/// Password work, guarded: sign-in attempts per account and per client address, password
/// changes per user, and how many argon2 runs (19 MiB and tens of milliseconds each) may run at
/// once — the rest wait their turn for a while, then are told to retry. In memory, per instance.
#[derive(Clone)]
pub struct SignInThrottle {
    per_account: Throttle<String>,
    per_address: Throttle<IpAddr>,
    changes: Throttle<Uuid>,
    hashing: Arc<tokio::sync::Semaphore>,
    slots: usize,
    queue_wait: std::time::Duration,
    /// The most argon2 runs seen at once (tests check the cap holds).
    peak: Arc<std::sync::atomic::AtomicUsize>,
    running: Arc<std::sync::atomic::AtomicUsize>,
}

/// Argon2 runs allowed at once.
pub const CONCURRENT_HASHES: usize = 4;
/// How long a password check waits for its turn before the caller is asked to retry.
const HASH_QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// Password changes (each checks the current password) allowed per user per minute.
const CHANGES_PER_MINUTE: u32 = 5;

impl SignInThrottle {
    /// `per_account` attempts a minute for one email, `per_address` for one client address.
    pub fn new(per_account: u32, per_address: u32) -> Self {
        Self::with_hash_slots(per_account, per_address, CONCURRENT_HASHES, HASH_QUEUE_WAIT)
    }

    /// Like [`Self::new`] with `slots` concurrent argon2 runs, each caller waiting at most
    /// `queue_wait` for one.
    pub fn with_hash_slots(
        per_account: u32,
        per_address: u32,
        slots: usize,
        queue_wait: std::time::Duration,
    ) -> Self {
        Self {
            per_account: Throttle::per_minute(per_account),
            per_address: Throttle::per_minute(per_address),
            changes: Throttle::per_minute(CHANGES_PER_MINUTE),
            hashing: Arc::new(tokio::sync::Semaphore::new(slots)),
            slots,
            queue_wait,
            peak: Arc::default(),
            running: Arc::default(),
        }
    }

    /// Counts an attempt for `key` (an email, or a set-up/sign-up form) from `addr`.
    pub fn check(&self, key: &str, addr: Option<IpAddr>) -> Result<(), ServiceError> {
        if let Some(ip) = addr {
            self.per_address
                .check(&crate::client::bucket(ip))
                .map_err(ServiceError::RateLimited)?;
        }
        self.per_account
            .check(&key.to_string())
            .map_err(ServiceError::RateLimited)
    }

    /// Runs argon2 work when a slot is free (waiting a while for one).
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ServiceError> {
        use std::sync::atomic::Ordering::SeqCst;
        let permit = tokio::time::timeout(self.queue_wait, self.hashing.clone().acquire_owned())
            .await
            .map_err(|_| ServiceError::RateLimited(2))?
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let (running, peak) = (self.running.clone(), self.peak.clone());
        let out = tokio::task::spawn_blocking(move || {
            let now = running.fetch_add(1, SeqCst) + 1;
            peak.fetch_max(now, SeqCst);
            let out = work();
            running.fetch_sub(1, SeqCst);
            drop(permit);
            out
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
        Ok(out)
    }

    /// Hashes a new password (never inside a database transaction: it takes a while).
    pub async fn hash(&self, password: &str) -> Result<String, ServiceError> {
        let password = Zeroizing::new(password.to_string());
        self.run(move || crypto::hash_password(&password))
            .await?
            .map_err(|e| ServiceError::Internal(e.to_string()))
    }

    pub async fn verify(&self, password: &str, hash: &str) -> Result<bool, ServiceError> {
        let password = Zeroizing::new(password.to_string());
        let hash = hash.to_string();
        self.run(move || crypto::verify_password(&password, &hash))
            .await
    }

    /// The most argon2 runs that were ever in progress at once.
    pub fn peak_hashing(&self) -> usize {
        self.peak.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The cap on concurrent argon2 runs.
    pub fn hash_slots(&self) -> usize {
        self.slots
    }
}

/// A hash to verify against when the email is unknown, so that timing does not reveal which
/// accounts exist.
async fn dummy_hash() -> &'static str {
    static DUMMY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    DUMMY
        .get_or_init(|| async {
            tokio::task::spawn_blocking(|| crypto::hash_password("keyward-dummy-password"))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default()
        })
        .await
}

/// Whether no account exists yet. Runs on every page render, so it asks for one row, not a count.
pub async fn needs_setup(db: &DatabaseConnection) -> Result<bool, ServiceError> {
    use sea_orm::QuerySelect;
    let any: Option<Uuid> = user::Entity::find()
        .select_only()
        .column(user::Column::Id)
        .into_tuple()
        .one(db)
        .await?;
    Ok(any.is_none())
}

fn invalid(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Invalid(e.to_string())
}

/// Creates a user row (the caller's transaction decides the rest).
pub(crate) async fn insert_user<C: ConnectionTrait>(
    db: &C,
    email: &Email,
    name: &str,
    password_hash: String,
    platform_admin: bool,
) -> Result<user::Model, ServiceError> {
    if user::Entity::find()
        .filter(user::Column::Email.eq(email.as_str()))
        .count(db)
        .await?
        > 0
    {
        return Err(ServiceError::Conflict(ACCOUNT_REFUSED.into()));
    }
    let now = Utc::now();
    Ok(user::ActiveModel {
        id: Set(Uuid::now_v7()),
        email: Set(email.as_str().into()),
        display_name: Set(name.into()),
        password_hash: Set(password_hash),
        platform_admin: Set(platform_admin),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await?)
}

/// Creates a workspace with `owner` as its first owner.
pub async fn insert_workspace<C: ConnectionTrait>(
    db: &C,
    name: &str,
    owner: Uuid,
) -> Result<workspace::Model, ServiceError> {
    let base = keyward::account::slugify(name);
    let mut slug = base.clone();
    let mut n = 1;
    while workspace::Entity::find()
        .filter(workspace::Column::Slug.eq(slug.as_str()))
        .count(db)
        .await?
        > 0
    {
        n += 1;
        slug = format!("{base}-{n}");
    }
    let now = Utc::now();
    let ws = workspace::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(name.into()),
        slug: Set(slug),
        plan: Set(Plan::Free.as_str().into()),
        failure_policy: Set("fail_closed".into()),
        default_provider: Set(None),
        allowance: Set(true),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await?;
    membership::ActiveModel {
        workspace_id: Set(ws.id),
        user_id: Set(owner),
        role: Set(Role::Owner.as_str().into()),
        created_at: Set(now),
    }
    .insert(db)
    .await?;
    Ok(ws)
}

/// Marks first-run set-up as done. Returns whether this call closed it (false: already closed).
async fn close_setup_latch<C: ConnectionTrait>(db: &C) -> Result<bool, ServiceError> {
    let inserted = setting::Entity::insert(setting::ActiveModel {
        key: Set(SETUP_DONE.into()),
        value: Set(Utc::now().to_rfc3339()),
        updated_at: Set(Utc::now()),
    })
    .on_conflict_do_nothing()
    .exec(db)
    .await?;
    Ok(matches!(inserted, sea_orm::TryInsertResult::Inserted(_)))
}

/// A new account's checked fields and password hash, made before any transaction opens
/// (hashing takes a while and must never hold the database's write lock).
pub struct NewAccount {
    email: Email,
    name: String,
    hash: String,
}

impl NewAccount {
    /// Checks the fields, then hashes the password (waiting for a hashing slot).
    pub async fn prepare(
        guard: &SignInThrottle,
        email: &str,
        display_name: &str,
        password: &str,
    ) -> Result<Self, ServiceError> {
        let email = Email::parse(email).map_err(invalid)?;
        let name = parse_display_name(display_name).map_err(invalid)?;
        check_new_password(password).map_err(invalid)?;
        let hash = guard.hash(password).await?;
        Ok(NewAccount { email, name, hash })
    }

    pub fn email(&self) -> &str {
        self.email.as_str()
    }

    /// The display name and the password hash (kept while an address is being confirmed).
    pub(crate) fn into_parts(self) -> (String, String) {
        (self.name, self.hash)
    }

    /// Inserts the user row in the caller's transaction.
    pub async fn insert<C: ConnectionTrait>(
        self,
        db: &C,
        platform_admin: bool,
    ) -> Result<user::Model, ServiceError> {
        insert_user(db, &self.email, &self.name, self.hash, platform_admin).await
    }
}

/// Whether first-run set-up has been done (the latch, or any account).
async fn set_up_already(db: &DatabaseConnection) -> Result<bool, ServiceError> {
    Ok(setting::Entity::find_by_id(SETUP_DONE.to_string())
        .one(db)
        .await?
        .is_some()
        || !needs_setup(db).await?)
}

/// First run: the first account becomes platform admin and owner of a first workspace. Refused
/// once any account exists — checked before any hashing, and again under the write lock (a
/// settings row acts as the one-time latch, even under races).
pub async fn setup_first_user(
    db: &DatabaseConnection,
    guard: &SignInThrottle,
    email: &str,
    display_name: &str,
    password: &str,
    workspace_name: &str,
) -> Result<(user::Model, workspace::Model), ServiceError> {
    let already = || ServiceError::Conflict("this instance is already set up".into());
    if set_up_already(db).await? {
        return Err(already());
    }
    let ws_name = parse_workspace_name(workspace_name).map_err(invalid)?;
    let account = NewAccount::prepare(guard, email, display_name, password).await?;
    let txn = crate::db::begin_write(db).await?;
    if user::Entity::find().count(&txn).await? > 0 || !close_setup_latch(&txn).await? {
        return Err(already());
    }
    let user = account.insert(&txn, true).await?;
    let ws = insert_workspace(&txn, &ws_name, user.id).await?;
    setting::Entity::delete_by_id(SETUP_TOKEN.to_string())
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok((user, ws))
}

/// Makes a new one-time set-up token for a fresh instance and stores its hash (replacing any
/// earlier one). `None` once the instance is set up. The server prints the link at start.
pub async fn new_setup_token(
    db: &DatabaseConnection,
) -> Result<Option<Zeroizing<String>>, ServiceError> {
    if set_up_already(db).await? {
        return Ok(None);
    }
    let token = crypto::random_token().map_err(|e| ServiceError::Internal(e.to_string()))?;
    let now = Utc::now();
    setting::Entity::insert(setting::ActiveModel {
        key: Set(SETUP_TOKEN.into()),
        value: Set(crypto::token_hash(&token)),
        updated_at: Set(now),
    })
    .on_conflict(
        sea_orm::sea_query::OnConflict::column(setting::Column::Key)
            .update_columns([setting::Column::Value, setting::Column::UpdatedAt])
            .to_owned(),
    )
    .exec(db)
    .await?;
    Ok(Some(token))
}

/// What the set-up form carries besides the token.
pub struct SetupForm<'a> {
    pub email: &'a str,
    pub display_name: &'a str,
    pub password: &'a str,
    pub workspace_name: &'a str,
}

/// First run from the web: the set-up form must carry the token the server printed, so that an
/// instance reachable from the internet cannot be claimed by whoever finds it first. Checked
/// (and throttled) before any password work.
pub async fn setup_with_token(
    db: &DatabaseConnection,
    guard: &SignInThrottle,
    client: Option<IpAddr>,
    token: &str,
    form: SetupForm<'_>,
) -> Result<(user::Model, workspace::Model), ServiceError> {
    guard.check("setup", client)?;
    if set_up_already(db).await? {
        return Err(ServiceError::Conflict(
            "this instance is already set up".into(),
        ));
    }
    let stored = setting::Entity::find_by_id(SETUP_TOKEN.to_string())
        .one(db)
        .await?
        .map(|s| s.value);
    let given = crypto::token_hash(token.trim());
    let matches = stored.is_some_and(|h| {
        use subtle::ConstantTimeEq;
        bool::from(h.as_bytes().ct_eq(given.as_bytes()))
    });
    if !matches {
        return Err(ServiceError::Invalid(
            "the set-up link is not valid: open the link the server printed when it started \
             (restarting the server prints a new one)"
                .into(),
        ));
    }
    setup_first_user(
        db,
        guard,
        form.email,
        form.display_name,
        form.password,
        form.workspace_name,
    )
    .await
}

/// `keyward admin create`: a platform admin from the command line.
pub async fn create_platform_admin(
    db: &DatabaseConnection,
    email: &str,
    display_name: &str,
    password: &str,
) -> Result<user::Model, ServiceError> {
    let account =
        NewAccount::prepare(&SignInThrottle::new(1, 1), email, display_name, password).await?;
    let txn = crate::db::begin_write(db).await?;
    let user = account.insert(&txn, true).await?;
    close_setup_latch(&txn).await?;
    setting::Entity::delete_by_id(SETUP_TOKEN.to_string())
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(user)
}

/// Checks credentials (throttled) and opens a new session. Any session the browser already had
/// (`previous_token`) is ended: the session id always changes at sign-in.
pub async fn sign_in(
    db: &DatabaseConnection,
    throttle: &SignInThrottle,
    email: &str,
    password: &str,
    client: Option<IpAddr>,
    user_agent: Option<&str>,
    previous_token: Option<&str>,
) -> Result<NewSession, ServiceError> {
    let generic = || ServiceError::Invalid("the email or password is not correct".into());
    let email = Email::parse(email).map_err(|_| generic())?;
    throttle.check(email.as_str(), client)?;
    let found = user::Entity::find()
        .filter(user::Column::Email.eq(email.as_str()))
        .one(db)
        .await?;
    let Some(user) = found else {
        throttle.verify(password, dummy_hash().await).await?;
        return Err(generic());
    };
    if !throttle.verify(password, &user.password_hash).await? {
        return Err(generic());
    }
    if let Some(old) = previous_token {
        sign_out(db, old).await?;
    }
    open_session(db, &user, user_agent).await
}

/// Opens a session for `user` (after their credentials or a confirmation link were checked).
pub(crate) async fn open_session(
    db: &DatabaseConnection,
    user: &user::Model,
    user_agent: Option<&str>,
) -> Result<NewSession, ServiceError> {
    let token = crypto::random_token().map_err(|e| ServiceError::Internal(e.to_string()))?;
    let hash = crypto::token_hash(&token);
    let first_workspace = membership::Entity::find()
        .filter(membership::Column::UserId.eq(user.id))
        .one(db)
        .await?
        .map(|m| m.workspace_id);
    let now = Utc::now();
    session::ActiveModel {
        id_hash: Set(hash.clone()),
        user_id: Set(user.id),
        current_workspace_id: Set(first_workspace),
        created_at: Set(now),
        last_seen_at: Set(now),
        expires_at: Set(now + ABSOLUTE_TIMEOUT),
        user_agent: Set(user_agent.map(|ua| ua.chars().take(200).collect())),
    }
    .insert(db)
    .await?;
    Ok(NewSession {
        token,
        user: SessionUser {
            user_id: user.id,
            email: user.email.clone(),
            display_name: user.display_name.clone(),
            platform_admin: user.platform_admin,
            current_workspace: first_workspace,
            session_hash: hash,
        },
    })
}

fn expired(s: &session::Model, now: DateTime<Utc>) -> bool {
    now >= s.expires_at || now - s.last_seen_at >= IDLE_TIMEOUT
}

/// The user behind a session token, if the session exists and has not expired. Reads the user
/// afresh every time, so changes (and removals) apply on the very next request.
pub async fn authenticate(
    db: &DatabaseConnection,
    token: &str,
) -> Result<Option<SessionUser>, ServiceError> {
    let hash = crypto::token_hash(token);
    let Some(s) = session::Entity::find_by_id(hash.clone()).one(db).await? else {
        return Ok(None);
    };
    let now = Utc::now();
    if expired(&s, now) {
        session::Entity::delete_by_id(hash).exec(db).await?;
        return Ok(None);
    }
    let Some(user) = user::Entity::find_by_id(s.user_id).one(db).await? else {
        return Ok(None);
    };
    if now - s.last_seen_at >= TOUCH_EVERY {
        session::Entity::update_many()
            .col_expr(session::Column::LastSeenAt, Expr::value(now))
            .filter(session::Column::IdHash.eq(hash.as_str()))
            .exec(db)
            .await?;
    }
    Ok(Some(SessionUser {
        user_id: user.id,
        email: user.email,
        display_name: user.display_name,
        platform_admin: user.platform_admin,
        current_workspace: s.current_workspace_id,
        session_hash: hash,
    }))
}

pub async fn sign_out(db: &DatabaseConnection, token: &str) -> Result<(), ServiceError> {
    session::Entity::delete_by_id(crypto::token_hash(token))
        .exec(db)
        .await?;
    Ok(())
}

/// Ends every session of the user (optionally keeping the current one).
pub async fn sign_out_everywhere(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    keep_session_hash: Option<&str>,
) -> Result<u64, ServiceError> {
    let mut delete = session::Entity::delete_many().filter(session::Column::UserId.eq(user_id));
    if let Some(keep) = keep_session_hash {
        delete = delete.filter(session::Column::IdHash.ne(keep));
    }
    Ok(delete.exec(db).await?.rows_affected)
}

/// Changes a password after checking the current one (throttled per user); ends the user's
/// other sessions.
pub async fn change_password(
    db: &DatabaseConnection,
    guard: &SignInThrottle,
    who: &SessionUser,
    current: &str,
    new: &str,
) -> Result<(), ServiceError> {
    check_new_password(new).map_err(invalid)?;
    guard
        .changes
        .check(&who.user_id)
        .map_err(ServiceError::RateLimited)?;
    let user = user::Entity::find_by_id(who.user_id)
        .one(db)
        .await?
        .ok_or(ServiceError::Unauthorized)?;
    if !guard.verify(current, &user.password_hash).await? {
        return Err(ServiceError::Invalid(
            "the current password is not correct".into(),
        ));
    }
    let hash = guard.hash(new).await?;
    let txn = crate::db::begin_write(db).await?;
    let mut am: user::ActiveModel = user.into();
    am.password_hash = Set(hash);
    am.updated_at = Set(Utc::now());
    am.update(&txn).await?;
    sign_out_everywhere(&txn, who.user_id, Some(&who.session_hash)).await?;
    txn.commit().await?;
    Ok(())
}

/// The user's sessions, newest first: (is this one, created, last seen, user agent).
pub async fn list_sessions(
    db: &DatabaseConnection,
    who: &SessionUser,
) -> Result<Vec<(bool, session::Model)>, ServiceError> {
    use sea_orm::QueryOrder;
    let rows = session::Entity::find()
        .filter(session::Column::UserId.eq(who.user_id))
        .order_by_desc(session::Column::LastSeenAt)
        .all(db)
        .await?;
    let now = Utc::now();
    Ok(rows
        .into_iter()
        .filter(|s| !expired(s, now))
        .map(|s| (s.id_hash == who.session_hash, s))
        .collect())
}

/// Moves the session to another workspace the user belongs to.
pub async fn switch_workspace(
    db: &DatabaseConnection,
    who: &SessionUser,
    workspace_id: Uuid,
) -> Result<(), ServiceError> {
    let member = membership::Entity::find_by_id((workspace_id, who.user_id))
        .one(db)
        .await?;
    if member.is_none() && !who.platform_admin {
        return Err(ServiceError::NotFound);
    }
    if workspace::Entity::find_by_id(workspace_id)
        .one(db)
        .await?
        .is_none()
    {
        return Err(ServiceError::NotFound);
    }
    session::Entity::update_many()
        .col_expr(
            session::Column::CurrentWorkspaceId,
            Expr::value(workspace_id),
        )
        .filter(session::Column::IdHash.eq(who.session_hash.as_str()))
        .exec(db)
        .await?;
    Ok(())
}
