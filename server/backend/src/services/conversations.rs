//! Conversations and messages: found only through their owner (a visitor's cookie hash with the
//! chatbot, or a member with the workspace), so an id from elsewhere answers `NotFound`.

use crate::entities::{conversation, message};
use crate::error::ServiceError;
use chrono::{DateTime, Utc};
use keyward::chat::{ChatMessageView, ChatRole, MessageStatus};
use keyward::resolve::KeySource;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// How many earlier messages go to the provider with a new one.
pub const HISTORY_MESSAGES: u64 = 40;
/// And at most this many characters of them (the newest are kept).
pub const HISTORY_CHARS: usize = 48_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// The public chat page.
    Visitor,
    /// The dashboard playground.
    Dashboard,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Visitor => "visitor",
            Self::Dashboard => "dashboard",
        }
    }
}

/// Who a conversation belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// SHA-256 (hex) of the visitor's cookie id.
    Visitor(String),
    Member(Uuid),
}

/// The stored form of a visitor cookie id: the cookie alone finds the conversations.
pub fn visitor_hash(cookie_id: &str) -> String {
    hex::encode(Sha256::digest(cookie_id.as_bytes()))
}

fn owned_by(
    q: sea_orm::Select<conversation::Entity>,
    owner: &Owner,
) -> sea_orm::Select<conversation::Entity> {
    match owner {
        Owner::Visitor(h) => q.filter(conversation::Column::VisitorHash.eq(h.as_str())),
        Owner::Member(u) => q.filter(conversation::Column::UserId.eq(*u)),
    }
}

/// A conversation of `owner` in `workspace` (and with `chatbot`, `None` for none).
pub async fn get<C: ConnectionTrait>(
    db: &C,
    workspace: Uuid,
    chatbot: Option<Uuid>,
    owner: &Owner,
    id: Uuid,
) -> Result<conversation::Model, ServiceError> {
    let q = conversation::Entity::find_by_id(id)
        .filter(conversation::Column::WorkspaceId.eq(workspace));
    let q = match chatbot {
        Some(c) => q.filter(conversation::Column::ChatbotId.eq(c)),
        None => q.filter(conversation::Column::ChatbotId.is_null()),
    };
    owned_by(q, owner)
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound)
}

/// The owner's most recent conversation with a chatbot.
pub async fn latest<C: ConnectionTrait>(
    db: &C,
    chatbot: Uuid,
    owner: &Owner,
) -> Result<Option<conversation::Model>, ServiceError> {
    Ok(owned_by(
        conversation::Entity::find().filter(conversation::Column::ChatbotId.eq(chatbot)),
        owner,
    )
    .order_by_desc(conversation::Column::UpdatedAt)
    .one(db)
    .await?)
}

pub async fn start<C: ConnectionTrait>(
    db: &C,
    workspace: Uuid,
    chatbot: Option<Uuid>,
    channel: Channel,
    owner: &Owner,
    first_message: &str,
) -> Result<conversation::Model, ServiceError> {
    let now = Utc::now();
    let title: String = first_message
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let title: String = title.chars().take(120).collect();
    let (visitor, user) = match owner {
        Owner::Visitor(h) => (Some(h.clone()), None),
        Owner::Member(u) => (None, Some(*u)),
    };
    Ok(conversation::ActiveModel {
        id: Set(Uuid::now_v7()),
        workspace_id: Set(workspace),
        chatbot_id: Set(chatbot),
        channel: Set(channel.as_str().into()),
        visitor_hash: Set(visitor),
        user_id: Set(user),
        title: Set(title),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await?)
}

/// The messages of a conversation, oldest first.
pub async fn messages<C: ConnectionTrait>(
    db: &C,
    conversation: Uuid,
) -> Result<Vec<message::Model>, ServiceError> {
    Ok(message::Entity::find()
        .filter(message::Column::ConversationId.eq(conversation))
        .order_by_asc(message::Column::CreatedAt)
        .order_by_asc(message::Column::Id)
        .all(db)
        .await?)
}

/// The conversation so far, in OpenAI's message shape, for the provider: the newest
/// [`HISTORY_MESSAGES`] successful (or stopped) messages within [`HISTORY_CHARS`].
pub async fn history<C: ConnectionTrait>(
    db: &C,
    conversation: Uuid,
) -> Result<Vec<(ChatRole, String)>, ServiceError> {
    let mut rows = message::Entity::find()
        .filter(message::Column::ConversationId.eq(conversation))
        .filter(message::Column::Status.ne(MessageStatus::Error.as_str()))
        .order_by_desc(message::Column::CreatedAt)
        .order_by_desc(message::Column::Id)
        .limit(HISTORY_MESSAGES)
        .all(db)
        .await?;
    let mut budget = HISTORY_CHARS;
    let mut kept = Vec::new();
    for m in rows.drain(..) {
        if m.content.is_empty() {
            continue;
        }
        if m.content.len() > budget {
            break;
        }
        budget -= m.content.len();
        let role = if m.role == "user" {
            ChatRole::User
        } else {
            ChatRole::Assistant
        };
        kept.push((role, m.content));
    }
    kept.reverse();
    Ok(kept)
}

/// What a stored assistant message records about its reply.
#[derive(Clone, Debug, Default)]
pub struct ReplyRecord {
    pub content: String,
    pub status: Option<MessageStatus>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub source: Option<KeySource>,
    pub error_class: Option<String>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub first_token_ms: Option<u64>,
    pub latency_ms: Option<u64>,
}

fn i64_of(v: Option<u64>) -> Option<i64> {
    v.map(|n| i64::try_from(n).unwrap_or(i64::MAX))
}

/// Appends a message (the user's, or an assistant reply) and touches the conversation.
pub async fn append<C: ConnectionTrait>(
    db: &C,
    conv: &conversation::Model,
    role: ChatRole,
    reply: ReplyRecord,
) -> Result<message::Model, ServiceError> {
    let now = Utc::now();
    let row = message::ActiveModel {
        id: Set(Uuid::now_v7()),
        conversation_id: Set(conv.id),
        workspace_id: Set(conv.workspace_id),
        chatbot_id: Set(conv.chatbot_id),
        channel: Set(conv.channel.clone()),
        role: Set(match role {
            ChatRole::User => "user".into(),
            ChatRole::Assistant => "assistant".into(),
        }),
        content: Set(reply.content),
        status: Set(reply.status.unwrap_or(MessageStatus::Ok).as_str().into()),
        provider: Set(reply.provider),
        model: Set(reply.model),
        key_source: Set(reply.source.map(|s| s.as_str().to_string())),
        error_class: Set(reply.error_class),
        input_tokens: Set(i64_of(reply.input_tokens)),
        output_tokens: Set(i64_of(reply.output_tokens)),
        first_token_ms: Set(i64_of(reply.first_token_ms)),
        latency_ms: Set(i64_of(reply.latency_ms)),
        created_at: Set(now),
    }
    .insert(db)
    .await?;
    conversation::Entity::update_many()
        .col_expr(
            conversation::Column::UpdatedAt,
            sea_orm::sea_query::Expr::value(now),
        )
        .filter(conversation::Column::Id.eq(conv.id))
        .exec(db)
        .await?;
    Ok(row)
}

/// Start of the current UTC day.
pub fn today_utc(now: DateTime<Utc>) -> DateTime<Utc> {
    now.date_naive()
        .and_hms_opt(0, 0, 0)
        .map(|d| d.and_utc())
        .unwrap_or(now)
}

/// Visitor messages sent to a chatbot today (UTC), for its daily cap.
pub async fn visitor_messages_today<C: ConnectionTrait>(
    db: &C,
    chatbot: Uuid,
) -> Result<u64, ServiceError> {
    Ok(message::Entity::find()
        .filter(message::Column::ChatbotId.eq(chatbot))
        .filter(message::Column::Channel.eq(Channel::Visitor.as_str()))
        .filter(message::Column::Role.eq("user"))
        .filter(message::Column::CreatedAt.gte(today_utc(Utc::now())))
        .count(db)
        .await?)
}

/// A stored message for the reader; `members` see the key source.
pub fn view(m: &message::Model, members: bool) -> ChatMessageView {
    let u = |v: Option<i64>| v.and_then(|n| u64::try_from(n).ok());
    ChatMessageView {
        id: m.id.to_string(),
        role: if m.role == "user" {
            ChatRole::User
        } else {
            ChatRole::Assistant
        },
        content: m.content.clone(),
        status: MessageStatus::parse(&m.status),
        provider: m.provider.clone(),
        model: m.model.clone(),
        source: if members {
            m.key_source.as_deref().and_then(|s| match s {
                "chatbot" => Some(KeySource::Chatbot),
                "workspace" => Some(KeySource::Workspace),
                "platform" => Some(KeySource::Platform),
                _ => None,
            })
        } else {
            None
        },
        input_tokens: u(m.input_tokens),
        output_tokens: u(m.output_tokens),
        first_token_ms: u(m.first_token_ms),
        latency_ms: u(m.latency_ms),
    }
}
