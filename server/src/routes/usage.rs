//! `GET /api/usage.csv?workspace=ID&from=YYYY-MM-DD&to=YYYY-MM-DD`: a workspace's usage records
//! as CSV (anyone who may see its usage), or every workspace's (`workspace` empty: platform
//! admins). A download link on the usage page; the session cookie authenticates it.

use crate::auth::{authorize, authorize_platform};
use crate::error::ApiError;
use crate::identity::Caller;
use crate::services::usage;
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use keyward::policy::Action;
use serde::Deserialize;
use uuid::Uuid;

#[derive(Deserialize)]
pub struct CsvQuery {
    #[serde(default)]
    workspace: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

pub async fn csv(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<CsvQuery>,
) -> Result<Response, ApiError> {
    let who = caller.user(&state.db).await?;
    let scope = if q.workspace.trim().is_empty() {
        authorize_platform(&state.db, who).await?;
        None
    } else {
        let id = Uuid::parse_str(q.workspace.trim()).map_err(|_| ApiError::NotFound)?;
        authorize(&state.db, who, id, Action::ViewUsage).await?;
        Some(id)
    };
    let (from, to) = usage::range(&q.from, &q.to)?;
    let body = usage::csv(&state.db, scope, &q.from, &q.to).await?;
    let name = format!("keyward-usage-{from}-to-{to}.csv");
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
        .map_err(|_| ApiError::Internal)?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response())
}
