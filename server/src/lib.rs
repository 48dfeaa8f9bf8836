//! The Keyward server: startup, the HTTP routes (pages, chat streams, the public and REST APIs),
//! the CLI and the stand-in provider. `main.rs` is a thin shim over [`cli::run`]; tests drive
//! [`startup`] directly. What stands behind the routes lives in `keyward-backend`, re-exported
//! here under its own module names.

#![forbid(unsafe_code)]

pub use keyward_backend::{
    auth, client, config, db, entities, error, gateway, identity, invalidation, mail, services,
    single_flight, state, throttle, vault,
};

pub mod api;
pub mod bench;
pub mod cli;
pub mod fuzz_targets;
pub mod mock_provider;
pub mod rest;
pub mod routes;
pub mod startup;
pub mod telemetry;
