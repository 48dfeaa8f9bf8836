//! SeaORM entities, one module per table, in the generated style: no behaviour here (that lives
//! in `services` and `vault`).

pub mod api_token;
pub mod audit_event;
pub mod chatbot;
pub mod conversation;
pub mod credential;
pub mod credit_balance;
pub mod credit_ledger;
pub mod invitation;
pub mod membership;
pub mod message;
pub mod model_price;
pub mod provider_setting;
pub mod session;
pub mod setting;
pub mod sign_up_request;
pub mod usage_record;
pub mod user;
pub mod vault_key;
pub mod vault_meta;
pub mod workspace;
