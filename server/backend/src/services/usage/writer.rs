//! The batched usage writer.
//!
//! The request's side is one non-blocking `try_send` of the record onto a bounded channel. A
//! writer (on a thread of its own) collects records and flushes them when [`BATCH`] have gathered
//! or every [`FLUSH_INTERVAL`]. It is not woken per record — waking another thread is a system
//! call and a context switch, which at full load cost about 15 % of the requests per second —
//! but when a batch has gathered, when someone waits for a flush, or on its interval. Each
//! flush is one transaction: the records (with credits and cost priced from the
//! [`Pricing`](crate::services::credits::Pricing) table), one ledger debit per workspace, and
//! each used key's `last_used_at` (at most about once a second per key).
//!
//! Nothing is lost silently: when the channel is full the request waits for room (backpressure,
//! counted in [`UsageStats::backpressure_waits`]); a failed flush is retried with backoff (the
//! batch stays in memory and the channel fills, so backpressure reaches requests); only records
//! offered after shutdown, a batch that still fails at shutdown, or — after repeated failures —
//! records of a workspace that no longer exists are dropped, each one counted in
//! [`UsageStats::dropped`] and logged as an error. Graceful shutdown drains the
//! channel and flushes.

use super::meter::UsageRecord;
use crate::entities::{credential, usage_record, workspace};
use crate::error::ServiceError;
use crate::services::credits::{self, CreditBook};
use crate::services::limits::SpendControl;
use chrono::{DateTime, Utc};
use keyward::usage::{Outcome, cost, credits_for};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect, Set,
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
    /// Resolves when the writer has ended.
    done: Arc<std::sync::Mutex<Option<oneshot::Receiver<()>>>>,
    /// Wakes the writer: a batch has gathered, or a flush or shutdown waits.
    wake: Arc<tokio::sync::Notify>,
    /// Wakes the requests waiting for room in a full buffer, all at once when the writer has
    /// taken records out (not one wake per record taken, as the channel's own wait would).
    room: Arc<tokio::sync::Notify>,
    /// Records per batch (the writer is woken when this many wait).
    batch: usize,
}

impl std::fmt::Debug for UsageWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageWriter").finish_non_exhaustive()
    }
}

impl UsageWriter {
    /// Starts the writer on a thread of its own, at the lowest CPU priority (nice 19), with a
    /// runtime and a database connection of its own.
    ///
    /// Why: the writer's work (building and running the INSERTs; on SQLite, inside the
    /// connection's worker thread) is CPU time on the same cores as the requests. At normal
    /// priority the scheduler let a running flush finish its slice before a request's thread
    /// got the CPU back — measured up to 2.6 ms at c=1, about 1 % of requests (docs/TAIL.md).
    /// At nice 19 a waking request preempts it; the writer still gets every idle moment and a
    /// small share under full load (so it never starves), and backpressure bounds its buffer.
    ///
    /// `spend` learns of each debit written, so the credits it holds as settled-not-yet-debited
    /// leave its counters once they are in the balance.
    pub fn spawn(
        db: DatabaseConnection,
        book: CreditBook,
        spend: Option<SpendControl>,
        config: WriterConfig,
    ) -> Self {
        let (tx, rx) = mpsc::channel(config.capacity.max(1));
        let stats = Arc::new(UsageStats::default());
        let closing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (ended, done) = oneshot::channel();
        let wake = Arc::new(tokio::sync::Notify::new());
        let room = Arc::new(tokio::sync::Notify::new());
        let (s, c, w, r) = (stats.clone(), closing.clone(), wake.clone(), room.clone());
        let started = std::thread::Builder::new()
            .name("usage-writer".into())
            .spawn(move || {
                lower_priority();
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(async move {
                        let db = own_connection(&db).await;
                        let sinks = Sinks { book, spend };
                        run(db, sinks, config, rx, (w, r), s, c).await;
                    }),
                    Err(e) => tracing::error!(error = %e, "the usage writer has no runtime"),
                }
                let _ = ended.send(());
            });
        if let Err(e) = started {
            tracing::error!(error = %e, "could not start the usage writer");
        }
        UsageWriter {
            tx,
            stats,
            closing,
            done: Arc::new(std::sync::Mutex::new(Some(done))),
            wake,
            room,
            batch: config.batch.clamp(1, config.capacity.max(1)),
        }
    }

    pub fn stats(&self) -> &UsageStats {
        &self.stats
    }

    /// Hands a record to the writer: a non-blocking send on the hot path; waits for room only
    /// when the buffer is full (counted).
    ///
    /// A full buffer means the writer, which runs at the lowest priority, gets too little CPU:
    /// the requests that wait for room leave it the CPU. They wait on [`Self::room`], which the
    /// writer signals once per batch it takes — not on the channel's own wait, which wakes one
    /// waiting request per record taken (measured at full load: a system call and two context
    /// switches per record, about 6 % of the CPU).
    pub async fn record(&self, rec: UsageRecord) {
        self.stats.recorded.fetch_add(1, Ordering::Relaxed);
        let mut msg = match self.tx.try_send(Msg::Record(Box::new(rec))) {
            Ok(()) => {
                // Two atomic reads; the writer's thread is woken once per batch, not per record.
                if self.tx.max_capacity() - self.tx.capacity() >= self.batch {
                    self.wake.notify_one();
                }
                return;
            }
            Err(mpsc::error::TrySendError::Full(msg)) => msg,
            Err(mpsc::error::TrySendError::Closed(_)) => return self.dropped(1),
        };
        self.stats
            .backpressure_waits
            .fetch_add(1, Ordering::Relaxed);
        loop {
            // Registered before the retry, so room made in between is not missed.
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            self.wake.notify_one();
            match self.tx.try_send(msg) {
                Ok(()) => {
                    // In now: the writer, which may have emptied the buffer meanwhile and gone
                    // back to waiting, takes it.
                    self.wake.notify_one();
                    return;
                }
                Err(mpsc::error::TrySendError::Full(m)) => msg = m,
                Err(mpsc::error::TrySendError::Closed(_)) => return self.dropped(1),
            }
            room.await;
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
            self.wake.notify_one();
            let _ = done.await;
        }
    }

    /// Stops accepting records, writes everything buffered, and waits for the writer to end.
    pub async fn shutdown(&self) {
        self.closing.store(true, Ordering::Release);
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(ack)).await.is_ok() {
            self.wake.notify_one();
            let _ = done.await;
        }
        let done = self.done.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(d) = done {
            let _ = d.await;
        }
    }
}

/// Puts the calling thread (and the threads it starts) at the lowest normal CPU priority (nice
/// 19 on Linux). A failure only costs latency, so it is logged.
fn lower_priority() {
    use thread_priority::ThreadPriority;
    #[cfg(target_os = "linux")]
    let set = {
        use thread_priority::unix::{
            NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
            thread_native_id,
        };
        let normal = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other);
        set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, normal)
    };
    #[cfg(not(target_os = "linux"))]
    let set = thread_priority::set_current_thread_priority(ThreadPriority::Min);
    if let Err(e) = set {
        tracing::warn!(error = ?e, "the usage writer runs at normal priority");
    }
}

/// The writer's own connection, opened on the writer's thread (so on SQLite the connection's
/// worker thread is started from it and shares its priority), with the shared pool's settings.
/// Falls back to the shared pool.
async fn own_connection(db: &DatabaseConnection) -> DatabaseConnection {
    use sea_orm::sqlx::{postgres::PgPoolOptions, sqlite::SqlitePoolOptions};
    use sea_orm::{DatabaseBackend, SqlxPostgresConnector, SqlxSqliteConnector};
    let opened = match db.get_database_backend() {
        DatabaseBackend::Sqlite => {
            let opts = db.get_sqlite_connection_pool().connect_options();
            SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with((*opts).clone())
                .await
                .map(SqlxSqliteConnector::from_sqlx_sqlite_pool)
        }
        DatabaseBackend::Postgres => {
            let opts = db.get_postgres_connection_pool().connect_options();
            PgPoolOptions::new()
                .max_connections(2)
                .connect_with((*opts).clone())
                .await
                .map(SqlxPostgresConnector::from_sqlx_postgres_pool)
        }
        _ => return db.clone(),
    };
    opened.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "the usage writer shares the request pool");
        db.clone()
    })
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

/// Who learns of a written debit: the credit book (the new balance) and spend control.
struct Sinks {
    book: CreditBook,
    spend: Option<SpendControl>,
}

async fn run(
    db: DatabaseConnection,
    book: Sinks,
    config: WriterConfig,
    mut rx: mpsc::Receiver<Msg>,
    (wake, room): (Arc<tokio::sync::Notify>, Arc<tokio::sync::Notify>),
    stats: Arc<UsageStats>,
    closing: Arc<std::sync::atomic::AtomicBool>,
) {
    // However the writer ends (even by a panic), the requests waiting for room try again and
    // find the buffer closed.
    let _wake_waiters = WakeOnDrop(room.clone());
    let mut batch: Vec<UsageRecord> = Vec::with_capacity(config.batch);
    let mut last_used = LastUsed::default();
    let mut acks: Vec<oneshot::Sender<()>> = Vec::new();
    let mut inbox: Vec<Msg> = Vec::with_capacity(config.batch);
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown: Option<oneshot::Sender<()>> = None;
    let mut last_flush = Instant::now();
    // Whether the last look found the channel empty (then wait to be woken).
    let mut drained = true;
    loop {
        if drained {
            tokio::select! {
                () = wake.notified() => {}
                _ = tick.tick() => {}
            }
        }
        // Take what is there, up to a batch, without waiting.
        let mut closed = false;
        drained = false;
        while inbox.len() < config.batch {
            match rx.try_recv() {
                Ok(msg) => inbox.push(msg),
                Err(mpsc::error::TryRecvError::Empty) => {
                    drained = true;
                    break;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        if !inbox.is_empty() {
            room.notify_waiters();
        }
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
                    room.notify_waiters();
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

/// Wakes every waiter of a [`tokio::sync::Notify`] when dropped.
struct WakeOnDrop(Arc<tokio::sync::Notify>);

impl Drop for WakeOnDrop {
    fn drop(&mut self) {
        self.0.notify_waiters();
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
    book: &Sinks,
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
    sinks: &Sinks,
    batch: &[UsageRecord],
    keys: &[(Uuid, DateTime<Utc>)],
) -> Result<(), ServiceError> {
    let book = &sinks.book;
    let pricing = book.pricing(db).await?;
    let mut debits: BTreeMap<Uuid, (i64, i64)> = BTreeMap::new();
    let mut owed: BTreeMap<Uuid, i64> = BTreeMap::new();
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
                if r.owed != 0 {
                    *owed.entry(r.workspace).or_default() += r.owed;
                }
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
    if let Some(spend) = &sinks.spend {
        for (ws, amount) in owed {
            spend.debited(ws, amount).await;
        }
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

/// How many usage records a workspace has (tests and benchmarks check writes with it).
pub async fn count<C: ConnectionTrait>(db: &C, workspace: Uuid) -> Result<u64, ServiceError> {
    use sea_orm::PaginatorTrait;
    Ok(usage_record::Entity::find()
        .filter(usage_record::Column::WorkspaceId.eq(workspace))
        .count(db)
        .await?)
}
