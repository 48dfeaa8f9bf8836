//! The gateway's own cost per request, apart from the network: resolving the key on the warm
//! path (cache lookup + the resolution chain; target ≤ 2 µs) and translating an OpenAI-shaped
//! chat to Anthropic Messages and the answer back, plus a 40-event stream (target ≤ 50 µs).

use criterion::{Criterion, criterion_group, criterion_main};
use keyward::policy::Plan;
use keyward_server::config::DatabaseUrl;
use keyward_server::gateway::Gateway;
use keyward_server::gateway::anthropic::{AnthropicStreamTranslator, from_anthropic, to_anthropic};
use keyward_server::gateway::cache::KeyCache;
use keyward_server::services::{accounts, audit::By, keys, workspaces};
use keyward_server::vault::{Vault, master_key::MasterKey};
use secrecy::SecretString;
use serde_json::{Map, Value, json};
use std::hint::black_box;

fn gateway_bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = std::env::temp_dir().join(format!("kw-bench-{}", uuid::Uuid::new_v4()));
    let url = format!("sqlite://{}/bench.db", dir.display());
    let (cache, ws) = rt.block_on(async {
        let db = keyward_server::db::connect_url(&DatabaseUrl::new(url), 2)
            .await
            .unwrap();
        keyward_server::db::migrate(&db).await.unwrap();
        let vault = Vault::open(db.clone(), &MasterKey::generate().unwrap())
            .await
            .unwrap();
        let changes = keyward_server::invalidation::Invalidation::new();
        let (user, ws) = accounts::setup_first_user(
            &db,
            &keyward_server::services::accounts::SignInThrottle::new(100, 100),
            "b@example.com",
            "B",
            "correct horse battery",
            "Bench",
        )
        .await
        .unwrap();
        let plan_by = By::cli();
        workspaces::set_plan(&db, &changes, &plan_by, ws.id, Plan::Business)
            .await
            .unwrap();
        let by = By {
            id: Some(user.id),
            email: user.email,
        };
        let gw = Gateway::new(vec![]).unwrap();
        for (scope, key) in [
            (keys::Scope::Platform, "sk-platform-000000000000000000pp"),
            (
                keys::Scope::Workspace(ws.id),
                "sk-workspace-00000000000000000ww",
            ),
        ] {
            let new = keys::NewKey {
                provider: "openai".into(),
                key: SecretString::from(key),
                default_model: String::new(),
                base_url: String::new(),
            };
            let deps = keys::Deps {
                db: &db,
                vault: &vault,
                gateway: &gw,
                changes: &changes,
            };
            keys::add(deps, &by, scope, new).await.unwrap();
        }
        let cache = KeyCache::new(changes);
        cache.snapshot(&db, &vault, ws.id).await.unwrap();
        (cache, ws.id)
    });
    c.bench_function("gateway/resolve_warm", |b| {
        b.iter(|| {
            let snap = cache.warm(black_box(ws)).expect("warm");
            snap.resolve(black_box("openai"), None, None).unwrap()
        })
    });
    assert_eq!(cache.loads(), 1, "the benchmark stayed on the warm path");

    let mut messages = vec![
        json!({"role": "system", "content": "You are a helpful assistant for Acme's customers."}),
    ];
    for i in 0..9 {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        messages.push(json!({"role": role, "content": format!("Message {i}: how do I reset my password on the Acme dashboard?")}));
    }
    let request: Map<String, Value> =
        json!({"messages": messages, "temperature": 0.7, "max_tokens": 512, "stop": ["\n\n"]})
            .as_object()
            .unwrap()
            .clone();
    let answer = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
        "content": [{"type": "text", "text": "Open Settings, then Security, then Reset password."}],
        "stop_reason": "end_turn", "usage": {"input_tokens": 120, "output_tokens": 12}});
    c.bench_function("gateway/anthropic_translate_request_and_answer", |b| {
        b.iter(|| {
            let body = to_anthropic(black_box(&request), "claude-haiku-4-5", false).unwrap();
            let out = serde_json::to_vec(&body).unwrap();
            let (reply, usage) = from_anthropic(black_box(&answer), 1);
            black_box((out, reply, usage))
        })
    });
    let mut events = vec![(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_1", "model": "claude-haiku-4-5", "usage": {"input_tokens": 120}}}).to_string(),
    )];
    for i in 0..40 {
        events.push(("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": format!("word{i} ")}}).to_string()));
    }
    events.push(("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 40}}).to_string()));
    events.push(("message_stop", json!({"type": "message_stop"}).to_string()));
    c.bench_function("gateway/anthropic_translate_stream_40_events", |b| {
        b.iter(|| {
            let mut t = AnthropicStreamTranslator::new(1);
            let mut n = 0;
            for (name, data) in &events {
                n += t.event(name, data).unwrap().len();
            }
            black_box(n)
        })
    });
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group!(benches, gateway_bench);
criterion_main!(benches);
