//! The catalog's approval and install-result consumers on SQLite and the in-process bus: what the
//! approvals and installing services publish becomes approval status and installation statistics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use patchbay_bus::{Bus, ConsumerConfig, ConsumerRunner, EventHandler, Relay, RunStats, Subjects};
use patchbay_catalog::approvals::{self, ApprovalRecorder};
use patchbay_catalog::domain::UpdateId;
use patchbay_catalog::installs::{self, InstallResultRecorder};
use patchbay_catalog::view::{InstallCounts, UpdateFilter};
use patchbay_catalog::{Catalog, CatalogServiceError};
use patchbay_eventstore::{EventStore, ExpectedVersion, LogPosition, NewEvent};
use patchbay_proto::approvals::v1 as approvals_pb;
use patchbay_proto::catalog::v1 as pb;
use patchbay_proto::installing::v1 as installing_pb;
use patchbay_testkit::TestSqlite;
use prost::Message;

fn update(package: &str) -> (UpdateId, pb::UpdateDetails) {
    let id = UpdateId::debian(package, "1.0-1", "amd64").unwrap();
    let details = pb::UpdateDetails {
        title: format!("{package} 1.0-1"),
        vendor: "Debian".into(),
        product: package.into(),
        version: "1.0-1".into(),
        kind: pb::UpdateKind::ThirdParty as i32,
        classification: pb::Classification::Security as i32,
        severity: pb::Severity::Important as i32,
        ..Default::default()
    };
    (id, details)
}

async fn append(store: &EventStore, stream: &str, event_type: &str, payload: impl Message) {
    store
        .append(
            stream,
            ExpectedVersion::Any,
            &[NewEvent::new(event_type, 1, payload.encode_to_vec())],
        )
        .await
        .unwrap();
}

fn job(job_id: &str, device_id: &str, update_id: &str) -> Option<installing_pb::Job> {
    Some(installing_pb::Job {
        job_id: job_id.into(),
        device_id: device_id.into(),
        update_id: update_id.into(),
        ..Default::default()
    })
}

async fn queue(store: &EventStore, job_id: &str, device_id: &str, update_id: &str) {
    let queued = installing_pb::InstallJobQueued {
        job: job(job_id, device_id, update_id),
    };
    append(store, &format!("job-{job_id}"), "InstallJobQueued", queued).await;
}

async fn succeed(store: &EventStore, job_id: &str, device_id: &str) {
    let succeeded = installing_pb::InstallJobSucceeded {
        job_id: job_id.into(),
        device_id: device_id.into(),
        output: String::new(),
    };
    append(
        store,
        &format!("job-{job_id}"),
        "InstallJobSucceeded",
        succeeded,
    )
    .await;
}

/// Relays the producer's new events and lets the catalog's consumer take `expected` of them.
async fn deliver<H: EventHandler>(
    relay: &Relay,
    runner: &ConsumerRunner<H>,
    consumer: &mut patchbay_bus::BusConsumer,
    expected: usize,
) -> RunStats {
    relay.relay_pending().await.unwrap();
    let mut stats = RunStats::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stats.handled + stats.dead_lettered < expected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {stats:?} of {expected} events handled"
        );
        stats += runner
            .run_once(consumer, Duration::from_millis(100))
            .await
            .unwrap();
    }
    stats
}

fn counts(catalog: &Catalog, update_id: &UpdateId) -> (u32, u32, u32) {
    let InstallCounts {
        installed,
        pending,
        failed,
    } = catalog.view().install_counts(update_id.as_str());
    (installed, pending, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_and_install_results_reach_the_catalog_view() -> Result<(), CatalogServiceError> {
    let dir = TestSqlite::new();
    let catalog = Catalog::open(EventStore::connect(&dir.url("catalog.db")).await?).await?;
    let (tools, tools_details) = update("tools");
    let (vpn, vpn_details) = update("vpn");
    catalog
        .publish_updates(
            vec![(tools.clone(), tools_details), (vpn.clone(), vpn_details)],
            "user:alice",
        )
        .await?;
    let bus = Bus::in_process(&dir.url("bus.db"), Subjects::default())
        .await
        .unwrap();

    // Approvals: tools approved then declined, vpn approved then reset; a EULA decision is ignored.
    let approvals_store = EventStore::connect(&dir.url("approvals.db")).await?;
    let approved = |id: &UpdateId| approvals_pb::UpdateApproved {
        update_id: id.to_string(),
        ..Default::default()
    };
    let tools_stream = format!("approval-{tools}");
    let vpn_stream = format!("approval-{vpn}");
    append(
        &approvals_store,
        &tools_stream,
        "UpdateApproved",
        approved(&tools),
    )
    .await;
    append(
        &approvals_store,
        &vpn_stream,
        "UpdateApproved",
        approved(&vpn),
    )
    .await;
    let declined = approvals_pb::UpdateDeclined {
        update_id: tools.to_string(),
        ..Default::default()
    };
    append(&approvals_store, &tools_stream, "UpdateDeclined", declined).await;
    let reset = approvals_pb::ApprovalReset {
        update_id: vpn.to_string(),
        ..Default::default()
    };
    append(&approvals_store, &vpn_stream, "ApprovalReset", reset).await;
    let eula = approvals_pb::EulaAccepted {
        eula_id: "e".into(),
        text_sha256: "00".into(),
    };
    append(&approvals_store, "eula-e", "EulaAccepted", eula).await;

    let relay = Relay::new("approvals", approvals_store.clone(), bus.clone()).unwrap();
    let runner = ConsumerRunner::new(
        ConsumerConfig::new(approvals::CONSUMER, approvals::SERVICE),
        catalog.store().clone(),
        bus.clone(),
        ApprovalRecorder,
    );
    let mut consumer = runner.bind().await.unwrap();
    let stats = deliver(&relay, &runner, &mut consumer, 5).await;
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");
    catalog.catch_up().await?;
    {
        let view = catalog.view();
        let declined = pb::ApprovalStatus::Declined as i32;
        assert_eq!(view.approval_status(tools.as_str()), declined);
        assert_eq!(view.approval_status(vpn.as_str()), 0);
        let (listed, total) = view.list(
            &UpdateFilter {
                approval_status: Some(declined),
                ..Default::default()
            },
            None,
            10,
        );
        assert_eq!(total, 1);
        assert_eq!(listed[0].update_id, tools.as_str());
        assert_eq!(listed[0].approval_status, declined);
    }

    // Installs: d1 installs tools and vpn; d2's tools install fails and is retried.
    let installing_store = EventStore::connect(&dir.url("installing.db")).await?;
    let relay = Relay::new("installing", installing_store.clone(), bus.clone()).unwrap();
    let runner = ConsumerRunner::new(
        ConsumerConfig::new(installs::CONSUMER, installs::SERVICE),
        catalog.store().clone(),
        bus.clone(),
        InstallResultRecorder,
    );
    let mut consumer = runner.bind().await.unwrap();
    let task = installing_pb::InstallTaskCreated {
        task_id: "t1".into(),
        name: "all".into(),
        ..Default::default()
    };
    append(
        &installing_store,
        "installtask-t1",
        "InstallTaskCreated",
        task,
    )
    .await;
    queue(&installing_store, "j1", "d1", tools.as_str()).await;
    let dispatched = installing_pb::InstallJobDispatched {
        job_id: "j1".into(),
        device_id: "d1".into(),
    };
    append(
        &installing_store,
        "job-j1",
        "InstallJobDispatched",
        dispatched,
    )
    .await;
    queue(&installing_store, "j2", "d2", tools.as_str()).await;
    queue(&installing_store, "j3", "d1", vpn.as_str()).await;
    let reboot = installing_pb::InstallJobRebootRequired {
        job_id: "j3".into(),
        device_id: "d1".into(),
    };
    append(
        &installing_store,
        "job-j3",
        "InstallJobRebootRequired",
        reboot,
    )
    .await;
    let failed = installing_pb::InstallJobFailed {
        job_id: "j2".into(),
        device_id: "d2".into(),
        reason: "dpkg: error".into(),
    };
    append(&installing_store, "job-j2", "InstallJobFailed", failed).await;
    deliver(&relay, &runner, &mut consumer, 7).await;
    catalog.catch_up().await?;
    assert_eq!(counts(&catalog, &tools), (0, 1, 1));
    assert_eq!(counts(&catalog, &vpn), (1, 0, 0));

    succeed(&installing_store, "j1", "d1").await;
    queue(&installing_store, "j4", "d2", tools.as_str()).await;
    deliver(&relay, &runner, &mut consumer, 2).await;
    catalog.catch_up().await?;
    assert_eq!(counts(&catalog, &tools), (1, 1, 0));

    // d2's retry succeeds; tools is declined and uninstalled from d1; a cancelled job counts nowhere;
    // a result that does not decode is dead-lettered, not half-recorded.
    succeed(&installing_store, "j4", "d2").await;
    let uninstall = installing_pb::UninstallJobQueued {
        job: job("u1", "d1", tools.as_str()).map(|mut job| {
            job.kind = installing_pb::JobKind::Uninstall as i32;
            job
        }),
    };
    append(&installing_store, "job-u1", "UninstallJobQueued", uninstall).await;
    succeed(&installing_store, "u1", "d1").await;
    queue(&installing_store, "j5", "d3", tools.as_str()).await;
    let cancelled = installing_pb::InstallJobCancelled {
        job_id: "j5".into(),
        device_id: "d3".into(),
        reason: "declined".into(),
    };
    append(
        &installing_store,
        "job-j5",
        "InstallJobCancelled",
        cancelled,
    )
    .await;
    installing_store
        .append(
            "job-bad",
            ExpectedVersion::Any,
            &[NewEvent::new("InstallJobSucceeded", 1, vec![0xff, 0xff])],
        )
        .await?;
    let stats = deliver(&relay, &runner, &mut consumer, 6).await;
    assert_eq!(stats.dead_lettered, 1, "{stats:?}");
    catalog.catch_up().await?;
    assert_eq!(counts(&catalog, &tools), (1, 0, 0));
    assert_eq!(counts(&catalog, &vpn), (1, 0, 0));

    // What the catalog recorded is its own log: a replica opened on it alone sees the same.
    let replica = Catalog::open(catalog.store().clone()).await?;
    assert_eq!(counts(&replica, &tools), (1, 0, 0));
    assert_eq!(
        replica.view().approval_status(tools.as_str()),
        pb::ApprovalStatus::Declined as i32
    );
    let recorded = catalog
        .store()
        .read_stream(&installs::device_installs_stream("d1"), 1, 100)
        .await?;
    assert_eq!(recorded.len(), 7);
    assert!(recorded.iter().all(|e| e.metadata.causation_id.is_some()));
    assert!(
        catalog.store().count_after(LogPosition::START).await? > 0,
        "the catalog log holds the observations"
    );
    Ok(())
}
