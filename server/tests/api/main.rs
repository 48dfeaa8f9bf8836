//! Integration tests: one binary (links once), one module per area. Every test that touches a
//! database runs on both SQLite and PostgreSQL through [`helpers::both_backends`].

mod accounts;
mod chat;
mod cli;
mod fuzz_corpus;
mod gateway;
mod hardening;
mod health;
mod helpers;
mod keys;
mod limits;
mod logs;
mod pages;
mod public_api;
mod rest;
mod schema_fuzz;
mod sign_up;
mod system_status;
mod tokens;
mod usage;
mod vault;
mod vault_startup;
