//! Spend control's arithmetic: the limits a scope may set (a spend budget over a window,
//! requests and tokens per minute, concurrent requests), a request's worst case, and the
//! [`Ledger`] that reserves that worst case on every scope a request passes through — on all of
//! them or on none — and later settles it with the provider's counts or releases it.
//!
//! With `max_tokens` given, the worst case bounds what the provider can bill, so a budget is
//! never exceeded: a reservation is accepted only while `spent + reserved + ask ≤ budget`, and
//! a settlement never charges more than was reserved for it. Without `max_tokens` the caller
//! reserves the model's maximum output instead, and the overshoot is bounded by that estimate.
//!
//! Pure: the time is passed in (seconds since the Unix epoch, UTC), so tests inject a clock. The
//! server holds one ledger behind a lock (the exact in-process store); a shared store can keep
//! the same counters for several instances.

use crate::usage::{Price, cost};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::Hash;

pub use crate::window::{Budget, DEFAULT_ALERT_PERCENT, Window, days_from_civil};

/// What to do when the store that keeps the counters cannot answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnStoreError {
    /// Refuse the request (the default: a budget is money).
    #[default]
    Closed,
    /// Let the request through unlimited by this scope.
    Open,
}

/// What one scope (a plan's default, a workspace, a chatbot, an API token, a provider key)
/// allows. Every limit is optional; `None` everywhere allows everything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub budget: Option<Budget>,
    pub requests_per_minute: Option<u32>,
    pub input_tokens_per_minute: Option<u64>,
    pub output_tokens_per_minute: Option<u64>,
    pub concurrent: Option<u32>,
    #[serde(default)]
    pub on_store_error: OnStoreError,
}

/// The largest budget a scope may set: a billion credits.
pub const MAX_BUDGET_MICRO: i64 = 1_000_000_000 * 1_000_000;

impl Limits {
    /// Refuses values no one means: a negative or absurd budget, an alert share over 100 %.
    pub fn check(&self) -> Result<(), crate::usage::Invalid> {
        use crate::usage::Invalid;
        if let Some(b) = self.budget {
            if !(0..=MAX_BUDGET_MICRO).contains(&b.micro) {
                return Err(Invalid("a budget is between 0 and 1,000,000,000 credits"));
            }
            if b.alert_percent > 100 {
                return Err(Invalid("the alert share is a percentage from 0 to 100"));
            }
        }
        let big = |n: Option<u64>| n.is_some_and(|n| n > 1_000_000_000_000);
        if big(self.input_tokens_per_minute) || big(self.output_tokens_per_minute) {
            return Err(Invalid("tokens per minute are at most 10^12"));
        }
        Ok(())
    }

    /// One line for people: `budget 5 credits a day (alert at 80 %), 10 requests a minute`
    /// (`no limits` when none is set).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(b) = self.budget {
            parts.push(format!(
                "budget {} credits {} (alert at {} %)",
                crate::usage::format_credits(b.micro),
                match b.window {
                    Window::Day => "a day",
                    Window::Week => "a week",
                    Window::Month => "a month",
                    Window::Total => "in total",
                },
                b.alert_percent
            ));
        }
        for (n, what) in [
            (self.requests_per_minute.map(u64::from), "requests a minute"),
            (self.input_tokens_per_minute, "input tokens a minute"),
            (self.output_tokens_per_minute, "output tokens a minute"),
            (self.concurrent.map(u64::from), "at once"),
        ] {
            if let Some(n) = n {
                parts.push(format!("{n} {what}"));
            }
        }
        if self.on_store_error == OnStoreError::Open {
            parts.push("open when the store is down".into());
        }
        if parts.is_empty() {
            "no limits".into()
        } else {
            parts.join(", ")
        }
    }

    /// Whether any limit is set (a scope without one need not be counted at all).
    pub fn any(&self) -> bool {
        self.budget.is_some()
            || self.requests_per_minute.is_some()
            || self.input_tokens_per_minute.is_some()
            || self.output_tokens_per_minute.is_some()
            || self.concurrent.is_some()
    }
}

/// The limits form, as typed: every field optional (empty: no such limit). Budgets in credits
/// (`2.5`), counts as whole numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsInput {
    #[serde(default)]
    pub budget: String,
    #[serde(default)]
    pub window: String,
    #[serde(default)]
    pub alert_percent: String,
    #[serde(default)]
    pub requests_per_minute: String,
    #[serde(default)]
    pub input_tokens_per_minute: String,
    #[serde(default)]
    pub output_tokens_per_minute: String,
    #[serde(default)]
    pub concurrent: String,
    /// `open` or `closed` (the default).
    #[serde(default)]
    pub on_store_error: String,
}

impl LimitsInput {
    pub fn parse(&self) -> Result<Limits, crate::usage::Invalid> {
        use crate::usage::Invalid;
        fn count<T: std::str::FromStr>(s: &str, what: &'static str) -> Result<Option<T>, Invalid> {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            s.parse().map(Some).map_err(|_| Invalid(what))
        }
        let budget = match self.budget.trim() {
            "" => None,
            b => {
                let micro = crate::usage::parse_credits(b)?;
                let window = match self.window.trim() {
                    "" => Window::Month,
                    w => Window::parse(w)
                        .ok_or(Invalid("the window is day, week, month or total"))?,
                };
                let alert_percent = count::<u8>(
                    &self.alert_percent,
                    "the alert share is a whole percentage from 0 to 100",
                )?
                .unwrap_or(DEFAULT_ALERT_PERCENT);
                Some(Budget {
                    micro,
                    window,
                    alert_percent,
                })
            }
        };
        let limits = Limits {
            budget,
            requests_per_minute: count(
                &self.requests_per_minute,
                "requests a minute is a whole number",
            )?,
            input_tokens_per_minute: count(
                &self.input_tokens_per_minute,
                "input tokens a minute is a whole number",
            )?,
            output_tokens_per_minute: count(
                &self.output_tokens_per_minute,
                "output tokens a minute is a whole number",
            )?,
            concurrent: count(&self.concurrent, "requests at once is a whole number")?,
            on_store_error: match self.on_store_error.trim() {
                "" | "closed" => OnStoreError::Closed,
                "open" => OnStoreError::Open,
                _ => return Err(Invalid("when the store is down: open or closed")),
            },
        };
        limits.check()?;
        Ok(limits)
    }

    /// The form filled with `limits` (for editing).
    pub fn of(limits: &Limits) -> Self {
        let n = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        LimitsInput {
            budget: limits
                .budget
                .map(|b| crate::usage::format_credits(b.micro))
                .unwrap_or_default(),
            window: limits
                .budget
                .map_or(Window::Month, |b| b.window)
                .as_str()
                .into(),
            alert_percent: limits
                .budget
                .map_or(DEFAULT_ALERT_PERCENT, |b| b.alert_percent)
                .to_string(),
            requests_per_minute: n(limits.requests_per_minute.map(u64::from)),
            input_tokens_per_minute: n(limits.input_tokens_per_minute),
            output_tokens_per_minute: n(limits.output_tokens_per_minute),
            concurrent: n(limits.concurrent.map(u64::from)),
            on_store_error: match limits.on_store_error {
                OnStoreError::Open => "open".into(),
                OnStoreError::Closed => "closed".into(),
            },
        }
    }
}

/// One scope on the Limits page: what it allows, what it uses now, and whether the viewer may
/// change it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScopeLimitsView {
    pub kind: ScopeKind,
    /// The plan's name or the id of the workspace, chatbot, token or key.
    pub subject: String,
    /// How people read it: `Workspace`, `Chatbot Helper`, `API token ci`, `openai key sk-…abcd`.
    pub name: String,
    pub limits: Option<Limits>,
    pub consumption: Option<Consumption>,
    pub editable: bool,
}

impl ScopeLimitsView {
    /// Whether its budget's spend (with what is in flight) reached its alert share.
    pub fn alerting(&self) -> bool {
        match (self.limits.and_then(|l| l.budget), self.consumption) {
            (Some(b), Some(c)) if b.alert_percent > 0 => {
                i128::from(c.spent) * 100 >= i128::from(b.micro) * i128::from(b.alert_percent)
            }
            _ => false,
        }
    }
}

/// Requests a limit refused recently, by scope and limit (from the usage records).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusalRow {
    /// `limit:chatbot:budget`
    pub class: String,
    /// `chatbot budget`
    pub label: String,
    pub count: u64,
    pub last_at: String,
}

/// The Limits page of a workspace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LimitsPage {
    pub workspace_id: String,
    pub scopes: Vec<ScopeLimitsView>,
    /// The last 7 days' refusals.
    pub refusals: Vec<RefusalRow>,
}

/// How a refusal class reads: `limit:chatbot:budget` → `chatbot budget`.
pub fn class_label(class: &str) -> String {
    let mut parts = class.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("limit"), Some(scope), Some(kind)) => {
            let kind = match kind {
                "budget" => "budget",
                "rpm" => "requests a minute",
                "itpm" => "input tokens a minute",
                "otpm" => "output tokens a minute",
                "concurrent" => "requests at once",
                other => other,
            };
            let scope = match scope {
                "token" => "API token",
                "key" => "provider key",
                "credits" => "credit balance",
                other => other,
            };
            format!("{scope} {kind}")
        }
        _ => class.to_string(),
    }
}

/// Where limits are set, as stored: a plan's default and the operator's override for one
/// workspace (the override replaces the plan's default), the owner's own workspace limits, a
/// chatbot, an API token, a provider key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeKind {
    Plan,
    Override,
    Workspace,
    Chatbot,
    Token,
    Key,
}

impl ScopeKind {
    pub const ALL: [ScopeKind; 6] = [
        ScopeKind::Plan,
        ScopeKind::Override,
        ScopeKind::Workspace,
        ScopeKind::Chatbot,
        ScopeKind::Token,
        ScopeKind::Key,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ScopeKind::Plan => "plan",
            ScopeKind::Override => "override",
            ScopeKind::Workspace => "workspace",
            ScopeKind::Chatbot => "chatbot",
            ScopeKind::Token => "token",
            ScopeKind::Key => "key",
        }
    }

    pub fn parse(s: &str) -> Option<ScopeKind> {
        ScopeKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// What the ledger counts under: one set of counters per scope a request can pass through.
/// The operator's limits (a plan's default or an override) count per workspace; a platform key
/// counts across every workspace that uses it; `Credits` holds the platform-key worst cases of a
/// workspace against its credit balance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "scope", content = "id", rename_all = "snake_case")]
pub enum Scope {
    Operator(uuid::Uuid),
    Workspace(uuid::Uuid),
    Chatbot(uuid::Uuid),
    Token(uuid::Uuid),
    Key(uuid::Uuid),
    Credits(uuid::Uuid),
}

impl Scope {
    /// How an owner reads the scope that refused a request.
    pub fn label(self) -> &'static str {
        match self {
            Scope::Operator(_) => "plan",
            Scope::Workspace(_) => "workspace",
            Scope::Chatbot(_) => "chatbot",
            Scope::Token(_) => "API token",
            Scope::Key(_) => "provider key",
            Scope::Credits(_) => "credit balance",
        }
    }

    /// The short name a usage record's error class carries (`limit:<scope>:<kind>`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Operator(_) => "plan",
            Scope::Workspace(_) => "workspace",
            Scope::Chatbot(_) => "chatbot",
            Scope::Token(_) => "token",
            Scope::Key(_) => "key",
            Scope::Credits(_) => "credits",
        }
    }
}

/// The most a request may use: reserved before it is sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ask {
    /// Micro-credits.
    pub cost: i64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// The output a request without `max_tokens` reserves when the price table does not say how
/// much its model answers at most.
pub const DEFAULT_MAX_OUTPUT: u64 = 4096;

/// The worst case of a request at `price`: its input estimate, plus `max_output` tokens (the
/// request's `max_tokens`, or the model's maximum output) for each of its `n` choices.
pub fn worst_case(price: Price, input_tokens: u64, max_output: u64, n: u32) -> Ask {
    let output_tokens = max_output.saturating_mul(u64::from(n.max(1)));
    Ask {
        cost: cost(price, input_tokens, output_tokens),
        input_tokens,
        output_tokens,
    }
}

/// What a request used, from the provider's counts (or estimates where it reported none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Used {
    pub cost: i64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// Which limit refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Budget,
    Requests,
    InputTokens,
    OutputTokens,
    Concurrent,
}

/// The longest error class a usage record or a message stores.
pub const MAX_CLASS_LEN: usize = 32;

/// The error class of a refusal: `limit:<scope>:<kind code>` (at most [`MAX_CLASS_LEN`]).
pub fn refusal_class(scope: Scope, kind: Kind) -> String {
    format!("limit:{}:{}", scope.as_str(), kind.code())
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Budget,
        Kind::Requests,
        Kind::InputTokens,
        Kind::OutputTokens,
        Kind::Concurrent,
    ];

    /// The short name an error class carries.
    pub fn code(self) -> &'static str {
        match self {
            Kind::Budget => "budget",
            Kind::Requests => "rpm",
            Kind::InputTokens => "itpm",
            Kind::OutputTokens => "otpm",
            Kind::Concurrent => "concurrent",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Budget => "budget",
            Kind::Requests => "requests_per_minute",
            Kind::InputTokens => "input_tokens_per_minute",
            Kind::OutputTokens => "output_tokens_per_minute",
            Kind::Concurrent => "concurrent_requests",
        }
    }
}

/// A refused reservation: nothing was reserved anywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The index, in the scopes given to [`Ledger::reserve`], of the first scope that refused.
    pub scope: usize,
    pub kind: Kind,
    /// The limit that would have been passed.
    pub limit: u64,
    /// When asking again can succeed; `None` when it cannot before someone raises the limit
    /// (a budget over [`Window::Total`], or an ask larger than the limit itself).
    pub retry_after_secs: Option<u64>,
}

/// The counters of one scope.
#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    /// Start of the budget window `spent` counts in.
    window: i64,
    spent: i64,
    /// Worst cases of requests in flight (they carry over into a new window).
    reserved: i64,
    /// The minute (since the epoch) the per-minute counters count in.
    minute: i64,
    requests: u32,
    input: u64,
    output: u64,
    in_flight: u32,
    /// The budget window whose spend so far was loaded from the records ([`Ledger::seed`]).
    seeded: Option<i64>,
    /// The budget window whose soft alert was raised.
    alerted: Option<i64>,
}

impl Counters {
    /// Moves the counters to the windows that hold `now`.
    fn roll(&mut self, now: i64, budget: Option<Budget>) {
        if let Some(b) = budget {
            let (start, _) = b.window.bounds(now);
            if start != self.window {
                self.window = start;
                self.spent = 0;
            }
        }
        let minute = now.div_euclid(60);
        if minute != self.minute {
            self.minute = minute;
            self.requests = 0;
            self.input = 0;
            self.output = 0;
        }
    }

    /// The first limit `ask` would pass, with its limit and when to retry.
    fn check(&self, now: i64, limits: &Limits, ask: &Ask) -> Option<(Kind, u64, Option<u64>)> {
        let next_minute = u64::try_from(60 - now.rem_euclid(60)).unwrap_or(60);
        let per_minute = |limit: u64, ask: u64| (ask <= limit).then_some(next_minute);
        if let Some(b) = limits.budget
            && self
                .spent
                .saturating_add(self.reserved)
                .saturating_add(ask.cost)
                > b.micro
        {
            let retry = match b.window.bounds(now) {
                (_, Some(end)) if ask.cost <= b.micro => u64::try_from(end - now).ok(),
                _ => None,
            };
            return Some((Kind::Budget, u64::try_from(b.micro).unwrap_or(0), retry));
        }
        if let Some(n) = limits.concurrent
            && self.in_flight >= n
        {
            return Some((Kind::Concurrent, u64::from(n), (n > 0).then_some(1)));
        }
        if let Some(n) = limits.requests_per_minute
            && self.requests >= n
        {
            return Some((Kind::Requests, u64::from(n), per_minute(u64::from(n), 1)));
        }
        if let Some(n) = limits.input_tokens_per_minute
            && self.input.saturating_add(ask.input_tokens) > n
        {
            return Some((Kind::InputTokens, n, per_minute(n, ask.input_tokens)));
        }
        if let Some(n) = limits.output_tokens_per_minute
            && self.output.saturating_add(ask.output_tokens) > n
        {
            return Some((Kind::OutputTokens, n, per_minute(n, ask.output_tokens)));
        }
        None
    }
}

/// Where a reservation stands on one scope.
#[derive(Debug)]
struct Held<K> {
    key: K,
    budget: Option<Budget>,
    minute: i64,
}

/// A request's reservation on every scope it passes through. Settle or release it exactly
/// once (it cannot be copied).
#[derive(Debug)]
#[must_use = "a reservation holds budget and a concurrency slot until settled or released"]
pub struct Reservation<K> {
    held: Vec<Held<K>>,
    ask: Ask,
    /// The tightest per-minute limits this request passed, after counting it.
    pub headroom: Headroom,
}

impl<K> Reservation<K> {
    pub fn ask(&self) -> Ask {
        self.ask
    }

    /// Whether the reservation holds anything on `key`.
    pub fn holds(&self, key: &K) -> bool
    where
        K: PartialEq,
    {
        self.held.iter().any(|h| h.key == *key)
    }
}

/// One per-minute limit as OpenAI's `x-ratelimit-*` headers tell it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Room {
    pub limit: u64,
    pub remaining: u64,
    pub reset_secs: u64,
}

/// The tightest request and token limits a request passed (the one with the least left).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Headroom {
    pub requests: Option<Room>,
    pub tokens: Option<Room>,
}

impl Headroom {
    fn offer(slot: &mut Option<Room>, limit: u64, used: u64, reset_secs: u64) {
        let room = Room {
            limit,
            remaining: limit.saturating_sub(used),
            reset_secs,
        };
        if slot.is_none_or(|r| room.remaining < r.remaining) {
            *slot = Some(room);
        }
    }
}

/// A budget whose spending crossed its alert share in this window (raised once per window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Alert<K> {
    pub key: K,
    pub budget: Budget,
    pub spent: i64,
}

/// How much of a scope's limits is in use now (for the dashboard's bars and the
/// `x-ratelimit-*` headers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consumption {
    pub spent: i64,
    pub reserved: i64,
    pub requests: u32,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub in_flight: u32,
    /// Seconds until the per-minute counters reset.
    pub minute_resets_in: u64,
    /// Seconds until the budget window resets (`None`: no budget, or a total budget).
    pub budget_resets_in: Option<u64>,
}

/// The counters of every scope, keyed by `K` (a scope id).
#[derive(Debug)]
pub struct Ledger<K> {
    scopes: HashMap<K, Counters>,
}

impl<K> Default for Ledger<K> {
    fn default() -> Self {
        Ledger {
            scopes: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash + Clone> Ledger<K> {
    /// Reserves `ask` on every scope in `scopes` (a request must satisfy each one it passes
    /// through), or on none: the first scope whose limits `ask` would pass refuses it.
    pub fn reserve(
        &mut self,
        now: i64,
        scopes: &[(K, Limits)],
        ask: Ask,
    ) -> Result<Reservation<K>, Refusal> {
        for (i, (key, limits)) in scopes.iter().enumerate() {
            let mut c = self.scopes.get(key).copied().unwrap_or_default();
            c.roll(now, limits.budget);
            if let Some((kind, limit, retry_after_secs)) = c.check(now, limits, &ask) {
                return Err(Refusal {
                    scope: i,
                    kind,
                    limit,
                    retry_after_secs,
                });
            }
        }
        let mut held = Vec::with_capacity(scopes.len());
        let mut headroom = Headroom::default();
        let reset = u64::try_from(60 - now.rem_euclid(60)).unwrap_or(60);
        for (key, limits) in scopes {
            let c = self.scopes.entry(key.clone()).or_default();
            c.roll(now, limits.budget);
            if limits.budget.is_some() {
                c.reserved = c.reserved.saturating_add(ask.cost);
            }
            c.requests = c.requests.saturating_add(1);
            c.input = c.input.saturating_add(ask.input_tokens);
            c.output = c.output.saturating_add(ask.output_tokens);
            c.in_flight = c.in_flight.saturating_add(1);
            if let Some(n) = limits.requests_per_minute {
                let used = u64::from(c.requests);
                Headroom::offer(&mut headroom.requests, u64::from(n), used, reset);
            }
            if let Some(n) = limits.input_tokens_per_minute {
                Headroom::offer(&mut headroom.tokens, n, c.input, reset);
            }
            if let Some(n) = limits.output_tokens_per_minute {
                Headroom::offer(&mut headroom.tokens, n, c.output, reset);
            }
            held.push(Held {
                key: key.clone(),
                budget: limits.budget,
                minute: c.minute,
            });
        }
        Ok(Reservation {
            held,
            ask,
            headroom,
        })
    }

    /// The budget window (its start) whose spend so far `key` has not loaded yet: the caller
    /// reads it from the usage records and hands it to [`Ledger::seed`] before reserving.
    pub fn needs_seed(&self, now: i64, key: &K, budget: Budget) -> Option<i64> {
        let (start, _) = budget.window.bounds(now);
        let seeded = self.scopes.get(key).and_then(|c| c.seeded);
        (seeded != Some(start)).then_some(start)
    }

    /// The budgets among `scopes` (those `seeded` says are read from the records) whose spend in
    /// the current window is not loaded yet, with the window's start.
    pub fn unseeded(
        &self,
        now: i64,
        scopes: &[(K, Limits)],
        seeded: impl Fn(&K) -> bool,
    ) -> Vec<(K, Budget, i64)> {
        let mut out = Vec::new();
        for (key, limits) in scopes {
            if let Some(b) = limits.budget
                && seeded(key)
                && let Some(start) = self.needs_seed(now, key, b)
            {
                out.push((key.clone(), b, start));
            }
        }
        out
    }

    /// Takes the spend of `key`'s window starting at `start`, as read from the records. What
    /// this ledger already counted in that window (settled since it began) may be among those
    /// records or not yet: the larger of the two stands, so nothing is counted too low.
    pub fn seed(&mut self, now: i64, key: &K, budget: Budget, start: i64, spent: i64) {
        let c = self.scopes.entry(key.clone()).or_default();
        c.roll(now, Some(budget));
        if c.window == start && c.seeded != Some(start) {
            c.spent = c.spent.max(spent);
            c.seeded = Some(start);
        }
    }

    /// Forgets `amount` of `key`'s spend: for the credit scope, whose spend is what was settled
    /// and not yet debited from the balance — the debit moves it into the balance itself.
    pub fn debited(&mut self, key: &K, amount: i64) {
        if let Some(c) = self.scopes.get_mut(key) {
            c.spent = c.spent.saturating_sub(amount).max(0);
        }
    }

    /// Settles a served request with what it used: its worst case leaves `reserved`, what it
    /// cost (never more than was reserved) joins `spent`, and the minute's token counts are
    /// corrected if that minute is still running. Returns the budgets this crossed the alert
    /// share of (each once per window).
    pub fn settle(&mut self, now: i64, r: Reservation<K>, used: Used) -> Vec<Alert<K>> {
        let charged = used.cost.clamp(0, r.ask.cost.max(0));
        self.end(
            now,
            r,
            Some(Used {
                cost: charged,
                ..used
            }),
        )
    }

    /// Releases a request that never reached the provider: nothing is charged, and it does
    /// not count against the per-minute limits.
    pub fn release(&mut self, now: i64, r: Reservation<K>) {
        self.end(now, r, None);
    }

    fn end(&mut self, now: i64, r: Reservation<K>, used: Option<Used>) -> Vec<Alert<K>> {
        let mut alerts = Vec::new();
        for h in r.held {
            let Some(c) = self.scopes.get_mut(&h.key) else {
                continue;
            };
            c.roll(now, h.budget);
            if h.budget.is_some() {
                c.reserved = c.reserved.saturating_sub(r.ask.cost).max(0);
                if let Some(u) = used {
                    c.spent = c.spent.saturating_add(u.cost);
                }
                if let Some(b) = h.budget
                    && b.alert_percent > 0
                    && c.alerted != Some(c.window)
                    && i128::from(c.spent) * 100
                        >= i128::from(b.micro) * i128::from(b.alert_percent)
                {
                    c.alerted = Some(c.window);
                    alerts.push(Alert {
                        key: h.key.clone(),
                        budget: b,
                        spent: c.spent,
                    });
                }
            }
            c.in_flight = c.in_flight.saturating_sub(1);
            if c.minute == h.minute {
                let (input, output, requests) = match used {
                    Some(u) => (u.input_tokens, u.output_tokens, 0),
                    None => (0, 0, 1),
                };
                c.requests = c.requests.saturating_sub(requests);
                c.input = c
                    .input
                    .saturating_sub(r.ask.input_tokens)
                    .saturating_add(input);
                c.output = c
                    .output
                    .saturating_sub(r.ask.output_tokens)
                    .saturating_add(output);
            }
        }
        alerts
    }

    /// What `key` uses of `limits` now.
    pub fn consumption(&self, now: i64, key: &K, limits: &Limits) -> Consumption {
        let mut c = self.scopes.get(key).copied().unwrap_or_default();
        c.roll(now, limits.budget);
        Consumption {
            spent: c.spent,
            reserved: c.reserved,
            requests: c.requests,
            input_tokens: c.input,
            output_tokens: c.output,
            in_flight: c.in_flight,
            minute_resets_in: u64::try_from(60 - now.rem_euclid(60)).unwrap_or(60),
            budget_resets_in: limits
                .budget
                .and_then(|b| b.window.bounds(now).1)
                .and_then(|end| u64::try_from(end - now).ok()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::{DAY, civil_from_days};

    /// 2026-12-01T00:00:00Z, a Tuesday.
    const T0: i64 = 1_796_083_200;

    fn budget(micro: i64, window: Window) -> Limits {
        Limits {
            budget: Some(Budget {
                micro,
                window,
                alert_percent: DEFAULT_ALERT_PERCENT,
            }),
            ..Limits::default()
        }
    }

    fn ask(cost: i64) -> Ask {
        Ask {
            cost,
            input_tokens: 10,
            output_tokens: 100,
        }
    }

    #[test]
    fn calendar_windows() {
        assert_eq!(civil_from_days(T0 / DAY), (2026, 12, 1));
        assert_eq!(days_from_civil(2026, 12, 1) * DAY, T0);
        for d in -800_000..800_000 {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
        let noon = T0 + 12 * 3600;
        assert_eq!(Window::Day.bounds(noon), (T0, Some(T0 + DAY)));
        // The Monday before (2026-11-30) to the next one.
        assert_eq!(Window::Week.bounds(noon), (T0 - DAY, Some(T0 + 6 * DAY)));
        assert_eq!(Window::Month.bounds(noon), (T0, Some(T0 + 31 * DAY)));
        // February of a leap year, from its last second.
        let feb = days_from_civil(2028, 2, 1) * DAY;
        let mar = days_from_civil(2028, 3, 1) * DAY;
        assert_eq!(mar - feb, 29 * DAY);
        assert_eq!(Window::Month.bounds(mar - 1), (feb, Some(mar)));
        assert_eq!(Window::Month.bounds(mar).0, mar);
        // Before the epoch too.
        assert_eq!(Window::Day.bounds(-1), (-DAY, Some(0)));
        assert_eq!(Window::Total.bounds(noon).1, None);
        for w in Window::ALL {
            assert_eq!(Window::parse(w.as_str()), Some(w));
        }
        assert_eq!(Window::parse("year"), None);
    }

    #[test]
    fn refusal_classes_fit_their_columns() {
        let id = uuid::Uuid::nil();
        for scope in [
            Scope::Operator(id),
            Scope::Workspace(id),
            Scope::Chatbot(id),
            Scope::Token(id),
            Scope::Key(id),
            Scope::Credits(id),
        ] {
            for kind in Kind::ALL {
                let class = refusal_class(scope, kind);
                assert!(class.len() <= MAX_CLASS_LEN, "{class}");
            }
        }
        assert_eq!(
            refusal_class(Scope::Chatbot(id), Kind::Budget),
            "limit:chatbot:budget"
        );
    }

    #[test]
    fn the_form_reads_and_writes_limits() {
        let input = LimitsInput {
            budget: "2.5".into(),
            window: "day".into(),
            alert_percent: "90".into(),
            requests_per_minute: "10".into(),
            concurrent: "3".into(),
            ..LimitsInput::default()
        };
        let l = input.parse().unwrap();
        assert_eq!(
            l.budget,
            Some(Budget {
                micro: 2_500_000,
                window: Window::Day,
                alert_percent: 90
            })
        );
        assert_eq!((l.requests_per_minute, l.concurrent), (Some(10), Some(3)));
        assert_eq!(l.input_tokens_per_minute, None);
        assert_eq!(LimitsInput::of(&l).parse().unwrap(), l);
        assert_eq!(
            l.describe(),
            "budget 2.5 credits a day (alert at 90 %), 10 requests a minute, 3 at once"
        );
        assert_eq!(Limits::default().describe(), "no limits");
        assert!(!LimitsInput::default().parse().unwrap().any());
        for bad in [
            LimitsInput {
                budget: "-1".into(),
                ..LimitsInput::default()
            },
            LimitsInput {
                budget: "1".into(),
                window: "year".into(),
                ..LimitsInput::default()
            },
            LimitsInput {
                budget: "1".into(),
                alert_percent: "101".into(),
                ..LimitsInput::default()
            },
            LimitsInput {
                requests_per_minute: "ten".into(),
                ..LimitsInput::default()
            },
            LimitsInput {
                concurrent: "-2".into(),
                ..LimitsInput::default()
            },
            LimitsInput {
                on_store_error: "maybe".into(),
                ..LimitsInput::default()
            },
        ] {
            assert!(bad.parse().is_err(), "{bad:?}");
        }
        assert_eq!(class_label("limit:chatbot:budget"), "chatbot budget");
        assert_eq!(
            class_label("limit:token:rpm"),
            "API token requests a minute"
        );
    }

    #[test]
    fn worst_case_counts_every_choice() {
        let price = Price {
            input: 1_000_000,
            output: 2_000_000,
        };
        // 1 credit per million input tokens, 2 per million output: (100 + 3 × 500 × 2) micro.
        let a = worst_case(price, 100, 500, 3);
        assert_eq!(a.output_tokens, 1500);
        assert_eq!(a.cost, 100 + 3000);
        assert_eq!(worst_case(price, 100, 500, 0).output_tokens, 500);
    }

    #[test]
    fn a_budget_accepts_exactly_what_it_holds_and_is_never_exceeded() {
        let mut l = Ledger::default();
        let scopes = [("ws", budget(50 * 1000, Window::Month))];
        let mut held = Vec::new();
        let mut refused = 0;
        for _ in 0..200 {
            match l.reserve(T0, &scopes, ask(1000)) {
                Ok(r) => held.push(r),
                Err(r) => {
                    assert_eq!(r.kind, Kind::Budget);
                    assert_eq!(r.retry_after_secs, Some(31 * 86_400));
                    refused += 1;
                }
            }
        }
        assert_eq!((held.len(), refused), (50, 150));
        // Each used less than its worst case; a provider claiming more is charged the worst case.
        for (i, r) in held.into_iter().enumerate() {
            let cost = if i == 0 { 5000 } else { 700 };
            l.settle(
                T0 + 5,
                r,
                Used {
                    cost,
                    ..Used::default()
                },
            );
        }
        let c = l.consumption(T0 + 5, &"ws", &scopes[0].1);
        assert_eq!((c.spent, c.reserved), (1000 + 49 * 700, 0));
        assert!(c.spent <= 50 * 1000);
        // What settling freed can be reserved again, up to the budget and no further.
        let mut more = 0;
        while let Ok(r) = l.reserve(T0 + 6, &scopes, ask(1000)) {
            l.settle(
                T0 + 6,
                r,
                Used {
                    cost: 1000,
                    ..Used::default()
                },
            );
            more += 1;
        }
        assert_eq!(more, (50_000 - 35_300) / 1000);
        assert!(l.consumption(T0 + 6, &"ws", &scopes[0].1).spent <= 50_000);
    }

    #[test]
    fn requests_per_minute_hold_exactly_and_reset_each_minute() {
        let mut l = Ledger::default();
        let rpm = Limits {
            requests_per_minute: Some(10),
            ..Limits::default()
        };
        let scopes = [("token", rpm)];
        for minute in 0..3 {
            let now = T0 + minute * 60 + 7;
            let mut ok = 0;
            for _ in 0..25 {
                match l.reserve(now, &scopes, ask(0)) {
                    Ok(r) => {
                        l.settle(now, r, Used::default());
                        ok += 1;
                    }
                    Err(r) => {
                        assert_eq!(r.kind, Kind::Requests);
                        assert_eq!((r.limit, r.retry_after_secs), (10, Some(53)));
                    }
                }
            }
            assert_eq!(ok, 10, "minute {minute}");
        }
    }

    #[test]
    fn tokens_per_minute_count_the_worst_case_then_what_was_used() {
        let mut l = Ledger::default();
        let tpm = Limits {
            input_tokens_per_minute: Some(100),
            output_tokens_per_minute: Some(250),
            ..Limits::default()
        };
        let scopes = [("chatbot", tpm)];
        let a = l.reserve(T0, &scopes, ask(0)).unwrap();
        let b = l.reserve(T0, &scopes, ask(0)).unwrap();
        // Output: 200 reserved of 250.
        let no = l.reserve(T0, &scopes, ask(0)).unwrap_err();
        assert_eq!((no.kind, no.limit), (Kind::OutputTokens, 250));
        // `a` used 20 output tokens: 120 now counted, so one more fits.
        l.settle(
            T0 + 1,
            a,
            Used {
                cost: 0,
                input_tokens: 10,
                output_tokens: 20,
            },
        );
        let c = l.reserve(T0 + 1, &scopes, ask(0)).unwrap();
        let input = Ask {
            input_tokens: 90,
            output_tokens: 0,
            cost: 0,
        };
        let no = l.reserve(T0 + 1, &scopes, input).unwrap_err();
        assert_eq!((no.kind, no.limit), (Kind::InputTokens, 100));
        // An ask larger than the limit itself can never pass: no retry time.
        let huge = Ask {
            input_tokens: 1000,
            ..input
        };
        let next = T0 + 60;
        assert_eq!(
            l.reserve(next, &scopes, huge).unwrap_err().retry_after_secs,
            None
        );
        // A new minute: the old minute's reservations no longer count against it.
        let d = l.reserve(next, &scopes, ask(0)).unwrap();
        l.settle(next, b, Used::default());
        l.settle(next, c, Used::default());
        let now = l.consumption(next, &"chatbot", &tpm);
        assert_eq!(
            (now.input_tokens, now.output_tokens, now.in_flight),
            (10, 100, 1)
        );
        l.release(next, d);
        let now = l.consumption(next, &"chatbot", &tpm);
        assert_eq!(
            (
                now.requests,
                now.input_tokens,
                now.output_tokens,
                now.in_flight
            ),
            (0, 0, 0, 0)
        );
    }

    #[test]
    fn concurrency_frees_a_slot_on_settle_or_release() {
        let mut l = Ledger::default();
        let two = Limits {
            concurrent: Some(2),
            ..Limits::default()
        };
        let scopes = [("key", two)];
        let a = l.reserve(T0, &scopes, ask(0)).unwrap();
        let b = l.reserve(T0, &scopes, ask(0)).unwrap();
        let no = l.reserve(T0, &scopes, ask(0)).unwrap_err();
        assert_eq!(
            (no.kind, no.limit, no.retry_after_secs),
            (Kind::Concurrent, 2, Some(1))
        );
        l.release(T0, a);
        let c = l.reserve(T0, &scopes, ask(0)).unwrap();
        l.settle(T0, b, Used::default());
        l.settle(T0, c, Used::default());
        assert_eq!(l.consumption(T0, &"key", &two).in_flight, 0);
    }

    #[test]
    fn a_request_needs_every_scope_and_a_refusal_reserves_nothing() {
        let mut l = Ledger::default();
        let token = Limits {
            requests_per_minute: Some(100),
            ..Limits::default()
        };
        let workspace = budget(1500, Window::Day);
        let scopes = [("token", token), ("workspace", workspace)];
        let a = l.reserve(T0, &scopes, ask(1000)).unwrap();
        // Within the token's limit, over the workspace's budget: refused by the workspace.
        let no = l.reserve(T0, &scopes, ask(1000)).unwrap_err();
        assert_eq!((no.scope, no.kind, no.limit), (1, Kind::Budget, 1500));
        // ... and the token's counters did not move.
        assert_eq!(l.consumption(T0, &"token", &token).requests, 1);
        assert_eq!(l.consumption(T0, &"workspace", &workspace).reserved, 1000);
        l.settle(
            T0,
            a,
            Used {
                cost: 400,
                ..Used::default()
            },
        );
        assert_eq!(l.consumption(T0, &"workspace", &workspace).spent, 400);
        assert!(l.reserve(T0, &scopes, ask(1000)).is_ok());
    }

    #[test]
    fn a_stream_cut_midway_settles_what_it_used() {
        let mut l = Ledger::default();
        let scopes = [("ws", budget(10_000, Window::Total))];
        let r = l.reserve(T0, &scopes, ask(4000)).unwrap();
        // The caller went away after part of the answer: the partial cost is charged.
        l.settle(
            T0 + 30,
            r,
            Used {
                cost: 1234,
                ..Used::default()
            },
        );
        let c = l.consumption(T0 + 30, &"ws", &scopes[0].1);
        assert_eq!((c.spent, c.reserved, c.in_flight), (1234, 0, 0));
        assert_eq!(c.budget_resets_in, None);
        // A total budget that is spent does not say when to retry.
        let no = l.reserve(T0, &scopes, ask(9000)).unwrap_err();
        assert_eq!(no.retry_after_secs, None);
    }

    #[test]
    fn a_new_window_starts_from_zero_but_keeps_what_is_in_flight() {
        let mut l = Ledger::default();
        let daily = budget(3000, Window::Day);
        let scopes = [("ws", daily)];
        let late = T0 + DAY - 10;
        let spent = l.reserve(late, &scopes, ask(1000)).unwrap();
        l.settle(
            late,
            spent,
            Used {
                cost: 1000,
                ..Used::default()
            },
        );
        let flying = l.reserve(late, &scopes, ask(1000)).unwrap();
        assert!(l.reserve(late, &scopes, ask(1500)).is_err());
        // Midnight: yesterday's spend is gone; the request still running is held in the new
        // day, and its cost lands there.
        let next = T0 + DAY + 5;
        let c = l.consumption(next, &"ws", &daily);
        assert_eq!((c.spent, c.reserved), (0, 1000));
        assert!(l.reserve(next, &scopes, ask(2500)).is_err());
        l.settle(
            next,
            flying,
            Used {
                cost: 900,
                ..Used::default()
            },
        );
        let c = l.consumption(next, &"ws", &daily);
        assert_eq!((c.spent, c.reserved), (900, 0));
        assert_eq!(c.budget_resets_in, Some(DAY as u64 - 5));
    }

    #[test]
    fn seeding_takes_the_larger_spend_once_per_window() {
        let mut l = Ledger::default();
        let daily = budget(10_000, Window::Day);
        let b = daily.budget.unwrap();
        let scopes = [("ws", daily)];
        assert_eq!(l.needs_seed(T0 + 5, &"ws", b), Some(T0));
        // Read from the records before this process counted anything.
        l.seed(T0 + 5, &"ws", b, T0, 6000);
        assert_eq!(l.needs_seed(T0 + 6, &"ws", b), None);
        assert!(l.reserve(T0 + 6, &scopes, ask(4001)).is_err());
        let r = l.reserve(T0 + 6, &scopes, ask(4000)).unwrap();
        l.settle(
            T0 + 7,
            r,
            Used {
                cost: 4000,
                ..Used::default()
            },
        );
        // A second seed of the same window changes nothing.
        l.seed(T0 + 8, &"ws", b, T0, 0);
        assert_eq!(l.consumption(T0 + 8, &"ws", &daily).spent, 10_000);
        // The next day must be read again; what this ledger already counted there stands if
        // the records show less.
        let next = T0 + DAY + 1;
        assert_eq!(l.needs_seed(next, &"ws", b), Some(T0 + DAY));
        l.seed(next, &"ws", b, T0 + DAY, 300);
        assert_eq!(l.consumption(next, &"ws", &daily).spent, 300);
    }

    #[test]
    fn credits_owed_leave_the_ledger_when_debited() {
        let mut l = Ledger::default();
        let balance = Limits {
            budget: Some(Budget {
                micro: 5000,
                window: Window::Total,
                alert_percent: 0,
            }),
            ..Limits::default()
        };
        let scopes = [("credits", balance)];
        let r = l.reserve(T0, &scopes, ask(3000)).unwrap();
        let alerts = l.settle(
            T0,
            r,
            Used {
                cost: 3000,
                ..Used::default()
            },
        );
        assert!(alerts.is_empty(), "no alert share set");
        // Owed 3000 of 5000: a worst case of 3000 does not fit until the debit lands.
        assert!(l.reserve(T0, &scopes, ask(3000)).is_err());
        l.debited(&"credits", 3000);
        // The balance read after the debit is 2000.
        let after = Limits {
            budget: Some(Budget {
                micro: 2000,
                ..balance.budget.unwrap()
            }),
            ..balance
        };
        assert!(l.reserve(T0, &[("credits", after)], ask(2001)).is_err());
        assert!(l.reserve(T0, &[("credits", after)], ask(2000)).is_ok());
    }

    #[test]
    fn an_alert_is_raised_once_per_window_at_its_share() {
        let mut l = Ledger::default();
        let daily = budget(1000, Window::Day);
        let scopes = [("chatbot", daily)];
        let spend = |l: &mut Ledger<&'static str>, now: i64, cost: i64| {
            let r = l.reserve(now, &scopes, ask(cost)).unwrap();
            l.settle(
                now,
                r,
                Used {
                    cost,
                    ..Used::default()
                },
            )
        };
        assert!(spend(&mut l, T0, 700).is_empty());
        let alerts = spend(&mut l, T0, 100);
        assert_eq!(alerts.len(), 1);
        assert_eq!((alerts[0].key, alerts[0].spent), ("chatbot", 800));
        assert!(spend(&mut l, T0, 100).is_empty(), "once per window");
        assert!(
            spend(&mut l, T0 + DAY, 850).len() == 1,
            "again the next day"
        );
    }

    #[test]
    fn headroom_tells_the_tightest_limit() {
        let mut l = Ledger::default();
        let token = Limits {
            requests_per_minute: Some(100),
            output_tokens_per_minute: Some(1000),
            ..Limits::default()
        };
        let workspace = Limits {
            requests_per_minute: Some(3),
            input_tokens_per_minute: Some(5000),
            ..Limits::default()
        };
        let scopes = [("token", token), ("workspace", workspace)];
        let r = l.reserve(T0 + 20, &scopes, ask(0)).unwrap();
        assert_eq!(
            r.headroom.requests,
            Some(Room {
                limit: 3,
                remaining: 2,
                reset_secs: 40
            })
        );
        // Output: 900 left of 1000; input: 4990 left of 5000.
        assert_eq!(
            r.headroom.tokens,
            Some(Room {
                limit: 1000,
                remaining: 900,
                reset_secs: 40
            })
        );
        l.release(T0 + 20, r);
    }
}
