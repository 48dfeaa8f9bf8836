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
use crate::services::limits::{Admission, Refused, SpendControl};
use crate::services::usage::{Ending, Served, UsageMeter, UsageRecord, UsageWriter};
use crate::vault::Vault;
use futures_util::{Stream, StreamExt};
use keyward::keys::ErrorClass;
use keyward::limits::{Ask, Budget, Limits, Scope, Used, Window};
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
    /// The tightest per-minute limits the request passed (`x-ratelimit-*`).
    pub headroom: keyward::limits::Headroom,
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
    /// A budget or rate limit refused the request before it was sent.
    #[error("a limit refused the request: {}", .0.class())]
    Limited(Refused),
    /// A field that costs money beyond tokens, which a platform key does not serve.
    #[error("`{0}` is not available on platform keys")]
    Unpriced(&'static str),
    #[error(transparent)]
    Upstream(UpstreamError),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl ChatError {
    /// The class a usage record and a member's error show: an [`ErrorClass`] or `no_key`,
    /// `no_model`, `no_credits`, `limit:<scope>:<kind>`, `limits_unavailable`, `unpriced`,
    /// `internal`.
    pub fn class(&self) -> std::borrow::Cow<'static, str> {
        match self {
            ChatError::Upstream(u) => u.class.as_str().into(),
            ChatError::Resolve(ResolveError::NoKey { .. }) => "no_key".into(),
            ChatError::Resolve(ResolveError::NoModel { .. }) => "no_model".into(),
            ChatError::NoCredits => "no_credits".into(),
            ChatError::Limited(r) => r.class().into(),
            ChatError::Unpriced(_) => "unpriced".into(),
            ChatError::Service(_) => "internal".into(),
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
    admission: Admission,
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
    spend: SpendControl,
    tasks: TaskTracker,
}

/// What the chat pipeline is built from.
pub struct Parts {
    pub db: DatabaseConnection,
    pub vault: Vault,
    pub gateway: Gateway,
    pub keys: KeyCache,
    pub credits: CreditBook,
    pub usage: UsageWriter,
    pub spend: SpendControl,
    pub tasks: TaskTracker,
}

impl ChatService {
    pub fn new(p: Parts) -> Self {
        Self {
            db: p.db,
            vault: p.vault,
            gateway: p.gateway,
            keys: p.keys,
            credits: p.credits,
            usage: p.usage,
            spend: p.spend,
            tasks: p.tasks,
        }
    }

    /// Spend control (the counters behind budgets and rate limits).
    pub fn spend(&self) -> &SpendControl {
        &self.spend
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
        let (result, served) = self.call(call, &meter, pricing.as_deref()).await;
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
                        error_class: Some(error.class().into_owned()),
                    },
                );
                self.usage.record(rec).await;
                Err(ChatFailure { error, served })
            }
            Ok(o) => {
                let served = served.unwrap_or_else(|| served_of(&o));
                let admission = o.admission;
                let headroom = admission.headroom();
                let body = match (o.reply, stream) {
                    (ChatReply::Complete { body, usage }, false) => {
                        let text = body
                            .pointer("/choices/0/message/content")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        let ms = millis(meter.started);
                        let mut rec = meter.finish(
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
                        rec.owed = admission.settle(rec.workspace, used_of(&rec)).await;
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
                            admission,
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
                    headroom,
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

    /// Reserves the request's worst case on every scope it passes through with `key` — and,
    /// on a platform key, on the workspace's credit balance (refused outright at 0 or below).
    /// Fields that cost money beyond tokens are refused on platform keys.
    #[allow(clippy::too_many_arguments)]
    async fn admit(
        &self,
        call: &ChatCall,
        meter: &UsageMeter,
        pricing: Option<&Pricing>,
        snap: &Snapshot,
        source: KeySource,
        key: &LiveKey,
        model: &str,
    ) -> Result<Admission, ChatError> {
        let platform = source == KeySource::Platform;
        if platform && let Some(field) = unpriced_field(&call.request) {
            return Err(ChatError::Unpriced(field));
        }
        let mut scopes = snap
            .limits
            .scopes(call.workspace, call.chatbot, meter.api_token, key.id);
        if platform {
            let balance = self.credits.balance(&self.db, call.workspace).await?;
            if keyward::usage::refused_for_credits(KeySource::Platform, balance) {
                return Err(ChatError::NoCredits);
            }
            let credits = Budget {
                micro: balance,
                window: Window::Total,
                alert_percent: 0,
            };
            let limits = Limits {
                budget: Some(credits),
                ..Limits::default()
            };
            scopes.push((Scope::Credits(call.workspace), limits));
        }
        if scopes.is_empty() {
            // Nothing limits the request: no worst case to price, nothing to count.
            return self
                .spend
                .admit(scopes, Ask::default())
                .await
                .map_err(ChatError::Limited);
        }
        let ask = match pricing {
            Some(p) => ask_of(&call.request, p, &call.provider, model),
            // Prices unreadable: no worst case can be priced, so a budget fails as its store
            // would (rate limits still count).
            None => {
                let closed = scopes.iter().any(|(_, l)| {
                    l.budget.is_some() && l.on_store_error == keyward::limits::OnStoreError::Closed
                });
                if closed {
                    return Err(ChatError::Limited(Refused::Unavailable));
                }
                Ask {
                    cost: 0,
                    ..ask_of(&call.request, &Pricing::default(), &call.provider, model)
                }
            }
        };
        self.spend
            .admit(scopes, ask)
            .await
            .map_err(ChatError::Limited)
    }

    /// Resolution, limits and credits, and the provider call with the failure policy; also says
    /// which key the request was sent with when it failed.
    async fn call(
        &self,
        call: ChatCall,
        meter: &UsageMeter,
        pricing: Option<&Pricing>,
    ) -> (Result<Outcome1, ChatError>, Option<Served>) {
        let snap = match self.snapshot(call.workspace).await {
            Ok(s) => s,
            Err(e) => return (Err(e.into()), None),
        };
        let resolved = match snap.resolve(&call.provider, call.chatbot, call.model.as_deref()) {
            Ok(r) => r,
            Err(e) => return (Err(e.into()), None),
        };
        let first = served(resolved.source, &resolved.key, &resolved.model, false);
        let admit =
            |source, key| self.admit(&call, meter, pricing, &snap, source, key, &resolved.model);
        let admission = match admit(resolved.source, &resolved.key).await {
            Ok(a) => a,
            Err(e) => return (Err(e), Some(first)),
        };
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
                    key: resolved.key.clone(),
                    model: resolved.model.clone(),
                    reply,
                    fell_back: None,
                    admission,
                };
                return (Ok(o), Some(timed(first)));
            }
            Err(e) => e,
        };
        // Nothing was produced: the worst case goes back (its request still counted per minute
        // only if the provider was reached, which a failure's release does not charge).
        admission.release().await;
        self.record_failure(&resolved.key, &e);
        let platform = match &resolved.fallback {
            Some(platform) if records_on_key(e.class) && !e.mid_stream => platform.clone(),
            _ => return (Err(ChatError::Upstream(e)), Some(timed(first))),
        };
        // Without credits or within no limit the platform cannot stand in: the BYOK failure
        // stands.
        let Ok(admission) = admit(KeySource::Platform, &platform).await else {
            return (Err(ChatError::Upstream(e)), Some(timed(first)));
        };
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
                    model: resolved.model.clone(),
                    reply,
                    fell_back: Some(e.class),
                    admission,
                };
                (Ok(o), Some(timed(second)))
            }
            Err(e2) => {
                admission.release().await;
                self.record_failure(&platform, &e2);
                (Err(ChatError::Upstream(e2)), Some(timed(second)))
            }
        }
    }
}

/// Fields of an OpenAI request that cost money beyond its tokens, which the price table cannot
/// price: refused on platform keys (a BYOK key's owner pays the provider directly).
/// `service_tier` is allowed only where it costs no more (`auto`, `default`, `flex`).
pub fn unpriced_field(request: &Map<String, Value>) -> Option<&'static str> {
    let set = |k: &str| request.get(k).is_some_and(|v| !v.is_null());
    if set("web_search_options") {
        return Some("web_search_options");
    }
    if set("audio")
        || request
            .get("modalities")
            .and_then(Value::as_array)
            .is_some_and(|m| m.iter().any(|v| v.as_str() == Some("audio")))
    {
        return Some("audio");
    }
    match request.get("service_tier").and_then(Value::as_str) {
        None | Some("auto" | "default" | "flex") => {}
        Some(_) => return Some("service_tier"),
    }
    if request
        .get("tools")
        .and_then(Value::as_array)
        .is_some_and(|t| {
            t.iter().any(|tool| {
                tool.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|ty| ty != "function")
            })
        })
    {
        return Some("tools");
    }
    None
}

/// Tokens per image or audio part in the input bound: more than a high-detail image costs at
/// OpenAI's and Anthropic's published rates.
pub const TOKENS_PER_MEDIA_PART: u64 = 2_000;

/// An upper bound of the input tokens of an OpenAI-shaped request: every byte of its text (no
/// tokenizer makes a token of less than one byte), 8 tokens of framing per message, and
/// [`TOKENS_PER_MEDIA_PART`] per image or audio part. Tools and the response format count as
/// text too.
pub fn input_bound(request: &Map<String, Value>) -> u64 {
    fn walk(v: &Value) -> u64 {
        match v {
            Value::String(s) => s.len() as u64,
            Value::Array(a) => a.iter().map(walk).sum(),
            Value::Object(o) => {
                let media = match o.get("type").and_then(Value::as_str) {
                    Some("image_url" | "input_audio" | "image" | "file") => TOKENS_PER_MEDIA_PART,
                    _ => 0,
                };
                media + o.iter().map(|(k, v)| k.len() as u64 + walk(v)).sum::<u64>()
            }
            Value::Number(_) | Value::Bool(_) | Value::Null => 1,
        }
    }
    let messages = request.get("messages").and_then(Value::as_array);
    let framing = messages.map_or(0, |m| 8 * m.len() as u64);
    ["messages", "tools", "functions", "response_format"]
        .iter()
        .filter_map(|k| request.get(*k))
        .map(walk)
        .sum::<u64>()
        + framing
}

/// The worst case of a request: its input bound, plus `max_completion_tokens` / `max_tokens`
/// (or the model's most output) for each of its `n` choices, at the model's price.
pub fn ask_of(request: &Map<String, Value>, pricing: &Pricing, provider: &str, model: &str) -> Ask {
    let asked = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| request.get(*k).and_then(Value::as_u64));
    let max_output = asked.unwrap_or_else(|| pricing.max_output(provider, model));
    let n = request
        .get("n")
        .and_then(Value::as_u64)
        .map_or(1, |n| u32::try_from(n).unwrap_or(u32::MAX));
    keyward::limits::worst_case(
        pricing.price(provider, model),
        input_bound(request),
        max_output,
        n,
    )
}

/// What a finished request used, at the price its record carries.
fn used_of(rec: &UsageRecord) -> Used {
    let price = rec.priced.map(|p| p.1).unwrap_or_default();
    Used {
        cost: keyward::usage::cost(price, rec.input_tokens, rec.output_tokens),
        input_tokens: rec.input_tokens,
        output_tokens: rec.output_tokens,
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
    admission: Admission,
}

impl Metering {
    fn record(&self, outcome: Outcome, error_class: Option<String>) -> UsageRecord {
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

    /// Settles the reservation and hands the record to the writer on the tracked task set (a
    /// stream ends inside `poll` or `drop`, where nothing can wait).
    fn finish(self, outcome: Outcome, error_class: Option<String>) {
        let (usage, tasks) = (self.sink.usage.clone(), self.sink.tasks.clone());
        let mut rec = self.record(outcome, error_class);
        if tokio::runtime::Handle::try_current().is_err() {
            tracing::error!("a stream ended outside the runtime: its usage record is lost");
            return;
        }
        let admission = self.admission;
        tasks.spawn(async move {
            rec.owed = admission.settle(rec.workspace, used_of(&rec)).await;
            usage.record(rec).await
        });
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
