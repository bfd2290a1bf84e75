//! Inventory ingestion through the agent API: many simulated devices register, then report a
//! ~300-package inventory each, concurrently, against an embedded server (SQLite) or, with
//! PATCHBAY_BENCH_BACKEND=postgres, the scanning service alone on a fresh PostgreSQL database on the
//! server of PATCHBAY_TEST_DATABASE_URL. Prints device reports per second and report latencies.
//!
//! cargo bench -p patchbay --bench inventory_ingest
//!   PATCHBAY_BENCH_DEVICES=2000, PATCHBAY_BENCH_CONCURRENCY=32, PATCHBAY_BENCH_BACKEND=sqlite
//!   (sqlite, postgres, or both: sqlite,postgres)
//!
//! The simulated agents run in the same process as the server, so their requests are built before
//! the clock starts: what is timed is the server's work plus the client's gRPC encoding.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: failing loudly is the point

use std::time::{Duration, Instant};

use patchbay::embedded::{EmbeddedConfig, EmbeddedServer};
use patchbay::host::Host;
use patchbay_bus::{Bus, Subjects};
use patchbay_eventstore::EventStore;
use patchbay_proto::scanning::v1 as pb;
use patchbay_proto::scanning::v1::agent_service_client::AgentServiceClient;
use patchbay_testkit::TestPostgres;
use tokio_util::sync::CancellationToken;

// The allocator the `patchbay` binary ships with, so the server side is measured as it runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A Debian-like inventory: 300 packages, versions varying by device so reports are not identical.
fn inventory(device: usize) -> pb::Inventory {
    let packages = (0..300)
        .map(|i| pb::InstalledPackage {
            name: format!("package-{i:04}"),
            version: format!(
                "1:{}.{}.{}-1+deb12u{}",
                i % 7,
                i % 13,
                (i + device) % 5,
                device % 3
            ),
            architecture: if i % 10 == 0 { "all" } else { "amd64" }.to_owned(),
        })
        .collect();
    pb::Inventory {
        os: "Debian GNU/Linux 12 (bookworm)".to_owned(),
        native_architecture: "amd64".to_owned(),
        packages,
        apt_suites: vec!["bookworm".to_owned(), "bookworm-security".to_owned()],
        ..Default::default()
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let backends = std::env::var("PATCHBAY_BENCH_BACKEND").unwrap_or_else(|_| "sqlite".into());
    for backend in backends.split(',').map(str::trim) {
        match backend {
            "sqlite" => runtime.block_on(run_embedded()),
            "postgres" => runtime.block_on(run_postgres()),
            other => panic!("PATCHBAY_BENCH_BACKEND: unknown backend {other:?} (sqlite, postgres)"),
        }
    }
}

/// The whole embedded server: every service on SQLite (`synchronous=FULL`), the in-process bus.
async fn run_embedded() {
    let data = tempfile::tempdir().unwrap();
    let server = EmbeddedServer::build(&EmbeddedConfig {
        data_dir: data.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        operations: Default::default(),
    })
    .await
    .unwrap();
    let url = format!("http://{}", server.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(server.run_until_stopped(shutdown.clone()));
    ingest(&url, "embedded (SQLite, synchronous=FULL)").await;
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), running).await;
}

/// The scanning service alone on PostgreSQL (as `patchbay serve scanning` hosts it), its relay
/// publishing to an in-process bus instead of NATS.
async fn run_postgres() {
    let Some(database) = TestPostgres::create().await else {
        panic!("PATCHBAY_BENCH_BACKEND=postgres needs PATCHBAY_TEST_DATABASE_URL");
    };
    let data = tempfile::tempdir().unwrap();
    let store = EventStore::connect(&database.url).await.unwrap();
    let bus_url = format!("sqlite://{}", data.path().join("bus.db").display());
    let bus = Bus::in_process(&bus_url, Subjects::default())
        .await
        .unwrap();
    let host = Host::open(
        "127.0.0.1:0".parse().unwrap(),
        vec![("scanning", store)],
        bus,
        "bench",
        data.path().join("wsus-content"),
    )
    .await
    .unwrap();
    let url = format!("http://{}", host.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(host.run_until_stopped(shutdown.clone()));
    ingest(&url, "scanning service on PostgreSQL").await;
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), running).await;
}

async fn ingest(url: &str, backend: &str) {
    let devices = env_number("PATCHBAY_BENCH_DEVICES", 2_000);
    let concurrency = env_number("PATCHBAY_BENCH_CONCURRENCY", 32).max(1);
    let url = url.to_owned();
    let channel = tonic::transport::Endpoint::from_shared(url)
        .unwrap()
        .connect()
        .await
        .unwrap();

    let mut identities = Vec::with_capacity(devices);
    let started = Instant::now();
    for device in 0..devices {
        let mut client = AgentServiceClient::new(channel.clone());
        let registered = client
            .register(pb::RegisterRequest {
                hostname: format!("device-{device}"),
                groups: vec![],
            })
            .await
            .unwrap()
            .into_inner();
        identities.push((device, registered.device_id, registered.credential));
    }
    let registration = started.elapsed();

    let mut chunks: Vec<Vec<_>> = (0..concurrency).map(|_| Vec::new()).collect();
    for (index, (device, device_id, credential)) in identities.into_iter().enumerate() {
        chunks[index % concurrency].push(pb::ReportInventoryRequest {
            device_id,
            credential,
            inventory: Some(inventory(device)),
        });
    }
    let started = Instant::now();
    let tasks: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let mut client =
                AgentServiceClient::new(channel.clone()).max_encoding_message_size(64 << 20);
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(chunk.len());
                for report in chunk {
                    let sent = Instant::now();
                    assert!(
                        client
                            .report_inventory(report)
                            .await
                            .unwrap()
                            .into_inner()
                            .changed
                    );
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(devices);
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let reporting = started.elapsed();
    latencies.sort();
    let percentile = |p: usize| {
        latencies
            .get((latencies.len() * p / 100).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!("inventory ingestion, {backend}, {devices} devices, {concurrency} concurrent agents");
    println!(
        "  registrations        {:>10.0} devices/s",
        devices as f64 / registration.as_secs_f64()
    );
    println!(
        "  inventory reports    {:>10.0} reports/s  (300 packages each; target >= 2,000)",
        devices as f64 / reporting.as_secs_f64()
    );
    println!(
        "  report latency       p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(50),
        percentile(99),
        percentile(100)
    );
}
