//! The WSUS sync service against the fake upstream (the real MS-WSUSSS wire format over HTTP on
//! 127.0.0.1): initial and incremental sync, revisions and expiry, batch limits, every fault the
//! spec names, timeouts, corrupt answers, a crash mid-sync resumed from the last anchors, and the
//! catalog's view of the synced updates. Each scenario runs on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use patchbay_bus::{EventHandler, IncomingEvent};
use patchbay_catalog::Catalog;
use patchbay_catalog::wsus::WsusRecorder;
use patchbay_eventstore::{EventStore, LogPosition};
use patchbay_proto::catalog::v1 as catalog;
use patchbay_proto::wsus::v1 as pb;
use patchbay_testkit::{TestPostgres, TestSqlite};
use patchbay_wsus_sync::domain::{ConfigRequest, RunState, RunSummary};
use patchbay_wsus_sync::events::WsusEvent;
use patchbay_wsus_sync::{SyncOptions, WsusSync};
use patchbay_wsus_upstream::{
    FakeUpstream, FixtureCatalog, Garble, InjectedFault, UpstreamOptions, ids,
};

const BATCH: u32 = 4;

fn fault(code: &str) -> InjectedFault {
    InjectedFault {
        error_code: (!code.is_empty()).then(|| code.to_owned()),
        message: format!("injected {code}"),
    }
}

fn options() -> SyncOptions {
    SyncOptions {
        request_timeout: Duration::from_secs(2),
        busy_backoff: Duration::from_millis(10),
        ..SyncOptions::default()
    }
}

async fn upstream() -> FakeUpstream {
    FakeUpstream::start(
        FixtureCatalog::sample(),
        UpstreamOptions {
            max_updates_per_request: BATCH,
            ..UpstreamOptions::default()
        },
    )
    .await
    .unwrap()
}

async fn configured(store: EventStore, upstream: &FakeUpstream) -> WsusSync {
    let wsus = WsusSync::open(store, options()).await.unwrap();
    wsus.set_config(
        ConfigRequest {
            upstream_url: upstream.url(),
            schedule: "manual".into(),
            ..ConfigRequest::default()
        },
        "user:admin",
    )
    .await
    .unwrap();
    wsus
}

async fn sync(wsus: &WsusSync) -> RunSummary {
    wsus.sync_now("manual", "user:admin").await.unwrap()
}

fn completed(run: &RunSummary) -> pb::WsusSyncCompleted {
    assert_eq!(
        run.state,
        RunState::Completed,
        "the run failed: {:?}",
        run.failed
    );
    run.completed.clone().unwrap()
}

fn failed(run: &RunSummary) -> pb::WsusSyncFailed {
    assert_eq!(run.state, RunState::Failed, "the run did not fail: {run:?}");
    run.failed.clone().unwrap()
}

/// Every `WsusUpdateSynced` in the log, in order.
async fn synced(store: &EventStore) -> Vec<pb::WsusUpdateSynced> {
    let events = store.read_all(LogPosition::START, 100_000).await.unwrap();
    events
        .iter()
        .filter_map(
            |e| match WsusEvent::decode(&e.event_type, e.schema_version, &e.payload) {
                Ok(WsusEvent::WsusUpdateSynced(s)) => Some(s),
                _ => None,
            },
        )
        .collect()
}

fn software(all: &[pb::WsusUpdateSynced]) -> Vec<&pb::WsusUpdateSynced> {
    all.iter()
        .filter(|s| {
            s.update_type == pb::WsusUpdateType::Software as i32
                || s.update_type == pb::WsusUpdateType::Driver as i32
        })
        .collect()
}

async fn initial_incremental_revision_expiry(store: EventStore) {
    let upstream = upstream().await;
    let wsus = configured(store.clone(), &upstream).await;

    let first = completed(&sync(&wsus).await);
    let stored = synced(&store).await;
    let updates = software(&stored);
    assert!(first.new_updates >= 10, "{first:?}");
    assert_eq!(first.new_updates as usize, updates.len());
    assert!(
        first.categories >= 12,
        "classifications, products, detectoids: {first:?}"
    );
    assert!(!first_run_incremental(&wsus));
    // Batches never exceed what GetConfigData allowed.
    let requests = upstream.requests();
    let batches: Vec<usize> = requests
        .iter()
        .filter(|r| r.operation == "GetUpdateData")
        .filter_map(|r| r.update_id_count)
        .collect();
    assert!(batches.len() >= 4, "{batches:?}");
    assert!(
        batches.iter().all(|&n| (1..=BATCH as usize).contains(&n)),
        "{batches:?}"
    );
    // Plain and compressed blobs both arrived and decoded.
    assert!(stored.iter().any(|s| s.was_compressed));
    assert!(stored.iter().any(|s| !s.was_compressed));
    // The metadata made it through: KB, severity, CVE, classification and product by title,
    // supersedence, EULA, files with both digests.
    let cumulative = updates
        .iter()
        .find(|s| s.update_id == ids::KB_CUMULATIVE_NEW)
        .expect("the newer cumulative update");
    assert!(!cumulative.kb_article_ids.is_empty());
    assert!(!cumulative.msrc_severity.is_empty());
    assert!(
        cumulative
            .superseded_update_ids
            .iter()
            .any(|id| id == ids::KB_CUMULATIVE_OLD)
    );
    assert!(
        cumulative
            .categories
            .iter()
            .any(|c| c.id == ids::SECURITY_UPDATES && !c.title.is_empty())
    );
    assert!(
        cumulative
            .files
            .iter()
            .all(|f| f.sha1.len() == 40 && f.sha256.len() == 64)
    );
    assert!(updates.iter().any(|s| !s.eula_id.is_empty()));

    // Nothing changed upstream: nothing new, and the run was incremental.
    upstream.clear_requests();
    let second = completed(&sync(&wsus).await);
    assert_eq!(
        (
            second.new_updates,
            second.revised_updates,
            second.expired_updates,
            second.categories
        ),
        (0, 0, 0, 0)
    );
    assert!(wsus.runs(1)[0].incremental);
    assert!(
        upstream
            .requests()
            .iter()
            .all(|r| r.operation != "GetUpdateData")
    );
    assert!(
        upstream
            .requests()
            .iter()
            .any(|r| r.operation == "GetRevisionIdList" && r.filter_anchor.is_some())
    );
    assert_eq!(synced(&store).await.len(), stored.len(), "nothing appended");

    // A revision bump and an expiry arrive incrementally.
    upstream.catalog().revise(ids::KB_CUMULATIVE_NEW).unwrap();
    upstream.catalog().expire(ids::KB_CUMULATIVE_OLD).unwrap();
    let third = completed(&sync(&wsus).await);
    assert_eq!(
        (
            third.new_updates,
            third.revised_updates,
            third.expired_updates
        ),
        (0, 1, 1),
        "{third:?}"
    );
    let view = wsus.view();
    assert!(view.revisions[ids::KB_CUMULATIVE_OLD].expired);
    assert!(view.revisions[ids::KB_CUMULATIVE_NEW].revision_number > cumulative.revision_number);
}

fn first_run_incremental(wsus: &WsusSync) -> bool {
    wsus.runs(10).last().is_some_and(|r| r.incremental)
}

async fn faults_are_handled_as_the_spec_says(store: EventStore) {
    let upstream = upstream().await;
    let wsus = configured(store.clone(), &upstream).await;
    completed(&sync(&wsus).await);

    // InvalidCookie and InvalidAuthorizationCookie: re-authorize, carry on.
    for code in ["InvalidCookie", "InvalidAuthorizationCookie"] {
        upstream.clear_requests();
        upstream.fail_next("GetConfigData", fault(code), 1);
        completed(&sync(&wsus).await);
        let auth = upstream
            .requests()
            .iter()
            .filter(|r| r.operation == "GetAuthConfig")
            .count();
        assert_eq!(auth, 2, "{code}: the run authorized again");
    }
    // ServerBusy: back off and retry.
    upstream.fail_next("GetRevisionIdList", fault("ServerBusy"), 2);
    completed(&sync(&wsus).await);

    // The rest stop the run; the anchors stay where they were.
    // The revision anchors only move once every revision they list is stored (the config anchor
    // moves as soon as GetConfigData succeeded, which is the step that produced it).
    let sync_anchors = |wsus: &WsusSync| {
        let view = wsus.view();
        (
            view.upstream.categories_anchor.clone(),
            view.upstream.updates_anchor.clone(),
        )
    };
    let anchors = sync_anchors(&wsus);
    for (operation, injected, code) in [
        (
            "GetConfigData",
            fault("InvalidParameters"),
            "InvalidParameters",
        ),
        (
            "GetRevisionIdList",
            fault("InternalServerError"),
            "InternalServerError",
        ),
        (
            "GetCookie",
            fault("IncompatibleProtocolVersion"),
            "IncompatibleProtocolVersion",
        ),
        ("GetRevisionIdList", fault(""), ""),
        ("GetRevisionIdList", fault("ServerBusy"), "ServerBusy"),
    ] {
        // ServerBusy on every retry (1 try + busy_retries) stops the run.
        let times = if code == "ServerBusy" {
            1 + options().busy_retries
        } else {
            1
        };
        upstream.fail_next(operation, injected, times);
        let failure = failed(&sync(&wsus).await);
        assert_eq!(failure.error_code, code, "{failure:?}");
        assert!(!failure.reason.is_empty());
        assert_eq!(
            sync_anchors(&wsus),
            anchors,
            "anchors unchanged after {code:?}"
        );
    }

    // ServerChanged: forget the anchors and sync everything again; nothing is duplicated.
    let before = synced(&store).await.len();
    upstream.change_server_identity();
    let changed = completed(&sync(&wsus).await);
    assert_eq!(changed.new_updates, 0);
    assert_eq!(synced(&store).await.len(), before);
    let events = store.read_all(LogPosition::START, 100_000).await.unwrap();
    assert!(events.iter().any(|e| e.event_type == "WsusAnchorsReset"));
}

async fn the_schedule_starts_runs_when_due(store: EventStore) {
    let upstream = upstream().await;
    let wsus = WsusSync::open(store, options()).await.unwrap();
    assert_eq!(
        wsus.next_run_at(),
        None,
        "not configured: nothing to schedule"
    );
    wsus.set_config(
        ConfigRequest {
            upstream_url: upstream.url(),
            ..ConfigRequest::default()
        },
        "user:admin",
    )
    .await
    .unwrap();
    // Daily by default, and due at once when it never ran.
    let now = chrono::Utc::now();
    assert!(wsus.next_run_at().unwrap() <= now);
    let (run_id, running) = wsus.run_due(now).await.unwrap().expect("a run is due");
    running.await.unwrap();
    let run = wsus.run(&run_id).unwrap();
    assert_eq!(
        (run.trigger.as_str(), run.state),
        ("schedule", RunState::Completed)
    );
    let next = wsus.next_run_at().unwrap();
    assert_eq!(next, run.started_at.unwrap() + chrono::Duration::days(1));
    assert!(
        wsus.run_due(now).await.unwrap().is_none(),
        "not due again today"
    );
    assert!(
        wsus.run_due(next).await.unwrap().is_some(),
        "due a day later"
    );
}

async fn expiring_cookies_are_renewed_never_used(store: EventStore) {
    // Cookies that live 30 s are inside the 60 s renewal margin from the start, so every call
    // renews with GetCookie (oldCookie set); the upstream refuses any expired cookie.
    let upstream = FakeUpstream::start(
        FixtureCatalog::sample(),
        UpstreamOptions {
            max_updates_per_request: BATCH,
            cookie_lifetime: Duration::from_secs(30),
            ..UpstreamOptions::default()
        },
    )
    .await
    .unwrap();
    let wsus = configured(store, &upstream).await;
    completed(&sync(&wsus).await);
    let requests = upstream.requests();
    let count = |operation: &str| requests.iter().filter(|r| r.operation == operation).count();
    let server_sync_calls =
        count("GetConfigData") + count("GetRevisionIdList") + count("GetUpdateData");
    assert_eq!(count("GetCookie"), server_sync_calls);
    assert_eq!(
        count("GetAuthorizationCookie"),
        1,
        "renewal needs no new authorization"
    );
}

async fn bad_answers_fail_cleanly(store: EventStore) {
    let upstream = upstream().await;
    let wsus = configured(store.clone(), &upstream).await;
    completed(&sync(&wsus).await);
    let anchors = wsus.view().upstream.updates_anchor.clone();
    let stored = synced(&store).await.len();
    upstream.catalog().revise(ids::KB_CUMULATIVE_NEW).unwrap();
    for (operation, garble, expected) in [
        ("GetConfigData", Garble::MalformedXml, "not valid"),
        ("GetConfigData", Garble::DoctypeBomb, "DTD"),
        ("GetUpdateData", Garble::TruncatedCab, "CAB"),
        ("GetRevisionIdList", Garble::HttpError(503), "HTTP 503"),
    ] {
        upstream.garble_next(operation, garble, 1);
        let failure = failed(&sync(&wsus).await);
        assert!(
            failure.reason.contains(expected),
            "{operation}: {}",
            failure.reason
        );
        assert_eq!(
            wsus.view().upstream.updates_anchor,
            anchors,
            "anchors unchanged"
        );
        assert_eq!(synced(&store).await.len(), stored, "nothing half-stored");
    }
    // An upstream that announces another major protocol version.
    upstream.set_protocol_version("2.0");
    let failure = failed(&sync(&wsus).await);
    assert!(
        failure.reason.contains("ProtocolVersion"),
        "{}",
        failure.reason
    );
    upstream.set_protocol_version("1.20");
    // An upstream that hangs: the request times out, the run fails.
    upstream.hang_next("GetRevisionIdList", 1);
    let failure = failed(&sync(&wsus).await);
    assert!(
        failure.reason.contains("did not answer"),
        "{}",
        failure.reason
    );
    // And the next run picks up the revision.
    let recovered = completed(&sync(&wsus).await);
    assert_eq!(recovered.revised_updates, 1);
}

async fn a_crash_mid_sync_resumes_from_the_last_anchor(store: EventStore) {
    let upstream = FakeUpstream::start(
        FixtureCatalog::generated(120, 7),
        UpstreamOptions {
            max_updates_per_request: 5,
            ..UpstreamOptions::default()
        },
    )
    .await
    .unwrap();
    let wsus = configured(store.clone(), &upstream).await;
    let (run_id, running) = wsus.start_sync("manual", "user:admin").await.unwrap();
    // Wait until some updates are stored, then make the next batch hang and "crash".
    for _ in 0..2_000 {
        wsus.catch_up().await.unwrap();
        if wsus.view().counts().0 >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    upstream.hang_next("GetUpdateData", 1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    running.abort();
    let _ = running.await;
    // On a loaded machine the aborted run may not have reached its next batch, and the hang
    // would then stall the restarted run's first batch until its timeout.
    upstream.clear_injections();
    let before = synced(&store).await;
    let stored_before = software(&before).len();
    assert!(
        (5..120).contains(&stored_before),
        "{stored_before} stored before the crash"
    );

    // A new process on the same log.
    let restarted = WsusSync::open(store.clone(), options()).await.unwrap();
    upstream.clear_requests();
    let resumed = completed(&sync(&restarted).await);
    assert_eq!(resumed.new_updates as usize, 120 - stored_before);
    let fetched: usize = upstream
        .requests()
        .iter()
        .filter(|r| r.operation == "GetUpdateData")
        .filter_map(|r| r.update_id_count)
        .sum();
    assert_eq!(
        fetched,
        120 - stored_before,
        "only what was missing is fetched"
    );
    let after = synced(&store).await;
    assert_eq!(software(&after).len(), 120);
    let crashed = restarted.run(&run_id).unwrap();
    assert_eq!(crashed.state, RunState::Failed);
    assert!(crashed.failed.unwrap().reason.contains("interrupted"));
}

async fn the_catalog_lists_the_microsoft_updates(store: EventStore, catalog_store: EventStore) {
    let upstream = upstream().await;
    let wsus = configured(store.clone(), &upstream).await;
    completed(&sync(&wsus).await);
    let catalog = Catalog::open(catalog_store.clone()).await.unwrap();
    let recorder = WsusRecorder::new(catalog.clone());
    let events = store.read_all(LogPosition::START, 100_000).await.unwrap();
    let incoming: Vec<IncomingEvent> = events
        .into_iter()
        .map(|event| IncomingEvent {
            service: "wsus-sync".into(),
            event,
        })
        .collect();
    // Delivered twice, as a redelivery would: the second pass changes nothing.
    for _ in 0..2 {
        let mut tx = catalog_store.begin().await.unwrap();
        let refs: Vec<&IncomingEvent> = incoming.iter().collect();
        recorder.handle_batch(&mut tx, &refs).await.unwrap();
        tx.commit().await.unwrap();
    }
    catalog.catch_up().await.unwrap();
    let view = catalog.view();
    let new = &view.updates[ids::KB_CUMULATIVE_NEW];
    let details = new.state.details.clone().unwrap();
    assert_eq!(details.kind, catalog::UpdateKind::Windows as i32);
    assert_eq!(
        details.classification,
        catalog::Classification::Security as i32
    );
    assert!(details.version.starts_with("KB"));
    assert!(!details.product.is_empty());
    assert_ne!(details.severity, catalog::Severity::Unspecified as i32);
    match details.applicability {
        Some(catalog::update_details::Applicability::Windows(w)) => {
            assert!(w.kb_article.starts_with("KB"));
            assert!(!w.product_ids.is_empty());
        }
        other => panic!("not a Windows update: {other:?}"),
    }
    assert_eq!(
        view.updates[ids::KB_CUMULATIVE_OLD]
            .state
            .superseded_by
            .as_deref(),
        Some(ids::KB_CUMULATIVE_NEW)
    );
    assert_eq!(
        new.stream_version, 1,
        "published once despite the redelivery"
    );
}

macro_rules! on_both_backends {
    ($scenario:ident, $sqlite:ident, $postgres:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            let dir = TestSqlite::new();
            $scenario(EventStore::connect(&dir.url("wsus.db")).await.unwrap()).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            let Some(db) = TestPostgres::create().await else {
                return;
            };
            $scenario(EventStore::connect(&db.url).await.unwrap()).await;
        }
    };
}

on_both_backends!(
    initial_incremental_revision_expiry,
    sync_sqlite,
    sync_postgres
);
on_both_backends!(
    faults_are_handled_as_the_spec_says,
    faults_sqlite,
    faults_postgres
);
on_both_backends!(
    bad_answers_fail_cleanly,
    bad_answers_sqlite,
    bad_answers_postgres
);
on_both_backends!(
    the_schedule_starts_runs_when_due,
    schedule_sqlite,
    schedule_postgres
);
on_both_backends!(
    expiring_cookies_are_renewed_never_used,
    cookies_sqlite,
    cookies_postgres
);
on_both_backends!(
    a_crash_mid_sync_resumes_from_the_last_anchor,
    crash_sqlite,
    crash_postgres
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_lists_synced_updates_sqlite() {
    let dir = TestSqlite::new();
    the_catalog_lists_the_microsoft_updates(
        EventStore::connect(&dir.url("wsus.db")).await.unwrap(),
        EventStore::connect(&dir.url("catalog.db")).await.unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_lists_synced_updates_postgres() {
    let (Some(wsus), Some(catalog)) = (TestPostgres::create().await, TestPostgres::create().await)
    else {
        return;
    };
    the_catalog_lists_the_microsoft_updates(
        EventStore::connect(&wsus.url).await.unwrap(),
        EventStore::connect(&catalog.url).await.unwrap(),
    )
    .await;
}
