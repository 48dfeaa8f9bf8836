//! Spawning a real server on 127.0.0.1:0 over a fresh database of either kind.

use keyward_server::config::{DatabaseUrl, Settings};
use keyward_server::services::accounts::{self, NewSession, SignInThrottle};
use keyward_server::services::workspaces;
use keyward_server::startup;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio::sync::{OnceCell, oneshot};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Declares one test per backend: `both_backends!(name, async_fn_taking_backend);`
macro_rules! both_backends {
    ($name:ident, $body:path) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $body($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $body($crate::helpers::Backend::Postgres).await
            }
        }
    };
}
pub(crate) use both_backends;

/// The PostgreSQL server tests create their databases on.
pub fn pg_admin_url() -> String {
    std::env::var("KEYWARD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let server = base.rsplit_once('/').map(|(s, _)| s).unwrap_or(base);
    match query {
        Some(q) => format!("{server}/{db}?{q}"),
        None => format!("{server}/{db}"),
    }
}

static PG_SWEEP: OnceCell<()> = OnceCell::const_new();

/// Databases are named `kwtest_<unix secs>_<random>`; ones older than an hour are left-overs of
/// interrupted runs and are dropped once per test process.
async fn sweep_old_pg_databases(admin: &DatabaseConnection) {
    PG_SWEEP
        .get_or_init(|| async {
            let now = chrono::Utc::now().timestamp();
            let rows = admin
                .query_all_raw(Statement::from_string(
                    admin.get_database_backend(),
                    "SELECT datname FROM pg_database WHERE datname LIKE 'kwtest\\_%'",
                ))
                .await
                .expect("list test databases");
            for row in rows {
                let name: String = row.try_get("", "datname").unwrap();
                let ts = name
                    .split('_')
                    .nth(1)
                    .and_then(|t| t.parse::<i64>().ok())
                    .unwrap_or(0);
                if now - ts > 3600 {
                    let _ = admin
                        .execute_unprepared(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .await;
                }
            }
        })
        .await;
}

/// A fresh, empty database URL of the given kind.
pub async fn fresh_database(backend: Backend) -> (String, Option<PathBuf>) {
    match backend {
        Backend::Sqlite => {
            let dir = std::env::temp_dir().join(format!("kwtest-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).unwrap();
            let url = format!("sqlite://{}/keyward.db", dir.display());
            (url, Some(dir))
        }
        Backend::Postgres => {
            let admin_url = pg_admin_url();
            let admin = Database::connect(admin_url.as_str())
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL tests need a server: set KEYWARD_TEST_DATABASE_URL \
                     (tried the default 127.0.0.1:5432): {e}"
                    )
                });
            sweep_old_pg_databases(&admin).await;
            let name = format!(
                "kwtest_{}_{}",
                chrono::Utc::now().timestamp(),
                uuid::Uuid::new_v4().simple()
            );
            admin
                .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                .await
                .expect("create test database");
            admin.close().await.ok();
            (with_database(&admin_url, &name), None)
        }
    }
}

pub fn test_settings(database_url: &str) -> Settings {
    Settings {
        database_url: DatabaseUrl::new(database_url),
        bind: "127.0.0.1:0".parse().unwrap(),
        db_max_connections: 8,
        log_filter: "warn".into(),
        ..Settings::default()
    }
}

/// A migrated database with an open vault, for service-level tests.
pub struct TestVault {
    pub vault: keyward_server::vault::Vault,
    pub db: DatabaseConnection,
    /// This test's own cache invalidation (no other test sees its changes).
    pub changes: keyward_server::invalidation::Invalidation,
    pub url: String,
    pub master: keyward_server::vault::master_key::MasterKey,
    sqlite_dir: Option<PathBuf>,
}

impl Drop for TestVault {
    fn drop(&mut self) {
        if let Some(dir) = self.sqlite_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl TestVault {
    /// What the key lifecycle needs, with this test's gateway.
    pub fn key_deps<'a>(
        &'a self,
        gateway: &'a keyward_server::gateway::Gateway,
    ) -> keyward_server::services::keys::Deps<'a> {
        keyward_server::services::keys::Deps {
            db: &self.db,
            vault: &self.vault,
            gateway,
            changes: &self.changes,
        }
    }
}

pub async fn open_vault(backend: Backend) -> TestVault {
    let (url, sqlite_dir) = fresh_database(backend).await;
    let db = keyward_server::db::connect_url(&DatabaseUrl::new(url.as_str()), 8)
        .await
        .unwrap();
    keyward_server::db::migrate(&db).await.unwrap();
    let master = keyward_server::vault::master_key::MasterKey::generate().unwrap();
    let vault = keyward_server::vault::Vault::open(db.clone(), &master)
        .await
        .unwrap();
    TestVault {
        vault,
        db,
        changes: Default::default(),
        url,
        master,
        sqlite_dir,
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    /// The database this server uses (`sqlite://…` or `postgres://…`).
    pub database_url: String,
    pub client: reqwest::Client,
    pub db: DatabaseConnection,
    /// The server's state (tests flush the usage writer through it).
    pub state: keyward_server::state::AppState,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    sqlite_dir: Option<PathBuf>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Stops the server gracefully and waits for it to finish.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    /// Like [`Self::stop`], keeping the database (and its connection) for inspection.
    pub async fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.server.take() {
            handle.await.expect("server task");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(dir) = self.sqlite_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Starts a server on an ephemeral port over a fresh database.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Like [`spawn_app`], with settings adjusted first.
pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    keyward_server::telemetry::init(keyward_server::config::LogFormat::Text, "warn");
    let (url, sqlite_dir) = fresh_database(backend).await;
    let database_url = url.clone();
    let mut settings = test_settings(&url);
    adjust(&mut settings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let master = keyward_server::vault::master_key::MasterKey::generate().unwrap();
    let state = startup::build_state(settings, &master)
        .await
        .expect("build state");
    let db = state.db.clone();
    let app_state = state.clone();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        startup::run(listener, state, async {
            let _ = rx.await;
        })
        .await
        .expect("serve");
    });
    TestApp {
        addr,
        database_url,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .unwrap(),
        db,
        state: app_state,
        shutdown: Some(tx),
        server: Some(server),
        sqlite_dir,
    }
}

/// Stores a credential row the way key management does: id first, then encrypt, then insert.
pub async fn store_credential(
    t: &TestVault,
    ctx: &keyward_server::vault::CredentialContext,
    key: &str,
) -> keyward_server::entities::credential::Model {
    let secret = secrecy::SecretString::from(key);
    let (blob, key_id) = t.vault.encrypt(ctx, &secret).unwrap();
    insert_sealed(&t.db, ctx, blob, key_id, key).await
}

/// Inserts a credential row holding an already encrypted key.
pub async fn insert_sealed(
    db: &impl sea_orm::ConnectionTrait,
    ctx: &keyward_server::vault::CredentialContext,
    blob: Vec<u8>,
    key_id: u32,
    key: &str,
) -> keyward_server::entities::credential::Model {
    use sea_orm::{ActiveModelTrait, Set};
    let now = chrono::Utc::now();
    keyward_server::entities::credential::ActiveModel {
        id: Set(ctx.credential_id),
        workspace_id: Set(ctx.workspace_id),
        scope: Set(ctx.scope.as_str().into()),
        owner_id: Set(ctx.owner_id),
        provider: Set(ctx.provider.clone()),
        base_url: Set(ctx.base_url.clone()),
        key_id: Set(i32::try_from(key_id).unwrap()),
        ciphertext: Set(blob),
        hint: Set(keyward::credential::mask(key)),
        status: Set("active".into()),
        default_model: Set(None),
        created_by: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        last_used_at: Set(None),
        last_tested_at: Set(None),
        last_error_class: Set(None),
        last_error_message: Set(None),
        last_error_at: Set(None),
    }
    .insert(db)
    .await
    .unwrap()
}

/// Signs `email` in with `password` (a fresh throttle): the new session.
pub async fn signed_in(db: &DatabaseConnection, email: &str, password: &str) -> NewSession {
    let throttle = SignInThrottle::new(100, 100);
    accounts::sign_in(db, &throttle, email, password, None, None, None)
        .await
        .unwrap()
}

/// Invites `email` into `workspace` as `role` (by the operator), signs the invitee up with
/// `password` and signs them in: their session.
pub async fn invited(
    db: &DatabaseConnection,
    workspace: uuid::Uuid,
    email: &str,
    role: keyward::policy::Role,
    password: &str,
) -> NewSession {
    let by = keyward_server::services::audit::By::cli();
    let (_, token) = workspaces::invite(db, &by, workspace, email, role)
        .await
        .unwrap();
    let throttle = SignInThrottle::new(100, 100);
    workspaces::sign_up_with_invitation(db, &throttle, None, &token, "Invitee", password)
        .await
        .unwrap();
    signed_in(db, email, password).await
}

/// Sets the instance up and returns a session cookie (`name=token`) for its owner.
pub async fn owner_cookie(app: &TestApp) -> String {
    let throttle = SignInThrottle::new(100, 100);
    let pw = "correct horse battery";
    accounts::setup_first_user(&app.db, &throttle, "owner@example.com", "Owner", pw, "Acme")
        .await
        .unwrap();
    let s = signed_in(&app.db, "owner@example.com", pw).await;
    format!("{}={}", keyward::http::SESSION_COOKIE, s.token.as_str())
}

/// The repository's root (for files the tests read or run).
pub fn repo_root() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The bin directory of the pinned Python virtualenv `name` (`end2end/venv.sh NAME`, created on
/// first use).
pub fn venv_bin(name: &str) -> String {
    let venv = std::process::Command::new(repo_root().join("end2end/venv.sh"))
        .arg(name)
        .output()
        .expect("end2end/venv.sh runs");
    assert!(
        venv.status.success(),
        "creating the {name} virtualenv failed: {}",
        String::from_utf8_lossy(&venv.stderr)
    );
    String::from_utf8(venv.stdout).unwrap().trim().to_string()
}

/// Polls `check` (every 20 ms) until it gives `Some(value)`, and returns that value; panics with
/// `what` if `within` passes first. The one way the tests wait for background work (the usage
/// writer, a provider's stream closing, a mail arriving).
pub async fn eventually<T, F, Fut>(within: std::time::Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not within {within:?}: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
