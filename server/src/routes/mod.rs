//! Plain axum routes (the pages and server functions are registered by Leptos).

pub mod chat;
pub mod csrf;
pub mod headers;
pub mod health;
pub mod pages;
pub mod usage;
