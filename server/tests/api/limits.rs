//! Spend control over HTTP against the mock provider, on SQLite and PostgreSQL: a budget holds
//! exactly under 200 concurrent requests (and so does a platform credit balance), requests per
//! minute hold exactly per window (injected clock), token and concurrency limits, budget windows
//! rolling over, a budget set mid-window counting what was already spent, streams settling when
//! cut or abandoned, a request within its token's limits refused by its workspace's budget, both
//! wire formats' 429s with `Retry-After` and `x-ratelimit-*`, the visitor's and the member's
//! sentences, and cost-bearing fields refused on platform keys.

use crate::chat::{Chat, chat_world, events};
use crate::helpers::{Backend, both_backends, eventually};
use crate::public_api::token;
use keyward::chat::ChatEvent;
use keyward::limits::{Budget, Consumption, Limits, Scope, ScopeKind, Window};
use keyward::tokens::TokenScope;
use keyward::usage::{MICRO, Price};
use keyward_server::entities::{credential, usage_record};
use keyward_server::mock_provider::MockConfig;
use keyward_server::services::audit::By;
use keyward_server::services::keys::{self, NewKey};
use keyward_server::services::limits::{self, Target};
use keyward_server::services::{credits, keys::Scope as KeyScope};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use secrecy::SecretString;
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

/// 2 micro-credits an input token, 10 an output token.
const PRICE: Price = Price {
    input: 2 * MICRO,
    output: 10 * MICRO,
};

/// The worst case of [`hi`] with `max_tokens` 10: its input bound (25 tokens: 17 bytes of
/// text and 8 of framing) × 2 + 10 × 10.
const HI_ASK: i64 = 150;
/// What [`hi`] costs: 1 input token ("hi"), 3 output tokens ("You said: hi").
const HI_COST: i64 = 32;

fn hi(max_tokens: u64) -> Value {
    json!({"model": "openai/mock-small", "max_tokens": max_tokens,
           "messages": [{"role": "user", "content": "hi"}]})
}

async fn world(backend: Backend, mock: MockConfig) -> Chat {
    let c = chat_world(backend, mock, |_| {}).await;
    let (db, changes) = (&c.w.app.db, &c.w.app.state.changes);
    credits::set_price(db, changes, &By::cli(), "openai", "mock-small", PRICE)
        .await
        .unwrap();
    c
}

fn budget(micro: i64, window: Window) -> Limits {
    Limits {
        budget: Some(Budget {
            micro,
            window,
            alert_percent: 80,
        }),
        ..Limits::default()
    }
}

async fn set(c: &Chat, kind: ScopeKind, subject: Uuid, l: Limits) {
    let target = Target {
        kind,
        subject: subject.to_string(),
        workspace: Some(c.w.ws.id),
        name: format!("test {}", kind.as_str()),
    };
    let (db, changes) = (&c.w.app.db, &c.w.app.state.changes);
    limits::set(db, changes, &By::cli(), &target, Some(l))
        .await
        .unwrap();
}

async fn post(
    c: &Chat,
    auth: &str,
    path: &str,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req =
        c.w.app
            .client
            .post(c.w.app.url(path))
            .header("authorization", format!("Bearer {auth}"))
            .json(body);
    if path == "/v1/messages" {
        req = req.header("anthropic-version", "2023-06-01");
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, body)
}

async fn consumption(c: &Chat, scope: Scope, l: Limits) -> Consumption {
    c.w.app
        .state
        .chat
        .spend()
        .consumption(scope, l)
        .await
        .unwrap()
}

/// The workspace's records, once written; none was dropped.
async fn records(c: &Chat) -> Vec<usage_record::Model> {
    c.w.app.state.usage.flush().await;
    let stats = c.w.app.state.usage.stats();
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(stats.dropped.load(Relaxed), 0, "records were dropped");
    assert_eq!(stats.failed_flushes.load(Relaxed), 0, "a flush failed");
    usage_record::Entity::find()
        .filter(usage_record::Column::WorkspaceId.eq(c.w.ws.id))
        .all(&c.w.app.db)
        .await
        .unwrap()
}

fn header(h: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    h.get(name).map(|v| v.to_str().unwrap().to_string())
}

/// 200 requests at once against a workspace budget that holds exactly 50 worst cases: 50 are
/// served, 150 refused with OpenAI's `insufficient_quota`; what was spent stays within the
/// budget, and what settling freed is reservable to the micro-credit.
async fn budget_holds_under_concurrency(backend: Backend) {
    let mock = MockConfig {
        latency: Duration::from_millis(1500),
        ..MockConfig::default()
    };
    let c = world(backend, mock).await;
    let (_, tok) = token(&c, &[TokenScope::Chat]).await;
    let limit = budget(50 * HI_ASK, Window::Month);
    set(&c, ScopeKind::Workspace, c.w.ws.id, limit).await;
    let body = hi(10);
    let answers = futures_util::future::join_all(
        (0..200).map(|_| post(&c, &tok, "/v1/chat/completions", &body)),
    )
    .await;
    let ok = answers.iter().filter(|a| a.0 == 200).count();
    assert_eq!(ok, 50, "exactly the budget's worth is served");
    for (status, h, body) in answers.iter().filter(|a| a.0 != 200) {
        assert_eq!(*status, 429, "{body}");
        assert_eq!(body["error"]["code"], "insufficient_quota", "{body}");
        assert_eq!(body["error"]["type"], "insufficient_quota");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("workspace budget"), "{message}");
        let retry: u64 = header(h, "retry-after").unwrap().parse().unwrap();
        assert!(
            retry > 0 && retry <= 31 * 86_400,
            "until the month ends: {retry}"
        );
        assert_eq!(header(h, "x-should-retry").as_deref(), Some("false"));
    }
    let recs = records(&c).await;
    let spent: i64 = recs.iter().map(|r| r.cost).sum();
    assert_eq!(spent, 50 * HI_COST);
    assert!(spent <= 50 * HI_ASK);
    let refused = recs
        .iter()
        .filter(|r| r.error_class.as_deref() == Some("limit:workspace:budget"))
        .count();
    assert_eq!(
        refused, 150,
        "each refusal is a usage record naming the limit"
    );
    let now = consumption(&c, Scope::Workspace(c.w.ws.id), limit).await;
    assert_eq!((now.spent, now.reserved, now.in_flight), (spent, 0, 0));
    // Left: 7500 − 1600 = 5900. A worst case of 50 + 10 × 585 = 5900 fits exactly; one more
    // output token does not.
    let left = 50 * HI_ASK - spent;
    let (s, _, b) = post(&c, &tok, "/v1/chat/completions", &hi(586)).await;
    assert_eq!(s, 429, "{b}");
    assert_eq!(left, 50 + 10 * 585);
    let (s, _, b) = post(&c, &tok, "/v1/chat/completions", &hi(585)).await;
    assert_eq!(s, 200, "{b}");
    let spent: i64 = records(&c).await.iter().map(|r| r.cost).sum();
    assert!(spent <= 50 * HI_ASK);
    c.w.app.state.tasks.close();
}
both_backends!(
    budget_holds_under_concurrency,
    super::budget_holds_under_concurrency
);

/// The platform's credits use the same reservations: 200 platform-key requests at once against
/// a balance that covers 50 worst cases serve exactly 50, and the balance never goes below 0.
async fn platform_credits_never_overdraw(backend: Backend) {
    let mock = MockConfig {
        latency: Duration::from_millis(1500),
        ..MockConfig::default()
    };
    let c = world(backend, mock).await;
    let db = &c.w.app.db;
    let ws_key = credential::Entity::find()
        .filter(credential::Column::WorkspaceId.eq(c.w.ws.id))
        .one(db)
        .await
        .unwrap()
        .unwrap();
    let changes = &c.w.app.state.changes;
    keys::delete(
        db,
        changes,
        &By::cli(),
        KeyScope::Workspace(c.w.ws.id),
        ws_key.id,
    )
    .await
    .unwrap();
    keys::add(
        c.w.app.state.key_deps(),
        &By::cli(),
        KeyScope::Platform,
        NewKey {
            provider: "openai".into(),
            key: SecretString::from("sk-platform-limits-key-00000000001"),
            default_model: String::new(),
            base_url: String::new(),
        },
    )
    .await
    .unwrap();
    let b = credits::current_balance(db, c.w.ws.id).await.unwrap();
    credits::top_up(db, changes, &By::cli(), c.w.ws.id, 50 * HI_ASK - b, "test")
        .await
        .unwrap();
    let (_, tok) = token(&c, &[TokenScope::Chat]).await;
    let body = hi(10);
    let answers = futures_util::future::join_all(
        (0..200).map(|_| post(&c, &tok, "/v1/chat/completions", &body)),
    )
    .await;
    let ok = answers.iter().filter(|a| a.0 == 200).count();
    assert_eq!(ok, 50);
    for (status, h, body) in answers.iter().filter(|a| a.0 != 200) {
        assert_eq!(*status, 429, "{body}");
        assert_eq!(body["error"]["code"], "insufficient_quota");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("credit balance")
        );
        assert_eq!(
            header(h, "x-keyward-key-source").as_deref(),
            Some("platform")
        );
    }
    let recs = records(&c).await;
    assert_eq!(recs.iter().map(|r| r.credits).sum::<i64>(), 50 * HI_COST);
    let after = credits::current_balance(db, c.w.ws.id).await.unwrap();
    assert_eq!(after, 50 * HI_ASK - 50 * HI_COST);
    // Once the debits are written the owed credits leave the counters: the whole remaining
    // balance is reservable again.
    let owed = consumption(&c, Scope::Credits(c.w.ws.id), budget(after, Window::Total)).await;
    assert_eq!((owed.spent, owed.reserved), (0, 0));
    // A cost-bearing field is refused on the platform key, with a clear message.
    let mut search = hi(10);
    search["web_search_options"] = json!({});
    let (s, _, b) = post(&c, &tok, "/v1/chat/completions", &search).await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"]["code"], "unpriced_field");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("web_search_options")
    );
    let mut tier = hi(10);
    tier["service_tier"] = json!("priority");
    assert_eq!(post(&c, &tok, "/v1/chat/completions", &tier).await.0, 400);
    tier["service_tier"] = json!("auto");
    assert_eq!(post(&c, &tok, "/v1/chat/completions", &tier).await.0, 200);
    c.w.app.state.tasks.close();
}
both_backends!(
    platform_credits_never_overdraw,
    super::platform_credits_never_overdraw
);

/// Requests per minute on a token hold exactly per minute of an injected clock, with OpenAI's
/// headers on every answer; Anthropic's shape on `/v1/messages`.
async fn requests_per_minute_per_window(backend: Backend) {
    let c = world(backend, MockConfig::default()).await;
    let (token_id, tok) = token(&c, &[TokenScope::Chat]).await;
    let rpm = Limits {
        requests_per_minute: Some(10),
        ..Limits::default()
    };
    set(&c, ScopeKind::Token, token_id, rpm).await;
    let clock = c.w.app.state.chat.spend().clock().clone();
    // 2026-12-01T10:00:20Z.
    let t0 = 1_796_119_220;
    for minute in 0..2 {
        clock.set(t0 + minute * 60);
        let mut ok = 0;
        for i in 0..25 {
            let (s, h, b) = post(&c, &tok, "/v1/chat/completions", &hi(10)).await;
            if s == 200 {
                ok += 1;
                assert_eq!(
                    header(&h, "x-ratelimit-limit-requests").as_deref(),
                    Some("10")
                );
                let left = header(&h, "x-ratelimit-remaining-requests").unwrap();
                assert_eq!(left, (10 - ok).to_string(), "request {i}");
                assert_eq!(
                    header(&h, "x-ratelimit-reset-requests").as_deref(),
                    Some("40s")
                );
            } else {
                assert_eq!(s, 429, "{b}");
                assert_eq!(b["error"]["code"], "rate_limit_exceeded");
                assert_eq!(b["error"]["type"], "requests");
                assert_eq!(header(&h, "retry-after").as_deref(), Some("40"));
                assert_eq!(header(&h, "x-should-retry").as_deref(), Some("true"));
                assert_eq!(
                    header(&h, "x-ratelimit-remaining-requests").as_deref(),
                    Some("0")
                );
            }
        }
        assert_eq!(ok, 10, "minute {minute}");
    }
    // Anthropic's shape for the same refusal.
    let body = json!({"model": "openai/mock-small", "max_tokens": 10,
                      "messages": [{"role": "user", "content": "hi"}]});
    let (s, h, b) = post(&c, &tok, "/v1/messages", &body).await;
    assert_eq!(s, 429, "{b}");
    assert_eq!(b["type"], "error");
    assert_eq!(b["error"]["type"], "rate_limit_error");
    assert!(header(&h, "retry-after").is_some());
    c.w.app.state.tasks.close();
}
both_backends!(
    requests_per_minute_per_window,
    super::requests_per_minute_per_window
);

/// Output tokens per minute count each request's worst case while it runs and what it used
/// once done; concurrent requests on a chatbot's token stop at the limit of at once.
async fn tokens_and_concurrency(backend: Backend) {
    let mock = MockConfig {
        latency: Duration::from_millis(800),
        ..MockConfig::default()
    };
    let c = world(backend, mock).await;
    let (token_id, tok) = token(&c, &[TokenScope::Chat]).await;
    let tpm = Limits {
        output_tokens_per_minute: Some(100),
        ..Limits::default()
    };
    set(&c, ScopeKind::Workspace, c.w.ws.id, tpm).await;
    let clock = c.w.app.state.chat.spend().clock().clone();
    clock.set(1_796_119_200);
    // A worst case above the limit itself can never pass: no Retry-After.
    let (s, h, b) = post(&c, &tok, "/v1/chat/completions", &hi(101)).await;
    assert_eq!(
        (s, b["error"]["type"].as_str()),
        (429, Some("tokens")),
        "{b}"
    );
    assert_eq!(header(&h, "retry-after"), None);
    // Three at once asking 40 each: two fit in 100, the third does not.
    let (forty, ten) = (hi(40), hi(10));
    let answers = futures_util::future::join_all(
        (0..3).map(|_| post(&c, &tok, "/v1/chat/completions", &forty)),
    )
    .await;
    let mut statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 429]);
    let ok = answers.iter().find(|a| a.0 == 200).unwrap();
    assert_eq!(
        header(&ok.1, "x-ratelimit-limit-tokens").as_deref(),
        Some("100")
    );
    // Done, they count what they used (3 each): 94 left, so 90 fits now.
    let now = consumption(&c, Scope::Workspace(c.w.ws.id), tpm).await;
    assert_eq!((now.output_tokens, now.in_flight), (6, 0));
    assert_eq!(post(&c, &tok, "/v1/chat/completions", &hi(90)).await.0, 200);

    // Concurrency on the token: 2 at once.
    let two = Limits {
        concurrent: Some(2),
        ..Limits::default()
    };
    set(&c, ScopeKind::Workspace, c.w.ws.id, Limits::default()).await;
    set(&c, ScopeKind::Token, token_id, two).await;
    let answers = futures_util::future::join_all(
        (0..5).map(|_| post(&c, &tok, "/v1/chat/completions", &ten)),
    )
    .await;
    assert_eq!(answers.iter().filter(|a| a.0 == 200).count(), 2);
    for (s, h, b) in answers.iter().filter(|a| a.0 != 200) {
        assert_eq!(*s, 429);
        assert_eq!(b["error"]["code"], "rate_limit_exceeded");
        assert!(b["error"]["message"].as_str().unwrap().contains("at once"));
        assert_eq!(header(h, "retry-after").as_deref(), Some("1"));
    }
    assert_eq!(post(&c, &tok, "/v1/chat/completions", &hi(10)).await.0, 200);
    let classes: Vec<_> = records(&c)
        .await
        .into_iter()
        .filter_map(|r| r.error_class)
        .collect();
    assert!(
        classes.contains(&"limit:workspace:otpm".to_string()),
        "{classes:?}"
    );
    assert!(
        classes.contains(&"limit:token:concurrent".to_string()),
        "{classes:?}"
    );
    c.w.app.state.tasks.close();
}
both_backends!(tokens_and_concurrency, super::tokens_and_concurrency);

/// A daily budget: spent to its end before midnight, open again after it; a budget set later
/// in a window counts what the records say was already spent in it; a request within its
/// token's limits is refused by its workspace's budget, and the token's counters do not move.
async fn windows_and_scopes(backend: Backend) {
    let c = world(backend, MockConfig::default()).await;
    let (token_id, tok) = token(&c, &[TokenScope::Chat]).await;
    // Spent before any limit: 3 requests.
    for _ in 0..3 {
        assert_eq!(post(&c, &tok, "/v1/chat/completions", &hi(10)).await.0, 200);
    }
    c.w.app.state.usage.flush().await;
    let clock = c.w.app.state.chat.spend().clock().clone();
    let now = chrono::Utc::now().timestamp();
    let midnight = now - now.rem_euclid(86_400) + 86_400;
    clock.set(midnight - 30);
    // Room for the 3 already spent plus 2 worst cases.
    let daily = budget(3 * HI_COST + 2 * HI_ASK, Window::Day);
    set(&c, ScopeKind::Workspace, c.w.ws.id, daily).await;
    let token_limits = Limits {
        requests_per_minute: Some(1000),
        ..Limits::default()
    };
    set(&c, ScopeKind::Token, token_id, token_limits).await;
    let served = {
        let mut n = 0;
        while post(&c, &tok, "/v1/chat/completions", &hi(10)).await.0 == 200 {
            n += 1;
            assert!(n < 100, "the budget never refused");
        }
        n
    };
    // Each reserves 150 and settles at 32: the room of 2 worst cases (300) admits requests
    // while 32 × served + 150 ≤ 300, so 5 of them.
    let room = 2 * HI_ASK;
    assert_eq!(served, (room - HI_ASK) / HI_COST + 1);
    let (s, _, b) = post(&c, &tok, "/v1/chat/completions", &hi(10)).await;
    assert_eq!(s, 429);
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("workspace budget"),
        "{b}"
    );
    let used = consumption(&c, Scope::Token(token_id), token_limits).await;
    assert_eq!(
        used.requests as i64, served,
        "the refusals reserved nothing on the token"
    );
    let spent = consumption(&c, Scope::Workspace(c.w.ws.id), daily).await;
    assert!(spent.spent <= 3 * HI_COST + 2 * HI_ASK);
    assert_eq!(spent.budget_resets_in, Some(30));
    // After midnight, a new day.
    clock.set(midnight + 5);
    assert_eq!(post(&c, &tok, "/v1/chat/completions", &hi(10)).await.0, 200);
    c.w.app.state.tasks.close();
}
both_backends!(windows_and_scopes, super::windows_and_scopes);

/// Streams settle when they end: a provider cutting one midway, and a client leaving one; the
/// chatbot's budget holds only what they used. The visitor reads a friendly sentence when the
/// chatbot's budget is spent; the owner's playground names the limit; the alert is audited.
async fn streams_settle_and_sentences(backend: Backend) {
    let mock = MockConfig {
        tokens_per_sec: 20,
        ..MockConfig::default()
    };
    let c = world(backend, mock).await;
    let bot = Uuid::parse_str(&c.bot_id).unwrap();
    let cap = budget(100_000, Window::Total);
    set(&c, ScopeKind::Chatbot, bot, cap).await;
    // A provider that drops the connection after a few tokens.
    c.add_key(&c.bot_id, "sk-cut-limits-key-000000000000001")
        .await;
    let evs = events(
        c.send(
            &c.visitor_url(),
            None,
            json!({"message": "one two three four five six"}),
        )
        .await,
    )
    .await;
    assert!(
        matches!(evs.last(), Some(ChatEvent::Error { .. })),
        "{evs:?}"
    );
    let spent_of_records = || async {
        records(&c)
            .await
            .iter()
            .filter(|r| r.chatbot_id == Some(bot))
            .map(|r| r.cost)
            .sum::<i64>()
    };
    let after_cut = eventually(
        Duration::from_secs(10),
        "the cut stream settled",
        || async {
            let now = consumption(&c, Scope::Chatbot(bot), cap).await;
            (now.in_flight == 0).then_some(now)
        },
    )
    .await;
    assert_eq!(after_cut.reserved, 0);
    assert!(after_cut.spent > 0, "the part produced is charged");
    assert_eq!(after_cut.spent, spent_of_records().await);

    // A visitor who leaves after the first words: the stream is dropped and settled.
    let chatbot_key = credential::Entity::find()
        .filter(credential::Column::OwnerId.eq(bot))
        .one(&c.w.app.db)
        .await
        .unwrap()
        .unwrap();
    keys::delete(
        &c.w.app.db,
        &c.w.app.state.changes,
        &By::cli(),
        KeyScope::Chatbot {
            workspace: c.w.ws.id,
            chatbot: bot,
        },
        chatbot_key.id,
    )
    .await
    .unwrap();
    let long = (0..60)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let res = c
        .send(&c.visitor_url(), None, json!({"message": long}))
        .await;
    assert_eq!(res.status(), 200);
    let mut body = res.bytes_stream();
    use futures_util::StreamExt;
    let _ = body.next().await;
    let _ = body.next().await;
    drop(body);
    let left = eventually(
        Duration::from_secs(10),
        "the abandoned stream settled",
        || async {
            let now = consumption(&c, Scope::Chatbot(bot), cap).await;
            (now.in_flight == 0 && now.spent > after_cut.spent).then_some(now)
        },
    )
    .await;
    assert_eq!(left.reserved, 0);
    let recorded = eventually(Duration::from_secs(10), "its record", || async {
        let s = spent_of_records().await;
        (s == left.spent).then_some(s)
    })
    .await;
    assert_eq!(recorded, left.spent);

    // Spend the rest: the budget is now what was spent, so nothing more fits.
    let spent_cap = budget(left.spent, Window::Total);
    set(&c, ScopeKind::Chatbot, bot, spent_cap).await;
    let evs = events(
        c.send(&c.visitor_url(), None, json!({"message": "hello"}))
            .await,
    )
    .await;
    match evs.last() {
        Some(ChatEvent::Error { message, class, .. }) => {
            assert!(message.contains("usage limit"), "{message}");
            assert!(
                !message.contains("chatbot budget"),
                "visitors are not told the scope"
            );
            assert_eq!(*class, None);
        }
        other => panic!("{other:?}"),
    }
    // The owner's playground names the limit, and so does the usage log.
    set(&c, ScopeKind::Workspace, c.w.ws.id, budget(0, Window::Day)).await;
    let body = json!({"message": "hello", "model": "openai/mock-small"});
    let evs = events(c.send(&c.playground_url(), Some(&c.w.owner), body).await).await;
    match evs.last() {
        Some(ChatEvent::Error { message, class, .. }) => {
            assert!(
                message.contains("The workspace budget of 0 credits is spent"),
                "{message}"
            );
            assert_eq!(class.as_deref(), Some("limit:workspace:budget"));
        }
        other => panic!("{other:?}"),
    }
    let recs = records(&c).await;
    assert!(
        recs.iter()
            .any(|r| r.error_class.as_deref() == Some("limit:chatbot:budget")),
        "the owner's usage log names the limit"
    );
    c.w.app.state.tasks.close();
}
both_backends!(
    streams_settle_and_sentences,
    super::streams_settle_and_sentences
);

/// A soft alert is raised once, in the audit log, when a budget's spend crosses its share.
async fn alerts_reach_the_audit_log(backend: Backend) {
    use keyward_server::entities::audit_event;
    let c = world(backend, MockConfig::default()).await;
    let (_, tok) = token(&c, &[TokenScope::Chat]).await;
    let limit = budget(10 * HI_ASK, Window::Week);
    let limit = Limits {
        budget: Some(Budget {
            alert_percent: 5,
            ..limit.budget.unwrap()
        }),
        ..limit
    };
    set(&c, ScopeKind::Workspace, c.w.ws.id, limit).await;
    for _ in 0..4 {
        assert_eq!(post(&c, &tok, "/v1/chat/completions", &hi(10)).await.0, 200);
    }
    let alerts = eventually(Duration::from_secs(10), "the alert", || async {
        let rows = audit_event::Entity::find()
            .filter(audit_event::Column::Action.eq("limits.alert"))
            .all(&c.w.app.db)
            .await
            .unwrap();
        (!rows.is_empty()).then_some(rows)
    })
    .await;
    // 5 % of 1500 is 75: crossed by the third request (96), once.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(alerts.len(), 1);
    let detail = alerts[0].detail.clone().unwrap();
    assert!(
        detail.contains("workspace budget: 0.000096 of 0.0015"),
        "{detail}"
    );
    assert_eq!(alerts[0].workspace_id, Some(c.w.ws.id));
    // The usage report carries the budget and each day's cost for the chart's budget line.
    records(&c).await;
    let r = keyward_server::services::usage::report(
        &c.w.app.db,
        &c.w.app.state.credits,
        Some(&c.w.ws),
        "",
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.budget, limit.budget);
    let today = r.days.last().unwrap();
    assert_eq!(today.cost_by_provider.iter().sum::<i64>(), 4 * HI_COST);
    assert_eq!(today.cost_by_provider.len(), today.by_provider.len());
    c.w.app.state.tasks.close();
}
both_backends!(
    alerts_reach_the_audit_log,
    super::alerts_reach_the_audit_log
);

/// The official `openai` and `anthropic` Python SDKs retry a 429 of Keyward's concurrency limit
/// after its `Retry-After` and are served; they do not retry a spent budget
/// (end2end/sdk/test_limits_sdk.py).
async fn sdks_retry_on_limits(backend: Backend) {
    let mock = MockConfig {
        latency: Duration::from_millis(500),
        ..MockConfig::default()
    };
    let c = world(backend, mock).await;
    let (one_id, one) = token(&c, &[TokenScope::Chat]).await;
    let (broke_id, broke) = token(&c, &[TokenScope::Chat]).await;
    let at_once = Limits {
        concurrent: Some(1),
        ..Limits::default()
    };
    set(&c, ScopeKind::Token, one_id, at_once).await;
    set(&c, ScopeKind::Token, broke_id, budget(0, Window::Month)).await;
    let root = crate::helpers::repo_root();
    let python = format!("{}/python", crate::helpers::venv_bin("sdk"));
    let url = c.w.app.url("");
    let out = tokio::process::Command::new(python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(root.join("end2end/sdk/test_limits_sdk.py"))
        .env("KEYWARD_URL", url.trim_end_matches('/'))
        .env("KEYWARD_ONE_AT_ONCE", &one)
        .env("KEYWARD_NO_BUDGET", &broke)
        .output()
        .await
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the SDK tests failed:\n{report}");
    assert!(report.contains("3 passed"), "{report}");
    // Each SDK's second request was refused once, then served.
    let recs = records(&c).await;
    let of = |id: Uuid, class: Option<&str>| {
        recs.iter()
            .filter(|r| r.api_token_id == Some(id) && r.error_class.as_deref() == class)
            .count()
    };
    assert!(of(one_id, Some("limit:token:concurrent")) >= 2, "{recs:?}");
    assert_eq!(of(one_id, None), 4);
    assert_eq!(of(broke_id, Some("limit:token:budget")), 2, "not retried");
    c.w.app.stop().await;
}
both_backends!(sdks_retry_on_limits, super::sdks_retry_on_limits);

/// What the mock provider has been asked to chat, in all.
async fn chat_calls(c: &Chat) -> u64 {
    let v: Value = reqwest::get(format!("http://{}/__mock/stats", c.w.mock))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["chat_requests"].as_u64().unwrap()
}

/// One request to every route of the application (`startup::route_table`), as the owner (a
/// session cookie and the CSRF header) and with an API token of every scope at once, carrying a
/// body that is a chat request wherever one is read. Server functions get an empty form (last:
/// one of them signs out). Returns each route's status and answer.
async fn probe_every_route(
    c: &Chat,
    cookie: &str,
    tok: &str,
) -> Vec<(String, String, u16, String)> {
    let mut table = keyward_server::startup::route_table();
    let is_server_fn = |p: &str| {
        !p.contains('{')
            && p.starts_with("/api/")
            && !p.starts_with("/api/v1/")
            && p != "/api/usage.csv"
    };
    table.sort_by_key(|(_, p)| is_server_fn(p));
    let body = json!({"message": "probe", "model": "openai/mock-small", "max_tokens": 10,
                      "messages": [{"role": "user", "content": "probe"}]});
    let mut out = Vec::new();
    for (method, path) in table {
        let destructive = method == "DELETE";
        let mut url = path.clone();
        for (name, value) in [
            (
                "{workspace}",
                if destructive {
                    Uuid::now_v7().to_string()
                } else if path.starts_with("/api/chat/") {
                    c.w.ws.slug.clone()
                } else {
                    c.w.ws.id.to_string()
                },
            ),
            ("{chatbot}", "helper".to_string()),
            ("{*rest}", "probe".to_string()),
        ] {
            url = url.replace(name, &value);
        }
        while let (Some(a), Some(b)) = (url.find('{'), url.find('}')) {
            url.replace_range(a..=b, &Uuid::now_v7().to_string());
        }
        let m = if method == "ANY" {
            "POST"
        } else {
            method.as_str()
        };
        let mut req =
            c.w.app
                .client
                .request(
                    reqwest::Method::from_bytes(m.as_bytes()).unwrap(),
                    c.w.app.url(&url),
                )
                .header("cookie", cookie)
                .header(keyward::http::CSRF_HEADER, "1")
                .header("x-api-key", tok);
        if path.starts_with("/v1/messages") {
            req = req.header("anthropic-version", "2023-06-01");
        }
        if is_server_fn(&path) {
            req = req
                .header("content-type", "application/x-www-form-urlencoded")
                .body("");
        } else if m != "GET" {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        out.push((method, path, status, text));
    }
    out
}

/// Every route that can reach a provider passes spend control: swept once without limits (the
/// chat routes reach the provider) and once with the workspace's budget at 0 (no route does).
async fn no_route_bypasses_the_limits(backend: Backend) {
    let c = world(backend, MockConfig::default()).await;
    let all = [TokenScope::Chat, TokenScope::Models];
    let (_, tok) = token(&c, &all).await;
    let chat_routes = [
        "/v1/chat/completions",
        "/v1/messages",
        "/api/chat/{workspace}/{chatbot}",
        "/api/workspaces/{workspace}/playground",
    ];
    let table = keyward_server::startup::route_table();
    for r in chat_routes {
        assert!(table.iter().any(|(_, p)| p == r), "{r} is enumerated");
    }
    assert!(
        table.len() > 60,
        "server functions and REST are enumerated: {}",
        table.len()
    );
    let before = chat_calls(&c).await;
    let open = probe_every_route(&c, &c.w.owner, &tok).await;
    let reached = chat_calls(&c).await - before;
    for r in chat_routes {
        let (_, _, status, text) = open.iter().find(|(_, p, _, _)| p == r).unwrap();
        assert_eq!(*status, 200, "{r}: {text}");
    }
    assert!(reached >= 4, "the sweep reaches the provider: {reached}");

    // The workspace's budget at 0: nothing reaches the provider any more.
    set(
        &c,
        ScopeKind::Workspace,
        c.w.ws.id,
        budget(0, Window::Month),
    )
    .await;
    let pw = "correct horse battery";
    let s = crate::helpers::signed_in(&c.w.app.db, "owner@example.com", pw).await;
    let cookie = format!("{}={}", keyward::http::SESSION_COOKIE, s.token.as_str());
    let before = chat_calls(&c).await;
    let closed = probe_every_route(&c, &cookie, &tok).await;
    assert_eq!(
        chat_calls(&c).await,
        before,
        "a route reached the provider past its limits"
    );
    for r in &chat_routes[..2] {
        let (_, _, status, text) = closed.iter().find(|(_, p, _, _)| p == r).unwrap();
        assert_eq!(*status, 429, "{r}: {text}");
    }
    for r in &chat_routes[2..] {
        let (_, _, _, text) = closed.iter().find(|(_, p, _, _)| p == r).unwrap();
        assert!(text.contains("limit"), "{r}: {text}");
    }
    c.w.app.state.tasks.close();
}
both_backends!(
    no_route_bypasses_the_limits,
    super::no_route_bypasses_the_limits
);

/// The management REST API reads and sets limits, through the one guard: a management token
/// (an admin's rights) sets token limits but not the workspace's; the owner's session does;
/// a scope of another workspace is not found; a field the API does not take is refused.
async fn limits_over_rest(backend: Backend) {
    let c = world(backend, MockConfig::default()).await;
    let (_, mgmt) = token(&c, &[TokenScope::Management]).await;
    let (chat_id, _) = token(&c, &[TokenScope::Chat]).await;
    let ws = c.w.ws.id;
    let url = |rest: &str| {
        c.w.app
            .url(&format!("/api/v1/workspaces/{ws}/limits{rest}"))
    };
    let client = &c.w.app.client;
    let body = json!({"requests_per_minute": 5, "budget_micro": 2_000_000, "window": "week"});
    let put = |path: String, auth: bool, body: Value| {
        let mut r = client.put(url(&path)).json(&body);
        r = if auth {
            r.bearer_auth(&mgmt)
        } else {
            r.header("cookie", &c.w.owner)
                .header(keyward::http::CSRF_HEADER, "1")
        };
        r.send()
    };
    let res = put(format!("/token/{chat_id}"), true, body.clone())
        .await
        .unwrap();
    assert_eq!(res.status(), 204, "{}", res.text().await.unwrap());
    let res = put(format!("/workspace/{ws}"), true, body.clone())
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "a management token is not an owner");
    let res = put(format!("/workspace/{ws}"), false, body.clone())
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let res = put(format!("/chatbot/{}", Uuid::now_v7()), false, body.clone())
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let res = put(format!("/galaxy/{ws}"), false, body.clone())
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let res = put(format!("/workspace/{ws}"), false, json!({"budget": 5}))
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let res = put(
        format!("/workspace/{ws}"),
        false,
        json!({"budget_micro": -5}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 400);
    let page: Value = client
        .get(url(""))
        .bearer_auth(&mgmt)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let scope = |kind: &str, id: Uuid| {
        page["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["kind"] == kind && s["subject"] == id.to_string())
            .cloned()
            .unwrap()
    };
    let tok = scope("token", chat_id);
    assert_eq!(tok["limits"]["requests_per_minute"], 5);
    assert_eq!(tok["limits"]["budget"]["window"], "week");
    assert_eq!(tok["editable"], true);
    assert_eq!(
        scope("workspace", ws)["editable"],
        false,
        "not for an admin's token"
    );
    assert_eq!(scope("workspace", ws)["consumption"]["spent"], 0);
    let res = client
        .delete(url(&format!("/token/{chat_id}")))
        .bearer_auth(&mgmt)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let got = limits::get(&c.w.app.db, ScopeKind::Token, &chat_id.to_string())
        .await
        .unwrap();
    assert_eq!(got, None);
    let audit = keyward_server::entities::audit_event::Entity::find()
        .filter(keyward_server::entities::audit_event::Column::Action.eq("limits.updated"))
        .all(&c.w.app.db)
        .await
        .unwrap();
    assert_eq!(audit.len(), 3, "each change is audited");
    c.w.app.state.tasks.close();
}
both_backends!(limits_over_rest, super::limits_over_rest);

/// The operator caps how many workspaces a user may own and withholds the plan's allowance from
/// workspaces users create themselves; platform admins are not capped.
async fn workspace_abuse_is_capped(backend: Backend) {
    use keyward_server::services::workspaces;
    let c = world(backend, MockConfig::default()).await;
    let db = &c.w.app.db;
    let policy = workspaces::policy(db).await.unwrap();
    assert_eq!(
        (policy.owned_per_user, policy.allowance),
        (workspaces::DEFAULT_WORKSPACES_PER_USER, true)
    );
    let p = workspaces::Policy {
        owned_per_user: 2,
        allowance: false,
    };
    workspaces::set_policy(db, &By::cli(), p).await.unwrap();
    // Mia (a member, owning nothing) may create two.
    let mia = crate::helpers::signed_in(db, "mia@example.com", "another good passphrase").await;
    let first = workspaces::create(db, &mia.user, "Mia One").await.unwrap();
    assert!(!first.allowance);
    workspaces::create(db, &mia.user, "Mia Two").await.unwrap();
    let third = workspaces::create(db, &mia.user, "Mia Three").await;
    match third {
        Err(keyward_server::error::ServiceError::Invalid(m)) => {
            assert!(m.contains("you already own 2 workspaces"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    // Without the allowance the month's balance stays 0 (the free plan's allowance is not 0).
    let allowances = credits::allowances(db).await.unwrap();
    let free = allowances
        .iter()
        .find(|(p, _)| *p == keyward::policy::Plan::Free);
    assert!(free.is_some_and(|(_, v)| *v > 0), "{allowances:?}");
    assert_eq!(credits::current_balance(db, first.id).await.unwrap(), 0);
    // The platform admin (the owner) is not capped.
    let admin = crate::helpers::signed_in(db, "owner@example.com", "correct horse battery").await;
    assert!(admin.user.platform_admin);
    for name in ["A1", "A2", "A3"] {
        workspaces::create(db, &admin.user, name).await.unwrap();
    }
    c.w.app.state.tasks.close();
}
both_backends!(workspace_abuse_is_capped, super::workspace_abuse_is_capped);
