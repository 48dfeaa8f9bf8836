//! Usage metering: one [`UsageRecord`] per request, written off the request's path by a bounded,
//! batched writer; the usage report and its CSV export.
//!
//! The request's side is one non-blocking `try_send` of the record onto a bounded channel. A
//! writer task collects records and flushes them when [`BATCH`] have gathered or every
//! [`FLUSH_INTERVAL`], in one transaction per batch: the records (with credits and cost priced
//! from the [`Pricing`](crate::services::credits::Pricing) table), one ledger debit per
//! workspace, and each used key's `last_used_at` (at most about once a second per key).
//!
//! Nothing is lost silently: when the channel is full the request waits for room (backpressure,
//! counted in [`UsageStats::backpressure_waits`]); a failed flush is retried with backoff (the
//! batch stays in memory and the channel fills, so backpressure reaches requests); only records
//! offered after shutdown, a batch that still fails at shutdown, or — after repeated failures —
//! records of a workspace that no longer exists are dropped, each one counted in
//! [`UsageStats::dropped`] and logged as an error. Graceful shutdown drains the
//! channel and flushes.

use crate::entities::{chatbot, credential, usage_record, workspace};
use crate::error::ServiceError;
use crate::services::credits::{self, CreditBook};
use chrono::{DateTime, NaiveDate, Utc};
use keyward::resolve::KeySource;
use keyward::usage::{
    ByokCreditPolicy, Outcome, Price, UsageChannel, UsageDay, UsageReport, UsageRow, UsageTotals,
    cost, credits_for,
};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Records buffered between requests and the writer.
pub const CAPACITY: usize = 16_384;
/// Records per flush, at most.
pub const BATCH: usize = 512;
/// Longest a record waits in the buffer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(500);
/// `last_used_at` of a key is written at most this often.
pub const LAST_USED_EVERY: Duration = Duration::from_secs(1);
/// Rows per INSERT statement: well under both databases' bind-parameter limits, and small
/// enough that building one (synchronous work) never holds the async worker long.
const INSERT_CHUNK: usize = 32;
/// Most rows a CSV export holds.
pub const CSV_MAX_ROWS: u64 = 100_000;
/// Longest range a report covers.
pub const MAX_RANGE_DAYS: i64 = 366;

/// What happened on one request. Credits and cost are derived by the writer from the price
/// table; the request only reports facts.
#[derive(Clone, Debug)]
pub struct UsageRecord {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub workspace: Uuid,
    pub chatbot: Option<Uuid>,
    pub conversation: Option<Uuid>,
    pub api_token: Option<Uuid>,
    pub channel: UsageChannel,
    pub provider: String,
    pub model: String,
    pub source: Option<KeySource>,
    pub key_id: Option<Uuid>,
    pub key_hint: Option<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// The provider reported no usage; the tokens are estimated.
    pub estimated: bool,
    pub first_token_ms: Option<u64>,
    pub latency_ms: u64,
    pub outcome: Outcome,
    pub error_class: Option<String>,
    pub fell_back: bool,
    /// The BYOK credit policy and the model's price when the request ran (a later change of
    /// either does not reprice it). `None` if they could not be read then: the writer prices
    /// the record when it writes it.
    pub priced: Option<(ByokCreditPolicy, Price)>,
}

/// Builds a request's [`UsageRecord`] from what the gateway reports when it ends: the key that
/// served (if any), the provider's usage (or, when absent, an estimate from the text), timing
/// and outcome. The playground, the chat page and the public API all use it.
#[derive(Clone, Debug)]
pub struct UsageMeter {
    pub workspace: Uuid,
    pub chatbot: Option<Uuid>,
    pub conversation: Option<Uuid>,
    pub api_token: Option<Uuid>,
    pub channel: UsageChannel,
    pub provider: String,
    /// The model asked for (used when no key resolved one).
    pub model: Option<String>,
    /// Estimated input tokens of the request (used only when the provider reports no usage).
    pub input_estimate: u64,
    pub started: Instant,
}

/// How a metered request ended.
pub struct Ending<'a> {
    pub served: Option<&'a crate::services::chat::Served>,
    pub usage: Option<crate::gateway::chat::Usage>,
    /// The reply text produced (for an estimate when the provider reported no usage).
    pub output: &'a str,
    pub first_token_ms: Option<u64>,
    pub outcome: Outcome,
    pub error_class: Option<String>,
}

impl UsageMeter {
    /// Estimated input tokens of an OpenAI-shaped request's messages.
    pub fn estimate_input(request: &serde_json::Map<String, serde_json::Value>) -> u64 {
        request
            .get("messages")
            .and_then(|m| m.as_array())
            .map_or(0, |msgs| {
                msgs.iter()
                    .map(|m| match m.get("content") {
                        Some(serde_json::Value::String(s)) => keyward::usage::estimate_tokens(s),
                        Some(other) => keyward::usage::estimate_tokens(&other.to_string()),
                        None => 0,
                    })
                    .sum()
            })
    }

    /// The record of the request. `pricing`: the price table and policy in force now.
    pub fn finish(
        &self,
        pricing: Option<&crate::services::credits::Pricing>,
        end: Ending<'_>,
    ) -> UsageRecord {
        let model = end
            .served
            .map(|s| s.model.clone())
            .or_else(|| self.model.clone())
            .unwrap_or_default();
        let (input, output, estimated) = match (end.usage, end.outcome, end.served) {
            (Some(u), _, _) => (u.input_tokens, u.output_tokens, false),
            // Nothing reached the provider: nothing to count.
            (None, Outcome::Error, _) | (None, _, None) if end.output.is_empty() => (0, 0, false),
            (None, _, _) => (
                self.input_estimate,
                keyward::usage::estimate_tokens(end.output),
                true,
            ),
        };
        UsageRecord {
            id: Uuid::now_v7(),
            at: Utc::now(),
            workspace: self.workspace,
            chatbot: self.chatbot,
            conversation: self.conversation,
            api_token: self.api_token,
            channel: self.channel,
            priced: pricing.map(|p| (p.policy, p.price(&self.provider, &model))),
            provider: self.provider.clone(),
            model,
            source: end.served.map(|s| s.source),
            key_id: end.served.map(|s| s.key_id),
            key_hint: end.served.map(|s| s.hint.clone()),
            input_tokens: input,
            output_tokens: output,
            estimated,
            first_token_ms: end.first_token_ms,
            latency_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            outcome: end.outcome,
            error_class: end.error_class,
            fell_back: end.served.is_some_and(|s| s.fell_back),
        }
    }
}

/// Counters of the writer, shown on `/metrics`.
#[derive(Debug, Default)]
pub struct UsageStats {
    pub recorded: AtomicU64,
    pub written: AtomicU64,
    pub backpressure_waits: AtomicU64,
    pub dropped: AtomicU64,
    pub failed_flushes: AtomicU64,
}

enum Msg {
    Record(Box<UsageRecord>),
    Flush(oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

#[derive(Clone, Copy, Debug)]
pub struct WriterConfig {
    pub capacity: usize,
    pub batch: usize,
    pub interval: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            capacity: CAPACITY,
            batch: BATCH,
            interval: FLUSH_INTERVAL,
        }
    }
}

/// The request side of the writer; cheap to clone.
#[derive(Clone)]
pub struct UsageWriter {
    tx: mpsc::Sender<Msg>,
    stats: Arc<UsageStats>,
    /// Set by [`UsageWriter::shutdown`]: a failing flush stops retrying forever.
    closing: Arc<std::sync::atomic::AtomicBool>,
    task: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl std::fmt::Debug for UsageWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageWriter").finish_non_exhaustive()
    }
}

impl UsageWriter {
    /// Starts the writer task (on the current Tokio runtime).
    pub fn spawn(db: DatabaseConnection, book: CreditBook, config: WriterConfig) -> Self {
        let (tx, rx) = mpsc::channel(config.capacity.max(1));
        let stats = Arc::new(UsageStats::default());
        let closing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = tokio::spawn(run(db, book, config, rx, stats.clone(), closing.clone()));
        UsageWriter {
            tx,
            stats,
            closing,
            task: Arc::new(std::sync::Mutex::new(Some(task))),
        }
    }

    pub fn stats(&self) -> &UsageStats {
        &self.stats
    }

    /// Hands a record to the writer: a non-blocking send on the hot path; waits for room only
    /// when the buffer is full (counted).
    pub async fn record(&self, rec: UsageRecord) {
        self.stats.recorded.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(Msg::Record(Box::new(rec))) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(msg)) => {
                self.stats
                    .backpressure_waits
                    .fetch_add(1, Ordering::Relaxed);
                if self.tx.send(msg).await.is_err() {
                    self.dropped(1);
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => self.dropped(1),
        }
    }

    fn dropped(&self, n: u64) {
        self.stats.dropped.fetch_add(n, Ordering::Relaxed);
        tracing::error!(
            records = n,
            "usage records dropped: the usage writer has shut down"
        );
    }

    /// Waits until every record handed over before this call is written.
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// Stops accepting records, writes everything buffered, and waits for the writer to end.
    pub async fn shutdown(&self) {
        self.closing.store(true, Ordering::Release);
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(ack)).await.is_ok() {
            let _ = done.await;
        }
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = task {
            let _ = t.await;
        }
    }
}

/// Keys used since their `last_used_at` was last written, and when each was last written.
#[derive(Default)]
struct LastUsed {
    pending: HashMap<Uuid, DateTime<Utc>>,
    written: HashMap<Uuid, Instant>,
}

impl LastUsed {
    fn note(&mut self, key: Uuid, at: DateTime<Utc>) {
        let e = self.pending.entry(key).or_insert(at);
        if at > *e {
            *e = at;
        }
    }

    /// The keys whose `last_used_at` is due now.
    fn due(&mut self, force: bool) -> Vec<(Uuid, DateTime<Utc>)> {
        let now = Instant::now();
        self.written
            .retain(|_, t| now.duration_since(*t) < LAST_USED_EVERY);
        let due: Vec<_> = self
            .pending
            .iter()
            .filter(|(k, _)| force || !self.written.contains_key(*k))
            .map(|(k, t)| (*k, *t))
            .collect();
        for (k, _) in &due {
            self.pending.remove(k);
            self.written.insert(*k, now);
        }
        due
    }
}

async fn run(
    db: DatabaseConnection,
    book: CreditBook,
    config: WriterConfig,
    mut rx: mpsc::Receiver<Msg>,
    stats: Arc<UsageStats>,
    closing: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut batch: Vec<UsageRecord> = Vec::with_capacity(config.batch);
    let mut last_used = LastUsed::default();
    let mut acks: Vec<oneshot::Sender<()>> = Vec::new();
    let mut inbox: Vec<Msg> = Vec::with_capacity(config.batch);
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown: Option<oneshot::Sender<()>> = None;
    let mut last_flush = Instant::now();
    loop {
        let closed = tokio::select! {
            n = rx.recv_many(&mut inbox, config.batch) => n == 0,
            _ = tick.tick() => false,
        };
        for msg in inbox.drain(..) {
            match msg {
                Msg::Record(r) => {
                    if let (Some(k), true) = (r.key_id, r.outcome != Outcome::Error) {
                        last_used.note(k, r.at);
                    }
                    batch.push(*r);
                }
                Msg::Flush(ack) => acks.push(ack),
                Msg::Shutdown(ack) => {
                    // No new records from here on; what is buffered is still received.
                    rx.close();
                    shutdown = Some(ack);
                }
            }
        }
        let ending = closed || (shutdown.is_some() && rx.is_empty());
        // Flush when the batch is full, someone waits, the interval passed, or we are ending.
        let due = batch.len() >= config.batch
            || !acks.is_empty()
            || ending
            || last_flush.elapsed() >= config.interval;
        if due {
            last_flush = Instant::now();
            if !batch.is_empty() || !last_used.pending.is_empty() {
                let keys = last_used.due(ending || !acks.is_empty());
                write_with_retry(&db, &book, &mut batch, &keys, &stats, &closing).await;
            }
        }
        if batch.is_empty() {
            for ack in acks.drain(..) {
                let _ = ack.send(());
            }
        }
        if ending {
            if let Some(ack) = shutdown.take() {
                let _ = ack.send(());
            }
            for ack in acks.drain(..) {
                let _ = ack.send(());
            }
            tracing::info!(
                written = stats.written.load(Ordering::Relaxed),
                dropped = stats.dropped.load(Ordering::Relaxed),
                "usage writer stopped"
            );
            return;
        }
    }
}

/// Failed attempts after which records of workspaces that no longer exist are set aside.
const PRUNE_AFTER: u32 = 5;

/// Removes (counting them as dropped) records whose workspace is gone: deleting a workspace
/// deletes its usage anyway, and such records would otherwise fail every flush.
async fn prune_orphans(db: &DatabaseConnection, batch: &mut Vec<UsageRecord>, stats: &UsageStats) {
    let ids: Vec<Uuid> = batch.iter().map(|r| r.workspace).collect();
    let Ok(existing) = workspace::Entity::find()
        .select_only()
        .column(workspace::Column::Id)
        .filter(workspace::Column::Id.is_in(ids))
        .into_tuple::<Uuid>()
        .all(db)
        .await
    else {
        return;
    };
    let before = batch.len();
    batch.retain(|r| existing.contains(&r.workspace));
    let gone = (before - batch.len()) as u64;
    if gone > 0 {
        stats.dropped.fetch_add(gone, Ordering::Relaxed);
        tracing::error!(
            records = gone,
            "usage records dropped: their workspace no longer exists"
        );
    }
}

async fn write_with_retry(
    db: &DatabaseConnection,
    book: &CreditBook,
    batch: &mut Vec<UsageRecord>,
    keys: &[(Uuid, DateTime<Utc>)],
    stats: &UsageStats,
    closing: &std::sync::atomic::AtomicBool,
) {
    let mut pause = Duration::from_millis(200);
    // Retry until it works — except while shutting down, when three attempts are made.
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        if closing.load(Ordering::Acquire) && attempt > 3 {
            break;
        }
        match write(db, book, batch, keys).await {
            Ok(()) => {
                stats
                    .written
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                batch.clear();
                return;
            }
            Err(e) => {
                stats.failed_flushes.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, records = batch.len(), attempt, "usage flush failed; retrying");
                if attempt >= PRUNE_AFTER {
                    prune_orphans(db, batch, stats).await;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(10));
            }
        }
    }
    stats
        .dropped
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    tracing::error!(
        records = batch.len(),
        "usage records dropped: the database refused them at shutdown"
    );
    batch.clear();
}

/// One transaction: the records, the ledger debits, the keys' `last_used_at`.
async fn write(
    db: &DatabaseConnection,
    book: &CreditBook,
    batch: &[UsageRecord],
    keys: &[(Uuid, DateTime<Utc>)],
) -> Result<(), ServiceError> {
    let pricing = book.pricing(db).await?;
    let mut debits: BTreeMap<Uuid, (i64, i64)> = BTreeMap::new();
    let txn = crate::db::begin_write(db).await?;
    // Rows are built chunk by chunk, each chunk awaited before the next is built: building a
    // statement is synchronous work on the async worker, and small slices of it keep requests
    // that arrive meanwhile from waiting behind a whole batch (the gateway's c=1 tail).
    for records in batch.chunks(INSERT_CHUNK) {
        let rows: Vec<usage_record::ActiveModel> = records
            .iter()
            .map(|r| {
                let (policy, price) = r
                    .priced
                    .unwrap_or_else(|| (pricing.policy, pricing.price(&r.provider, &r.model)));
                let c = cost(price, r.input_tokens, r.output_tokens);
                let credits = credits_for(r.source, policy, c);
                if credits != 0 {
                    let d = debits.entry(r.workspace).or_default();
                    d.0 = d.0.saturating_add(credits);
                    d.1 = d.1.saturating_add(1);
                }
                row(r, credits, c)
            })
            .collect();
        usage_record::Entity::insert_many(rows)
            .exec_without_returning(&txn)
            .await?;
    }
    let mut balances = Vec::with_capacity(debits.len());
    for (ws, (credits, requests)) in &debits {
        balances.push((
            *ws,
            credits::debit_usage(&txn, *ws, *credits, *requests).await?,
        ));
    }
    for (key, at) in keys {
        credential::Entity::update_many()
            .col_expr(credential::Column::LastUsedAt, Expr::value(*at))
            .filter(credential::Column::Id.eq(*key))
            .filter(
                sea_orm::Condition::any()
                    .add(credential::Column::LastUsedAt.is_null())
                    .add(credential::Column::LastUsedAt.lt(*at)),
            )
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    for (ws, b) in balances {
        book.settle(ws, b);
    }
    Ok(())
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn row(r: &UsageRecord, credits: i64, cost: i64) -> usage_record::ActiveModel {
    usage_record::ActiveModel {
        id: Set(r.id),
        created_at: Set(r.at),
        day: Set(r.at.format("%Y-%m-%d").to_string()),
        workspace_id: Set(r.workspace),
        chatbot_id: Set(r.chatbot),
        conversation_id: Set(r.conversation),
        api_token_id: Set(r.api_token),
        channel: Set(r.channel.as_str().into()),
        provider: Set(r.provider.clone()),
        model: Set(r.model.chars().take(200).collect()),
        key_source: Set(r.source.map(|s| s.as_str().to_string())),
        key_id: Set(r.key_id),
        key_hint: Set(r.key_hint.clone()),
        input_tokens: Set(i64_of(r.input_tokens)),
        output_tokens: Set(i64_of(r.output_tokens)),
        tokens_estimated: Set(r.estimated),
        first_token_ms: Set(r.first_token_ms.map(i64_of)),
        latency_ms: Set(i64_of(r.latency_ms)),
        outcome: Set(r.outcome.as_str().into()),
        error_class: Set(r.error_class.clone()),
        fell_back: Set(r.fell_back),
        credits: Set(credits),
        cost: Set(cost),
    }
}

// ---- Reports ----

/// A report's date range: both ends inclusive, `YYYY-MM-DD` (UTC). Empty ends default to the
/// last 30 days.
pub fn range(from: &str, to: &str) -> Result<(NaiveDate, NaiveDate), ServiceError> {
    let parse = |s: &str, what: &str| {
        NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
            .map_err(|_| ServiceError::Invalid(format!("{what}: use a date like 2026-11-22")))
    };
    let today = Utc::now().date_naive();
    let to = if to.trim().is_empty() {
        today
    } else {
        parse(to, "to")?
    };
    let from = if from.trim().is_empty() {
        to - chrono::Days::new(29)
    } else {
        parse(from, "from")?
    };
    if from > to {
        return Err(ServiceError::Invalid(
            "the start date is after the end date".into(),
        ));
    }
    if (to - from).num_days() >= MAX_RANGE_DAYS {
        return Err(ServiceError::Invalid(format!(
            "choose at most {MAX_RANGE_DAYS} days"
        )));
    }
    Ok((from, to))
}

#[derive(Debug, FromQueryResult)]
struct Agg {
    day: String,
    workspace_id: Uuid,
    provider: String,
    model: String,
    key_source: Option<String>,
    key_hint: Option<String>,
    chatbot_id: Option<Uuid>,
    requests: i64,
    errors: i64,
    input: i64,
    output: i64,
    estimated: i64,
    credits: i64,
    cost: i64,
}

impl Agg {
    fn totals(&self) -> UsageTotals {
        let u = |v: i64| u64::try_from(v).unwrap_or(0);
        UsageTotals {
            requests: u(self.requests),
            errors: u(self.errors),
            input_tokens: u(self.input),
            output_tokens: u(self.output),
            estimated: u(self.estimated),
            credits: self.credits,
            cost: self.cost,
        }
    }
}

fn add(a: &mut UsageTotals, b: &UsageTotals) {
    a.requests = a.requests.saturating_add(b.requests);
    a.errors = a.errors.saturating_add(b.errors);
    a.input_tokens = a.input_tokens.saturating_add(b.input_tokens);
    a.output_tokens = a.output_tokens.saturating_add(b.output_tokens);
    a.estimated = a.estimated.saturating_add(b.estimated);
    a.credits = a.credits.saturating_add(b.credits);
    a.cost = a.cost.saturating_add(b.cost);
}

/// Groups rows by a label, largest token use first.
fn breakdown(aggs: &[Agg], key: impl Fn(&Agg) -> (String, Option<String>)) -> Vec<UsageRow> {
    let mut map: BTreeMap<(String, Option<String>), UsageTotals> = BTreeMap::new();
    for a in aggs {
        add(map.entry(key(a)).or_default(), &a.totals());
    }
    let mut rows: Vec<UsageRow> = map
        .into_iter()
        .map(|((label, detail), totals)| UsageRow {
            label,
            detail,
            totals,
        })
        .collect();
    rows.sort_by(|a, b| {
        b.totals
            .tokens()
            .cmp(&a.totals.tokens())
            .then(b.totals.requests.cmp(&a.totals.requests))
            .then(a.label.cmp(&b.label))
    });
    rows
}

fn source_label(s: Option<&str>) -> String {
    match s {
        Some("chatbot") => "BYOK — chatbot key".into(),
        Some("workspace") => "BYOK — workspace key".into(),
        Some("platform") => "Platform key".into(),
        _ => "No key (refused)".into(),
    }
}

/// The usage report of one workspace, or of the whole instance (`workspace = None`).
pub async fn report(
    db: &DatabaseConnection,
    book: &CreditBook,
    workspace: Option<&workspace::Model>,
    from: &str,
    to: &str,
) -> Result<UsageReport, ServiceError> {
    use usage_record::Column as C;
    let (from, to) = range(from, to)?;
    let (from_s, to_s) = (from.to_string(), to.to_string());
    // PostgreSQL sums BIGINT into NUMERIC: clamp before casting back, so that no total can
    // break the report. (SQLite sums integers exactly; every row is bounded, see
    // `keyward::usage::MAX_REPORTED_TOKENS`.)
    let sum = |c: &str| {
        Expr::cust(match db.get_database_backend() {
            sea_orm::DbBackend::Postgres => {
                format!("CAST(LEAST(COALESCE(SUM({c}), 0), 9223372036854775807) AS BIGINT)")
            }
            _ => format!("CAST(COALESCE(SUM({c}), 0) AS BIGINT)"),
        })
    };
    let mut q = usage_record::Entity::find()
        .select_only()
        .column(C::Day)
        .column(C::WorkspaceId)
        .column(C::Provider)
        .column(C::Model)
        .column(C::KeySource)
        .column(C::KeyHint)
        .column(C::ChatbotId)
        .column_as(Expr::cust("COUNT(*)"), "requests")
        .column_as(
            sum("CASE WHEN outcome = 'error' THEN 1 ELSE 0 END"),
            "errors",
        )
        .column_as(sum("input_tokens"), "input")
        .column_as(sum("output_tokens"), "output")
        .column_as(
            sum("CASE WHEN tokens_estimated THEN 1 ELSE 0 END"),
            "estimated",
        )
        .column_as(sum("credits"), "credits")
        .column_as(sum("cost"), "cost")
        .filter(C::Day.gte(from_s.clone()))
        .filter(C::Day.lte(to_s.clone()));
    if let Some(ws) = workspace {
        q = q.filter(C::WorkspaceId.eq(ws.id));
    }
    let aggs: Vec<Agg> = q
        .group_by(C::Day)
        .group_by(C::WorkspaceId)
        .group_by(C::Provider)
        .group_by(C::Model)
        .group_by(C::KeySource)
        .group_by(C::KeyHint)
        .group_by(C::ChatbotId)
        .into_model::<Agg>()
        .all(db)
        .await?;

    let mut totals = UsageTotals::default();
    for a in &aggs {
        add(&mut totals, &a.totals());
    }
    // Providers by tokens, then requests: the chart's series order.
    let by_provider = breakdown(&aggs, |a| (a.provider.clone(), None));
    let providers: Vec<String> = by_provider.iter().map(|r| r.label.clone()).collect();
    let mut per_day: HashMap<(&str, &str), UsageTotals> = HashMap::new();
    for a in &aggs {
        add(
            per_day.entry((&a.day, &a.provider)).or_default(),
            &a.totals(),
        );
    }
    let mut days = Vec::new();
    let mut d = from;
    while d <= to {
        let day = d.to_string();
        let by_provider = providers
            .iter()
            .map(|p| {
                let t = per_day
                    .get(&(day.as_str(), p.as_str()))
                    .cloned()
                    .unwrap_or_default();
                (p.clone(), t.requests, t.tokens())
            })
            .collect();
        days.push(UsageDay { day, by_provider });
        d = d.succ_opt().unwrap_or(to + chrono::Days::new(1));
    }

    let bots: HashMap<Uuid, String> = {
        let mut q = chatbot::Entity::find();
        if let Some(ws) = workspace {
            q = q.filter(chatbot::Column::WorkspaceId.eq(ws.id));
        }
        q.all(db)
            .await?
            .into_iter()
            .map(|b| (b.id, b.name))
            .collect()
    };
    let names: HashMap<Uuid, String> = if workspace.is_none() {
        workspace::Entity::find()
            .all(db)
            .await?
            .into_iter()
            .map(|w| (w.id, w.name))
            .collect()
    } else {
        HashMap::new()
    };
    let by_key = breakdown(&aggs, |a| match (&a.key_hint, &a.key_source) {
        (Some(h), s) => (
            h.clone(),
            Some(format!(
                "{} · {}",
                a.provider,
                source_label(s.as_deref()).to_lowercase()
            )),
        ),
        (None, _) => ("No key".into(), Some(a.provider.clone())),
    });
    let by_chatbot = breakdown(&aggs, |a| match a.chatbot_id {
        Some(id) => (
            bots.get(&id)
                .cloned()
                .unwrap_or_else(|| "Deleted chatbot".into()),
            None,
        ),
        None => ("Playground without a chatbot, API".into(), None),
    });
    let by_model = breakdown(&aggs, |a| {
        (keyward::chat::model_id(&a.provider, &a.model), None)
    });
    let by_source = breakdown(&aggs, |a| (source_label(a.key_source.as_deref()), None));
    let by_workspace = if workspace.is_none() {
        breakdown(&aggs, |a| {
            (
                names
                    .get(&a.workspace_id)
                    .cloned()
                    .unwrap_or_else(|| "Deleted workspace".into()),
                None,
            )
        })
    } else {
        Vec::new()
    };
    let (balance, monthly_allowance) = match workspace {
        Some(ws) => {
            let b = book.balance(db, ws.id).await?;
            let plan = ws.plan()?;
            let allowance = credits::allowances(db)
                .await?
                .into_iter()
                .find(|(p, _)| *p == plan)
                .map(|(_, v)| v);
            (Some(b), allowance)
        }
        None => (None, None),
    };
    Ok(UsageReport {
        workspace_id: workspace.map(|w| w.id.to_string()).unwrap_or_default(),
        workspace_name: workspace.map(|w| w.name.clone()).unwrap_or_default(),
        from: from_s,
        to: to_s,
        totals,
        providers,
        days,
        by_key,
        by_chatbot,
        by_model,
        by_source,
        by_workspace,
        balance,
        monthly_allowance,
        byok_credit_policy: credits::byok_credit_policy(db).await?,
        ledger: credits::ledger(db, workspace.map(|w| w.id), 50).await?,
    })
}

/// The records of a range as CSV (newest last), at most [`CSV_MAX_ROWS`].
pub async fn csv(
    db: &DatabaseConnection,
    workspace: Option<Uuid>,
    from: &str,
    to: &str,
) -> Result<Vec<u8>, ServiceError> {
    use usage_record::Column as C;
    let (from, to) = range(from, to)?;
    let mut q = usage_record::Entity::find()
        .filter(C::Day.gte(from.to_string()))
        .filter(C::Day.lte(to.to_string()))
        .order_by_asc(C::CreatedAt)
        .order_by_asc(C::Id)
        .limit(CSV_MAX_ROWS);
    if let Some(ws) = workspace {
        q = q.filter(C::WorkspaceId.eq(ws));
    }
    let rows = q.all(db).await?;
    let names: HashMap<Uuid, String> = workspace::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|w| (w.id, w.name))
        .collect();
    let bots: HashMap<Uuid, String> = chatbot::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|b| (b.id, b.name))
        .collect();
    let mut w = ::csv::Writer::from_writer(Vec::new());
    let err = |e: ::csv::Error| ServiceError::Internal(format!("csv: {e}"));
    w.write_record([
        "time_utc",
        "workspace",
        "chatbot",
        "conversation_id",
        "api_token_id",
        "channel",
        "provider",
        "model",
        "key_source",
        "key",
        "input_tokens",
        "output_tokens",
        "tokens_estimated",
        "first_token_ms",
        "latency_ms",
        "outcome",
        "error_class",
        "fell_back_to_platform",
        "credits",
        "cost_usd",
    ])
    .map_err(err)?;
    let opt = |v: Option<String>| v.unwrap_or_default();
    // Every cell that holds text someone typed (names, model ids) or an upstream chose.
    let text = keyward::usage::spreadsheet_safe;
    for r in rows {
        w.write_record([
            r.created_at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            text(names.get(&r.workspace_id).cloned().unwrap_or_default()),
            text(
                r.chatbot_id
                    .map(|c| bots.get(&c).cloned().unwrap_or_else(|| c.to_string()))
                    .unwrap_or_default(),
            ),
            opt(r.conversation_id.map(|c| c.to_string())),
            opt(r.api_token_id.map(|c| c.to_string())),
            text(r.channel),
            text(r.provider),
            text(r.model),
            opt(r.key_source),
            text(opt(r.key_hint)),
            r.input_tokens.to_string(),
            r.output_tokens.to_string(),
            r.tokens_estimated.to_string(),
            opt(r.first_token_ms.map(|v| v.to_string())),
            r.latency_ms.to_string(),
            text(r.outcome),
            text(opt(r.error_class)),
            r.fell_back.to_string(),
            keyward::usage::format_credits(r.credits),
            keyward::usage::format_credits(r.cost),
        ])
        .map_err(err)?;
    }
    w.into_inner()
        .map_err(|e| ServiceError::Internal(format!("csv: {e}")))
}

/// How many usage records a workspace has (tests and benchmarks check writes with it).
pub async fn count<C: ConnectionTrait>(db: &C, workspace: Uuid) -> Result<u64, ServiceError> {
    use sea_orm::PaginatorTrait;
    Ok(usage_record::Entity::find()
        .filter(usage_record::Column::WorkspaceId.eq(workspace))
        .count(db)
        .await?)
}
