//! A streamed answer of the public API: the gateway's chunks written out as server-sent events
//! in the caller's wire format, metered as they pass. No task and no channel stand between the
//! provider's stream and the caller's socket: the response body polls the provider's stream
//! directly. When the stream ends — finished, failed, or dropped because the caller went away —
//! its usage record is handed to the writer.

use super::anthropic::ToAnthropic;
use super::{Failure, ms};
use crate::gateway::chat::{ChatStream, StreamEvent, Usage};
use crate::services::chat::Served;
use crate::services::usage::{Ending, UsageMeter};
use crate::state::AppState;
use axum::body::Bytes;
use futures_util::{Stream, StreamExt};
use keyward::usage::Outcome;
use keyward::wire::{FailureKind, Wire, upstream_failure};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

/// What the meter collects while the stream runs.
struct Meter {
    state: AppState,
    meter: UsageMeter,
    served: Option<Served>,
    text: String,
    usage: Option<Usage>,
    first_token_ms: Option<u64>,
}

impl Meter {
    /// Hands the record to the writer (off the stream's path).
    fn finish(self, outcome: Outcome, error_class: Option<String>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::error!("a stream ended outside the runtime: its usage record is lost");
            return;
        };
        rt.spawn(async move {
            let Meter {
                state,
                meter,
                served,
                text,
                usage,
                first_token_ms,
            } = self;
            let pricing = state.credits.pricing(&state.db).await.ok();
            let rec = meter.finish(
                pricing.as_deref(),
                Ending {
                    served: served.as_ref(),
                    usage,
                    output: &text,
                    first_token_ms,
                    outcome,
                    error_class,
                },
            );
            state.usage.record(rec).await;
        });
    }
}

/// How chunks are written out.
pub enum Format {
    /// OpenAI chunks passed through verbatim. `usage_chunk`: the caller asked for
    /// `stream_options.include_usage` (otherwise the usage-only chunk Keyward asked the provider
    /// for is not forwarded).
    OpenAi {
        usage_chunk: bool,
    },
    Anthropic(Box<ToAnthropic>),
}

pub struct SseBody {
    inner: ChatStream,
    format: Format,
    meter: Option<Box<Meter>>,
    provider: String,
    done: bool,
}

impl SseBody {
    pub fn new(
        inner: ChatStream,
        format: Format,
        state: AppState,
        meter: UsageMeter,
        served: Option<Served>,
        provider: String,
    ) -> Self {
        SseBody {
            inner,
            format,
            meter: Some(Box::new(Meter {
                state,
                meter,
                served,
                text: String::new(),
                usage: None,
                first_token_ms: None,
            })),
            provider,
            done: false,
        }
    }

    fn chunk(&mut self, chunk: String) -> Option<Bytes> {
        if let Some(m) = self.meter.as_deref_mut()
            && let Some(piece) = crate::services::playground::delta_text(&chunk)
        {
            if m.first_token_ms.is_none() {
                m.first_token_ms = Some(ms(m.meter.started));
            }
            keyward::chat::push_capped(&mut m.text, &piece);
        }
        match &mut self.format {
            Format::OpenAi { usage_chunk } => {
                if !*usage_chunk && is_usage_only(&chunk) {
                    return None;
                }
                let mut out = Vec::with_capacity(chunk.len() + 8);
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(chunk.as_bytes());
                out.extend_from_slice(b"\n\n");
                Some(Bytes::from(out))
            }
            Format::Anthropic(t) => {
                let mut out = Vec::new();
                t.chunk(&chunk, &mut out);
                (!out.is_empty()).then(|| Bytes::from(out))
            }
        }
    }

    fn end(&mut self) -> Bytes {
        self.done = true;
        let usage = self.meter.as_ref().and_then(|m| m.usage);
        if let Some(m) = self.meter.take() {
            m.finish(Outcome::Ok, None);
        }
        match &mut self.format {
            Format::OpenAi { .. } => Bytes::from_static(b"data: [DONE]\n\n"),
            Format::Anthropic(t) => {
                let mut out = Vec::new();
                t.end(usage, &mut out);
                Bytes::from(out)
            }
        }
    }

    fn fail(&mut self, e: crate::gateway::chat::UpstreamError) -> Bytes {
        self.done = true;
        if let Some(m) = self.meter.take() {
            m.finish(Outcome::Error, Some(e.class.as_str().to_string()));
        }
        let (kind, code) = upstream_failure(e.class);
        let kind = if kind == FailureKind::InvalidRequest {
            FailureKind::Unavailable
        } else {
            kind
        };
        let message = format!("{}: {}", self.provider, e.message);
        match &self.format {
            Format::OpenAi { .. } => {
                let body = Failure::new(Wire::OpenAi, kind, code, message).body();
                Bytes::from(format!("data: {body}\n\n"))
            }
            Format::Anthropic(_) => {
                let body = Failure::new(Wire::Anthropic, kind, code, message).body();
                Bytes::from(format!("event: error\ndata: {body}\n\n"))
            }
        }
    }
}

/// A chunk with no choices and a usage object (the answer to `include_usage`).
fn is_usage_only(chunk: &str) -> bool {
    chunk.contains("\"usage\"")
        && (chunk.contains("\"choices\":[]") || chunk.contains("\"choices\": []"))
}

impl Stream for SseBody {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            let item = match this.inner.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(item) => item,
            };
            let out = match item {
                Some(Ok(StreamEvent::Chunk(c))) => match this.chunk(c) {
                    Some(b) => b,
                    None => continue,
                },
                Some(Ok(StreamEvent::Usage(u))) => {
                    if let Some(m) = this.meter.as_deref_mut() {
                        m.usage = Some(u);
                    }
                    if let Format::Anthropic(t) = &mut this.format {
                        t.usage(u);
                    }
                    continue;
                }
                Some(Ok(StreamEvent::Done)) | None => this.end(),
                Some(Err(e)) => this.fail(e),
            };
            return Poll::Ready(Some(Ok(out)));
        }
    }
}

impl Drop for SseBody {
    fn drop(&mut self) {
        // The caller went away mid-answer: the provider's stream is dropped with us (closing
        // its connection) and what was produced is recorded as stopped.
        if let Some(m) = self.meter.take() {
            m.finish(Outcome::Stopped, None);
        }
    }
}
