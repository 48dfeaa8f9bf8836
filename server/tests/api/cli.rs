//! The `keyward` binary: help, and clear one-line failures for bad configuration.

use std::process::{Command, Output};

fn keyward(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyward"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    let dir = std::env::temp_dir().join(format!("kw-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    cmd.current_dir(&dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run keyward")
}

fn assert_clean_failure(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "should fail: {stderr}");
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
    assert!(!stderr.contains("RUST_BACKTRACE"), "no panic: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].starts_with("keyward: error: "), "{stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in {stderr}");
}

#[test]
fn help_lists_the_subcommands() {
    let out = keyward(&["--help"], &[]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for sub in ["serve", "migrate", "gen-master-key"] {
        assert!(text.contains(sub), "{sub} in {text}");
    }
}

#[test]
fn unknown_database_scheme_is_a_clear_error() {
    let out = keyward(
        &["migrate"],
        &[("KEYWARD_DATABASE_URL", "mysql://root:pw@h/k")],
    );
    assert_clean_failure(&out, "unsupported database URL scheme");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("pw@"));
}

#[test]
fn unreachable_database_is_a_clear_error_without_the_password() {
    let out = keyward(
        &["migrate"],
        &[(
            "KEYWARD_DATABASE_URL",
            "postgres://kw:hunter2@127.0.0.1:1/k",
        )],
    );
    assert_clean_failure(&out, "cannot connect to postgres://kw:***@127.0.0.1:1/k");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("hunter2"));
}

#[test]
fn malformed_values_are_clear_errors() {
    for (k, v, needle) in [
        ("KEYWARD_BIND", "localhost", "bind"),
        ("KEYWARD_MAX_BODY_BYTES", "lots", "max_body_bytes"),
        ("KEYWARD_LOG_FORMAT", "xml", "log_format"),
    ] {
        let out = keyward(&["serve"], &[(k, v)]);
        assert_clean_failure(&out, needle);
    }
}

#[test]
fn missing_config_file_is_a_clear_error() {
    let out = keyward(&["--config", "/nonexistent/keyward.toml", "migrate"], &[]);
    assert_clean_failure(&out, "does not exist");
}

#[test]
fn migrate_creates_the_sqlite_database() {
    let dir = std::env::temp_dir().join(format!("kw-mig-{}", uuid::Uuid::new_v4()));
    let url = format!("sqlite://{}/sub/keyward.db", dir.display());
    let out = keyward(
        &["migrate"],
        &[
            ("KEYWARD_DATABASE_URL", &url),
            ("KEYWARD_LOG_FILTER", "off"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.join("sub/keyward.db").exists());
    // A second run is a no-op.
    let out = keyward(
        &["migrate"],
        &[
            ("KEYWARD_DATABASE_URL", &url),
            ("KEYWARD_LOG_FILTER", "off"),
        ],
    );
    assert!(out.status.success());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn gen_master_key_prints_the_path_not_the_key() {
    let dir = std::env::temp_dir().join(format!("kw-gmk-{}", uuid::Uuid::new_v4()));
    let path = dir.join("master.key");
    let out = keyward(&["gen-master-key", "--out", path.to_str().unwrap()], &[]);
    assert!(out.status.success());
    let key = std::fs::read_to_string(&path).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(path.to_str().unwrap()));
    assert!(!stdout.contains(key.trim()));
    let again = keyward(&["gen-master-key", "--out", path.to_str().unwrap()], &[]);
    assert_clean_failure(&again, "refusing to overwrite");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn admin_create_reads_the_password_from_a_file_never_an_argument() {
    let dir = std::env::temp_dir().join(format!("kw-adm-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}/keyward.db", dir.display());
    let pw = dir.join("pw");
    std::fs::write(&pw, "a long enough password\n").unwrap();
    let env = [
        ("KEYWARD_DATABASE_URL", url.as_str()),
        ("KEYWARD_LOG_FILTER", "off"),
    ];
    let args = [
        "admin",
        "create",
        "--email",
        "Root@Example.com",
        "--password-file",
    ];
    let out = keyward(&[&args[..], &[pw.to_str().unwrap()]].concat(), &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("created platform admin root@example.com")
    );
    // The same email again is a clear conflict.
    let again = keyward(&[&args[..], &[pw.to_str().unwrap()]].concat(), &env);
    assert_clean_failure(&again, "cannot be created with this email");
    // There is no --password flag, and without a terminal or file it says what to do.
    let flag = keyward(
        &[
            "admin",
            "create",
            "--email",
            "x@example.com",
            "--password",
            "hunter2hunter2",
        ],
        &env,
    );
    assert!(!flag.status.success());
    let no_tty = keyward(&["admin", "create", "--email", "x@example.com"], &env);
    assert_clean_failure(&no_tty, "use --password-file");
    let short = dir.join("short");
    std::fs::write(&short, "short\n").unwrap();
    let weak = keyward(
        &[
            "admin",
            "create",
            "--email",
            "y@example.com",
            "--password-file",
            short.to_str().unwrap(),
        ],
        &env,
    );
    assert_clean_failure(&weak, "at least 10 characters");
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn provider_set_changes_the_catalogue_and_is_audited() {
    let dir = std::env::temp_dir().join(format!("kw-prov-{}", uuid::Uuid::new_v4()));
    let url = format!("sqlite://{}/keyward.db", dir.display());
    let env = [
        ("KEYWARD_DATABASE_URL", url.as_str()),
        ("KEYWARD_LOG_FILTER", "off"),
        ("KEYWARD_ALLOWED_PRIVATE_UPSTREAMS", "127.0.0.1:9100"),
    ];
    let out = keyward(
        &[
            "provider",
            "set",
            "openai",
            "--base-url",
            "http://127.0.0.1:9100/v1",
            "--default-model",
            "mock-small",
        ],
        &env,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = keyward(&["provider", "set", "groq", "--byok", "false"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Not allowlisted: refused with the reason, nothing changes.
    let out = keyward(
        &[
            "provider",
            "set",
            "mistral",
            "--base-url",
            "https://10.0.0.1/v1",
        ],
        &env,
    );
    assert_clean_failure(&out, "private, local or reserved");
    let out = keyward(&["provider", "set", "nope"], &env);
    assert_clean_failure(&out, "unknown provider");

    let db =
        keyward_server::db::connect_url(&keyward_server::config::DatabaseUrl::new(url.as_str()), 2)
            .await
            .unwrap();
    let providers = keyward_server::services::catalogue::providers(&db)
        .await
        .unwrap();
    let get = |id: &str| providers.iter().find(|p| p.id == id).unwrap().clone();
    assert_eq!(
        get("openai").base_url.as_deref(),
        Some("http://127.0.0.1:9100/v1")
    );
    assert_eq!(get("openai").default_model.as_deref(), Some("mock-small"));
    assert!(get("openai").byok_enabled);
    assert!(!get("groq").byok_enabled);
    assert_eq!(
        get("groq").base_url.as_deref(),
        Some("https://api.groq.com/openai/v1"),
        "untouched"
    );
    assert_eq!(
        get("mistral").base_url.as_deref(),
        Some("https://api.mistral.ai/v1")
    );
    let log = keyward_server::services::audit::list(&db, None, &Default::default())
        .await
        .unwrap();
    let actions: Vec<&str> = log
        .entries
        .iter()
        .rev()
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(actions, ["provider.updated", "byok.disabled"]);
    db.close().await.ok();
    std::fs::remove_dir_all(dir).ok();
}
