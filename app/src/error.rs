//! The one error type every server function returns.
//!
//! It crosses the wire to the browser, so it only ever carries messages written for users.
//! Internal details (database errors, upstream bodies) are logged on the server and replaced by
//! an opaque [`AppError::Internal`] before they get here. It implements `FromServerFnError`, so a
//! `?` on a framework error never sends that error's `to_string()` to the browser.

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    /// The request is malformed or a value is invalid; the message says which field and why and
    /// never repeats a submitted secret.
    #[error("{0}")]
    Invalid(String),
    #[error("please sign in to continue")]
    Unauthorized,
    #[error("you do not have permission to do that")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("too many attempts: try again in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u32 },
    #[error("the service is temporarily unavailable; please try again shortly")]
    Unavailable,
    /// Something failed on the server; the details are in the server log only.
    #[error("something went wrong on our side; it has been logged")]
    Internal,
    /// The browser could not reach the server or could not read its answer.
    #[error("could not reach the server; check your connection and try again")]
    Network,
}

impl From<keyward::ids::NoSuch> for AppError {
    fn from(_: keyward::ids::NoSuch) -> Self {
        AppError::NotFound
    }
}

impl From<keyward::usage::Invalid> for AppError {
    fn from(e: keyward::usage::Invalid) -> Self {
        AppError::Invalid(e.0.into())
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        // Framework errors can quote what was submitted (serde errors echo input), so none of
        // their text is kept: only the class survives.
        match value {
            ServerFnErrorErr::Args(_) | ServerFnErrorErr::MissingArg(_) => {
                Self::Invalid("the request was malformed".into())
            }
            ServerFnErrorErr::Request(_) | ServerFnErrorErr::Deserialization(_) => Self::Network,
            ServerFnErrorErr::Registration(_)
            | ServerFnErrorErr::UnsupportedRequestMethod(_)
            | ServerFnErrorErr::ServerError(_)
            | ServerFnErrorErr::MiddlewareError(_)
            | ServerFnErrorErr::Serialization(_)
            | ServerFnErrorErr::Response(_) => Self::Internal,
        }
    }
}

/// A service failure as the browser may see it: database and internal details are logged (by
/// `classify`) and replaced by an opaque variant.
#[cfg(feature = "ssr")]
impl From<keyward_backend::error::ServiceError> for AppError {
    fn from(e: keyward_backend::error::ServiceError) -> Self {
        use keyward_backend::error::Class;
        match e.classify("server function") {
            Class::Invalid(m) => AppError::Invalid(m),
            Class::NotFound => AppError::NotFound,
            Class::Conflict(m) => AppError::Conflict(m),
            Class::Unauthorized => AppError::Unauthorized,
            Class::Forbidden => AppError::Forbidden,
            Class::RateLimited(secs) => AppError::RateLimited {
                retry_after_secs: secs,
            },
            Class::Unavailable => AppError::Unavailable,
            Class::Internal => AppError::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framework_errors_never_carry_their_text() {
        let secret = "sk-proj-THISMUSTNOTLEAK0123456789";
        for e in [
            ServerFnErrorErr::Args(format!("invalid type: string \"{secret}\"")),
            ServerFnErrorErr::ServerError(secret.into()),
            ServerFnErrorErr::Deserialization(secret.into()),
            ServerFnErrorErr::MiddlewareError(secret.into()),
        ] {
            let mapped = AppError::from_server_fn_error(e);
            assert!(!mapped.to_string().contains(secret));
            assert!(!format!("{mapped:?}").contains(secret));
        }
    }

    #[cfg(feature = "ssr")]
    #[test]
    fn database_details_never_reach_the_browser() {
        use keyward_backend::error::ServiceError;
        let detail = "connection to 10.0.0.7 refused for user kw password hunter2";
        let e = sea_orm_err(detail);
        let app: AppError = ServiceError::Database(e).into();
        assert_eq!(app, AppError::Unavailable);
        assert!(!format!("{app:?} {app}").contains("hunter2"));
    }

    #[cfg(feature = "ssr")]
    fn sea_orm_err(detail: &str) -> keyward_backend::sea_orm::DbErr {
        keyward_backend::sea_orm::DbErr::Custom(detail.into())
    }

    #[test]
    fn round_trips_through_its_encoder() {
        let e = AppError::RateLimited {
            retry_after_secs: 7,
        };
        let bytes = e.ser();
        assert_eq!(AppError::de(bytes), e);
        assert_eq!(e.to_string(), "too many attempts: try again in 7 s");
    }
}
