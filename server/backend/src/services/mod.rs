//! The service layer: plain async functions over a `DatabaseConnection`, shared by server
//! functions and REST handlers, testable without Leptos or HTTP.

pub mod accounts;
pub mod api_tokens;
pub mod audit;
pub mod catalogue;
pub mod chat;
pub mod chatbots;
pub mod conversations;
pub mod credits;
pub mod keys;
pub mod limits;
pub mod models;
pub mod playground;
pub mod routing;
pub mod session;
pub mod sign_up;
pub mod system;
pub mod usage;
pub mod workspaces;

/// How the dashboard shows a moment: minutes, in UTC.
pub(crate) fn fmt_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}
