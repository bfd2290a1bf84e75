//! WSUS sync benchmark: a full sync of 25,000 update revisions from a local fake upstream (the real
//! MS-WSUSSS wire format over HTTP, a third of the blobs LZX-compressed), parsed and stored as
//! events, then ingested by the catalog's consumer: timed end to end, with the process's peak
//! memory.
//!
//! Run with `cargo bench -p patchbay-wsus-sync --bench sync_catalog`. SQLite always runs;
//! PostgreSQL runs on fresh databases when `PATCHBAY_TEST_DATABASE_URL` is set. Override the size
//! with `PATCHBAY_BENCH_UPDATES` (default 25,000).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench binary: failing loudly is the point

use std::time::{Duration, Instant};

/// The allocator the `patchbay` binary ships with, so the figures are the shipped ones.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use patchbay_bus::{EventHandler, IncomingEvent};
use patchbay_catalog::Catalog;
use patchbay_catalog::wsus::WsusRecorder;
use patchbay_eventstore::EventStore;
use patchbay_testkit::{TestPostgres, TestSqlite};
use patchbay_wsus_sync::domain::{ConfigRequest, RunState};
use patchbay_wsus_sync::{SyncOptions, WsusSync};
use patchbay_wsus_upstream::{FakeUpstream, FixtureCatalog, UpstreamOptions};

/// Events the catalog consumer takes per transaction, as the bus runner's batch.
const CONSUMER_BATCH: usize = 256;

/// `VmHWM` (peak) or `VmRSS` (now) of this process, in MiB.
fn memory_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn run(backend: &str, wsus_url: &str, catalog_url: &str, updates: usize) {
    let upstream = FakeUpstream::start(
        FixtureCatalog::generated(updates, 42),
        UpstreamOptions {
            max_updates_per_request: 100,
            ..UpstreamOptions::default()
        },
    )
    .await
    .unwrap();
    let store = EventStore::connect(wsus_url).await.unwrap();
    let wsus = WsusSync::open(
        store.clone(),
        SyncOptions {
            request_timeout: Duration::from_secs(60),
            ..SyncOptions::default()
        },
    )
    .await
    .unwrap();
    wsus.set_config(
        ConfigRequest {
            upstream_url: upstream.url(),
            schedule: "manual".into(),
            ..ConfigRequest::default()
        },
        "bench",
    )
    .await
    .unwrap();

    // The fake upstream lives in this process and holds the whole catalog (rendered XML and
    // compressed blobs): what the sync itself adds is the peak minus the memory before it.
    let before_sync = memory_mib("VmRSS:");
    let started = Instant::now();
    let run = wsus.sync_now("manual", "bench").await.unwrap();
    let synced = started.elapsed();
    assert_eq!(run.state, RunState::Completed, "{:?}", run.failed);
    let completed = run.completed.unwrap();
    assert_eq!(completed.new_updates as usize, updates);

    // The catalog's consumer, fed the sync log in the bus runner's batch size.
    let catalog_store = EventStore::connect(catalog_url).await.unwrap();
    let catalog = Catalog::open(catalog_store.clone()).await.unwrap();
    let recorder = WsusRecorder::new(catalog.clone());
    let ingest = Instant::now();
    let mut after = patchbay_eventstore::LogPosition::START;
    loop {
        let events = store.read_all(after, CONSUMER_BATCH).await.unwrap();
        let Some(last) = events.last() else { break };
        after = last.position;
        let incoming: Vec<IncomingEvent> = events
            .into_iter()
            .map(|event| IncomingEvent {
                service: "wsus-sync".into(),
                event,
            })
            .collect();
        let refs: Vec<&IncomingEvent> = incoming.iter().collect();
        let mut tx = catalog_store.begin().await.unwrap();
        recorder.handle_batch(&mut tx, &refs).await.unwrap();
        tx.commit().await.unwrap();
    }
    catalog.catch_up().await.unwrap();
    let ingested = ingest.elapsed();
    let listed = catalog.view().updates.len();
    assert!(
        listed >= updates * 9 / 10,
        "{listed} of {updates} in the catalog"
    );
    let total = started.elapsed();
    println!(
        "{backend}: {updates} revisions ({} categories, {:.1} MiB metadata, {} requests): \
         sync {:.2} s ({:.0}/s), catalog ingest {:.2} s, end to end {:.2} s; \
         memory: {:.0} MiB before the sync (fake upstream's catalog included), peak {:.0} MiB",
        completed.categories,
        completed.metadata_bytes as f64 / (1024.0 * 1024.0),
        completed.requests,
        synced.as_secs_f64(),
        updates as f64 / synced.as_secs_f64(),
        ingested.as_secs_f64(),
        total.as_secs_f64(),
        before_sync,
        memory_mib("VmHWM:"),
    );

    // An incremental sync with nothing new.
    let again = Instant::now();
    let run = wsus.sync_now("manual", "bench").await.unwrap();
    assert_eq!(run.completed.unwrap().new_updates, 0);
    println!(
        "{backend}: incremental sync with nothing new {:.3} s",
        again.elapsed().as_secs_f64()
    );
}

fn main() {
    let updates: usize = std::env::var("PATCHBAY_BENCH_UPDATES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = TestSqlite::new();
        run(
            "sqlite",
            &dir.url("wsus.db"),
            &dir.url("catalog.db"),
            updates,
        )
        .await;
        if let (Some(wsus), Some(catalog)) =
            (TestPostgres::create().await, TestPostgres::create().await)
        {
            run("postgres", &wsus.url, &catalog.url, updates).await;
        }
    });
}
