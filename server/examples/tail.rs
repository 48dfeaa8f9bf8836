//! `make bench`, the c=1 tail: one request at a time for 10-second windows, measured by wrk
//! (keep-alive), with the mock provider and wrk on CPU 0 and Keyward pinned to CPU 1. Each
//! window runs with idle CPUs polling (`/dev/cpu_dma_latency` held at 0) and with them halting
//! (this VM's default), on SQLite and on PostgreSQL. *Added* = through Keyward − straight to the
//! mock, at the same percentile. With `--before BIN`, an earlier build is measured in the same
//! run, on the same database, right before the current one.
//!
//! PostgreSQL is measured twice: with its server processes wherever the scheduler puts them (on
//! this 2-CPU machine, often on Keyward's CPU, where each usage flush's backend competes with
//! the requests), and with them kept on CPU 0 beside wrk and the mock — as a database on its own
//! host would be. Their CPU affinity is restored at the end.
//!
//! The floor: a *relay* — the same stack (Tokio, axum, reqwest) passing each request to the
//! mock and its answer back, with nothing else: no database, no key, no metering — measured in
//! the same harness, on CPU 1. What a relay adds is what this machine charges any gateway for
//! its two hops; what Keyward adds beyond the relay is its own.
//!
//!   tail [--keyward target/release/keyward] [--before BIN] [--seconds 10]
//!        [--postgres postgres://postgres@127.0.0.1:5432] [--out docs/TAIL.md]

/// The relay allocates as Keyward does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use keyward_server::bench::{self, IdlePolling, free_port, spawn, wait_ready};
use sea_orm::ConnectionTrait;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Opts {
    keyward: PathBuf,
    before: Option<PathBuf>,
    seconds: u32,
    postgres: String,
    out: PathBuf,
    /// Set up SQLite, start the mock and Keyward, print how to reach them, and wait (for
    /// profiling a window by hand).
    hold: bool,
}

fn opts() -> Opts {
    let mut o = Opts {
        keyward: "target/release/keyward".into(),
        before: None,
        seconds: 10,
        postgres: "postgres://postgres@127.0.0.1:5432".into(),
        out: "docs/TAIL.md".into(),
        hold: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--keyward" => o.keyward = args.next().expect("--keyward BIN").into(),
            "--before" => o.before = Some(args.next().expect("--before BIN").into()),
            "--seconds" => o.seconds = args.next().expect("--seconds N").parse().expect("N"),
            "--postgres" => o.postgres = args.next().expect("--postgres URL"),
            "--out" => o.out = args.next().expect("--out PATH").into(),
            "--hold" => o.hold = true,
            other => panic!("unknown argument {other}"),
        }
    }
    o
}

/// The floor's relay (`--relay PORT UPSTREAM`, run by this program in a process of its own):
/// `POST /v1/chat/completions` forwarded to UPSTREAM over a pooled keep-alive connection, the
/// answer's status and body passed back. Serves until killed.
fn relay(port: u16, upstream: String) -> ! {
    use axum::body::Bytes;
    use axum::http::StatusCode;
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    rt.block_on(async move {
        let client = reqwest::Client::new();
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(move |body: Bytes| {
                let (client, upstream) = (client.clone(), upstream.clone());
                async move {
                    let res = client
                        .post(&upstream)
                        .header("content-type", "application/json")
                        .header("authorization", "Bearer sk-bench-key-0000")
                        .body(body)
                        .send()
                        .await;
                    match res {
                        Ok(r) => {
                            let status = StatusCode::from_u16(r.status().as_u16())
                                .unwrap_or(StatusCode::BAD_GATEWAY);
                            (status, r.bytes().await.unwrap_or_default())
                        }
                        Err(_) => (StatusCode::BAD_GATEWAY, Bytes::new()),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("the relay's port");
        axum::serve(listener, app).await.expect("the relay");
    });
    std::process::exit(0)
}

/// One wrk window's figures, in microseconds.
#[derive(Clone, Copy, Debug, Default)]
struct Window {
    requests: u64,
    errors: u64,
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    max: u64,
}

const WRK_SCRIPT: &str = r#"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TAIL_TOKEN")
wrk.body = '{"model":"' .. os.getenv("TAIL_MODEL") .. '","messages":[{"role":"user","content":"hello bench"}]}'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d\n", summary.requests,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
"#;

/// One window of `seconds` of c=1 keep-alive requests, wrk on CPU 0.
fn wrk(script: &Path, url: &str, token: &str, model: &str, seconds: u32) -> Window {
    let out = Command::new("taskset")
        .args(["-c", "0", "wrk", "-t1", "-c1", "--timeout", "5s"])
        .arg(format!("-d{seconds}s"))
        .arg("-s")
        .arg(script)
        .arg(url)
        .env("TAIL_TOKEN", token)
        .env("TAIL_MODEL", model)
        .output()
        .expect("wrk (Debian package `wrk`)");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("wrk printed no result: {text}"));
    let n: Vec<u64> = line
        .split_whitespace()
        .map(|v| v.parse().expect("a number"))
        .collect();
    Window {
        requests: n[0],
        errors: n[1],
        p50: n[2],
        p90: n[3],
        p99: n[4],
        p999: n[5],
        max: n[6],
    }
}

struct Row {
    db: String,
    build: String,
    halting: bool,
    direct: Window,
    via: Window,
}

/// A fresh PostgreSQL database for this run: its URL and a guard that drops it.
async fn pg_database(admin: &str) -> Option<(String, PgDrop)> {
    let name = format!("keyward_tail_{}", std::process::id());
    let conn = sea_orm::Database::connect(format!("{admin}/postgres"))
        .await
        .ok()?;
    conn.execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .ok()?;
    Some((
        format!("{admin}/{name}"),
        PgDrop {
            admin: admin.to_string(),
            name,
        },
    ))
}

/// The PostgreSQL server's processes (the postmaster and every backend, including the ones it
/// starts later: they inherit its affinity) kept on CPU 0; their CPU lists are put back on drop.
struct PgPinned {
    saved: Vec<(String, String)>,
}

impl PgPinned {
    fn to_cpu0() -> Option<Self> {
        let pids = Command::new("pgrep")
            .args(["-x", "postgres"])
            .output()
            .ok()?;
        let mut saved = Vec::new();
        for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
            let now = Command::new("taskset").args(["-pc", pid]).output().ok()?;
            let list = String::from_utf8_lossy(&now.stdout)
                .rsplit(':')
                .next()?
                .trim()
                .to_string();
            let ok = Command::new("taskset")
                .args(["-pc", "0", pid])
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                saved.push((pid.to_string(), list));
            }
        }
        (!saved.is_empty()).then_some(PgPinned { saved })
    }
}

impl Drop for PgPinned {
    fn drop(&mut self) {
        for (pid, list) in &self.saved {
            let _ = Command::new("taskset").args(["-pc", list, pid]).output();
        }
    }
}

struct PgDrop {
    admin: String,
    name: String,
}

impl PgDrop {
    async fn drop_now(self) {
        if let Ok(conn) = sea_orm::Database::connect(format!("{}/postgres", self.admin)).await {
            let _ = conn
                .execute_unprepared(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .await;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, port, upstream] = args.as_slice()
        && flag == "--relay"
    {
        relay(
            port.parse().expect("--relay PORT UPSTREAM"),
            upstream.clone(),
        );
    }
    run();
}

#[tokio::main]
async fn run() {
    let o = opts();
    let work = std::env::temp_dir().join(format!("keyward-tail-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let script = work.join("c1.lua");
    std::fs::write(&script, WRK_SCRIPT).unwrap();

    // The mock on CPU 0, with wrk.
    let m = free_port();
    let mut mock = spawn(
        Command::new("taskset")
            .args(["-c", "0"])
            .arg(&o.keyward)
            .args(["mock-provider", "--bind", &format!("127.0.0.1:{m}")]),
        &work.join("mock.log"),
    );
    wait_ready(
        &format!("http://127.0.0.1:{m}/__mock/stats"),
        &mut mock,
        "mock",
    )
    .await;
    let direct = format!("http://127.0.0.1:{m}/v1/chat/completions");
    let allow = format!("127.0.0.1:{m}");

    let mut builds: Vec<(String, PathBuf)> = Vec::new();
    if let Some(b) = &o.before {
        builds.push(("before".into(), b.clone()));
    }
    builds.push(("after".into(), o.keyward.clone()));

    let mut rows = Vec::new();
    let sqlite = format!("sqlite://{}/keyward.db?mode=rwc", work.display());
    let pg = pg_database(&o.postgres).await;
    // (label, URL, keep the PostgreSQL server on CPU 0)
    let mut dbs: Vec<(String, String, bool)> = vec![("SQLite".into(), sqlite, false)];
    if let Some((url, _)) = &pg {
        dbs.push(("PostgreSQL".into(), url.clone(), false));
        dbs.push(("PostgreSQL, server on CPU 0".into(), url.clone(), true));
    } else {
        eprintln!(
            "tail: PostgreSQL at {} is not reachable; SQLite only",
            o.postgres
        );
    }
    if o.hold {
        dbs.truncate(1);
    }
    let mut set_up: Vec<(String, PathBuf, String)> = Vec::new();
    let mut pinned_pg: Option<PgPinned> = None;
    for (i, (db, url, pin)) in dbs.iter().enumerate() {
        let known = set_up.iter().find(|(u, _, _)| u == url).cloned();
        let (master, token) = match known {
            Some((_, master, token)) => (master, token),
            None => {
                let master = work.join(format!("master-{i}.key"));
                let state = bench::fresh_state(&master, url, &allow).await;
                let token = bench::routed_workspace(&state, &[("openai", m)]).await;
                state.usage.shutdown().await;
                set_up.push((url.clone(), master.clone(), token.clone()));
                (master, token)
            }
        };
        if *pin && pinned_pg.is_none() {
            pinned_pg = PgPinned::to_cpu0();
            if pinned_pg.is_none() {
                eprintln!("tail: could not pin the PostgreSQL server (not root?): row skipped");
                continue;
            }
        }
        for halting in [false, true] {
            let hold = if halting { None } else { IdlePolling::hold() };
            if !halting && hold.is_none() {
                eprintln!(
                    "tail: cannot hold /dev/cpu_dma_latency (not root?): polling rows skipped"
                );
                continue;
            }
            let straight = wrk(
                &script,
                &direct,
                "sk-bench-key-0000",
                "mock-small",
                o.seconds,
            );
            // The floor, once per idle mode (it has no database).
            if i == 0 && !o.hold {
                let port = free_port();
                let mut r = spawn(
                    Command::new("taskset")
                        .args(["-c", "1"])
                        .arg(std::env::current_exe().expect("this program"))
                        .args(["--relay", &port.to_string(), &direct]),
                    &work.join("relay.log"),
                );
                let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
                wait_listening(port, &mut r).await;
                wrk(&script, &url, "relay", "mock-small", 2);
                let via = wrk(&script, &url, "relay", "mock-small", o.seconds);
                eprintln!(
                    "tail: relay {}: p99 direct {} µs, via {} µs",
                    if halting { "halting" } else { "polling" },
                    straight.p99,
                    via.p99
                );
                rows.push(Row {
                    db: "none".into(),
                    build: "relay (floor)".into(),
                    halting,
                    direct: straight,
                    via,
                });
                drop(r);
            }
            for (build, bin) in &builds {
                let port = free_port();
                let kw = bench::serve_keyward(
                    Command::new("taskset").args(["-c", "1"]).arg(bin),
                    port,
                    url,
                    &master,
                    &allow,
                    &work.join(format!("keyward-{i}-{build}.log")),
                )
                .await;
                let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
                if o.hold {
                    println!("HOLD url={url} token={token} pid={}", kw.0.id());
                    tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                }
                // Warm: caches, connections, the first usage flushes.
                wrk(&script, &url, &token, "openai/mock-small", 2);
                let via = wrk(&script, &url, &token, "openai/mock-small", o.seconds);
                eprintln!(
                    "tail: {db} {build} {}: p99 direct {} µs, via {} µs",
                    if halting { "halting" } else { "polling" },
                    straight.p99,
                    via.p99
                );
                rows.push(Row {
                    db: db.clone(),
                    build: build.clone(),
                    halting,
                    direct: straight,
                    via,
                });
                drop(kw);
            }
            drop(hold);
        }
    }
    drop(pinned_pg);
    if let Some((_, guard)) = pg {
        guard.drop_now().await;
    }
    // The table is rewritten; the analysis below it (from its first `## ` heading on) is kept.
    let kept = std::fs::read_to_string(&o.out)
        .ok()
        .and_then(|t| t.find("\n## ").map(|i| t[i..].to_string()))
        .unwrap_or_default();
    std::fs::write(&o.out, render(&rows, &o) + &kept).unwrap();
    println!("tail: wrote {}", o.out.display());
    let _ = std::fs::remove_dir_all(&work);
}

/// Waits until something listens on `port` (the relay has no readiness route).
async fn wait_listening(port: u16, child: &mut bench::Proc) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("the relay exited: {status}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the relay did not listen on {port}");
}

fn render(rows: &[Row], o: &Opts) -> String {
    let mut s = String::from("# The c=1 tail\n\n");
    let _ = writeln!(
        s,
        "Written by `make bench` (`server/examples/tail.rs`). wrk sends one request at a time over one keep-alive connection for {} s per window; wrk and the mock provider run on CPU 0, Keyward is pinned to CPU 1. *Added* = through Keyward − straight to the mock, at the same percentile (µs). *polling*: idle CPUs poll (`/dev/cpu_dma_latency` held at 0); *halting*: this VM's default. The *relay (floor)* row goes through a bare relay on the same stack (Tokio, axum, reqwest; no database, no key, no metering) on CPU 1 instead of Keyward: what this machine charges any gateway for the two hops.{}\n",
        o.seconds,
        if o.before.is_some() {
            " *before* is the build at the start of the architecture work, *after* this one, measured in the same run on the same database."
        } else {
            ""
        }
    );
    s.push_str("| database | build | idle CPUs | requests (errors) | direct p50 / p90 / p99 / p99.9 | via Keyward p50 / p90 / p99 / p99.9 / max | added p50 / p90 / p99 / p99.9 |\n|---|---|---|---|---|---|---|\n");
    for r in rows {
        let d = r.direct;
        let v = r.via;
        let add = |a: u64, b: u64| i64::try_from(a).unwrap_or(0) - i64::try_from(b).unwrap_or(0);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} ({}) | {} / {} / {} / {} | {} / {} / {} / {} / {} | {} / {} / {} / {} |",
            r.db,
            r.build,
            if r.halting { "halting" } else { "polling" },
            v.requests,
            v.errors,
            d.p50,
            d.p90,
            d.p99,
            d.p999,
            v.p50,
            v.p90,
            v.p99,
            v.p999,
            v.max,
            add(v.p50, d.p50),
            add(v.p90, d.p90),
            add(v.p99, d.p99),
            add(v.p999, d.p999),
        );
    }
    s
}
