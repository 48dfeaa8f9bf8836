//! Open sign-up, confirmed by mail, against a real SMTP server (aiosmtpd from PyPI, keeping what
//! it receives in a Maildir): the form answers the same for a new address and for one that has
//! an account, and only the mail tells them apart; the link creates the account once.

use crate::helpers::{Backend, TestApp, both_backends, eventually, owner_cookie, spawn_app_with};
use keyward_app::api::{ConfirmSignUp, SignUp};
use keyward_server::config::SecretUrl;
use keyward_server::entities::{membership, sign_up_request, user, workspace};
use leptos::server_fn::ServerFn;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use std::path::PathBuf;
use std::time::Duration;

const BASE: &str = "http://keyward.test";

/// aiosmtpd on a loopback port, writing each message it receives into a Maildir.
struct SmtpSink {
    port: u16,
    maildir: PathBuf,
    _child: tokio::process::Child,
}

impl SmtpSink {
    async fn start() -> Self {
        let bin = crate::helpers::venv_bin("mail");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let maildir = std::env::temp_dir().join(format!("keyward-mail-{}", uuid::Uuid::new_v4()));
        let child = tokio::process::Command::new(format!("{bin}/python"))
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .kill_on_drop(true)
            .spawn()
            .expect("aiosmtpd starts");
        eventually(Duration::from_secs(20), "aiosmtpd listening", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
        })
        .await;
        Self {
            port,
            maildir,
            _child: child,
        }
    }

    /// Every message received for `to` so far, whole (headers and body).
    fn received(&self, to: &str) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(dir) = std::fs::read_dir(self.maildir.join(sub)) else {
                continue;
            };
            for entry in dir.flatten() {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                if text
                    .lines()
                    .any(|l| l.eq_ignore_ascii_case(&format!("X-RcptTo: {to}")))
                {
                    out.push(text);
                }
            }
        }
        out
    }

    /// Waits until `n` messages for `to` arrived; returns them.
    async fn wait_for(&self, to: &str, n: usize) -> Vec<String> {
        let what = format!("{n} mails to {to}");
        eventually(Duration::from_secs(30), &what, || async {
            let got = self.received(to);
            (got.len() >= n).then_some(got)
        })
        .await
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.maildir);
    }
}

async fn open_app(backend: Backend, sink: &SmtpSink) -> TestApp {
    let port = sink.port;
    spawn_app_with(backend, move |s| {
        s.open_sign_up = true;
        s.smtp_url = Some(SecretUrl::new(format!("smtp://127.0.0.1:{port}")));
        s.mail_from = Some("Keyward <no-reply@keyward.test>".into());
        s.public_url = Some(BASE.into());
    })
    .await
}

/// Posts the sign-up form; returns the status and the body.
pub(crate) async fn sign_up(app: &TestApp, email: &str) -> (u16, String) {
    let res = app
        .client
        .post(app.url(SignUp::PATH))
        .header(keyward::http::CSRF_HEADER, "1")
        .form(&[
            ("email", email),
            ("display_name", "Walk In"),
            ("password", "correct horse battery"),
            ("workspace_name", "Mine"),
        ])
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// Opens a sign-up link (the confirmation page's button).
async fn confirm(app: &TestApp, token: &str) -> reqwest::Response {
    app.client
        .post(app.url(ConfirmSignUp::PATH))
        .header(keyward::http::CSRF_HEADER, "1")
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
}

/// The HTML of a page, rendered on the server.
async fn page(app: &TestApp, path: &str) -> String {
    let res = app.client.get(app.url(path)).send().await.unwrap();
    res.text().await.unwrap()
}

fn link_token(mail: &str) -> String {
    let at = mail
        .find(&format!("{BASE}/sign-up/"))
        .unwrap_or_else(|| panic!("no sign-up link in:\n{mail}"));
    mail[at + BASE.len() + "/sign-up/".len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

async fn users(app: &TestApp) -> u64 {
    user::Entity::find().count(&app.db).await.unwrap()
}

async fn sign_up_answers_alike_and_the_mail_decides(backend: Backend) {
    let sink = SmtpSink::start().await;
    let app = open_app(backend, &sink).await;
    owner_cookie(&app).await;

    // The sign-in page offers sign-up; the answer to a taken address and to a new one is the
    // same, word for word.
    assert!(page(&app, "/sign-in").await.contains("href=\"/sign-up\""));
    let taken = sign_up(&app, "owner@example.com").await;
    let fresh = sign_up(&app, "new@example.com").await;
    assert_eq!(taken.0, 200, "{}", taken.1);
    assert_eq!(taken, fresh, "the answers differ");
    assert_eq!(users(&app).await, 1, "no account before the link is opened");

    // The mails differ: the owner is told to sign in, the new address gets a link.
    let owner_mail = sink.wait_for("owner@example.com", 1).await.remove(0);
    assert!(owner_mail.contains("You already have a Keyward account"));
    assert!(owner_mail.contains(&format!("{BASE}/sign-in")));
    assert!(!owner_mail.contains("/sign-up/"));
    let new_mail = sink.wait_for("new@example.com", 1).await.remove(0);
    assert!(new_mail.contains("From: Keyward <no-reply@keyward.test>"));
    let token = link_token(&new_mail);
    assert!(token.len() >= 32, "{token}");
    let pending = sign_up_request::Entity::find().all(&app.db).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].email, "new@example.com");
    assert_ne!(
        pending[0].token_hash, token,
        "only the token's hash is stored"
    );

    // The link's page says what it creates; opening it creates the account and signs it in.
    let html = page(&app, &format!("/sign-up/{token}")).await;
    assert!(
        html.contains("Create the account new@example.com with the workspace Mine"),
        "{html}"
    );
    let res = confirm(&app, &token).await;
    assert_eq!(res.status(), 200);
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.strip_prefix(&format!("{}=", keyward::http::SESSION_COOKIE))
                .map(|rest| rest.split(';').next().unwrap_or_default().to_string())
        })
        .expect("a session cookie");
    let who = keyward_server::services::accounts::authenticate(&app.db, &cookie)
        .await
        .unwrap()
        .expect("the new session works");
    assert_eq!(who.email, "new@example.com");
    let ws = workspace::Entity::find()
        .filter(workspace::Column::Name.eq("Mine"))
        .one(&app.db)
        .await
        .unwrap()
        .expect("its workspace");
    let m = membership::Entity::find_by_id((ws.id, who.user_id))
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.role, "owner");
    assert_eq!(who.current_workspace, Some(ws.id));

    // Single use: the link is spent, and its page says so.
    let again = confirm(&app, &token).await.text().await.unwrap();
    assert!(again.contains("NotFound"), "{again}");
    assert_eq!(users(&app).await, 2);
    let html = page(&app, &format!("/sign-up/{token}")).await;
    assert!(html.contains("This link is not valid"), "{html}");

    // Signing up again with the address that now has an account: the same answer, and a
    // note to sign in.
    assert_eq!(sign_up(&app, "new@example.com").await, fresh);
    let mails = sink.wait_for("new@example.com", 2).await;
    assert!(
        mails
            .iter()
            .any(|m| m.contains("You already have a Keyward account"))
    );

    // An expired link is as good as none.
    assert_eq!(sign_up(&app, "late@example.com").await, fresh);
    let late = link_token(&sink.wait_for("late@example.com", 1).await.remove(0));
    sign_up_request::Entity::update_many()
        .col_expr(
            sign_up_request::Column::ExpiresAt,
            sea_orm::sea_query::Expr::value(chrono::Utc::now() - chrono::Duration::minutes(1)),
        )
        .exec(&app.db)
        .await
        .unwrap();
    let res = confirm(&app, &late).await.text().await.unwrap();
    assert!(res.contains("NotFound"), "{res}");
    assert_eq!(users(&app).await, 2);

    // One address gets a few sign-up mails an hour, whichever kind: then the form says to wait
    // (for a taken address and a new one alike), and no more mail goes out.
    let limit = keyward_server::services::sign_up::MAILS_PER_ADDRESS_PER_HOUR as usize;
    for _ in 1..limit {
        assert_eq!(sign_up(&app, "owner@example.com").await, fresh);
    }
    let (status, body) = sign_up(&app, "owner@example.com").await;
    assert_ne!(status, 200);
    assert!(body.contains("RateLimited"), "{body}");
    sink.wait_for("owner@example.com", limit).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.received("owner@example.com").len(), limit);
    app.stop().await;
}
both_backends!(
    sign_up_answers_alike_and_the_mail_decides,
    super::sign_up_answers_alike_and_the_mail_decides
);
