//! Keyward's user interface: the HTML shell, routes, layout and pages, and the server-function
//! declarations they call. Built twice: with `ssr` into the server, with `hydrate` into the wasm
//! bundle that makes the server-rendered page interactive.

#![forbid(unsafe_code)]
#![recursion_limit = "256"]

pub mod api;
pub mod auth;
#[cfg(feature = "hydrate")]
mod chat_client;
pub mod error;
mod layout;
mod pages;
#[cfg(feature = "ssr")]
pub mod ssr;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::{
    SsrMode,
    components::{Route, Router, Routes},
    path,
};

/// The HTML document around the app (server side only renders it).
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
                <auth::SessionData/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    auth::provide_auth();

    view! {
        <Stylesheet id="keyward" href="/pkg/keyward.css"/>
        <Title formatter=|page: String| {
            if page.is_empty() { "Keyward".to_string() } else { format!("{page} · Keyward") }
        }/>
        // Every route renders in async mode: the session resolves before headers are sent, so
        // the sign-in guard answers with a real HTTP redirect (also for clients without wasm).
        <Router>
            <layout::Shell>
                <Routes fallback=pages::NotFound>
                    <Route path=path!("/") view=pages::Dashboard ssr=SsrMode::Async/>
                    <Route path=path!("/keys") view=pages::Keys ssr=SsrMode::Async/>
                    <Route path=path!("/chatbots") view=pages::Chatbots ssr=SsrMode::Async/>
                    <Route
                        path=path!("/chatbots/:id/keys")
                        view=pages::ChatbotKeys
                        ssr=SsrMode::Async
                    />
                    <Route path=path!("/usage") view=pages::Usage ssr=SsrMode::Async/>
                    <Route path=path!("/limits") view=pages::LimitsPage ssr=SsrMode::Async/>
                    <Route path=path!("/tokens") view=pages::Tokens ssr=SsrMode::Async/>
                    <Route path=path!("/audit") view=pages::Audit ssr=SsrMode::Async/>
                    <Route path=path!("/playground") view=pages::Playground ssr=SsrMode::Async/>
                    <Route
                        path=path!("/chat/:workspace/:chatbot")
                        view=pages::VisitorChat
                        ssr=SsrMode::Async
                    />
                    <Route path=path!("/members") view=pages::Members ssr=SsrMode::Async/>
                    <Route path=path!("/profile") view=pages::Profile ssr=SsrMode::Async/>
                    <Route path=path!("/setup") view=pages::Setup ssr=SsrMode::Async/>
                    <Route path=path!("/sign-in") view=pages::SignInPage ssr=SsrMode::Async/>
                    <Route path=path!("/sign-up") view=pages::SignUpPage ssr=SsrMode::Async/>
                    <Route path=path!("/sign-up/:token") view=pages::ConfirmSignUpPage ssr=SsrMode::Async/>
                    <Route
                        path=path!("/admin/workspaces")
                        view=pages::AdminWorkspaces
                        ssr=SsrMode::Async
                    />
                    <Route path=path!("/admin/keys") view=pages::PlatformKeys ssr=SsrMode::Async/>
                    <Route
                        path=path!("/admin/providers")
                        view=pages::AdminProviders
                        ssr=SsrMode::Async
                    />
                    <Route path=path!("/admin/audit") view=pages::PlatformAudit ssr=SsrMode::Async/>
                    <Route path=path!("/admin/usage") view=pages::AdminUsage ssr=SsrMode::Async/>
                    <Route path=path!("/admin/credits") view=pages::AdminCredits ssr=SsrMode::Async/>
                    <Route path=path!("/admin/limits") view=pages::AdminLimits ssr=SsrMode::Async/>
                    <Route path=path!("/invite/:token") view=pages::InvitePage ssr=SsrMode::Async/>
                </Routes>
            </layout::Shell>
        </Router>
    }
}
