//! The gateway benchmark's measuring parts (used by `examples/bench.rs`, which `make bench` runs,
//! and by a short smoke test): an in-repo closed-loop load generator over keep-alive HTTP/1.1
//! connections — written here rather than taken from oha or wrk because it also measures
//! streaming time-to-first-token and runs the identical client against Keyward, its peers and
//! the mock directly — plus percentiles, RSS sampling and the report table.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// One place requests go: a gateway, or the mock directly.
#[derive(Clone, Debug)]
pub struct Target {
    pub name: String,
    /// The chat-completions URL.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub model: String,
}

impl Target {
    fn body(&self, stream: bool) -> String {
        serde_json::json!({
            "model": self.model,
            "messages": [{"role": "user", "content": "hello bench"}],
            "stream": stream,
        })
        .to_string()
    }
}

/// Latencies of one run, in microseconds.
#[derive(Clone, Debug, Default)]
pub struct Run {
    /// Sorted ascending.
    pub latencies_us: Vec<u64>,
    pub errors: u64,
    pub elapsed: Duration,
    /// `x-keyward-overhead-us` as the server reported it, when it did (sorted).
    pub reported_overhead_us: Vec<u64>,
}

impl Run {
    pub fn count(&self) -> usize {
        self.latencies_us.len()
    }

    /// The `p`-th percentile (0–100), nearest rank.
    pub fn pct(&self, p: f64) -> u64 {
        percentile(&self.latencies_us, p)
    }

    pub fn rps(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs == 0.0 {
            0.0
        } else {
            self.count() as f64 / secs
        }
    }
}

/// Nearest-rank percentile of sorted values (0 when empty).
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn client(concurrency: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(concurrency.max(1))
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
}

/// One request: the time to the whole answer (or, streaming, to the first body chunk after
/// the headers: the first token), the server's overhead header, and whether it succeeded.
async fn one(
    client: &reqwest::Client,
    t: &Target,
    body: &str,
    stream: bool,
) -> (Duration, Option<u64>, bool) {
    let started = Instant::now();
    let mut req = client
        .post(&t.url)
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in &t.headers {
        req = req.header(k, v);
    }
    let res = match req.send().await {
        Ok(r) => r,
        Err(_) => return (started.elapsed(), None, false),
    };
    let ok = res.status().is_success();
    let overhead = res
        .headers()
        .get("x-keyward-overhead-us")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    if stream {
        use futures_util::StreamExt;
        let mut body = res.bytes_stream();
        let mut first = None;
        let mut ok = ok;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(c) if !c.is_empty() => {
                    first.get_or_insert_with(|| started.elapsed());
                }
                Ok(_) => {}
                Err(_) => ok = false,
            }
        }
        (
            first.unwrap_or_else(|| started.elapsed()),
            overhead,
            ok && first.is_some(),
        )
    } else {
        let ok = res.bytes().await.is_ok() && ok;
        (started.elapsed(), overhead, ok)
    }
}

/// Runs `concurrency` workers, each sending requests back to back, for `duration` or until
/// `max_requests` answered in all; the first `warmup` requests of each worker are not counted.
pub async fn closed_loop(
    t: &Target,
    concurrency: usize,
    duration: Duration,
    max_requests: usize,
    warmup: usize,
    stream: bool,
) -> Run {
    let client = client(concurrency);
    let body = Arc::new(t.body(stream));
    for _ in 0..warmup {
        for _ in 0..concurrency.max(1) {
            let _ = one(&client, t, &body, stream).await;
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let per_worker = max_requests.div_ceil(concurrency.max(1));
    let started = Instant::now();
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency.max(1) {
        let (client, t, body, stop) = (client.clone(), t.clone(), body.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_worker.min(1 << 20));
            let mut over = Vec::new();
            let mut errors = 0u64;
            while lat.len() + (errors as usize) < per_worker && !stop.load(Ordering::Relaxed) {
                let (d, o, ok) = one(&client, &t, &body, stream).await;
                if started.elapsed() > duration {
                    stop.store(true, Ordering::Relaxed);
                }
                if ok {
                    lat.push(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
                    over.extend(o);
                } else {
                    errors += 1;
                }
            }
            (lat, over, errors)
        }));
    }
    let mut run = Run::default();
    for w in workers {
        if let Ok((lat, over, errors)) = w.await {
            run.latencies_us.extend(lat);
            run.reported_overhead_us.extend(over);
            run.errors += errors;
        }
    }
    run.elapsed = started.elapsed();
    run.latencies_us.sort_unstable();
    run.reported_overhead_us.sort_unstable();
    run
}

/// A throughput sweep: each concurrency level run for `per_level`, until the p99 exceeds
/// `give_up` (or errors appear). [`best_within`] then picks the best level within a limit, and
/// [`peak`] the best level at any latency.
pub async fn max_rps(
    t: &Target,
    give_up: Duration,
    levels: &[usize],
    per_level: Duration,
) -> Vec<(usize, Run)> {
    let mut out = Vec::new();
    let limit = u64::try_from(give_up.as_micros()).unwrap_or(u64::MAX);
    for &c in levels {
        let run = closed_loop(t, c, per_level, usize::MAX, 2, false).await;
        let over = run.pct(99.0) > limit || run.errors > 0 || run.count() == 0;
        out.push((c, run));
        if over {
            break;
        }
    }
    out
}

/// The highest throughput of a sweep at any latency: (concurrency, requests/s, p99 µs).
pub fn peak(levels: &[(usize, Run)]) -> Option<(usize, f64, u64)> {
    levels
        .iter()
        .filter(|(_, r)| r.errors == 0 && r.count() > 0)
        .map(|(c, r)| (*c, r.rps(), r.pct(99.0)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// The best level of a sweep within the limit: (concurrency, requests/s, p99 µs).
pub fn best_within(levels: &[(usize, Run)], p99_limit: Duration) -> Option<(usize, f64, u64)> {
    let limit = u64::try_from(p99_limit.as_micros()).unwrap_or(u64::MAX);
    levels
        .iter()
        .filter(|(_, r)| r.pct(99.0) <= limit && r.errors == 0 && r.count() > 0)
        .map(|(c, r)| (*c, r.rps(), r.pct(99.0)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// Resident set size of a process and its descendants, in KiB (Linux `/proc`).
pub fn rss_kib(pid: u32) -> u64 {
    let mut total = 0;
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{p}/status")) {
            total += status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0);
        }
        if let Ok(children) = std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")) {
            stack.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    total
}

/// Samples a process tree's RSS every 100 ms until dropped; reads the peak.
pub struct RssSampler {
    peak: Arc<std::sync::atomic::AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl RssSampler {
    pub fn start(pid: u32) -> Self {
        let peak = Arc::new(std::sync::atomic::AtomicU64::new(rss_kib(pid)));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        RssSampler { peak, stop }
    }

    pub fn peak_kib(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Keeps idle CPUs polling instead of halting while held, by holding the kernel's PM QoS
/// request `/dev/cpu_dma_latency` at 0 µs (what tuned's latency-performance profile does).
///
/// On this kind of VM a halted vCPU takes a hypervisor round trip to wake: a loopback ping-pong
/// between two processes on different CPUs measured p50 148 µs / p99 861 µs halting against
/// p50 22 µs / p99 87 µs polling. That wake-up is paid by every gateway and by the direct
/// baseline alike, but the gateway path crosses CPUs and the direct one does not, so it lands in
/// *added* latency as noise from the hypervisor rather than from the gateway. The bench holds it
/// for its run and reports the c=1 figures with halting CPUs too. Needs root; `None` otherwise.
pub struct IdlePolling(#[allow(dead_code)] std::fs::File);

impl IdlePolling {
    pub fn hold() -> Option<IdlePolling> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/cpu_dma_latency")
            .ok()?;
        f.write_all(&0i32.to_ne_bytes()).ok()?;
        Some(IdlePolling(f))
    }
}

/// Microseconds as milliseconds with three decimals.
pub fn ms3(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

// --- running the pieces (the benchmark and the soak start Keyward and the mock as processes) ---

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when dropped.
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn spawn(cmd: &mut std::process::Command, log: &std::path::Path) -> Proc {
    let log = std::fs::File::create(log).unwrap();
    Proc(
        cmd.stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}")),
    )
}

/// Starts `keyward serve` from `cmd` (the binary, perhaps behind `taskset`, with any extra
/// settings already set) on 127.0.0.1:`port` with warn-level logs, on the database
/// `database_url` with the master key file `master`, allowed to reach the loopback upstreams
/// `allow`; returns once it is ready.
pub async fn serve_keyward(
    cmd: &mut std::process::Command,
    port: u16,
    database_url: &str,
    master: &std::path::Path,
    allow: &str,
    log: &std::path::Path,
) -> Proc {
    let mut kw = spawn(
        cmd.arg("serve")
            .env("KEYWARD_BIND", format!("127.0.0.1:{port}"))
            .env("KEYWARD_DATABASE_URL", database_url)
            .env("KEYWARD_MASTER_KEY_FILE", master)
            .env("KEYWARD_ALLOWED_PRIVATE_UPSTREAMS", allow)
            .env("KEYWARD_LOG_FILTER", "warn")
            .env("KEYWARD_SITE_ROOT", "target/site"),
        log,
    );
    wait_ready(
        &format!("http://127.0.0.1:{port}/readyz"),
        &mut kw,
        "keyward",
    )
    .await;
    kw
}

/// Waits until `url` answers below 500, or the process exits, or two minutes pass.
pub async fn wait_ready(url: &str, proc: &mut Proc, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = proc.0.try_wait() {
            panic!("{what} exited early ({status}); see its log");
        }
        if let Ok(r) = reqwest::get(url).await
            && r.status().as_u16() < 500
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{what} not ready at {url}");
}

/// The state of a fresh Keyward instance for a benchmark or soak to set up through the service
/// layer before it serves the database with the release binary: a new master key in
/// `master_file`, the database at `db_url`, the mock allowed at `allow`.
pub async fn fresh_state(
    master_file: &std::path::Path,
    db_url: &str,
    allow: &str,
) -> crate::state::AppState {
    use crate::vault::master_key;
    master_key::generate_file(master_file).expect("a master key file");
    let settings = crate::config::Settings {
        database_url: crate::config::DatabaseUrl::new(db_url),
        allowed_private_upstreams: allow.into(),
        log_filter: "warn".into(),
        ..crate::config::Settings::default()
    };
    let key = master_key::load(&master_key::MasterKeySource {
        file: Some(master_file),
        env_value: None,
        allow_insecure_permissions: false,
    })
    .expect("the master key");
    crate::startup::build_state(settings, &key)
        .await
        .expect("the instance's state")
}

/// The first account (`name@example.com`) and its workspace, on a plan with BYOK (the free plan
/// has none by default), for a benchmark or soak to hang keys, chatbots and tokens on.
pub async fn business_workspace(
    state: &crate::state::AppState,
    name: &str,
) -> crate::entities::workspace::Model {
    let (_, ws) = crate::services::accounts::setup_first_user(
        &state.db,
        &crate::services::accounts::SignInThrottle::new(100, 100),
        &format!("{}@example.com", name.to_lowercase()),
        name,
        "a long load-test passphrase",
        name,
    )
    .await
    .expect("the first account");
    let (by, plan) = (
        crate::services::audit::By::cli(),
        keyward::policy::Plan::Business,
    );
    crate::services::workspaces::set_plan(&state.db, &state.changes, &by, ws.id, plan)
        .await
        .expect("the plan");
    ws
}

/// A benchmark's workspace: each `(provider, mock port)` routed to that mock (default model
/// `mock-small`) with a workspace key, and a chat-scoped API token, whose secret is returned.
pub async fn routed_workspace(state: &crate::state::AppState, routes: &[(&str, u16)]) -> String {
    use crate::services::{api_tokens, audit::By, catalogue, keys};
    let by = By::cli();
    for (provider, port) in routes {
        let change = catalogue::ProviderChange {
            base_url: format!("http://127.0.0.1:{port}/v1"),
            default_model: "mock-small".into(),
            byok_enabled: true,
        };
        let (db, changes, gateway) = (&state.db, &state.changes, &state.gateway);
        catalogue::update_provider(db, changes, gateway, &by, provider, change)
            .await
            .expect("the provider's route");
    }
    let ws = business_workspace(state, "Bench").await;
    for (provider, _) in routes {
        let new = keys::NewKey {
            provider: provider.to_string(),
            key: secrecy::SecretString::from(format!("{}bench-key-0000", key_prefix(provider))),
            default_model: String::new(),
            base_url: String::new(),
        };
        keys::add(state.key_deps(), &by, keys::Scope::Workspace(ws.id), new)
            .await
            .expect("the workspace key");
    }
    let new = api_tokens::NewToken {
        name: "bench".into(),
        scopes: vec![keyward::tokens::TokenScope::Chat],
        chatbot: None,
        expires_in_days: None,
    };
    let (_, token) = api_tokens::create(&state.db, &by, ws.id, new, None)
        .await
        .expect("the token");
    token.to_string()
}

/// Sets generous limits (nothing is refused) at every scope a request of the bench workspace
/// passes through — its plan's default, the workspace, its API tokens and its keys — and prices
/// the mock's model, so each request reserves and settles everywhere: what `make bench` measures
/// as "all limits on".
pub async fn limit_everything(state: &crate::state::AppState) {
    use crate::entities::{api_token, credential, workspace};
    use crate::services::{audit::By, credits, limits};
    use keyward::limits::{Budget, Limits, ScopeKind, Window};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let (db, changes, by) = (&state.db, &state.changes, By::cli());
    let ws = workspace::Entity::find()
        .filter(workspace::Column::Name.eq("Bench"))
        .one(db)
        .await
        .expect("the bench workspace")
        .expect("the bench workspace exists");
    let price = keyward::usage::Price {
        input: 1_000_000,
        output: 2_000_000,
    };
    for provider in ["openai", "groq"] {
        credits::set_price(db, changes, &by, provider, "mock-small", price)
            .await
            .expect("a price");
    }
    let generous = Limits {
        budget: Some(Budget {
            micro: keyward::limits::MAX_BUDGET_MICRO,
            window: Window::Month,
            alert_percent: 0,
        }),
        requests_per_minute: Some(u32::MAX),
        input_tokens_per_minute: Some(1_000_000_000_000),
        output_tokens_per_minute: Some(1_000_000_000_000),
        concurrent: Some(1_000_000),
        on_store_error: Default::default(),
    };
    let mut targets = vec![
        limits::operator_target(db, ScopeKind::Plan, ws.plan().expect("a plan").as_str())
            .await
            .expect("the plan"),
        limits::target_in(db, &ws, ScopeKind::Workspace, &ws.id.to_string())
            .await
            .expect("the workspace"),
    ];
    for t in api_token::Entity::find()
        .filter(api_token::Column::WorkspaceId.eq(ws.id))
        .all(db)
        .await
        .expect("tokens")
    {
        targets.push(
            limits::target_in(db, &ws, ScopeKind::Token, &t.id.to_string())
                .await
                .expect("a token"),
        );
    }
    for k in credential::Entity::find()
        .filter(credential::Column::WorkspaceId.eq(ws.id))
        .all(db)
        .await
        .expect("keys")
    {
        targets.push(
            limits::target_in(db, &ws, ScopeKind::Key, &k.id.to_string())
                .await
                .expect("a key"),
        );
    }
    for t in targets {
        limits::set(db, changes, &by, &t, Some(generous))
            .await
            .expect("limits");
    }
}

/// A key prefix the provider's key-shape check accepts.
fn key_prefix(provider: &str) -> &'static str {
    match provider {
        "groq" => "gsk_",
        "anthropic" => "sk-ant-",
        _ => "sk-",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&v, 0.0), 1);
        assert_eq!(percentile(&[], 99.0), 0);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(ms3(1234), "1.234");
    }

    #[test]
    fn the_best_level_is_the_fastest_within_the_limit() {
        let run = |lat: Vec<u64>, secs: u64| Run {
            latencies_us: lat,
            errors: 0,
            elapsed: Duration::from_secs(secs),
            reported_overhead_us: vec![],
        };
        let levels = vec![
            (1, run(vec![100; 1000], 1)),
            (2, run(vec![200; 3000], 1)),
            (4, run(vec![9000; 5000], 1)),
        ];
        assert_eq!(
            best_within(&levels, Duration::from_millis(5)),
            Some((2, 3000.0, 200))
        );
        assert_eq!(best_within(&levels[2..], Duration::from_millis(5)), None);
    }

    #[test]
    fn rss_of_this_process_is_read() {
        assert!(rss_kib(std::process::id()) > 0);
        assert_eq!(rss_kib(u32::MAX), 0);
    }
}
