//! A streamed answer of the public API: the chat pipeline's metered stream written out as
//! server-sent events by the caller's wire format's [`SseEncoder`]. No task and no channel stand
//! between the provider's stream and the caller's socket: the response body polls the stream
//! directly, and dropping the body (the caller went away) drops the stream, which records its
//! usage as stopped.

use super::Failure;
pub(crate) use crate::gateway::chat::SseEncoder;
use crate::gateway::chat::{StreamEvent, UpstreamError};
use crate::services::chat::MeteredStream;
use axum::body::Bytes;
use futures_util::{Stream, StreamExt};
use keyward::wire::{FailureKind, upstream_failure};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

pub struct SseBody<E> {
    inner: MeteredStream,
    encoder: E,
    provider: String,
    done: bool,
}

impl<E: SseEncoder> SseBody<E> {
    pub fn new(inner: MeteredStream, encoder: E, provider: String) -> Self {
        SseBody {
            inner,
            encoder,
            provider,
            done: false,
        }
    }

    fn fail(&mut self, e: UpstreamError, out: &mut Vec<u8>) {
        let (kind, code) = upstream_failure(e.class);
        // Mid-answer, the request itself was fine: the provider failed.
        let kind = if kind == FailureKind::InvalidRequest {
            FailureKind::Unavailable
        } else {
            kind
        };
        let message = format!("{}: {}", self.provider, e.message);
        let body = Failure::new(E::WIRE, kind, code, message).body();
        self.encoder.fail(&body.to_string(), out);
    }
}

impl<E: SseEncoder> Stream for SseBody<E> {
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
            let mut out = Vec::new();
            match item {
                Some(Ok(StreamEvent::Chunk(c))) => {
                    this.encoder.chunk(&c, &mut out);
                    if out.is_empty() {
                        continue;
                    }
                }
                Some(Ok(StreamEvent::Done)) | None => {
                    this.done = true;
                    this.encoder.end(&mut out);
                }
                Some(Err(e)) => {
                    this.done = true;
                    this.fail(e, &mut out);
                }
            }
            return Poll::Ready(Some(Ok(Bytes::from(out))));
        }
    }
}
