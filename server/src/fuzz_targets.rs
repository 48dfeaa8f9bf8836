//! The bodies of the fuzz targets (`server/fuzz`, `make fuzz`): each takes arbitrary bytes, may
//! return early on input it cannot use, and panics only when a property breaks. The corpus the
//! fuzzer built is committed and replayed by `make test` through the same functions
//! (`tests/api/fuzz_corpus.rs`), so a crash once found stays fixed.

use crate::api::sse::SseEncoder;
use crate::gateway::anthropic::{
    AnthropicStreamTranslator, ToAnthropic, from_anthropic, from_completion, to_anthropic,
    to_internal,
};
use crate::gateway::chat::Chunk;
use serde_json::Value;

/// The names of the targets, as the fuzz crate and the corpus folders spell them.
pub const TARGETS: &[&str] = &["vault_blob", "sse", "translators", "markdown", "config"];

/// Runs the target named `name` on `data` (the corpus replay).
pub fn run(name: &str, data: &[u8]) {
    match name {
        "vault_blob" => vault_blob(data),
        "sse" => sse(data),
        "translators" => translators(data),
        "markdown" => markdown(data),
        "config" => config(data),
        other => panic!("no fuzz target {other}"),
    }
}

/// The vault's blob parser: never panics, and whatever it accepts re-assembles to the same bytes.
pub fn vault_blob(data: &[u8]) {
    if let Ok((header, sealed)) = crate::vault::blob::parse(data) {
        assert_eq!(crate::vault::blob::assemble(&header, sealed), data);
    }
}

/// The stream reader: the bounded event scan and the SSE parser over the bytes, cut into chunks
/// the first byte chooses. Never panics; no event passes the size limit.
pub fn sse(data: &[u8]) {
    use eventsource_stream::Eventsource;
    use futures_util::{FutureExt, StreamExt};
    const MAX_EVENT: usize = 256;
    let Some((&step, body)) = data.split_first() else {
        return;
    };
    let step = usize::from(step.max(1));
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = body
        .chunks(step)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let events =
        crate::gateway::bounded_events(futures_util::stream::iter(chunks), MAX_EVENT, u64::MAX)
            .eventsource();
    // Every chunk is ready at once, so the whole stream is read without an executor.
    let all: Vec<_> = events
        .collect::<Vec<_>>()
        .now_or_never()
        .expect("an in-memory stream is always ready");
    for e in all.into_iter().flatten() {
        assert!(e.data.len() <= MAX_EVENT, "an event passed the limit");
    }
}

/// Both directions of the Anthropic translation, on any JSON the bytes hold: requests, answers
/// and stream events. Never panics; what it produces is JSON.
pub fn translators(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        if let Some(map) = v.as_object() {
            if let Ok(body) = to_anthropic(map, "m", true) {
                assert!(body.is_object());
            }
            let _ = to_anthropic(map, "m", false);
            if let Ok((_, _, internal)) = to_internal(map) {
                let _ = to_anthropic(&internal, "m", false);
            }
        }
        let (body, _) = from_anthropic(&v, 0);
        assert!(body.is_object());
        let back = from_completion(&v, None, "msg_1", "m");
        assert!(back.is_object());
    }
    // Stream events, one per line: `name data`.
    let mut translator = AnthropicStreamTranslator::new(0);
    let mut to_anthropic_stream = ToAnthropic::new("msg_1".into(), "m".into());
    let mut out = Vec::new();
    for line in text.lines() {
        let (name, data) = line.split_once(' ').unwrap_or(("message", line));
        if let Ok(items) = translator.event(name, data) {
            for item in items {
                if let crate::gateway::chat::StreamEvent::Chunk(c) = item {
                    serde_json::from_str::<Value>(&c.raw).expect("a translated chunk is JSON");
                    // What the gateway parsed from its own translation matches the raw text.
                    let again = Chunk::parse(c.raw.clone()).expect("no error object");
                    assert_eq!((&again.text, again.usage), (&c.text, c.usage));
                    to_anthropic_stream.chunk(&c, &mut out);
                }
            }
        }
        // Whatever a provider streams, parsing it never panics.
        if let Ok(c) = Chunk::parse(data.to_string()) {
            to_anthropic_stream.chunk(&c, &mut out);
        }
    }
    to_anthropic_stream.end(&mut out);
}

/// The Markdown renderer: whatever the text, the HTML holds no raw tag, no event-handler
/// attribute and no `javascript:` link (`keyward::markdown::check_inert`).
pub fn markdown(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let html = keyward::markdown::to_safe_html(&text);
    if let Err(e) = keyward::markdown::check_inert(&html) {
        panic!("{e}: {text:?} -> {html:?}");
    }
}

/// The configuration loader: any TOML text gives settings or a one-line error, never a panic.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = crate::config::Settings::from_toml(text) {
        assert!(!e.to_string().contains('\n'), "one line: {e}");
    }
}
