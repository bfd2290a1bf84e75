//! Time travel over long logs: replay into the approval and compliance read models, and
//! `audit state --at` from snapshots, on PostgreSQL and SQLite (see docs/benchmarks.md).
//!
//! Per backend it writes `PATCHBAY_BENCH_EVENTS` events (default 1,000,000; issue 6's figure is
//! 10,000,000), half to an approvals log (20,000 catalog updates observed, then approvals,
//! declines and resets by people and rules) and half to a scanning log (10,000 devices, then scans
//! finding four required updates and three vulnerabilities each). The services' real snapshotters
//! run beside the writers with their default settings, as they do in a server. Then it measures:
//!
//! 1. replay from zero of both logs into `ApprovalsView` and `ScanningView` (events/s), one log
//!    after the other, and both at once (one per core);
//! 2. `audit state --at` (the very `state_at` the gRPC service runs) at moments 10 % – 100 % of the
//!    way through the writes, from snapshots; and, at the middle moment, from zero, checking both
//!    answers are equal.
//!
//! Environment: `PATCHBAY_BENCH_EVENTS`; `PATCHBAY_BENCH_DATABASE_URL` (a PostgreSQL server: a
//! fresh database per log, dropped afterwards; unset, PostgreSQL is skipped);
//! `PATCHBAY_BENCH_BACKENDS` (`postgres,sqlite` by default).
//!
//! Run: `PATCHBAY_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test
//! PATCHBAY_BENCH_EVENTS=10000000 cargo bench -p patchbay-audit --bench time_travel`

use std::time::Instant;

use anyhow::Context as _;
use chrono::Utc;
use patchbay_approvals::view::ApprovalsView;
use patchbay_audit::EventDecoder;
use patchbay_audit::state::{StateQuery, state_at};
use patchbay_eventstore::{
    EventStore, ExpectedVersion, NewEvent, Snapshottable, Snapshotter, StreamAppend, load_as_of,
};
use patchbay_proto::approvals::v1 as approvals;
use patchbay_proto::catalog::v1 as catalog;
use patchbay_proto::scanning::v1 as scanning;
use patchbay_scanning::view::ScanningView;
use patchbay_testkit::{TestPostgres, TestSqlite};
use prost::Message as _;
use tokio_util::sync::CancellationToken;

const UPDATES: usize = 20_000;
const DEVICES: usize = 10_000;
/// Events per `append_streams` call.
const BATCH: usize = 2_000;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let events: usize = std::env::var("PATCHBAY_BENCH_EVENTS")
        .ok()
        .map(|v| v.parse().context("PATCHBAY_BENCH_EVENTS is not a number"))
        .transpose()?
        .unwrap_or(1_000_000);
    let backends =
        std::env::var("PATCHBAY_BENCH_BACKENDS").unwrap_or_else(|_| "postgres,sqlite".to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        for backend in backends.split(',').map(str::trim) {
            match backend {
                "postgres" => match std::env::var("PATCHBAY_BENCH_DATABASE_URL") {
                    Ok(server) => {
                        let approvals_db = TestPostgres::create_on(&server).await;
                        let scanning_db = TestPostgres::create_on(&server).await;
                        run("PostgreSQL", &approvals_db.url, &scanning_db.url, events).await?;
                    }
                    Err(_) => println!("PostgreSQL: skipped (PATCHBAY_BENCH_DATABASE_URL unset)"),
                },
                "sqlite" => {
                    let dir = TestSqlite::new();
                    run(
                        "SQLite",
                        &dir.url("approvals.db"),
                        &dir.url("scanning.db"),
                        events,
                    )
                    .await?;
                }
                other => anyhow::bail!("unknown backend {other:?}: use postgres and/or sqlite"),
            }
        }
        Ok(())
    })
}

async fn run(
    backend: &str,
    approvals_url: &str,
    scanning_url: &str,
    events: usize,
) -> anyhow::Result<()> {
    let approvals_store = EventStore::connect(approvals_url).await?;
    let scanning_store = EventStore::connect(scanning_url).await?;
    println!("== {backend}: {events} events, half per log");

    // The snapshotters run beside the writers, as in a server.
    let stop = CancellationToken::new();
    let snapshotters = [
        tokio::spawn(Snapshotter::<ApprovalsView>::new(approvals_store.clone()).run(stop.clone())),
        tokio::spawn(Snapshotter::<ScanningView>::new(scanning_store.clone()).run(stop.clone())),
    ];
    let started = Instant::now();
    let mut moments = Vec::new();
    let half = events / 2;
    let mut approvals_log = ApprovalsLog::default();
    let mut scanning_log = ScanningLog::default();
    let mut written = 0;
    let mut next_moment = 1;
    while written < half {
        let size = BATCH.min(half - written);
        approvals_store
            .append_streams(&approvals_log.next(size))
            .await?;
        scanning_store
            .append_streams(&scanning_log.next(size))
            .await?;
        written += size;
        if written * 10 >= half * next_moment {
            moments.push((next_moment * 10, Utc::now()));
            next_moment += 1;
        }
    }
    let elapsed = started.elapsed();
    println!(
        "written: {} events in {:.1} s ({:.0} events/s, snapshotters running)",
        written * 2,
        elapsed.as_secs_f64(),
        (written * 2) as f64 / elapsed.as_secs_f64()
    );
    // Let the snapshotters finish the snapshots that are due, then stop them.
    let caught_up = Instant::now();
    finish_snapshots::<ApprovalsView>(&approvals_store).await?;
    finish_snapshots::<ScanningView>(&scanning_store).await?;
    stop.cancel();
    for snapshotter in snapshotters {
        snapshotter.await??;
    }
    println!(
        "snapshots caught up {:.1} s after the writes",
        caught_up.elapsed().as_secs_f64()
    );
    report_snapshots(&approvals_store, "approvals").await?;
    report_snapshots(&scanning_store, "scanning").await?;

    // 1. Replay from zero into the approval and compliance read models.
    let now = Utc::now();
    let replay = Instant::now();
    let approvals_replay = load_as_of::<ApprovalsView>(&approvals_store, now, false).await?;
    let approvals_time = replay.elapsed();
    let replay = Instant::now();
    let scanning_replay = load_as_of::<ScanningView>(&scanning_store, now, false).await?;
    let scanning_time = replay.elapsed();
    let total = approvals_replay.read + scanning_replay.read;
    println!(
        "replay from zero, one log after the other: {total} events in {:.2} s = {:.0} events/s \
         (approvals {:.0}/s, scanning {:.0}/s)",
        (approvals_time + scanning_time).as_secs_f64(),
        total as f64 / (approvals_time + scanning_time).as_secs_f64(),
        approvals_replay.read as f64 / approvals_time.as_secs_f64(),
        scanning_replay.read as f64 / scanning_time.as_secs_f64(),
    );
    let both = Instant::now();
    let (a, s) = tokio::join!(
        load_as_of::<ApprovalsView>(&approvals_store, now, false),
        load_as_of::<ScanningView>(&scanning_store, now, false),
    );
    let both_time = both.elapsed();
    let total = a?.read + s?.read;
    println!(
        "replay from zero, both logs at once: {total} events in {:.2} s = {:.0} events/s",
        both_time.as_secs_f64(),
        total as f64 / both_time.as_secs_f64()
    );

    // 2. `audit state --at` from snapshots, and once from zero for comparison.
    let stores = [
        ("approvals", approvals_store.clone()),
        ("scanning", scanning_store.clone()),
    ];
    let decoder = EventDecoder::new()?;
    let query = StateQuery::default();
    for (percent, at) in &moments {
        let timer = Instant::now();
        let state = state_at(&stores, *at, &query, &decoder).await?;
        println!(
            "state --at {percent:>3} %: {:.3} s ({} approvals, {} devices; {})",
            timer.elapsed().as_secs_f64(),
            state.approvals.len(),
            state.devices.len(),
            state.replayed.join(", ")
        );
    }
    if let Some((percent, at)) = moments.get(moments.len() / 2) {
        let timer = Instant::now();
        let fast = state_at(&stores, *at, &query, &decoder).await?;
        let fast_time = timer.elapsed();
        let timer = Instant::now();
        let slow = state_at(
            &stores,
            *at,
            &StateQuery {
                from_zero: true,
                ..StateQuery::default()
            },
            &decoder,
        )
        .await?;
        let slow_time = timer.elapsed();
        let same = pb_without_replayed(fast) == pb_without_replayed(slow);
        println!(
            "state --at {percent} %: {:.3} s from snapshots, {:.3} s from zero; answers equal: {same}",
            fast_time.as_secs_f64(),
            slow_time.as_secs_f64()
        );
        anyhow::ensure!(
            same,
            "the answer from snapshots differs from the replay from zero"
        );
    }
    approvals_store.close().await;
    scanning_store.close().await;
    Ok(())
}

/// Runs snapshotter passes until one writes no snapshot: every due snapshot is then stored.
async fn finish_snapshots<P: Snapshottable>(store: &EventStore) -> anyhow::Result<()> {
    let snapshotter = Snapshotter::<P>::new(store.clone());
    while !snapshotter.pass().await?.snapshots.is_empty() {}
    Ok(())
}

async fn report_snapshots(store: &EventStore, name: &str) -> anyhow::Result<()> {
    let (count, bytes): (i64, i64) = match (store.postgres_pool(), store.sqlite_pool()) {
        (Some(pool), _) => sqlx::query_as(
            "SELECT count(*), coalesce(max(length(payload)), 0)::bigint FROM projection_snapshots",
        )
        .fetch_one(pool)
        .await?,
        (_, Some(pool)) => {
            sqlx::query_as(
                "SELECT count(*), coalesce(max(length(payload)), 0) FROM projection_snapshots",
            )
            .fetch_one(pool)
            .await?
        }
        _ => (0, 0),
    };
    println!(
        "{name}: {count} snapshots, the largest {:.1} MB",
        bytes as f64 / 1e6
    );
    Ok(())
}

fn pb_without_replayed(
    mut state: patchbay_proto::audit::v1::StateAtResponse,
) -> patchbay_proto::audit::v1::StateAtResponse {
    state.replayed.clear();
    state
}

fn update_id(index: usize) -> String {
    format!("deb:pkg{index}:1.{index}-1:amd64")
}

/// The approvals log: catalog updates first, then decisions on them.
#[derive(Default)]
struct ApprovalsLog {
    written: usize,
}

impl ApprovalsLog {
    fn next(&mut self, size: usize) -> Vec<StreamAppend> {
        (0..size)
            .map(|_| {
                let index = self.written;
                self.written += 1;
                if index < UPDATES {
                    let published = catalog::UpdatePublished {
                        update_id: update_id(index),
                        details: Some(catalog::UpdateDetails {
                            title: format!("pkg{index} 1.{index}-1"),
                            vendor: "Debian".into(),
                            product: format!("pkg{index}"),
                            version: format!("1.{index}-1"),
                            cve_ids: vec![format!("CVE-2026-{index:05}")],
                            ..Default::default()
                        }),
                    };
                    let observed = approvals::CatalogEventObserved {
                        event_type: "UpdatePublished".into(),
                        schema_version: 1,
                        payload: published.encode_to_vec(),
                        catalog_position: index as u64 + 1,
                    };
                    return StreamAppend::new(
                        format!("observed-{}", update_id(index)),
                        ExpectedVersion::Any,
                        vec![NewEvent::new(
                            "CatalogEventObserved",
                            1,
                            observed.encode_to_vec(),
                        )],
                    );
                }
                let update = update_id(index % UPDATES);
                let stream = format!("approval-{update}");
                let (event_type, payload, actor) = match index % 4 {
                    0 => (
                        "UpdateApproved",
                        approvals::UpdateApproved {
                            update_id: update,
                            reason: "tested on the pilot group".into(),
                            rule: None,
                            revision: 1,
                        }
                        .encode_to_vec(),
                        "user:alice",
                    ),
                    1 => (
                        "UpdateApproved",
                        approvals::UpdateApproved {
                            update_id: update,
                            reason: String::new(),
                            rule: Some(approvals::RuleRef {
                                rule_id: "critical-security".into(),
                                rule_version: 3,
                            }),
                            revision: 1,
                        }
                        .encode_to_vec(),
                        "rule:critical-security",
                    ),
                    2 => (
                        "UpdateDeclined",
                        approvals::UpdateDeclined {
                            update_id: update,
                            reason: "breaks the ERP client".into(),
                            rule: None,
                            revision: 1,
                        }
                        .encode_to_vec(),
                        "user:bob",
                    ),
                    _ => (
                        "ApprovalReset",
                        approvals::ApprovalReset {
                            update_id: update,
                            reason: "re-evaluate".into(),
                        }
                        .encode_to_vec(),
                        "user:alice",
                    ),
                };
                StreamAppend::new(
                    stream,
                    ExpectedVersion::Any,
                    vec![NewEvent::new(event_type, 1, payload).actor(actor)],
                )
            })
            .collect()
    }
}

/// The scanning log: devices register, then scans find what each requires.
#[derive(Default)]
struct ScanningLog {
    written: usize,
}

impl ScanningLog {
    fn next(&mut self, size: usize) -> Vec<StreamAppend> {
        (0..size)
            .map(|_| {
                let index = self.written;
                self.written += 1;
                let device = index % DEVICES;
                let device_id = format!("device-{device:05}");
                if index < DEVICES {
                    let registered = scanning::DeviceRegistered {
                        device_id: device_id.clone(),
                        hostname: format!("host-{device}.corp.example"),
                        credential_sha256: "0".repeat(64),
                        groups: vec!["servers".into()],
                    };
                    return StreamAppend::new(
                        format!("device-{device_id}"),
                        ExpectedVersion::Any,
                        vec![NewEvent::new(
                            "DeviceRegistered",
                            1,
                            registered.encode_to_vec(),
                        )],
                    );
                }
                let required: Vec<_> = (0..4)
                    .map(|k| {
                        let update = (index * 7 + k * 131) % UPDATES;
                        scanning::RequiredUpdate {
                            update_id: update_id(update),
                            package_or_product: format!("pkg{update}"),
                            installed_version: format!("1.{update}-0"),
                            required_version: format!("1.{update}-1"),
                            architecture: "amd64".into(),
                            cve_ids: vec![format!("CVE-2026-{update:05}")],
                            known_exploited: k == 0,
                        }
                    })
                    .collect();
                let vulnerabilities = required
                    .iter()
                    .take(3)
                    .enumerate()
                    .map(|(position, r)| scanning::ScanVulnerability {
                        cve_id: r.cve_ids[0].clone(),
                        known_exploited: r.known_exploited,
                        fixed_by_required: vec![position as u32],
                    })
                    .collect();
                let scan = scanning::ScanCompleted {
                    device_id,
                    task_id: "default".into(),
                    run: (index / DEVICES) as u64,
                    required,
                    vulnerabilities,
                    catalog_position: UPDATES as u64,
                    problems: Vec::new(),
                };
                StreamAppend::new(
                    format!("scan-{device:05}"),
                    ExpectedVersion::Any,
                    vec![NewEvent::new(
                        "ScanCompleted",
                        patchbay_scanning::events::schema_version("ScanCompleted"),
                        scan.encode_to_vec(),
                    )],
                )
            })
            .collect()
    }
}
