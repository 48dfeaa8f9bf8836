//! The chat adapters at the wire level against the mock provider: OpenAI pass-through and
//! Anthropic translation, streamed and not, usage collection, and every fault kind.

use crate::keys::spawn_mock_with;
use futures_util::StreamExt;
use keyward::catalogue::WireFormat;
use keyward::keys::ErrorClass;
use keyward_server::gateway::Gateway;
use keyward_server::gateway::chat::{ChatReply, StreamEvent, Upstream, UpstreamError, Usage};
use keyward_server::mock_provider::MockConfig;
use secrecy::SecretString;
use serde_json::{Map, Value, json};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn request(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn chat_request() -> Map<String, Value> {
    request(json!({
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello there friend"}
        ],
        "temperature": 1.5,
        "user": "visitor-1",
        "x_unknown_field": {"kept": true}
    }))
}

async fn setup(config: MockConfig) -> (Gateway, SocketAddr) {
    let mock = spawn_mock_with(config).await;
    let gw = Gateway::new(vec![("127.0.0.1".into(), mock.port())]).unwrap();
    (gw, mock)
}

fn base(mock: SocketAddr, wire: WireFormat) -> String {
    match wire {
        WireFormat::OpenAi => format!("http://{mock}/v1"),
        WireFormat::Anthropic => format!("http://{mock}"),
    }
}

/// Collects a stream: the concatenated text, the usage reported, whether it ended with Done,
/// and the error that ended it, if any.
async fn drain(reply: ChatReply) -> (String, Option<Usage>, bool, Option<UpstreamError>, usize) {
    let ChatReply::Stream(mut s) = reply else {
        panic!("expected a stream")
    };
    let (mut text, mut usage, mut done, mut err, mut chunks) =
        (String::new(), None, false, None, 0);
    while let Some(item) = s.next().await {
        match item {
            Ok(StreamEvent::Chunk(c)) => {
                chunks += 1;
                let v: Value = serde_json::from_str(&c.raw).unwrap();
                assert_eq!(v["object"], "chat.completion.chunk", "{}", c.raw);
                // The parsed text is the raw chunk's text.
                let raw_text = v
                    .pointer("/choices/0/delta/content")
                    .and_then(Value::as_str);
                assert_eq!(c.text.as_deref(), raw_text.filter(|t| !t.is_empty()));
                if let Some(t) = c.text {
                    text.push_str(&t);
                }
                if c.usage.is_some() {
                    usage = c.usage;
                }
            }
            Ok(StreamEvent::Done) => done = true,
            Err(e) => err = Some(e),
        }
    }
    (text, usage, done, err, chunks)
}

fn upstream<'a>(wire: WireFormat, base_url: &'a str, key: &'a SecretString) -> Upstream<'a> {
    Upstream {
        wire,
        base_url,
        key,
    }
}

#[tokio::test]
async fn both_adapters_answer_in_openai_shape_with_usage() {
    let (gw, mock) = setup(MockConfig::default()).await;
    let key = SecretString::from("sk-good-key-0000000000000000");
    for wire in [WireFormat::OpenAi, WireFormat::Anthropic] {
        let b = base(mock, wire);
        let up = upstream(wire, &b, &key);
        let reply = gw
            .chat(&up, &chat_request(), "mock-small", false)
            .await
            .unwrap();
        let ChatReply::Complete { body, usage } = reply else {
            panic!()
        };
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(
            body["choices"][0]["message"]["content"],
            "[system: Be brief.] You said: Hello there friend",
            "{wire:?}: the system prompt and the last user message arrive"
        );
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            usage,
            Some(Usage {
                input_tokens: 5,
                output_tokens: 8
            }),
            "{wire:?}"
        );
        assert_eq!(body["usage"]["total_tokens"], 13);

        // Streamed: token by token, the same text, usage from the stream.
        let reply = gw
            .chat(&up, &chat_request(), "mock-small", true)
            .await
            .unwrap();
        let (text, usage, done, err, chunks) = drain(reply).await;
        assert_eq!(
            text, "[system: Be brief.] You said: Hello there friend",
            "{wire:?}"
        );
        assert_eq!(
            usage,
            Some(Usage {
                input_tokens: 5,
                output_tokens: 8
            }),
            "{wire:?}"
        );
        assert!(done && err.is_none(), "{wire:?}: {err:?}");
        assert!(chunks >= 9, "{wire:?}: one chunk per token, got {chunks}");
    }
}

#[tokio::test]
async fn stop_sequences_and_max_tokens_are_translated() {
    let (gw, mock) = setup(MockConfig::default()).await;
    let key = SecretString::from("sk-good-key-0000000000000000");
    for wire in [WireFormat::OpenAi, WireFormat::Anthropic] {
        let b = base(mock, wire);
        let up = upstream(wire, &b, &key);
        let mut r = chat_request();
        r.insert("stop".into(), json!(["there"]));
        let ChatReply::Complete { body, .. } = gw.chat(&up, &r, "m", false).await.unwrap() else {
            panic!()
        };
        assert_eq!(
            body["choices"][0]["message"]["content"], "[system: Be brief.] You said: Hello ",
            "{wire:?}"
        );
        let mut r = chat_request();
        r.insert("max_tokens".into(), json!(2));
        let ChatReply::Complete { body, usage } = gw.chat(&up, &r, "m", false).await.unwrap()
        else {
            panic!()
        };
        assert_eq!(body["choices"][0]["finish_reason"], "length", "{wire:?}");
        assert_eq!(usage.unwrap().output_tokens, 2);
    }
}

#[test]
fn the_anthropic_translation_round_trips() {
    use keyward_server::gateway::anthropic::{from_anthropic, to_anthropic};
    let body = to_anthropic(&chat_request(), "claude-haiku-4-5", true).unwrap();
    assert_eq!(
        body,
        json!({
            "model": "claude-haiku-4-5",
            "system": "Be brief.",
            "messages": [{"role": "user", "content": "Hello there friend"}],
            "max_tokens": 1024,
            "temperature": 1.0,
            "metadata": {"user_id": "visitor-1"},
            "stream": true
        })
    );
    let parts = request(json!({"messages": [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": "c"},
        {"role": "user", "content": "d"}
    ], "max_completion_tokens": 9, "stop": "x"}));
    let body = to_anthropic(&parts, "m", false).unwrap();
    assert_eq!(body["messages"][0]["content"], "ab");
    assert_eq!(body["max_tokens"], 9);
    assert_eq!(body["stop_sequences"], json!(["x"]));
    assert!(body.get("stream").is_none());
    for bad in [
        json!({"messages": [{"role": "tool", "content": "x"}]}),
        json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
        json!({"messages": [{"role": "system", "content": "only a system prompt"}]}),
        json!({"messages": [{"role": "user", "content": "x"}], "tools": []}),
        json!({"messages": "nope"}),
    ] {
        assert!(
            to_anthropic(&request(bad.clone()), "m", false).is_err(),
            "{bad}"
        );
    }
    let (openai, usage) = from_anthropic(
        &json!({"id": "msg_1", "model": "m", "content": [{"type": "text", "text": "hi"}],
                "stop_reason": "max_tokens", "usage": {"input_tokens": 3, "output_tokens": 4}}),
        7,
    );
    assert_eq!(openai["choices"][0]["message"]["content"], "hi");
    assert_eq!(openai["choices"][0]["finish_reason"], "length");
    assert_eq!(openai["usage"]["total_tokens"], 7);
    assert_eq!(
        usage,
        Usage {
            input_tokens: 3,
            output_tokens: 4
        }
    );
}

#[tokio::test]
async fn every_fault_is_classified_without_the_providers_body() {
    let (gw, mock) = setup(MockConfig::default()).await;
    for wire in [WireFormat::OpenAi, WireFormat::Anthropic] {
        let b = base(mock, wire);
        for (marker, class, status) in [
            ("invalid", ErrorClass::InvalidKey, Some(401)),
            ("noquota", ErrorClass::NoQuota, Some(429)),
            ("ratelimit", ErrorClass::RateLimited, Some(429)),
            ("retryafter", ErrorClass::RateLimited, Some(429)),
            ("servererror", ErrorClass::ProviderUnavailable, Some(500)),
            ("badrequest", ErrorClass::Rejected, Some(400)),
            ("forbidden", ErrorClass::InvalidKey, Some(403)),
            ("notfound", ErrorClass::Rejected, Some(404)),
            ("timeout408", ErrorClass::ProviderUnavailable, Some(408)),
            ("unavailable", ErrorClass::ProviderUnavailable, Some(503)),
        ] {
            let key = SecretString::from(format!("sk-{marker}-0000000000000000"));
            let up = upstream(wire, &b, &key);
            for stream in [false, true] {
                let err = gw
                    .chat(&up, &chat_request(), "m", stream)
                    .await
                    .unwrap_err();
                assert_eq!(
                    (err.class, err.status),
                    (class, status),
                    "{wire:?} {marker}"
                );
                assert!(!err.mid_stream);
                assert!(
                    !err.message.contains("10.1.2.3") && !err.message.contains("exceeded"),
                    "{}",
                    err.message
                );
                if marker == "retryafter" {
                    assert_eq!(err.retry_after, Some(7));
                }
            }
        }
        // Cut mid-stream: some text arrived, then a classified error, no Done.
        let key = SecretString::from("sk-cut-0000000000000000");
        let up = upstream(wire, &b, &key);
        let reply = gw.chat(&up, &chat_request(), "m", true).await.unwrap();
        let (_, _, done, err, chunks) = drain(reply).await;
        let err = err.expect("the cut is reported");
        assert!(!done && err.mid_stream, "{wire:?}");
        assert_eq!(err.class, ErrorClass::ProviderUnavailable);
        assert!(chunks >= 1, "{wire:?}: output had started");
    }
    // A provider that never answers: a timeout, classified, without waiting forever.
    let quick = Gateway::new(vec![("127.0.0.1".into(), mock.port())])
        .unwrap()
        .with_first_byte_timeout(Duration::from_millis(300));
    let b = base(mock, WireFormat::OpenAi);
    let key = SecretString::from("sk-hang-0000000000000000");
    let up = upstream(WireFormat::OpenAi, &b, &key);
    let started = Instant::now();
    let err = quick
        .chat(&up, &chat_request(), "m", true)
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::ProviderUnavailable);
    assert!(err.message.contains("in time"), "{}", err.message);
    assert!(started.elapsed() < Duration::from_secs(5));
    // Nothing listening: a connection failure.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let gw2 = Gateway::new(vec![("127.0.0.1".into(), closed.port())]).unwrap();
    let b = format!("http://{closed}/v1");
    let key = SecretString::from("sk-good-0000000000000000");
    let up = upstream(WireFormat::OpenAi, &b, &key);
    let err = gw2
        .chat(&up, &chat_request(), "m", false)
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::ProviderUnavailable);
}

#[tokio::test]
async fn a_dropped_stream_cancels_the_upstream_call() {
    // A slow stream: 20 tokens per second. Reading two chunks and dropping the stream must
    // close the upstream connection long before the answer would have finished.
    let (gw, mock) = setup(MockConfig {
        tokens_per_sec: 20,
        ..Default::default()
    })
    .await;
    let key = SecretString::from("sk-good-0000000000000000");
    let b = base(mock, WireFormat::OpenAi);
    let up = upstream(WireFormat::OpenAi, &b, &key);
    let mut long = chat_request();
    long.insert(
        "messages".into(),
        json!([{"role": "user", "content": "word ".repeat(400)}]),
    );
    let started = Instant::now();
    let ChatReply::Stream(mut s) = gw.chat(&up, &long, "m", true).await.unwrap() else {
        panic!()
    };
    s.next().await.unwrap().unwrap();
    s.next().await.unwrap().unwrap();
    drop(s);
    assert!(started.elapsed() < Duration::from_secs(5));
    // The mock sees the disconnect: its open connections drop to zero quickly.
    let stats = format!("http://{mock}/__mock/stats");
    crate::helpers::eventually(
        Duration::from_secs(5),
        "the upstream stream cancelled",
        || async {
            let v: Value = reqwest::get(&stats).await.unwrap().json().await.unwrap();
            (v["open_streams"] == 0).then_some(())
        },
    )
    .await;
}

// ---- Through the chat service: resolution, cache, failure policy, in-flight replacement. ----

use crate::helpers::{Backend, both_backends, open_vault};
use keyward::keys::FailurePolicy;
use keyward::policy::Plan;
use keyward::resolve::KeySource;
use keyward_server::gateway::cache::KeyCache;
use keyward_server::invalidation::{Change, Topic};
use keyward_server::services::accounts;
use keyward_server::services::audit::By;
use keyward_server::services::catalogue::{self, ProviderChange};
use keyward_server::services::chat::{ChatCall, ChatError, ChatService, Parts, ReplyBody};
use keyward_server::services::credits::CreditBook;
use keyward_server::services::keys::{self, NewKey, Scope};
use keyward_server::services::limits::{InProcess, SpendControl};
use keyward_server::services::usage::{UsageMeter, UsageWriter};
use keyward_server::services::{routing, workspaces};
use std::sync::Arc;
use uuid::Uuid;

struct Chat {
    t: crate::helpers::TestVault,
    gw: Gateway,
    cache: KeyCache,
    chat: ChatService,
    mock: SocketAddr,
    by: By,
    ws: Uuid,
}

async fn chat_world(backend: Backend, config: MockConfig) -> Chat {
    let t = open_vault(backend).await;
    let (gw, mock) = setup(config).await;
    let (user, ws) = accounts::setup_first_user(
        &t.db,
        &keyward_server::services::accounts::SignInThrottle::new(100, 100),
        "o@example.com",
        "O",
        "correct horse battery",
        "Acme",
    )
    .await
    .unwrap();
    workspaces::set_plan(&t.db, &t.changes, &By::cli(), ws.id, Plan::Business)
        .await
        .unwrap();
    let by = By {
        id: Some(user.id),
        email: user.email,
    };
    for (p, url) in [
        ("openai", format!("http://{mock}/v1")),
        ("anthropic", format!("http://{mock}")),
    ] {
        let change = ProviderChange {
            base_url: url,
            default_model: String::new(),
            byok_enabled: true,
        };
        catalogue::update_provider(&t.db, &t.changes, &gw, &by, p, change)
            .await
            .unwrap();
    }
    let cache = KeyCache::new(t.changes.clone());
    let credits = CreditBook::new(t.changes.clone());
    let tasks = tokio_util::task::TaskTracker::new();
    let spend = SpendControl::new(Arc::new(InProcess::default()), t.db.clone(), tasks.clone());
    let usage = UsageWriter::spawn(
        t.db.clone(),
        credits.clone(),
        Some(spend.clone()),
        Default::default(),
    );
    let chat = ChatService::new(Parts {
        db: t.db.clone(),
        vault: t.vault.clone(),
        gateway: gw.clone(),
        keys: cache.clone(),
        credits,
        usage,
        spend,
        tasks,
    });
    Chat {
        cache,
        chat,
        t,
        gw,
        mock,
        by,
        ws: ws.id,
    }
}

async fn store(c: &Chat, scope: Scope, provider: &str, key: &str) -> Uuid {
    let new = NewKey {
        provider: provider.into(),
        key: SecretString::from(key),
        default_model: String::new(),
        base_url: String::new(),
    };
    let v = keys::add(c.t.key_deps(&c.gw), &c.by, scope, new)
        .await
        .unwrap();
    Uuid::parse_str(&v.id).unwrap()
}

fn call(c: &Chat, provider: &str, chatbot: Option<Uuid>, stream: bool) -> ChatCall {
    ChatCall {
        workspace: c.ws,
        chatbot,
        provider: provider.into(),
        model: None,
        request: chat_request(),
        stream,
    }
}

async fn last_tail(mock: SocketAddr) -> String {
    let v: Value = reqwest::get(format!("http://{mock}/__mock/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["last_key_tail"].as_str().unwrap().to_string()
}

/// What a test reads of a served request.
struct Out {
    source: KeySource,
    key_id: Uuid,
    hint: String,
    model: String,
    fell_back: Option<keyward::keys::ErrorClass>,
    reply: ChatReply,
}

/// Runs a call through the one chat pipeline, as the playground does (metered).
async fn run(c: &Chat, call: ChatCall) -> Result<Out, ChatError> {
    let meter = UsageMeter {
        workspace: call.workspace,
        chatbot: call.chatbot,
        conversation: None,
        api_token: None,
        channel: keyward::usage::UsageChannel::Dashboard,
        provider: call.provider.clone(),
        model: call.model.clone(),
        input_estimate: 0,
        started: std::time::Instant::now(),
    };
    let r = c.chat.run(call, meter).await.map_err(|f| f.error)?;
    Ok(Out {
        source: r.served.source,
        key_id: r.served.key_id,
        hint: r.served.hint,
        model: r.served.model,
        fell_back: r.fell_back,
        reply: match r.body {
            ReplyBody::Complete { body, usage } => ChatReply::Complete { body, usage },
            ReplyBody::Stream(s) => ChatReply::Stream(Box::pin(s)),
        },
    })
}

/// Enables or disables one of the workspace's keys.
async fn enable(c: &Chat, key: Uuid, enabled: bool) {
    let scope = Scope::Workspace(c.ws);
    keys::set_enabled(&c.t.db, &c.t.changes, &c.by, scope, key, enabled)
        .await
        .unwrap();
}

/// The platform turns BYOK on or off for OpenAI.
async fn byok(c: &Chat, enabled: bool) {
    let change = ProviderChange {
        base_url: format!("http://{}/v1", c.mock),
        default_model: String::new(),
        byok_enabled: enabled,
    };
    catalogue::update_provider(&c.t.db, &c.t.changes, &c.gw, &c.by, "openai", change)
        .await
        .unwrap();
}

async fn plan(c: &Chat, plan: Plan) {
    workspaces::set_plan(&c.t.db, &c.t.changes, &By::cli(), c.ws, plan)
        .await
        .unwrap();
}

async fn chain_cache_and_policies(backend: Backend) {
    let c = chat_world(backend, MockConfig::default()).await;
    let bot = Uuid::new_v4();
    // Nothing configured: a clear error.
    let err = run(&c, call(&c, "openai", None, false))
        .await
        .err()
        .unwrap();
    assert_eq!(err.to_string(), "no key is configured for openai");

    let platform = store(
        &c,
        Scope::Platform,
        "openai",
        "sk-platform-key-0000000000pppp",
    )
    .await;
    let workspace = store(
        &c,
        Scope::Workspace(c.ws),
        "openai",
        "sk-workspace-key-00000000wwww",
    )
    .await;
    let chatbot = store(
        &c,
        Scope::Chatbot {
            workspace: c.ws,
            chatbot: bot,
        },
        "openai",
        "sk-chatbot-key-0000000000cccc",
    )
    .await;

    // chatbot > workspace > platform; the model defaults to the provider's.
    let out = run(&c, call(&c, "openai", Some(bot), false)).await.unwrap();
    assert_eq!(
        (out.source, out.key_id, out.model.as_str()),
        (KeySource::Chatbot, chatbot, "gpt-4o-mini")
    );
    assert_eq!(last_tail(c.mock).await, "cccc");
    let out = run(&c, call(&c, "openai", None, false)).await.unwrap();
    assert_eq!((out.source, out.key_id), (KeySource::Workspace, workspace));
    assert_eq!(last_tail(c.mock).await, "wwww");

    // Warm: repeated requests load nothing (no database read, no decryption).
    let loads = c.cache.loads();
    for _ in 0..5 {
        run(&c, call(&c, "openai", None, false)).await.unwrap();
    }
    assert_eq!(c.cache.loads(), loads, "the warm path does not reload");

    // Another workspace's change leaves this workspace's snapshot warm.
    c.t.changes
        .publish(Change::workspace(Topic::Keys, Uuid::new_v4()));
    run(&c, call(&c, "openai", None, false)).await.unwrap();
    assert_eq!(
        c.cache.loads(),
        loads,
        "another tenant's change reloads nothing"
    );

    // Twenty requests that miss at once (after a change to this workspace) read and decrypt the
    // snapshot once between them, not twenty times (single flight). Changes are this test's
    // own, so the count is exact.
    c.t.changes.publish(Change::workspace(Topic::Keys, c.ws));
    let before = c.cache.loads();
    let outs =
        futures_util::future::join_all((0..20).map(|_| run(&c, call(&c, "openai", None, false))))
            .await;
    assert!(
        outs.iter()
            .all(|o| o.as_ref().is_ok_and(|o| o.source == KeySource::Workspace))
    );
    assert_eq!(
        c.cache.loads() - before,
        1,
        "20 concurrent misses load once"
    );
    // A platform-wide change (a platform key, the catalogue) reaches every workspace.
    c.t.changes.publish(Change::everyone(Topic::Keys));
    run(&c, call(&c, "openai", None, false)).await.unwrap();
    assert_eq!(c.cache.loads() - before, 2);
    let loads = c.cache.loads();

    // Any key change invalidates: the disabled workspace key gives way to the platform key.
    enable(&c, workspace, false).await;
    let out = run(&c, call(&c, "openai", None, false)).await.unwrap();
    assert_eq!((out.source, out.key_id), (KeySource::Platform, platform));
    assert_eq!(c.cache.loads(), loads + 1);
    enable(&c, workspace, true).await;

    // BYOK off for the provider, or a plan without BYOK: the platform key serves everyone.
    byok(&c, false).await;
    let out = run(&c, call(&c, "openai", Some(bot), false)).await.unwrap();
    assert_eq!(out.source, KeySource::Platform);
    byok(&c, true).await;
    plan(&c, Plan::Free).await;
    assert_eq!(
        run(&c, call(&c, "openai", None, false))
            .await
            .unwrap()
            .source,
        KeySource::Platform
    );
    plan(&c, Plan::Business).await;
    assert_eq!(
        run(&c, call(&c, "openai", None, false))
            .await
            .unwrap()
            .source,
        KeySource::Workspace
    );

    // A transient failure (503) before any output is retried once, then reported.
    let groq = ProviderChange {
        base_url: format!("http://{}/v1", c.mock),
        default_model: "mock-small".into(),
        byok_enabled: true,
    };
    catalogue::update_provider(&c.t.db, &c.t.changes, &c.gw, &c.by, "groq", groq)
        .await
        .unwrap();
    store(
        &c,
        Scope::Workspace(c.ws),
        "groq",
        "gsk_unavailable0000000000000",
    )
    .await;
    let before = authenticated_requests(c.mock).await;
    let err = run(&c, call(&c, "groq", None, false)).await.err().unwrap();
    assert!(
        matches!(err, ChatError::Upstream(ref e) if e.status == Some(503)),
        "{err}"
    );
    assert_eq!(
        authenticated_requests(c.mock).await - before,
        2,
        "one retry"
    );
    // A rejected BYOK key: fail closed by default, and the key's last error is recorded.
    let bad_id = store(
        &c,
        Scope::Workspace(c.ws),
        "anthropic",
        "sk-ant-invalid-000000000000xx",
    )
    .await;
    let _platform_ant = store(
        &c,
        Scope::Platform,
        "anthropic",
        "sk-ant-platform-00000000000pp",
    )
    .await;
    let err = run(&c, call(&c, "anthropic", None, true))
        .await
        .err()
        .unwrap();
    match err {
        ChatError::Upstream(e) => assert_eq!(e.class, ErrorClass::InvalidKey),
        other => panic!("{other}"),
    }
    let (k, e) =
        crate::helpers::eventually(Duration::from_secs(5), "the key's last error", || async {
            let page = keys::page(&c.t.db, Scope::Workspace(c.ws), true)
                .await
                .unwrap();
            let k = page
                .rows
                .iter()
                .find(|r| r.provider.id == "anthropic")
                .unwrap()
                .key
                .clone()
                .unwrap();
            k.last_error.clone().map(|e| (k, e))
        })
        .await;
    assert_eq!(e.class, ErrorClass::InvalidKey);
    assert_eq!(k.id, bad_id.to_string());
    // Fallback to the platform: the platform key answers, and the outcome says why.
    routing::set_failure_policy(
        &c.t.db,
        &c.t.changes,
        &c.by,
        c.ws,
        FailurePolicy::FallbackToPlatform,
    )
    .await
    .unwrap();
    let out = run(&c, call(&c, "anthropic", None, true)).await.unwrap();
    assert_eq!(
        (out.source, out.fell_back),
        (KeySource::Platform, Some(ErrorClass::InvalidKey))
    );
    let (text, usage, done, err, _) = drain(out.reply).await;
    assert!(done && err.is_none() && usage.is_some());
    assert!(text.ends_with("Hello there friend"));
    assert_eq!(last_tail(c.mock).await, "00pp");
}
both_backends!(chain_cache_and_policies, super::chain_cache_and_policies);

/// A request holds the key it resolved: replacing the key while a slow stream is running lets
/// that stream finish on the old key; the next request uses the new one.
async fn in_flight_requests_finish_on_the_old_key(backend: Backend) {
    let c = chat_world(
        backend,
        MockConfig {
            tokens_per_sec: 40,
            ..Default::default()
        },
    )
    .await;
    let id = store(
        &c,
        Scope::Workspace(c.ws),
        "openai",
        "sk-first-key-000000000000aaaa",
    )
    .await;
    let mut long = call(&c, "openai", None, true);
    long.request.insert(
        "messages".into(),
        json!([{"role": "user", "content": "tick ".repeat(40)}]),
    );
    let out = run(&c, long).await.unwrap();
    assert_eq!(out.key_id, id);
    let ChatReply::Stream(mut s) = out.reply else {
        panic!()
    };
    let first = s.next().await.unwrap().unwrap();
    assert!(matches!(first, StreamEvent::Chunk(_)));
    // Replace mid-stream (the new key is live-tested first, against the same mock).
    let new = NewKey {
        provider: "openai".into(),
        key: SecretString::from("sk-second-key-00000000000bbbb"),
        default_model: String::new(),
        base_url: String::new(),
    };
    keys::replace(c.t.key_deps(&c.gw), &c.by, Scope::Workspace(c.ws), id, new)
        .await
        .unwrap();
    let mut text = String::new();
    let mut done = false;
    while let Some(item) = s.next().await {
        match item.unwrap() {
            StreamEvent::Chunk(ch) => text.push_str(ch.text.as_deref().unwrap_or_default()),
            StreamEvent::Done => done = true,
        }
    }
    assert!(done, "the old stream finished");
    assert_eq!(
        text.matches("tick").count(),
        40,
        "the whole answer arrived: {text}"
    );
    assert_eq!(out.hint, "sk-…aaaa", "the request still holds the old key");
    let next = run(&c, call(&c, "openai", None, false)).await.unwrap();
    assert_eq!(next.hint, "sk-…bbbb");
    assert_eq!(last_tail(c.mock).await, "bbbb");
}
both_backends!(
    in_flight_requests_finish_on_the_old_key,
    super::in_flight_requests_finish_on_the_old_key
);

// ---- SSRF: the destination corpus, a rebinding resolver, a redirecting upstream. ----

async fn authenticated_requests(mock: SocketAddr) -> u64 {
    let v: Value = reqwest::get(format!("http://{mock}/__mock/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["authenticated_requests"].as_u64().unwrap()
}

/// Every bad destination is refused before a key is sent: the recording stub (the mock, on
/// loopback but not allowlisted) receives nothing. Plain http is allowed here, so it is the
/// address rules that refuse.
#[tokio::test]
async fn the_ssrf_corpus_never_reaches_the_stub() {
    use keyward_server::gateway::ssrf::{self, Allowlist};
    let stub = crate::keys::spawn_mock().await;
    let p = stub.port();
    let gw = Gateway::with(
        Allowlist::new(vec![]).with_http(true),
        ssrf::system_lookup(),
    )
    .unwrap();
    let corpus: Vec<String> = [
        "http://127.0.0.1:{p}/v1",
        "http://127.1:{p}/v1",
        "http://127.0.1:{p}/v1",
        "http://2130706433:{p}/v1",
        "http://0x7f000001:{p}/v1",
        "http://0x7f.0x0.0x0.0x1:{p}/v1",
        "http://0177.0.0.1:{p}/v1",
        "http://0177.1:{p}/v1",
        "http://127.000.000.001:{p}/v1",
        "http://127.0.0.1.:{p}/v1",
        "http://localhost:{p}/v1",
        "http://LOCALHOST:{p}/v1",
        "http://localhost.:{p}/v1",
        "http://foo.localhost:{p}/v1",
        "http://[::1]:{p}/v1",
        "http://[0:0:0:0:0:0:0:1]:{p}/v1",
        "http://[::ffff:127.0.0.1]:{p}/v1",
        "http://[::ffff:7f00:1]:{p}/v1",
        "http://[::127.0.0.1]:{p}/v1",
        "http://[64:ff9b::127.0.0.1]:{p}/v1",
        "http://0.0.0.0:{p}/v1",
        "http://0:{p}/v1",
        "http://[::]:{p}/v1",
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.169.254:{p}/v1",
        "http://2852039166/latest",
        "http://0xa9fea9fe/latest",
        "http://[::ffff:a9fe:a9fe]/latest",
        "http://[::ffff:169.254.169.254]/latest",
        "http://[64:ff9b::a9fe:a9fe]/latest",
        "http://[fd00:ec2::254]/latest",
        "http://metadata.google.internal/computeMetadata/v1",
        "http://metadata/computeMetadata/v1",
        "http://10.0.0.1:{p}/v1",
        "http://10.255.255.255/v1",
        "http://172.16.0.1/v1",
        "http://172.31.255.254/v1",
        "http://192.168.0.1/v1",
        "http://100.64.0.1/v1",
        "http://100.127.255.254/v1",
        "http://198.18.0.1/v1",
        "http://224.0.0.1/v1",
        "http://239.255.255.250/v1",
        "http://255.255.255.255/v1",
        "http://240.0.0.1/v1",
        "http://192.0.0.1/v1",
        "http://192.0.2.1/v1",
        "http://[fe80::1]/v1",
        "http://[fc00::1]/v1",
        "http://[ff02::1]/v1",
        "http://[2001:db8::1]/v1",
        "http://[fec0::1]/v1",
        "http://intranet:{p}/v1",
        "http://printer.local/v1",
        "http://evil.example@127.0.0.1:{p}/v1",
        "http://user:pass@api.openai.com/v1",
        "http://127.0.0.1:{p}/v1?x=https://api.openai.com",
        "http://127.0.0.1:{p}/v1#@api.openai.com",
        "ftp://127.0.0.1:{p}/v1",
        "file:///etc/passwd",
        "gopher://127.0.0.1:{p}/",
        "http://[fe80::1%25lo]/v1",
        "not a url",
        "",
    ]
    .iter()
    .map(|u| u.replace("{p}", &p.to_string()))
    .collect();
    assert!(corpus.len() >= 60, "{}", corpus.len());
    let key = SecretString::from("sk-recorded-0000000000000000");
    for url in &corpus {
        assert!(
            ssrf::check_base_url(url, gw.allowlist()).is_err(),
            "accepted: {url}"
        );
        for wire in [WireFormat::OpenAi, WireFormat::Anthropic] {
            let up = Upstream {
                wire,
                base_url: url,
                key: &key,
            };
            let err = gw.chat(&up, &chat_request(), "m", false).await.unwrap_err();
            assert_eq!(err.class, ErrorClass::Rejected, "{url}");
            let tested = gw.test_key(wire, url, &key).await;
            assert!(!tested.ok, "{url}");
        }
    }
    assert_eq!(
        authenticated_requests(stub).await,
        0,
        "the stub received a key"
    );
}

/// Names are checked when the connection is made: a name that resolves (or re-resolves) to a
/// private address, or to a mix of public and private ones, is refused, and nothing is sent.
#[tokio::test]
async fn a_rebinding_resolver_cannot_redirect_a_key() {
    use keyward_server::gateway::ssrf::{Allowlist, Lookup};
    use std::net::IpAddr;
    use std::sync::atomic::{AtomicU32, Ordering};
    let stub = crate::keys::spawn_mock().await;
    let calls = std::sync::Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let lookup: Lookup = std::sync::Arc::new(move |host: String| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let ips: Vec<IpAddr> = match host.as_str() {
                // First answer public (what a pre-check would have seen), then loopback.
                "rebind.example" if n == 0 => vec!["93.184.216.34".parse().unwrap()],
                "rebind.example" => vec!["127.0.0.1".parse().unwrap()],
                "mixed.example" => vec![
                    "93.184.216.34".parse().unwrap(),
                    "127.0.0.1".parse().unwrap(),
                ],
                "internal.example" => vec!["10.0.0.5".parse().unwrap()],
                "mapped.example" => vec!["::ffff:127.0.0.1".parse().unwrap()],
                _ => vec!["127.0.0.1".parse().unwrap()],
            };
            Ok(ips)
        })
    });
    let gw = Gateway::with(Allowlist::new(vec![]).with_http(true), lookup).unwrap();
    let key = SecretString::from("sk-recorded-0000000000000000");
    for host in [
        "rebind.example",
        "mixed.example",
        "internal.example",
        "mapped.example",
        "anything.example",
    ] {
        let url = format!("http://{host}:{}/v1", stub.port());
        let up = upstream(WireFormat::OpenAi, &url, &key);
        for _ in 0..2 {
            match gw.chat(&up, &chat_request(), "m", false).await {
                Err(e) => assert!(
                    e.class == ErrorClass::Rejected || e.class == ErrorClass::ProviderUnavailable,
                    "{host}: {e:?}"
                ),
                Ok(_) => panic!("{host}: a private address was reached"),
            }
        }
    }
    assert!(
        calls.load(Ordering::SeqCst) >= 5,
        "names were resolved at connection time"
    );
    assert_eq!(
        authenticated_requests(stub).await,
        0,
        "the stub received a key"
    );
}

/// Redirects are never followed, even to an allowlisted address.
#[tokio::test]
async fn a_redirecting_upstream_does_not_move_the_key() {
    use axum::response::Redirect;
    use keyward_server::gateway::ssrf::{self, Allowlist};
    let stub = crate::keys::spawn_mock().await;
    let target = format!("http://127.0.0.1:{}/v1/chat/completions", stub.port());
    let app = axum::Router::new().fallback(move || {
        let target = target.clone();
        async move { Redirect::temporary(&target) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirector = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let allow = Allowlist::new(vec![
        ("127.0.0.1".into(), redirector.port()),
        ("127.0.0.1".into(), stub.port()),
    ]);
    let gw = Gateway::with(allow, ssrf::system_lookup()).unwrap();
    let key = SecretString::from("sk-recorded-0000000000000000");
    let url = format!("http://{redirector}/v1");
    for wire in [WireFormat::OpenAi, WireFormat::Anthropic] {
        let up = upstream(wire, &url, &key);
        let err = gw.chat(&up, &chat_request(), "m", true).await.unwrap_err();
        assert_eq!((err.class, err.status), (ErrorClass::Rejected, Some(307)));
        assert!(!gw.test_key(wire, &url, &key).await.ok);
    }
    assert_eq!(
        authenticated_requests(stub).await,
        0,
        "the redirect was followed"
    );
}

/// Models: each provider with a usable key lists what it offers (fetched with the resolved key,
/// then reused), the default first, labelled by the source that would serve it.
async fn models_are_listed_by_source(backend: Backend) {
    use keyward_server::services::models::{ModelsCache, available};
    let c = chat_world(backend, MockConfig::default()).await;
    store(
        &c,
        Scope::Workspace(c.ws),
        "openai",
        "sk-workspace-key-00000000wwww",
    )
    .await;
    store(
        &c,
        Scope::Platform,
        "anthropic",
        "sk-ant-platform-00000000000pp",
    )
    .await;
    let cache = ModelsCache::default();
    let list = available(&c.t.db, &c.t.vault, &c.gw, &c.cache, &cache, c.ws, None)
        .await
        .unwrap();
    let shown: Vec<(String, String, KeySource, bool)> = list
        .iter()
        .map(|m| (m.provider.clone(), m.model.clone(), m.source, m.default))
        .collect();
    let w = KeySource::Workspace;
    let p = KeySource::Platform;
    assert_eq!(
        shown,
        [
            ("openai".into(), "gpt-4o-mini".into(), w, true),
            ("openai".into(), "claude-haiku-4-5".into(), w, false),
            ("openai".into(), "mock-large".into(), w, false),
            ("openai".into(), "mock-small".into(), w, false),
            ("anthropic".into(), "claude-haiku-4-5".into(), p, true),
            ("anthropic".into(), "gpt-4o-mini".into(), p, false),
            ("anthropic".into(), "mock-large".into(), p, false),
            ("anthropic".into(), "mock-small".into(), p, false),
        ]
    );
    let before = authenticated_requests(c.mock).await;
    let again = available(&c.t.db, &c.t.vault, &c.gw, &c.cache, &cache, c.ws, None)
        .await
        .unwrap();
    assert_eq!(again, list);
    assert_eq!(
        authenticated_requests(c.mock).await,
        before,
        "lists are reused within their TTL"
    );
}
both_backends!(
    models_are_listed_by_source,
    super::models_are_listed_by_source
);

#[test]
fn streamed_text_is_escaped_correctly_on_the_fast_path() {
    use keyward_server::gateway::anthropic::AnthropicStreamTranslator;
    let mut t = AnthropicStreamTranslator::new(5);
    t.event(
        "message_start",
        r#"{"type":"message_start","message":{"id":"msg_\"1","model":"m","usage":{"input_tokens":2}}}"#,
    )
    .unwrap();
    let out = t
        .event(
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a \"quote\"\n\u00e9 </script>"}}"#,
        )
        .unwrap();
    let [StreamEvent::Chunk(c)] = out.as_slice() else {
        panic!("{out:?}")
    };
    let v: Value = serde_json::from_str(&c.raw).unwrap();
    assert_eq!(
        v["choices"][0]["delta"]["content"],
        "a \"quote\"\né </script>"
    );
    assert_eq!(c.text.as_deref(), Some("a \"quote\"\né </script>"));
    assert_eq!(v["id"], "msg_\"1");
    assert_eq!(v["created"], 5);
    assert_eq!(v["choices"][0]["finish_reason"], Value::Null);
    // A non-text delta (a tool's JSON) produces nothing rather than a wrong chunk.
    let none = t
        .event("content_block_delta", r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{"}}"#)
        .unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn the_mock_checks_keys_against_its_configured_list() {
    let (gw, mock) = setup(MockConfig {
        keys: Some(vec!["sk-allowed-000000000000000000".into()]),
        ..Default::default()
    })
    .await;
    for wire in [WireFormat::OpenAi, WireFormat::Anthropic] {
        let b = base(mock, wire);
        let good = SecretString::from("sk-allowed-000000000000000000");
        let other = SecretString::from("sk-someone-else-0000000000000");
        let up = upstream(wire, &b, &good);
        assert!(
            gw.chat(&up, &chat_request(), "m", false).await.is_ok(),
            "{wire:?}"
        );
        let up = upstream(wire, &b, &other);
        let err = gw.chat(&up, &chat_request(), "m", false).await.unwrap_err();
        assert_eq!(err.class, ErrorClass::InvalidKey, "{wire:?}");
        assert!(gw.test_key(wire, &b, &good).await.ok);
        assert!(!gw.test_key(wire, &b, &other).await.ok);
    }
}

async fn hostile_bytes(mock: SocketAddr) -> u64 {
    let v: Value = reqwest::get(format!("http://{mock}/__mock/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["hostile_bytes"].as_u64().unwrap()
}

/// How much a hostile answer may have sent before Keyward dropped it: the cap, plus what the
/// loopback socket buffers and the HTTP stack hold (a few MiB). Far below what it would send.
const SENT_BOUND: u64 = 24 << 20;

#[tokio::test]
async fn hostile_upstreams_are_cut_off_with_a_clear_error() {
    use keyward_server::gateway::Limits;
    let mock = spawn_mock_with(MockConfig::default()).await;
    let gw = Gateway::new(vec![("127.0.0.1".into(), mock.port())])
        .unwrap()
        .with_limits(Limits {
            max_body_bytes: 1 << 20,
            max_event_bytes: 64 << 10,
            max_stream_bytes: 4 << 20,
            first_byte: Duration::from_secs(5),
            total: Duration::from_secs(2),
            idle: Duration::from_secs(1),
        });
    for wire in [WireFormat::OpenAi, WireFormat::Anthropic] {
        let b = base(mock, wire);
        // (key marker, streamed, what the error says)
        for (marker, stream, says) in [
            ("endless", false, "larger than 1 MiB"),
            ("huge", false, "larger than 1 MiB"),
            (
                "trickle",
                false,
                "did not finish sending its answer in time",
            ),
            ("endless", true, "passed 4 MiB"),
            ("longline", true, "larger than 64 KiB"),
            ("stall", true, "stopped sending"),
            ("trickle", true, "stopped sending"),
        ] {
            let key = SecretString::from(format!("sk-{marker}-0000000000000000"));
            let up = upstream(wire, &b, &key);
            let before = hostile_bytes(mock).await;
            let started = Instant::now();
            let err = match gw.chat(&up, &chat_request(), "m", stream).await {
                Err(e) => e,
                Ok(reply) => {
                    let (_, _, done, err, _) = drain(reply).await;
                    assert!(!done, "{wire:?} {marker}: a hostile stream never ends well");
                    let e = err.expect("the stream ends with an error");
                    assert!(e.mid_stream, "{wire:?} {marker}");
                    e
                }
            };
            assert_eq!(
                err.class,
                ErrorClass::ProviderUnavailable,
                "{wire:?} {marker}"
            );
            assert!(
                err.message.contains(says),
                "{wire:?} {marker} streamed={stream}: {}",
                err.message
            );
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{wire:?} {marker}: the read was cut off, not waited out"
            );
            // The connection was dropped: the upstream could not keep sending.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let sent = hostile_bytes(mock).await - before;
            assert!(sent < SENT_BOUND, "{wire:?} {marker}: {sent} bytes sent");
            tokio::time::sleep(Duration::from_millis(300)).await;
            let later = hostile_bytes(mock).await - before;
            assert!(
                later - sent < (1 << 20),
                "{wire:?} {marker}: still sending after the error ({sent} then {later})"
            );
        }
        // The model list (the key test): a 100 MB list is refused after 1 MiB.
        let key = SecretString::from("sk-huge-0000000000000000");
        let up = upstream(wire, &b, &key);
        let before = hostile_bytes(mock).await;
        let err = gw.list_models(&up).await.unwrap_err();
        assert!(
            err.message.contains("model list is larger than 1 MiB"),
            "{}",
            err.message
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(hostile_bytes(mock).await - before < SENT_BOUND);
    }
}

#[tokio::test]
async fn error_objects_inside_a_successful_answer_are_classified() {
    let (gw, mock) = setup(MockConfig::default()).await;
    for wire in [WireFormat::OpenAi, WireFormat::Anthropic] {
        let b = base(mock, wire);
        let key = SecretString::from("sk-error200-0000000000000000");
        let up = upstream(wire, &b, &key);
        let err = gw.chat(&up, &chat_request(), "m", false).await.unwrap_err();
        assert_eq!(err.class, ErrorClass::ProviderUnavailable, "{wire:?}");
        assert!(!err.message.contains("10.1.2.3"), "{}", err.message);
        let reply = gw.chat(&up, &chat_request(), "m", true).await.unwrap();
        let ChatReply::Stream(mut s) = reply else {
            panic!("a stream")
        };
        let mut forwarded = Vec::new();
        let mut failure = None;
        while let Some(item) = s.next().await {
            match item {
                Ok(StreamEvent::Chunk(c)) => forwarded.push(c),
                Ok(_) => {}
                Err(e) => failure = Some(e),
            }
        }
        let e = failure.expect("the error object ends the stream as an error");
        assert!(
            e.mid_stream && e.message.contains("during the answer"),
            "{e:?}"
        );
        assert!(
            forwarded
                .iter()
                .all(|c| !c.raw.contains("10.1.2.3") && !c.raw.contains("\"error\"")),
            "{wire:?}: the provider's error object is never forwarded: {forwarded:?}"
        );
    }
}

#[tokio::test]
async fn absurd_token_counts_are_clamped() {
    let (gw, mock) = setup(MockConfig::default()).await;
    let max = keyward::usage::MAX_REPORTED_TOKENS;
    for wire in [WireFormat::OpenAi, WireFormat::Anthropic] {
        let b = base(mock, wire);
        let key = SecretString::from("sk-hugeusage-0000000000000000");
        let up = upstream(wire, &b, &key);
        let ChatReply::Complete { usage, .. } =
            gw.chat(&up, &chat_request(), "m", false).await.unwrap()
        else {
            panic!("complete")
        };
        assert_eq!(
            usage,
            Some(Usage {
                input_tokens: max,
                output_tokens: max
            }),
            "{wire:?}"
        );
        let mut req = chat_request();
        req.insert("stream_options".into(), json!({"include_usage": true}));
        let reply = gw.chat(&up, &req, "m", true).await.unwrap();
        let (_, usage, done, _, _) = drain(reply).await;
        assert!(done);
        assert_eq!(
            usage,
            Some(Usage {
                input_tokens: max,
                output_tokens: max
            }),
            "{wire:?} streamed"
        );
    }
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// An allowlisted name opens exactly its `host:port`: the same name on another port is treated
/// like any other name (its private address refused at connection time), and the allowlisted
/// pair is resolved and connected to as usual.
#[tokio::test]
async fn an_allowlisted_name_opens_only_its_port() {
    use keyward_server::gateway::ssrf::{Allowlist, Lookup};
    let allowed = crate::keys::spawn_mock().await;
    let other = crate::keys::spawn_mock().await;
    let lookup: Lookup = std::sync::Arc::new(|_host: String| {
        Box::pin(async { Ok(vec!["127.0.0.1".parse().unwrap()]) })
    });
    let allow = Allowlist::new(vec![("gpu.corp.example".into(), allowed.port())]).with_http(true);
    let gw = Gateway::with(allow, lookup).unwrap();
    let key = SecretString::from("sk-good-0000000000000000");
    let at = |port: u16| format!("http://gpu.corp.example:{port}/v1");
    let (yes, no) = (at(allowed.port()), at(other.port()));
    let up = |url| Upstream {
        wire: WireFormat::OpenAi,
        base_url: url,
        key: &key,
    };
    assert!(
        gw.chat(&up(&yes), &chat_request(), "m", false)
            .await
            .is_ok()
    );
    assert_eq!(authenticated_requests(allowed).await, 1);
    for _ in 0..2 {
        let e = gw
            .chat(&up(&no), &chat_request(), "m", false)
            .await
            .unwrap_err();
        // One answer for "refused: private" and "nothing there": no internal-DNS oracle.
        assert_eq!(
            e.message,
            keyward_server::gateway::chat::UNREACHABLE,
            "{e:?}"
        );
        let test = gw.test_key(WireFormat::OpenAi, &no, &key).await;
        assert_eq!(test.message, keyward_server::gateway::chat::UNREACHABLE);
        // Nothing listening at an allowlisted pair: the same answer.
        let closed = closed_port();
        let lookup: Lookup = std::sync::Arc::new(|_host: String| {
            Box::pin(async { Ok(vec!["127.0.0.1".parse().unwrap()]) })
        });
        let gw2 = Gateway::with(
            Allowlist::new(vec![("gpu.corp.example".into(), closed)]),
            lookup,
        )
        .unwrap();
        let nothing = format!("http://gpu.corp.example:{closed}/v1");
        let test2 = gw2.test_key(WireFormat::OpenAi, &nothing, &key).await;
        assert_eq!((test2.class, test2.message), (test.class, test.message));
    }
    // The allowlisted pair still works after a refusal on the other port (separate pools).
    assert!(gw.chat(&up(&yes), &chat_request(), "m", true).await.is_ok());
    assert_eq!(
        authenticated_requests(other).await,
        0,
        "another port got a key"
    );
}
