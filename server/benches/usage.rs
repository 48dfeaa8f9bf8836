//! The usage path's cost on a request (target ≤ 5 µs): building the record from the gateway's
//! report (`UsageMeter::finish`, with the price lookup) and handing it to the batched writer
//! (`UsageWriter::record`, a non-blocking channel send). The writer runs for real against SQLite;
//! only the request side is timed — flushes happen between timed stretches. Also the warm
//! credit-balance check a platform-key request makes.

use criterion::{Criterion, criterion_group, criterion_main};
use keyward::resolve::KeySource;
use keyward::usage::{Outcome, UsageChannel};
use keyward_server::config::DatabaseUrl;
use keyward_server::gateway::chat::Usage;
use keyward_server::services::credits::{CreditBook, load_pricing};
use keyward_server::services::usage::Served;
use keyward_server::services::usage::{Ending, UsageMeter, UsageWriter, WriterConfig};
use keyward_server::services::{accounts, usage};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn usage_bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("kw-usage-bench-{}", uuid::Uuid::new_v4()));
    let url = format!("sqlite://{}/bench.db", dir.display());
    let (db, ws, writer, pricing, book) = rt.block_on(async {
        let db = keyward_server::db::connect_url(&DatabaseUrl::new(url), 4)
            .await
            .unwrap();
        keyward_server::db::migrate(&db).await.unwrap();
        let (_, ws) = accounts::setup_first_user(
            &db,
            &keyward_server::services::accounts::SignInThrottle::new(100, 100),
            "b@example.com",
            "B",
            "correct horse battery",
            "Bench",
        )
        .await
        .unwrap();
        let book = CreditBook::new(Default::default());
        let writer = UsageWriter::spawn(db.clone(), book.clone(), None, WriterConfig::default());
        let pricing = load_pricing(&db).await.unwrap();
        book.balance(&db, ws.id).await.unwrap();
        (db, ws.id, writer, pricing, book)
    });
    let served = Served {
        source: KeySource::Workspace,
        key_id: uuid::Uuid::new_v4(),
        hint: "sk-…abcd".into(),
        model: "gpt-4o-mini".into(),
        fell_back: false,
        upstream: std::time::Duration::ZERO,
    };
    let meter = UsageMeter {
        workspace: ws,
        chatbot: Some(uuid::Uuid::new_v4()),
        conversation: Some(uuid::Uuid::new_v4()),
        api_token: None,
        channel: UsageChannel::Visitor,
        provider: "openai".into(),
        model: None,
        input_estimate: 0,
        started: Instant::now(),
    };
    let reply = "Open Settings, then Security, then Reset password.";
    let mut total = 0u64;
    c.bench_function("usage/record_on_request_path", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                // Stay under the buffer's capacity so the timed part never waits on the
                // writer; flush (untimed) between stretches.
                let n = left.min(4_096);
                let start = Instant::now();
                rt.block_on(async {
                    for _ in 0..n {
                        let rec = meter.finish(
                            Some(black_box(&pricing)),
                            Ending {
                                served: Some(&served),
                                usage: Some(Usage {
                                    input_tokens: 120,
                                    output_tokens: 12,
                                }),
                                output: reply,
                                first_token_ms: Some(80),
                                outcome: Outcome::Ok,
                                error_class: None,
                            },
                        );
                        writer.record(rec).await;
                    }
                });
                spent += start.elapsed();
                rt.block_on(writer.flush());
                left -= n;
                total += n;
            }
            spent
        })
    });
    rt.block_on(async {
        writer.shutdown().await;
        let stats = writer.stats();
        use std::sync::atomic::Ordering::Relaxed;
        assert_eq!(stats.dropped.load(Relaxed), 0);
        assert_eq!(
            stats.backpressure_waits.load(Relaxed),
            0,
            "the timed path never waited"
        );
        assert_eq!(
            usage::count(&db, ws).await.unwrap(),
            total,
            "every record was written"
        );
    });
    c.bench_function("usage/credit_check_warm", |b| {
        b.iter(|| {
            rt.block_on(book.balance(black_box(&db), black_box(ws)))
                .unwrap()
        })
    });
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group!(benches, usage_bench);
criterion_main!(benches);
