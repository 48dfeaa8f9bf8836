//! Keyward's pure domain core.
//!
//! Everything here is plain data and functions: no IO, no async runtime, no server-only
//! dependency. It compiles for `wasm32-unknown-unknown` (the hydrated dashboard uses the same
//! types) and for the native server. Later modules add the provider catalogue, key masking, the
//! permission policy and the key-resolution function; each keeps its unit tests beside it.

#![forbid(unsafe_code)]

pub mod account;
pub mod catalogue;
pub mod chart;
pub mod chat;
pub mod credential;
pub mod dto;
pub mod http;
pub mod ids;
pub mod keys;
pub mod limits;
pub mod markdown;
pub mod policy;
pub mod resolve;
pub mod system;
pub mod tokens;
pub mod usage;
pub mod window;
pub mod wire;
