//! Keyward's backend: settings, storage, the vault, the outbound gateway, the caches and their
//! one invalidation owner, and the service layer — everything behind the server functions, the
//! REST and public APIs and the CLI. No HTTP routes and no UI live here; the app depends on this
//! crate only under `ssr`, so the wasm build never sees SeaORM.

#![forbid(unsafe_code)]

pub mod auth;
pub mod client;
pub mod config;
pub mod db;
pub mod entities;
pub mod error;
pub mod gateway;
pub mod identity;
pub mod invalidation;
pub mod mail;
pub mod services;
pub mod single_flight;
pub mod state;
pub mod throttle;
pub mod vault;

/// The ORM the services speak, for callers that name its types (errors, connections).
pub use sea_orm;
