//! The Keyward server: configuration, startup, storage, services, HTTP routes and the CLI.
//! `main.rs` is a thin shim over [`cli::run`]; tests drive [`startup`] directly.

#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod db;
pub mod entities;
pub mod error;
pub mod fuzz_targets;
pub mod gateway;
pub mod invalidation;
pub mod mail;
pub mod mock_provider;
pub mod rest;
pub mod routes;
pub mod services;
pub mod single_flight;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod throttle;
pub mod vault;
pub mod web_backend;
