//! The default weekly scan task runs when due, once, even with two replicas asking at the same
//! time; a run over a fleet larger than one written chunk scans every device once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{Duration, Utc};
use patchbay_eventstore::EventStore;
use patchbay_proto::scanning::v1 as pb;
use patchbay_scanning::Scanning;
use patchbay_scanning::service::DEFAULT_TASK;
use patchbay_scanning::view::ScanningView;
use patchbay_testkit::{TestPostgres, TestSqlite};

async fn scenario(store: EventStore) {
    let scanning = Scanning::open(store.clone()).await.unwrap();
    scanning.ensure_default_task().await.unwrap();
    scanning.ensure_default_task().await.unwrap();
    let (device, credential) = scanning.register("web-1", vec![], "test").await.unwrap();
    let inventory = pb::Inventory {
        native_architecture: "amd64".into(),
        packages: vec![pb::InstalledPackage {
            name: "dpkg".into(),
            version: "1.21.22".into(),
            architecture: "amd64".into(),
        }],
        ..Default::default()
    };
    assert!(
        scanning
            .report_inventory(&device, &credential, inventory)
            .await
            .unwrap()
    );

    let now = Utc::now();
    let first = scanning.run_due_tasks(now).await.unwrap();
    assert_eq!(first.len(), 1, "a task never run is due");
    assert_eq!(
        (
            first[0].task_id.as_str(),
            first[0].run,
            first[0].devices_scanned
        ),
        (DEFAULT_TASK, 1, 1)
    );
    assert!(
        scanning
            .run_due_tasks(now + Duration::days(1))
            .await
            .unwrap()
            .is_empty(),
        "weekly: not due after a day"
    );

    // Two replicas find the task due at once: exactly one runs it.
    let replica = Scanning::open(store).await.unwrap();
    // Just past a week after the first run finished: due for both, but a run either of them finishes
    // (at the real time, later than the first) makes it not due for the other.
    let first_finished = scanning.view().tasks[DEFAULT_TASK]
        .last_completed_at
        .unwrap();
    let later = first_finished + Duration::weeks(1) + Duration::milliseconds(1);
    let (a, b) = tokio::join!(scanning.run_due_tasks(later), replica.run_due_tasks(later));
    assert_eq!(a.unwrap().len() + b.unwrap().len(), 1);
    scanning.catch_up().await.unwrap();
    let view = scanning.view();
    let task = &view.tasks[DEFAULT_TASK];
    assert_eq!(
        (task.state.runs, task.state.schedule.as_str()),
        (2, "weekly")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_scans_on_sqlite() {
    let dir = TestSqlite::new();
    scenario(EventStore::connect(&dir.url("scanning.db")).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_scans_on_postgres() {
    let Some(db) = TestPostgres::create().await else {
        return;
    };
    scenario(EventStore::connect(&db.url).await.unwrap()).await;
}

/// A run is evaluated and written a chunk of devices at a time: every device with an inventory
/// gets exactly one `ScanCompleted`, and the others are counted as without inventory.
async fn a_run_larger_than_a_chunk(store: EventStore) {
    const DEVICES: usize = 1_500;
    const WITH_INVENTORY: usize = 1_200;
    let scanning = Scanning::open(store.clone()).await.unwrap();
    scanning.ensure_default_task().await.unwrap();
    let mut devices = Vec::with_capacity(DEVICES);
    for n in 0..DEVICES {
        devices.push(
            scanning
                .register(&format!("host-{n}"), vec![], "test")
                .await
                .unwrap(),
        );
    }
    let reports: Vec<_> = devices[..WITH_INVENTORY]
        .iter()
        .map(|(device, credential)| {
            let (scanning, device, credential) =
                (scanning.clone(), device.clone(), credential.clone());
            tokio::spawn(async move {
                let inventory = pb::Inventory {
                    native_architecture: "amd64".into(),
                    packages: vec![pb::InstalledPackage {
                        name: "dpkg".into(),
                        version: "1.21.22".into(),
                        architecture: "amd64".into(),
                    }],
                    ..Default::default()
                };
                scanning
                    .report_inventory(&device, &credential, inventory)
                    .await
            })
        })
        .collect();
    for report in reports {
        assert!(report.await.unwrap().unwrap());
    }
    // On PostgreSQL the other tests' open transactions can hold the global order back for a
    // moment after the commits: wait until the view shows every report.
    let shown = |view: &ScanningView| {
        devices[..WITH_INVENTORY]
            .iter()
            .all(|(device, _)| view.devices[device].state.inventory.is_some())
    };
    assert!(
        scanning
            .catch_up_until(shown, std::time::Duration::from_secs(10))
            .await
            .unwrap()
    );

    let run = scanning.run_task(DEFAULT_TASK, "test").await.unwrap();
    assert_eq!(
        (run.devices_scanned, run.devices_without_inventory),
        (WITH_INVENTORY as u64, (DEVICES - WITH_INVENTORY) as u64)
    );
    for (n, (device, _)) in devices.iter().enumerate() {
        let scans = store
            .read_stream(&format!("devicescan-{device}"), 1, 10)
            .await
            .unwrap();
        let expected = usize::from(n < WITH_INVENTORY);
        assert_eq!(scans.len(), expected, "{device}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_larger_than_a_chunk_on_sqlite() {
    let dir = TestSqlite::new();
    a_run_larger_than_a_chunk(EventStore::connect(&dir.url("scanning.db")).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_larger_than_a_chunk_on_postgres() {
    let Some(db) = TestPostgres::create().await else {
        return;
    };
    a_run_larger_than_a_chunk(EventStore::connect(&db.url).await.unwrap()).await;
}
