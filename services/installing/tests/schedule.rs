//! Scheduled install tasks run when due and never pile a run on an open one; a run with nothing to
//! do completes successfully; a bad task is refused with nothing stored.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{Duration, Utc};
use patchbay_eventstore::EventStore;
use patchbay_installing::{Installing, InstallingServiceError};
use patchbay_proto::installing::v1 as pb;
use patchbay_testkit::{TestPostgres, TestSqlite};

async fn scenario(store: EventStore) {
    let installing = Installing::open(store.clone(), semver::Version::new(0, 1, 0))
        .await
        .unwrap();
    let refused = installing
        .create_task(
            pb::CreateTaskRequest {
                name: "no targets".into(),
                kind: pb::TaskKind::InstallRequired as i32,
                ..Default::default()
            },
            "user:test",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(refused, InstallingServiceError::Domain(_))
            && refused.to_string().contains("target"),
        "{refused}"
    );
    assert_eq!(
        store.read_all(Default::default(), 10).await.unwrap().len(),
        0
    );

    let task_id = installing
        .create_task(
            pb::CreateTaskRequest {
                name: "nightly".into(),
                kind: pb::TaskKind::InstallRequired as i32,
                targets: Some(pb::InstallTargets {
                    all_devices: true,
                    ..Default::default()
                }),
                schedule: "daily".into(),
                ..Default::default()
            },
            "user:test",
        )
        .await
        .unwrap();

    let now = Utc::now();
    assert_eq!(
        installing.run_due_tasks(now).await.unwrap(),
        [(task_id.clone(), 1)]
    );
    // The run is open: the schedule does not start another.
    assert!(installing.run_due_tasks(now).await.unwrap().is_empty());
    // The planner finds nothing to install and completes the run.
    while installing.plan_once().await.unwrap() {}
    {
        let view = installing.view();
        let task = &view.tasks[&task_id];
        assert_eq!((task.runs, task.run_open), (1, false));
        assert_eq!(task.last_run_status, "Completed successfully");
    }
    assert!(installing.run_due_tasks(now).await.unwrap().is_empty());
    assert_eq!(
        installing
            .run_due_tasks(now + Duration::hours(25))
            .await
            .unwrap(),
        [(task_id.clone(), 2)]
    );

    // Reopening from the log alone gives the same tasks.
    let reopened = Installing::open(store, semver::Version::new(0, 1, 0))
        .await
        .unwrap();
    assert_eq!(
        reopened.view().tasks[&task_id],
        installing.view().tasks[&task_id]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_runs_on_sqlite() {
    let dir = TestSqlite::new();
    scenario(EventStore::connect(&dir.url("installing")).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_runs_on_postgres() {
    let Some(database) = TestPostgres::create().await else {
        return;
    };
    scenario(EventStore::connect(&database.url).await.unwrap()).await;
}
