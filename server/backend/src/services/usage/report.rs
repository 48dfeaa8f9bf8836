//! The usage report (totals, by day, breakdowns by model, key source, chatbot, channel and
//! workspace) and its CSV export: read models over the usage records.

use crate::entities::{chatbot, usage_record, workspace};
use crate::error::ServiceError;
use crate::services::credits::{self, CreditBook};
use chrono::{NaiveDate, Utc};
use keyward::usage::{UsageDay, UsageReport, UsageRow, UsageTotals};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect,
};
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// Most rows a CSV export holds.
pub const CSV_MAX_ROWS: u64 = 100_000;
/// Longest range a report covers.
pub const MAX_RANGE_DAYS: i64 = 366;

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
    let sum = |c: &str| crate::db::sum_expr(db, c);
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
        let totals: Vec<UsageTotals> = providers
            .iter()
            .map(|p| {
                per_day
                    .get(&(day.as_str(), p.as_str()))
                    .cloned()
                    .unwrap_or_default()
            })
            .collect();
        let by_provider = providers
            .iter()
            .zip(&totals)
            .map(|(p, t)| (p.clone(), t.requests, t.tokens()))
            .collect();
        let cost_by_provider = totals.iter().map(|t| t.cost).collect();
        days.push(UsageDay {
            day,
            by_provider,
            cost_by_provider,
        });
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
        budget: match workspace {
            Some(w) => budget_of(db, w).await?,
            None => None,
        },
    })
}

/// The budget the chart draws: the workspace's own, else the operator's for it (its override,
/// else its plan's default).
async fn budget_of(
    db: &DatabaseConnection,
    w: &workspace::Model,
) -> Result<Option<keyward::limits::Budget>, ServiceError> {
    use crate::services::limits;
    use keyward::limits::ScopeKind;
    let id = w.id.to_string();
    if let Some(b) = limits::get(db, ScopeKind::Workspace, &id)
        .await?
        .and_then(|l| l.budget)
    {
        return Ok(Some(b));
    }
    // An override replaces the plan's default entirely.
    let operator = match limits::get(db, ScopeKind::Override, &id).await? {
        Some(l) => Some(l),
        None => limits::get(db, ScopeKind::Plan, w.plan()?.as_str()).await?,
    };
    Ok(operator.and_then(|l| l.budget))
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
