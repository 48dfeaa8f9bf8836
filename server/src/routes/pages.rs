//! What every server-rendered page needs before it renders: who is asking.

use crate::state::AppState;
use crate::web_backend::ServerBackend;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use keyward_app::auth::ServerSession;

/// Reads the session of a page request (GET or HEAD; server functions are POSTs and read it
/// themselves) and hands it to the renderer in the request's extensions, so the page renders
/// with it at once instead of loading it as one more resource (see `keyward_app::auth`).
pub async fn session(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        let https = state
            .settings
            .https_for(req.extensions().get::<crate::client::ClientAddr>());
        let backend = ServerBackend { state };
        let session = backend.session_state_for(req.headers(), https).await;
        req.extensions_mut().insert(ServerSession(session));
    }
    next.run(req).await
}
