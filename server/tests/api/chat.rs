//! Chatbots and chat over HTTP, on SQLite and PostgreSQL, against the mock provider: the visitor
//! chat page's stream (cookie id, persistence, model switching, private chatbots), rate limits
//! and the daily cap, the chatbot key overriding the workspace key, a key replaced mid-stream,
//! stopping a reply (the upstream stream closes), friendly errors for visitors and classified
//! ones for members, and the dashboard playground.

use crate::helpers::{Backend, both_backends, eventually};
use crate::keys::{HttpWorld, http_world_with};
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use keyward::chat::{ChatEvent, ChatMessageView, MessageStatus};
use keyward::resolve::KeySource;
use keyward_app::api::{
    AddKey, CreateChatbot, DeleteKey, GetChatPage, GetKeys, GetPlayground, ReplaceKey,
    UpdateChatbot,
};
use keyward_server::entities::{conversation, message};
use keyward_server::mock_provider::MockConfig;
use keyward_server::services::playground::VISITOR_APOLOGY;
use leptos::server_fn::ServerFn;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;

pub(crate) const WS_KEY: &str = "sk-workspace-chat-key-000000001111";
const BOT_KEY: &str = "sk-chatbot-chat-key-0000000002222";
const NEW_KEY: &str = "sk-replacement-chat-key-00000003333";

pub(crate) struct Chat {
    pub w: HttpWorld,
    pub bot_id: String,
}

impl Chat {
    pub(crate) async fn post_form(
        &self,
        path: &str,
        form: Vec<(&str, String)>,
        who: &str,
    ) -> (u16, String) {
        let res = self
            .w
            .app
            .client
            .post(self.w.app.url(path))
            .header("cookie", who)
            .header(keyward::http::CSRF_HEADER, "1")
            .form(&form)
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    pub(crate) fn ws(&self) -> String {
        self.w.ws.id.to_string()
    }

    /// Changes the chatbot's settings (owner).
    async fn configure(&self, public: bool, allowed: &str, daily_cap: u32) {
        let (s, out) = self
            .post_form(
                UpdateChatbot::PATH,
                {
                    let mut form = vec![
                        ("workspace_id", self.ws()),
                        ("chatbot_id", self.bot_id.clone()),
                        ("update[name]", "Helper".into()),
                        ("update[provider]", "openai".into()),
                        ("update[model]", String::new()),
                        ("update[system_prompt]", "Be kind.".into()),
                        ("update[greeting]", "Hi! Ask me anything.".into()),
                        ("update[temperature]", "0.5".into()),
                        ("update[max_tokens]", "200".into()),
                        ("update[public]", public.to_string()),
                        ("update[daily_cap]", daily_cap.to_string()),
                    ];
                    let names = ["update[allowed_models][0]", "update[allowed_models][1]"];
                    for (name, m) in names.into_iter().zip(allowed.split_whitespace()) {
                        form.push((name, m.to_string()));
                    }
                    form
                },
                &self.w.owner.clone(),
            )
            .await;
        assert_eq!(s, 200, "{out}");
    }

    pub(crate) async fn add_key(&self, chatbot: &str, key: &str) -> String {
        let (s, out) = self
            .post_form(
                AddKey::PATH,
                vec![
                    (
                        "scope",
                        match chatbot {
                            "" => self.ws(),
                            bot => format!("{}/{bot}", self.ws()),
                        },
                    ),
                    ("provider", "openai".into()),
                    ("key", key.into()),
                    ("default_model", String::new()),
                    ("base_url", String::new()),
                ],
                &self.w.owner.clone(),
            )
            .await;
        assert_eq!(s, 200, "{out}");
        serde_json::from_str::<Value>(&out).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub(crate) fn visitor_url(&self) -> String {
        self.w
            .app
            .url(&keyward::http::chat_endpoint(&self.w.ws.slug, "helper"))
    }

    pub(crate) fn playground_url(&self) -> String {
        self.w
            .app
            .url(&keyward::http::playground_endpoint(&self.ws()))
    }

    /// Sends a message and returns the raw response.
    pub(crate) async fn send(
        &self,
        url: &str,
        cookie: Option<&str>,
        body: Value,
    ) -> reqwest::Response {
        let mut req = self
            .w
            .app
            .client
            .post(url)
            .header(keyward::http::CSRF_HEADER, "1")
            .json(&body);
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        req.send().await.unwrap()
    }
}

/// Every event of a reply, read to the end.
pub(crate) async fn events(res: reqwest::Response) -> Vec<ChatEvent> {
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut out = Vec::new();
    let mut stream = res.bytes_stream().eventsource();
    while let Some(ev) = stream.next().await {
        let ev = ev.unwrap();
        out.push(serde_json::from_str::<ChatEvent>(&ev.data).unwrap());
    }
    out
}

fn text_of(events: &[ChatEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            ChatEvent::Delta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

pub(crate) fn done(events: &[ChatEvent]) -> ChatMessageView {
    match events.last() {
        Some(ChatEvent::Done { message }) => message.clone(),
        other => panic!("the reply did not finish: {other:?} in {events:?}"),
    }
}

fn started(events: &[ChatEvent]) -> (String, String, Option<KeySource>) {
    match events.first() {
        Some(ChatEvent::Start {
            conversation,
            model,
            source,
            ..
        }) => (conversation.clone(), model.clone(), *source),
        other => panic!("no start event: {other:?}"),
    }
}

/// The `keyward_visitor=…` pair a response set.
fn visitor_cookie(res: &reqwest::Response) -> String {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(keyward::http::VISITOR_COOKIE))
        .map(|c| c.split(';').next().unwrap().to_string())
        .expect("a visitor cookie")
}

/// The workspace's keys page as its owner sees it (through the server function).
async fn owners_keys(c: &Chat) -> keyward::dto::KeysPage {
    let (_, out) = c
        .post_form(GetKeys::PATH, vec![("scope", c.ws())], &c.w.owner.clone())
        .await;
    serde_json::from_str(&out).unwrap()
}

async fn mock_stats(mock: SocketAddr) -> Value {
    reqwest::get(format!("http://{mock}/__mock/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub(crate) async fn revoke_at_mock(mock: SocketAddr, key: &str) {
    let res = reqwest::Client::new()
        .post(format!("http://{mock}/__mock/revoke"))
        .json(&json!({ "key": key }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
}

/// A world with OpenAI pointed at the mock, a workspace key, and a public chatbot "Helper".
pub(crate) async fn chat_world(
    backend: Backend,
    mock: MockConfig,
    adjust: impl FnOnce(&mut keyward_server::config::Settings),
) -> Chat {
    use keyward_server::gateway::Gateway;
    use keyward_server::services::audit::By;
    use keyward_server::services::catalogue::{self, ProviderChange};
    let w = http_world_with(backend, mock, adjust).await;
    catalogue::update_provider(
        &w.app.db,
        &w.app.state.changes,
        &Gateway::new(vec![("127.0.0.1".into(), w.mock.port())]).unwrap(),
        &By::cli(),
        "openai",
        ProviderChange {
            base_url: format!("http://127.0.0.1:{}/v1", w.mock.port()),
            default_model: "mock-small".into(),
            byok_enabled: true,
        },
    )
    .await
    .unwrap();
    let mut chat = Chat {
        w,
        bot_id: String::new(),
    };
    let (s, out) = chat
        .post_form(
            CreateChatbot::PATH,
            vec![
                ("workspace_id", chat.ws()),
                ("name", "Helper".into()),
                ("provider", "openai".into()),
                ("public", "true".into()),
            ],
            &chat.w.owner.clone(),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    chat.bot_id = serde_json::from_str::<Value>(&out).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    chat.configure(true, "", 0).await;
    chat.add_key("", WS_KEY).await;
    chat
}

async fn visitor_conversation_persists(backend: Backend) {
    let c = chat_world(backend, MockConfig::default(), |_| {}).await;
    let db = &c.w.app.db;

    // A first message, without any cookie: the reply streams and a visitor id is set.
    let res = c
        .send(&c.visitor_url(), None, json!({"message": "hello there"}))
        .await;
    let cookie = visitor_cookie(&res);
    let first = events(res).await;
    let (conv, model, source) = started(&first);
    assert_eq!(model, "mock-small");
    assert_eq!(source, None, "visitors are not told which key served them");
    assert_eq!(text_of(&first), "[system: Be kind.] You said: hello there");
    assert!(
        first
            .iter()
            .filter(|e| matches!(e, ChatEvent::Delta { .. }))
            .count()
            > 3,
        "the reply arrives token by token: {first:?}"
    );
    let reply = done(&first);
    assert_eq!(reply.status, MessageStatus::Ok);
    assert_eq!(reply.source, None);
    assert_eq!(reply.output_tokens, Some(7));
    assert!(reply.latency_ms.is_some() && reply.first_token_ms.is_some());

    // The same visitor continues the conversation: the history goes to the provider.
    let second = events(
        c.send(
            &c.visitor_url(),
            Some(&cookie),
            json!({"message": "and again", "conversation": conv}),
        )
        .await,
    )
    .await;
    assert_eq!(started(&second).0, conv);
    assert_eq!(text_of(&second), "[system: Be kind.] You said: and again");
    assert!(
        done(&second).input_tokens.unwrap() > reply.input_tokens.unwrap() + 7,
        "the earlier turn was sent along"
    );

    // Stored: one conversation, keyed by the cookie's hash (never the cookie), four messages.
    let convs = conversation::Entity::find().all(db).await.unwrap();
    assert_eq!(convs.len(), 1);
    let id = cookie.split_once('=').unwrap().1;
    assert_eq!(
        convs[0].visitor_hash.as_deref(),
        Some(keyward_server::services::conversations::visitor_hash(id).as_str())
    );
    assert_ne!(convs[0].visitor_hash.as_deref(), Some(id));
    assert_eq!(convs[0].title, "hello there");
    let msgs = message::Entity::find()
        .order_by_asc(message::Column::CreatedAt)
        .order_by_asc(message::Column::Id)
        .all(db)
        .await
        .unwrap();
    let roles: Vec<(&str, &str)> = msgs
        .iter()
        .map(|m| (m.role.as_str(), m.content.as_str()))
        .collect();
    assert_eq!(
        roles,
        vec![
            ("user", "hello there"),
            ("assistant", "[system: Be kind.] You said: hello there"),
            ("user", "and again"),
            ("assistant", "[system: Be kind.] You said: and again"),
        ]
    );
    assert_eq!(msgs[1].key_source.as_deref(), Some("workspace"));
    assert_eq!(msgs[1].channel, "visitor");

    // The chat page shows the visitor their conversation, and nobody else's.
    let page = |cookie: Option<String>| {
        let mut req =
            c.w.app
                .client
                .post(c.w.app.url(GetChatPage::PATH))
                .header(keyward::http::CSRF_HEADER, "1")
                .form(&[
                    ("workspace_slug", c.w.ws.slug.clone()),
                    ("chatbot_slug", "helper".to_string()),
                ]);
        if let Some(cookie) = cookie {
            req = req.header("cookie", cookie);
        }
        async move {
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 200);
            res.json::<keyward::chat::ChatPage>().await.unwrap()
        }
    };
    let mine = page(Some(cookie.clone())).await;
    assert_eq!(mine.conversation.as_deref(), Some(conv.as_str()));
    assert_eq!(mine.messages.len(), 4);
    assert_eq!(mine.greeting, "Hi! Ask me anything.");
    assert_eq!(mine.default_model.as_deref(), Some("openai/mock-small"));
    let stranger = format!("{}={}", keyward::http::VISITOR_COOKIE, "A".repeat(43));
    assert!(page(Some(stranger.clone())).await.messages.is_empty());
    assert!(page(None).await.messages.is_empty());

    // Another visitor cannot continue (or read) this conversation.
    let res = c
        .send(
            &c.visitor_url(),
            Some(&stranger),
            json!({"message": "let me in", "conversation": conv}),
        )
        .await;
    assert_eq!(res.status(), 404);
    // Nor can anyone post without the CSRF proof.
    let res =
        c.w.app
            .client
            .post(c.visitor_url())
            .json(&json!({"message": "hi"}))
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), 403);
    // Bad bodies get a clear error and store nothing.
    for body in [json!({"message": "   "}), json!({"nothing": 1})] {
        let res = c.send(&c.visitor_url(), Some(&cookie), body).await;
        assert_eq!(res.status(), 400);
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["error"]["code"], "invalid_request");
    }
    let long = "a ".repeat(keyward::chat::MAX_MESSAGE_CHARS);
    let res = c
        .send(&c.visitor_url(), Some(&cookie), json!({"message": long}))
        .await;
    assert_eq!(res.status(), 400);
    assert_eq!(message::Entity::find().count(db).await.unwrap(), 4);

    // Per-message model switching, limited to the models the owner allows.
    let res = c
        .send(
            &c.visitor_url(),
            Some(&cookie),
            json!({"message": "big?", "model": "openai/mock-large"}),
        )
        .await;
    assert_eq!(res.status(), 400, "not allowed yet");
    c.configure(true, "openai/mock-large\nopenai/gpt-4o-mini", 0)
        .await;
    let page_models = page(None).await.models;
    assert_eq!(
        page_models
            .iter()
            .map(|m| (m.model.as_str(), m.source, m.default))
            .collect::<Vec<_>>(),
        vec![
            ("mock-small", KeySource::Workspace, true),
            ("mock-large", KeySource::Workspace, false),
            ("gpt-4o-mini", KeySource::Workspace, false),
        ]
    );
    let big = events(
        c.send(
            &c.visitor_url(),
            Some(&cookie),
            json!({"message": "big?", "model": "openai/mock-large", "conversation": conv}),
        )
        .await,
    )
    .await;
    assert_eq!(started(&big).1, "mock-large");
    assert_eq!(done(&big).model.as_deref(), Some("mock-large"));
    let next = events(
        c.send(
            &c.visitor_url(),
            Some(&cookie),
            json!({"message": "small again", "conversation": conv}),
        )
        .await,
    )
    .await;
    assert_eq!(
        started(&next).1,
        "mock-small",
        "the switch held for one message"
    );

    // A private chatbot: outsiders get 404, members chat.
    c.configure(false, "", 0).await;
    let res = c
        .send(&c.visitor_url(), Some(&cookie), json!({"message": "hi"}))
        .await;
    assert_eq!(res.status(), 404);
    let res = c
        .send(
            &c.visitor_url(),
            Some(&c.w.member),
            json!({"message": "hi"}),
        )
        .await;
    assert_eq!(
        text_of(&events(res).await),
        "[system: Be kind.] You said: hi"
    );
}
both_backends!(visitor_chat, super::visitor_conversation_persists);

async fn caps_and_rate_limits(backend: Backend) {
    let c = chat_world(backend, MockConfig::default(), |s| {
        s.visitor_messages_per_minute = 3;
    })
    .await;
    let db = &c.w.app.db;
    let visitor = |n: char| {
        format!(
            "{}={}",
            keyward::http::VISITOR_COOKIE,
            n.to_string().repeat(43)
        )
    };
    let (a, b, d) = (visitor('a'), visitor('b'), visitor('d'));
    for _ in 0..3 {
        done(
            &events(
                c.send(&c.visitor_url(), Some(&a), json!({"message": "hi"}))
                    .await,
            )
            .await,
        );
    }
    let res = c
        .send(&c.visitor_url(), Some(&a), json!({"message": "hi"}))
        .await;
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limited");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("You're sending messages too quickly. Please wait"),
        "{v}"
    );

    // The daily cap counts every visitor's messages today.
    c.configure(true, "", 5).await;
    for _ in 0..2 {
        done(
            &events(
                c.send(&c.visitor_url(), Some(&b), json!({"message": "hi"}))
                    .await,
            )
            .await,
        );
    }
    let res = c
        .send(&c.visitor_url(), Some(&b), json!({"message": "hi"}))
        .await;
    assert_eq!(res.status(), 429);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "daily_cap");
    assert_eq!(
        v["error"]["message"],
        "This chatbot has reached its message limit for today. Please come back tomorrow."
    );
    let stored = message::Entity::find()
        .filter(message::Column::Role.eq("user"))
        .count(db)
        .await
        .unwrap();
    assert_eq!(stored, 5, "refused messages are not stored");

    // One address cannot escape the limit with fresh cookies (3× the per-visitor limit).
    let mut codes = Vec::new();
    for _ in 0..3 {
        let res = c
            .send(&c.visitor_url(), Some(&d), json!({"message": "hi"}))
            .await;
        let v: Value = res.json().await.unwrap();
        codes.push(v["error"]["code"].as_str().unwrap().to_string());
    }
    assert_eq!(codes, ["daily_cap", "daily_cap", "rate_limited"]);

    // Members in the dashboard playground are neither capped nor visitor-limited.
    c.configure(true, "", 1).await;
    let reply = events(
        c.send(
            &c.playground_url(),
            Some(&c.w.owner),
            json!({"message": "owner test", "chatbot": c.bot_id}),
        )
        .await,
    )
    .await;
    assert_eq!(done(&reply).status, MessageStatus::Ok);
}
both_backends!(visitor_limits, super::caps_and_rate_limits);

async fn chatbot_key_overrides_workspace_key(backend: Backend) {
    let c = chat_world(backend, MockConfig::default(), |_| {}).await;
    let tail = |v: Value| v["last_key_tail"].as_str().unwrap().to_string();

    let reply = events(
        c.send(&c.visitor_url(), None, json!({"message": "a"}))
            .await,
    )
    .await;
    done(&reply);
    assert_eq!(tail(mock_stats(c.w.mock).await), "1111");

    let bot_key = c.add_key(&c.bot_id, BOT_KEY).await;
    let reply = events(
        c.send(&c.visitor_url(), None, json!({"message": "b"}))
            .await,
    )
    .await;
    done(&reply);
    assert_eq!(
        tail(mock_stats(c.w.mock).await),
        "2222",
        "the chatbot's own key"
    );

    // The dashboard shows the source: chatbot for the chatbot, workspace without one.
    let with_bot = events(
        c.send(
            &c.playground_url(),
            Some(&c.w.member),
            json!({"message": "c", "chatbot": c.bot_id}),
        )
        .await,
    )
    .await;
    assert_eq!(started(&with_bot).2, Some(KeySource::Chatbot));
    assert_eq!(done(&with_bot).source, Some(KeySource::Chatbot));
    let plain = events(
        c.send(
            &c.playground_url(),
            Some(&c.w.member),
            json!({"message": "d", "model": "openai/mock-large"}),
        )
        .await,
    )
    .await;
    assert_eq!(started(&plain).2, Some(KeySource::Workspace));
    assert_eq!(started(&plain).1, "mock-large");
    assert_eq!(tail(mock_stats(c.w.mock).await), "1111");

    // Without its own key the chatbot falls back to the workspace key.
    let (s, out) = c
        .post_form(
            DeleteKey::PATH,
            vec![
                ("scope", format!("{}/{}", c.ws(), c.bot_id)),
                ("key_id", bot_key),
            ],
            &c.w.owner.clone(),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    done(
        &events(
            c.send(&c.visitor_url(), None, json!({"message": "e"}))
                .await,
        )
        .await,
    );
    assert_eq!(tail(mock_stats(c.w.mock).await), "1111");

    // The playground page lists what each chatbot can use, labelled by key source.
    let (s, out) = c
        .post_form(
            GetPlayground::PATH,
            vec![("workspace", c.ws()), ("chatbot", c.bot_id.clone())],
            &c.w.member.clone(),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    let page: keyward::chat::PlaygroundPage = serde_json::from_str(&out).unwrap();
    assert_eq!(page.chatbot.as_deref(), Some(c.bot_id.as_str()));
    assert_eq!(page.default_model.as_deref(), Some("openai/mock-small"));
    assert!(
        page.models
            .iter()
            .any(|m| m.model == "mock-large" && m.source == KeySource::Workspace),
        "{page:?}"
    );

    // Outsiders: no session 401, another workspace's id 404.
    let res = c
        .send(
            &c.playground_url(),
            None,
            json!({"message": "x", "model": "openai/mock-small"}),
        )
        .await;
    assert_eq!(res.status(), 401);
    let res = c
        .send(
            &c.w.app.url(&keyward::http::playground_endpoint(
                &uuid::Uuid::new_v4().to_string(),
            )),
            Some(&c.w.member),
            json!({"message": "x", "model": "openai/mock-small"}),
        )
        .await;
    assert_eq!(res.status(), 404);
}
both_backends!(
    chatbot_key_override,
    super::chatbot_key_overrides_workspace_key
);

const LONG: &str = "one two three four five six seven eight nine ten eleven twelve thirteen \
    fourteen fifteen sixteen seventeen eighteen nineteen twenty";

async fn key_replaced_mid_stream(backend: Backend) {
    let c = chat_world(
        backend,
        MockConfig {
            tokens_per_sec: 40,
            ..Default::default()
        },
        |_| {},
    )
    .await;
    let key_id = owners_keys(&c)
        .await
        .rows
        .iter()
        .find_map(|r| r.key.as_ref().map(|k| k.id.clone()))
        .unwrap();

    let res = c
        .send(&c.visitor_url(), None, json!({ "message": LONG }))
        .await;
    let cookie = visitor_cookie(&res);
    let mut stream = res.bytes_stream().eventsource();
    let mut got = Vec::new();
    while got.len() < 4 {
        let ev = stream.next().await.unwrap().unwrap();
        got.push(serde_json::from_str::<ChatEvent>(&ev.data).unwrap());
    }
    let conv = started(&got).0;

    // Mid-stream: the owner replaces the key, and the old one is revoked at the provider.
    let (s, out) = c
        .post_form(
            ReplaceKey::PATH,
            vec![
                ("scope", c.ws()),
                ("key_id", key_id),
                ("provider", "openai".into()),
                ("key", NEW_KEY.into()),
                ("default_model", String::new()),
                ("base_url", String::new()),
            ],
            &c.w.owner.clone(),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    assert!(out.contains("\"ok\":true"), "{out}");
    revoke_at_mock(c.w.mock, WS_KEY).await;

    while let Some(ev) = stream.next().await {
        got.push(serde_json::from_str::<ChatEvent>(&ev.unwrap().data).unwrap());
    }
    assert_eq!(
        text_of(&got),
        format!("[system: Be kind.] You said: {LONG}"),
        "the reply finished on the old key"
    );
    assert_eq!(done(&got).status, MessageStatus::Ok);

    // The next message resolves the new key.
    let next = events(
        c.send(
            &c.visitor_url(),
            Some(&cookie),
            json!({"message": "after", "conversation": conv}),
        )
        .await,
    )
    .await;
    assert_eq!(text_of(&next), "[system: Be kind.] You said: after");
    assert_eq!(
        mock_stats(c.w.mock).await["last_key_tail"],
        "3333",
        "the new key served it"
    );
}
both_backends!(key_replacement, super::key_replaced_mid_stream);

async fn stopping_a_reply_closes_the_upstream(backend: Backend) {
    let c = chat_world(
        backend,
        MockConfig {
            tokens_per_sec: 10,
            ..Default::default()
        },
        |_| {},
    )
    .await;
    let res = c
        .send(&c.visitor_url(), None, json!({ "message": LONG }))
        .await;
    let mut stream = res.bytes_stream().eventsource();
    for _ in 0..3 {
        stream.next().await.unwrap().unwrap();
    }
    assert_eq!(mock_stats(c.w.mock).await["open_streams"], 1);
    drop(stream); // the reader stops: the connection closes

    eventually(
        Duration::from_secs(5),
        "the provider's stream closed",
        || async { (mock_stats(c.w.mock).await["open_streams"] == 0).then_some(()) },
    )
    .await;

    // What had arrived is stored as stopped.
    let stored = eventually(
        Duration::from_secs(5),
        "the partial reply stored",
        || async {
            message::Entity::find()
                .filter(message::Column::Role.eq("assistant"))
                .one(&c.w.app.db)
                .await
                .unwrap()
        },
    )
    .await;
    assert_eq!(stored.status, "stopped");
    assert!(
        !stored.content.is_empty() && stored.content.len() < LONG.len(),
        "{:?}",
        stored.content
    );
}
both_backends!(stop, super::stopping_a_reply_closes_the_upstream);

async fn provider_failures(backend: Backend) {
    let c = chat_world(backend, MockConfig::default(), |_| {}).await;
    revoke_at_mock(c.w.mock, WS_KEY).await;

    let visitor = events(
        c.send(&c.visitor_url(), None, json!({"message": "hi"}))
            .await,
    )
    .await;
    match visitor.last() {
        Some(ChatEvent::Error {
            message,
            class,
            stored,
        }) => {
            assert_eq!(message, VISITOR_APOLOGY);
            assert_eq!(class, &None, "visitors learn nothing about the key");
            assert_eq!(stored.as_ref().unwrap().status, MessageStatus::Error);
        }
        other => panic!("{other:?}"),
    }
    // Nothing names the key's failure: not the class, the provider's answer or its status. (Not
    // a bare "401": the events carry UUIDs, whose hex may hold those digits.)
    let raw = format!("{visitor:?}").to_lowercase();
    for leak in [
        "invalid",
        "incorrect api key",
        "http 401",
        "status 401",
        "unauthorized",
    ] {
        assert!(!raw.contains(leak), "{leak}: {raw}");
    }

    let member = events(
        c.send(
            &c.playground_url(),
            Some(&c.w.member),
            json!({"message": "hi", "chatbot": c.bot_id}),
        )
        .await,
    )
    .await;
    match member.last() {
        Some(ChatEvent::Error { message, class, .. }) => {
            assert_eq!(class.as_deref(), Some("invalid_key"));
            assert!(
                message.starts_with("Invalid key — the provider answered HTTP 401."),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }

    // The owner sees the classified reason on the key row.
    let class = eventually(
        Duration::from_secs(5),
        "the key row's last error",
        || async {
            owners_keys(&c)
                .await
                .rows
                .iter()
                .find_map(|r| r.key.as_ref())
                .and_then(|k| k.last_error.as_ref().map(|e| e.class))
        },
    )
    .await;
    assert_eq!(class, keyward::keys::ErrorClass::InvalidKey);
}
both_backends!(failures, super::provider_failures);

/// The chat page renders on the server for a visitor: the chatbot, its greeting and the model
/// picker, without the dashboard around it; a private chatbot answers 404 to outsiders.
async fn chat_page_renders_for_visitors(backend: Backend) {
    let c = chat_world(backend, MockConfig::default(), |_| {}).await;
    let path = format!("/chat/{}/helper", c.w.ws.slug);
    let get = |cookie: Option<String>| {
        let mut req = c.w.app.client.get(c.w.app.url(&path));
        if let Some(cookie) = cookie {
            req = req.header("cookie", cookie);
        }
        async move {
            let res = req.send().await.unwrap();
            (res.status().as_u16(), res.text().await.unwrap())
        }
    };
    let (s, html) = get(None).await;
    assert_eq!(s, 200);
    assert!(html.contains("<h1>Helper</h1>"), "{html}");
    assert!(html.contains("Hi! Ask me anything."));
    assert!(html.contains("<optgroup label=\"Your keys\">"));
    assert!(html.contains("/pkg/keyward.js"), "hydrates");
    assert!(
        !html.contains("aria-label=\"Primary\""),
        "no dashboard navigation"
    );

    // A returning visitor sees their conversation, rendered as safe Markdown.
    let res = c
        .send(
            &c.visitor_url(),
            None,
            json!({"message": "**hi** <b>x</b>"}),
        )
        .await;
    let cookie = visitor_cookie(&res);
    done(&events(res).await);
    let (_, html) = get(Some(cookie)).await;
    assert!(
        html.contains("<strong>hi</strong> &lt;b&gt;x&lt;/b&gt;"),
        "{html}"
    );

    c.configure(false, "", 0).await;
    let (s, html) = get(None).await;
    assert_eq!(s, 404);
    assert!(html.contains("This chat does not exist"));
    assert!(!html.contains("Helper"));
    let (s, _) = get(Some(c.w.member.clone())).await;
    assert_eq!(s, 200, "members see their private chatbot");
    let (s, _) =
        c.w.app
            .client
            .get(c.w.app.url(&format!("/chat/{}/nope", c.w.ws.slug)))
            .send()
            .await
            .map(|r| (r.status().as_u16(), ()))
            .unwrap();
    assert_eq!(s, 404);
}
both_backends!(chat_page, super::chat_page_renders_for_visitors);
