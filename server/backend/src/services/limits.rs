//! Spend control: budgets and rate limits at every scope a request passes through, reserved
//! before the provider is called and settled with its counts afterwards (see
//! [`keyward::limits`] for the arithmetic).
//!
//! * [`LimitStore`] is the one small interface the counters live behind. [`InProcess`] is exact
//!   for one instance (one lock around a [`Ledger`]); a shared store for several instances
//!   implements the same six calls.
//! * [`SpendControl`] is what the chat pipeline uses: [`SpendControl::admit`] loads a budget's
//!   spend so far from the usage records the first time a window is used (so a restart forgets
//!   nothing), reserves, and hands back an [`Admission`] that is settled with what the request
//!   used or released when it never reached the provider — also when it is dropped.
//! * When the store cannot answer, each scope's [`OnStoreError`] decides: refuse (the default,
//!   a budget is money) or let the request through.
//! * The rows: one per scope that sets limits ([`get`], [`set`]); a change publishes a
//!   [`Topic::Keys`] change, since the limits travel in the key snapshot.

use crate::entities::{limit, usage_record};
use crate::error::ServiceError;
use crate::invalidation::{Change, Invalidation, Topic};
use crate::services::audit::{self, By, Event};
use chrono::{TimeZone, Utc};
use futures_util::future::BoxFuture;
use keyward::limits::{
    Alert, Ask, Budget, Consumption, Kind, Ledger, Limits, OnStoreError, Refusal, Scope, ScopeKind,
    Used, Window,
};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect, Set,
};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::task::TaskTracker;
use uuid::Uuid;

pub type Reservation = keyward::limits::Reservation<Scope>;

/// The store could not answer (a shared store unreachable, or the records unreadable while
/// loading a budget's spend).
#[derive(Debug, thiserror::Error)]
#[error("the limit store is unavailable: {0}")]
pub struct StoreError(pub String);

/// What a store answers to a reservation.
#[derive(Debug)]
pub enum Reserve {
    Done(Reservation),
    Refused(Refusal),
    /// These budgets' spend in their current window must be loaded first ([`LimitStore::seed`]).
    Seed(Vec<(Scope, Budget, i64)>),
}

/// Where the counters live. Every call is one round trip (one lock for [`InProcess`]).
pub trait LimitStore: Send + Sync + 'static {
    /// Reserves `ask` on every scope or on none (see [`Ledger::reserve`]).
    fn reserve<'a>(
        &'a self,
        now: i64,
        scopes: &'a [(Scope, Limits)],
        ask: Ask,
    ) -> BoxFuture<'a, Result<Reserve, StoreError>>;
    /// Settles a served request; returns the budgets that crossed their alert share.
    fn settle(
        &self,
        now: i64,
        r: Reservation,
        used: Used,
    ) -> BoxFuture<'_, Result<Vec<Alert<Scope>>, StoreError>>;
    fn release(&self, now: i64, r: Reservation) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Takes a budget's spend in the window starting at `start`, read from the records.
    fn seed(
        &self,
        now: i64,
        key: Scope,
        budget: Budget,
        start: i64,
        spent: i64,
    ) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Credits settled on a workspace's [`Scope::Credits`] were debited from its balance.
    fn debited(&self, key: Scope, amount: i64) -> BoxFuture<'_, Result<(), StoreError>>;
    fn consumption(
        &self,
        now: i64,
        key: Scope,
        limits: Limits,
    ) -> BoxFuture<'_, Result<Consumption, StoreError>>;
}

/// The exact store of one instance: the ledger behind one lock, held for microseconds.
#[derive(Debug, Default)]
pub struct InProcess {
    ledger: Mutex<Ledger<Scope>>,
}

impl InProcess {
    fn with<T>(&self, f: impl FnOnce(&mut Ledger<Scope>) -> T) -> T {
        f(&mut self.ledger.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Budgets whose spend comes from the usage records (the credit scope's comes from settling).
fn seeded_from_records(key: &Scope) -> bool {
    !matches!(key, Scope::Credits(_))
}

impl LimitStore for InProcess {
    fn reserve<'a>(
        &'a self,
        now: i64,
        scopes: &'a [(Scope, Limits)],
        ask: Ask,
    ) -> BoxFuture<'a, Result<Reserve, StoreError>> {
        let out = self.with(|l| {
            let missing = l.unseeded(now, scopes, seeded_from_records);
            if !missing.is_empty() {
                return Reserve::Seed(missing);
            }
            match l.reserve(now, scopes, ask) {
                Ok(r) => Reserve::Done(r),
                Err(r) => Reserve::Refused(r),
            }
        });
        Box::pin(std::future::ready(Ok(out)))
    }

    fn settle(
        &self,
        now: i64,
        r: Reservation,
        used: Used,
    ) -> BoxFuture<'_, Result<Vec<Alert<Scope>>, StoreError>> {
        let alerts = self.with(|l| l.settle(now, r, used));
        Box::pin(std::future::ready(Ok(alerts)))
    }

    fn release(&self, now: i64, r: Reservation) -> BoxFuture<'_, Result<(), StoreError>> {
        self.with(|l| l.release(now, r));
        Box::pin(std::future::ready(Ok(())))
    }

    fn seed(
        &self,
        now: i64,
        key: Scope,
        budget: Budget,
        start: i64,
        spent: i64,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.with(|l| l.seed(now, &key, budget, start, spent));
        Box::pin(std::future::ready(Ok(())))
    }

    fn debited(&self, key: Scope, amount: i64) -> BoxFuture<'_, Result<(), StoreError>> {
        self.with(|l| l.debited(&key, amount));
        Box::pin(std::future::ready(Ok(())))
    }

    fn consumption(
        &self,
        now: i64,
        key: Scope,
        limits: Limits,
    ) -> BoxFuture<'_, Result<Consumption, StoreError>> {
        let c = self.with(|l| l.consumption(now, &key, &limits));
        Box::pin(std::future::ready(Ok(c)))
    }
}

/// The time spend control counts in (seconds since the epoch, UTC). The system clock unless a
/// test sets it.
#[derive(Clone, Debug)]
pub struct Clock(Arc<AtomicI64>);

const SYSTEM: i64 = i64::MIN;

impl Default for Clock {
    fn default() -> Self {
        Clock(Arc::new(AtomicI64::new(SYSTEM)))
    }
}

impl Clock {
    pub fn now(&self) -> i64 {
        match self.0.load(Ordering::Relaxed) {
            SYSTEM => Utc::now().timestamp(),
            t => t,
        }
    }

    /// Stops the clock at `t` (tests of windows and minutes).
    pub fn set(&self, t: i64) {
        self.0.store(t, Ordering::Relaxed);
    }
}

/// Why a request was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// A limit of `scope` would be passed.
    Limit {
        scope: Scope,
        kind: Kind,
        limit: u64,
        retry_after: Option<u64>,
    },
    /// The store cannot answer and a scope fails closed.
    Unavailable,
}

impl Refused {
    /// The class a usage record carries: `limit:<scope>:<kind>` or `limits_unavailable`.
    pub fn class(&self) -> String {
        match self {
            Refused::Limit { scope, kind, .. } => keyward::limits::refusal_class(*scope, *kind),
            Refused::Unavailable => "limits_unavailable".into(),
        }
    }
}

/// `in 3 minutes`, `in 2 hours`, `in 4 days`.
fn after(secs: u64) -> String {
    let (n, unit) = match secs {
        0..=59 => (secs.max(1), "second"),
        60..=5399 => (secs.div_ceil(60), "minute"),
        5400..=129_599 => (secs.div_ceil(3600), "hour"),
        _ => (secs.div_ceil(86_400), "day"),
    };
    format!("in {n} {unit}{}", if n == 1 { "" } else { "s" })
}

impl Refused {
    /// What an owner or member reads: which limit of which scope, and when it frees up.
    pub fn explain(&self) -> String {
        match *self {
            Refused::Unavailable => {
                "The limits could not be checked (their store is unavailable), and this workspace's limits fail closed. Try again shortly.".into()
            }
            Refused::Limit {
                scope,
                kind,
                limit,
                retry_after,
            } => {
                let what = match kind {
                    Kind::Budget if matches!(scope, Scope::Credits(_)) => format!(
                        "The workspace's credit balance ({} credits) does not cover this request's worst case: lower max_tokens, add your own key, or top up",
                        keyward::usage::format_credits(i64::try_from(limit).unwrap_or(i64::MAX))
                    ),
                    Kind::Budget => format!(
                        "The {} budget of {} credits is spent (with the requests in flight)",
                        scope.label(),
                        keyward::usage::format_credits(i64::try_from(limit).unwrap_or(i64::MAX))
                    ),
                    Kind::Requests => {
                        format!("The {} limit of {limit} requests a minute is reached", scope.label())
                    }
                    Kind::InputTokens => format!(
                        "The {} limit of {limit} input tokens a minute is reached",
                        scope.label()
                    ),
                    Kind::OutputTokens => format!(
                        "The {} limit of {limit} output tokens a minute is reached",
                        scope.label()
                    ),
                    Kind::Concurrent => format!(
                        "The {} limit of {limit} requests at once is reached",
                        scope.label()
                    ),
                };
                match retry_after {
                    Some(s) => format!("{what}; it frees up {}.", after(s)),
                    None => format!("{what}; it frees up only when the limit is raised."),
                }
            }
        }
    }

    /// What a visitor of a public chat page reads: no scope, no numbers.
    pub fn visitor_sentence(&self) -> String {
        match *self {
            Refused::Limit {
                kind: Kind::Budget,
                retry_after,
                ..
            } => match retry_after {
                Some(s) if s < 86_400 * 2 => format!(
                    "This assistant has reached its usage limit for now. Please come back {}.",
                    after(s)
                ),
                _ => "This assistant has reached its usage limit. Please come back later.".into(),
            },
            Refused::Limit { retry_after, .. } => format!(
                "This assistant is busy right now. Please try again {}.",
                after(retry_after.unwrap_or(60))
            ),
            Refused::Unavailable => {
                "Sorry — the assistant can't answer right now. Please try again in a little while."
                    .into()
            }
        }
    }
}

/// The chat pipeline's handle on the counters; cheap to clone.
#[derive(Clone)]
pub struct SpendControl {
    store: Arc<dyn LimitStore>,
    clock: Clock,
    db: DatabaseConnection,
    flight: Arc<crate::single_flight::SingleFlight>,
    tasks: TaskTracker,
}

impl std::fmt::Debug for SpendControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpendControl").finish_non_exhaustive()
    }
}

impl SpendControl {
    pub fn new(store: Arc<dyn LimitStore>, db: DatabaseConnection, tasks: TaskTracker) -> Self {
        SpendControl {
            store,
            clock: Clock::default(),
            db,
            flight: Default::default(),
            tasks,
        }
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Reserves `ask` on every scope in `scopes`, loading budgets' spend first where needed.
    pub async fn admit(
        &self,
        scopes: Vec<(Scope, Limits)>,
        ask: Ask,
    ) -> Result<Admission, Refused> {
        if scopes.is_empty() {
            return Ok(self.admission(None, ask));
        }
        let now = self.clock.now();
        // Seeding twice is enough: a third round could only meet a window that began meanwhile.
        for _ in 0..3 {
            match self.store.reserve(now, &scopes, ask).await {
                Ok(Reserve::Done(r)) => return Ok(self.admission(Some(r), ask)),
                Ok(Reserve::Refused(r)) => {
                    return Err(Refused::Limit {
                        scope: scopes[r.scope].0,
                        kind: r.kind,
                        limit: r.limit,
                        retry_after: r.retry_after_secs,
                    });
                }
                Ok(Reserve::Seed(missing)) => {
                    for (key, budget, start) in missing {
                        if let Err(e) = self.seed(now, key, budget, start).await {
                            return self.unavailable(&scopes, ask, &e);
                        }
                    }
                }
                Err(e) => return self.unavailable(&scopes, ask, &e),
            }
        }
        self.unavailable(
            &scopes,
            ask,
            &StoreError("budgets kept changing windows".into()),
        )
    }

    fn admission(&self, r: Option<Reservation>, ask: Ask) -> Admission {
        Admission {
            r,
            ask,
            spend: self.clone(),
        }
    }

    /// The store failed: through, unlimited, only if every scope fails open.
    fn unavailable(
        &self,
        scopes: &[(Scope, Limits)],
        ask: Ask,
        e: &StoreError,
    ) -> Result<Admission, Refused> {
        let open = scopes
            .iter()
            .all(|(_, l)| l.on_store_error == OnStoreError::Open);
        tracing::error!(error = %e, fail_open = open, "spend control cannot reach its store");
        if open {
            Ok(self.admission(None, ask))
        } else {
            Err(Refused::Unavailable)
        }
    }

    /// Loads one budget's spend in its window from the usage records, once for concurrent
    /// requests.
    async fn seed(
        &self,
        now: i64,
        key: Scope,
        budget: Budget,
        start: i64,
    ) -> Result<(), StoreError> {
        let _turn = self.flight.turn(&key).await;
        let spent = spent_since(&self.db, key, budget.window, start)
            .await
            .map_err(|e| StoreError(e.to_string()))?;
        self.store.seed(now, key, budget, start, spent).await
    }

    /// Credits settled on `workspace`'s balance scope were debited by the usage writer.
    pub async fn debited(&self, workspace: Uuid, amount: i64) {
        if amount == 0 {
            return;
        }
        if let Err(e) = self.store.debited(Scope::Credits(workspace), amount).await {
            tracing::error!(error = %e, "spend control lost a debit");
        }
    }

    /// What `key` uses of `limits` now (the dashboard's bars).
    pub async fn consumption(&self, key: Scope, limits: Limits) -> Result<Consumption, StoreError> {
        self.store.consumption(self.clock.now(), key, limits).await
    }

    /// Records the soft alerts a settlement raised, off the request's path.
    fn alert(&self, workspace: Uuid, alerts: Vec<Alert<Scope>>) {
        if alerts.is_empty() {
            return;
        }
        let db = self.db.clone();
        self.tasks.spawn(async move {
            for a in alerts {
                // A key's budget spans every workspace that uses it (a platform key's does).
                let workspace_id = match a.key {
                    Scope::Key(_) => None,
                    _ => Some(workspace),
                };
                let detail = format!(
                    "{} budget: {} of {} credits spent this {} ({} % alert)",
                    a.key.label(),
                    keyward::usage::format_credits(a.spent),
                    keyward::usage::format_credits(a.budget.micro),
                    a.budget.window.as_str(),
                    a.budget.alert_percent
                );
                let event = Event {
                    workspace_id,
                    action: "limits.alert",
                    detail: Some(detail),
                    ..Default::default()
                };
                if let Err(e) = audit::record(&db, &By::keyward(), event).await {
                    tracing::warn!(error = %e, "could not record a budget alert");
                }
            }
        });
    }
}

/// A request's reservation. Settle it with what the request used, or release it; dropping it
/// releases it.
pub struct Admission {
    r: Option<Reservation>,
    ask: Ask,
    spend: SpendControl,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("ask", &self.ask)
            .field("held", &self.r.is_some())
            .finish()
    }
}

impl Admission {
    /// The tightest per-minute limits the request passed (for `x-ratelimit-*`).
    pub fn headroom(&self) -> keyward::limits::Headroom {
        self.r.as_ref().map(|r| r.headroom).unwrap_or_default()
    }

    /// Settles a served request of `workspace`. Returns the credits settled on the workspace's
    /// balance scope (the usage writer hands them back through [`SpendControl::debited`] once
    /// the debit is written).
    pub async fn settle(mut self, workspace: Uuid, used: Used) -> i64 {
        let Some(r) = self.r.take() else {
            return 0;
        };
        let owed = if r.holds(&Scope::Credits(workspace)) {
            used.cost.clamp(0, r.ask().cost.max(0))
        } else {
            0
        };
        let spend = self.spend.clone();
        match spend.store.settle(spend.clock.now(), r, used).await {
            Ok(alerts) => {
                spend.alert(workspace, alerts);
                owed
            }
            Err(e) => {
                tracing::error!(error = %e, "spend control could not settle a request");
                0
            }
        }
    }

    /// Releases a request that never reached the provider.
    pub async fn release(mut self) {
        if let Some(r) = self.r.take() {
            let spend = self.spend.clone();
            if let Err(e) = spend.store.release(spend.clock.now(), r).await {
                tracing::error!(error = %e, "spend control could not release a request");
            }
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(r) = self.r.take() {
            let spend = self.spend.clone();
            if tokio::runtime::Handle::try_current().is_err() {
                tracing::error!("a reservation was dropped outside the runtime");
                return;
            }
            spend.tasks.clone().spawn(async move {
                let _ = spend.store.release(spend.clock.now(), r).await;
            });
        }
    }
}

/// `YYYY-MM-DD` of a moment (the usage records' `day`).
fn day_of(t: i64) -> String {
    Utc.timestamp_opt(t, 0)
        .single()
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

/// What the records say `key` spent (list-price cost) in the window starting at `start`.
pub async fn spent_since<C: ConnectionTrait>(
    db: &C,
    key: Scope,
    window: Window,
    start: i64,
) -> Result<i64, ServiceError> {
    use usage_record::Column as C;
    let (col, id) = match key {
        Scope::Operator(w) | Scope::Workspace(w) => (C::WorkspaceId, w),
        Scope::Chatbot(c) => (C::ChatbotId, c),
        Scope::Token(t) => (C::ApiTokenId, t),
        Scope::Key(k) => (C::KeyId, k),
        Scope::Credits(_) => return Ok(0),
    };
    let mut q = usage_record::Entity::find()
        .select_only()
        .column_as(crate::db::sum_expr(db, "cost"), "spent")
        .filter(col.eq(id));
    if window != Window::Total {
        q = q.filter(C::Day.gte(day_of(start)));
    }
    Ok(q.into_tuple::<i64>().one(db).await?.unwrap_or(0))
}

// ---- The rows ----

fn to_i64<T: TryInto<i64>>(v: Option<T>) -> Option<i64> {
    v.and_then(|v| v.try_into().ok())
}

/// A stored row as [`Limits`] (an unknown window or policy is corrupt data).
pub fn of_row(row: &limit::Model) -> Result<Limits, ServiceError> {
    let budget = match (row.budget_micro, row.budget_window.as_deref()) {
        (Some(micro), Some(w)) => Some(Budget {
            micro,
            window: Window::parse(w).ok_or_else(|| {
                ServiceError::Internal(format!("limits.budget_window holds {w:?}"))
            })?,
            alert_percent: u8::try_from(row.alert_percent.clamp(0, 100)).unwrap_or(0),
        }),
        _ => None,
    };
    let on_store_error = match row.on_store_error.as_str() {
        "open" => OnStoreError::Open,
        "closed" => OnStoreError::Closed,
        other => {
            return Err(ServiceError::Internal(format!(
                "limits.on_store_error holds {other:?}"
            )));
        }
    };
    let u32_of = |v: Option<i64>| v.map(|v| u32::try_from(v.max(0)).unwrap_or(u32::MAX));
    let u64_of = |v: Option<i64>| v.map(|v| u64::try_from(v.max(0)).unwrap_or(0));
    Ok(Limits {
        budget,
        requests_per_minute: u32_of(row.requests_per_minute),
        input_tokens_per_minute: u64_of(row.input_tokens_per_minute),
        output_tokens_per_minute: u64_of(row.output_tokens_per_minute),
        concurrent: u32_of(row.concurrent),
        on_store_error,
    })
}

/// The limits set at one scope, if any.
pub async fn get<C: ConnectionTrait>(
    db: &C,
    kind: ScopeKind,
    subject: &str,
) -> Result<Option<Limits>, ServiceError> {
    limit::Entity::find_by_id((kind.as_str().to_string(), subject.to_string()))
        .one(db)
        .await?
        .map(|r| of_row(&r))
        .transpose()
}

/// Every row a workspace's requests can meet: its own (workspace, chatbots, tokens, its keys,
/// the operator's override) and the ones without a workspace (plans' defaults, platform keys).
pub async fn rows_for<C: ConnectionTrait>(
    db: &C,
    workspace: Uuid,
) -> Result<Vec<limit::Model>, ServiceError> {
    Ok(limit::Entity::find()
        .filter(
            sea_orm::Condition::any()
                .add(limit::Column::WorkspaceId.eq(workspace))
                .add(limit::Column::WorkspaceId.is_null()),
        )
        .all(db)
        .await?)
}

/// Where a row is set: its kind, subject (plan name or id) and the workspace it belongs to.
#[derive(Clone, Debug)]
pub struct Target {
    pub kind: ScopeKind,
    pub subject: String,
    pub workspace: Option<Uuid>,
    /// How the audit log names it.
    pub name: String,
}

/// Sets (or with `None` clears) the limits of one scope, audited, and makes every instance's
/// snapshot of the workspaces it reaches reload.
pub async fn set(
    db: &DatabaseConnection,
    changes: &Invalidation,
    by: &By,
    target: &Target,
    limits: Option<Limits>,
) -> Result<(), ServiceError> {
    if let Some(l) = &limits {
        l.check().map_err(|e| ServiceError::Invalid(e.0.into()))?;
    }
    let txn = crate::db::begin_write(db).await?;
    let id = (target.kind.as_str().to_string(), target.subject.clone());
    let detail = match limits.filter(Limits::any) {
        None => {
            limit::Entity::delete_by_id(id).exec(&txn).await?;
            format!("{}: no limits", target.name)
        }
        Some(l) => {
            let b = l.budget;
            let row = limit::ActiveModel {
                scope: Set(id.0),
                subject: Set(id.1),
                workspace_id: Set(target.workspace),
                budget_micro: Set(b.map(|b| b.micro)),
                budget_window: Set(b.map(|b| b.window.as_str().to_string())),
                alert_percent: Set(b
                    .map_or(i32::from(keyward::limits::DEFAULT_ALERT_PERCENT), |b| {
                        i32::from(b.alert_percent)
                    })),
                requests_per_minute: Set(to_i64(l.requests_per_minute)),
                input_tokens_per_minute: Set(to_i64(l.input_tokens_per_minute)),
                output_tokens_per_minute: Set(to_i64(l.output_tokens_per_minute)),
                concurrent: Set(to_i64(l.concurrent)),
                on_store_error: Set(match l.on_store_error {
                    OnStoreError::Open => "open".into(),
                    OnStoreError::Closed => "closed".into(),
                }),
                updated_at: Set(Utc::now()),
            };
            limit::Entity::insert(row)
                .on_conflict(
                    OnConflict::columns([limit::Column::Scope, limit::Column::Subject])
                        .update_columns([
                            limit::Column::WorkspaceId,
                            limit::Column::BudgetMicro,
                            limit::Column::BudgetWindow,
                            limit::Column::AlertPercent,
                            limit::Column::RequestsPerMinute,
                            limit::Column::InputTokensPerMinute,
                            limit::Column::OutputTokensPerMinute,
                            limit::Column::Concurrent,
                            limit::Column::OnStoreError,
                            limit::Column::UpdatedAt,
                        ])
                        .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
            format!("{}: {}", target.name, l.describe())
        }
    };
    audit::record(
        &txn,
        by,
        Event {
            workspace_id: target.workspace,
            action: "limits.updated",
            detail: Some(detail),
            ..Default::default()
        },
    )
    .await?;
    txn.commit().await?;
    changes.publish(match target.workspace {
        Some(w) => Change::workspace(Topic::Keys, w),
        None => Change::everyone(Topic::Keys),
    });
    Ok(())
}

// ---- The Limits page ----

/// Names the scope `kind`/`subject` of `workspace` as a target, checking it belongs there (a
/// chatbot, token or key of another workspace is not found). Plans' defaults, overrides and
/// platform keys are the operator's ([`operator_target`]).
pub async fn target_in<C: ConnectionTrait>(
    db: &C,
    workspace: &crate::entities::workspace::Model,
    kind: ScopeKind,
    subject: &str,
) -> Result<Target, ServiceError> {
    use crate::entities::{api_token, chatbot, credential};
    let id = Uuid::parse_str(subject).map_err(|_| ServiceError::NotFound)?;
    let name = match kind {
        ScopeKind::Workspace if id == workspace.id => format!("Workspace {}", workspace.name),
        ScopeKind::Chatbot => {
            let bot = chatbot::Entity::find_by_id(id)
                .filter(chatbot::Column::WorkspaceId.eq(workspace.id))
                .one(db)
                .await?
                .ok_or(ServiceError::NotFound)?;
            format!("Chatbot {}", bot.name)
        }
        ScopeKind::Token => {
            let t = api_token::Entity::find_by_id(id)
                .filter(api_token::Column::WorkspaceId.eq(workspace.id))
                .one(db)
                .await?
                .ok_or(ServiceError::NotFound)?;
            format!("API token {}", t.name)
        }
        ScopeKind::Key => {
            let k = credential::Entity::find_by_id(id)
                .filter(credential::Column::WorkspaceId.eq(workspace.id))
                .one(db)
                .await?
                .ok_or(ServiceError::NotFound)?;
            format!("{} key {}", k.provider, k.hint)
        }
        _ => return Err(ServiceError::NotFound),
    };
    Ok(Target {
        kind,
        subject: id.to_string(),
        workspace: Some(workspace.id),
        name,
    })
}

/// The operator's scopes: a plan's default (`subject` a plan), the override of one workspace,
/// or a platform key's limits.
pub async fn operator_target<C: ConnectionTrait>(
    db: &C,
    kind: ScopeKind,
    subject: &str,
) -> Result<Target, ServiceError> {
    use crate::entities::{credential, workspace};
    match kind {
        ScopeKind::Plan => {
            let plan: keyward::policy::Plan = subject
                .parse()
                .map_err(|_| ServiceError::Invalid("no such plan".into()))?;
            Ok(Target {
                kind,
                subject: plan.as_str().into(),
                workspace: None,
                name: format!("Plan {}", plan.as_str()),
            })
        }
        ScopeKind::Override => {
            let id = Uuid::parse_str(subject).map_err(|_| ServiceError::NotFound)?;
            let ws = workspace::Entity::find_by_id(id)
                .one(db)
                .await?
                .ok_or(ServiceError::NotFound)?;
            Ok(Target {
                kind,
                subject: id.to_string(),
                workspace: Some(id),
                name: format!("Operator override for {}", ws.name),
            })
        }
        ScopeKind::Key => {
            let id = Uuid::parse_str(subject).map_err(|_| ServiceError::NotFound)?;
            let k = credential::Entity::find_by_id(id)
                .filter(credential::Column::WorkspaceId.is_null())
                .one(db)
                .await?
                .ok_or(ServiceError::NotFound)?;
            Ok(Target {
                kind,
                subject: id.to_string(),
                workspace: None,
                name: format!("Platform {} key {}", k.provider, k.hint),
            })
        }
        _ => Err(ServiceError::NotFound),
    }
}

/// Which scopes of the page the viewer may change.
#[derive(Clone, Copy, Debug)]
pub struct Editable {
    /// Workspace, chatbot and key limits (owners).
    pub owner: bool,
    /// Token limits (owners and admins).
    pub tokens: bool,
}

/// A workspace's Limits page: every scope its requests can meet, with live consumption, and
/// the last week's refusals.
pub async fn page(
    db: &DatabaseConnection,
    spend: &SpendControl,
    workspace: &crate::entities::workspace::Model,
    editable: Editable,
) -> Result<keyward::limits::LimitsPage, ServiceError> {
    use crate::entities::{api_token, chatbot, credential};
    use keyward::limits::ScopeLimitsView;
    use sea_orm::QueryOrder;
    let ws = workspace.id;
    let rows = rows_for(db, ws).await?;
    let find = |kind: ScopeKind, subject: &str| -> Result<Option<Limits>, ServiceError> {
        rows.iter()
            .find(|r| r.scope == kind.as_str() && r.subject == subject)
            .map(of_row)
            .transpose()
    };
    let mut scopes = Vec::new();
    let mut push = |kind,
                    subject: String,
                    name: String,
                    limits: Option<Limits>,
                    key: Scope,
                    editable: bool| {
        scopes.push((
            ScopeLimitsView {
                kind,
                subject,
                name,
                limits,
                consumption: None,
                editable,
            },
            key,
        ));
    };
    let plan = workspace.plan()?;
    match find(ScopeKind::Override, &ws.to_string())? {
        Some(l) => push(
            ScopeKind::Override,
            ws.to_string(),
            "Operator's limits for this workspace".into(),
            Some(l),
            Scope::Operator(ws),
            false,
        ),
        None => push(
            ScopeKind::Plan,
            plan.as_str().into(),
            format!("Plan {} (set by the operator)", plan.as_str()),
            find(ScopeKind::Plan, plan.as_str())?,
            Scope::Operator(ws),
            false,
        ),
    }
    push(
        ScopeKind::Workspace,
        ws.to_string(),
        format!("Workspace {}", workspace.name),
        find(ScopeKind::Workspace, &ws.to_string())?,
        Scope::Workspace(ws),
        editable.owner,
    );
    // Chatbots, live API tokens and keys: (kind, id, name).
    let bots = chatbot::Entity::find()
        .filter(chatbot::Column::WorkspaceId.eq(ws))
        .order_by_asc(chatbot::Column::Name)
        .all(db)
        .await?;
    let tokens = api_token::Entity::find()
        .filter(api_token::Column::WorkspaceId.eq(ws))
        .filter(api_token::Column::RevokedAt.is_null())
        .order_by_asc(api_token::Column::Name)
        .all(db)
        .await?;
    let keys = credential::Entity::find()
        .filter(credential::Column::WorkspaceId.eq(ws))
        .order_by_asc(credential::Column::Provider)
        .all(db)
        .await?;
    let subjects = (bots.into_iter())
        .map(|b| (ScopeKind::Chatbot, b.id, format!("Chatbot {}", b.name)))
        .chain(
            tokens
                .into_iter()
                .map(|t| (ScopeKind::Token, t.id, format!("API token {}", t.name))),
        )
        .chain(keys.into_iter().map(|k| {
            (
                ScopeKind::Key,
                k.id,
                format!("{} key {}", k.provider, k.hint),
            )
        }));
    for (kind, id, name) in subjects {
        let (key, can) = match kind {
            ScopeKind::Chatbot => (Scope::Chatbot(id), editable.owner),
            ScopeKind::Token => (Scope::Token(id), editable.tokens),
            _ => (Scope::Key(id), editable.owner),
        };
        let subject = id.to_string();
        let l = find(kind, &subject)?;
        push(kind, subject, name, l, key, can);
    }
    let mut out = Vec::with_capacity(scopes.len());
    for (mut view, key) in scopes {
        if let Some(l) = view.limits {
            view.consumption = spend.consumption(key, l).await.ok();
        }
        out.push(view);
    }
    Ok(keyward::limits::LimitsPage {
        workspace_id: ws.to_string(),
        scopes: out,
        refusals: refusals(db, ws).await?,
    })
}

/// The last 7 days' refusals by a limit, by class, most frequent first.
async fn refusals(
    db: &DatabaseConnection,
    workspace: Uuid,
) -> Result<Vec<keyward::limits::RefusalRow>, ServiceError> {
    use sea_orm::sea_query::Expr;
    use sea_orm::{FromQueryResult, QueryOrder};
    #[derive(FromQueryResult)]
    struct Row {
        error_class: Option<String>,
        count: i64,
        last_at: chrono::DateTime<Utc>,
    }
    let since = (Utc::now() - chrono::Duration::days(6))
        .format("%Y-%m-%d")
        .to_string();
    let rows = usage_record::Entity::find()
        .select_only()
        .column(usage_record::Column::ErrorClass)
        .column_as(Expr::cust("COUNT(*)"), "count")
        .column_as(usage_record::Column::CreatedAt.max(), "last_at")
        .filter(usage_record::Column::WorkspaceId.eq(workspace))
        .filter(usage_record::Column::Day.gte(since))
        .filter(usage_record::Column::ErrorClass.like("limit:%"))
        .group_by(usage_record::Column::ErrorClass)
        .order_by_desc(Expr::cust("COUNT(*)"))
        .into_model::<Row>()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let class = r.error_class?;
            Some(keyward::limits::RefusalRow {
                label: keyward::limits::class_label(&class),
                class,
                count: u64::try_from(r.count).unwrap_or(0),
                last_at: crate::services::fmt_time(r.last_at),
            })
        })
        .collect())
}

/// The operator's limits: each plan's default and every override, plus platform keys'.
pub async fn operator_rows(
    db: &DatabaseConnection,
) -> Result<Vec<keyward::limits::ScopeLimitsView>, ServiceError> {
    use crate::entities::{credential, workspace};
    use keyward::limits::ScopeLimitsView;
    let rows = limit::Entity::find()
        .filter(limit::Column::Scope.is_in([
            ScopeKind::Plan.as_str(),
            ScopeKind::Override.as_str(),
            ScopeKind::Key.as_str(),
        ]))
        .all(db)
        .await?;
    let find = |kind: ScopeKind, subject: &str| {
        rows.iter()
            .find(|r| r.scope == kind.as_str() && r.subject == subject)
            .map(of_row)
            .transpose()
    };
    let mut out = Vec::new();
    let view = |kind, subject: String, name: String, limits| ScopeLimitsView {
        kind,
        subject,
        name,
        limits,
        consumption: None,
        editable: true,
    };
    for plan in keyward::policy::Plan::ALL {
        let l = find(ScopeKind::Plan, plan.as_str())?;
        out.push(view(
            ScopeKind::Plan,
            plan.as_str().into(),
            format!("Plan {}", plan.as_str()),
            l,
        ));
    }
    for k in credential::Entity::find()
        .filter(credential::Column::WorkspaceId.is_null())
        .all(db)
        .await?
    {
        let id = k.id.to_string();
        let l = find(ScopeKind::Key, &id)?;
        out.push(view(
            ScopeKind::Key,
            id,
            format!("Platform {} key {}", k.provider, k.hint),
            l,
        ));
    }
    for r in rows
        .iter()
        .filter(|r| r.scope == ScopeKind::Override.as_str())
    {
        let Some(id) = r.workspace_id else { continue };
        let name = workspace::Entity::find_by_id(id)
            .one(db)
            .await?
            .map_or_else(|| id.to_string(), |w| w.name);
        out.push(view(
            ScopeKind::Override,
            r.subject.clone(),
            format!("Override for {name}"),
            Some(of_row(r)?),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store that cannot answer (a shared store that is down).
    struct Down;

    impl LimitStore for Down {
        fn reserve<'a>(
            &'a self,
            _: i64,
            _: &'a [(Scope, Limits)],
            _: Ask,
        ) -> BoxFuture<'a, Result<Reserve, StoreError>> {
            Box::pin(std::future::ready(Err(StoreError("down".into()))))
        }
        fn settle(
            &self,
            _: i64,
            _: Reservation,
            _: Used,
        ) -> BoxFuture<'_, Result<Vec<Alert<Scope>>, StoreError>> {
            Box::pin(std::future::ready(Err(StoreError("down".into()))))
        }
        fn release(&self, _: i64, _: Reservation) -> BoxFuture<'_, Result<(), StoreError>> {
            Box::pin(std::future::ready(Err(StoreError("down".into()))))
        }
        fn seed(
            &self,
            _: i64,
            _: Scope,
            _: Budget,
            _: i64,
            _: i64,
        ) -> BoxFuture<'_, Result<(), StoreError>> {
            Box::pin(std::future::ready(Err(StoreError("down".into()))))
        }
        fn debited(&self, _: Scope, _: i64) -> BoxFuture<'_, Result<(), StoreError>> {
            Box::pin(std::future::ready(Err(StoreError("down".into()))))
        }
        fn consumption(
            &self,
            _: i64,
            _: Scope,
            _: Limits,
        ) -> BoxFuture<'_, Result<Consumption, StoreError>> {
            Box::pin(std::future::ready(Err(StoreError("down".into()))))
        }
    }

    #[tokio::test]
    async fn a_store_that_is_down_fails_closed_unless_every_scope_is_open() {
        let db = sea_orm::Database::connect("sqlite::memory:").await.unwrap();
        let spend = SpendControl::new(Arc::new(Down), db, TaskTracker::new());
        let id = Uuid::nil();
        let rpm = |on_store_error| Limits {
            requests_per_minute: Some(10),
            on_store_error,
            ..Limits::default()
        };
        let ask = Ask::default();
        let closed = vec![
            (Scope::Workspace(id), rpm(OnStoreError::Open)),
            (Scope::Token(id), rpm(OnStoreError::Closed)),
        ];
        assert_eq!(
            spend.admit(closed, ask).await.unwrap_err(),
            Refused::Unavailable
        );
        let open = vec![
            (Scope::Workspace(id), rpm(OnStoreError::Open)),
            (Scope::Token(id), rpm(OnStoreError::Open)),
        ];
        let a = spend.admit(open, ask).await.expect("through, unlimited");
        assert_eq!(a.headroom(), keyward::limits::Headroom::default());
        assert_eq!(a.settle(id, Used::default()).await, 0);
        assert_eq!(Refused::Unavailable.class(), "limits_unavailable");
    }

    #[tokio::test]
    async fn seeding_reads_the_records_and_a_budget_resumes() {
        use crate::entities::usage_record;
        use keyward_migration::{Migrator, MigratorTrait};
        use sea_orm::ActiveModelTrait;
        let db = sea_orm::Database::connect("sqlite::memory:").await.unwrap();
        Migrator::up(&db, None).await.unwrap();
        let ws = Uuid::now_v7();
        let now = Utc::now();
        crate::entities::workspace::ActiveModel {
            id: Set(ws),
            name: Set("W".into()),
            slug: Set("w".into()),
            plan: Set("free".into()),
            failure_policy: Set("fail_closed".into()),
            default_provider: Set(None),
            allowance: Set(true),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&db)
        .await
        .unwrap();
        // The spend a previous run left behind: 700 today.
        let rec = usage_record::ActiveModel {
            id: Set(Uuid::now_v7()),
            created_at: Set(now),
            day: Set(now.format("%Y-%m-%d").to_string()),
            workspace_id: Set(ws),
            chatbot_id: Set(None),
            conversation_id: Set(None),
            api_token_id: Set(None),
            channel: Set("api".into()),
            provider: Set("openai".into()),
            model: Set("m".into()),
            key_source: Set(None),
            key_id: Set(None),
            key_hint: Set(None),
            input_tokens: Set(0),
            output_tokens: Set(0),
            tokens_estimated: Set(false),
            first_token_ms: Set(None),
            latency_ms: Set(1),
            outcome: Set("ok".into()),
            error_class: Set(None),
            fell_back: Set(false),
            credits: Set(0),
            cost: Set(700),
        };
        usage_record::Entity::insert(rec)
            .exec_without_returning(&db)
            .await
            .unwrap();
        let spend = SpendControl::new(Arc::new(InProcess::default()), db, TaskTracker::new());
        let daily = Limits {
            budget: Some(Budget {
                micro: 1000,
                window: Window::Day,
                alert_percent: 0,
            }),
            ..Limits::default()
        };
        let scopes = || vec![(Scope::Workspace(ws), daily)];
        let ask = |cost| Ask {
            cost,
            ..Ask::default()
        };
        assert!(matches!(
            spend.admit(scopes(), ask(301)).await.unwrap_err(),
            Refused::Limit {
                kind: Kind::Budget,
                ..
            }
        ));
        let a = spend.admit(scopes(), ask(300)).await.unwrap();
        a.release().await;
        let c = spend
            .consumption(Scope::Workspace(ws), daily)
            .await
            .unwrap();
        assert_eq!((c.spent, c.reserved), (700, 0));
    }
}
