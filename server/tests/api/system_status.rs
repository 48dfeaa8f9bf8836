//! The dashboard's status server function: a real round trip to the database.

use crate::helpers::{Backend, TestApp, both_backends, owner_cookie, spawn_app};
use keyward::system::{DatabaseBackend, SystemStatus};
use keyward_app::api::GetSystemStatus;
use leptos::server_fn::ServerFn;
use sea_orm::{ConnectionTrait, Statement};

async fn call(app: &TestApp, cookie: &str) -> SystemStatus {
    let res = app
        .client
        .post(app.url(GetSystemStatus::PATH))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .header(keyward::http::CSRF_HEADER, "1")
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn status_reads_and_counts_in_the_database(backend: Backend) {
    let app = spawn_app(backend).await;
    let cookie = owner_cookie(&app).await;

    let first = call(&app, &cookie).await;
    let second = call(&app, &cookie).await;

    let expected = match backend {
        Backend::Sqlite => DatabaseBackend::Sqlite,
        Backend::Postgres => DatabaseBackend::Postgres,
    };
    assert_eq!(first.database, expected);
    assert_eq!(second.status_checks, first.status_checks + 1);
    use keyward_migration::MigratorTrait;
    let all = keyward_migration::Migrator::migrations().len();
    assert_eq!(first.migrations_applied as usize, all);
    let row = app
        .db
        .query_one_raw(Statement::from_string(
            app.db.get_database_backend(),
            "SELECT value FROM settings WHERE key = 'instance_id'",
        ))
        .await
        .unwrap()
        .unwrap();
    let stored: String = row.try_get("", "value").unwrap();
    assert_eq!(first.instance_id, stored);
    app.stop().await;
}
both_backends!(
    status_reads_and_counts_in_the_database,
    super::status_reads_and_counts_in_the_database
);

async fn concurrent_checks_lose_no_update(backend: Backend) {
    let app = spawn_app(backend).await;
    let cookie = owner_cookie(&app).await;
    let before = call(&app, &cookie).await.status_checks;
    let calls = (0..24).map(|_| call(&app, &cookie));
    futures_util::future::join_all(calls).await;
    let after = call(&app, &cookie).await.status_checks;
    assert_eq!(after, before + 25);
    app.stop().await;
}
both_backends!(
    concurrent_checks_lose_no_update,
    super::concurrent_checks_lose_no_update
);

async fn state_changing_requests_without_the_csrf_proof_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let cookie = owner_cookie(&app).await;
    let before = call(&app, &cookie).await.status_checks;
    let host = app.addr.to_string();
    let attempts: Vec<Vec<(&str, String)>> = vec![
        vec![],
        vec![
            (keyward::http::CSRF_HEADER, "1".into()),
            ("origin", "https://evil.example".into()),
        ],
        vec![
            (keyward::http::CSRF_HEADER, "1".into()),
            ("sec-fetch-site", "cross-site".into()),
        ],
        vec![("origin", format!("http://{host}"))],
    ];
    for headers in attempts {
        let mut req = app
            .client
            .post(app.url(GetSystemStatus::PATH))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded");
        for (k, v) in &headers {
            req = req.header(*k, v);
        }
        let res = req.body("").send().await.unwrap();
        assert_eq!(res.status(), 403, "{headers:?}");
    }
    // A same-origin request with the proof passes, and the refused ones counted nothing.
    let res = app
        .client
        .post(app.url(GetSystemStatus::PATH))
        .header("cookie", &cookie)
        .header(keyward::http::CSRF_HEADER, "1")
        .header("origin", format!("http://{host}"))
        .header("sec-fetch-site", "same-origin")
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let after: SystemStatus = res.json().await.unwrap();
    assert_eq!(after.status_checks, before + 1);
    app.stop().await;
}
both_backends!(
    state_changing_requests_without_the_csrf_proof_change_nothing,
    super::state_changing_requests_without_the_csrf_proof_change_nothing
);

async fn instance_id_survives_a_restart(backend: Backend) {
    // Two servers over one database (a restart, or a second instance) share the instance id.
    let app = spawn_app(backend).await;
    let cookie = owner_cookie(&app).await;
    let id = call(&app, &cookie).await.instance_id;
    let again = keyward_server::services::system::ensure_instance(&app.db)
        .await
        .unwrap();
    assert_eq!(id, again);
    app.stop().await;
}
both_backends!(
    instance_id_survives_a_restart,
    super::instance_id_survives_a_restart
);

async fn anonymous_status_calls_are_refused_and_count_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let cookie = owner_cookie(&app).await;
    let before = call(&app, &cookie).await.status_checks;
    let res = app
        .client
        .post(app.url(GetSystemStatus::PATH))
        .header(keyward::http::CSRF_HEADER, "1")
        .body("")
        .send()
        .await
        .unwrap();
    assert!(res.text().await.unwrap().contains("Unauthorized"));
    assert_eq!(call(&app, &cookie).await.status_checks, before + 1);
    app.stop().await;
}
both_backends!(
    anonymous_status_calls_are_refused_and_count_nothing,
    super::anonymous_status_calls_are_refused_and_count_nothing
);
