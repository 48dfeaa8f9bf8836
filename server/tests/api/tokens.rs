//! Workspace API tokens on SQLite and PostgreSQL: shown once and stored only as a hash, checked
//! by hash, refused when malformed, unknown, revoked or expired, scoped, optionally bound to a
//! chatbot, revoked only within their workspace, audited.

use crate::helpers::{Backend, both_backends};
use crate::keys::http_world_with;
use chrono::Utc;
use keyward::tokens::{TOKEN_PREFIX, TokenScope};
use keyward_server::entities::{api_token, audit_event};
use keyward_server::services::api_tokens::{self, NewToken};
use keyward_server::services::audit::By;
use keyward_server::services::chatbots;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use uuid::Uuid;

fn new(name: &str, scopes: &[TokenScope]) -> NewToken {
    NewToken {
        name: name.into(),
        scopes: scopes.to_vec(),
        chatbot: None,
        expires_in_days: None,
    }
}

async fn token_lifecycle(backend: Backend) {
    let w = http_world_with(backend, Default::default(), |_| {}).await;
    let db = &w.app.db;
    let by = By::cli();
    let ws = w.ws.id;

    let (view, token) = api_tokens::create(
        db,
        &by,
        ws,
        new("CI bot", &[TokenScope::Chat, TokenScope::Models]),
        None,
    )
    .await
    .unwrap();
    assert!(token.starts_with(TOKEN_PREFIX));
    assert_eq!(token.len(), 46, "kw_ + 256 bits in URL-safe base64");
    assert_eq!(view.shown, format!("{}…", &token[..9]));
    assert_eq!(view.scopes, [TokenScope::Chat, TokenScope::Models]);
    // Only the hash is stored: the row never holds the token.
    let row = api_token::Entity::find_by_id(Uuid::parse_str(&view.id).unwrap())
        .one(db)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(row.token_hash, token.as_str());
    assert!(!format!("{row:?}").contains(&token[9..]));
    assert_eq!(row.token_hash.len(), 64);

    // The token authenticates; scopes and workspace come back; last use is recorded.
    let auth = api_tokens::authenticate(db, &token).await.unwrap().unwrap();
    assert_eq!(auth.workspace, ws);
    assert!(auth.allows(TokenScope::Chat) && auth.allows(TokenScope::Models));
    assert!(!auth.allows(TokenScope::Management));
    assert!(
        api_tokens::list(db, ws).await.unwrap()[0]
            .last_used_at
            .is_some()
    );

    // Anything else is no token: one character changed, malformed, another prefix, empty.
    let mut altered = token.to_string();
    let last = altered.pop().unwrap();
    altered.push(if last == 'A' { 'B' } else { 'A' });
    for bad in [
        altered.as_str(),
        "kw_short",
        "",
        &token[..token.len() - 1],
        &format!("sk_{}", &token[3..]),
    ] {
        assert_eq!(
            api_tokens::authenticate(db, bad).await.unwrap(),
            None,
            "{bad:?}"
        );
    }

    // Revoking: only within the workspace (another workspace's id is not found), then refused.
    let id = Uuid::parse_str(&view.id).unwrap();
    let other = Uuid::new_v4();
    assert!(matches!(
        api_tokens::revoke(db, &w.app.state.changes, &by, other, id).await,
        Err(keyward_server::error::ServiceError::NotFound)
    ));
    assert!(
        api_tokens::authenticate(db, &token)
            .await
            .unwrap()
            .is_some()
    );
    api_tokens::revoke(db, &w.app.state.changes, &by, ws, id)
        .await
        .unwrap();
    api_tokens::revoke(db, &w.app.state.changes, &by, ws, id)
        .await
        .unwrap();
    assert_eq!(api_tokens::authenticate(db, &token).await.unwrap(), None);
    let listed = api_tokens::list(db, ws).await.unwrap();
    assert!(listed[0].revoked);

    // Expired tokens are refused.
    let (v2, t2) = api_tokens::create(
        db,
        &by,
        ws,
        NewToken {
            expires_in_days: Some(1),
            ..new("Short-lived", &[TokenScope::Management])
        },
        None,
    )
    .await
    .unwrap();
    assert!(api_tokens::authenticate(db, &t2).await.unwrap().is_some());
    let mut r2: api_token::ActiveModel =
        api_token::Entity::find_by_id(Uuid::parse_str(&v2.id).unwrap())
            .one(db)
            .await
            .unwrap()
            .unwrap()
            .into();
    r2.expires_at = Set(Some(Utc::now() - chrono::Duration::seconds(1)));
    r2.update(db).await.unwrap();
    assert_eq!(api_tokens::authenticate(db, &t2).await.unwrap(), None);
    assert!(
        api_tokens::list(db, ws)
            .await
            .unwrap()
            .iter()
            .any(|t| t.expired)
    );

    // Bound to a chatbot: the binding comes back; deleting the chatbot ends the token.
    let bot = chatbots::create(
        db,
        &by,
        ws,
        chatbots::NewChatbot {
            name: "Support".into(),
            provider: "openai".into(),
            model: String::new(),
            system_prompt: String::new(),
            greeting: String::new(),
            public: false,
        },
    )
    .await
    .unwrap();
    let (_, t3) = api_tokens::create(
        db,
        &by,
        ws,
        NewToken {
            chatbot: Some(bot.id),
            ..new("Widget", &[TokenScope::Chat])
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        api_tokens::authenticate(db, &t3)
            .await
            .unwrap()
            .unwrap()
            .chatbot,
        Some(bot.id)
    );
    // A chatbot of no workspace of ours cannot be bound.
    assert!(
        api_tokens::create(
            db,
            &by,
            ws,
            NewToken {
                chatbot: Some(Uuid::new_v4()),
                ..new("Bad", &[TokenScope::Chat])
            },
            None
        )
        .await
        .is_err()
    );
    chatbots::delete(db, &w.app.state.changes, &by, ws, bot.id, true)
        .await
        .unwrap();
    assert_eq!(api_tokens::authenticate(db, &t3).await.unwrap(), None);

    // Bad input gets a clear error.
    for (n, scopes, days) in [
        ("", vec![TokenScope::Chat], None),
        ("x", vec![], None),
        ("x", vec![TokenScope::Chat], Some(0)),
        ("x", vec![TokenScope::Chat], Some(100_000)),
    ] {
        let e = api_tokens::create(
            db,
            &by,
            ws,
            NewToken {
                name: n.into(),
                scopes,
                chatbot: None,
                expires_in_days: days,
            },
            None,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(e, keyward_server::error::ServiceError::Invalid(_)),
            "{e:?}"
        );
    }

    // Audited with the shown prefix only.
    let events = audit_event::Entity::find()
        .filter(audit_event::Column::WorkspaceId.eq(ws))
        .filter(audit_event::Column::Action.starts_with("token."))
        .all(db)
        .await
        .unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "token.created",
            "token.revoked",
            "token.created",
            "token.created"
        ]
    );
    for e in &events {
        assert!(!format!("{e:?}").contains(&token[9..]));
    }
}
both_backends!(token_lifecycle, super::token_lifecycle);
