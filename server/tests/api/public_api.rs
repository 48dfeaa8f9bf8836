//! The public API (`/v1/chat/completions`, `/v1/messages`, `/v1/models`) over HTTP against the
//! mock provider, on SQLite and PostgreSQL: tokens (Bearer and x-api-key alike, scopes,
//! revocation at once), both wire formats streamed and not, model routing (`provider/model` and
//! bare ids), pass-through of unknown fields, the Keyward headers, each format's error shape,
//! and the usage records.

use crate::chat::{Chat, WS_KEY, chat_world, revoke_at_mock};
use crate::helpers::{Backend, both_backends};
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use keyward::tokens::TokenScope;
use keyward_app::api::AddKey;
use keyward_server::entities::usage_record;
use keyward_server::gateway::Gateway;
use keyward_server::mock_provider::MockConfig;
use keyward_server::services::api_tokens::{self, NewToken};
use keyward_server::services::audit::By;
use keyward_server::services::catalogue::{self, ProviderChange};
use leptos::server_fn::ServerFn;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{Value, json};
use std::time::Instant;
use uuid::Uuid;

/// A workspace API token with `scopes`, made through the service: its id and its secret.
pub(crate) async fn token(c: &Chat, scopes: &[TokenScope]) -> (Uuid, String) {
    let (view, token) = api_tokens::create(
        &c.w.app.db,
        &By::cli(),
        c.w.ws.id,
        NewToken {
            name: "app".into(),
            scopes: scopes.to_vec(),
            chatbot: None,
            expires_in_days: None,
        },
        None,
    )
    .await
    .unwrap();
    (Uuid::parse_str(&view.id).unwrap(), token.to_string())
}

async fn post(c: &Chat, path: &str, auth: (&str, &str), body: Value) -> reqwest::Response {
    c.w.app
        .client
        .post(c.w.app.url(path))
        .header(auth.0, auth.1)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

fn bearer(t: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {t}"))
}

async fn json_of(res: reqwest::Response) -> (u16, reqwest::header::HeaderMap, Value) {
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body: Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    (status, headers, body)
}

/// The `data:` payloads (and event names) of a streamed answer.
async fn sse(res: reqwest::Response) -> Vec<(String, String)> {
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut out = Vec::new();
    let mut s = res.bytes_stream().eventsource();
    while let Some(ev) = s.next().await {
        let ev = ev.unwrap();
        out.push((ev.event, ev.data));
    }
    out
}

async fn mock_stats(c: &Chat) -> Value {
    reqwest::get(format!("http://{}/__mock/stats", c.w.mock))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The workspace's usage records once `expected` have arrived (a stream's record is handed over
/// just after its last event; give it a moment), in order.
async fn records(c: &Chat, expected: usize) -> Vec<usage_record::Model> {
    let what = format!("{expected} usage records");
    let recs = crate::helpers::eventually(std::time::Duration::from_secs(10), &what, || async {
        c.w.app.state.usage.flush().await;
        let recs = usage_record::Entity::find()
            .filter(usage_record::Column::WorkspaceId.eq(c.w.ws.id))
            .order_by_asc(usage_record::Column::Id)
            .all(&c.w.app.db)
            .await
            .unwrap();
        (recs.len() >= expected).then_some(recs)
    })
    .await;
    assert_eq!(recs.len(), expected);
    recs
}

fn overhead_us(h: &reqwest::header::HeaderMap) -> u64 {
    h["x-keyward-overhead-us"]
        .to_str()
        .unwrap()
        .parse()
        .expect("a number of microseconds")
}

async fn openai_wire(backend: Backend) {
    let c = chat_world(backend, MockConfig::default(), |_| {}).await;
    let (token_id, tok) = token(&c, &[TokenScope::Chat, TokenScope::Models]).await;
    let auth = bearer(&tok);
    let auth = (auth.0, auth.1.as_str());

    // Non-streaming, `provider/model`: the provider's answer, the key source, the overhead
    // (less than the whole round trip the client saw).
    let t = Instant::now();
    let res = post(
        &c,
        "/v1/chat/completions",
        auth,
        json!({"model": "openai/mock-small", "messages": [{"role": "user", "content": "hello there"}],
               "seed": 7, "logit_bias": {"42": 1}}),
    )
    .await;
    let total_us = u64::try_from(t.elapsed().as_micros()).unwrap();
    let (s, h, body) = json_of(res).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "You said: hello there"
    );
    assert_eq!(body["usage"]["prompt_tokens"], 2);
    assert_eq!(h["x-keyward-key-source"], "workspace");
    assert!(
        overhead_us(&h) < total_us,
        "{} vs {total_us}",
        overhead_us(&h)
    );
    // Fields Keyward does not know reached the provider.
    let fields = mock_stats(&c).await["last_fields"].clone();
    for f in ["seed", "logit_bias", "messages", "model"] {
        assert!(
            fields.as_array().unwrap().contains(&json!(f)),
            "{f} in {fields}"
        );
    }

    // x-api-key is the same check; a bare model id goes to the default provider (the only
    // one with a key here: openai).
    let (s, h, body) = json_of(
        post(
            &c,
            "/v1/chat/completions",
            ("x-api-key", &tok),
            json!({"model": "mock-small", "messages": [{"role": "user", "content": "bare"}]}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "You said: bare");
    assert_eq!(h["x-keyward-key-source"], "workspace");

    // Streaming: chunks as the provider sent them, then [DONE]; the usage-only chunk only when
    // asked for.
    let events = sse(post(
        &c,
        "/v1/chat/completions",
        auth,
        json!({"model": "openai/mock-small", "stream": true,
                   "messages": [{"role": "user", "content": "stream me please"}]}),
    )
    .await)
    .await;
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "You said: stream me please");
    assert!(chunks.len() > 3, "token by token");
    assert!(
        chunks
            .iter()
            .all(|c| c.get("usage").is_none_or(Value::is_null))
    );
    let events = sse(
        post(
            &c,
            "/v1/chat/completions",
            auth,
            json!({"model": "openai/mock-small", "stream": true, "stream_options": {"include_usage": true},
                   "messages": [{"role": "user", "content": "count me"}]}),
        )
        .await,
    )
    .await;
    let usage: Vec<Value> = events
        .iter()
        .filter(|(_, d)| d != "[DONE]")
        .map(|(_, d)| serde_json::from_str::<Value>(d).unwrap())
        .filter(|c| c["usage"].is_object())
        .collect();
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0]["usage"]["prompt_tokens"], 2);

    // Models: provider/model ids with the key source.
    let res =
        c.w.app
            .client
            .get(c.w.app.url("/v1/models"))
            .header(auth.0, auth.1)
            .send()
            .await
            .unwrap();
    let (s, h, body) = json_of(res).await;
    assert_eq!(s, 200, "{body}");
    assert!(h.contains_key("x-keyward-overhead-us"));
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"openai/mock-small"), "{ids:?}");
    assert!(ids.contains(&"openai/mock-large"), "{ids:?}");
    assert!(ids.iter().all(|i| i.starts_with("openai/")), "{ids:?}");
    assert_eq!(body["data"][0]["key_source"], "workspace");
    // The same list in Anthropic's shape for Anthropic's SDK.
    let res =
        c.w.app
            .client
            .get(c.w.app.url("/v1/models"))
            .header("x-api-key", &tok)
            .header("anthropic-version", "2023-06-01")
            .send()
            .await
            .unwrap();
    let (s, _, body) = json_of(res).await;
    assert_eq!(s, 200);
    assert_eq!(body["data"][0]["type"], "model");
    assert_eq!(body["has_more"], false);

    // Usage: one record per chat request, on the API channel, with the token.
    let recs = records(&c, 4).await;
    assert!(
        recs.iter()
            .all(|r| r.channel == "api" && r.api_token_id == Some(token_id))
    );
    assert!(
        recs.iter()
            .all(|r| r.outcome == "ok" && !r.tokens_estimated)
    );
    assert_eq!(recs[2].output_tokens, 5, "the streamed reply's usage");

    // Errors, in OpenAI's shape.
    let (models_only_id, models_only) = token(&c, &[TokenScope::Models]).await;
    let m = bearer(&models_only);
    let cases: Vec<((&str, String), Value, u16, &str)> = vec![
        (
            ("x-nothing", String::new()),
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
            401,
            "missing_api_key",
        ),
        (
            bearer(&format!("kw_{}", "A".repeat(43))),
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
            401,
            "invalid_api_key",
        ),
        (
            m.clone(),
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
            403,
            "insufficient_scope",
        ),
        (
            bearer(&tok),
            json!({"messages": [{"role": "user", "content": "x"}]}),
            400,
            "invalid_request",
        ),
        (
            bearer(&tok),
            json!({"model": "openai/mock-small", "messages": []}),
            400,
            "invalid_request",
        ),
        (
            bearer(&tok),
            json!({"model": "groq/llama", "messages": [{"role": "user", "content": "x"}]}),
            400,
            "no_key",
        ),
    ];
    for ((hn, hv), body, status, code) in cases {
        let (s, h, out) =
            json_of(post(&c, "/v1/chat/completions", (hn, &hv), body.clone()).await).await;
        assert_eq!(
            (s, out["error"]["code"].as_str().unwrap()),
            (status, code),
            "{body} → {out}"
        );
        assert!(
            out["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        assert!(out["error"]["type"].is_string());
        assert_eq!(h["x-should-retry"], "false");
    }
    let res =
        c.w.app
            .client
            .post(c.w.app.url("/v1/chat/completions"))
            .header("authorization", format!("Bearer {tok}"))
            .body("{not json")
            .send()
            .await
            .unwrap();
    let (s, _, out) = json_of(res).await;
    assert_eq!(
        (s, out["error"]["type"].as_str()),
        (400, Some("invalid_request_error"))
    );
    let (s, _, out) = json_of(post(&c, "/v1/embeddings", auth, json!({})).await).await;
    assert_eq!(
        (s, out["error"]["code"].as_str()),
        (404, Some("unknown_route"))
    );

    // The provider refuses the stored key: 502, not to be retried, the owner's message.
    revoke_at_mock(c.w.mock, WS_KEY).await;
    let (s, h, out) = json_of(
        post(
            &c,
            "/v1/chat/completions",
            auth,
            json!({"model": "openai/mock-small", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 502, "{out}");
    assert_eq!(out["error"]["code"], "provider_key_rejected");
    assert_eq!(h["x-should-retry"], "false");
    assert_eq!(h["x-keyward-key-source"], "workspace");

    // A revoked token stops working at once (the check is cached, and the cache forgets it).
    api_tokens::revoke(
        &c.w.app.db,
        &c.w.app.state.changes,
        &By::cli(),
        c.w.ws.id,
        token_id,
    )
    .await
    .unwrap();
    let (s, _, out) = json_of(post(&c, "/v1/chat/completions", auth, json!({})).await).await;
    assert_eq!(
        (s, out["error"]["code"].as_str()),
        (401, Some("invalid_api_key"))
    );
    let _ = models_only_id;
    c.w.app.stop().await;
}
both_backends!(openai_wire, super::openai_wire);

/// [`chat_world`] with Anthropic pointed at the mock too, with a workspace key of its own
/// (tail 4444; OpenAI's is 1111).
async fn both_providers(backend: Backend) -> Chat {
    let c = chat_world(backend, MockConfig::default(), |_| {}).await;
    // Anthropic points at the mock too, with a workspace key of its own.
    catalogue::update_provider(
        &c.w.app.db,
        &c.w.app.state.changes,
        &Gateway::new(vec![("127.0.0.1".into(), c.w.mock.port())]).unwrap(),
        &By::cli(),
        "anthropic",
        ProviderChange {
            base_url: format!("http://127.0.0.1:{}", c.w.mock.port()),
            default_model: "mock-small".into(),
            byok_enabled: true,
        },
    )
    .await
    .unwrap();
    let (s, out) = c
        .post_form(
            AddKey::PATH,
            vec![
                ("scope", c.ws()),
                ("provider", "anthropic".into()),
                ("key", "sk-ant-workspace-key-0000000004444".into()),
                ("default_model", String::new()),
                ("base_url", String::new()),
            ],
            &c.w.owner.clone(),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    c
}

async fn anthropic_wire(backend: Backend) {
    let c = both_providers(backend).await;
    let (_, tok) = token(&c, &[TokenScope::Chat]).await;
    let auth = ("x-api-key", tok.as_str());

    // Routed to an OpenAI-compatible provider (translated both ways), and to Anthropic.
    for (model, tail) in [
        ("openai/mock-small", "1111"),
        ("anthropic/mock-small", "4444"),
    ] {
        let (s, h, body) = json_of(
            post(
                &c,
                "/v1/messages",
                auth,
                json!({"model": model, "max_tokens": 100, "system": "be brief",
                       "messages": [{"role": "user", "content": [{"type": "text", "text": "hi there"}]}]}),
            )
            .await,
        )
        .await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(body["type"], "message");
        assert_eq!(body["model"], model);
        assert_eq!(
            body["content"][0]["text"],
            "[system: be brief] You said: hi there"
        );
        assert_eq!(body["stop_reason"], "end_turn");
        assert!(body["usage"]["output_tokens"].as_u64().unwrap() > 0);
        assert_eq!(h["x-keyward-key-source"], "workspace");
        assert_eq!(mock_stats(&c).await["last_key_tail"], tail, "{model}");

        let events = sse(post(
            &c,
            "/v1/messages",
            auth,
            json!({"model": model, "max_tokens": 100, "stream": true,
                       "messages": [{"role": "user", "content": "stream it"}]}),
        )
        .await)
        .await;
        let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
        assert_eq!(
            names[..2],
            ["message_start", "content_block_start"],
            "{names:?}"
        );
        assert_eq!(
            names[names.len() - 3..],
            ["content_block_stop", "message_delta", "message_stop"]
        );
        let text: String = events
            .iter()
            .filter(|(e, _)| e == "content_block_delta")
            .map(|(_, d)| {
                serde_json::from_str::<Value>(d).unwrap()["delta"]["text"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(text, "You said: stream it");
        let delta: Value = serde_json::from_str(&events[events.len() - 2].1).unwrap();
        assert_eq!(delta["usage"]["output_tokens"], 4);
    }

    // Errors in Anthropic's shape.
    let (s, _, out) = json_of(post(&c, "/v1/messages", ("x-other", "1"), json!({})).await).await;
    assert_eq!(s, 401);
    assert_eq!(out["type"], "error");
    assert_eq!(out["error"]["type"], "authentication_error");
    let (s, _, out) = json_of(
        post(
            &c,
            "/v1/messages",
            auth,
            json!({"model": "openai/mock-small", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (s, out["error"]["type"].as_str()),
        (400, Some("invalid_request_error"))
    );
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens")
    );
    c.w.app.stop().await;
}
both_backends!(anthropic_wire, super::anthropic_wire);

/// The official `openai` and `anthropic` Python SDKs (pinned, from PyPI, in a virtualenv) run
/// end2end/sdk/test_sdk.py against this server.
async fn official_sdks(backend: Backend) {
    let c = both_providers(backend).await;
    let (_, tok) = token(&c, &[TokenScope::Chat, TokenScope::Models]).await;
    let root = crate::helpers::repo_root();
    let bin = crate::helpers::venv_bin("sdk");
    let python = format!("{bin}/python");
    let url = c.w.app.url("");
    let out = tokio::process::Command::new(python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(root.join("end2end/sdk/test_sdk.py"))
        .env("KEYWARD_URL", url.trim_end_matches('/'))
        .env("KEYWARD_TOKEN", &tok)
        .output()
        .await
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{report}");
    assert!(out.status.success(), "the SDK tests failed:\n{report}");
    assert!(report.contains(" passed"), "{report}");
    assert!(!report.contains("skipped"), "{report}");
    c.w.app.stop().await;
}
both_backends!(official_sdks, super::official_sdks);

/// A short run of the benchmark's load generator (what `make bench` runs at length against the
/// release binary and the peers): every request answered, every answer stamped with the
/// overhead header, the percentiles and the sweep well-formed.
async fn bench_smoke(backend: Backend) {
    use keyward_server::bench::{Target, best_within, closed_loop, max_rps};
    use std::time::Duration;
    let c = chat_world(backend, MockConfig::default(), |_| {}).await;
    let (_, tok) = token(&c, &[TokenScope::Chat]).await;
    let t = Target {
        name: "keyward".into(),
        url: c.w.app.url("/v1/chat/completions"),
        headers: vec![("authorization".into(), format!("Bearer {tok}"))],
        model: "openai/mock-small".into(),
    };
    let run = closed_loop(&t, 1, Duration::from_secs(20), 100, 5, false).await;
    assert_eq!((run.count(), run.errors), (100, 0));
    assert_eq!(run.reported_overhead_us.len(), 100);
    assert!(run.pct(50.0) <= run.pct(99.0) && run.pct(99.0) <= run.pct(100.0));
    let streamed = closed_loop(&t, 2, Duration::from_secs(20), 40, 1, true).await;
    assert_eq!((streamed.count(), streamed.errors), (40, 0));
    let sweep = max_rps(
        &t,
        Duration::from_secs(5),
        &[1, 4],
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(sweep.len(), 2);
    let (conc, rps, _) = best_within(&sweep, Duration::from_secs(5)).expect("a level within 5 s");
    assert!(rps > 0.0 && [1, 4].contains(&conc));
    // Every request was metered.
    let warm = 5 + 2;
    let swept: usize = sweep.iter().map(|(_, r)| r.count()).sum::<usize>() + 2 + 4 * 2;
    records(&c, 100 + warm + 40 + swept).await;
    c.w.app.stop().await;
}
both_backends!(bench_smoke, super::bench_smoke);
