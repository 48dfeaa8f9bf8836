//! Open sign-up, confirmed by mail. The form's answer is the same whether or not the address
//! already has an account — "check your inbox" — so sign-up does not tell strangers who is a
//! user. The mail tells the two apart: a new address gets a single-use link (valid
//! [`LINK_VALID_FOR`]) that creates the account and its workspace; an address that has an
//! account gets a note to sign in instead. The password is hashed on both paths and the mail is
//! sent off the request, so the two answers differ in time only by one row insert.

use crate::entities::{sign_up_request, user};
use crate::error::ServiceError;
use crate::mail::{Mail, Mailer};
use crate::services::accounts::{self, NewAccount, NewSession, SignInThrottle};
use crate::throttle::Throttle;
use crate::vault::crypto;
use chrono::{Duration, Utc};
use keyward::account::{Email, parse_workspace_name};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    Set,
};
use std::net::IpAddr;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

/// How long a sign-up link works.
pub const LINK_VALID_FOR: Duration = Duration::hours(24);
/// Sign-up mails one address may receive an hour (whichever kind), so the form cannot be used
/// to flood someone's inbox.
pub const MAILS_PER_ADDRESS_PER_HOUR: u32 = 3;

/// What open sign-up needs at run time: the relay, the public address the links point to, and
/// the per-recipient mail limit. `None` mailer: open sign-up is off.
#[derive(Clone)]
pub struct SignUps {
    mailer: Option<Mailer>,
    base_url: String,
    mails: Throttle<String>,
    tasks: TaskTracker,
}

impl SignUps {
    pub fn new(mailer: Option<Mailer>, public_url: Option<&str>, tasks: TaskTracker) -> Self {
        Self {
            mailer,
            tasks,
            base_url: public_url.unwrap_or_default().trim_end_matches('/').into(),
            mails: Throttle::per_hour(MAILS_PER_ADDRESS_PER_HOUR),
        }
    }

    pub fn enabled(&self) -> bool {
        self.mailer.is_some()
    }
}

/// The sign-up form's fields.
pub struct SignUpForm<'a> {
    pub email: &'a str,
    pub display_name: &'a str,
    pub password: &'a str,
    pub workspace_name: &'a str,
}

/// Takes a sign-up request. `Ok` means "a mail is on its way" — for a new address and for one
/// that has an account alike; only invalid fields and throttling are errors.
pub async fn request(
    db: &DatabaseConnection,
    guard: &SignInThrottle,
    sign_ups: &SignUps,
    client: Option<IpAddr>,
    form: SignUpForm<'_>,
) -> Result<(), ServiceError> {
    let Some(mailer) = &sign_ups.mailer else {
        return Err(ServiceError::Forbidden);
    };
    guard.check("sign-up", client)?;
    let workspace_name = parse_workspace_name(form.workspace_name)
        .map_err(|e| ServiceError::Invalid(e.to_string()))?;
    let account = NewAccount::prepare(guard, form.email, form.display_name, form.password).await?;
    let email = account.email().to_string();
    sign_ups
        .mails
        .check(&email)
        .map_err(ServiceError::RateLimited)?;
    let now = Utc::now();
    sign_up_request::Entity::delete_many()
        .filter(sign_up_request::Column::ExpiresAt.lt(now))
        .exec(db)
        .await?;
    let taken = user::Entity::find()
        .filter(user::Column::Email.eq(email.as_str()))
        .count(db)
        .await?
        > 0;
    let mail = if taken {
        already_registered(&email, &sign_ups.base_url)
    } else {
        let token = crypto::random_token().map_err(|e| ServiceError::Internal(e.to_string()))?;
        let (name, hash) = account.into_parts();
        sign_up_request::ActiveModel {
            id: Set(Uuid::now_v7()),
            token_hash: Set(crypto::token_hash(&token)),
            email: Set(email.clone()),
            display_name: Set(name),
            password_hash: Set(hash),
            workspace_name: Set(workspace_name),
            created_at: Set(now),
            expires_at: Set(now + LINK_VALID_FOR),
        }
        .insert(db)
        .await?;
        confirm_link(&email, &sign_ups.base_url, &token)
    };
    mailer.send_later(mail, &sign_ups.tasks);
    Ok(())
}

/// The open request behind a link; unknown, used and expired links are all "not found".
async fn find(
    db: &impl sea_orm::ConnectionTrait,
    token: &str,
) -> Result<sign_up_request::Model, ServiceError> {
    sign_up_request::Entity::find()
        .filter(sign_up_request::Column::TokenHash.eq(crypto::token_hash(token)))
        .filter(sign_up_request::Column::ExpiresAt.gt(Utc::now()))
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound)
}

/// What the confirmation page shows before the account is made: the address and the
/// workspace's name.
pub async fn preview(
    db: &DatabaseConnection,
    token: &str,
) -> Result<(String, String), ServiceError> {
    let req = find(db, token).await?;
    Ok((req.email, req.workspace_name))
}

/// Opens a link: creates the account and its workspace (single use: the first opening wins,
/// and any other pending request for the address ends too), and signs the new account in.
pub async fn confirm(
    db: &DatabaseConnection,
    token: &str,
    user_agent: Option<&str>,
) -> Result<NewSession, ServiceError> {
    let txn = crate::db::begin_write(db).await?;
    let req = find(&txn, token).await?;
    sign_up_request::Entity::delete_many()
        .filter(sign_up_request::Column::Email.eq(req.email.as_str()))
        .exec(&txn)
        .await?;
    let email = Email::parse(&req.email).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    let user =
        accounts::insert_user(&txn, &email, &req.display_name, req.password_hash, false).await?;
    accounts::insert_workspace(&txn, &req.workspace_name, user.id).await?;
    txn.commit().await?;
    accounts::open_session(db, &user, user_agent).await
}

fn confirm_link(to: &str, base_url: &str, token: &str) -> Mail {
    Mail {
        to: to.into(),
        subject: "Confirm your new Keyward account".into(),
        body: format!(
            "Someone, hopefully you, asked to create a Keyward account\n\
             with this address. To finish, open this link within 24 hours:\n\n\
             {base_url}/sign-up/{token}\n\n\
             If it was not you, ignore this mail: no account is created.\n"
        ),
    }
}

fn already_registered(to: &str, base_url: &str) -> Mail {
    Mail {
        to: to.into(),
        subject: "You already have a Keyward account".into(),
        body: format!(
            "Someone, hopefully you, asked to create a Keyward account\n\
             with this address, but it already has one. Sign in here:\n\n\
             {base_url}/sign-in\n\n\
             If it was not you, ignore this mail: nothing has changed.\n"
        ),
    }
}
