//! Concurrent inventory reports, committed together, are each stored exactly once and decided alone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use patchbay_eventstore::EventStore;
use patchbay_proto::scanning::v1 as pb;
use patchbay_scanning::domain::ScanningError;
use patchbay_scanning::view::ScanningView;
use patchbay_scanning::{Scanning, ScanningServiceError};
use patchbay_testkit::{TestPostgres, TestSqlite};

fn inventory(version: &str) -> pb::Inventory {
    pb::Inventory {
        os: "Debian GNU/Linux 12 (bookworm)".into(),
        native_architecture: "amd64".into(),
        packages: (0..50)
            .map(|i| pb::InstalledPackage {
                name: format!("package-{i}"),
                version: version.into(),
                architecture: "amd64".into(),
            })
            .collect(),
        ..Default::default()
    }
}

async fn register(scanning: &Scanning, devices: usize) -> Vec<(String, String)> {
    let mut registered = Vec::with_capacity(devices);
    for device in 0..devices {
        registered.push(
            scanning
                .register(&format!("host-{device}"), vec![], "test")
                .await
                .unwrap(),
        );
    }
    registered
}

/// The device's stream: event types in order.
async fn stream(store: &EventStore, device: &str) -> Vec<String> {
    store
        .read_stream(&format!("device-{device}"), 1, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}

async fn many_devices_each_stored_once(store: EventStore) {
    let scanning = Scanning::open(store.clone()).await.unwrap();
    let devices = register(&scanning, 120).await;
    let reports: Vec<_> = devices
        .iter()
        .enumerate()
        .map(|(n, (device, credential))| {
            let (scanning, device, credential) =
                (scanning.clone(), device.clone(), credential.clone());
            tokio::spawn(async move {
                scanning
                    .report_inventory(&device, &credential, inventory(&format!("1.{n}")))
                    .await
            })
        })
        .collect();
    for report in reports {
        assert!(report.await.unwrap().unwrap(), "a new inventory is stored");
    }
    for (device, _) in &devices {
        assert_eq!(
            stream(&store, device).await,
            ["DeviceRegistered", "InventoryReported"]
        );
    }
    // On PostgreSQL a transaction open elsewhere on the server (other tests) can hold the global
    // order back for a moment after the commits: wait until the view shows every report.
    let shown = |view: &ScanningView| {
        devices
            .iter()
            .all(|(device, _)| view.devices[device].state.inventory.is_some())
    };
    scanning
        .catch_up_until(shown, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    let view = scanning.view();
    for (n, (device, _)) in devices.iter().enumerate() {
        let stored = view.devices[device].state.inventory.as_ref().unwrap();
        assert_eq!(stored.packages[0].version, format!("1.{n}"));
    }
}

async fn same_device_twice_at_once(store: EventStore) {
    let scanning = Scanning::open(store.clone()).await.unwrap();
    let devices = register(&scanning, 2).await;
    let (device, credential) = &devices[0];

    // The same inventory twice at once: whichever is decided second sees the first and stores nothing.
    let (a, b) = tokio::join!(
        scanning.report_inventory(device, credential, inventory("1")),
        scanning.report_inventory(device, credential, inventory("1")),
    );
    let mut changed = [a.unwrap(), b.unwrap()];
    changed.sort();
    assert_eq!(changed, [false, true]);
    assert_eq!(
        stream(&store, device).await,
        ["DeviceRegistered", "InventoryReported"]
    );

    // Two different inventories at once: both are stored, one after the other, neither lost.
    let (a, b) = tokio::join!(
        scanning.report_inventory(device, credential, inventory("2")),
        scanning.report_inventory(device, credential, inventory("3")),
    );
    assert!(a.unwrap() && b.unwrap());
    let events = store
        .read_stream(&format!("device-{device}"), 1, usize::MAX)
        .await
        .unwrap();
    assert_eq!(
        events.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    // Both appends committed, but on PostgreSQL a transaction open elsewhere (another test's, in
    // another database of the same cluster) can hold the global order back for a moment.
    let reached = scanning
        .catch_up_until(
            |view| {
                view.devices
                    .get(device)
                    .is_some_and(|d| d.stream_version == 4)
            },
            std::time::Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert!(reached, "the view never showed the device's fourth event");
    let last = scanning.view().devices[device]
        .state
        .inventory
        .clone()
        .unwrap();
    let last_version = last.packages[0].version.clone();
    assert!(last_version == "2" || last_version == "3");
    // Whichever came last is the device's inventory now: reporting it again changes nothing.
    assert!(
        !scanning
            .report_inventory(device, credential, (*last).clone())
            .await
            .unwrap()
    );
}

async fn a_failing_report_does_not_fail_the_others(store: EventStore) {
    let scanning = Scanning::open(store.clone()).await.unwrap();
    let devices = register(&scanning, 40).await;
    let reports: Vec<_> = devices
        .iter()
        .enumerate()
        .map(|(n, (device, credential))| {
            let scanning = scanning.clone();
            let device = device.clone();
            // Every fifth agent presents a wrong credential; every seventh an invalid inventory.
            let credential = if n % 5 == 0 {
                "wrong".to_owned()
            } else {
                credential.clone()
            };
            let version = if n % 7 == 0 { "1 beta" } else { "1" };
            tokio::spawn(async move {
                (
                    n,
                    scanning
                        .report_inventory(&device, &credential, inventory(version))
                        .await,
                )
            })
        })
        .collect();
    for report in reports {
        let (n, result) = report.await.unwrap();
        let device = &devices[n].0;
        match result {
            Err(ScanningServiceError::Domain(ScanningError::BadCredential(_))) => {
                assert_eq!(n % 5, 0)
            }
            Err(ScanningServiceError::Domain(ScanningError::InvalidInput(_))) => {
                assert!(n % 7 == 0 && n % 5 != 0)
            }
            Ok(changed) => assert!(changed && n % 5 != 0 && n % 7 != 0, "{n}"),
            Err(other) => panic!("report {n}: {other}"),
        }
        let expected: &[&str] = if n % 5 == 0 || n % 7 == 0 {
            &["DeviceRegistered"]
        } else {
            &["DeviceRegistered", "InventoryReported"]
        };
        assert_eq!(stream(&store, device).await, expected, "{n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_devices_each_stored_once_on_sqlite() {
    let dir = TestSqlite::new();
    many_devices_each_stored_once(EventStore::connect(&dir.url("scanning.db")).await.unwrap())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_device_twice_at_once_on_sqlite() {
    let dir = TestSqlite::new();
    same_device_twice_at_once(EventStore::connect(&dir.url("scanning.db")).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_report_does_not_fail_the_others_on_sqlite() {
    let dir = TestSqlite::new();
    a_failing_report_does_not_fail_the_others(
        EventStore::connect(&dir.url("scanning.db")).await.unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_devices_each_stored_once_on_postgres() {
    let Some(db) = TestPostgres::create().await else {
        return;
    };
    many_devices_each_stored_once(EventStore::connect(&db.url).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_device_twice_at_once_on_postgres() {
    let Some(db) = TestPostgres::create().await else {
        return;
    };
    same_device_twice_at_once(EventStore::connect(&db.url).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_report_does_not_fail_the_others_on_postgres() {
    let Some(db) = TestPostgres::create().await else {
        return;
    };
    a_failing_report_does_not_fail_the_others(EventStore::connect(&db.url).await.unwrap()).await;
}
