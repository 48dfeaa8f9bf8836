//! Usage and credit arithmetic, and the usage report's shapes.
//!
//! Units: a **credit** is one US dollar at the platform's list prices. Everything is stored and
//! computed in integer **micro-credits** (10⁻⁶ credit), so accounting is exact: prices are
//! micro-credits per million tokens, and a request's cost is rounded **up** to the next
//! micro-credit (never under-charged, at most one micro-credit over).

use crate::policy::Plan;
use crate::resolve::KeySource;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Micro-credits in one credit.
pub const MICRO: i64 = 1_000_000;

/// Whether bring-your-own-key traffic costs credits (the platform admin decides).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ByokCreditPolicy {
    /// BYOK requests cost no credits (the owner pays the provider directly).
    #[default]
    Free,
    /// BYOK requests are deducted from the balance for tracking, but never refused for it.
    TrackOnly,
}

impl ByokCreditPolicy {
    pub const ALL: [Self; 2] = [Self::Free, Self::TrackOnly];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::TrackOnly => "track_only",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Free => "Free — BYOK requests cost no credits",
            Self::TrackOnly => "Track only — BYOK requests are deducted, never refused",
        }
    }
}

impl FromStr for ByokCreditPolicy {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or(Invalid(
                "unknown BYOK credit policy: use free or track_only",
            ))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub &'static str);

/// List price of a model: micro-credits per million input and output tokens (that is, US
/// dollars per million tokens × 10⁶).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    pub input: i64,
    pub output: i64,
}

/// The cost of a request at list price, in micro-credits, rounded up.
pub fn cost(price: Price, input_tokens: u64, output_tokens: u64) -> i64 {
    let scaled = u128::from(input_tokens) * price.input.max(0) as u128
        + u128::from(output_tokens) * price.output.max(0) as u128;
    let micro = scaled.div_ceil(1_000_000);
    i64::try_from(micro).unwrap_or(i64::MAX)
}

/// The credits a request is charged: platform-key requests always pay their cost; BYOK
/// requests pay only under [`ByokCreditPolicy::TrackOnly`]. A request no key served costs
/// nothing.
pub fn credits_for(source: Option<KeySource>, policy: ByokCreditPolicy, cost: i64) -> i64 {
    match source {
        Some(KeySource::Platform) => cost,
        Some(_) if policy == ByokCreditPolicy::TrackOnly => cost,
        _ => 0,
    }
}

/// Whether a request on `source` must be refused for want of credits at `balance`.
/// Only platform-key traffic is ever refused; BYOK traffic continues under both policies.
pub fn refused_for_credits(source: KeySource, balance: i64) -> bool {
    source == KeySource::Platform && balance <= 0
}

/// A token estimate for text whose usage the provider did not report: about four characters
/// per token (OpenAI's rule of thumb), at least one for non-empty text.
pub fn estimate_tokens(text: &str) -> u64 {
    let chars = text.chars().count() as u64;
    chars.div_ceil(4)
}

/// `1.5`, `0.000123`, `-2`: micro-credits as a decimal number of credits, without trailing
/// zeros.
pub fn format_credits(micro: i64) -> String {
    let sign = if micro < 0 { "-" } else { "" };
    let abs = micro.unsigned_abs();
    let whole = abs / MICRO as u64;
    let frac = abs % MICRO as u64;
    if frac == 0 {
        format!("{sign}{whole}")
    } else {
        let f = format!("{frac:06}");
        format!("{sign}{whole}.{}", f.trim_end_matches('0'))
    }
}

/// Parses a decimal number of credits (`12`, `0.5`, `-3.25`, at most six decimals) into
/// micro-credits.
pub fn parse_credits(s: &str) -> Result<i64, Invalid> {
    const BAD: Invalid = Invalid("enter an amount like 10 or 2.5 (at most six decimals)");
    let s = s.trim();
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if (whole.is_empty() && frac.is_empty())
        || frac.len() > 6
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(BAD);
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| BAD)?
    };
    let frac: i64 = format!("{frac:0<6}").parse().map_err(|_| BAD)?;
    let v = whole
        .checked_mul(MICRO)
        .and_then(|w| w.checked_add(frac))
        .filter(|v| *v <= 1_000_000_000 * MICRO)
        .ok_or(Invalid("that amount is too large"))?;
    Ok(if neg { -v } else { v })
}

/// Parses a price in US dollars per million tokens (`0.15`, `15`) into micro-credits per
/// million tokens. Negative prices are refused.
pub fn parse_price(s: &str) -> Result<i64, Invalid> {
    let v = parse_credits(s)
        .map_err(|_| Invalid("enter a price in dollars per million tokens, like 0.15"))?;
    check_price(v)
}

/// A text cell for a CSV export that spreadsheets will not run as a formula (OWASP CSV
/// injection): a cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage return gets a
/// leading `'`, which spreadsheets show as text.
pub fn spreadsheet_safe(cell: String) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell
    }
}

/// The highest price a row may set: 10,000 credits per million tokens.
pub const MAX_PRICE: i64 = 10_000 * MICRO;

/// The most tokens one answer may be counted as, each way. Providers report their own counts;
/// a hostile or broken upstream's absurd count is clamped here, so that a request's cost stays
/// bounded (at most [`MAX_REPORTED_TOKENS`] × 2 × [`MAX_PRICE`] / 10^6) and sums never overflow.
pub const MAX_REPORTED_TOKENS: u64 = 1_000_000_000;

/// A provider-reported token count, clamped to [`MAX_REPORTED_TOKENS`].
pub fn reported_tokens(n: u64) -> u64 {
    n.min(MAX_REPORTED_TOKENS)
}

/// A price is between 0 and [`MAX_PRICE`] micro-credits per million tokens.
pub fn check_price(micro: i64) -> Result<i64, Invalid> {
    if micro < 0 {
        return Err(Invalid("a price cannot be negative"));
    }
    if micro > MAX_PRICE {
        return Err(Invalid(
            "a price can be at most 10000 credits per million tokens",
        ));
    }
    Ok(micro)
}

/// The default monthly credit allowance of a plan, in micro-credits.
pub fn default_allowance(plan: Plan) -> i64 {
    match plan {
        Plan::Free => MICRO,
        Plan::Pro => 10 * MICRO,
        Plan::Business => 50 * MICRO,
    }
}

/// How a request ended, as the usage record says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    /// The reader stopped it; the tokens produced so far are counted.
    Stopped,
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Stopped => "stopped",
            Self::Error => "error",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a request came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageChannel {
    /// A visitor on a chatbot's public chat page.
    Visitor,
    /// A member in the dashboard playground.
    Dashboard,
    /// The workspace's own app through the public API.
    Api,
}

impl UsageChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Visitor => "visitor",
            Self::Dashboard => "dashboard",
            Self::Api => "api",
        }
    }
}

// ---- The usage report (dashboard and admin) ----

/// Totals for one group of requests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageTotals {
    pub requests: u64,
    pub errors: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Requests whose tokens were estimated (the provider reported no usage).
    pub estimated: u64,
    /// Micro-credits charged.
    pub credits: i64,
    /// Micro-credits at list price, whoever paid.
    pub cost: i64,
}

impl UsageTotals {
    pub fn tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

/// One row of a breakdown table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRow {
    pub label: String,
    /// A second line (e.g. the provider of a key).
    pub detail: Option<String>,
    pub totals: UsageTotals,
}

/// One day of the chart: requests and tokens per provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageDay {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// `(provider, requests, tokens)`, in the report's provider order.
    pub by_provider: Vec<(String, u64, u64)>,
    /// Micro-credits at list price per provider, in the same order.
    #[serde(default)]
    pub cost_by_provider: Vec<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntryView {
    pub at: String,
    /// `allowance`, `topup`, `usage`, `adjustment`.
    pub kind: String,
    pub amount: i64,
    pub balance_after: i64,
    pub note: String,
    /// The workspace (admin views across workspaces).
    pub workspace: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReport {
    /// Empty for the instance-wide (platform admin) report.
    pub workspace_id: String,
    pub workspace_name: String,
    pub from: String,
    pub to: String,
    pub totals: UsageTotals,
    /// Providers in a stable order (most tokens first); chart series follow it.
    pub providers: Vec<String>,
    /// Every day of the range, empty days included.
    pub days: Vec<UsageDay>,
    pub by_key: Vec<UsageRow>,
    pub by_chatbot: Vec<UsageRow>,
    pub by_model: Vec<UsageRow>,
    pub by_source: Vec<UsageRow>,
    /// Instance-wide report only.
    pub by_workspace: Vec<UsageRow>,
    /// The workspace's balance (micro-credits); `None` on the instance-wide report.
    pub balance: Option<i64>,
    pub monthly_allowance: Option<i64>,
    pub byok_credit_policy: ByokCreditPolicy,
    pub ledger: Vec<LedgerEntryView>,
    /// The workspace's own spend budget, else the operator's for it (the chart's budget line).
    #[serde(default)]
    pub budget: Option<crate::window::Budget>,
}

/// A priced model in the admin's price table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceRow {
    pub provider: String,
    /// A model id, or `*` for every model of the provider without a row of its own.
    pub model: String,
    pub price: Price,
}

/// A price as the admin types it: dollars per million tokens, as text.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceInput {
    pub provider: String,
    pub model: String,
    pub input: String,
    pub output: String,
}

impl PriceInput {
    pub fn parse(&self) -> Result<Price, Invalid> {
        Ok(Price {
            input: parse_price(&self.input)?,
            output: parse_price(&self.output)?,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceCredits {
    pub id: String,
    pub name: String,
    pub plan: Plan,
    pub balance: i64,
}

/// The platform admin's credits page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditSettings {
    pub byok_credit_policy: ByokCreditPolicy,
    /// `(plan, micro-credits per month)`.
    pub allowances: Vec<(Plan, i64)>,
    pub prices: Vec<PriceRow>,
    pub workspaces: Vec<WorkspaceCredits>,
    /// How many workspaces a user may own (platform admins: any number).
    #[serde(default)]
    pub workspaces_per_user: u32,
    /// Whether workspaces users create themselves get their plan's monthly allowance.
    #[serde(default)]
    pub self_service_allowance: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_never_start_a_formula() {
        for bad in [
            "=HYPERLINK(\"x\")",
            "+1+1",
            "-2+3",
            "@SUM(A1)",
            "\tx",
            "\rx",
        ] {
            let safe = spreadsheet_safe(bad.to_string());
            assert_eq!(safe, format!("'{bad}"));
        }
        assert_eq!(spreadsheet_safe("gpt-4o".into()), "gpt-4o");
        assert_eq!(spreadsheet_safe(String::new()), "");
        assert_eq!(spreadsheet_safe("a=b".into()), "a=b");
    }

    #[test]
    fn cost_is_exact_and_rounds_up() {
        // $0.15 / $0.60 per million tokens.
        let p = Price {
            input: 150_000,
            output: 600_000,
        };
        assert_eq!(cost(p, 1_000_000, 0), 150_000);
        assert_eq!(cost(p, 0, 1_000_000), 600_000);
        // 100 input tokens: 15 micro-credits exactly; 7 tokens: 1.05 → 2.
        assert_eq!(cost(p, 100, 0), 15);
        assert_eq!(cost(p, 7, 0), 2);
        assert_eq!(cost(p, 0, 0), 0);
        assert_eq!(cost(Price::default(), 5_000, 5_000), 0);
        // No overflow at absurd sizes.
        assert_eq!(
            cost(
                Price {
                    input: i64::MAX,
                    output: i64::MAX
                },
                u64::MAX,
                u64::MAX
            ),
            i64::MAX
        );
    }

    #[test]
    fn credits_follow_source_and_policy() {
        use ByokCreditPolicy::*;
        use KeySource::*;
        assert_eq!(credits_for(Some(Platform), Free, 42), 42);
        assert_eq!(credits_for(Some(Platform), TrackOnly, 42), 42);
        assert_eq!(credits_for(Some(Workspace), Free, 42), 0);
        assert_eq!(credits_for(Some(Chatbot), Free, 42), 0);
        assert_eq!(credits_for(Some(Workspace), TrackOnly, 42), 42);
        assert_eq!(credits_for(Some(Chatbot), TrackOnly, 42), 42);
        assert_eq!(credits_for(None, TrackOnly, 42), 0);
        assert!(refused_for_credits(Platform, 0));
        assert!(refused_for_credits(Platform, -5));
        assert!(!refused_for_credits(Platform, 1));
        assert!(!refused_for_credits(Workspace, -5));
        assert!(!refused_for_credits(Chatbot, 0));
    }

    #[test]
    fn credits_format_and_parse_round_trip() {
        for (micro, text) in [
            (0, "0"),
            (MICRO, "1"),
            (1_500_000, "1.5"),
            (123, "0.000123"),
            (-2 * MICRO, "-2"),
            (-250_000, "-0.25"),
        ] {
            assert_eq!(format_credits(micro), text);
            assert_eq!(parse_credits(text), Ok(micro));
        }
        assert_eq!(parse_credits(" 10 "), Ok(10 * MICRO));
        assert_eq!(parse_credits(".5"), Ok(500_000));
        assert_eq!(parse_credits("+3"), Ok(3 * MICRO));
        for bad in [
            "",
            "-",
            ".",
            "1.2345678",
            "1e3",
            "abc",
            "1,5",
            "--1",
            "1.2.3",
        ] {
            assert!(parse_credits(bad).is_err(), "{bad:?}");
        }
        assert!(parse_credits("99999999999999").is_err());
        assert_eq!(parse_price("0.15"), Ok(150_000));
        assert!(parse_price("-1").is_err());
    }

    #[test]
    fn estimates_count_about_four_characters_per_token() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("a"), 1);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
        assert_eq!(estimate_tokens("ééééé"), 2);
    }

    #[test]
    fn policies_parse() {
        assert_eq!("free".parse(), Ok(ByokCreditPolicy::Free));
        assert_eq!("track_only".parse(), Ok(ByokCreditPolicy::TrackOnly));
        assert!("paid".parse::<ByokCreditPolicy>().is_err());
    }
}
