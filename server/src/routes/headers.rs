//! Browser hardening on every response of the dashboard router: no MIME sniffing, no referrer
//! (invitation and set-up links carry secrets in their URLs), and no framing — except chat
//! pages, which the sites their chatbot lists may embed. Pages also get a script policy with the
//! render's nonce (see [`page_policy`]).

use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// The `Content-Security-Policy` of a rendered page: only the app's own script and wasm, and
/// inline scripts only with this render's nonce (Leptos puts it on its hydration scripts).
pub fn page_policy(nonce: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self' 'nonce-{nonce}'; img-src 'self' data:; connect-src 'self'; \
         object-src 'none'; base-uri 'none'; form-action 'self'"
    )
}

/// A chat page path: `/chat/{workspace}/{chatbot}`.
fn chat_page(path: &str) -> Option<(&str, &str)> {
    let mut parts = path.strip_prefix("/chat/")?.split('/');
    let (ws, bot) = (parts.next()?, parts.next()?);
    (parts.next().is_none() && !ws.is_empty() && !bot.is_empty()).then_some((ws, bot))
}

pub async fn security_headers(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let chat = chat_page(req.uri().path()).map(|(w, b)| (w.to_string(), b.to_string()));
    let mut res = next.run(req).await;
    let ancestors = match chat {
        Some((ws, bot)) => match crate::services::chatbots::by_slugs(&state.db, &ws, &bot).await {
            Ok((_, bot)) => {
                let sites: Vec<String> = crate::services::chatbots::view(&bot).allowed_sites;
                if sites.is_empty() {
                    "'none'".to_string()
                } else {
                    sites.join(" ")
                }
            }
            Err(_) => "'none'".to_string(),
        },
        None => "'none'".to_string(),
    };
    let h = res.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if ancestors == "'none'" {
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    // A policy of its own: it adds to (never loosens) the page's script policy.
    if let Ok(v) = HeaderValue::from_str(&format!("frame-ancestors {ancestors}")) {
        h.append(header::CONTENT_SECURITY_POLICY, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_pages_are_recognised_exactly() {
        assert_eq!(chat_page("/chat/acme/support"), Some(("acme", "support")));
        assert_eq!(chat_page("/chat/acme"), None);
        assert_eq!(chat_page("/chat/acme/support/x"), None);
        assert_eq!(chat_page("/chatbots"), None);
        assert!(page_policy("abc").contains("'nonce-abc'"));
        assert!(!page_policy("abc").contains("unsafe-inline"));
    }
}
