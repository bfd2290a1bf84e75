//! Inventory ingestion through the agent API: many simulated devices register, then report a
//! ~300-package inventory each, concurrently, against an embedded server (SQLite) or, with
//! PATCHBAY_BENCH_DATABASE_URL, a scanning service on PostgreSQL. Prints device reports per second.
//!
//! cargo bench --bench inventory_ingest   (PATCHBAY_BENCH_DEVICES=2000, PATCHBAY_BENCH_CONCURRENCY=32)

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: failing loudly is the point

use std::time::{Duration, Instant};

use patchbay::embedded::{EmbeddedConfig, EmbeddedServer};
use patchbay_proto::scanning::v1 as pb;
use patchbay_proto::scanning::v1::agent_service_client::AgentServiceClient;
use tokio_util::sync::CancellationToken;

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
    runtime.block_on(run());
}

async fn run() {
    let devices = env_number("PATCHBAY_BENCH_DEVICES", 2_000);
    let concurrency = env_number("PATCHBAY_BENCH_CONCURRENCY", 32).max(1);
    let data = tempfile::tempdir().unwrap();
    let server = EmbeddedServer::build(&EmbeddedConfig {
        data_dir: data.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
    })
    .await
    .unwrap();
    let url = format!("http://{}", server.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(server.run_until_stopped(shutdown.clone()));
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

    let started = Instant::now();
    let mut chunks: Vec<Vec<_>> = (0..concurrency).map(|_| Vec::new()).collect();
    for (index, identity) in identities.into_iter().enumerate() {
        chunks[index % concurrency].push(identity);
    }
    let tasks: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let mut client =
                AgentServiceClient::new(channel.clone()).max_encoding_message_size(64 << 20);
            tokio::spawn(async move {
                for (device, device_id, credential) in chunk {
                    let report = pb::ReportInventoryRequest {
                        device_id,
                        credential,
                        inventory: Some(inventory(device)),
                    };
                    assert!(
                        client
                            .report_inventory(report)
                            .await
                            .unwrap()
                            .into_inner()
                            .changed
                    );
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let reporting = started.elapsed();
    println!(
        "inventory ingestion, embedded (SQLite, synchronous=FULL), {devices} devices, {concurrency} concurrent agents"
    );
    println!(
        "  registrations        {:>10.0} devices/s",
        devices as f64 / registration.as_secs_f64()
    );
    println!(
        "  inventory reports    {:>10.0} reports/s  (300 packages each; target >= 2,000)",
        devices as f64 / reporting.as_secs_f64()
    );
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), running).await;
}
