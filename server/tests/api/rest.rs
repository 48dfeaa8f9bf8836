//! The management REST API `/api/v1` on SQLite and PostgreSQL: a management-scoped token acts in
//! its own workspace with an admin's rights; a session acts with the member's role and needs the
//! CSRF proof on changes; the OpenAPI document lists exactly the routes that answer.

use crate::chat::{Chat, chat_world};
use crate::helpers::{Backend, both_backends};
use keyward::tokens::TokenScope;
use keyward_server::mock_provider::MockConfig;
use keyward_server::services::api_tokens::{self, NewToken};
use keyward_server::services::audit::By;
use serde_json::{Value, json};

/// Sends a request; `auth` is a header pair, `body` JSON or none.
async fn call(
    c: &Chat,
    method: &str,
    path: &str,
    auth: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let mut req =
        c.w.app
            .client
            .request(method.parse().unwrap(), c.w.app.url(path));
    for (k, v) in auth {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn management_api(backend: Backend) {
    let c = chat_world(backend, MockConfig::default(), |_| {}).await;
    let ws = c.ws();
    let base = format!("/api/v1/workspaces/{ws}");
    let mgmt = crate::public_api::token(&c, &[TokenScope::Management])
        .await
        .1;
    let bearer = format!("Bearer {mgmt}");
    let t: &[(&str, &str)] = &[("authorization", bearer.as_str())];

    // Keys: masked, never plaintext.
    let (s, out) = call(&c, "GET", &format!("{base}/keys"), t, None).await;
    assert_eq!(s, 200, "{out}");
    let keys = out["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["provider"], "openai");
    assert!(keys[0]["hint"].as_str().unwrap().contains('…'));
    assert!(!out.to_string().contains(crate::chat::WS_KEY));
    // A token acts as an admin: it never adds or removes provider keys.
    let (s, _) = call(
        &c,
        "POST",
        &format!("{base}/keys"),
        t,
        Some(json!({"provider": "groq", "key": "gsk_not-allowed-0000000000"})),
    )
    .await;
    assert_eq!(s, 403);

    // Chatbots: list, create, delete.
    let (s, out) = call(&c, "GET", &format!("{base}/chatbots"), t, None).await;
    assert_eq!((s, out["chatbots"].as_array().unwrap().len()), (200, 1));
    let (s, bot) = call(
        &c,
        "POST",
        &format!("{base}/chatbots"),
        t,
        Some(json!({"name": "Support", "provider": "openai", "public": true})),
    )
    .await;
    assert_eq!(s, 201, "{bot}");
    assert_eq!(bot["slug"], "support");
    let (s, out) = call(
        &c,
        "POST",
        &format!("{base}/chatbots"),
        t,
        Some(json!({"name": ""})),
    )
    .await;
    assert_eq!(s, 400, "{out}");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid body")
    );

    // Tokens: a management-only token cannot mint a chat token (no scope beyond its own); one
    // that has both creates one (shown once), it works on /v1, revoke it, it stops.
    let (s, out) = call(
        &c,
        "POST",
        &format!("{base}/tokens"),
        t,
        Some(json!({"name": "app", "scopes": ["chat"], "expires_in_days": 30})),
    )
    .await;
    assert_eq!(s, 400, "{out}");
    let both = crate::public_api::token(&c, &[TokenScope::Management, TokenScope::Chat])
        .await
        .1;
    let both = format!("Bearer {both}");
    let (s, created) = call(
        &c,
        "POST",
        &format!("{base}/tokens"),
        &[("authorization", both.as_str())],
        Some(json!({"name": "app", "scopes": ["chat"], "expires_in_days": 30})),
    )
    .await;
    assert_eq!(s, 201, "{created}");
    let new_token = created["token"].as_str().unwrap().to_string();
    assert!(new_token.starts_with("kw_"));
    let chat_body =
        json!({"model": "openai/mock-small", "messages": [{"role": "user", "content": "hi"}]});
    let bearer_new = format!("Bearer {new_token}");
    let (s, _) = call(
        &c,
        "POST",
        "/v1/chat/completions",
        &[("authorization", bearer_new.as_str())],
        Some(chat_body.clone()),
    )
    .await;
    assert_eq!(s, 200);
    let (s, out) = call(&c, "GET", &format!("{base}/tokens"), t, None).await;
    assert_eq!(s, 200);
    let listed = out["tokens"].as_array().unwrap();
    assert_eq!(listed.len(), 3, "the two management tokens and the new one");
    assert!(
        !out.to_string().contains(&new_token[9..]),
        "never the token itself"
    );
    let id = created["view"]["id"].as_str().unwrap();
    let (s, _) = call(&c, "DELETE", &format!("{base}/tokens/{id}"), t, None).await;
    assert_eq!(s, 204);
    let (s, _) = call(
        &c,
        "POST",
        "/v1/chat/completions",
        &[("authorization", bearer_new.as_str())],
        Some(chat_body),
    )
    .await;
    assert_eq!(s, 401);

    // Usage: the request above is in it.
    c.w.app.state.usage.flush().await;
    let (s, report) = call(&c, "GET", &format!("{base}/usage"), t, None).await;
    assert_eq!(s, 200, "{report}");
    assert_eq!(report["totals"]["requests"], 1, "{}", report["totals"]);

    // Deleting the chatbot.
    let bot_id = bot["id"].as_str().unwrap();
    let (s, _) = call(&c, "DELETE", &format!("{base}/chatbots/{bot_id}"), t, None).await;
    assert_eq!(s, 204);

    // Refusals: no credentials, a token without the scope, another workspace, a bad id.
    let (s, _) = call(&c, "GET", &format!("{base}/keys"), &[], None).await;
    assert_eq!(s, 401);
    let chat_only = crate::public_api::token(&c, &[TokenScope::Chat]).await.1;
    let (s, _) = call(
        &c,
        "GET",
        &format!("{base}/keys"),
        &[("x-api-key", chat_only.as_str())],
        None,
    )
    .await;
    assert_eq!(s, 403);
    let other = uuid::Uuid::new_v4();
    let (s, _) = call(
        &c,
        "GET",
        &format!("/api/v1/workspaces/{other}/keys"),
        t,
        None,
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = call(&c, "GET", "/api/v1/workspaces/not-a-uuid/keys", t, None).await;
    assert_eq!(s, 404);

    // Sessions: the member's role, and the CSRF proof on changes.
    let owner = c.w.owner.clone();
    let cookie: &[(&str, &str)] = &[("cookie", owner.as_str())];
    let (s, _) = call(&c, "GET", &format!("{base}/keys"), cookie, None).await;
    assert_eq!(s, 200);
    let new_bot = json!({"name": "Sales", "provider": "openai"});
    let (s, _) = call(
        &c,
        "POST",
        &format!("{base}/chatbots"),
        cookie,
        Some(new_bot.clone()),
    )
    .await;
    assert_eq!(s, 403, "no CSRF proof");
    let with_csrf = [
        ("cookie", owner.as_str()),
        (keyward::http::CSRF_HEADER, "1"),
    ];
    let (s, _) = call(
        &c,
        "POST",
        &format!("{base}/chatbots"),
        &with_csrf,
        Some(new_bot),
    )
    .await;
    assert_eq!(s, 201);
    let (s, key) = call(
        &c,
        "POST",
        &format!("{base}/keys"),
        &with_csrf,
        Some(json!({"provider": "groq", "key": "gsk_owner-added-key-000000009999"})),
    )
    .await;
    assert_eq!(
        (s, key["hint"].as_str().map(|h| h.ends_with("9999"))),
        (201, Some(true)),
        "{key}"
    );
    let member = c.w.member.clone();
    let member_csrf = [
        ("cookie", member.as_str()),
        (keyward::http::CSRF_HEADER, "1"),
    ];
    let (s, _) = call(
        &c,
        "POST",
        &format!("{base}/chatbots"),
        &member_csrf,
        Some(json!({"name": "Nope", "provider": "openai"})),
    )
    .await;
    assert_eq!(s, 403, "members read only");
    let (s, _) = call(&c, "GET", &format!("{base}/chatbots"), &member_csrf, None).await;
    assert_eq!(s, 200);

    // The document lists exactly the operations that answer (each was exercised above; the
    // limits ones in `limits::limits_over_rest`).
    let (s, doc) = call(&c, "GET", "/api/v1/openapi.json", &[], None).await;
    assert_eq!(s, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let mut ops: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |m| format!("{} {p}", m.to_uppercase()))
        })
        .collect();
    ops.sort();
    assert_eq!(
        ops,
        [
            "DELETE /api/v1/workspaces/{workspace}/chatbots/{id}",
            "DELETE /api/v1/workspaces/{workspace}/keys/{id}",
            "DELETE /api/v1/workspaces/{workspace}/limits/{scope}/{subject}",
            "DELETE /api/v1/workspaces/{workspace}/tokens/{id}",
            "GET /api/v1/workspaces/{workspace}/chatbots",
            "GET /api/v1/workspaces/{workspace}/keys",
            "GET /api/v1/workspaces/{workspace}/limits",
            "GET /api/v1/workspaces/{workspace}/tokens",
            "GET /api/v1/workspaces/{workspace}/usage",
            "POST /api/v1/workspaces/{workspace}/chatbots",
            "POST /api/v1/workspaces/{workspace}/keys",
            "POST /api/v1/workspaces/{workspace}/tokens",
            "PUT /api/v1/workspaces/{workspace}/limits/{scope}/{subject}",
        ]
    );
    // The key deletion, by its owner (the one operation not yet called).
    let key_id = key["id"].as_str().unwrap();
    let (s, _) = call(
        &c,
        "DELETE",
        &format!("{base}/keys/{key_id}"),
        &with_csrf,
        None,
    )
    .await;
    assert_eq!(s, 204);
    // Every $ref resolves.
    let text = doc.to_string();
    for r in text.split("\"#/components/schemas/").skip(1) {
        let name = &r[..r.find('"').unwrap()];
        assert!(doc["components"]["schemas"][name].is_object(), "{name}");
    }
    c.w.app.stop().await;
}
both_backends!(management_api, super::management_api);

/// Roles hold at the edges: a chatbot holding keys of its own is only deleted by an owner, and
/// a token made by a management token never exceeds its creator.
async fn roles_hold_at_the_edges(backend: Backend) {
    use keyward_server::services::chatbots;
    let c = chat_world(backend, MockConfig::default(), |_| {}).await;
    let ws = c.ws();
    let base = format!("/api/v1/workspaces/{ws}");
    // The chatbot gets a key of its own (the owner adds it).
    c.add_key(&c.bot_id, "sk-bot-own-key-0000000000000005555")
        .await;
    let bot: uuid::Uuid = c.bot_id.parse().unwrap();
    let mgmt = crate::public_api::token(&c, &[TokenScope::Management, TokenScope::Chat])
        .await
        .1;
    let bearer = format!("Bearer {mgmt}");
    let t: &[(&str, &str)] = &[("authorization", bearer.as_str())];
    let (s, out) = call(&c, "DELETE", &format!("{base}/chatbots/{bot}"), t, None).await;
    assert_eq!(s, 409, "{out}");
    assert!(out.to_string().contains("only an owner"), "{out}");
    // An admin (may not manage keys) is refused the same way; an owner may.
    let refused = chatbots::delete(
        &c.w.app.db,
        &c.w.app.state.changes,
        &By::cli(),
        c.w.ws.id,
        bot,
        false,
    )
    .await;
    assert!(
        matches!(&refused, Err(keyward_server::error::ServiceError::Conflict(m)) if m.contains("only an owner")),
        "{refused:?}"
    );
    assert!(
        chatbots::get(&c.w.app.db, c.w.ws.id, bot).await.is_ok(),
        "still there"
    );

    // A management token bound to the chatbot, expiring in a day, mints tokens.
    let (_, parent) = api_tokens::create(
        &c.w.app.db,
        &By::cli(),
        c.w.ws.id,
        NewToken {
            name: "short-lived".into(),
            scopes: vec![TokenScope::Management, TokenScope::Chat],
            chatbot: Some(bot),
            expires_in_days: Some(1),
        },
        None,
    )
    .await
    .unwrap();
    let bearer = format!("Bearer {}", parent.as_str());
    let p: &[(&str, &str)] = &[("authorization", bearer.as_str())];
    let (s, out) = call(
        &c,
        "POST",
        &format!("{base}/tokens"),
        p,
        Some(json!({"name": "child", "scopes": ["chat"], "expires_in_days": 365})),
    )
    .await;
    assert_eq!(s, 201, "{out}");
    let child = &out["view"];
    assert_eq!(
        child["chatbot_id"].as_str(),
        Some(bot.to_string().as_str()),
        "{out}"
    );
    let expiry = |name: &'static str| {
        let db = c.w.app.db.clone();
        async move {
            use keyward_server::entities::api_token;
            use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
            api_token::Entity::find()
                .filter(api_token::Column::Name.eq(name))
                .one(&db)
                .await
                .unwrap()
                .unwrap()
                .expires_at
        }
    };
    let parent_expiry = expiry("short-lived").await.unwrap();
    assert!(
        expiry("child").await.unwrap() <= parent_expiry,
        "capped at the creator's"
    );
    // Never-expiring is capped too, and no scope or chatbot beyond the creator's.
    let (s, out) = call(
        &c,
        "POST",
        &format!("{base}/tokens"),
        p,
        Some(json!({"name": "forever", "scopes": ["chat"]})),
    )
    .await;
    assert_eq!(s, 201, "{out}");
    assert!(out["view"]["expires_at"].is_string(), "{out}");
    assert!(expiry("forever").await.unwrap() <= parent_expiry);
    let (s, out) = call(
        &c,
        "POST",
        &format!("{base}/tokens"),
        p,
        Some(json!({"name": "wider", "scopes": ["models"]})),
    )
    .await;
    assert_eq!(s, 400, "{out}");
    assert!(out.to_string().contains("does not have it"), "{out}");
    let other = chatbots::create(
        &c.w.app.db,
        &By::cli(),
        c.w.ws.id,
        chatbots::NewChatbot {
            name: "Other".into(),
            provider: "openai".into(),
            model: String::new(),
            system_prompt: String::new(),
            greeting: String::new(),
            public: false,
        },
    )
    .await
    .unwrap();
    let (s, out) = call(
        &c,
        "POST",
        &format!("{base}/tokens"),
        p,
        Some(json!({"name": "elsewhere", "scopes": ["chat"], "chatbot_id": other.id.to_string()})),
    )
    .await;
    assert_eq!(s, 400, "{out}");
    assert!(out.to_string().contains("bound to the same one"), "{out}");
}
both_backends!(roles_hold_at_the_edges, super::roles_hold_at_the_edges);
