//! Browser and edge hardening over HTTP: security headers and the page script policy, chat pages
//! embeddable only by their chatbot's sites, the client address and scheme from trusted proxies
//! only, the metrics token, and REST bodies that refuse unknown fields.

use crate::chat::{Chat, chat_world};
use crate::helpers::{Backend, both_backends};
use keyward_app::api::UpdateChatbot;
use keyward_server::mock_provider::MockConfig;
use leptos::server_fn::ServerFn;
use serde_json::{Value, json};

fn header<'a>(res: &'a reqwest::Response, name: &str) -> Vec<&'a str> {
    res.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect()
}

async fn allow_sites(c: &Chat, sites: &[&str]) -> (u16, String) {
    let mut form = vec![
        ("workspace_id", c.ws()),
        ("chatbot_id", c.bot_id.clone()),
        ("update[name]", "Helper".into()),
        ("update[provider]", "openai".into()),
        ("update[model]", String::new()),
        ("update[system_prompt]", String::new()),
        ("update[greeting]", String::new()),
        ("update[temperature]", "0.5".into()),
        ("update[max_tokens]", "200".into()),
        ("update[public]", "true".into()),
        ("update[daily_cap]", "0".into()),
    ];
    let names = ["update[allowed_sites][0]", "update[allowed_sites][1]"];
    for (name, s) in names.into_iter().zip(sites) {
        form.push((name, s.to_string()));
    }
    c.post_form(UpdateChatbot::PATH, form, &c.w.owner.clone())
        .await
}

async fn headers_and_framing(backend: Backend) {
    let c = chat_world(backend, MockConfig::default(), |s| {
        s.metrics_token = Some("metrics-token-0123456789".into());
    })
    .await;
    // A dashboard page: nosniff, no referrer, never framed, scripts only by this render's nonce.
    let res =
        c.w.app
            .client
            .get(c.w.app.url("/sign-in"))
            .send()
            .await
            .unwrap();
    assert_eq!(header(&res, "x-content-type-options"), ["nosniff"]);
    assert_eq!(header(&res, "referrer-policy"), ["no-referrer"]);
    assert_eq!(header(&res, "x-frame-options"), ["DENY"]);
    let policies = header(&res, "content-security-policy").join(" | ");
    assert!(policies.contains("frame-ancestors 'none'"), "{policies}");
    let nonce = policies
        .split("'nonce-")
        .nth(1)
        .and_then(|r| r.split('\'').next())
        .expect("a nonce in the script policy")
        .to_string();
    assert!(policies.contains("script-src 'self' 'nonce-") && !policies.contains("unsafe-inline"));
    let html = res.text().await.unwrap();
    assert!(
        html.contains(&format!("nonce=\"{nonce}\"")),
        "the hydration scripts carry it"
    );
    let again =
        c.w.app
            .client
            .get(c.w.app.url("/sign-in"))
            .send()
            .await
            .unwrap();
    assert!(
        !header(&again, "content-security-policy")
            .join(" ")
            .contains(&nonce),
        "a new nonce per render"
    );

    // A chat page: framed by no one until its chatbot lists sites, then by those alone.
    let chat_page = format!("/chat/{}/helper", c.w.ws.slug);
    let res =
        c.w.app
            .client
            .get(c.w.app.url(&chat_page))
            .send()
            .await
            .unwrap();
    assert!(
        header(&res, "content-security-policy")
            .join(" ")
            .contains("frame-ancestors 'none'")
    );
    let (s, out) = allow_sites(&c, &["https://shop.example.com", "https://*.example.org"]).await;
    assert_eq!(s, 200, "{out}");
    let res =
        c.w.app
            .client
            .get(c.w.app.url(&chat_page))
            .send()
            .await
            .unwrap();
    let policies = header(&res, "content-security-policy").join(" | ");
    assert!(
        policies.contains("frame-ancestors https://shop.example.com https://*.example.org"),
        "{policies}"
    );
    assert!(header(&res, "x-frame-options").is_empty());
    // Other pages stay unframeable; a site that could break the header is refused.
    let res =
        c.w.app
            .client
            .get(c.w.app.url("/keys"))
            .send()
            .await
            .unwrap();
    assert_eq!(header(&res, "x-frame-options"), ["DENY"]);
    let (s, out) = allow_sites(&c, &["https://a.example.com; script-src *"]).await;
    assert_ne!(s, 200);
    assert!(out.contains("is not a site"), "{out}");

    // Metrics need the operator's token.
    let res =
        c.w.app
            .client
            .get(c.w.app.url("/metrics"))
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), 401);
    let res =
        c.w.app
            .client
            .get(c.w.app.url("/metrics"))
            .bearer_auth("metrics-token-0123456789")
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("keyward_usage_records_total")
    );

    // REST bodies refuse a field the operation does not take, and name it.
    let res =
        c.w.app
            .client
            .post(
                c.w.app
                    .url(&format!("/api/v1/workspaces/{}/chatbots", c.ws())),
            )
            .header("cookie", &c.w.owner)
            .header(keyward::http::CSRF_HEADER, "1")
            .json(&json!({"name": "Sneaky", "provider": "openai", "workspace_id": "other"}))
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), 422);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`workspace_id`"),
        "{body}"
    );
}
both_backends!(headers_and_framing, super::headers_and_framing);

/// Behind a trusted proxy the client is the hop it names, and the scheme it saw decides whether
/// cookies are `Secure` (`__Host-`); from anyone else those headers mean nothing.
async fn trusted_proxies_only(backend: Backend) {
    use keyward_server::services::accounts;
    for trusted in [false, true] {
        let app = crate::helpers::spawn_app_with(backend, |s| {
            s.visitor_messages_per_minute = 1;
            if trusted {
                s.trusted_proxies = "127.0.0.1/32".into();
            }
        })
        .await;
        crate::helpers::owner_cookie(&app).await;
        let sign_in = |proto: &'static str| {
            app.client
                .post(app.url(keyward_app::api::SignIn::PATH))
                .header(keyward::http::CSRF_HEADER, "1")
                .header("x-forwarded-proto", proto)
                .header("x-forwarded-for", "198.51.100.20")
                .form(&[
                    ("email", "owner@example.com"),
                    ("password", "correct horse battery"),
                ])
                .send()
        };
        let res = sign_in("https").await.unwrap();
        assert_eq!(res.status(), 200);
        let cookie = header(&res, "set-cookie").join(" | ");
        if trusted {
            assert!(
                cookie.starts_with(keyward::http::SESSION_COOKIE_SECURE)
                    && cookie.contains("Secure"),
                "{cookie}"
            );
        } else {
            assert!(
                cookie.starts_with(keyward::http::SESSION_COOKIE) && !cookie.contains("Secure"),
                "an untrusted peer's X-Forwarded-Proto is ignored: {cookie}"
            );
        }
        let _ = accounts::needs_setup(&app.db).await;
        app.stop().await;
    }
}
both_backends!(trusted_proxies_only, super::trusted_proxies_only);

/// Visitor limits key on the real client: behind a trusted proxy each forwarded address has its
/// own bucket (IPv6 per /64); from an untrusted peer the forwarded header is ignored, so it is
/// one client however many addresses it claims.
async fn visitor_buckets_follow_the_real_client(backend: Backend) {
    for trusted in [false, true] {
        let c = chat_world(backend, MockConfig::default(), |s| {
            s.visitor_messages_per_minute = 1;
            if trusted {
                s.trusted_proxies = "127.0.0.1".into();
            }
        })
        .await;
        let url =
            c.w.app
                .url(&keyward::http::chat_endpoint(&c.w.ws.slug, "helper"));
        let mut statuses = Vec::new();
        // Cookie-less visitors (a new visitor id each), three addresses (per address: 3 a
        // minute), the last two in one IPv6 /64.
        for from in [
            "198.51.100.1",
            "198.51.100.2",
            "2001:db8:1:2::1",
            "2001:db8:1:2::2",
        ] {
            for _ in 0..2 {
                let res =
                    c.w.app
                        .client
                        .post(&url)
                        .header(keyward::http::CSRF_HEADER, "1")
                        .header("x-forwarded-for", from)
                        .json(&json!({"message": "hi"}))
                        .send()
                        .await
                        .unwrap();
                statuses.push(res.status().as_u16());
                let _ = res.bytes().await;
            }
        }
        let limited = statuses.iter().filter(|s| **s == 429).count();
        if trusted {
            // 198.51.100.1 ×2, .2 ×2: within 3 each; the /64 sends 4: one over.
            assert_eq!(limited, 1, "{statuses:?}");
        } else {
            // All eight come from the proxy's own address: 3 pass, 5 are limited.
            assert_eq!(limited, 5, "{statuses:?}");
        }
    }
}
both_backends!(
    visitor_buckets_follow_the_real_client,
    super::visitor_buckets_follow_the_real_client
);
