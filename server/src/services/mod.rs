//! The service layer: plain async functions over a `DatabaseConnection`, shared by server
//! functions and REST handlers, testable without Leptos or HTTP.

pub mod accounts;
pub mod api_tokens;
pub mod audit;
pub mod chat;
pub mod chatbots;
pub mod conversations;
pub mod credits;
pub mod keys;
pub mod models;
pub mod playground;
pub mod sign_up;
pub mod system;
pub mod usage;
pub mod workspaces;
