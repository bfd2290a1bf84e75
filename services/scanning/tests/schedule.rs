//! The default weekly scan task runs when due, once, even with two replicas asking at the same time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{Duration, Utc};
use patchbay_eventstore::EventStore;
use patchbay_proto::scanning::v1 as pb;
use patchbay_scanning::Scanning;
use patchbay_scanning::service::DEFAULT_TASK;
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
