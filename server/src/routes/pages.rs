//! What every server-rendered page needs before it renders: who is asking.

use crate::identity::Caller;
use crate::state::AppState;
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
        let client = req.extensions().get::<crate::client::ClientAddr>().copied();
        let headers = req.headers();
        let caller = Caller::from_headers(&state.settings, headers, client);
        let session = async {
            let who = caller.user(&state.db).await?;
            let open = state.sign_ups.enabled();
            crate::services::session::state(&state.db, open, who).await
        }
        .await
        .map_err(keyward_app::error::AppError::from);
        req.extensions_mut().insert(ServerSession(session));
    }
    next.run(req).await
}
