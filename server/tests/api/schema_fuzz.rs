//! Schema fuzzing of the management REST API: schemathesis (pinned, from PyPI) reads
//! `/api/v1/openapi.json` and sends generated and mutated requests to every operation with a
//! management token, for a bounded time. No answer may be a 5xx, and every answer must match the
//! document (status code, content type, headers, body schema).

use crate::chat::chat_world;
use crate::helpers::Backend;
use keyward::tokens::TokenScope;
use keyward_server::mock_provider::MockConfig;

/// The time the fuzzer may spend on each API, in seconds (`KEYWARD_SCHEMA_FUZZ_SECS` to change it).
const DEFAULT_SECS: u64 = 60;

/// Runs schemathesis on the document at `doc` with `token`, for `secs`, with `checks`.
async fn schemathesis(
    c: &crate::chat::Chat,
    doc: &str,
    token: &str,
    checks: &str,
    exclude: &[&str],
    secs: u64,
) -> String {
    let root = crate::helpers::repo_root();
    let bin = crate::helpers::venv_bin("schema");
    let mut cmd = tokio::process::Command::new(format!("{bin}/schemathesis"));
    // Its cache (.schemathesis/) goes under target/, not into the source tree.
    cmd.current_dir(root.join("target"));
    cmd.arg("--config-file")
        .arg(root.join("end2end/schema/schemathesis.toml"))
        .arg("run")
        .arg(c.w.app.url(doc))
        .args([
            "--checks",
            checks,
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--no-color",
        ])
        .args(["--max-time", &secs.to_string()]);
    for op in exclude {
        cmd.args(["--exclude-operation-id", op]);
    }
    let out = cmd
        .env("KEYWARD_TOKEN", token)
        .env("KEYWARD_WORKSPACE", c.w.ws.id.to_string())
        .output()
        .await
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{report}");
    assert!(
        out.status.success(),
        "schema fuzzing of {doc} found failures:\n{report}"
    );
    assert!(
        report.contains("passed"),
        "the fuzzer ran test cases:\n{report}"
    );
    report
}

fn budget() -> u64 {
    std::env::var("KEYWARD_SCHEMA_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(DEFAULT_SECS)
}

/// The management API: no 5xx at all, and every answer as documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_management_api_survives_schema_fuzzing() {
    let c = chat_world(Backend::Sqlite, MockConfig::default(), |_| {}).await;
    let t = crate::public_api::token(&c, &[TokenScope::Management])
        .await
        .1;
    // Revoking tokens is covered by the REST tests; here it would revoke the fuzzer's own token
    // halfway and leave it testing 401s.
    schemathesis(
        &c,
        "/api/v1/openapi.json",
        &t,
        "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance",
        &["revokeToken"],
        budget(),
    )
    .await;
}

/// The public chat API (against the mock provider): every answer as documented — the only 5xx
/// it may give are the documented 502/503 of a failing provider, never Keyward's own 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_api_survives_schema_fuzzing() {
    let c = chat_world(Backend::Sqlite, MockConfig::default(), |_| {}).await;
    let t = crate::public_api::token(&c, &[TokenScope::Chat, TokenScope::Models])
        .await
        .1;
    schemathesis(
        &c,
        "/v1/openapi.json",
        &t,
        "status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance",
        &[],
        budget(),
    )
    .await;
}
