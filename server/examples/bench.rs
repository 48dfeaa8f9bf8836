//! `make bench`: Keyward, LiteLLM and the Portkey gateway side by side against the same in-repo
//! mock provider (0 ms and 20 ms first-byte latency), measured by the same in-repo load
//! generator, gateways pinned to CPU 0 and everything else (this process, the mocks) to CPU 1.
//! Writes the results, with the machine's details, to the output file (docs/BENCHMARKS.md).
//!
//!   bench [--keyward target/release/keyward] [--out docs/BENCHMARKS.md] [--peers target/bench]
//!         [--quick] [--no-peers] [--before BIN]
//!
//! `--before BIN` measures an earlier build of Keyward in the same run, right after the current
//! one and set up the same way (its own database), as a column of its own.
//!
//! The peers are installed by bench/peers.sh into `--peers`: LiteLLM (pinned, from PyPI, in a
//! virtualenv; offline cost map, no database) and `@portkey-ai/gateway` (pinned, from npm).

use keyward_server::bench::{
    self, IdlePolling, Run, Target, best_within, closed_loop, free_port, max_rps, ms3, peak, spawn,
    wait_ready,
};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

struct Opts {
    keyward: PathBuf,
    out: PathBuf,
    peers: PathBuf,
    quick: bool,
    no_peers: bool,
    /// An earlier Keyward binary, measured in the same run.
    before: Option<PathBuf>,
}

fn opts() -> Opts {
    let mut o = Opts {
        keyward: "target/release/keyward".into(),
        out: "docs/BENCHMARKS.md".into(),
        peers: "target/bench".into(),
        quick: false,
        no_peers: false,
        before: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--keyward" => o.keyward = args.next().expect("--keyward PATH").into(),
            "--out" => o.out = args.next().expect("--out PATH").into(),
            "--peers" => o.peers = args.next().expect("--peers DIR").into(),
            "--quick" => o.quick = true,
            "--no-peers" => o.no_peers = true,
            "--before" => o.before = Some(args.next().expect("--before BIN").into()),
            other => panic!("unknown argument {other}"),
        }
    }
    o
}

/// Pins a gateway to CPU 0.
fn pinned(program: &Path) -> Command {
    let mut c = Command::new("taskset");
    c.arg("-c").arg("0").arg(program);
    c
}

/// The cost of crossing CPUs: the mock on the client's CPU (near) and on the gateways' (across),
/// with idle CPUs polling and, when the run could switch, halting.
struct Hop {
    near: Run,
    across: Run,
    halting: Option<(Run, Run)>,
}

/// What one gateway measured.
struct Measured {
    name: String,
    c1: Run,
    c1_direct: Run,
    c1_20: Run,
    c1_20_direct: Run,
    /// c=1 (mock 0 ms) again with idle CPUs halting: (through the gateway, direct).
    c1_halting: Option<(Run, Run)>,
    ttft: Run,
    ttft_direct: Run,
    sweep: Vec<(usize, Run)>,
    sweep_20: Vec<(usize, Run)>,
    rss_idle_kib: u64,
    rss_peak_kib: u64,
    note: Option<String>,
}

struct Plan {
    /// Held for the whole run (idle CPUs poll) when the machine allows it.
    polling: Option<IdlePolling>,
    c1_requests: usize,
    c1_time: Duration,
    ttft_requests: usize,
    level_time: Duration,
    levels: Vec<usize>,
    levels_20: Vec<usize>,
}

impl Plan {
    /// A c=1 run of non-streaming requests with the run's request count and time limit.
    async fn c1(&self, t: &Target) -> Run {
        closed_loop(t, 1, self.c1_time, self.c1_requests, 100, false).await
    }

    /// `(c1(a), c1(b))` again with idle CPUs halting: the polling hold is released for the two
    /// runs and taken again after. `None` when the run holds nothing (it is halting already).
    async fn c1_halting(&mut self, a: &Target, b: &Target) -> Option<(Run, Run)> {
        drop(self.polling.take()?);
        let runs = (self.c1(a).await, self.c1(b).await);
        self.polling = IdlePolling::hold();
        Some(runs)
    }
}

const P99_LIMIT: Duration = Duration::from_millis(5);
const MOCK_LATENCY: Duration = Duration::from_millis(20);
const GIVE_UP: Duration = Duration::from_millis(200);

async fn measure(
    name: &str,
    pid: u32,
    via0: &Target,
    via20: &Target,
    (direct0, direct20): (&Target, &Target),
    plan: &mut Plan,
    stream_ok: bool,
) -> Measured {
    // One request first, so a misconfigured target fails loudly.
    for (t, stream) in [(via0, false), (via20, false), (via0, stream_ok)] {
        let mut req = reqwest::Client::new()
            .post(&t.url)
            .header("content-type", "application/json")
            .body(serde_json::json!({"model": t.model, "stream": stream, "messages": [{"role": "user", "content": "probe"}]}).to_string());
        for (k, v) in &t.headers {
            req = req.header(k, v);
        }
        let res = req.send().await.expect("the probe request");
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "{name} ({}) answered {status}: {text}",
            t.model
        );
    }
    // Idle: after a few requests (the first ones warm caches and pools).
    let _ = closed_loop(via0, 1, Duration::from_secs(5), 50, 0, false).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle_kib = bench::rss_kib(pid);
    let sampler = bench::RssSampler::start(pid);
    let c1_direct = plan.c1(direct0).await;
    let c1 = plan.c1(via0).await;
    let c1_halting = plan
        .c1_halting(direct0, via0)
        .await
        .map(|(direct, via)| (via, direct));
    let n20 = plan.c1_requests / 10;
    let c1_20_direct = closed_loop(direct20, 1, plan.c1_time, n20, 5, false).await;
    let c1_20 = closed_loop(via20, 1, plan.c1_time, n20, 5, false).await;
    let ttft_direct = closed_loop(direct0, 1, plan.c1_time, plan.ttft_requests, 20, true).await;
    let ttft = if stream_ok {
        closed_loop(via0, 1, plan.c1_time, plan.ttft_requests, 20, true).await
    } else {
        Run::default()
    };
    // Past the 5 ms limit too (up to 200 ms), to find each gateway's peak at any latency.
    let sweep = max_rps(via0, GIVE_UP, &plan.levels, plan.level_time).await;
    let sweep_20 = max_rps(
        via20,
        MOCK_LATENCY + GIVE_UP,
        &plan.levels_20,
        plan.level_time,
    )
    .await;
    let rss_peak_kib = sampler.peak_kib().max(bench::rss_kib(pid));
    eprintln!(
        "{name}: c=1 p50 {} ms p99 {} ms; best {:?}",
        ms3(c1.pct(50.0)),
        ms3(c1.pct(99.0)),
        best_within(&sweep, P99_LIMIT).map(|b| b.1.round())
    );
    Measured {
        name: name.into(),
        c1,
        c1_direct,
        c1_20,
        c1_20_direct,
        c1_halting,
        ttft,
        ttft_direct,
        sweep,
        sweep_20,
        rss_idle_kib,
        rss_peak_kib,
        note: None,
    }
}

fn added(via: &Run, direct: &Run, p: f64) -> String {
    if via.count() == 0 {
        return "—".into();
    }
    diff_us(via, direct, p).to_string()
}

/// `a` − `b` at percentile `p`, in µs.
fn diff_us(a: &Run, b: &Run, p: f64) -> i64 {
    i64::try_from(a.pct(p)).unwrap_or(i64::MAX) - i64::try_from(b.pct(p)).unwrap_or(0)
}

fn sh(cmd: &str) -> String {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let o = opts();
    let work = std::env::temp_dir().join(format!("keyward-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let mut plan = if o.quick {
        Plan {
            polling: IdlePolling::hold(),
            c1_requests: 500,
            c1_time: Duration::from_secs(3),
            ttft_requests: 200,
            level_time: Duration::from_millis(1500),
            levels: vec![1, 4, 16, 32],
            levels_20: vec![16, 64],
        }
    } else {
        Plan {
            polling: IdlePolling::hold(),
            c1_requests: 5000,
            c1_time: Duration::from_secs(10),
            ttft_requests: 2000,
            level_time: Duration::from_secs(4),
            levels: vec![1, 2, 4, 8, 16, 32, 64, 128],
            levels_20: vec![16, 32, 64, 128, 256],
        }
    };

    // The mocks: 0 ms and 20 ms to the first byte, on CPU 1 with this process.
    let (m0, m20) = (free_port(), free_port());
    let mut mock0 = spawn(
        Command::new(&o.keyward).args(["mock-provider", "--bind", &format!("127.0.0.1:{m0}")]),
        &work.join("mock0.log"),
    );
    let mut mock20 = spawn(
        Command::new(&o.keyward).args([
            "mock-provider",
            "--bind",
            &format!("127.0.0.1:{m20}"),
            "--latency-ms",
            "20",
        ]),
        &work.join("mock20.log"),
    );
    let direct = |port: u16| Target {
        name: "mock".into(),
        url: format!("http://127.0.0.1:{port}/v1/chat/completions"),
        headers: vec![("authorization".into(), "Bearer sk-bench-key-0000".into())],
        model: "mock-small".into(),
    };
    let (direct0, direct20) = (direct(m0), direct(m20));
    wait_ready(
        &format!("http://127.0.0.1:{m0}/__mock/stats"),
        &mut mock0,
        "mock",
    )
    .await;
    wait_ready(
        &format!("http://127.0.0.1:{m20}/__mock/stats"),
        &mut mock20,
        "mock",
    )
    .await;

    // The floor any gateway on its own CPU pays: the same direct call to a mock pinned to CPU 0
    // (a round trip across CPUs) against one on CPU 1 (this process's).
    let hop = {
        let m = free_port();
        let mut far = spawn(
            pinned(&o.keyward).args(["mock-provider", "--bind", &format!("127.0.0.1:{m}")]),
            &work.join("mock-cpu0.log"),
        );
        wait_ready(
            &format!("http://127.0.0.1:{m}/__mock/stats"),
            &mut far,
            "mock",
        )
        .await;
        let far_target = direct(m);
        Hop {
            near: plan.c1(&direct0).await,
            across: plan.c1(&far_target).await,
            halting: plan.c1_halting(&direct0, &far_target).await,
        }
    };

    // Keyward: a workspace with keys for openai (→ 0 ms mock) and groq (→ 20 ms mock), set up
    // through the service layer, then served by the release binary (and by the earlier build,
    // on a database of its own, when `--before` names one).
    let allow = format!("127.0.0.1:{m0},127.0.0.1:{m20}");
    // The same build once more with limits at every scope (generous: nothing is refused), so
    // each request reserves and settles on five scopes: the cost of spend control.
    let mut builds = vec![
        ("Keyward", o.keyward.clone(), false),
        ("Keyward (all limits on)", o.keyward.clone(), true),
    ];
    if let Some(before) = &o.before {
        builds.push(("Keyward (before)", before.clone(), false));
    }
    let mut results = Vec::new();
    for (i, (name, bin, limited)) in builds.into_iter().enumerate() {
        let master = work.join(format!("master-{i}.key"));
        let db_url = format!("sqlite://{}/keyward-{i}.db?mode=rwc", work.display());
        let token = {
            let state = keyward_server::bench::fresh_state(&master, &db_url, &allow).await;
            let token = bench::routed_workspace(&state, &[("openai", m0), ("groq", m20)]).await;
            if limited {
                bench::limit_everything(&state).await;
            }
            state.usage.shutdown().await;
            token
        };
        let kw_port = free_port();
        let kw = bench::serve_keyward(
            &mut pinned(&bin),
            kw_port,
            &db_url,
            &master,
            &allow,
            &work.join(format!("keyward-{i}.log")),
        )
        .await;
        let via = |model: &str| Target {
            name: "keyward".into(),
            url: format!("http://127.0.0.1:{kw_port}/v1/chat/completions"),
            headers: vec![("authorization".into(), format!("Bearer {token}"))],
            model: model.into(),
        };
        results.push(
            measure(
                name,
                kw.0.id(),
                &via("openai/mock-small"),
                &via("groq/mock-small"),
                (&direct0, &direct20),
                &mut plan,
                true,
            )
            .await,
        );
        drop(kw);
    }

    let mut versions = vec![format!("Keyward {}", env!("CARGO_PKG_VERSION"))];
    if let Some(before) = &o.before {
        versions.push(format!("Keyward (before) from {}", before.display()));
    }
    if !o.no_peers {
        // LiteLLM proxy: one worker, no database, the cost map from the package (offline).
        let litellm = o.peers.join("litellm-venv/bin/litellm");
        let cfg = work.join("litellm.yaml");
        std::fs::write(
            &cfg,
            format!(
                "model_list:\n  - model_name: mock-0\n    litellm_params:\n      model: openai/mock-small\n      api_base: http://127.0.0.1:{m0}/v1\n      api_key: sk-bench-key-0000\n  - model_name: mock-20\n    litellm_params:\n      model: openai/mock-small\n      api_base: http://127.0.0.1:{m20}/v1\n      api_key: sk-bench-key-0000\nlitellm_settings:\n  telemetry: false\n  drop_params: true\ngeneral_settings:\n  master_key: sk-litellm-bench\n"
            ),
        )
        .unwrap();
        let ll_port = free_port();
        let mut ll = spawn(
            pinned(&litellm)
                .args(["--config"])
                .arg(&cfg)
                .args([
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &ll_port.to_string(),
                    "--num_workers",
                    "1",
                ])
                .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
                .env("LITELLM_LOG", "ERROR")
                .env("LITELLM_TELEMETRY", "False")
                .env("DISABLE_ADMIN_UI", "True"),
            &work.join("litellm.log"),
        );
        wait_ready(
            &format!("http://127.0.0.1:{ll_port}/health/liveliness"),
            &mut ll,
            "litellm",
        )
        .await;
        let ll_target = |model: &str| Target {
            name: "litellm".into(),
            url: format!("http://127.0.0.1:{ll_port}/v1/chat/completions"),
            headers: vec![("authorization".into(), "Bearer sk-litellm-bench".into())],
            model: model.into(),
        };
        versions.push(format!(
            "LiteLLM {}",
            sh(&format!(
                "{}/litellm-venv/bin/python -c 'import importlib.metadata as m; print(m.version(\"litellm\"))'",
                o.peers.display()
            ))
        ));
        results.push(
            measure(
                "LiteLLM",
                ll.0.id(),
                &ll_target("mock-0"),
                &ll_target("mock-20"),
                (&direct0, &direct20),
                &mut plan,
                true,
            )
            .await,
        );
        drop(ll);

        // Portkey gateway (Node.js), the provider and destination given per request.
        let pk_port = free_port();
        let script = o
            .peers
            .join("portkey/node_modules/@portkey-ai/gateway/build/start-server.js");
        let mut pk_cmd = Command::new("taskset");
        pk_cmd
            .args(["-c", "0", "node"])
            .arg(&script)
            .arg(format!("--port={pk_port}"))
            .arg("--headless");
        let mut pk = spawn(&mut pk_cmd, &work.join("portkey.log"));
        wait_ready(&format!("http://127.0.0.1:{pk_port}/"), &mut pk, "portkey").await;
        let pk_target = |port: u16| Target {
            name: "portkey".into(),
            url: format!("http://127.0.0.1:{pk_port}/v1/chat/completions"),
            headers: vec![
                ("authorization".into(), "Bearer sk-bench-key-0000".into()),
                ("x-portkey-provider".into(), "openai".into()),
                (
                    "x-portkey-custom-host".into(),
                    format!("http://127.0.0.1:{port}/v1"),
                ),
            ],
            model: "mock-small".into(),
        };
        versions.push(format!(
            "Portkey gateway {}",
            sh(&format!(
                "node -p \"require('./{}/portkey/node_modules/@portkey-ai/gateway/package.json').version\"",
                o.peers.display()
            ))
        ));
        // Its streaming fails on this Node.js (see the note); measure what works.
        let probe = closed_loop(&pk_target(m0), 1, Duration::from_secs(5), 3, 0, true).await;
        let stream_ok = probe.errors == 0 && probe.count() > 0;
        let mut m = measure(
            "Portkey",
            pk.0.id(),
            &pk_target(m0),
            &pk_target(m20),
            (&direct0, &direct20),
            &mut plan,
            stream_ok,
        )
        .await;
        if !stream_ok {
            m.note = Some(format!(
                "streaming through Portkey failed on Node.js {} here (HTTP 500 \"Something went wrong\"; its log: `TypeError: immutable` in `updateHeaders`), so it has no first-token figure",
                sh("node --version")
            ));
        }
        results.push(m);
        drop(pk);
    }

    let report = render(&results, &versions, &o, &plan, &hop);
    if let Some(dir) = o.out.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(&o.out, report).unwrap();
    eprintln!("wrote {}", o.out.display());
    let _ = std::fs::remove_dir_all(&work);
}

fn render(results: &[Measured], versions: &[String], o: &Opts, plan: &Plan, hop: &Hop) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmarks\n");
    let _ = writeln!(
        s,
        "Written by `make bench` ({}) on {}. Every gateway is pinned to CPU 0 with `taskset`; the load generator (in-repo, `server/src/bench.rs`) and the mock providers share CPU 1. The same client measures the mock directly, so *added* = through the gateway − direct, at the same percentile. Requests are OpenAI chat completions (`hello bench`, answer `You said: hello bench`) over keep-alive HTTP/1.1. {}\n",
        if o.quick { "quick run" } else { "full run" },
        sh("date -u +%Y-%m-%dT%H:%MZ"),
        if hop.halting.is_some() {
            "Idle CPUs poll instead of halting during the run (`/dev/cpu_dma_latency` held at 0, as tuned's latency-performance profile does), for every gateway and the direct baseline alike; the c=1 figures with halting CPUs, this VM's default, are given too (rows marked *halting*)."
        } else {
            "Idle CPUs halt as the machine is set (the run could not hold `/dev/cpu_dma_latency`; it needs root)."
        }
    );
    let _ = writeln!(s, "## Machine\n");
    let _ = writeln!(
        s,
        "- CPU: {} ({} cores online)",
        sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
        sh("grep -c ^processor /proc/cpuinfo")
    );
    let _ = writeln!(s, "- Memory: {}", sh("free -h | awk '/Mem:/{print $2}'"));
    let _ = writeln!(s, "- Kernel: {}", sh("uname -sr"));
    let _ = writeln!(
        s,
        "- {}; {}; Node.js {}",
        sh("rustc --version"),
        sh("python3 --version"),
        sh("node --version")
    );
    let _ = writeln!(s, "- Measured: {}\n", versions.join(", "));
    let _ = writeln!(s, "## Results\n");
    let _ = writeln!(
        s,
        "| | {} |\n|---|{}",
        results
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(results.len())
    );
    let row = |s: &mut String, label: &str, f: &dyn Fn(&Measured) -> String| {
        let _ = writeln!(
            s,
            "| {label} | {} |",
            results.iter().map(f).collect::<Vec<_>>().join(" | ")
        );
    };
    row(&mut s, "added latency p50, c=1, mock 0 ms (µs)", &|m| {
        added(&m.c1, &m.c1_direct, 50.0)
    });
    row(&mut s, "added latency p99, c=1, mock 0 ms (µs)", &|m| {
        added(&m.c1, &m.c1_direct, 99.0)
    });
    if results.iter().any(|m| m.c1_halting.is_some()) {
        for p in [50, 99] {
            row(
                &mut s,
                &format!("added latency p{p}, c=1, mock 0 ms, *halting* (µs)"),
                &|m| {
                    m.c1_halting.as_ref().map_or("—".into(), |(via, direct)| {
                        added(via, direct, f64::from(p))
                    })
                },
            );
        }
    }
    row(&mut s, "added latency p50, c=1, mock 20 ms (µs)", &|m| {
        added(&m.c1_20, &m.c1_20_direct, 50.0)
    });
    row(&mut s, "added latency p99, c=1, mock 20 ms (µs)", &|m| {
        added(&m.c1_20, &m.c1_20_direct, 99.0)
    });
    row(&mut s, "streaming first token added p50 (µs)", &|m| {
        added(&m.ttft, &m.ttft_direct, 50.0)
    });
    row(&mut s, "streaming first token added p99 (µs)", &|m| {
        added(&m.ttft, &m.ttft_direct, 99.0)
    });
    row(&mut s, "max requests/s with p99 < 5 ms, mock 0 ms", &|m| {
        best_within(&m.sweep, P99_LIMIT).map_or("—".into(), |(c, rps, p99)| {
            format!("{rps:.0} (c={c}, p99 {} ms)", ms3(p99))
        })
    });
    row(&mut s, "peak requests/s at any p99, mock 0 ms", &|m| {
        peak(&m.sweep).map_or("—".into(), |(c, rps, p99)| {
            format!("{rps:.0} (c={c}, p99 {} ms)", ms3(p99))
        })
    });
    row(&mut s, "peak requests/s at any p99, mock 20 ms", &|m| {
        peak(&m.sweep_20).map_or("—".into(), |(c, rps, p99)| {
            format!("{rps:.0} (c={c}, p99 {} ms)", ms3(p99))
        })
    });
    row(&mut s, "RSS idle (MiB)", &|m| {
        format!("{:.1}", m.rss_idle_kib as f64 / 1024.0)
    });
    row(&mut s, "RSS peak under load (MiB)", &|m| {
        format!("{:.1}", m.rss_peak_kib as f64 / 1024.0)
    });
    row(&mut s, "requests measured (errors)", &|m| {
        let mut runs = vec![&m.c1, &m.c1_20, &m.ttft];
        runs.extend(m.c1_halting.as_ref().map(|(via, _)| via));
        let n: usize = runs.iter().map(|r| r.count()).sum::<usize>()
            + m.sweep
                .iter()
                .chain(&m.sweep_20)
                .map(|(_, r)| r.count())
                .sum::<usize>();
        let e: u64 = runs.iter().map(|r| r.errors).sum::<u64>()
            + m.sweep
                .iter()
                .chain(&m.sweep_20)
                .map(|(_, r)| r.errors)
                .sum::<u64>();
        format!("{n} ({e})")
    });
    let _ = writeln!(s);
    if let Some(kw) = results.first() {
        // The peers' peak at any latency (none keeps its p99 under 5 ms even at c=1 here):
        // the comparison most favourable to them.
        let best_peer = results[1..]
            .iter()
            .filter(|m| !m.name.starts_with("Keyward"))
            .filter_map(|m| peak(&m.sweep).map(|b| b.1))
            .fold(0.0_f64, f64::max);
        let ours = best_within(&kw.sweep, P99_LIMIT).map_or(0.0, |b| b.1);
        let _ = writeln!(s, "## Against the targets\n");
        let _ = writeln!(s, "| target | measured | met |\n|---|---|---|");
        let p99 = kw.c1.pct(99.0).saturating_sub(kw.c1_direct.pct(99.0));
        let _ = writeln!(
            s,
            "| added p99 ≤ 250 µs at c=1 | {p99} µs{} | {} |",
            kw.c1_halting
                .as_ref()
                .map_or(String::new(), |(via, direct)| format!(
                    " ({} µs with idle CPUs halting)",
                    added(via, direct, 99.0)
                )),
            yes(p99 <= 250)
        );
        if best_peer > 0.0 {
            let _ = writeln!(
                s,
                "| ≥ 2× the best peer's requests/s (ours with p99 < 5 ms; theirs at any p99) | {:.1}× ({ours:.0} vs {best_peer:.0}) | {} |",
                ours / best_peer,
                yes(ours >= 2.0 * best_peer)
            );
        }
        let t = kw.ttft.pct(99.0).saturating_sub(kw.ttft_direct.pct(99.0));
        let _ = writeln!(
            s,
            "| streaming first-token added p99 ≤ 500 µs | {t} µs | {} |",
            yes(t <= 500)
        );
        let mib = kw.rss_peak_kib as f64 / 1024.0;
        let _ = writeln!(
            s,
            "| RSS ≤ 64 MiB under load | {mib:.1} MiB | {} |",
            yes(mib <= 64.0)
        );
        if let Some(on) = results.iter().find(|m| m.name == "Keyward (all limits on)") {
            // Limits on against off: each one's added latency (via − direct) at c=1, and peak
            // requests/s at 0 ms.
            let added_p50 = |m: &Measured| diff_us(&m.c1, &m.c1_direct, 50.0);
            let delta = added_p50(on) - added_p50(kw);
            let rps = |m: &Measured| peak(&m.sweep).map_or(0.0, |b| b.1);
            let change = if rps(kw) > 0.0 {
                (rps(on) / rps(kw) - 1.0) * 100.0
            } else {
                0.0
            };
            let _ = writeln!(
                s,
                "| all limits on: added p50 ≤ +5 µs at c=1 (in-process store) | {delta:+} µs ({} vs {} µs added); peak {:.0} vs {:.0} req/s ({change:+.1} %) | {} |",
                added_p50(on),
                added_p50(kw),
                rps(on),
                rps(kw),
                yes(delta <= 5)
            );
        }
        let _ = writeln!(
            s,
            "\nKeyward's own `x-keyward-overhead-us` at c=1 (mock 0 ms): p50 {} µs, p99 {} µs over {} requests.\n",
            bench::percentile(&kw.c1.reported_overhead_us, 50.0),
            bench::percentile(&kw.c1.reported_overhead_us, 99.0),
            kw.c1.reported_overhead_us.len()
        );
    }
    let _ = writeln!(
        s,
        "The floor under *added latency*: the same direct call to a mock pinned to CPU 0 (across CPUs, as each of a gateway's two hops is) differs from the call to the mock on CPU 1 by p50 {:+} µs / p99 {:+} µs (there: p50 {} ms, p99 {} ms){}. A gateway pays such a crossing on both hops (client → gateway, gateway → mock) plus a second loopback connection; what is left beyond that is its own work, which Keyward reports in `x-keyward-overhead-us`.\n",
        diff_us(&hop.across, &hop.near, 50.0),
        diff_us(&hop.across, &hop.near, 99.0),
        ms3(hop.near.pct(50.0)),
        ms3(hop.near.pct(99.0)),
        hop.halting
            .as_ref()
            .map_or(String::new(), |(near, across)| format!(
                "; with idle CPUs halting, by p50 {:+} µs / p99 {:+} µs (there: p50 {} ms, p99 {} ms)",
                diff_us(across, near, 50.0),
                diff_us(across, near, 99.0),
                ms3(near.pct(50.0)),
                ms3(near.pct(99.0)),
            )),
    );
    for (title, sweep_of) in [
        (
            "0 ms",
            (|m: &Measured| &m.sweep) as fn(&Measured) -> &Vec<(usize, Run)>,
        ),
        ("20 ms", |m: &Measured| &m.sweep_20),
    ] {
        let _ = writeln!(
            s,
            "## Sweeps (mock {title}): concurrency → requests/s, p99 ms\n"
        );
        for m in results {
            let _ = writeln!(s, "- {}: {}", m.name, sweep_line(sweep_of(m)));
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s, "## Notes\n");
    let _ = writeln!(
        s,
        "- Keyward does per request what a production BYOK gateway must: checks the workspace API token (SHA-256, cached), resolves the key (chatbot > workspace > platform, in memory), checks credits, and hands a usage record to its batched writer (SQLite here). LiteLLM runs with a master key, no database, one worker; Portkey is given provider and destination per request and authenticates nothing."
    );
    let _ = writeln!(
        s,
        "- Each c=1 run counts up to {} requests ({} with the 20 ms mock) after a warm-up; each sweep level runs {:?}.",
        plan.c1_requests,
        plan.c1_requests / 10,
        plan.level_time
    );
    for m in results {
        if let Some(n) = &m.note {
            let _ = writeln!(s, "- {}: {n}.", m.name);
        }
    }
    s
}

/// One gateway's sweep: `c=N: R/s, P ms` per level, with errors when there were any.
fn sweep_line(levels: &[(usize, Run)]) -> String {
    levels
        .iter()
        .map(|(c, r)| {
            let errors = if r.errors > 0 {
                format!(", {} errors", r.errors)
            } else {
                String::new()
            };
            format!("c={c}: {:.0}/s, {} ms{errors}", r.rps(), ms3(r.pct(99.0)))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "**no**" }
}
