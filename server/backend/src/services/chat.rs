//! The one chat pipeline. [`ChatService::run`] takes one chat request of any surface (the
//! visitor chat page, the dashboard playground, `/v1/chat/completions`, `/v1/messages`) and:
//! resolves the key from the cache (no database read and no decryption when warm); refuses
//! platform-key traffic of a workspace without credits; calls the provider; applies the failure
//! rules — records an auth or quota failure on the key, retries once where it is safe (nothing
//! sent to the caller yet, a transient failure), and under `fallback_to_platform` retries a
//! failed BYOK key once with the platform key — and meters: a whole answer or a failure is
//! recorded before `run` returns; a stream comes back as a [`MeteredStream`], which records its
//! usage when it ends, fails or is dropped (the caller went away).
//!
//! Work that outlives a request (a stream's record, a key's last error) runs on the service's
//! [`TaskTracker`], which shutdown waits for before the usage writer drains.

use crate::error::ServiceError;
use crate::gateway::Gateway;
use crate::gateway::cache::{KeyCache, LiveKey, Snapshot};
use crate::gateway::chat::{ChatReply, ChatStream, StreamEvent, Upstream, UpstreamError, Usage};
use crate::services::credits::{CreditBook, Pricing};
use crate::services::keys as key_service;
use crate::services::usage::{Ending, Served, UsageMeter, UsageRecord, UsageWriter};
use crate::vault::Vault;
use futures_util::{Stream, StreamExt};
use keyward::keys::ErrorClass;
use keyward::resolve::{KeySource, ResolveError};
use keyward::usage::Outcome;
use sea_orm::DatabaseConnection;
use serde_json::{Map, Value};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio_util::task::TaskTracker;
use uuid::Uuid;

/// Pause before the one retry of a transient failure.
pub const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// What the caller asks for. The destination is never part of it: the key decides.
pub struct ChatCall {
    pub workspace: Uuid,
    pub chatbot: Option<Uuid>,
    pub provider: String,
    /// `None`: the key's or the provider's default model.
    pub model: Option<String>,
    /// OpenAI-shaped chat request (messages, temperature, …); `model` and `stream` in it are
    /// ignored in favour of the fields here.
    pub request: Map<String, Value>,
    pub stream: bool,
}

/// What the provider answered, metered.
pub enum ReplyBody {
    /// A whole `chat.completion` document (already recorded) and its usage.
    Complete { body: Value, usage: Option<Usage> },
    /// The answer as it streams; it records its usage when it ends or is dropped.
    Stream(MeteredStream),
}

/// A served request.
pub struct Reply {
    /// The key that served it (source, key, model) and how long the provider took.
    pub served: Served,
    /// Set when the BYOK key failed with this class and the platform key served instead.
    pub fell_back: Option<ErrorClass>,
    pub body: ReplyBody,
}

/// A refused or failed request (already recorded), with the key it was sent with, if any.
#[derive(Debug)]
pub struct ChatFailure {
    pub error: ChatError,
    pub served: Option<Served>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The platform key would serve the request and the workspace has no credits left.
    #[error("this workspace has no credits left for platform keys")]
    NoCredits,
    #[error(transparent)]
    Upstream(UpstreamError),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl ChatError {
    /// The class a usage record and a member's error show: an [`ErrorClass`] or `no_key`,
    /// `no_model`, `no_credits`, `internal`.
    pub fn class(&self) -> &'static str {
        match self {
            ChatError::Upstream(u) => u.class.as_str(),
            ChatError::Resolve(ResolveError::NoKey { .. }) => "no_key",
            ChatError::Resolve(ResolveError::NoModel { .. }) => "no_model",
            ChatError::NoCredits => "no_credits",
            ChatError::Service(_) => "internal",
        }
    }
}

fn records_on_key(class: ErrorClass) -> bool {
    matches!(class, ErrorClass::InvalidKey | ErrorClass::NoQuota)
}

async fn attempt(
    gateway: &Gateway,
    key: &LiveKey,
    call: &ChatCall,
    model: &str,
) -> Result<ChatReply, UpstreamError> {
    let up = Upstream {
        wire: key.wire,
        base_url: &key.base_url,
        key: &key.secret,
    };
    match gateway.chat(&up, &call.request, model, call.stream).await {
        Err(e) if e.retryable => {
            tokio::time::sleep(RETRY_PAUSE).await;
            gateway.chat(&up, &call.request, model, call.stream).await
        }
        other => other,
    }
}

fn served(source: KeySource, key: &LiveKey, model: &str, fell_back: bool) -> Served {
    Served {
        source,
        key_id: key.id,
        hint: key.hint.clone(),
        model: model.to_string(),
        fell_back,
        upstream: Duration::ZERO,
    }
}

/// What the gateway answered before metering.
struct Outcome1 {
    source: KeySource,
    key: Arc<LiveKey>,
    model: String,
    reply: ChatReply,
    fell_back: Option<ErrorClass>,
}

/// The chat pipeline, built once at startup and shared (cheap to clone).
#[derive(Clone)]
pub struct ChatService {
    db: DatabaseConnection,
    vault: Vault,
    gateway: Gateway,
    keys: KeyCache,
    credits: CreditBook,
    usage: UsageWriter,
    tasks: TaskTracker,
}

impl ChatService {
    pub fn new(
        db: DatabaseConnection,
        vault: Vault,
        gateway: Gateway,
        keys: KeyCache,
        credits: CreditBook,
        usage: UsageWriter,
        tasks: TaskTracker,
    ) -> Self {
        Self {
            db,
            vault,
            gateway,
            keys,
            credits,
            usage,
            tasks,
        }
    }

    /// The workspace's key snapshot (what the resolution chain decides from).
    pub async fn snapshot(&self, workspace: Uuid) -> Result<Arc<Snapshot>, ServiceError> {
        self.keys.snapshot(&self.db, &self.vault, workspace).await
    }

    /// The models a workspace (or one of its chatbots) may use now, by the key that would serve
    /// each (provider lists cached in `cache`).
    pub async fn models(
        &self,
        cache: &crate::services::models::ModelsCache,
        workspace: Uuid,
        chatbot: Option<Uuid>,
    ) -> Result<Vec<keyward::dto::ModelOption>, ServiceError> {
        crate::services::models::available(
            &self.db,
            &self.vault,
            &self.gateway,
            &self.keys,
            cache,
            workspace,
            chatbot,
        )
        .await
    }

    /// Runs `work` off the request's path; shutdown waits for it.
    pub fn spawn<F>(&self, work: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(work);
    }

    /// The one entry point: resolve, check credits, call (with the failure policy), meter.
    #[tracing::instrument(skip_all, fields(workspace = %call.workspace, provider = ?call.provider))]
    pub async fn run(&self, call: ChatCall, meter: UsageMeter) -> Result<Reply, ChatFailure> {
        // Prices as they stand when the request starts (a map lookup when warm).
        let pricing = self.credits.pricing(&self.db).await.ok();
        let stream = call.stream;
        let (result, served) = self.call(call).await;
        let sink = Sink {
            usage: self.usage.clone(),
            tasks: self.tasks.clone(),
        };
        match result {
            Err(error) => {
                let rec = meter.finish(
                    pricing.as_deref(),
                    Ending {
                        served: served.as_ref(),
                        usage: None,
                        output: "",
                        first_token_ms: None,
                        outcome: Outcome::Error,
                        error_class: Some(error.class().to_string()),
                    },
                );
                self.usage.record(rec).await;
                Err(ChatFailure { error, served })
            }
            Ok(o) => {
                let served = served.unwrap_or_else(|| served_of(&o));
                let body = match (o.reply, stream) {
                    (ChatReply::Complete { body, usage }, false) => {
                        let text = body
                            .pointer("/choices/0/message/content")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        let ms = millis(meter.started);
                        let rec = meter.finish(
                            pricing.as_deref(),
                            Ending {
                                served: Some(&served),
                                usage,
                                output: text,
                                first_token_ms: Some(ms),
                                outcome: Outcome::Ok,
                                error_class: None,
                            },
                        );
                        self.usage.record(rec).await;
                        ReplyBody::Complete { body, usage }
                    }
                    (ChatReply::Stream(inner), true) => ReplyBody::Stream(MeteredStream {
                        inner,
                        meter: Some(Box::new(Metering {
                            meter,
                            pricing,
                            served: served.clone(),
                            text: String::new(),
                            usage: None,
                            first_token_ms: None,
                            sink,
                        })),
                    }),
                    _ => {
                        let error = ChatError::Service(ServiceError::Internal(
                            "the gateway answered in the other mode than asked".into(),
                        ));
                        return Err(ChatFailure {
                            error,
                            served: Some(served),
                        });
                    }
                };
                Ok(Reply {
                    served,
                    fell_back: o.fell_back,
                    body,
                })
            }
        }
    }

    /// Records a provider's refusal of a stored key on its row, off the request's path.
    fn record_failure(&self, key: &LiveKey, e: &UpstreamError) {
        if !records_on_key(e.class) {
            return;
        }
        let (db, id, class, message) = (self.db.clone(), key.id, e.class, e.message.clone());
        self.tasks.spawn(async move {
            if let Err(err) = key_service::record_key_error(&db, id, class, &message).await {
                tracing::warn!(credential = %id, error = %err, "could not record a key's last error");
            }
        });
    }

    /// Refuses platform-key traffic of a workspace without credits (a map lookup when warm).
    async fn check_credits(&self, workspace: Uuid) -> Result<(), ChatError> {
        let balance = self.credits.balance(&self.db, workspace).await?;
        if keyward::usage::refused_for_credits(KeySource::Platform, balance) {
            return Err(ChatError::NoCredits);
        }
        Ok(())
    }

    /// Resolution, credits and the provider call with the failure policy; also says which key
    /// the request was sent with when it failed.
    async fn call(&self, call: ChatCall) -> (Result<Outcome1, ChatError>, Option<Served>) {
        let snap = match self.snapshot(call.workspace).await {
            Ok(s) => s,
            Err(e) => return (Err(e.into()), None),
        };
        let resolved = match snap.resolve(&call.provider, call.chatbot, call.model.as_deref()) {
            Ok(r) => r,
            Err(e) => return (Err(e.into()), None),
        };
        let first = served(resolved.source, &resolved.key, &resolved.model, false);
        if resolved.source == KeySource::Platform
            && let Err(e) = self.check_credits(call.workspace).await
        {
            return (Err(e), Some(first));
        }
        let sent = Instant::now();
        let timed = |s: Served| Served {
            upstream: sent.elapsed(),
            ..s
        };
        let gateway = &self.gateway;
        let e = match attempt(gateway, &resolved.key, &call, &resolved.model).await {
            Ok(reply) => {
                let o = Outcome1 {
                    source: resolved.source,
                    key: resolved.key,
                    model: resolved.model,
                    reply,
                    fell_back: None,
                };
                return (Ok(o), Some(timed(first)));
            }
            Err(e) => e,
        };
        self.record_failure(&resolved.key, &e);
        let platform = match resolved.fallback {
            Some(platform) if records_on_key(e.class) && !e.mid_stream => platform,
            _ => return (Err(ChatError::Upstream(e)), Some(timed(first))),
        };
        // Without credits the platform cannot stand in: the BYOK failure stands.
        if self.check_credits(call.workspace).await.is_err() {
            return (Err(ChatError::Upstream(e)), Some(timed(first)));
        }
        let second = served(KeySource::Platform, &platform, &resolved.model, true);
        tracing::info!(
            class = e.class.as_str(),
            "BYOK key failed; falling back to the platform key"
        );
        match attempt(gateway, &platform, &call, &resolved.model).await {
            Ok(reply) => {
                let o = Outcome1 {
                    source: KeySource::Platform,
                    key: platform,
                    model: resolved.model,
                    reply,
                    fell_back: Some(e.class),
                };
                (Ok(o), Some(timed(second)))
            }
            Err(e2) => {
                self.record_failure(&platform, &e2);
                (Err(ChatError::Upstream(e2)), Some(timed(second)))
            }
        }
    }
}

fn served_of(o: &Outcome1) -> Served {
    served(o.source, &o.key, &o.model, o.fell_back.is_some())
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Where a stream's record goes when it ends.
struct Sink {
    usage: UsageWriter,
    tasks: TaskTracker,
}

/// What a stream's meter collects while it runs.
struct Metering {
    meter: UsageMeter,
    pricing: Option<Arc<Pricing>>,
    served: Served,
    text: String,
    usage: Option<Usage>,
    first_token_ms: Option<u64>,
    sink: Sink,
}

impl Metering {
    fn record(self, outcome: Outcome, error_class: Option<String>) -> UsageRecord {
        self.meter.finish(
            self.pricing.as_deref(),
            Ending {
                served: Some(&self.served),
                usage: self.usage,
                output: &self.text,
                first_token_ms: self.first_token_ms,
                outcome,
                error_class,
            },
        )
    }

    /// Hands the record to the writer on the tracked task set (a stream ends inside `poll`
    /// or `drop`, where nothing can wait).
    fn finish(self, outcome: Outcome, error_class: Option<String>) {
        let (usage, tasks) = (self.sink.usage.clone(), self.sink.tasks.clone());
        let rec = self.record(outcome, error_class);
        if tokio::runtime::Handle::try_current().is_err() {
            tracing::error!("a stream ended outside the runtime: its usage record is lost");
            return;
        }
        tasks.spawn(async move { usage.record(rec).await });
    }
}

/// A provider's stream, metered: its usage is recorded once, when it finishes (`ok`), fails
/// (`error`, with the class) or is dropped before either (`stopped`: the caller went away).
/// Each chunk passes through as it came; nothing buffers.
pub struct MeteredStream {
    inner: ChatStream,
    meter: Option<Box<Metering>>,
}

impl Stream for MeteredStream {
    type Item = Result<StreamEvent, UpstreamError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let item = match this.inner.poll_next_unpin(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(item) => item,
        };
        match &item {
            Some(Ok(StreamEvent::Chunk(c))) => {
                if let Some(m) = this.meter.as_deref_mut() {
                    if let Some(text) = &c.text {
                        m.first_token_ms
                            .get_or_insert_with(|| millis(m.meter.started));
                        keyward::chat::push_capped(&mut m.text, text);
                    }
                    if c.usage.is_some() {
                        m.usage = c.usage;
                    }
                }
            }
            Some(Ok(StreamEvent::Done)) | None => {
                if let Some(m) = this.meter.take() {
                    m.finish(Outcome::Ok, None);
                }
            }
            Some(Err(e)) => {
                if let Some(m) = this.meter.take() {
                    m.finish(Outcome::Error, Some(e.class.as_str().to_string()));
                }
            }
        }
        Poll::Ready(item)
    }
}

impl Drop for MeteredStream {
    fn drop(&mut self) {
        // The caller went away mid-answer: the provider's stream is dropped with us (closing
        // its connection) and what was produced is recorded as stopped.
        if let Some(m) = self.meter.take() {
            m.finish(Outcome::Stopped, None);
        }
    }
}
