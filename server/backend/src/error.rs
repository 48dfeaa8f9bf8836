//! Errors, one type per surface.
//!
//! * [`ServiceError`]: what the service layer returns. It may carry internal detail.
//! * `keyward_app::error::AppError`: what server functions return to the browser; built from a
//!   `ServiceError` (in the app, under `ssr`) by logging the detail and keeping only a user
//!   message.
//! * [`ApiError`]: what REST handlers return; an `IntoResponse` with a JSON body whose status is
//!   documented per variant. 5xx details are logged, the client gets an opaque message.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sea_orm::DbErr;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Input failed validation; the message is for the user and never quotes a secret.
    #[error("{0}")]
    Invalid(String),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("please sign in")]
    Unauthorized,
    #[error("forbidden")]
    Forbidden,
    #[error("too many attempts: try again in {0} s")]
    RateLimited(u32),
    #[error("database error: {0}")]
    Database(#[from] DbErr),
    /// A failure whose detail is for the log only (randomness, a worker thread).
    #[error("internal error: {0}")]
    Internal(String),
}

/// What a service failure means to a caller, whatever the surface. Each surface keeps only a
/// table from class to its own wording; none sees the detail of a database or internal failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Class {
    Invalid(String),
    NotFound,
    Conflict(String),
    Unauthorized,
    Forbidden,
    RateLimited(u32),
    /// A dependency (the database) is not answering.
    Unavailable,
    Internal,
}

impl ServiceError {
    /// The failure's class. A database or internal failure is logged here, once, with its
    /// detail and the surface it happened on; the class keeps nothing of it.
    pub fn classify(&self, surface: &'static str) -> Class {
        match self {
            ServiceError::Invalid(m) => Class::Invalid(m.clone()),
            ServiceError::NotFound => Class::NotFound,
            ServiceError::Conflict(m) => Class::Conflict(m.clone()),
            ServiceError::Unauthorized => Class::Unauthorized,
            ServiceError::Forbidden => Class::Forbidden,
            ServiceError::RateLimited(s) => Class::RateLimited(*s),
            ServiceError::Database(err) => {
                tracing::error!(error = %err, surface, "database error");
                Class::Unavailable
            }
            ServiceError::Internal(detail) => {
                tracing::error!(%detail, surface, "internal error");
                Class::Internal
            }
        }
    }
}

/// The REST surface's error. Every variant documents its status code.
#[derive(Debug)]
pub enum ApiError {
    /// 400: the request is invalid; the message says why.
    BadRequest(String),
    /// 401: no valid session or token.
    Unauthorized,
    /// 403: signed in, but not allowed (or a CSRF check failed).
    Forbidden,
    /// 404: no such resource in the caller's scope.
    NotFound,
    /// 409: the request conflicts with the current state.
    Conflict(String),
    /// 422: the body has a field the operation does not take (the message names it).
    Unprocessable(String),
    /// 429: too many attempts; retry after the given seconds.
    RateLimited(u32),
    /// 503: a dependency (the database) is not answering.
    Unavailable,
    /// 500: logged in full, answered opaquely.
    Internal,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

/// The JSON error answer every JSON surface of the dashboard's server shares (the REST API and
/// the chat stream routes): `{"error": {"code", "message"}}`, with `Retry-After` when given.
pub fn error_response(
    status: StatusCode,
    code: &str,
    message: &str,
    retry_after: Option<u32>,
) -> Response {
    let body = ErrorBody {
        error: ErrorDetail { code, message },
    };
    let mut res = (status, Json(body)).into_response();
    if let Some(v) =
        retry_after.and_then(|s| axum::http::HeaderValue::from_str(&s.to_string()).ok())
    {
        res.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
    }
    res
}

/// A malformed id is indistinguishable from another tenant's: 404.
impl From<keyward::ids::NoSuch> for ApiError {
    fn from(_: keyward::ids::NoSuch) -> Self {
        ApiError::NotFound
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e.classify("REST API") {
            Class::Invalid(m) => ApiError::BadRequest(m),
            Class::NotFound => ApiError::NotFound,
            Class::Conflict(m) => ApiError::Conflict(m),
            Class::Unauthorized => ApiError::Unauthorized,
            Class::Forbidden => ApiError::Forbidden,
            Class::RateLimited(s) => ApiError::RateLimited(s),
            Class::Unavailable => ApiError::Unavailable,
            Class::Internal => ApiError::Internal,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match &self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "invalid_request", m.as_str()),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", "please sign in"),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "forbidden", "not allowed"),
            ApiError::RateLimited(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many attempts; try again later",
            ),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found", "not found"),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m.as_str()),
            ApiError::Unprocessable(m) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_field",
                m.as_str(),
            ),
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the service is temporarily unavailable",
            ),
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; it has been logged",
            ),
        };
        let retry = match self {
            ApiError::RateLimited(secs) => Some(secs),
            _ => None,
        };
        error_response(status, code, message, retry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn database_details_never_reach_the_client() {
        let detail = "connection to 10.0.0.7 refused for user kw password hunter2";
        let api: ApiError = ServiceError::Database(DbErr::Custom(detail.into())).into();
        let res = api.into_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            !text.contains("hunter2") && !text.contains("10.0.0.7"),
            "{text}"
        );
        assert!(text.contains("\"code\":\"unavailable\""), "{text}");
    }

    #[tokio::test]
    async fn statuses_follow_the_variants() {
        for (err, status) in [
            (ApiError::BadRequest("x".into()), StatusCode::BAD_REQUEST),
            (ApiError::NotFound, StatusCode::NOT_FOUND),
            (ApiError::Conflict("y".into()), StatusCode::CONFLICT),
            (ApiError::Internal, StatusCode::INTERNAL_SERVER_ERROR),
        ] {
            assert_eq!(err.into_response().status(), status);
        }
    }
}
