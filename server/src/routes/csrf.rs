//! Cross-site request forgery protection for every state-changing request (REST and Leptos
//! server functions alike): the request must not be cross-site by `Sec-Fetch-Site`, its `Origin`
//! (when sent) must be this host, and it must carry the [`CSRF_HEADER`] proof. Refused requests
//! never reach a handler, so they change nothing.

use crate::error::ApiError;
use axum::extract::Request;
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keyward::http::CSRF_HEADER;

pub async fn csrf_guard(req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    if let Err(reason) = check(req.headers()) {
        tracing::warn!(reason, method = %req.method(), path = %crate::telemetry::loggable_path(req.uri().path()), "CSRF check refused a request");
        return ApiError::Forbidden.into_response();
    }
    next.run(req).await
}

/// [`csrf_guard`] for an API that also takes API tokens (the management REST API): a request
/// that presents a token is not a browser's ambient credential, so only session requests are
/// checked.
pub async fn csrf_guard_for_sessions(req: Request, next: Next) -> Response {
    if crate::identity::has_token(req.headers()) {
        return next.run(req).await;
    }
    csrf_guard(req, next).await
}

pub(crate) fn check(headers: &HeaderMap) -> Result<(), &'static str> {
    if let Some(site) = headers.get("sec-fetch-site") {
        match site.to_str().unwrap_or("") {
            "same-origin" | "none" => {}
            _ => return Err("cross-site Sec-Fetch-Site"),
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("null");
        let authority = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
            .ok_or("opaque or non-http Origin")?;
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .ok_or("Origin without Host")?;
        if !authority.eq_ignore_ascii_case(host) {
            return Err("foreign Origin");
        }
    }
    if headers.get(CSRF_HEADER).is_none() {
        return Err("missing CSRF header");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn same_origin_requests_with_the_proof_pass() {
        assert!(check(&headers(&[(CSRF_HEADER, "1"), ("host", "kw.example:3000")])).is_ok());
        assert!(
            check(&headers(&[
                (CSRF_HEADER, "1"),
                ("host", "kw.example:3000"),
                ("origin", "https://kw.example:3000"),
                ("sec-fetch-site", "same-origin"),
            ]))
            .is_ok()
        );
    }

    #[test]
    fn anything_cross_site_or_unproven_is_refused() {
        for (case, h) in [
            ("no proof", headers(&[("host", "kw.example")])),
            (
                "foreign origin",
                headers(&[
                    (CSRF_HEADER, "1"),
                    ("host", "kw.example"),
                    ("origin", "https://evil.example"),
                ]),
            ),
            (
                "origin suffix trick",
                headers(&[
                    (CSRF_HEADER, "1"),
                    ("host", "kw.example"),
                    ("origin", "https://kw.example.evil.example"),
                ]),
            ),
            (
                "null origin",
                headers(&[
                    (CSRF_HEADER, "1"),
                    ("host", "kw.example"),
                    ("origin", "null"),
                ]),
            ),
            (
                "cross-site fetch metadata",
                headers(&[
                    (CSRF_HEADER, "1"),
                    ("host", "kw.example"),
                    ("sec-fetch-site", "cross-site"),
                ]),
            ),
            (
                "same-site sibling",
                headers(&[
                    (CSRF_HEADER, "1"),
                    ("host", "kw.example"),
                    ("sec-fetch-site", "same-site"),
                ]),
            ),
        ] {
            assert!(check(&h).is_err(), "{case}");
        }
    }
}
