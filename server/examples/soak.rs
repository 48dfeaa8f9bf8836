//! `make soak`: Keyward under a steady 80 % of its measured maximum request rate through the
//! public API for a while (10 minutes by default), with the mock provider injecting a mix of
//! faults — keys that get 401, 429 with Retry-After, 500, never answer (timeouts), or cut their
//! stream midway — on a PostgreSQL server of its own that is restarted once halfway through.
//! Reports requests by outcome, p99 over time, RSS at the start and the end, and whether every
//! metered request reached the database. Writes the report (docs/RELIABILITY.md).
//!
//!   soak [--keyward target/release/keyward] [--out docs/RELIABILITY.md] [--minutes 10]
//!
//! Needs root (to run the private PostgreSQL as the `postgres` user) and PostgreSQL's binaries
//! (`/usr/lib/postgresql/*/bin`).

use keyward::tokens::TokenScope;
use keyward_server::bench::{Target, free_port, rss_kib, spawn, wait_ready};
use keyward_server::services::{api_tokens, audit::By, catalogue, chatbots, keys};
use secrecy::SecretString;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The traffic mix: (name, key marker, streamed, share in percent).
const MIX: &[(&str, &str, bool, u32)] = &[
    ("ok", "good", false, 60),
    ("ok (stream)", "good", true, 16),
    ("401 invalid key", "invalid", false, 4),
    ("429 Retry-After", "retryafter", false, 5),
    ("500 provider error", "servererror", false, 5),
    ("timeout", "hang", false, 5),
    ("stream cut", "cut", true, 5),
];

/// The kind of the `n`-th request: the mix, spread evenly over every hundred requests.
fn pick(n: u64) -> (&'static str, &'static str, bool, u32) {
    let slot = (n % 100) as u32;
    let mut acc = 0;
    *MIX.iter()
        .find(|(_, _, _, share)| {
            acc += share;
            slot < acc
        })
        .unwrap_or(&MIX[0])
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// PostgreSQL's binaries (the newest installed major version).
fn pg_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's binaries in /usr/lib/postgresql")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    found.sort();
    found.pop().expect("pg_ctl")
}

/// Runs a PostgreSQL command as the `postgres` user (initdb refuses root).
fn as_postgres(bin: &Path, tool: &str, args: &[&str]) {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin.join(tool))
        .args(args)
        .output()
        .expect("runuser");
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How many sockets the process `pid` has open (its client connections, its connections to the
/// provider and to the database): what its memory follows.
fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| {
        dir.flatten()
            .filter(|e| {
                std::fs::read_link(e.path())
                    .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
            })
            .count()
    })
}

/// One soak request's result.
struct Outcome {
    kind: &'static str,
    status: String,
    at: Duration,
    latency_us: u64,
}

async fn send(client: &reqwest::Client, t: &Target, stream: bool) -> (String, u64) {
    let started = Instant::now();
    let body = serde_json::json!({
        "model": t.model, "stream": stream,
        "messages": [{"role": "user", "content": "hello soak, a few words please"}],
    });
    let mut req = client.post(&t.url).json(&body);
    for (k, v) in &t.headers {
        req = req.header(k, v);
    }
    let status = match req.send().await {
        Err(e) if e.is_timeout() => "client timeout".to_string(),
        Err(_) => "connection error".to_string(),
        Ok(res) => {
            let code = res.status().as_u16();
            let text = res.text().await.unwrap_or_default();
            if stream && code == 200 {
                if text.contains("[DONE]") {
                    "200 stream complete".into()
                } else {
                    "200 stream ended with an error event".into()
                }
            } else {
                code.to_string()
            }
        }
    };
    (
        status,
        u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
    )
}

#[tokio::main]
async fn main() {
    let keyward = PathBuf::from(arg("--keyward").unwrap_or("target/release/keyward".into()));
    let out = PathBuf::from(arg("--out").unwrap_or("docs/RELIABILITY.md".into()));
    let minutes: u64 = arg("--minutes").and_then(|m| m.parse().ok()).unwrap_or(10);
    let work = std::env::temp_dir().join(format!("keyward-soak-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();

    // A PostgreSQL server of its own (it is restarted halfway).
    let bin = pg_bin();
    let pg_dir = work.join("pg");
    std::fs::create_dir_all(&pg_dir).unwrap();
    Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(&work)
        .status()
        .unwrap();
    let pg_port = free_port();
    let pg_data = pg_dir.join("data");
    as_postgres(
        &bin,
        "initdb",
        &[
            "-D",
            pg_data.to_str().unwrap(),
            "-A",
            "trust",
            "-U",
            "postgres",
        ],
    );
    let pg_opts = format!(
        "-p {pg_port} -k {} -c listen_addresses=127.0.0.1",
        pg_dir.display()
    );
    let pg_log = pg_dir.join("pg.log");
    let pg_ctl = |action: &str| {
        as_postgres(
            &bin,
            "pg_ctl",
            &[
                "-D",
                pg_data.to_str().unwrap(),
                "-o",
                &pg_opts,
                "-l",
                pg_log.to_str().unwrap(),
                "-m",
                "fast",
                "-w",
                action,
            ],
        )
    };
    pg_ctl("start");
    let db_url = format!("postgres://postgres@127.0.0.1:{pg_port}/postgres");

    let mock_port = free_port();
    let mut mock = spawn(
        Command::new(&keyward).args([
            "mock-provider",
            "--bind",
            &format!("127.0.0.1:{mock_port}"),
            "--tokens-per-sec",
            "200",
        ]),
        &work.join("mock.log"),
    );
    wait_ready(
        &format!("http://127.0.0.1:{mock_port}/__mock/stats"),
        &mut mock,
        "mock",
    )
    .await;

    // A workspace with a chatbot per fault, each with its own key and a token bound to it.
    let master = work.join("master.key");
    let allow = format!("127.0.0.1:{mock_port}");
    let tokens: BTreeMap<&str, String> = {
        let state = keyward_server::bench::fresh_state(&master, &db_url, &allow).await;
        let by = By::cli();
        catalogue::update_provider(
            &state.db,
            &state.changes,
            &state.gateway,
            &by,
            "openai",
            catalogue::ProviderChange {
                base_url: format!("http://127.0.0.1:{mock_port}/v1"),
                default_model: "mock-small".into(),
                byok_enabled: true,
            },
        )
        .await
        .unwrap();
        let ws = keyward_server::bench::business_workspace(&state, "Soak").await;
        let mut tokens = BTreeMap::new();
        for marker in [
            "good",
            "invalid",
            "retryafter",
            "servererror",
            "hang",
            "cut",
        ] {
            let bot = chatbots::create(
                &state.db,
                &by,
                ws.id,
                chatbots::NewChatbot {
                    name: format!("bot {marker}"),
                    provider: "openai".into(),
                    model: String::new(),
                    system_prompt: String::new(),
                    greeting: String::new(),
                    public: false,
                },
            )
            .await
            .unwrap();
            // Adding a key checks its shape only (no live call), so the faulty ones store too.
            keys::add(
                state.key_deps(),
                &by,
                keys::Scope::Chatbot {
                    workspace: ws.id,
                    chatbot: bot.id,
                },
                keys::NewKey {
                    provider: "openai".into(),
                    key: SecretString::from(format!("sk-soak-{marker}-000000000000")),
                    default_model: String::new(),
                    base_url: String::new(),
                },
            )
            .await
            .unwrap();
            let (_, token) = api_tokens::create(
                &state.db,
                &by,
                ws.id,
                api_tokens::NewToken {
                    name: format!("soak {marker}"),
                    scopes: vec![TokenScope::Chat],
                    chatbot: Some(bot.id),
                    expires_in_days: None,
                },
                None,
            )
            .await
            .unwrap();
            tokens.insert(marker, token.to_string());
        }
        state.usage.shutdown().await;
        tokens
    };

    let kw_port = free_port();
    let mut kw = keyward_server::bench::serve_keyward(
        Command::new(&keyward).env("KEYWARD_UPSTREAM_TIMEOUT_SECS", "3"),
        kw_port,
        &db_url,
        &master,
        &allow,
        &work.join("keyward.log"),
    )
    .await;
    let base = format!("http://127.0.0.1:{kw_port}");
    let target = |marker: &str| Target {
        name: marker.into(),
        url: format!("{base}/v1/chat/completions"),
        headers: vec![("authorization".into(), format!("Bearer {}", tokens[marker]))],
        model: "openai/mock-small".into(),
    };

    // The maximum: a closed-loop sweep of the same traffic mix (faults included: a timeout holds
    // its connection for the 3 s the gateway waits), 5 s per level.
    // Idle connections expire after 5 s, as with the official Python SDKs (httpx's keep-alive
    // expiry), so Keyward sees the connections the load needs, not every one a burst opened.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(2048)
        .pool_idle_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut levels = Vec::new();
    let mut swept = 0u64;
    for c in [16usize, 64, 256, 1024] {
        let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let until = Instant::now() + Duration::from_secs(5);
        let mut workers = tokio::task::JoinSet::new();
        for w in 0..c {
            let (client, done) = (client.clone(), done.clone());
            let targets: Vec<(Target, bool)> = (0..100u64)
                .map(|i| {
                    let (_, marker, stream, _) = pick(i.wrapping_mul(37).wrapping_add(w as u64));
                    (target(marker), stream)
                })
                .collect();
            workers.spawn(async move {
                let mut i = 0;
                while Instant::now() < until {
                    let (t, stream) = &targets[i % targets.len()];
                    send(&client, t, *stream).await;
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    i += 1;
                }
            });
        }
        while workers.join_next().await.is_some() {}
        let sent = done.load(std::sync::atomic::Ordering::Relaxed);
        swept += sent;
        let rps = sent as f64 / 5.0;
        eprintln!("soak: c={c}: {rps:.0} req/s");
        levels.push((c, rps));
    }
    let (best_c, max) = levels
        .iter()
        .copied()
        .fold((0, 0.0), |a, b| if b.1 > a.1 { b } else { a });
    let rate = (max * 0.8).max(1.0);
    eprintln!(
        "soak: max {max:.0} req/s (c={best_c}); running at {rate:.0} req/s for {minutes} min"
    );

    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let pid = kw.0.id();
    let total = Duration::from_secs(minutes * 60);
    let started = Instant::now();
    let mut rss = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut n: u64 = 0;
    let mut restarted = None;
    let mut next_rss = Duration::ZERO;
    let in_flight = Arc::new(tokio::sync::Semaphore::new(2048));
    let mut skipped = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    while started.elapsed() < total {
        ticker.tick().await;
        let at = started.elapsed();
        if at >= next_rss {
            rss.push((at, rss_kib(pid), sockets(pid)));
            next_rss += Duration::from_secs(10);
        }
        if restarted.is_none() && at >= total / 2 {
            eprintln!("soak: restarting PostgreSQL at {:.0} s", at.as_secs_f64());
            let t0 = Instant::now();
            pg_ctl("restart");
            restarted = Some((at, t0.elapsed()));
        }
        let (kind, marker, stream, _) = pick(n.wrapping_mul(37));
        n += 1;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            skipped += 1;
            continue;
        };
        let (client, t, outcomes) = (client.clone(), target(marker), outcomes.clone());
        tasks.spawn(async move {
            let (status, latency_us) = send(&client, &t, stream).await;
            drop(permit);
            if let Ok(mut o) = outcomes.lock() {
                o.push(Outcome {
                    kind,
                    status,
                    at,
                    latency_us,
                });
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    rss.push((elapsed, rss_kib(pid), sockets(pid)));

    // Metered before the graceful stop, then what reached the database after it.
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let metric = |name: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let (recorded, dropped) = (
        metric("keyward_usage_records_total"),
        metric("keyward_usage_records_dropped_total"),
    );
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = kw.0.wait();
    let rows = {
        use sea_orm::{ConnectionTrait, Database, Statement};
        let db = Database::connect(db_url.as_str()).await.unwrap();
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) AS n FROM usage_records",
            ))
            .await
            .unwrap()
            .unwrap();
        let n: i64 = row.try_get("", "n").unwrap();
        db.close().await.ok();
        n
    };
    pg_ctl("stop");

    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    let report = render(
        &outcomes,
        &rss,
        (max, best_c, rate),
        elapsed,
        restarted,
        (recorded, dropped, rows, skipped, swept),
    );
    std::fs::write(&out, &report).unwrap();
    print!("{report}");
    let _ = std::fs::remove_dir_all(&work);
}

fn render(
    outcomes: &[Outcome],
    rss: &[(Duration, u64, usize)],
    (max, best_c, rate): (f64, usize, f64),
    elapsed: Duration,
    restarted: Option<(Duration, Duration)>,
    (recorded, dropped, rows, skipped, swept): (u64, u64, i64, u64, u64),
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Reliability: the soak run\n");
    let _ = writeln!(
        s,
        "`make soak` output (written by `server/examples/soak.rs`; do not edit by hand). Keyward's \
         release binary on a PostgreSQL server of its own, the in-repo mock provider behind it, \
         the load from the same machine ({} CPUs).\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let _ = writeln!(
        s,
        "- Measured maximum: **{max:.0} requests/s** (the same traffic mix, closed loop at \
         c={best_c}); the soak offered **{rate:.0}/s** (80 %) for **{:.0} s**, open loop: {} \
         requests sent ({:.0}/s), {skipped} not sent because 2 048 were already in flight.",
        elapsed.as_secs_f64(),
        outcomes.len(),
        outcomes.len() as f64 / elapsed.as_secs_f64()
    );
    if let Some((at, took)) = restarted {
        let _ = writeln!(
            s,
            "- PostgreSQL was restarted at {:.0} s (`pg_ctl restart -m fast`, {:.1} s down).",
            at.as_secs_f64(),
            took.as_secs_f64()
        );
    }
    let _ = writeln!(s, "\n## Requests by outcome\n");
    let _ = writeln!(s, "| traffic | answer | requests |\n|---|---|---:|");
    let mut by: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for o in outcomes {
        *by.entry((o.kind, o.status.as_str())).or_default() += 1;
    }
    for ((kind, status), n) in &by {
        let _ = writeln!(s, "| {kind} | {status} | {n} |");
    }
    let _ = writeln!(
        s,
        "\nKeyward's answers to the faults: a key the provider refuses is 502 \
         `provider_key_rejected` (not 401, which would blame the caller's token); the provider's \
         429 is passed on with its Retry-After; a provider 500 and a provider that does not answer \
         within `KEYWARD_UPSTREAM_TIMEOUT_SECS` (3 s here) are 503; a stream cut midway ends with \
         an error event."
    );
    let _ = writeln!(
        s,
        "\n## p99 over time (every request, by when it was sent)\n"
    );
    let _ = writeln!(
        s,
        "| from | requests | p50 ms | p99 ms | Keyward's RSS then | its open sockets then |\n\
         |---:|---:|---:|---:|---:|---:|"
    );
    let window = 60.0;
    let windows = (elapsed.as_secs_f64() / window).ceil() as usize;
    for w in 0..windows {
        let mut lat: Vec<u64> = outcomes
            .iter()
            .filter(|o| (o.at.as_secs_f64() / window) as usize == w && o.kind.starts_with("ok"))
            .map(|o| o.latency_us)
            .collect();
        if lat.is_empty() {
            continue;
        }
        lat.sort_unstable();
        let (rss_then, sockets_then) = rss
            .iter()
            .find(|(at, _, _)| at.as_secs_f64() >= w as f64 * window)
            .map_or((0, 0), |r| (r.1, r.2));
        let _ = writeln!(
            s,
            "| {:.0} s | {} | {} | {} | {:.1} MiB | {sockets_then} |",
            w as f64 * window,
            lat.len(),
            keyward_server::bench::ms3(keyward_server::bench::percentile(&lat, 50.0)),
            keyward_server::bench::ms3(keyward_server::bench::percentile(&lat, 99.0)),
            rss_then as f64 / 1024.0,
        );
    }
    let _ = writeln!(
        s,
        "\n(Latencies of the good traffic only; the faulty kinds' times are the faults' own.)"
    );
    let _ = writeln!(s, "\n## Memory\n");
    let warm = rss
        .iter()
        .find(|(at, _, _)| at.as_secs() >= 60)
        .or(rss.first())
        .map_or(0, |r| r.1);
    let peak = rss.iter().map(|r| r.1).max().unwrap_or(0);
    let end = rss.last().map_or(0, |r| r.1);
    let sockets_at = |kib: u64| rss.iter().find(|r| r.1 == kib).map_or(0, |r| r.2);
    let _ = writeln!(
        s,
        "- RSS after one minute: {:.1} MiB ({} sockets); at the end: {:.1} MiB ({} sockets); \
         growth {:+.1} MiB; peak {:.1} MiB ({} sockets); at the start (after the maximum's \
         sweep): {:.1} MiB.",
        warm as f64 / 1024.0,
        sockets_at(warm),
        end as f64 / 1024.0,
        sockets_at(end),
        (end as f64 - warm as f64) / 1024.0,
        peak as f64 / 1024.0,
        sockets_at(peak),
        rss.first().map_or(0, |r| r.1) as f64 / 1024.0,
    );
    let _ = writeln!(
        s,
        "- Keyward's memory follows its open connections (each client connection and each \
         connection to the provider holds its buffers): a burst — the sweep at c=1024, the \
         requests that pile up while PostgreSQL restarts — opens more, and the memory comes back \
         as they close (idle provider connections: at most {} per host, {} s; the load's client \
         lets idle ones go after 5 s, like the official SDKs).",
        keyward_server::gateway::POOL_IDLE_PER_HOST,
        keyward_server::gateway::POOL_IDLE_TIMEOUT.as_secs(),
    );
    let _ = writeln!(s, "\n## Nothing lost\n");
    let _ = writeln!(
        s,
        "- Requests metered: the soak's {} and the maximum sweep's {swept}. Usage records handed \
         to the writer (`keyward_usage_records_total`): **{recorded}**; dropped: **{dropped}**; \
         rows in the database after the graceful stop: **{rows}** ({}).",
        outcomes.len(),
        if recorded != outcomes.len() as u64 + swept {
            "MISMATCH: records and requests differ"
        } else if u64::try_from(rows).unwrap_or(0) == recorded && dropped == 0 {
            "one record per request, and every record was written"
        } else {
            "MISMATCH: records were lost"
        }
    );
    s
}
