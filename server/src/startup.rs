//! Building the application and serving it on a listener the caller binds (tests bind
//! `127.0.0.1:0`).

use crate::config::Settings;
use crate::routes::health;
use crate::services::accounts::SignInThrottle;
use crate::state::AppState;
use crate::vault::master_key::MasterKey;
use crate::vault::{self, Vault};
use crate::{db, services};
use axum::Router;
use axum::http::{HeaderName, Request, StatusCode, header};
use axum::routing::{MethodRouter, get};
use axum::serve::ListenerExt;
use keyward_app::{App, shell};
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{LeptosRoutes, generate_route_list};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::sensitive_headers::SetSensitiveHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Db(#[from] db::DbSetupError),
    #[error("startup: {0}")]
    Service(#[from] crate::error::ServiceError),
    #[error(transparent)]
    Vault(#[from] crate::vault::VaultError),
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: String, reason: String },
    #[error("server error: {0}")]
    Serve(String),
}

/// Headers that carry credentials: their values never reach a log line.
pub const SENSITIVE_HEADERS: [HeaderName; 5] = [
    header::AUTHORIZATION,
    header::PROXY_AUTHORIZATION,
    header::COOKIE,
    header::SET_COOKIE,
    HeaderName::from_static("x-api-key"),
];

/// Connects, checks the vault, migrates and prepares everything a router needs.
///
/// Order matters for failing closed: the vault checks against an existing database are read-only
/// and run before migrations, so a wrong or damaged key leaves the database untouched.
pub async fn build_state(settings: Settings, master: &MasterKey) -> Result<AppState, StartupError> {
    let db = db::connect(&settings).await?;
    vault::preflight(&db, master).await?;
    db::migrate(&db).await?;
    let vault = Vault::open(db.clone(), master).await?;
    services::system::ensure_instance(&db).await?;
    let leptos_options = leptos_options(&settings);
    let gateway = crate::gateway::Gateway::from_settings(&settings)
        .map_err(|e| StartupError::Serve(format!("cannot build the outbound HTTP client: {e}")))?;
    let changes = crate::invalidation::Invalidation::new();
    let credits = crate::services::credits::CreditBook::new(changes.clone());
    let tasks = tokio_util::task::TaskTracker::new();
    let spend = crate::services::limits::SpendControl::new(
        Arc::new(crate::services::limits::InProcess::default()),
        db.clone(),
        tasks.clone(),
    );
    let usage = crate::services::usage::UsageWriter::spawn(
        db.clone(),
        credits.clone(),
        Some(spend.clone()),
        Default::default(),
    );
    let keys = crate::gateway::cache::KeyCache::new(changes.clone());
    let chat = crate::services::chat::ChatService::new(crate::services::chat::Parts {
        db: db.clone(),
        vault: vault.clone(),
        gateway: gateway.clone(),
        keys: keys.clone(),
        credits: credits.clone(),
        usage: usage.clone(),
        spend,
        tasks: tasks.clone(),
    });
    Ok(AppState {
        chat,
        tasks: tasks.clone(),
        credits,
        usage,
        gateway,
        keys,
        models: Default::default(),
        tokens: crate::services::api_tokens::TokenCache::new(changes.clone(), tasks.clone()),
        changes,
        leptos_options,
        db,
        sign_in_throttle: SignInThrottle::new(
            settings.sign_in_attempts_per_minute,
            settings.sign_in_attempts_per_minute.saturating_mul(4),
        ),
        visitor_limits: crate::throttle::VisitorLimits::new(settings.visitor_messages_per_minute),
        key_tests: crate::throttle::Throttle::per_minute(crate::state::KEY_TESTS_PER_MINUTE),
        sign_ups: crate::services::sign_up::SignUps::new(
            crate::mail::Mailer::from_settings(&settings)
                .map_err(|e| StartupError::Serve(e.to_string()))?
                .filter(|_| settings.open_sign_up),
            settings.public_url.as_deref(),
            tasks.clone(),
        ),
        proxies: crate::client::TrustedProxies::parse(&settings.trusted_proxies)
            .map_err(|e| StartupError::Serve(format!("trusted_proxies: {e}")))?,
        settings: Arc::new(settings),
        vault,
    })
}

pub fn leptos_options(settings: &Settings) -> LeptosOptions {
    LeptosOptions::builder()
        .output_name("keyward")
        .site_root(settings.site_root.to_string_lossy().to_string())
        .site_pkg_dir("pkg")
        .site_addr(settings.bind)
        .env(leptos::config::Env::PROD)
        .build()
}

/// The routes beside the pages that sit behind the dashboard's middleware: method, path,
/// handler.
fn dashboard_routes() -> Vec<(&'static str, &'static str, MethodRouter<AppState>)> {
    use axum::routing::post;
    vec![
        ("get", "/healthz", get(health::healthz)),
        ("get", "/readyz", get(health::readyz)),
        ("get", "/metrics", get(health::metrics)),
        ("get", "/api/usage.csv", get(crate::routes::usage::csv)),
        (
            "post",
            "/api/chat/{workspace}/{chatbot}",
            post(crate::routes::chat::visitor_send),
        ),
        (
            "post",
            "/api/workspaces/{workspace}/playground",
            post(crate::routes::chat::playground_send),
        ),
    ]
}

/// Every route the application answers besides its pages, as (method, path): the dashboard's
/// routes, the public API's, the management REST API's and the server functions'. The router
/// is built from the same lists, so a route added there is enumerated here (the spend-control
/// test probes each one).
pub fn route_table() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut add = |m: &str, p: &str| out.push((m.to_ascii_uppercase(), p.to_string()));
    for (m, p, _) in dashboard_routes() {
        add(m, p);
    }
    for (m, p, _) in crate::api::routes() {
        add(m, p);
    }
    for e in crate::rest::endpoints() {
        add(e.method, e.path);
    }
    add("get", "/api/v1/openapi.json");
    for (p, m) in leptos::server_fn::axum::server_fn_paths() {
        add(m.as_str(), p);
    }
    out
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let app_state = state.clone();
    let context = move || {
        // Server functions reach the services through the state (see `keyward_app::ssr`).
        provide_context(app_state.clone());
        // A page render (not a server function) has a nonce: its script policy names it.
        if let (Some(nonce), Some(res)) = (
            leptos::nonce::use_nonce(),
            leptos::prelude::use_context::<leptos_axum::ResponseOptions>(),
        ) && let Ok(v) =
            axum::http::HeaderValue::from_str(&crate::routes::headers::page_policy(&nonce))
        {
            res.insert_header(header::CONTENT_SECURITY_POLICY, v);
        }
    };
    let routes = generate_route_list(App);
    let options = state.leptos_options.clone();
    let timeout = Duration::from_secs(state.settings.request_timeout_secs);
    let body_limit = usize::try_from(state.settings.max_body_bytes).unwrap_or(usize::MAX);

    dashboard_routes()
        .into_iter()
        .fold(Router::new(), |r, (_, path, handler)| r.route(path, handler))
        // Pages (and the server functions Leptos registers with them) learn the session first.
        .merge(
            Router::new()
                .leptos_routes_with_context(&state, routes, context.clone(), {
                    let options = options.clone();
                    move || shell(options.clone())
                })
                .route_layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    crate::routes::pages::session,
                )),
        )
        .fallback(leptos_axum::file_and_error_handler_with_context::<AppState, _>(
            context, shell,
        ))
        .layer(axum::middleware::from_fn(crate::routes::csrf::csrf_guard))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::routes::headers::security_headers,
        ))
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(CompressionLayer::new())
        .layer(
            TraceLayer::new_for_http()
                // The path only: query strings are caller-controlled and could carry anything.
                .make_span_with(|req: &Request<_>| {
                    tracing::info_span!("http", method = %req.method(), path = %crate::telemetry::loggable_path(req.uri().path()))
                })
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(SetSensitiveHeadersLayer::new(SENSITIVE_HEADERS))
        // The public API, outside the dashboard's middleware (see `api`).
        .merge(crate::api::router())
        // The management REST API checks tokens, sessions and CSRF itself (see `rest`).
        .merge(crate::rest::router())
        // Every route learns the real client address (behind trusted proxies) first.
        .layer(axum::middleware::from_fn_with_state(
            state.proxies.clone(),
            crate::client::layer,
        ))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartupError> {
    // Chat streams are many small writes: never let Nagle hold them back.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .map_err(|e| StartupError::Serve(e.to_string()))
}

/// Serves the application until `shutdown` resolves, drains in-flight requests, waits for the
/// work they left behind (the usage records of streams that just ended, replies being stored),
/// then writes every buffered usage record before returning.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartupError> {
    let served = serve(listener, router(state.clone()), shutdown).await;
    drain(&state).await;
    served
}

/// Waits for the tracked background work, then flushes the usage writer.
pub async fn drain(state: &AppState) {
    state.tasks.close();
    state.tasks.wait().await;
    state.usage.shutdown().await;
}

/// Binds the configured address with a clear error.
pub async fn bind(settings: &Settings) -> Result<TcpListener, StartupError> {
    TcpListener::bind(settings.bind)
        .await
        .map_err(|e| StartupError::Bind {
            addr: settings.bind.to_string(),
            reason: e.to_string(),
        })
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; draining requests");
}
