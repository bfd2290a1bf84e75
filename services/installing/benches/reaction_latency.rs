//! Reaction-latency benchmark: `ScanCompleted` appended by a scanning-side store → relay → NATS
//! JetStream → the installing service's consumer → planner → `InstallJobQueued` visible in the
//! installing log, over real PostgreSQL and NATS, at a steady rate of device scans.
//!
//! Run with `PATCHBAY_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test
//! PATCHBAY_TEST_NATS_URL=nats://127.0.0.1:4222 cargo bench -p patchbay-installing --bench
//! reaction_latency`. `PATCHBAY_BENCH_RATE` (scans/s, default 1000) and `PATCHBAY_BENCH_SECONDS`
//! (default 10) set the load. Latency is measured per device from just before its scan's append to
//! the moment a subscriber to the installing log reads its job: the time a user would see.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use patchbay_bus::{Bus, ConsumerConfig, ConsumerRunner, Relay, Subjects};
use patchbay_eventstore::{EventStore, ExpectedVersion, NewEvent};
use patchbay_installing::Installing;
use patchbay_installing::events::{InstallingEvent, facts_stream};
use patchbay_installing::observer::OBSERVERS;
use patchbay_proto::approvals::v1 as approvals;
use patchbay_proto::catalog::v1 as catalog;
use patchbay_proto::installing::v1 as pb;
use patchbay_proto::scanning::v1 as scanning;
use patchbay_testkit::{TestPostgres, nats_url};
use prost::Message as _;
use tokio_util::sync::CancellationToken;

const UPDATE: &str = "deb:openssl:3.0.17-1~deb12u2:amd64";
/// Scans appended per transaction (the scanning service appends a chunk per transaction too).
const BATCH: usize = 10;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn fact(service: &str, event_type: &str, payload: Vec<u8>) -> NewEvent {
    InstallingEvent::ForeignEventObserved(pb::ForeignEventObserved {
        service: service.into(),
        event_type: event_type.into(),
        schema_version: 1,
        payload,
        position: 0,
    })
    .to_new_event()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (Some(nats), Some(scanning_db), Some(installing_db)) = (
        nats_url(),
        TestPostgres::create().await,
        TestPostgres::create().await,
    ) else {
        eprintln!(
            "set PATCHBAY_TEST_DATABASE_URL and PATCHBAY_TEST_NATS_URL to run this benchmark"
        );
        return Ok(());
    };
    let rate = env_number("PATCHBAY_BENCH_RATE", 1000);
    let seconds = env_number("PATCHBAY_BENCH_SECONDS", 10);
    let prefix = format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let bus = Bus::nats(&nats, Subjects::new(&prefix)?).await?;
    let scanning_store = EventStore::connect(&scanning_db.url).await?;
    let installing_store = EventStore::connect(&installing_db.url).await?;

    // What installing knows before the scans: the update (approved) and a task for all devices.
    let published = catalog::UpdatePublished {
        update_id: UPDATE.into(),
        details: Some(catalog::UpdateDetails {
            title: "openssl 3.0.17".into(),
            vendor: "Debian".into(),
            product: "openssl".into(),
            kind: catalog::UpdateKind::ThirdParty as i32,
            classification: catalog::Classification::Security as i32,
            severity: catalog::Severity::Important as i32,
            ..Default::default()
        }),
    };
    let approved = approvals::UpdateApproved {
        update_id: UPDATE.into(),
        ..Default::default()
    };
    installing_store
        .append(
            &facts_stream("catalog"),
            ExpectedVersion::Any,
            &[fact(
                "catalog",
                "UpdatePublished",
                published.encode_to_vec(),
            )],
        )
        .await?;
    installing_store
        .append(
            &facts_stream("approvals"),
            ExpectedVersion::Any,
            &[fact(
                "approvals",
                "UpdateApproved",
                approved.encode_to_vec(),
            )],
        )
        .await?;
    let installing =
        Installing::open(installing_store.clone(), semver::Version::new(0, 1, 0)).await?;
    installing
        .create_task(
            pb::CreateTaskRequest {
                name: "Install required updates".into(),
                kind: pb::TaskKind::InstallRequired as i32,
                targets: Some(pb::InstallTargets {
                    all_devices: true,
                    ..Default::default()
                }),
                ..Default::default()
            },
            "user:bench",
        )
        .await?;

    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    let relay = Relay::new("scanning", scanning_store.clone(), bus.clone())?;
    tasks.push(tokio::spawn(relay.run(shutdown.child_token())));
    let observer = OBSERVERS[2];
    let runner = ConsumerRunner::new(
        ConsumerConfig::new(observer.consumer, observer.service),
        installing_store.clone(),
        bus.clone(),
        observer,
    );
    tasks.push(tokio::spawn(runner.run(shutdown.child_token())));
    let follower = installing.clone();
    let token = shutdown.child_token();
    let follow = tokio::spawn(async move { follower.follow(token).await });
    let planner = tokio::spawn(patchbay_installing::planner::run_planner(
        installing.clone(),
        shutdown.child_token(),
    ));

    // The observer of the result: a subscriber to the installing log, noting when each job appears.
    let total = (rate * seconds) as usize;
    let mut subscription = installing_store.subscribe("bench-observer", 1000).await?;
    let seen = tokio::spawn(async move {
        let mut seen: HashMap<String, Instant> = HashMap::with_capacity(total);
        let mut copied: HashMap<String, Instant> = HashMap::with_capacity(total);
        while seen.len() < total {
            let Ok(events) = subscription.next_batch().await else {
                break;
            };
            let now = Instant::now();
            for event in events {
                if event.event_type == "ForeignEventObserved" {
                    if let Ok(InstallingEvent::ForeignEventObserved(observed)) =
                        InstallingEvent::decode(
                            &event.event_type,
                            event.schema_version,
                            &event.payload,
                        )
                        && let Ok(scan) =
                            scanning::ScanCompleted::decode(observed.payload.as_slice())
                    {
                        copied.entry(scan.device_id).or_insert(now);
                    }
                    continue;
                }
                if event.event_type != "InstallJobQueued" {
                    continue;
                }
                if let Ok(InstallingEvent::InstallJobQueued(pb::InstallJobQueued {
                    job: Some(job),
                })) =
                    InstallingEvent::decode(&event.event_type, event.schema_version, &event.payload)
                {
                    seen.entry(job.device_id).or_insert(now);
                }
            }
        }
        (seen, copied)
    });

    // When each scan reaches NATS (relay lag), seen by a plain subscriber.
    let client = async_nats::connect(&nats).await?;
    let mut on_nats_sub = client
        .subscribe(format!("{prefix}.scanning.ScanCompleted"))
        .await?;
    let on_nats = tokio::spawn(async move {
        use futures_util::StreamExt as _;
        let mut on_nats: HashMap<String, Instant> = HashMap::with_capacity(total);
        while on_nats.len() < total {
            let Some(message) = on_nats_sub.next().await else {
                break;
            };
            if let Some(id) = message.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")) {
                on_nats.insert(id.as_str().to_owned(), Instant::now());
            }
        }
        on_nats
    });

    // The load: BATCH scans per transaction, paced to `rate` scans per second.
    let mut sent: HashMap<String, Instant> = HashMap::with_capacity(total);
    let mut event_devices: HashMap<String, String> = HashMap::with_capacity(total);
    let interval = Duration::from_secs_f64(BATCH as f64 / rate as f64);
    let started = Instant::now();
    let mut next = tokio::time::Instant::now();
    let mut device = 0usize;
    while device < total {
        next += interval;
        tokio::time::sleep_until(next).await;
        let mut tx = scanning_store.begin().await?;
        let at = Instant::now();
        for _ in 0..BATCH.min(total - device) {
            let device_id = format!("device-{device:06}");
            let scan = scanning::ScanCompleted {
                device_id: device_id.clone(),
                task_id: "default".into(),
                run: 1,
                required: vec![scanning::RequiredUpdate {
                    update_id: UPDATE.into(),
                    package_or_product: "openssl".into(),
                    installed_version: "3.0.11-1~deb12u2".into(),
                    required_version: "3.0.17-1~deb12u2".into(),
                    architecture: "amd64".into(),
                    ..Default::default()
                }],
                ..Default::default()
            };
            // Schema version 2, as the scanning service writes it.
            let event = NewEvent::new("ScanCompleted", 2, scan.encode_to_vec());
            event_devices.insert(event.event_id.to_string(), device_id.clone());
            tx.append(
                &format!("devicescan-{device_id}"),
                ExpectedVersion::Any,
                &[event],
            )
            .await?;
            sent.insert(device_id, at);
            device += 1;
        }
        tx.commit().await?;
    }
    let load_time = started.elapsed();
    let (seen, copied) = tokio::time::timeout(Duration::from_secs(120), seen).await??;
    let on_nats: HashMap<String, Instant> = tokio::time::timeout(Duration::from_secs(10), on_nats)
        .await??
        .into_iter()
        .filter_map(|(event_id, at)| event_devices.get(&event_id).map(|d| (d.clone(), at)))
        .collect();
    let mut to_nats: Vec<Duration> = sent
        .iter()
        .filter_map(|(device, at)| on_nats.get(device).map(|n| n.duration_since(*at)))
        .collect();
    to_nats.sort();
    shutdown.cancel();
    for task in tasks {
        let _ = task.await;
    }
    let _ = follow.await;
    let _ = planner.await;
    let _ = bus.delete_stream("scanning").await;
    let _ = bus.delete_stream("dlq").await;

    let mut latencies: Vec<Duration> = sent
        .iter()
        .filter_map(|(device, at)| seen.get(device).map(|queued| queued.duration_since(*at)))
        .collect();
    latencies.sort();
    let mut to_copy: Vec<Duration> = sent
        .iter()
        .filter_map(|(device, at)| copied.get(device).map(|copy| copy.duration_since(*at)))
        .collect();
    to_copy.sort();
    let percentile_of = |latencies: &[Duration], p: f64| {
        latencies
            .get(((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    };
    let percentile = |p: f64| percentile_of(&latencies, p);
    println!(
        "reaction latency ScanCompleted -> InstallJobQueued (PostgreSQL + NATS): {} scans at {:.0}/s offered ({:.0}/s achieved), {} jobs seen",
        total,
        rate,
        total as f64 / load_time.as_secs_f64(),
        latencies.len()
    );
    println!(
        "  p50 {:.1} ms  p95 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        percentile(0.50).as_secs_f64() * 1e3,
        percentile(0.95).as_secs_f64() * 1e3,
        percentile(0.99).as_secs_f64() * 1e3,
        percentile(1.0).as_secs_f64() * 1e3,
    );
    println!(
        "  of which scan -> on NATS (relay): p50 {:.1} ms  p99 {:.1} ms",
        percentile_of(&to_nats, 0.50).as_secs_f64() * 1e3,
        percentile_of(&to_nats, 0.99).as_secs_f64() * 1e3,
    );
    println!(
        "  of which scan -> copied into the installing log (relay, NATS, consumer): p50 {:.1} ms  p99 {:.1} ms",
        percentile_of(&to_copy, 0.50).as_secs_f64() * 1e3,
        percentile_of(&to_copy, 0.99).as_secs_f64() * 1e3,
    );
    Ok(())
}
