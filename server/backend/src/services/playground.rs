//! One chat turn, as the visitor chat page and the dashboard playground run it: check the
//! message and the model, continue (or start) the conversation, send the history with the
//! chatbot's prompt and settings through the chat pipeline ([`ChatService::run`], which meters
//! it), and stream the reply back as [`ChatEvent`]s while a task of its own stores it.
//!
//! The task owns the upstream stream. When the reader goes away (stop button, closed tab) the
//! channel closes, the task drops the upstream response (closing that connection, so the
//! provider stops generating) and stores what had arrived as `stopped`. A key replaced while a
//! reply streams does not touch it: the request already holds its key and connection; the next
//! turn resolves the new key.

use crate::entities::chatbot;
use crate::error::ServiceError;
use crate::gateway::chat::{StreamEvent, Usage};
use crate::services::chat::{ChatCall, ChatError, ChatFailure, ChatService, Reply, ReplyBody};
use crate::services::conversations::{self as convs, Channel, Owner, ReplyRecord};
use crate::services::usage::UsageMeter;
use futures_util::StreamExt;
use keyward::chat::{
    ChatEvent, ChatRole, MAX_MESSAGE_CHARS, MessageStatus, model_id, split_model_id,
};
use keyward::dto::ModelOption;
use keyward::keys::ErrorClass;
use keyward::resolve::{KeySource, ResolveError};
use sea_orm::DatabaseConnection;
use serde_json::{Map, Value, json};
use std::time::Instant;
use tokio::sync::mpsc;
use uuid::Uuid;

/// What visitors read when a reply fails: no provider, key or class is named.
pub const VISITOR_APOLOGY: &str =
    "Sorry — the assistant can't answer right now. Please try again in a little while.";

/// Events buffered between the reply task and a slow reader.
const EVENT_BUFFER: usize = 64;

pub struct Turn {
    pub workspace: Uuid,
    pub chatbot: Option<chatbot::Model>,
    pub channel: Channel,
    pub owner: Owner,
    pub conversation: Option<Uuid>,
    /// `provider/model` for this message; `None`: the chatbot's default.
    pub model: Option<String>,
    pub message: String,
    /// Members see which key served a reply and why one failed.
    pub members: bool,
}

/// The model options a chatbot offers its visitors: its default first, then the allowed
/// models, each labelled with the kind of key that would serve it. Models no key serves now are
/// left out. Returns the options and the default's id.
pub async fn chatbot_models(
    chat: &ChatService,
    bot: &chatbot::Model,
) -> Result<(Vec<ModelOption>, Option<String>), ServiceError> {
    let snap = chat.snapshot(bot.workspace_id).await?;
    let mut out: Vec<ModelOption> = Vec::new();
    let mut default = None;
    if let Ok(r) = snap.resolve(&bot.provider, Some(bot.id), bot.model.as_deref()) {
        default = Some(model_id(&bot.provider, &r.model));
        out.push(ModelOption {
            provider: bot.provider.clone(),
            model: r.model,
            source: r.source,
            default: true,
        });
    }
    for id in allowed_models(bot) {
        let Some((provider, model)) = split_model_id(&id) else {
            continue;
        };
        if out
            .iter()
            .any(|o| o.provider == provider && o.model == model)
        {
            continue;
        }
        if let Ok(r) = snap.resolve(provider, Some(bot.id), Some(model)) {
            out.push(ModelOption {
                provider: provider.into(),
                model: r.model,
                source: r.source,
                default: false,
            });
        }
    }
    Ok((out, default))
}

fn allowed_models(bot: &chatbot::Model) -> Vec<String> {
    bot.allowed_models
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .collect()
}

/// The provider and model for this turn, or why the choice is refused.
async fn choose_model(
    chat: &ChatService,
    turn: &Turn,
) -> Result<(String, Option<String>), ServiceError> {
    match (&turn.chatbot, turn.model.as_deref().map(str::trim)) {
        (Some(bot), None | Some("")) => Ok((bot.provider.clone(), bot.model.clone())),
        (bot, Some(id)) => {
            let (provider, model) = split_model_id(id)
                .ok_or_else(|| ServiceError::Invalid("choose a model (provider/model)".into()))?;
            if keyward::catalogue::provider(provider).is_none() {
                return Err(ServiceError::Invalid("unknown provider".into()));
            }
            // Visitors may only use what the chatbot offers them.
            if turn.channel == Channel::Visitor
                && let Some(bot) = bot
            {
                let (options, _) = chatbot_models(chat, bot).await?;
                if !options
                    .iter()
                    .any(|o| o.provider == provider && o.model == model)
                {
                    return Err(ServiceError::Invalid(
                        "that model is not available for this chatbot".into(),
                    ));
                }
            }
            Ok((provider.to_string(), Some(model.to_string())))
        }
        (None, None) => Err(ServiceError::Invalid("choose a model".into())),
    }
}

/// The OpenAI-shaped request: the chatbot's prompt, the history, the new message, its settings.
fn request(
    bot: Option<&chatbot::Model>,
    history: &[(ChatRole, String)],
    message: &str,
) -> Map<String, Value> {
    let mut messages = Vec::with_capacity(history.len() + 2);
    if let Some(b) = bot
        && !b.system_prompt.is_empty()
    {
        messages.push(json!({"role": "system", "content": b.system_prompt}));
    }
    for (role, content) in history {
        let role = match role {
            ChatRole::User => "user",
            ChatRole::Assistant => "assistant",
        };
        messages.push(json!({"role": role, "content": content}));
    }
    messages.push(json!({"role": "user", "content": message}));
    let mut req = Map::new();
    req.insert("messages".into(), Value::Array(messages));
    let (temperature, max_tokens) = bot.map_or((0.7, 1024), |b| (b.temperature, b.max_tokens));
    req.insert("temperature".into(), json!(temperature));
    req.insert("max_tokens".into(), json!(max_tokens));
    req
}

/// What a member reads when a reply fails.
fn member_reason(provider: &str, e: &ChatError) -> (String, Option<String>) {
    let message = match e {
        ChatError::Resolve(ResolveError::NoKey { .. }) => format!(
            "No key serves {provider}: add one on the Keys page, or ask the platform admin for a platform key."
        ),
        ChatError::Resolve(ResolveError::NoModel { .. }) => {
            format!("No model is set for {provider}: choose one.")
        }
        ChatError::Upstream(u) => format!(
            "{} — the provider answered {}. {}",
            u.class.label(),
            u.status
                .map_or("without a status".to_string(), |s| format!("HTTP {s}")),
            match u.class {
                ErrorClass::InvalidKey => "The key was refused: replace it on the Keys page.",
                ErrorClass::NoQuota => "The key has no quota left.",
                ErrorClass::RateLimited => "Slow down, then try again.",
                ErrorClass::ProviderUnavailable => "Try again shortly.",
                ErrorClass::Rejected => "The provider rejected the request.",
            }
        ),
        ChatError::NoCredits => "This workspace has no credits left for platform keys: add your own key on the Keys page, or ask the platform admin for credits.".into(),
        ChatError::Limited(r) => r.explain(),
        ChatError::Unpriced(field) => format!(
            "`{field}` costs more than tokens and is not available on platform keys: add your own {provider} key to use it."
        ),
        ChatError::Service(_) => "Something went wrong on our side; it has been logged.".into(),
    };
    (message, Some(e.class().into_owned()))
}

fn error_event(
    turn_members: bool,
    provider: &str,
    e: &ChatError,
    stored: Option<keyward::chat::ChatMessageView>,
) -> ChatEvent {
    let (message, class) = member_reason(provider, e);
    if turn_members {
        ChatEvent::Error {
            message,
            class,
            stored,
        }
    } else {
        ChatEvent::Error {
            message: match e {
                ChatError::Limited(r) => r.visitor_sentence(),
                _ => VISITOR_APOLOGY.into(),
            },
            class: None,
            stored: stored.map(|mut s| {
                s.source = None;
                s
            }),
        }
    }
}

fn ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Runs one turn; the reply arrives on the returned channel. Fails before anything is stored
/// when the message, the model or the conversation is refused.
pub async fn send(
    chat: &ChatService,
    db: &DatabaseConnection,
    turn: Turn,
) -> Result<mpsc::Receiver<ChatEvent>, ServiceError> {
    let message = turn.message.trim().to_string();
    if message.is_empty() {
        return Err(ServiceError::Invalid("write a message first".into()));
    }
    if message.chars().count() > MAX_MESSAGE_CHARS {
        return Err(ServiceError::Invalid(format!(
            "a message may have at most {MAX_MESSAGE_CHARS} characters"
        )));
    }
    let (provider, model) = choose_model(chat, &turn).await?;
    let bot_id = turn.chatbot.as_ref().map(|b| b.id);
    let conv = match turn.conversation {
        Some(id) => convs::get(db, turn.workspace, bot_id, &turn.owner, id).await?,
        None => {
            convs::start(
                db,
                turn.workspace,
                bot_id,
                turn.channel,
                &turn.owner,
                &message,
            )
            .await?
        }
    };
    let history = convs::history(db, conv.id).await?;
    convs::append(
        db,
        &conv,
        ChatRole::User,
        ReplyRecord {
            content: message.clone(),
            ..Default::default()
        },
    )
    .await?;
    let started = Instant::now();
    let req = request(turn.chatbot.as_ref(), &history, &message);
    let meter = UsageMeter {
        workspace: turn.workspace,
        chatbot: bot_id,
        conversation: Some(conv.id),
        api_token: None,
        channel: match turn.channel {
            Channel::Visitor => keyward::usage::UsageChannel::Visitor,
            Channel::Dashboard => keyward::usage::UsageChannel::Dashboard,
        },
        provider: provider.clone(),
        model: model.clone(),
        input_estimate: UsageMeter::estimate_input(&req),
        started,
    };
    let call = ChatCall {
        workspace: turn.workspace,
        chatbot: bot_id,
        provider: provider.clone(),
        model: model.clone(),
        request: req,
        stream: true,
    };
    let outcome = chat.run(call, meter).await;
    let (tx, rx) = mpsc::channel(EVENT_BUFFER);
    let members = turn.members;
    let start = |model: String, source: Option<KeySource>| ChatEvent::Start {
        conversation: conv.id.to_string(),
        provider: provider.clone(),
        model,
        source: source.filter(|_| members),
    };
    match outcome {
        Err(ChatFailure { error: e, .. }) => {
            if let ChatError::Service(err) = &e {
                tracing::error!(error = %err, "a chat turn failed on our side");
            }
            let class = Some(e.class().into_owned());
            tracing::info!(
                provider = %provider,
                class = class.as_deref().unwrap_or(""),
                "chat turn failed before the reply started"
            );
            let stored = convs::append(
                db,
                &conv,
                ChatRole::Assistant,
                ReplyRecord {
                    status: Some(MessageStatus::Error),
                    provider: Some(provider.clone()),
                    model: model.clone(),
                    error_class: class,
                    latency_ms: Some(ms(started)),
                    ..Default::default()
                },
            )
            .await?;
            let _ = tx
                .send(start(model.clone().unwrap_or_default(), None))
                .await;
            let _ = tx
                .send(error_event(
                    members,
                    &provider,
                    &e,
                    Some(convs::view(&stored, members)),
                ))
                .await;
        }
        Ok(reply) => {
            let _ = tx
                .send(start(reply.served.model.clone(), Some(reply.served.source)))
                .await;
            let db = db.clone();
            chat.spawn(async move {
                pump(db, conv, provider, reply, started, members, tx).await;
            });
        }
    }
    Ok(rx)
}

/// Forwards the reply to the reader and stores it when it ends (finished, failed or stopped).
async fn pump(
    db: DatabaseConnection,
    conv: crate::entities::conversation::Model,
    provider: String,
    reply: Reply,
    started: Instant,
    members: bool,
    tx: mpsc::Sender<ChatEvent>,
) {
    let mut text = String::new();
    let mut usage: Option<Usage> = None;
    let mut first_token = None;
    let mut failure = None;
    let mut status = MessageStatus::Ok;
    match reply.body {
        ReplyBody::Complete { body, usage: u } => {
            usage = u;
            if let Some(t) = body
                .pointer("/choices/0/message/content")
                .and_then(Value::as_str)
            {
                keyward::chat::push_capped(&mut text, t);
                first_token = Some(ms(started));
                if tx.send(ChatEvent::Delta { text: t.into() }).await.is_err() {
                    status = MessageStatus::Stopped;
                }
            }
        }
        // Dropping the metered stream (by leaving the loop) closes the upstream connection
        // and records the usage: ok, error, or stopped when the reader went away first.
        ReplyBody::Stream(mut stream) => loop {
            tokio::select! {
                biased;
                () = tx.closed() => {
                    status = MessageStatus::Stopped;
                    break;
                }
                next = stream.next() => match next {
                    Some(Ok(StreamEvent::Chunk(chunk))) => {
                        if chunk.usage.is_some() {
                            usage = chunk.usage;
                        }
                        if let Some(piece) = chunk.text {
                            first_token.get_or_insert_with(|| ms(started));
                            keyward::chat::push_capped(&mut text, &piece);
                            if tx.send(ChatEvent::Delta { text: piece }).await.is_err() {
                                status = MessageStatus::Stopped;
                                break;
                            }
                        }
                    }
                    Some(Ok(StreamEvent::Done)) | None => break,
                    Some(Err(e)) => {
                        status = MessageStatus::Error;
                        failure = Some(e);
                        break;
                    }
                },
            }
        },
    }
    let latency = ms(started);
    tracing::info!(
        provider = %provider,
        model = ?reply.served.model,
        source = reply.served.source.as_str(),
        status = status.as_str(),
        latency_ms = latency,
        "chat turn finished"
    );
    let record = ReplyRecord {
        content: text,
        status: Some(status),
        provider: Some(provider.clone()),
        model: Some(reply.served.model.clone()),
        source: Some(reply.served.source),
        error_class: failure.as_ref().map(|e| e.class.as_str().to_string()),
        input_tokens: usage.map(|u| u.input_tokens),
        output_tokens: usage.map(|u| u.output_tokens),
        first_token_ms: first_token,
        latency_ms: Some(latency),
    };
    let stored = match convs::append(&db, &conv, ChatRole::Assistant, record).await {
        Ok(m) => Some(convs::view(&m, members)),
        Err(e) => {
            tracing::error!(error = %e, "could not store a chat reply");
            None
        }
    };
    let last = match (failure, stored) {
        (Some(e), stored) => error_event(members, &provider, &ChatError::Upstream(e), stored),
        (None, Some(message)) => ChatEvent::Done { message },
        (None, None) => ChatEvent::Error {
            message: "The reply could not be saved.".into(),
            class: Some("internal".into()),
            stored: None,
        },
    };
    let _ = tx.send(last).await;
}

/// The public chat page of a chatbot: its greeting, the models it offers, and the visitor's
/// latest conversation. A private chatbot answers "not found" to anyone who may not chat in its
/// workspace.
pub async fn chat_page(
    chat: &ChatService,
    db: &DatabaseConnection,
    (workspace_slug, chatbot_slug): (&str, &str),
    caller: &crate::identity::Caller,
) -> Result<keyward::chat::ChatPage, ServiceError> {
    let (ws, bot) = crate::services::chatbots::by_slugs(db, workspace_slug, chatbot_slug).await?;
    // Only a private chatbot needs the session: public pages never read it.
    if !bot.public {
        let (action, who) = (keyward::policy::Action::Chat, caller.user(db).await?);
        crate::auth::authorize(db, who, bot.workspace_id, action)
            .await
            .map_err(|_| ServiceError::NotFound)?;
    }
    let (models, default_model) = chatbot_models(chat, &bot).await?;
    let mut conversation = None;
    let mut messages = Vec::new();
    if let Some(v) = caller.visitor.as_deref() {
        let owner = Owner::Visitor(convs::visitor_hash(v));
        if let Some(c) = convs::latest(db, bot.id, &owner).await? {
            messages = convs::messages(db, c.id)
                .await?
                .iter()
                .map(|m| convs::view(m, false))
                .collect();
            conversation = Some(c.id.to_string());
        }
    }
    Ok(keyward::chat::ChatPage {
        workspace_name: ws.name,
        workspace_slug: ws.slug,
        chatbot_name: bot.name,
        chatbot_slug: bot.slug,
        greeting: bot.greeting,
        models,
        default_model,
        conversation,
        messages,
    })
}

/// The dashboard playground of a workspace, optionally as one of its chatbots: the models on
/// offer (a chatbot's own offer first) and the default.
pub async fn page(
    chat: &ChatService,
    models_cache: &crate::services::models::ModelsCache,
    db: &DatabaseConnection,
    ok: &crate::auth::Authorized,
    chatbot: Option<Uuid>,
) -> Result<keyward::chat::PlaygroundPage, ServiceError> {
    use crate::services::chatbots;
    let ws = ok.workspace.id;
    let bots = chatbots::list(db, ws).await?;
    let bot = match chatbot {
        None => None,
        Some(id) => Some(chatbots::get(db, ws, id).await?),
    };
    let mut models = chat
        .models(models_cache, ws, bot.as_ref().map(|b| b.id))
        .await?;
    let mut default_model = models
        .iter()
        .find(|m| m.default)
        .map(|m| model_id(&m.provider, &m.model));
    if let Some(b) = &bot {
        let (offered, default) = chatbot_models(chat, b).await?;
        for o in offered.into_iter().rev() {
            models.retain(|m| !(m.provider == o.provider && m.model == o.model));
            models.insert(0, o);
        }
        default_model = default.or(default_model);
    }
    Ok(keyward::chat::PlaygroundPage {
        workspace: crate::services::workspaces::summary(&ok.workspace, ok.actor.role)?,
        chatbots: bots.iter().map(chatbots::view).collect(),
        chatbot: bot.map(|b| b.id.to_string()),
        models,
        default_model,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_prompt_history_and_settings() {
        let now = chrono::Utc::now();
        let bot = chatbot::Model {
            id: Uuid::new_v4(),
            workspace_id: Uuid::new_v4(),
            name: "B".into(),
            slug: "b".into(),
            system_prompt: "Be brief.".into(),
            greeting: String::new(),
            provider: "openai".into(),
            model: None,
            temperature: 0.2,
            max_tokens: 50,
            public: true,
            allowed_models: String::new(),
            daily_cap: 0,
            allowed_sites: String::new(),
            created_at: now,
            updated_at: now,
        };
        let req = request(
            Some(&bot),
            &[
                (ChatRole::User, "hi".into()),
                (ChatRole::Assistant, "hello".into()),
            ],
            "again",
        );
        assert_eq!(
            Value::Object(req),
            json!({
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hello"},
                    {"role": "user", "content": "again"},
                ],
                "temperature": 0.2,
                "max_tokens": 50,
            })
        );
    }
}
