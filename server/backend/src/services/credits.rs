//! Credits: the price table, the BYOK credit policy and monthly allowances (platform settings),
//! and each workspace's append-only ledger with its running balance.
//!
//! Amounts are micro-credits (see [`keyward::usage`]). A workspace receives its plan's monthly
//! allowance the first time its balance is read in a month (one ledger row per workspace and
//! month, guaranteed by a unique index even with several instances); unused credits carry over.
//! Usage is debited by the usage writer, one ledger row per workspace and batch.
//!
//! [`CreditBook`] keeps the prices and recent balances in memory so the gateway's credit check
//! costs a map lookup; it re-reads a balance after [`BALANCE_MAX_AGE`] (other instances' debits)
//! and at once after this instance's own top-ups and debits.

use crate::entities::{credit_balance, credit_ledger, model_price, workspace};
use crate::error::ServiceError;
use crate::invalidation::{Change, Invalidation, Seen, Topic};
use crate::services::audit::{self, By, Event};
use chrono::Utc;
use keyward::policy::Plan;
use keyward::usage::{
    ByokCreditPolicy, CreditSettings, LedgerEntryView, Price, PriceRow, WorkspaceCredits,
    default_allowance, format_credits,
};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use uuid::Uuid;

pub const BYOK_CREDIT_POLICY_SETTING: &str = "byok_credit_policy";
pub const ALLOWANCES_SETTING: &str = "credit_allowances";
/// Longest a balance read from the database is trusted without re-reading it.
pub const BALANCE_MAX_AGE: Duration = Duration::from_secs(5);
/// Longest the price table and policy are used without re-reading them.
pub const PRICING_MAX_AGE: Duration = Duration::from_secs(30);

/// The price table and the BYOK credit policy, as the usage writer applies them.
#[derive(Debug, Default)]
pub struct Pricing {
    pub policy: ByokCreditPolicy,
    /// provider → model → price and most output (nested so a lookup borrows and never
    /// allocates).
    prices: HashMap<String, HashMap<String, (Price, Option<u64>)>>,
}

impl Pricing {
    /// The model's own row, else its provider's `*` row, else the `*`/`*` row.
    fn row(&self, provider: &str, model: &str) -> Option<(Price, Option<u64>)> {
        let get = |p: &str, m: &str| self.prices.get(p).and_then(|ms| ms.get(m)).copied();
        get(provider, model)
            .or_else(|| get(provider, "*"))
            .or_else(|| get("*", "*"))
    }

    /// The model's price (free when no row prices it).
    pub fn price(&self, provider: &str, model: &str) -> Price {
        self.row(provider, model).map(|r| r.0).unwrap_or_default()
    }

    /// The most the model answers in one choice: what a request without `max_tokens` reserves.
    pub fn max_output(&self, provider: &str, model: &str) -> u64 {
        self.row(provider, model)
            .and_then(|r| r.1)
            .unwrap_or(keyward::limits::DEFAULT_MAX_OUTPUT)
    }
}

pub async fn load_pricing<C: ConnectionTrait>(db: &C) -> Result<Pricing, ServiceError> {
    let mut prices: HashMap<String, HashMap<String, (Price, Option<u64>)>> = HashMap::new();
    for r in model_price::Entity::find().all(db).await? {
        let max_output = r.max_output_tokens.and_then(|m| u64::try_from(m).ok());
        prices.entry(r.provider).or_default().insert(
            r.model,
            (
                Price {
                    input: r.input_price,
                    output: r.output_price,
                },
                max_output,
            ),
        );
    }
    Ok(Pricing {
        policy: byok_credit_policy(db).await?,
        prices,
    })
}

/// A cached value with when it was read and the change it was read after.
type Stamped<T> = (T, Instant, Seen);

#[derive(Clone, Debug)]
pub struct CreditBook {
    pricing: Arc<RwLock<Option<Stamped<Arc<Pricing>>>>>,
    balances: Arc<RwLock<HashMap<Uuid, Stamped<i64>>>>,
    /// Concurrent misses of one workspace's balance (or of the prices) read it once.
    flight: Arc<crate::single_flight::SingleFlight>,
    changes: Invalidation,
}

impl CreditBook {
    pub fn new(changes: Invalidation) -> Self {
        Self {
            pricing: Default::default(),
            balances: Default::default(),
            flight: Default::default(),
            changes,
        }
    }

    pub async fn pricing(&self, db: &DatabaseConnection) -> Result<Arc<Pricing>, ServiceError> {
        if let Some(p) = self.warm_pricing() {
            return Ok(p);
        }
        let _turn = self.flight.turn("pricing").await;
        if let Some(p) = self.warm_pricing() {
            return Ok(p);
        }
        let seen = self.changes.seen();
        let p = Arc::new(load_pricing(db).await?);
        *self.pricing.write().unwrap_or_else(|p| p.into_inner()) =
            Some((p.clone(), Instant::now(), seen));
        Ok(p)
    }

    fn warm_pricing(&self) -> Option<Arc<Pricing>> {
        match &*self.pricing.read().unwrap_or_else(|p| p.into_inner()) {
            Some((p, at, seen))
                if at.elapsed() < PRICING_MAX_AGE
                    && self.changes.fresh(Topic::Credits, None, *seen) =>
            {
                Some(p.clone())
            }
            _ => None,
        }
    }

    fn warm_balance(&self, workspace: Uuid) -> Option<i64> {
        match self
            .balances
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&workspace)
        {
            Some((b, at, seen))
                if at.elapsed() < BALANCE_MAX_AGE
                    && self.changes.fresh(Topic::Credits, Some(workspace), *seen) =>
            {
                Some(*b)
            }
            _ => None,
        }
    }

    /// The workspace's balance; a map lookup when recently read.
    pub async fn balance(
        &self,
        db: &DatabaseConnection,
        workspace: Uuid,
    ) -> Result<i64, ServiceError> {
        if let Some(b) = self.warm_balance(workspace) {
            return Ok(b);
        }
        let _turn = self.flight.turn(&workspace).await;
        if let Some(b) = self.warm_balance(workspace) {
            return Ok(b);
        }
        let b = current_balance(db, workspace).await?;
        self.settle(workspace, b);
        Ok(b)
    }

    /// Records a balance just read or written (the usage writer calls it after each debit).
    pub fn settle(&self, workspace: Uuid, balance: i64) {
        let mut map = self.balances.write().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, (_, at, _)| at.elapsed() < BALANCE_MAX_AGE);
        }
        map.insert(workspace, (balance, Instant::now(), self.changes.seen()));
    }
}

use crate::db::{get_setting, put_setting};

pub async fn byok_credit_policy<C: ConnectionTrait>(
    db: &C,
) -> Result<ByokCreditPolicy, ServiceError> {
    Ok(get_setting(db, BYOK_CREDIT_POLICY_SETTING)
        .await?
        .and_then(|v| v.parse().ok())
        .unwrap_or_default())
}

pub async fn set_byok_credit_policy(
    db: &DatabaseConnection,
    changes: &Invalidation,
    by: &By,
    policy: ByokCreditPolicy,
) -> Result<(), ServiceError> {
    let txn = crate::db::begin_write(db).await?;
    put_setting(&txn, BYOK_CREDIT_POLICY_SETTING, policy.as_str()).await?;
    audit::record(
        &txn,
        by,
        Event {
            action: "credits.byok_policy_changed",
            detail: Some(format!("BYOK credit policy: {}", policy.as_str())),
            ..Default::default()
        },
    )
    .await?;
    txn.commit().await?;
    changes.publish(Change::everyone(Topic::Credits));
    Ok(())
}

/// Every plan's monthly allowance (micro-credits).
pub async fn allowances<C: ConnectionTrait>(db: &C) -> Result<Vec<(Plan, i64)>, ServiceError> {
    let stored: HashMap<String, i64> = get_setting(db, ALLOWANCES_SETTING)
        .await?
        .and_then(|v| serde_json::from_str(&v).ok())
        .unwrap_or_default();
    Ok(Plan::ALL
        .into_iter()
        .map(|p| {
            (
                p,
                stored
                    .get(p.as_str())
                    .copied()
                    .unwrap_or_else(|| default_allowance(p)),
            )
        })
        .collect())
}

pub async fn set_allowance(
    db: &DatabaseConnection,
    by: &By,
    plan: Plan,
    micro: i64,
) -> Result<(), ServiceError> {
    if micro < 0 {
        return Err(ServiceError::Invalid(
            "an allowance cannot be negative".into(),
        ));
    }
    let txn = crate::db::begin_write(db).await?;
    let mut all: HashMap<String, i64> = allowances(&txn)
        .await?
        .into_iter()
        .map(|(p, v)| (p.as_str().to_string(), v))
        .collect();
    all.insert(plan.as_str().into(), micro);
    let json = serde_json::to_string(&all).map_err(|e| ServiceError::Internal(e.to_string()))?;
    put_setting(&txn, ALLOWANCES_SETTING, &json).await?;
    audit::record(
        &txn,
        by,
        Event {
            action: "credits.allowance_changed",
            detail: Some(format!(
                "{} plan: {} credits a month",
                plan.as_str(),
                format_credits(micro)
            )),
            ..Default::default()
        },
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

fn check_price_key(provider: &str, model: &str) -> Result<(String, String), ServiceError> {
    let provider = provider.trim();
    let model = model.trim();
    if provider != "*" && keyward::catalogue::provider(provider).is_none() {
        return Err(ServiceError::Invalid("unknown provider".into()));
    }
    if model.is_empty() || model.chars().count() > 200 || model.chars().any(char::is_control) {
        return Err(ServiceError::Invalid(
            "enter a model id (or * for every other model of the provider)".into(),
        ));
    }
    if provider == "*" && model != "*" {
        return Err(ServiceError::Invalid(
            "the catch-all row is */*; name a provider to price one model".into(),
        ));
    }
    Ok((provider.to_string(), model.to_string()))
}

pub async fn prices<C: ConnectionTrait>(db: &C) -> Result<Vec<PriceRow>, ServiceError> {
    Ok(model_price::Entity::find()
        .order_by_asc(model_price::Column::Provider)
        .order_by_asc(model_price::Column::Model)
        .all(db)
        .await?
        .into_iter()
        .map(|r| PriceRow {
            provider: r.provider,
            model: r.model,
            price: Price {
                input: r.input_price,
                output: r.output_price,
            },
        })
        .collect())
}

/// Adds or changes one row of the price table.
pub async fn set_price(
    db: &DatabaseConnection,
    changes: &Invalidation,
    by: &By,
    provider: &str,
    model: &str,
    price: Price,
) -> Result<(), ServiceError> {
    let (provider, model) = check_price_key(provider, model)?;
    for p in [price.input, price.output] {
        keyward::usage::check_price(p).map_err(|e| ServiceError::Invalid(e.0.into()))?;
    }
    let txn = crate::db::begin_write(db).await?;
    model_price::Entity::insert(model_price::ActiveModel {
        provider: Set(provider.clone()),
        model: Set(model.clone()),
        input_price: Set(price.input),
        output_price: Set(price.output),
        max_output_tokens: Set(None),
        updated_at: Set(Utc::now()),
    })
    .on_conflict(
        OnConflict::columns([model_price::Column::Provider, model_price::Column::Model])
            .update_columns([
                model_price::Column::InputPrice,
                model_price::Column::OutputPrice,
                model_price::Column::UpdatedAt,
            ])
            .to_owned(),
    )
    .exec_without_returning(&txn)
    .await?;
    audit::record(
        &txn,
        by,
        Event {
            action: "price.updated",
            provider: Some(&provider).filter(|p| *p != "*").map(String::as_str),
            detail: Some(format!(
                "{provider}/{model}: ${} in, ${} out per million tokens",
                format_credits(price.input),
                format_credits(price.output)
            )),
            ..Default::default()
        },
    )
    .await?;
    txn.commit().await?;
    changes.publish(Change::everyone(Topic::Credits));
    Ok(())
}

pub async fn delete_price(
    db: &DatabaseConnection,
    changes: &Invalidation,
    by: &By,
    provider: &str,
    model: &str,
) -> Result<(), ServiceError> {
    let (provider, model) = check_price_key(provider, model)?;
    if provider == "*" {
        return Err(ServiceError::Invalid(
            "the catch-all price cannot be deleted; change it instead".into(),
        ));
    }
    let txn = crate::db::begin_write(db).await?;
    let res = model_price::Entity::delete_many()
        .filter(model_price::Column::Provider.eq(&provider))
        .filter(model_price::Column::Model.eq(&model))
        .exec(&txn)
        .await?;
    if res.rows_affected == 0 {
        return Err(ServiceError::NotFound);
    }
    audit::record(
        &txn,
        by,
        Event {
            action: "price.deleted",
            provider: Some(&provider),
            detail: Some(format!("{provider}/{model}")),
            ..Default::default()
        },
    )
    .await?;
    txn.commit().await?;
    changes.publish(Change::everyone(Topic::Credits));
    Ok(())
}

/// Adds `delta` to the workspace's balance and returns the new balance (in the caller's
/// transaction).
async fn add_to_balance<C: ConnectionTrait>(
    txn: &C,
    workspace: Uuid,
    delta: i64,
) -> Result<i64, ServiceError> {
    let now = Utc::now();
    credit_balance::Entity::insert(credit_balance::ActiveModel {
        workspace_id: Set(workspace),
        balance: Set(0),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(credit_balance::Column::WorkspaceId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    credit_balance::Entity::update_many()
        .col_expr(
            credit_balance::Column::Balance,
            Expr::col(credit_balance::Column::Balance).add(delta),
        )
        .col_expr(credit_balance::Column::UpdatedAt, Expr::value(now))
        .filter(credit_balance::Column::WorkspaceId.eq(workspace))
        .exec(txn)
        .await?;
    Ok(credit_balance::Entity::find_by_id(workspace)
        .one(txn)
        .await?
        .map_or(0, |b| b.balance))
}

struct LedgerLine<'a> {
    kind: &'a str,
    amount: i64,
    period: Option<String>,
    requests: i64,
    note: String,
    actor: Option<Uuid>,
}

async fn append<C: ConnectionTrait>(
    txn: &C,
    workspace: Uuid,
    line: LedgerLine<'_>,
) -> Result<i64, ServiceError> {
    let balance = add_to_balance(txn, workspace, line.amount).await?;
    credit_ledger::ActiveModel {
        id: Set(Uuid::now_v7()),
        workspace_id: Set(workspace),
        kind: Set(line.kind.into()),
        amount: Set(line.amount),
        balance_after: Set(balance),
        period: Set(line.period),
        requests: Set(line.requests),
        note: Set(line.note),
        actor_id: Set(line.actor),
        created_at: Set(Utc::now()),
    }
    .insert(txn)
    .await?;
    Ok(balance)
}

/// Debits a batch of usage (the usage writer, inside its transaction). Returns the new balance.
pub async fn debit_usage<C: ConnectionTrait>(
    txn: &C,
    workspace: Uuid,
    micro: i64,
    requests: i64,
) -> Result<i64, ServiceError> {
    append(
        txn,
        workspace,
        LedgerLine {
            kind: "usage",
            amount: -micro,
            period: None,
            requests,
            note: format!("{requests} request{}", if requests == 1 { "" } else { "s" }),
            actor: None,
        },
    )
    .await
}

/// `YYYY-MM` of now (UTC).
pub fn current_period() -> String {
    Utc::now().format("%Y-%m").to_string()
}

/// Grants this month's allowance if the workspace has not had it yet. Safe to race: the unique
/// (workspace, period) index lets exactly one grant commit.
pub async fn ensure_allowance(
    db: &DatabaseConnection,
    workspace: Uuid,
) -> Result<(), ServiceError> {
    let period = current_period();
    let granted = credit_ledger::Entity::find()
        .select_only()
        .column(credit_ledger::Column::Id)
        .filter(credit_ledger::Column::WorkspaceId.eq(workspace))
        .filter(credit_ledger::Column::Period.eq(&period))
        .into_tuple::<Uuid>()
        .one(db)
        .await?
        .is_some();
    if granted {
        return Ok(());
    }
    let ws = workspace::Entity::find_by_id(workspace)
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound)?;
    let plan: Plan = ws.plan()?;
    let amount = allowances(db)
        .await?
        .into_iter()
        .find(|(p, _)| *p == plan)
        .map_or(0, |(_, v)| v);
    // Withheld (a self-service workspace, by the operator's policy): the month's line is still
    // written, at 0, so the question is settled once a month.
    let amount = if ws.allowance { amount } else { 0 };
    let txn = crate::db::begin_write(db).await?;
    let line = LedgerLine {
        kind: "allowance",
        amount,
        period: Some(period.clone()),
        requests: 0,
        note: format!("{} plan allowance for {period}", plan.as_str()),
        actor: None,
    };
    match append(&txn, workspace, line).await {
        Ok(_) => {
            txn.commit().await?;
            Ok(())
        }
        // Another request or instance granted it first.
        Err(ServiceError::Database(e))
            if matches!(
                e.sql_err(),
                Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
            ) =>
        {
            txn.rollback().await?;
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The workspace's balance, after granting this month's allowance if due.
pub async fn current_balance(
    db: &DatabaseConnection,
    workspace: Uuid,
) -> Result<i64, ServiceError> {
    ensure_allowance(db, workspace).await?;
    Ok(credit_balance::Entity::find_by_id(workspace)
        .one(db)
        .await?
        .map_or(0, |b| b.balance))
}

/// The platform admin adds (or, with a negative amount, removes) credits.
pub async fn top_up(
    db: &DatabaseConnection,
    changes: &Invalidation,
    by: &By,
    workspace: Uuid,
    micro: i64,
    note: &str,
) -> Result<i64, ServiceError> {
    if micro == 0 {
        return Err(ServiceError::Invalid("enter an amount other than 0".into()));
    }
    let note = note.trim();
    if note.chars().count() > 200 {
        return Err(ServiceError::Invalid(
            "a note may have at most 200 characters".into(),
        ));
    }
    let ws = workspace::Entity::find_by_id(workspace)
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound)?;
    ensure_allowance(db, workspace).await?;
    let txn = crate::db::begin_write(db).await?;
    let kind = if micro > 0 { "topup" } else { "adjustment" };
    let balance = append(
        &txn,
        workspace,
        LedgerLine {
            kind,
            amount: micro,
            period: None,
            requests: 0,
            note: if note.is_empty() {
                if micro > 0 { "Top-up" } else { "Adjustment" }.to_string()
            } else {
                note.to_string()
            },
            actor: by.id,
        },
    )
    .await?;
    audit::record(
        &txn,
        by,
        Event {
            workspace_id: Some(ws.id),
            action: if micro > 0 {
                "credits.topped_up"
            } else {
                "credits.adjusted"
            },
            detail: Some(format!(
                "{} credits; balance {}",
                format_credits(micro),
                format_credits(balance)
            )),
            ..Default::default()
        },
    )
    .await?;
    txn.commit().await?;
    changes.publish(Change::workspace(Topic::Credits, workspace));
    Ok(balance)
}

/// The newest ledger entries of a workspace (or of every workspace).
pub async fn ledger(
    db: &DatabaseConnection,
    workspace: Option<Uuid>,
    limit: u64,
) -> Result<Vec<LedgerEntryView>, ServiceError> {
    let mut q = credit_ledger::Entity::find()
        .order_by_desc(credit_ledger::Column::CreatedAt)
        .order_by_desc(credit_ledger::Column::Id)
        .limit(limit);
    if let Some(ws) = workspace {
        q = q.filter(credit_ledger::Column::WorkspaceId.eq(ws));
    }
    let rows = q.all(db).await?;
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
    Ok(rows
        .into_iter()
        .map(|r| LedgerEntryView {
            at: r.created_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            kind: r.kind,
            amount: r.amount,
            balance_after: r.balance_after,
            note: r.note,
            workspace: names.get(&r.workspace_id).cloned(),
        })
        .collect())
}

/// Everything on the platform admin's credits page.
pub async fn settings(db: &DatabaseConnection) -> Result<CreditSettings, ServiceError> {
    let balances: HashMap<Uuid, i64> = credit_balance::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|b| (b.workspace_id, b.balance))
        .collect();
    let workspaces = workspace::Entity::find()
        .order_by_asc(workspace::Column::Name)
        .all(db)
        .await?
        .into_iter()
        .map(|w| {
            Ok(WorkspaceCredits {
                id: w.id.to_string(),
                balance: balances.get(&w.id).copied().unwrap_or(0),
                plan: w.plan()?,
                name: w.name,
            })
        })
        .collect::<Result<_, ServiceError>>()?;
    let policy = crate::services::workspaces::policy(db).await?;
    Ok(CreditSettings {
        byok_credit_policy: byok_credit_policy(db).await?,
        allowances: allowances(db).await?,
        prices: prices(db).await?,
        workspaces,
        workspaces_per_user: policy.owned_per_user,
        self_service_allowance: policy.allowance,
    })
}
