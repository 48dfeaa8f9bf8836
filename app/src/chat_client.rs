//! The browser side of a chat reply: POST the message, read the server-sent events as they
//! arrive (fetch + ReadableStream, parsed by `eventsource-stream`), and abort the request to
//! stop a reply — closing the connection is what tells the server to stop the provider.

use futures::StreamExt;
use keyward::chat::{ChatEvent, ChatSend};
use keyward::http::CSRF_HEADER;
use wasm_bindgen::JsCast;

/// Why a reply ended early.
pub enum StreamError {
    /// The reader stopped it.
    Aborted,
    /// Refused before it started (rate limit, daily cap, bad input…) or the network failed;
    /// the text is for the reader.
    Failed(String),
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(serde::Deserialize)]
struct ErrorDetail {
    message: String,
}

const NETWORK: &str = "Could not reach the server. Check your connection and try again.";

/// Sends `body` to `url` and calls `on_event` for every event of the reply, in order.
pub async fn stream_chat(
    url: &str,
    body: &ChatSend,
    signal: &web_sys::AbortSignal,
    mut on_event: impl FnMut(ChatEvent),
) -> Result<(), StreamError> {
    let aborted = || signal.aborted();
    let fail = |e: gloo_net::Error| {
        if signal.aborted() {
            StreamError::Aborted
        } else {
            leptos::logging::warn!("chat request failed: {e}");
            StreamError::Failed(NETWORK.into())
        }
    };
    let res = gloo_net::http::Request::post(url)
        .header(CSRF_HEADER, "1")
        .abort_signal(Some(signal))
        .json(body)
        .map_err(fail)?
        .send()
        .await
        .map_err(fail)?;
    if !res.ok() {
        let message = match res.json::<ErrorBody>().await {
            Ok(b) => b.error.message,
            Err(_) => format!("The server answered {}. Please try again.", res.status()),
        };
        return Err(StreamError::Failed(message));
    }
    let raw = res
        .body()
        .ok_or_else(|| StreamError::Failed(NETWORK.into()))?;
    let bytes = wasm_streams::ReadableStream::from_raw(raw.unchecked_into())
        .into_stream()
        .map(|chunk| {
            chunk
                .map(|v| js_sys::Uint8Array::new(&v).to_vec())
                .map_err(|_| "the stream was interrupted")
        });
    let mut events = eventsource_stream::Eventsource::eventsource(bytes);
    while let Some(ev) = events.next().await {
        match ev {
            Ok(ev) => {
                if let Ok(event) = serde_json::from_str::<ChatEvent>(&ev.data) {
                    on_event(event);
                }
            }
            Err(_) if aborted() => return Err(StreamError::Aborted),
            Err(_) => return Err(StreamError::Failed(NETWORK.into())),
        }
    }
    if aborted() {
        return Err(StreamError::Aborted);
    }
    Ok(())
}
