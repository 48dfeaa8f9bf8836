//! Key management at the service level and over HTTP, on SQLite and PostgreSQL, against the
//! in-repo mock provider: add, test (saved and unsaved), replace (refused when the provider
//! rejects the new key), disable/enable, delete, BYOK switches and plans, the failure policy,
//! the audit log (and that the database refuses to edit it), permissions, and a canary sweep.

use crate::helpers::{
    Backend, TestVault, both_backends, invited, open_vault, signed_in, spawn_app_with,
};
use base64::Engine;
use keyward::dto::AuditFilter;
use keyward::keys::{ErrorClass, FailurePolicy, KeyState};
use keyward::policy::{Plan, Role};
use keyward_server::entities::{audit_event, credential};
use keyward_server::error::ServiceError;
use keyward_server::gateway::Gateway;
use keyward_server::services::accounts;
use keyward_server::services::audit::{self, By};
use keyward_server::services::catalogue::{self, ProviderChange};
use keyward_server::services::keys::{self, NewKey, Scope};
use keyward_server::services::{routing, workspaces};
use keyward_server::vault;
use sea_orm::{ConnectionTrait, EntityTrait, PaginatorTrait};
use secrecy::{ExposeSecret, SecretString};
use std::net::SocketAddr;
use uuid::Uuid;

/// Starts the mock provider on an ephemeral port.
pub async fn spawn_mock() -> SocketAddr {
    spawn_mock_with(Default::default()).await
}

pub async fn spawn_mock_with(config: keyward_server::mock_provider::MockConfig) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(keyward_server::mock_provider::serve_with(listener, config));
    addr
}

async fn mock_requests(addr: SocketAddr) -> u64 {
    let v: serde_json::Value = reqwest::get(format!("http://{addr}/__mock/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["authenticated_requests"].as_u64().unwrap()
}

struct World {
    t: TestVault,
    gw: Gateway,
    mock: SocketAddr,
    owner: By,
    ws: Uuid,
}

/// An instance whose first user (platform admin and owner of a pro workspace) routes OpenAI and
/// Anthropic to the mock provider.
async fn world(backend: Backend) -> World {
    let t = open_vault(backend).await;
    let mock = spawn_mock().await;
    let gw = Gateway::new(vec![("127.0.0.1".into(), mock.port())]).unwrap();
    let (user, ws) = accounts::setup_first_user(
        &t.db,
        &keyward_server::services::accounts::SignInThrottle::new(100, 100),
        "owner@example.com",
        "Olive",
        "correct horse battery",
        "Acme",
    )
    .await
    .unwrap();
    let owner = By {
        id: Some(user.id),
        email: user.email.clone(),
    };
    workspaces::set_plan(&t.db, &t.changes, &By::cli(), ws.id, Plan::Pro)
        .await
        .unwrap();
    for (p, url) in [
        ("openai", format!("http://{mock}/v1")),
        ("anthropic", format!("http://{mock}")),
    ] {
        catalogue::update_provider(
            &t.db,
            &t.changes,
            &gw,
            &owner,
            p,
            ProviderChange {
                base_url: url,
                default_model: String::new(),
                byok_enabled: true,
            },
        )
        .await
        .unwrap();
    }
    World {
        t,
        gw,
        mock,
        owner,
        ws: ws.id,
    }
}

fn new_key(provider: &str, key: &str) -> NewKey {
    NewKey {
        provider: provider.into(),
        key: SecretString::from(key),
        default_model: String::new(),
        base_url: String::new(),
    }
}

const GOOD: &str = "sk-proj-good0000000000000000abcd";
const NEXT: &str = "sk-proj-next0000000000000000wxyz";
const REJECTED: &str = "sk-proj-invalid000000000000zzzz";

async fn decrypt(t: &TestVault, id: Uuid) -> String {
    let row = credential::Entity::find_by_id(id)
        .one(&t.db)
        .await
        .unwrap()
        .unwrap();
    let ctx = vault::context_of(&row).unwrap();
    t.vault
        .decrypt(&ctx, &row.ciphertext)
        .await
        .unwrap()
        .expose_secret()
        .to_string()
}

async fn audit_actions(t: &TestVault, ws: Option<Uuid>) -> Vec<String> {
    let page = audit::list(&t.db, ws, &AuditFilter::default())
        .await
        .unwrap();
    page.entries.into_iter().rev().map(|e| e.action).collect()
}

async fn key_lifecycle(backend: Backend) {
    let w = world(backend).await;
    let (db, scope) = (&w.t.db, Scope::Workspace(w.ws));

    // A misshapen key is refused with a message that does not repeat it; nothing is stored.
    let bad = "gsk_thisisagroqkey000000000000";
    let err = keys::add(w.t.key_deps(&w.gw), &w.owner, scope, new_key("openai", bad))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ServiceError::Invalid(_)), "{msg}");
    assert!(
        msg.contains("Groq") && !msg.contains("thisisagroq"),
        "{msg}"
    );
    assert_eq!(credential::Entity::find().count(db).await.unwrap(), 0);

    // Test before saving: the mock accepts the good key and rejects the other.
    let ok = keys::test_unsaved(db, &w.gw, "openai", &SecretString::from(GOOD), "")
        .await
        .unwrap();
    assert!(ok.ok, "{ok:?}");
    let no = keys::test_unsaved(db, &w.gw, "openai", &SecretString::from(REJECTED), "")
        .await
        .unwrap();
    assert_eq!(
        (no.ok, no.class),
        (false, Some(ErrorClass::InvalidKey)),
        "{no:?}"
    );
    let quota = keys::test_unsaved(
        db,
        &w.gw,
        "anthropic",
        &SecretString::from("sk-ant-noquota0000000000000000"),
        "",
    )
    .await
    .unwrap();
    assert_eq!(quota.class, Some(ErrorClass::NoQuota), "{quota:?}");
    assert_eq!(
        credential::Entity::find().count(db).await.unwrap(),
        0,
        "tests store nothing"
    );

    // Add: masked hint, active, encrypted, one per provider per scope.
    let view = keys::add(
        w.t.key_deps(&w.gw),
        &w.owner,
        scope,
        new_key("openai", GOOD),
    )
    .await
    .unwrap();
    assert_eq!(view.hint, "sk-proj-…abcd");
    assert_eq!(view.state, KeyState::Active);
    let id = Uuid::parse_str(&view.id).unwrap();
    assert_eq!(decrypt(&w.t, id).await, GOOD);
    let row = credential::Entity::find_by_id(id)
        .one(db)
        .await
        .unwrap()
        .unwrap();
    assert!(!String::from_utf8_lossy(&row.ciphertext).contains("good0000"));
    assert_eq!(row.base_url, format!("http://{}/v1", w.mock));
    let dup = keys::add(
        w.t.key_deps(&w.gw),
        &w.owner,
        scope,
        new_key("openai", NEXT),
    )
    .await;
    assert!(matches!(dup, Err(ServiceError::Conflict(_))), "{dup:?}");

    // Test the saved key: recorded on the row.
    let tested = keys::test_saved(w.t.key_deps(&w.gw), &w.owner, scope, id)
        .await
        .unwrap();
    assert!(tested.ok);
    let page = keys::page(db, scope, true).await.unwrap();
    let row_view = page
        .rows
        .iter()
        .find(|r| r.provider.id == "openai")
        .unwrap();
    let k = row_view.key.as_ref().unwrap();
    assert!(k.last_tested_at.is_some() && k.last_error.is_none());
    assert_eq!(k.created_by.as_deref(), Some("owner@example.com"));

    // Replacing with a key the provider rejects changes nothing; the old key stays.
    let before = credential::Entity::find_by_id(id)
        .one(db)
        .await
        .unwrap()
        .unwrap();
    let refused = keys::replace(
        w.t.key_deps(&w.gw),
        &w.owner,
        scope,
        id,
        new_key("openai", REJECTED),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        refused.contains("rejected the key") && refused.contains("old key stays"),
        "{refused}"
    );
    assert!(!refused.contains("invalid000"), "{refused}");
    let after = credential::Entity::find_by_id(id)
        .one(db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(before.ciphertext, after.ciphertext);
    assert_eq!(after.hint, "sk-proj-…abcd");
    assert_eq!(decrypt(&w.t, id).await, GOOD);

    // A good replacement swaps the key in place (same row, new ciphertext and hint).
    let swapped = keys::replace(
        w.t.key_deps(&w.gw),
        &w.owner,
        scope,
        id,
        new_key("openai", NEXT),
    )
    .await
    .unwrap();
    assert!(swapped.ok);
    assert_eq!(decrypt(&w.t, id).await, NEXT);
    let after = credential::Entity::find_by_id(id)
        .one(db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.hint, "sk-proj-…wxyz");

    // Disable / enable.
    keys::set_enabled(db, &w.t.changes, &w.owner, scope, id, false)
        .await
        .unwrap();
    let state = |p: &keyward::dto::KeysPage| {
        p.rows
            .iter()
            .find(|r| r.provider.id == "openai")
            .and_then(|r| r.key.as_ref())
            .map(|k| k.state)
    };
    // The OpenAI key's state as its page shows it.
    let shown = async || state(&keys::page(db, scope, true).await.unwrap());
    // The platform turns BYOK on or off for OpenAI.
    let byok = async |enabled: bool| {
        let change = ProviderChange {
            base_url: format!("http://{}/v1", w.mock),
            default_model: String::new(),
            byok_enabled: enabled,
        };
        catalogue::update_provider(db, &w.t.changes, &w.gw, &w.owner, "openai", change)
            .await
            .unwrap();
    };
    assert_eq!(shown().await, Some(KeyState::Disabled));
    keys::set_enabled(db, &w.t.changes, &w.owner, scope, id, true)
        .await
        .unwrap();
    assert_eq!(shown().await, Some(KeyState::Active));

    // The platform turns BYOK off for OpenAI: the key is kept and shows inactive.
    byok(false).await;
    assert_eq!(shown().await, Some(KeyState::InactiveByok));
    byok(true).await;
    // ... and a plan without BYOK does the same.
    workspaces::set_plan(db, &w.t.changes, &By::cli(), w.ws, Plan::Free)
        .await
        .unwrap();
    let page = keys::page(db, scope, true).await.unwrap();
    assert!(!page.plan_allows_byok);
    assert_eq!(state(&page), Some(KeyState::InactiveByok));
    catalogue::set_byok_plans(db, &w.t.changes, &w.owner, &[Plan::Free, Plan::Pro])
        .await
        .unwrap();
    assert_eq!(shown().await, Some(KeyState::Active));

    // The failure policy.
    routing::set_failure_policy(
        db,
        &w.t.changes,
        &w.owner,
        w.ws,
        FailurePolicy::FallbackToPlatform,
    )
    .await
    .unwrap();
    assert_eq!(
        keys::page(db, scope, true).await.unwrap().failure_policy,
        FailurePolicy::FallbackToPlatform
    );

    // Delete: the row (and ciphertext) is gone; the audit entry keeps the hint.
    keys::delete(db, &w.t.changes, &w.owner, scope, id)
        .await
        .unwrap();
    assert!(
        credential::Entity::find_by_id(id)
            .one(db)
            .await
            .unwrap()
            .is_none()
    );

    assert_eq!(
        audit_actions(&w.t, Some(w.ws)).await,
        [
            // The world's own move to Pro, then this test's changes (plans audit too).
            "plan.changed",
            "key.created",
            "key.tested",
            "key.replace_refused",
            "key.replaced",
            "key.disabled",
            "key.enabled",
            "plan.changed",
            "policy.failure_changed",
            "key.deleted"
        ]
    );
    assert_eq!(
        audit_actions(&w.t, None).await,
        [
            "provider.updated",
            "provider.updated",
            "byok.disabled",
            "byok.enabled",
            "byok.plans_changed"
        ]
    );
    let deleted = audit::list(
        db,
        Some(w.ws),
        &AuditFilter {
            action: Some("key.deleted".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(deleted.entries.len(), 1);
    assert_eq!(deleted.entries[0].hint.as_deref(), Some("sk-proj-…wxyz"));
    assert_eq!(deleted.entries[0].provider.as_deref(), Some("openai"));
    // Filters by actor, provider and date.
    let by_provider = audit::list(
        db,
        Some(w.ws),
        &AuditFilter {
            provider: Some("anthropic".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(by_provider.entries.is_empty());
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let dated = audit::list(
        db,
        Some(w.ws),
        &AuditFilter {
            actor: Some("OWNER@".into()),
            from: Some(today.clone()),
            to: Some(today),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(dated.entries.len(), 8);
    let bad_date = audit::list(
        db,
        Some(w.ws),
        &AuditFilter {
            from: Some("yesterday".into()),
            ..Default::default()
        },
    )
    .await;
    assert!(matches!(bad_date, Err(ServiceError::Invalid(_))));

    // No key reached the audit log.
    let all = format!("{:?}", audit_event::Entity::find().all(db).await.unwrap());
    for secret in [GOOD, NEXT, REJECTED] {
        assert!(!all.contains(&secret[8..20]), "audit leaked a key");
    }

    // The database itself refuses to edit or delete audit entries.
    for sql in ["UPDATE audit_log SET action = 'x'", "DELETE FROM audit_log"] {
        let r = db.execute_unprepared(sql).await;
        assert!(r.is_err(), "{sql} must fail");
    }
    assert_eq!(audit_event::Entity::find().count(db).await.unwrap(), 15);
}
both_backends!(key_lifecycle, super::key_lifecycle);

/// Scopes are separate: another tenant's credential id answers 404, platform keys are not a
/// workspace's, chatbot keys are bound to their chatbot, and Custom base URLs are SSRF-checked.
async fn scopes_and_custom_urls(backend: Backend) {
    let w = world(backend).await;
    let db = &w.t.db;
    let ws = Scope::Workspace(w.ws);
    let other = Scope::Workspace(Uuid::new_v4());
    let view = keys::add(w.t.key_deps(&w.gw), &w.owner, ws, new_key("openai", GOOD))
        .await
        .unwrap();
    let id = Uuid::parse_str(&view.id).unwrap();
    for scope in [other, Scope::Platform] {
        assert!(matches!(
            keys::delete(db, &w.t.changes, &w.owner, scope, id).await,
            Err(ServiceError::NotFound)
        ));
        assert!(matches!(
            keys::set_enabled(db, &w.t.changes, &w.owner, scope, id, false).await,
            Err(ServiceError::NotFound)
        ));
    }
    assert!(
        credential::Entity::find_by_id(id)
            .one(db)
            .await
            .unwrap()
            .is_some()
    );

    // The platform and a chatbot may each hold their own OpenAI key beside the workspace's.
    let p = keys::add(
        w.t.key_deps(&w.gw),
        &w.owner,
        Scope::Platform,
        new_key("openai", NEXT),
    )
    .await
    .unwrap();
    let bot = Scope::Chatbot {
        workspace: w.ws,
        chatbot: Uuid::new_v4(),
    };
    let c = keys::add(
        w.t.key_deps(&w.gw),
        &w.owner,
        bot,
        new_key("openai", "sk-chatbot-key-000000000000beef"),
    )
    .await
    .unwrap();
    let platform_page = keys::page(db, Scope::Platform, true).await.unwrap();
    let pk = platform_page
        .rows
        .iter()
        .find(|r| r.provider.id == "openai")
        .unwrap();
    assert_eq!(pk.key.as_ref().unwrap().id, p.id);
    assert_eq!(
        decrypt(&w.t, Uuid::parse_str(&c.id).unwrap()).await,
        "sk-chatbot-key-000000000000beef"
    );
    let ws_page = keys::page(db, ws, true).await.unwrap();
    let wk = ws_page
        .rows
        .iter()
        .find(|r| r.provider.id == "openai")
        .unwrap();
    assert_eq!(
        wk.key.as_ref().unwrap().id,
        view.id,
        "each scope sees its own key"
    );

    // Custom: a base URL is required and SSRF-checked; the mock (allowlisted) is accepted.
    let mut custom = new_key("custom", "any-custom-key-0000000000001234");
    let err = keys::add(w.t.key_deps(&w.gw), &w.owner, ws, custom)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("base URL"), "{err}");
    for url in [
        "http://example.com/v1",
        "https://169.254.169.254/latest",
        "https://[::ffff:a9fe:a9fe]/v1",
        "https://user:pw@example.com/v1",
        "https://127.1:1/v1",
    ] {
        let before = mock_requests(w.mock).await;
        custom = new_key("custom", "any-custom-key-0000000000001234");
        custom.base_url = url.into();
        let err = keys::add(w.t.key_deps(&w.gw), &w.owner, ws, custom)
            .await
            .unwrap_err();
        assert!(matches!(err, ServiceError::Invalid(_)), "{url}: {err}");
        let tested = keys::test_unsaved(
            db,
            &w.gw,
            "custom",
            &SecretString::from("any-custom-key-0000000000001234"),
            url,
        )
        .await;
        assert!(tested.is_err(), "{url}");
        assert_eq!(
            mock_requests(w.mock).await,
            before,
            "nothing was sent for {url}"
        );
    }
    custom = new_key("custom", "any-custom-key-0000000000001234");
    custom.base_url = format!("http://127.0.0.1:{}/v1/", w.mock.port());
    let saved = keys::add(w.t.key_deps(&w.gw), &w.owner, ws, custom)
        .await
        .unwrap();
    assert_eq!(
        saved.base_url,
        Some(format!("http://127.0.0.1:{}/v1", w.mock.port()))
    );
    let cid = Uuid::parse_str(&saved.id).unwrap();
    assert!(
        keys::test_saved(w.t.key_deps(&w.gw), &w.owner, ws, cid)
            .await
            .unwrap()
            .ok
    );
    // Moving a Custom key to another URL needs the key again: replace carries both.
    let mut moved = new_key("custom", "any-custom-key-0000000000005678");
    moved.base_url = format!("http://localhost:{}/v1", w.mock.port());
    let err = keys::replace(w.t.key_deps(&w.gw), &w.owner, ws, cid, moved)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ServiceError::Invalid(ref m) if m.contains("https")),
        "localhost is not allowlisted: {err}"
    );
}
both_backends!(scopes_and_custom_urls, super::scopes_and_custom_urls);

/// Only owners manage keys; every role sees them. Checked through the one guard.
async fn only_owners_manage_keys(backend: Backend) {
    use keyward::policy::Action;
    use keyward_server::auth::authorize;
    let w = world(backend).await;
    let db = &w.t.db;
    for role in Role::ALL {
        let pw = "correct horse battery";
        let who = if role == Role::Owner {
            signed_in(db, "owner@example.com", pw).await.user
        } else {
            invited(db, w.ws, &format!("{role}@example.com"), role, pw)
                .await
                .user
        };
        let view = authorize(db, Some(&who), w.ws, Action::ViewKeys).await;
        assert!(view.is_ok(), "{role} sees keys");
        let manage = authorize(db, Some(&who), w.ws, Action::ManageKeys).await;
        assert_eq!(manage.is_ok(), role == Role::Owner, "{role}");
        if role != Role::Owner {
            assert!(matches!(manage, Err(ServiceError::Forbidden)));
        }
    }
}
both_backends!(only_owners_manage_keys, super::only_owners_manage_keys);

/// A running server (allowlisting a mock provider) whose owner set the instance up, with a
/// business-plan workspace and a member (Mia), and a session cookie for each.
pub(crate) struct HttpWorld {
    pub mock: SocketAddr,
    pub app: crate::helpers::TestApp,
    pub owner: String,
    pub member: String,
    pub member_id: Uuid,
    pub ws: keyward_server::entities::workspace::Model,
}

async fn http_world(backend: Backend) -> HttpWorld {
    http_world_with(backend, Default::default(), |_| {}).await
}

/// An instance on a fresh database whose first user owns a business workspace with a member
/// (Mia), plus a mock provider (configured) on the private-upstream allowlist.
pub(crate) async fn http_world_with(
    backend: Backend,
    mock_config: keyward_server::mock_provider::MockConfig,
    adjust: impl FnOnce(&mut keyward_server::config::Settings),
) -> HttpWorld {
    let mock = spawn_mock_with(mock_config).await;
    let app = spawn_app_with(backend, |s| {
        s.allowed_private_upstreams = format!("127.0.0.1:{}", mock.port());
        adjust(s);
    })
    .await;
    let owner = crate::helpers::owner_cookie(&app).await;
    let db = &app.db;
    let ws = keyward_server::entities::workspace::Entity::find()
        .one(db)
        .await
        .unwrap()
        .unwrap();
    workspaces::set_plan(db, &app.state.changes, &By::cli(), ws.id, Plan::Business)
        .await
        .unwrap();
    let mia = invited(
        db,
        ws.id,
        "mia@example.com",
        Role::Member,
        "another good passphrase",
    )
    .await;
    HttpWorld {
        mock,
        member: format!("{}={}", keyward::http::SESSION_COOKIE, mia.token.as_str()),
        member_id: mia.user.user_id,
        owner,
        ws,
        app,
    }
}

fn canary_forms(canary: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut forms = vec![
        canary.to_string(),
        b64.encode(canary),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(canary),
        hex::encode(canary),
    ];
    let chars: Vec<char> = canary.chars().collect();
    for w in chars.windows(12) {
        forms.push(w.iter().collect());
    }
    forms
}

fn assert_no_canary(haystack: &str, canary: &str, place: &str) {
    for form in canary_forms(canary) {
        assert!(
            !haystack.contains(&form),
            "{place} contains the canary ({form})"
        );
    }
}

/// The canary sweep over HTTP: a scripted scenario through the real server functions and pages
/// (owner and a read-only member), then every response body and header, the audit log, the
/// `Debug` of the DTOs, and the database file (SQLite) or dump (PostgreSQL) are searched for the
/// key in every spelling. The member's mutations are refused and change nothing.
async fn canary_sweep_over_http(backend: Backend) {
    use keyward_app::api::{
        AddKey, DeleteKey, GetAuditLog, GetKeys, ReplaceKey, SetKeyEnabled, TestNewKey,
        TestSavedKey, UpdateProvider,
    };
    use leptos::server_fn::ServerFn;

    let HttpWorld {
        mock,
        app,
        owner: cookie,
        member,
        member_id,
        ws,
    } = http_world(backend).await;
    let db = &app.db;

    let random = Uuid::new_v4().simple().to_string();
    let canary = format!("sk-proj-canary{}", &random[..24]);
    let rejected = format!("sk-proj-invalid{}", &random[8..30]);
    let replacement = format!("sk-proj-second{}", &random[4..28]);
    let w = ws.id.to_string();
    let mut seen = String::new();

    let call = |path: &'static str, form: Vec<(&'static str, String)>, who: String| {
        let req = app
            .client
            .post(app.url(path))
            .header("cookie", who)
            .header(keyward::http::CSRF_HEADER, "1")
            .form(&form);
        async move {
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            let headers = format!("{:?}", res.headers());
            let body = res.text().await.unwrap();
            (status, format!("{headers}\n{body}"))
        }
    };
    let base = format!("http://127.0.0.1:{}/v1", mock.port());
    let (s, out) = call(
        UpdateProvider::PATH,
        vec![
            ("provider", "openai".into()),
            ("base_url", base.clone()),
            ("default_model", String::new()),
            ("byok_enabled", "true".into()),
        ],
        cookie.clone(),
    )
    .await;
    assert_eq!(s, 200, "{out}");
    let key_form = |key: &str| {
        vec![
            ("scope", w.clone()),
            ("provider", "openai".to_string()),
            ("key", key.to_string()),
            ("default_model", String::new()),
            ("base_url", String::new()),
        ]
    };
    let (s, out) = call(TestNewKey::PATH, key_form(&canary), cookie.clone()).await;
    assert_eq!(s, 200, "{out}");
    assert!(out.contains("\"ok\":true"), "{out}");
    seen.push_str(&out);
    // The member cannot add, test or delete.
    let (s, out) = call(AddKey::PATH, key_form(&canary), member.clone()).await;
    assert_ne!(s, 200);
    assert!(out.contains("Forbidden"), "{out}");
    seen.push_str(&out);
    assert_eq!(credential::Entity::find().count(db).await.unwrap(), 0);
    let (s, out) = call(AddKey::PATH, key_form(&canary), cookie.clone()).await;
    assert_eq!(s, 200, "{out}");
    assert!(out.contains("sk-proj-…"), "{out}");
    seen.push_str(&out);
    let key_id = credential::Entity::find()
        .one(db)
        .await
        .unwrap()
        .unwrap()
        .id
        .to_string();
    let id_form = || vec![("scope", w.clone()), ("key_id", key_id.clone())];
    for who in [member.clone(), cookie.clone()] {
        let (_, out) = call(TestSavedKey::PATH, id_form(), who).await;
        seen.push_str(&out);
    }
    let (s, out) = call(DeleteKey::PATH, id_form(), member.clone()).await;
    assert_ne!(s, 200, "{out}");
    seen.push_str(&out);
    let mut replace = key_form(&rejected);
    replace.push(("key_id", key_id.clone()));
    let (s, out) = call(ReplaceKey::PATH, replace, cookie.clone()).await;
    assert_ne!(s, 200, "a rejected replacement is refused: {out}");
    assert!(out.contains("old key stays"), "{out}");
    seen.push_str(&out);
    let still = credential::Entity::find().one(db).await.unwrap().unwrap();
    assert_eq!(
        still.hint,
        format!("sk-proj-…{}", &canary[canary.len() - 4..])
    );
    let mut replace = key_form(&replacement);
    replace.push(("key_id", key_id.clone()));
    let (s, out) = call(ReplaceKey::PATH, replace, cookie.clone()).await;
    assert_eq!(s, 200, "{out}");
    seen.push_str(&out);
    for enabled in ["false", "true"] {
        let mut f = id_form();
        f.push(("enabled", enabled.into()));
        let (s, out) = call(SetKeyEnabled::PATH, f, cookie.clone()).await;
        assert_eq!(s, 200, "{out}");
    }
    for who in [cookie.clone(), member.clone()] {
        let (s, out) = call(GetKeys::PATH, vec![("scope", w.clone())], who.clone()).await;
        assert_eq!(s, 200, "{out}");
        seen.push_str(&out);
        let (s, out) = call(
            GetAuditLog::PATH,
            vec![
                ("workspace", w.clone()),
                ("actor", String::new()),
                ("action", String::new()),
                ("provider", String::new()),
                ("from", String::new()),
                ("to", String::new()),
            ],
            who.clone(),
        )
        .await;
        assert_eq!(s, 200, "{out}");
        assert!(out.contains("key.replaced"), "{out}");
        seen.push_str(&out);
        for page in ["/keys", "/audit", "/admin/keys", "/"] {
            let res = app
                .client
                .get(app.url(page))
                .header("cookie", who.clone())
                .send()
                .await
                .unwrap();
            seen.push_str(&format!("{:?}", res.headers()));
            seen.push_str(&res.text().await.unwrap());
        }
    }
    assert!(seen.contains("sk-proj-…"), "the pages show the hint");
    let (s, out) = call(DeleteKey::PATH, id_form(), cookie.clone()).await;
    assert_eq!(s, 200, "{out}");
    seen.push_str(&out);
    // Member changes made through the server functions are audited too.
    let (s, out) = call(
        keyward_app::api::InviteMember::PATH,
        vec![
            ("workspace_id", w.clone()),
            ("email", "lee@example.com".into()),
            ("role", "support".into()),
        ],
        cookie.clone(),
    )
    .await;
    assert_eq!(s, 200, "{out}");
    let mia_id = member_id.to_string();
    let (s, out) = call(
        keyward_app::api::ChangeMemberRole::PATH,
        vec![
            ("workspace_id", w.clone()),
            ("user_id", mia_id),
            ("role", "support".into()),
        ],
        cookie.clone(),
    )
    .await;
    assert_eq!(s, 200, "{out}");
    let members = audit::list(
        db,
        Some(ws.id),
        &AuditFilter {
            action: Some("member.".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let details: Vec<String> = members
        .entries
        .iter()
        .map(|e| format!("{} {}", e.action, e.detail.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        details,
        [
            "member.role_changed mia@example.com is now support",
            "member.invited lee@example.com invited as support",
            // The world's setup: Mia was invited and joined (services audit members too).
            "member.joined mia@example.com",
            "member.invited mia@example.com invited as member"
        ]
    );
    let debug = format!(
        "{:?}{:?}",
        keys::page(db, Scope::Workspace(ws.id), true).await.unwrap(),
        audit_event::Entity::find().all(db).await.unwrap()
    );
    for secret in [&canary, &rejected, &replacement] {
        assert_no_canary(&seen, secret, "an HTTP response");
        assert_no_canary(&debug, secret, "a DTO or the audit log");
    }
    // The database at rest: the SQLite file and its write-ahead log, or a PostgreSQL dump.
    let at_rest = match backend {
        Backend::Sqlite => {
            let path = app.database_url.trim_start_matches("sqlite://").to_string();
            let mut bytes = std::fs::read(&path).unwrap();
            bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Backend::Postgres => {
            let out = std::process::Command::new("pg_dump")
                .arg("--no-owner")
                .arg(&app.database_url)
                .output()
                .expect("pg_dump");
            assert!(out.status.success());
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    assert!(
        at_rest.contains("sk-proj-…"),
        "the dump is readable (hints are there)"
    );
    for secret in [&canary, &rejected, &replacement] {
        assert_no_canary(&at_rest, secret, "the database");
    }
    app.stop().await;
}
both_backends!(canary_sweep_over_http, super::canary_sweep_over_http);

/// Chatbots and their own keys through the server functions: owners create chatbots and manage
/// their keys; a member may not; the chatbot's key is its own (not the workspace's); another
/// workspace's chatbot id answers 404; deleting a chatbot purges its keys.
async fn chatbot_keys_over_http(backend: Backend) {
    use keyward_app::api::{AddKey, CreateChatbot, DeleteChatbot, GetChatbots, GetKeys};
    use leptos::server_fn::ServerFn;

    let HttpWorld {
        mock,
        app,
        owner: cookie,
        member,
        member_id: _,
        ws,
    } = http_world(backend).await;
    let db = &app.db;
    let w = ws.id.to_string();
    let post = |path: &'static str, form: Vec<(&'static str, String)>, who: &str| {
        let req = app
            .client
            .post(app.url(path))
            .header("cookie", who.to_string())
            .header(keyward::http::CSRF_HEADER, "1")
            .form(&form);
        async move {
            let res = req.send().await.unwrap();
            (res.status().as_u16(), res.text().await.unwrap())
        }
    };
    let create = |name: &str| {
        vec![
            ("workspace_id", w.clone()),
            ("name", name.to_string()),
            ("provider", "openai".to_string()),
            ("public", "true".to_string()),
        ]
    };
    let (s, out) = post(CreateChatbot::PATH, create("Support Bot"), &member).await;
    assert_ne!(s, 200, "a member cannot create chatbots: {out}");
    assert!(out.contains("Forbidden"), "{out}");
    let (s, out) = post(CreateChatbot::PATH, create("Support Bot"), &cookie).await;
    assert_eq!(s, 200, "{out}");
    let bot: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(bot["slug"], "support-bot");
    assert_eq!(bot["public"], true);
    let (_, out) = post(CreateChatbot::PATH, create("Support Bot"), &cookie).await;
    let second: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(second["slug"], "support-bot-2", "slugs stay unique");
    let bot_id = bot["id"].as_str().unwrap().to_string();

    // The chatbot's own key: stored in its scope, shown on its page only.
    let base = format!("http://127.0.0.1:{}/v1", mock.port());
    catalogue::update_provider(
        db,
        &app.state.changes,
        &Gateway::new(vec![("127.0.0.1".into(), mock.port())]).unwrap(),
        &By::cli(),
        "openai",
        ProviderChange {
            base_url: base,
            default_model: String::new(),
            byok_enabled: true,
        },
    )
    .await
    .unwrap();
    let add = |bot: &str| {
        vec![
            ("scope", format!("{w}/{bot}")),
            ("provider", "openai".to_string()),
            ("key", "sk-chatbot-own-key-0000000000cafe".to_string()),
            ("default_model", String::new()),
            ("base_url", String::new()),
        ]
    };
    let (s, out) = post(AddKey::PATH, add(&bot_id), &member).await;
    assert_ne!(s, 200, "{out}");
    let (s, out) = post(AddKey::PATH, add(&Uuid::new_v4().to_string()), &cookie).await;
    assert_ne!(s, 200, "another chatbot id is not found: {out}");
    assert!(out.contains("NotFound"), "{out}");
    let (s, out) = post(AddKey::PATH, add(&bot_id), &cookie).await;
    assert_eq!(s, 200, "{out}");
    let row = credential::Entity::find().one(db).await.unwrap().unwrap();
    assert_eq!(row.scope, "chatbot");
    assert_eq!(row.owner_id.to_string(), bot_id);
    let (_, bot_page) = post(
        GetKeys::PATH,
        vec![("scope", format!("{w}/{bot_id}"))],
        &member,
    )
    .await;
    assert!(
        bot_page.contains("sk-…cafe"),
        "members see the chatbot's key, masked: {bot_page}"
    );
    let (_, ws_page) = post(GetKeys::PATH, vec![("scope", w.clone())], &cookie).await;
    assert!(
        !ws_page.contains("sk-…cafe"),
        "the workspace page does not show it"
    );
    let (_, list) = post(
        GetChatbots::PATH,
        vec![("workspace_id", w.clone())],
        &member,
    )
    .await;
    assert!(
        list.contains("Support Bot") && list.contains("\"can_manage\":false"),
        "{list}"
    );

    // Deleting the chatbot purges its key, and says so in the audit log.
    let del = vec![("workspace_id", w.clone()), ("chatbot_id", bot_id.clone())];
    let (s, _) = post(DeleteChatbot::PATH, del.clone(), &member).await;
    assert_ne!(s, 200);
    let (s, out) = post(DeleteChatbot::PATH, del, &cookie).await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(credential::Entity::find().count(db).await.unwrap(), 0);
    let log = audit::list(db, Some(ws.id), &AuditFilter::default())
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
            "plan.changed",
            "member.invited",
            "member.joined",
            "chatbot.created",
            "chatbot.created",
            "key.created",
            "chatbot.deleted"
        ]
    );
    assert!(
        log.entries[0]
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("1 own keys purged")
    );
    app.stop().await;
}
both_backends!(chatbot_keys_over_http, super::chatbot_keys_over_http);

/// Live key tests are throttled per workspace: each one is a request to wherever the URL
/// points.
async fn key_tests_are_throttled_per_workspace(backend: Backend) {
    use keyward_app::api::TestNewKey;
    use leptos::server_fn::ServerFn;
    let app = crate::helpers::spawn_app(backend).await;
    let cookie = crate::helpers::owner_cookie(&app).await;
    let ws = keyward_server::entities::workspace::Entity::find()
        .one(&app.db)
        .await
        .unwrap()
        .unwrap()
        .id;
    let form = |ws: Uuid| {
        vec![
            ("scope", ws.to_string()),
            ("provider", "custom".to_string()),
            ("key", "sk-throttle-0000000000000000".to_string()),
            ("base_url", "https://127.0.0.1:9/v1".to_string()),
        ]
    };
    let mut statuses = Vec::new();
    for _ in 0..=keyward_server::state::KEY_TESTS_PER_MINUTE {
        let res = app
            .client
            .post(app.url(TestNewKey::PATH))
            .header("cookie", &cookie)
            .header(keyward::http::CSRF_HEADER, "1")
            .form(&form(ws))
            .send()
            .await
            .unwrap();
        statuses.push((res.status().as_u16(), res.text().await.unwrap()));
    }
    let (last, body) = statuses.pop().unwrap();
    // Each test is answered (here: the URL is refused) until the budget is spent.
    assert!(
        statuses
            .iter()
            .all(|(_, b)| b.contains("base URL") && !b.contains("RateLimited")),
        "{statuses:?}"
    );
    assert_ne!(last, 200);
    assert!(body.contains("RateLimited"), "{body}");
}
both_backends!(
    key_tests_are_throttled_per_workspace,
    super::key_tests_are_throttled_per_workspace
);

/// Owners see where each key goes, and an admin's base-URL change never moves an existing key:
/// it keeps going to (and showing) the host it was added for; only new keys follow the change.
async fn keys_show_their_destination_and_stay_put(backend: Backend) {
    let w = world(backend).await;
    let db = &w.t.db;
    let scope = Scope::Workspace(w.ws);
    let view = keys::add(
        w.t.key_deps(&w.gw),
        &w.owner,
        scope,
        new_key("openai", "sk-proj-stays-put-000000000000"),
    )
    .await
    .unwrap();
    let here = format!("127.0.0.1:{}", w.mock.port());
    assert_eq!(view.destination, here);
    // The admin points OpenAI at another server.
    let elsewhere = spawn_mock().await;
    let gw = Gateway::new(vec![
        ("127.0.0.1".into(), w.mock.port()),
        ("127.0.0.1".into(), elsewhere.port()),
    ])
    .unwrap();
    catalogue::update_provider(
        db,
        &w.t.changes,
        &gw,
        &w.owner,
        "openai",
        ProviderChange {
            base_url: format!("http://{elsewhere}/v1"),
            default_model: String::new(),
            byok_enabled: true,
        },
    )
    .await
    .unwrap();
    let page = keys::page(db, scope, true).await.unwrap();
    let row = page
        .rows
        .iter()
        .find(|r| r.provider.id == "openai")
        .unwrap();
    assert_eq!(
        row.key.as_ref().unwrap().destination,
        here,
        "the key shows where it goes"
    );
    assert_eq!(
        row.provider
            .base_url
            .as_deref()
            .map(keyward::keys::destination_host),
        Some(format!("127.0.0.1:{}", elsewhere.port())),
        "the add form shows where a new key would go"
    );
    let before = (mock_requests(w.mock).await, mock_requests(elsewhere).await);
    let id = Uuid::parse_str(&view.id).unwrap();
    let tested = keys::test_saved(w.t.key_deps(&gw), &w.owner, scope, id)
        .await
        .unwrap();
    assert!(tested.ok, "{tested:?}");
    assert_eq!(
        mock_requests(w.mock).await,
        before.0 + 1,
        "still sent to its own host"
    );
    assert_eq!(
        mock_requests(elsewhere).await,
        before.1,
        "never moved by the change"
    );
}
both_backends!(
    keys_show_their_destination_and_stay_put,
    super::keys_show_their_destination_and_stay_put
);
