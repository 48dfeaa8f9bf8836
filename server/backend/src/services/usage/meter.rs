//! A request's usage, as facts: [`UsageMeter`] is built when a request starts and turns how it
//! ended ([`Ending`]: which key [`Served`] it, the provider's usage or an estimate, timing,
//! outcome) into one [`UsageRecord`]. Pure: no IO.

use chrono::{DateTime, Utc};
use keyward::resolve::KeySource;
use keyward::usage::{ByokCreditPolicy, Outcome, Price, UsageChannel};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The key a request was sent with (for its usage record), also when it failed.
#[derive(Clone, Debug)]
pub struct Served {
    pub source: KeySource,
    pub key_id: Uuid,
    pub hint: String,
    pub model: String,
    pub fell_back: bool,
    /// Time spent waiting on the provider until its answer (or its stream's headers) arrived,
    /// retries included: the rest of a request's time is Keyward's own.
    pub upstream: Duration,
}

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
    /// Credits spend control settled on the workspace's balance for this request; the writer
    /// hands them back once its debit is written.
    pub owed: i64,
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
    pub served: Option<&'a Served>,
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
            owed: 0,
        }
    }
}
