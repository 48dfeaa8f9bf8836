//! SeaORM entities, one module per table, in the generated style: no behaviour here (that lives
//! in `services` and `vault`), except reading enum-like text columns back as their types, which
//! fails loudly on a value the code does not know (never a silent default).

pub mod api_token;
pub mod audit_event;
pub mod chatbot;
pub mod conversation;
pub mod credential;
pub mod credit_balance;
pub mod credit_ledger;
pub mod invitation;
pub mod limit;
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

/// `value`, stored in `column`, as a `T`; an unknown value is corrupt data: an error that names
/// the column and the value.
pub fn checked<T: std::str::FromStr>(
    column: &'static str,
    value: &str,
) -> Result<T, crate::error::ServiceError> {
    value.parse().map_err(|_| {
        crate::error::ServiceError::Internal(format!(
            "{column} holds {value:?}, which is not a value Keyward knows"
        ))
    })
}
