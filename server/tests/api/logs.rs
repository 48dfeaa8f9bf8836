//! The log canary: a real `keyward serve` process at TRACE on PostgreSQL (with a password in its
//! database URL) goes through first-run set-up with its printed one-time link, a provider key,
//! an invitation opened and accepted, an API token and a chat through `/v1`. Then its whole log
//! is searched for every secret it handled: none may appear.

use crate::helpers::{Backend, fresh_database};
use crate::keys::spawn_mock_with;
use keyward_app::api::{AddKey, InviteMember, SetupInstance, SignUpWithInvitation};
use keyward_server::mock_provider::MockConfig;
use keyward_server::vault::master_key::{self, MasterKey};
use leptos::server_fn::ServerFn;
use sea_orm::{ConnectionTrait, Database, Statement};
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::Duration;

const PW: &str = "correct horse battery";

fn random() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Waits until the log holds `needle`, then returns the word that follows it.
async fn wait_for(log: &std::path::Path, needle: &str) -> String {
    let what = format!("{needle:?} in the log");
    crate::helpers::eventually(Duration::from_secs(60), &what, || async {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let at = text.find(needle)?;
        let line = text[at + needle.len()..].lines().next().unwrap_or("");
        Some(line.split_whitespace().next().unwrap_or("").to_string())
    })
    .await
}

fn cookie_of(res: &reqwest::Response) -> String {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(keyward::http::SESSION_COOKIE))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_log() {
    let mock = spawn_mock_with(MockConfig::default()).await;
    let (url, _) = fresh_database(Backend::Postgres).await;
    // Trust authentication ignores the password; the server still holds and must hide it.
    let db_password = format!("dbpw{}", random());
    let url = url.replacen("://postgres@", &format!("://postgres:{db_password}@"), 1);
    assert!(url.contains(&db_password), "{url}");
    let dir = std::env::temp_dir().join(format!("kw-logs-{}", random()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("master.key");
    master_key::write_file(&key_file, &MasterKey::generate().unwrap()).unwrap();
    let allow = format!("127.0.0.1:{}", mock.port());
    let keyward = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyward"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KEYWARD_DATABASE_URL", &url)
            .env("KEYWARD_MASTER_KEY_FILE", &key_file)
            .env("KEYWARD_ALLOWED_PRIVATE_UPSTREAMS", &allow)
            .env("KEYWARD_BIND", "127.0.0.1:0")
            .env("KEYWARD_LOG_FILTER", "trace")
            .current_dir(&dir);
        cmd
    };
    let base = format!("http://127.0.0.1:{}/v1", mock.port());
    let out = keyward(&["provider", "set", "openai", "--base-url", &base])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let log = dir.join("server.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut server = keyward(&["serve"])
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file))
        .spawn()
        .unwrap();
    let addr = wait_for(&log, "keyward is serving on http://").await;
    let setup_token = wait_for(&log, "/setup?token=").await;
    assert_eq!(setup_token.len(), 43, "{setup_token}");
    let app = |path: &str| format!("http://{addr}{path}");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let post = |path: &str, form: Vec<(&str, String)>, cookie: Option<&str>| {
        let mut req = client
            .post(app(path))
            .header(keyward::http::CSRF_HEADER, "1")
            .form(&form);
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        req.send()
    };

    // First-run set-up needs the printed token.
    let setup = |token: String| {
        vec![
            ("token", token),
            ("email", "owner@example.com".into()),
            ("display_name", "Owner".into()),
            ("password", PW.into()),
            ("workspace_name", "Acme".into()),
        ]
    };
    let res = post(SetupInstance::PATH, setup(random()), None)
        .await
        .unwrap();
    assert_ne!(res.status(), 200);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("set-up link is not valid")
    );
    let res = post(SetupInstance::PATH, setup(setup_token.clone()), None)
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let owner = cookie_of(&res);
    // Once set up, the token is spent.
    let res = post(SetupInstance::PATH, setup(setup_token), None)
        .await
        .unwrap();
    assert!(res.text().await.unwrap().contains("already set up"));

    let db = Database::connect(url.as_str()).await.unwrap();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT CAST(id AS TEXT) AS id FROM workspaces",
        ))
        .await
        .unwrap()
        .unwrap();
    let ws: String = row.try_get("", "id").unwrap();
    // Bring-your-own-key needs a paid plan.
    db.execute_unprepared("UPDATE workspaces SET plan = 'business'")
        .await
        .unwrap();

    // A provider key, an invitation opened and accepted, an API token, a chat through /v1.
    let provider_key = format!("sk-logcanary-{}", random());
    let res = post(
        AddKey::PATH,
        vec![
            ("scope", ws.clone()),
            ("provider", "openai".into()),
            ("key", provider_key.clone()),
            ("default_model", "mock-small".into()),
            ("base_url", String::new()),
        ],
        Some(&owner),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let res = post(
        InviteMember::PATH,
        vec![
            ("workspace_id", ws.clone()),
            ("email", "mia@example.com".into()),
            ("role", "admin".into()),
        ],
        Some(&owner),
    )
    .await
    .unwrap();
    let link: String = res.json().await.unwrap();
    let invitation = link.rsplit('/').next().unwrap().to_string();
    assert_eq!(invitation.len(), 43, "{link}");
    let page = client
        .get(app(&format!("/invite/{invitation}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let res = post(
        SignUpWithInvitation::PATH,
        vec![
            ("token", invitation.clone()),
            ("display_name", "Mia".into()),
            ("password", PW.into()),
        ],
        None,
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let member = cookie_of(&res);
    let res = client
        .post(app(&format!("/api/v1/workspaces/{ws}/tokens")))
        .header("cookie", &owner)
        .header(keyward::http::CSRF_HEADER, "1")
        .json(&json!({"name": "ci", "scopes": ["chat"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    let api_token = created["token"].as_str().unwrap().to_string();
    let res = client
        .post(app("/v1/chat/completions"))
        .bearer_auth(&api_token)
        .json(
            &json!({"model": "openai/mock-small", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());

    server.kill().unwrap();
    server.wait().unwrap();
    db.close().await.unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    // The search reads a real TRACE log of these very requests.
    assert!(text.contains("TRACE"), "the log really is at TRACE");
    assert!(
        text.contains("/invite/<redacted>"),
        "the invitation page was logged"
    );
    assert!(
        text.contains("postgres://postgres:***@"),
        "the database URL was logged"
    );
    let session = |c: &str| c.split_once('=').unwrap().1.to_string();
    for (what, secret) in [
        ("provider key", provider_key),
        ("invitation token", invitation),
        ("owner session", session(&owner)),
        ("member session", session(&member)),
        ("API token", api_token),
        ("database password", db_password),
    ] {
        // The whole secret, and any 16 characters of it.
        let chars: Vec<char> = secret.chars().collect();
        let windows = chars.windows(16).map(|w| w.iter().collect::<String>());
        for piece in std::iter::once(secret.clone()).chain(windows) {
            assert!(!text.contains(&piece), "the log holds part of the {what}");
        }
    }
}
