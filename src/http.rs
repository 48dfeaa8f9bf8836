//! Names shared by the browser client and the server.

/// The header every state-changing request from Keyward's own UI carries. A cross-site HTML form
/// cannot set a header, and a cross-site `fetch` that sets one needs a CORS preflight that
/// Keyward never grants, so its presence (with a same-origin `Origin`/`Sec-Fetch-Site`) proves
/// the request came from Keyward's own pages.
pub const CSRF_HEADER: &str = "x-keyward-csrf";

/// The session cookie's name over plain http (development). Over https the `__Host-` prefixed
/// name is used, which browsers only accept with `Secure`, `Path=/` and no `Domain`.
pub const SESSION_COOKIE: &str = "keyward_session";
pub const SESSION_COOKIE_SECURE: &str = "__Host-keyward_session";

/// The anonymous visitor id of the public chat pages (random, `HttpOnly`; the server stores only
/// its SHA-256). Over https the `__Host-` prefixed name is used.
pub const VISITOR_COOKIE: &str = "keyward_visitor";
pub const VISITOR_COOKIE_SECURE: &str = "__Host-keyward_visitor";

/// The public chat page's stream endpoint for a chatbot.
pub fn chat_endpoint(workspace_slug: &str, chatbot_slug: &str) -> String {
    format!("/api/chat/{workspace_slug}/{chatbot_slug}")
}

/// The dashboard playground's stream endpoint for a workspace.
pub fn playground_endpoint(workspace_id: &str) -> String {
    format!("/api/workspaces/{workspace_id}/playground")
}
