use crate::helpers::{
    Backend, TestApp, both_backends, invited, owner_cookie, spawn_app, spawn_app_with,
};
use keyward_server::services::audit::By;

const PAGES: [(&str, &str); 8] = [
    ("/", "Dashboard"),
    ("/keys", "Keys"),
    ("/chatbots", "Chatbots"),
    ("/usage", "Usage"),
    ("/audit", "Audit log"),
    ("/playground", "Playground"),
    ("/members", "Members"),
    ("/profile", "Profile"),
];

async fn signed_in_pages_render_on_the_server(backend: Backend) {
    use keyward_server::entities::workspace;
    use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, Set};
    let app = spawn_app(backend).await;
    let cookie = owner_cookie(&app).await;
    // A name that would close a script element if the session data were not escaped.
    let ws = workspace::Entity::find()
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    let mut ws = ws.into_active_model();
    ws.name = Set("Acme </script><b id=injected>".into());
    ws.update(&app.db).await.unwrap();
    for (path, heading) in PAGES {
        let res = app
            .client
            .get(app.url(path))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let html = res.text().await.unwrap();
        assert!(
            html.contains(&format!("<h1>{heading}</h1>")),
            "{path}: {html}"
        );
        assert!(html.contains("aria-label=\"Primary\""), "layout on {path}");
        assert!(
            html.contains("/pkg/keyward.js"),
            "hydration script on {path}"
        );
        assert!(html.contains("owner@example.com") || path != "/profile");
        // The session the page was rendered with travels in the head, for hydration to start
        // from, with `<` escaped.
        let data = html
            .split_once(r#"<script id="kw-session" type="application/json">"#)
            .and_then(|(_, rest)| rest.split_once("</script>"))
            .map(|(json, _)| json)
            .unwrap_or_else(|| panic!("session data on {path}"));
        let session: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(session["Ok"]["me"]["email"], "owner@example.com", "{path}");
        assert_eq!(
            session["Ok"]["me"]["current"]["name"], "Acme </script><b id=injected>",
            "{path}"
        );
        assert!(data.contains(r"\u003c/script>"), "{path}: {data}");
        assert!(!html.contains("<b id=injected>"), "{path}");
    }
    app.stop().await;
}
both_backends!(
    signed_in_pages_render_on_the_server,
    super::signed_in_pages_render_on_the_server
);

/// Every guarded page, requested many times at once: each answer is complete (the stream ends
/// with Leptos' closing script) and arrives within 10 s. Leptos' streaming renderer has had races
/// in which a resource read by nested `<Transition>`s sometimes never lets the page finish (it
/// then ends on the server's 30 s timeout as 408; CI met this once on `/audit`); this guards the
/// page structure that avoids it (see `keyward_app::auth`).
/// `KEYWARD_PAGE_ROUNDS` sets how many rounds of every page (default 25).
async fn pages_complete_under_concurrent_load(backend: Backend) {
    use futures_util::StreamExt;
    let app = spawn_app(backend).await;
    let cookie = owner_cookie(&app).await;
    let rounds: usize = std::env::var("KEYWARD_PAGE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25);
    // The test is about pages arriving whole, not about speed: the deadline only stops a hung
    // stream, and is generous because other tests (schema fuzzing) may be using both CPUs.
    // A new connection per page: a request sent on a pooled connection the server is closing
    // at that moment fails to be sent at all (CI met this twice, once with a 5-second idle
    // limit on the pool), which says nothing about the page.
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let requests = (0..rounds).flat_map(|_| PAGES.iter().copied());
    // Each request answers `None` when the page arrived whole, or what went wrong.
    let outcomes: Vec<Option<String>> = futures_util::stream::iter(requests)
        .map(|(path, heading)| {
            let (client, cookie, url) = (client.clone(), cookie.clone(), app.url(path));
            async move {
                let sent = std::time::Instant::now();
                let res = match client.get(url).header("cookie", cookie).send().await {
                    Ok(res) => res,
                    Err(e) => {
                        // The whole chain (the cause is in the sources), and how long it took.
                        let mut why = e.to_string();
                        let mut source = std::error::Error::source(&e);
                        while let Some(s) = source {
                            why.push_str(&format!(": {s}"));
                            source = s.source();
                        }
                        return Some(format!("{path}: {why} (after {:?})", sent.elapsed()));
                    }
                };
                let status = res.status();
                match res.text().await {
                    // A finished stream ends with this script (after `</html>`).
                    Ok(html)
                        if status == 200
                            && html.contains(&format!("<h1>{heading}</h1>"))
                            && html
                                .trim_end()
                                .ends_with("__INCOMPLETE_CHUNKS=[];</script>") =>
                    {
                        None
                    }
                    Ok(_) => Some(format!("{path}: {status}, incomplete page")),
                    Err(e) => Some(format!("{path}: {status}, {e}")),
                }
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let bad: Vec<&String> = outcomes.iter().flatten().collect();
    assert_eq!(outcomes.len(), rounds * PAGES.len());
    assert!(
        bad.is_empty(),
        "{} of {} pages failed: {bad:?}",
        bad.len(),
        outcomes.len()
    );
    app.stop().await;
}
both_backends!(
    pages_complete_under_concurrent_load,
    super::pages_complete_under_concurrent_load
);

async fn the_guard_redirects_with_http_status(backend: Backend) {
    let app = spawn_app(backend).await;
    // What a browser sends when it navigates (the 302 is for page loads, not server-fn calls).
    let browser =
        |req: reqwest::RequestBuilder| req.header("accept", "text/html,application/xhtml+xml");
    // A fresh instance sends everyone to set-up.
    let res = browser(app.client.get(app.url("/keys")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    assert_eq!(res.headers()["location"], "/setup");
    owner_cookie(&app).await;
    // Afterwards, signed-out visitors go to sign-in, for every protected page.
    for (path, _) in PAGES {
        let res = browser(app.client.get(app.url(path))).send().await.unwrap();
        assert_eq!(res.status(), 302, "{path}");
        assert_eq!(res.headers()["location"], "/sign-in", "{path}");
    }
    // A forged or expired cookie is the same as none.
    let res = browser(app.client.get(app.url("/members")))
        .header(
            "cookie",
            format!("{}=forged", keyward::http::SESSION_COOKIE),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    // The public pages render without a session.
    for (path, heading) in [("/sign-in", "Sign in"), ("/setup", "Set up Keyward")] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert!(
            res.text()
                .await
                .unwrap()
                .contains(&format!("<h1>{heading}</h1>"))
        );
    }
    app.stop().await;
}
both_backends!(
    the_guard_redirects_with_http_status,
    super::the_guard_redirects_with_http_status
);

async fn unknown_paths_answer_404_with_the_layout(backend: Backend) {
    let app = spawn_app(backend).await;
    let res = app
        .client
        .get(app.url("/no/such/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let html = res.text().await.unwrap();
    assert!(html.contains("Page not found"), "{html}");
    assert!(html.contains("aria-label=\"Primary\""));
    app.stop().await;
}
both_backends!(
    unknown_paths_answer_404_with_the_layout,
    super::unknown_paths_answer_404_with_the_layout
);

async fn responses_are_compressed_when_asked(backend: Backend) {
    let app = spawn_app(backend).await;
    let res = app
        .client
        .get(app.url("/sign-in"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap()),
        Some("gzip")
    );
    app.stop().await;
}
both_backends!(
    responses_are_compressed_when_asked,
    super::responses_are_compressed_when_asked
);

async fn sign_up_is_refused_unless_the_operator_opens_it(backend: Backend) {
    use sea_orm::{EntityTrait, PaginatorTrait};
    let app = spawn_app(backend).await;
    owner_cookie(&app).await;
    let (_, body) = crate::sign_up::sign_up(&app, "walk-in@example.com").await;
    assert!(body.contains("Forbidden"), "{body}");
    let users = keyward_server::entities::user::Entity::find()
        .count(&app.db)
        .await
        .unwrap();
    assert_eq!(users, 1, "no account was created");
    app.stop().await;
}
both_backends!(
    sign_up_is_refused_unless_the_operator_opens_it,
    super::sign_up_is_refused_unless_the_operator_opens_it
);

/// Every mutating server function, called by a member with a real session cookie and the CSRF
/// proof: each is refused, and memberships, invitations and workspaces are unchanged.
async fn forbidden_server_function_calls_change_nothing(backend: Backend) {
    use keyward::policy::Role;
    use keyward_app::api::{
        ChangeMemberRole, InviteMember, RemoveMember, RenameWorkspace, RevokeInvitation,
        SetWorkspacePlan, TransferOwnership,
    };
    use keyward_server::entities::{invitation, membership, workspace};
    use keyward_server::services::workspaces;
    use leptos::server_fn::ServerFn;
    use sea_orm::EntityTrait;

    let app = spawn_app(backend).await;
    owner_cookie(&app).await;
    let db = &app.db;
    let ws = workspace::Entity::find().one(db).await.unwrap().unwrap();
    let owner = membership::Entity::find()
        .one(db)
        .await
        .unwrap()
        .unwrap()
        .user_id;
    let mia = invited(
        db,
        ws.id,
        "mia@example.com",
        Role::Member,
        "another good passphrase",
    )
    .await;
    let (pending, _) = workspaces::invite(db, &By::cli(), ws.id, "pat@example.com", Role::Member)
        .await
        .unwrap();
    let cookie = format!("{}={}", keyward::http::SESSION_COOKIE, mia.token.as_str());

    async fn snapshot(db: &sea_orm::DatabaseConnection) -> String {
        format!(
            "{:?}|{:?}|{:?}",
            membership::Entity::find().all(db).await.unwrap(),
            invitation::Entity::find().all(db).await.unwrap(),
            workspace::Entity::find().all(db).await.unwrap(),
        )
    }
    let before = snapshot(db).await;
    let (w, o, p) = (ws.id.to_string(), owner.to_string(), pending.to_string());
    let calls: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            InviteMember::PATH,
            vec![
                ("workspace_id", &w),
                ("email", "x@example.com"),
                ("role", "owner"),
            ],
        ),
        (
            ChangeMemberRole::PATH,
            vec![("workspace_id", &w), ("user_id", &o), ("role", "member")],
        ),
        (
            RemoveMember::PATH,
            vec![("workspace_id", &w), ("user_id", &o)],
        ),
        (
            TransferOwnership::PATH,
            vec![("workspace_id", &w), ("user_id", &o)],
        ),
        (
            RenameWorkspace::PATH,
            vec![("workspace_id", &w), ("name", "Pwned")],
        ),
        (
            RevokeInvitation::PATH,
            vec![("workspace_id", &w), ("invitation_id", &p)],
        ),
        (
            SetWorkspacePlan::PATH,
            vec![("workspace_id", &w), ("plan", "business")],
        ),
    ];
    for (path, form) in calls {
        let res = app
            .client
            .post(app.url(path))
            .header("cookie", &cookie)
            .header(keyward::http::CSRF_HEADER, "1")
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_ne!(res.status(), 200, "{path}");
        let body = res.text().await.unwrap();
        assert!(body.contains("Forbidden"), "{path}: {body}");
    }
    assert_eq!(snapshot(db).await, before, "nothing changed");
    app.stop().await;
}
both_backends!(
    forbidden_server_function_calls_change_nothing,
    super::forbidden_server_function_calls_change_nothing
);

/// Signs in through the real server function and returns the Set-Cookie header.
async fn sign_in_cookie(app: &TestApp, cookie: Option<&str>) -> String {
    use keyward_app::api::SignIn;
    use leptos::server_fn::ServerFn;
    let mut req = app
        .client
        .post(app.url(SignIn::PATH))
        .header(keyward::http::CSRF_HEADER, "1")
        .form(&[
            ("email", "owner@example.com"),
            ("password", "correct horse battery"),
        ]);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.headers()["set-cookie"].to_str().unwrap().to_string()
}

async fn session_cookies_are_hardened_and_rotate(backend: Backend) {
    // Plain http (development): HttpOnly, SameSite=Lax, no Secure.
    let app = spawn_app(backend).await;
    owner_cookie(&app).await;
    let first = sign_in_cookie(&app, None).await;
    assert!(first.starts_with("keyward_session="), "{first}");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=2592000"] {
        assert!(first.contains(attr), "{attr} in {first}");
    }
    assert!(!first.contains("Secure"), "{first}");
    // Signing in again with that cookie ends it and issues a new id.
    let old = first.split(';').next().unwrap().to_string();
    let second = sign_in_cookie(&app, Some(&old)).await;
    assert_ne!(second.split(';').next().unwrap(), old);
    let res = app
        .client
        .get(app.url("/profile"))
        .header("accept", "text/html")
        .header("cookie", &old)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302, "the old session id is dead");
    app.stop().await;

    // Behind https: Secure and the __Host- prefix.
    let app = spawn_app_with(backend, |s| {
        s.public_url = Some("https://keyward.example.com".into())
    })
    .await;
    owner_cookie(&app).await;
    let cookie = sign_in_cookie(&app, None).await;
    assert!(cookie.starts_with("__Host-keyward_session="), "{cookie}");
    for attr in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attr), "{attr} in {cookie}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
    app.stop().await;
}
both_backends!(
    session_cookies_are_hardened_and_rotate,
    super::session_cookies_are_hardened_and_rotate
);
