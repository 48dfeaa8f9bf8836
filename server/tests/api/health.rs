use crate::helpers::{Backend, both_backends, spawn_app};
use serde_json::Value;

async fn liveness_and_readiness(backend: Backend) {
    let app = spawn_app(backend).await;

    let live = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(live.status(), 200);
    assert_eq!(live.json::<Value>().await.unwrap()["status"], "ok");

    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    let expected = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(body["database"], expected);
    app.stop().await;
}
both_backends!(liveness_and_readiness, super::liveness_and_readiness);

async fn readiness_fails_when_the_database_is_gone(backend: Backend) {
    let app = spawn_app(backend).await;
    app.db.clone().close().await.unwrap();
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    // Liveness does not depend on the database.
    let live = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(live.status(), 200);
}
both_backends!(
    readiness_fails_when_the_database_is_gone,
    super::readiness_fails_when_the_database_is_gone
);

async fn bodies_over_the_limit_are_refused(backend: Backend) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app(backend).await;
    // Raw HTTP: declare a 3 MiB body and send none. The server must answer 413 from the header
    // alone (a client streaming the body can hit a closed socket, which is fine but untestable).
    let mut tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let request = format!(
        "POST /api/anything HTTP/1.1\r\nHost: {}\r\n{}: 1\r\nContent-Length: {}\r\n\r\n",
        app.addr,
        keyward::http::CSRF_HEADER,
        3 * 1024 * 1024
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = vec![0u8; 64];
    let n = tcp.read(&mut response).await.unwrap();
    let head = String::from_utf8_lossy(&response[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    app.stop().await;
}
both_backends!(
    bodies_over_the_limit_are_refused,
    super::bodies_over_the_limit_are_refused
);
