//! One behavioural suite, run against SQLite always and PostgreSQL when `PATCHBAY_TEST_DATABASE_URL` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use patchbay_eventstore::{
    EventStore, EventStoreError, ExpectedVersion, LogPosition, NewEvent, Projection, RecordedEvent,
    Snapshot, Snapshottable, Snapshotter, StoreOptions, StreamAppend, Upcasters, load_as_of,
};
use patchbay_testkit::{TestPostgres, TestSqlite};

/// Keeps whatever backs a test store alive for the test's duration.
#[allow(dead_code, clippy::large_enum_variant)] // held only for its Drop
enum Guard {
    Sqlite(TestSqlite),
    Postgres(TestPostgres),
}

async fn sqlite_store(options: StoreOptions) -> (EventStore, Guard) {
    let dir = TestSqlite::new();
    let store = EventStore::connect_with(&dir.url("events.db"), options)
        .await
        .unwrap();
    (store, Guard::Sqlite(dir))
}

async fn postgres_store(options: StoreOptions) -> Option<(EventStore, Guard)> {
    let db = TestPostgres::create().await?;
    let store = EventStore::connect_with(&db.url, options).await.unwrap();
    Some((store, Guard::Postgres(db)))
}

/// The whole log once every committed event is visible. On PostgreSQL, a transaction left open by
/// another test on the same server holds back the global order for a moment (by design), so a test
/// that reads everything right after writing waits for the log to settle.
async fn settled(store: &EventStore) -> Vec<patchbay_eventstore::RecordedEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let committed = store.count_after(LogPosition::START).await.unwrap() as usize;
        let events = store.read_all(LogPosition::START, 100_000).await.unwrap();
        if events.len() == committed || tokio::time::Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn event(event_type: &str, payload: &str) -> NewEvent {
    NewEvent::new(event_type, 1, payload.as_bytes().to_vec())
}

macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, _guard) = super::sqlite_store(Default::default()).await;
                    super::$name(store).await;
                }
            )*
        }
        /// `sqlite::memory:` keeps every read and write on the sqlx pool: the path that
        /// transactions (inbox, checkpoints, read models) take on SQLite files too.
        mod sqlite_in_memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let store = patchbay_eventstore::EventStore::connect("sqlite::memory:").await.unwrap();
                    super::$name(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some((store, _guard)) = super::postgres_store(Default::default()).await else { return };
                    super::$name(store).await;
                }
            )*
        }
    };
}

on_every_backend!(
    appended_events_read_back_in_stream_order,
    expected_version_is_enforced_with_a_typed_conflict,
    reappending_the_same_event_ids_is_idempotent,
    read_all_returns_the_global_order_in_pages,
    competing_appenders_never_lose_or_duplicate_a_version,
    inbox_and_append_commit_or_roll_back_together,
    subscription_catches_up_then_follows_live_and_resumes_from_its_checkpoint,
    snapshots_return_the_newest_at_or_below_a_version,
    bad_input_is_refused_before_it_reaches_the_log,
    multi_stream_appends_are_all_or_nothing_with_per_stream_semantics,
    multi_stream_appends_of_thousands_of_streams_keep_their_order,
    a_batch_of_inbox_rows_reports_which_events_are_new,
    a_large_batch_keeps_versions_and_positions_in_step,
    replay_reads_ahead_and_returns_what_read_all_returns,
    snapshots_and_time_marks_answer_as_a_replay_from_zero,
    a_closed_store_refuses_reads_and_appends,
    appends_cancelled_midway_commit_whole_or_not_at_all,
);

async fn multi_stream_appends_are_all_or_nothing_with_per_stream_semantics(store: EventStore) {
    store
        .append("existing", ExpectedVersion::NoStream, &[event("E", "0")])
        .await
        .unwrap();
    let parts = vec![
        StreamAppend::new(
            "fresh",
            ExpectedVersion::NoStream,
            vec![event("E", "1"), event("E", "2")],
        ),
        StreamAppend::new("existing", ExpectedVersion::Exact(1), vec![event("E", "3")]),
        StreamAppend::new("anything", ExpectedVersion::Any, vec![event("E", "4")]),
        StreamAppend::new("zero", ExpectedVersion::Exact(0), vec![event("E", "5")]),
    ];
    let results = store.append_streams(&parts).await.unwrap();
    let versions: Vec<_> = results
        .iter()
        .map(|r| (r.stream_version, r.deduplicated))
        .collect();
    assert_eq!(
        versions,
        vec![(2, false), (2, false), (1, false), (1, false)]
    );
    assert!(
        results
            .windows(2)
            .all(|w| w[0].global_position < w[1].global_position)
    );
    let payloads: Vec<_> = settled(&store)
        .await
        .into_iter()
        .map(|e| e.payload)
        .collect();
    assert_eq!(
        payloads,
        ["0", "1", "2", "3", "4", "5"].map(|p| p.as_bytes().to_vec())
    );

    // A retry of the same parts (same event ids, now stale expectations) appends nothing.
    let retry = store.append_streams(&parts).await.unwrap();
    assert!(retry.iter().all(|r| r.deduplicated));
    assert_eq!(
        retry.iter().map(|r| r.stream_version).collect::<Vec<_>>(),
        vec![2, 2, 1, 1]
    );

    // One stale stream fails the whole append with a conflict naming it; the transaction stays usable.
    let mut tx = store.begin().await.unwrap();
    let error = tx
        .append_streams(&[
            StreamAppend::new("new-1", ExpectedVersion::NoStream, vec![event("E", "6")]),
            StreamAppend::new("existing", ExpectedVersion::Exact(1), vec![event("E", "7")]),
            StreamAppend::new("new-2", ExpectedVersion::Any, vec![event("E", "8")]),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(&error, EventStoreError::Conflict { stream_id, actual: Some(2), .. } if stream_id == "existing"),
        "{error:?}"
    );
    tx.append("after", ExpectedVersion::NoStream, &[event("E", "9")])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.stream_version("new-1").await.unwrap(), None);
    assert_eq!(store.stream_version("new-2").await.unwrap(), None);
    assert_eq!(store.stream_version("after").await.unwrap(), Some(1));

    // A reused event id beyond a part's first event fails it all (as it fails a single append).
    let reused = parts[0].events[1].clone();
    let error = store
        .append_streams(&[
            StreamAppend::new("new-3", ExpectedVersion::NoStream, vec![event("E", "10")]),
            StreamAppend::new(
                "new-4",
                ExpectedVersion::NoStream,
                vec![event("E", "11"), reused],
            ),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            EventStoreError::EventIdReused { .. } | EventStoreError::Database(_)
        ),
        "{error:?}"
    );
    assert_eq!(store.stream_version("new-3").await.unwrap(), None);
    assert_eq!(settled(&store).await.len(), 7);

    let twice = store
        .append_streams(&[
            StreamAppend::new("x", ExpectedVersion::Any, vec![event("E", "a")]),
            StreamAppend::new("x", ExpectedVersion::Any, vec![event("E", "b")]),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(twice, EventStoreError::InvalidInput(_)),
        "{twice:?}"
    );
    assert!(store.append_streams(&[]).await.unwrap().is_empty());
}

async fn multi_stream_appends_of_thousands_of_streams_keep_their_order(store: EventStore) {
    let parts: Vec<StreamAppend> = (0..3_000)
        .map(|i| {
            StreamAppend::new(
                format!("approval-{i:05}"),
                ExpectedVersion::NoStream,
                vec![event("UpdateApproved", &i.to_string())],
            )
        })
        .collect();
    let results = store.append_streams(&parts).await.unwrap();
    assert_eq!(results.len(), 3_000);
    let next: Vec<StreamAppend> = parts
        .iter()
        .rev()
        .map(|p| {
            StreamAppend::new(
                p.stream_id.clone(),
                ExpectedVersion::Exact(1),
                vec![event("ApprovalReset", "")],
            )
        })
        .collect();
    store.append_streams(&next).await.unwrap();
    let events = settled(&store).await;
    assert_eq!(events.len(), 6_000);
    assert!(
        events[..3_000]
            .iter()
            .enumerate()
            .all(|(i, e)| e.payload == i.to_string().into_bytes() && e.stream_version == 1)
    );
    assert_eq!(events[3_000].stream_id, "approval-02999");
    assert!(events[3_000..].iter().all(|e| e.stream_version == 2));
    // Each part's result names where its last event landed.
    for (result, event) in results.iter().zip(&events[..3_000]) {
        assert_eq!(
            (result.stream_version, result.global_position),
            (1, event.position.global_position)
        );
    }
}

async fn appended_events_read_back_in_stream_order(store: EventStore) {
    let first = store
        .append(
            "update-1",
            ExpectedVersion::NoStream,
            &[event("UpdatePublished", "a"), event("UpdateRevised", "b")],
        )
        .await
        .unwrap();
    assert_eq!(first.stream_version, 2);
    assert!(!first.deduplicated);
    let second = store
        .append(
            "update-1",
            ExpectedVersion::Exact(2),
            &[event("UpdateRevised", "c")],
        )
        .await
        .unwrap();
    assert_eq!(second.stream_version, 3);
    assert!(second.global_position > first.global_position);

    let events = store.read_stream("update-1", 1, 100).await.unwrap();
    let seen: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.stream_version,
                e.event_type.as_str(),
                e.payload.as_slice(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (1, "UpdatePublished", &b"a"[..]),
            (2, "UpdateRevised", &b"b"[..]),
            (3, "UpdateRevised", &b"c"[..])
        ]
    );
    assert_eq!(events[0].metadata.actor, "system");
    assert_eq!(
        store.read_stream("update-1", 3, 100).await.unwrap().len(),
        1
    );
    assert_eq!(store.stream_version("update-1").await.unwrap(), Some(3));
    assert_eq!(store.stream_version("update-2").await.unwrap(), None);
}

async fn expected_version_is_enforced_with_a_typed_conflict(store: EventStore) {
    // Exact(0) is the same as NoStream: it creates a stream and refuses an existing one.
    store
        .append("zero", ExpectedVersion::Exact(0), &[event("E", "0")])
        .await
        .unwrap();
    let error = store
        .append("zero", ExpectedVersion::Exact(0), &[event("E", "1")])
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            EventStoreError::Conflict {
                actual: Some(1),
                ..
            }
        ),
        "{error:?}"
    );
    store
        .append("s", ExpectedVersion::NoStream, &[event("E", "1")])
        .await
        .unwrap();
    let error = store
        .append("s", ExpectedVersion::NoStream, &[event("E", "2")])
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            EventStoreError::Conflict {
                expected: ExpectedVersion::NoStream,
                actual: Some(1),
                ..
            }
        ),
        "{error:?}"
    );
    let error = store
        .append("s", ExpectedVersion::Exact(5), &[event("E", "2")])
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            EventStoreError::Conflict {
                actual: Some(1),
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("reload the stream"));
    let error = store
        .append("t", ExpectedVersion::Exact(1), &[event("E", "2")])
        .await
        .unwrap_err();
    assert!(
        matches!(error, EventStoreError::Conflict { actual: None, .. }),
        "{error:?}"
    );
    store
        .append("s", ExpectedVersion::Exact(1), &[event("E", "2")])
        .await
        .unwrap();
    assert_eq!(
        store
            .append("s", ExpectedVersion::Any, &[event("E", "3")])
            .await
            .unwrap()
            .stream_version,
        3
    );
    assert_eq!(
        store
            .append("u", ExpectedVersion::Any, &[event("E", "1")])
            .await
            .unwrap()
            .stream_version,
        1
    );
    // A failed append left nothing behind.
    assert_eq!(store.read_stream("s", 1, 100).await.unwrap().len(), 3);
    assert_eq!(store.read_stream("t", 1, 100).await.unwrap().len(), 0);
}

async fn reappending_the_same_event_ids_is_idempotent(store: EventStore) {
    let batch = vec![event("E", "1"), event("E", "2")];
    let original = store
        .append("s", ExpectedVersion::NoStream, &batch)
        .await
        .unwrap();
    // The retry carries the now-stale expectation, as a client retrying after a lost reply would.
    let retry = store
        .append("s", ExpectedVersion::NoStream, &batch)
        .await
        .unwrap();
    assert!(retry.deduplicated);
    assert_eq!(
        (retry.stream_version, retry.global_position),
        (original.stream_version, original.global_position)
    );
    let retry_in_tx = {
        let mut tx = store.begin().await.unwrap();
        let result = tx.append("s", ExpectedVersion::Any, &batch).await.unwrap();
        tx.commit().await.unwrap();
        result
    };
    assert!(retry_in_tx.deduplicated);
    assert_eq!(settled(&store).await.len(), 2);

    let partial = vec![batch[0].clone(), event("E", "3")];
    let error = store
        .append("s", ExpectedVersion::Any, &partial)
        .await
        .unwrap_err();
    assert!(
        matches!(error, EventStoreError::EventIdReused { .. }),
        "{error:?}"
    );
    let error = store
        .append("other", ExpectedVersion::Any, &batch)
        .await
        .unwrap_err();
    assert!(
        matches!(error, EventStoreError::EventIdReused { .. }),
        "{error:?}"
    );
    assert_eq!(settled(&store).await.len(), 2);
}

async fn read_all_returns_the_global_order_in_pages(store: EventStore) {
    for i in 0..25 {
        store
            .append(
                &format!("s-{}", i % 3),
                ExpectedVersion::Any,
                &[event("E", &i.to_string())],
            )
            .await
            .unwrap();
    }
    settled(&store).await;
    let mut after = LogPosition::START;
    let mut payloads = Vec::new();
    loop {
        let page = store.read_all(after, 10).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 10);
        after = page.last().unwrap().position;
        payloads.extend(
            page.into_iter()
                .map(|e| String::from_utf8(e.payload).unwrap()),
        );
    }
    let expected: Vec<_> = (0..25).map(|i| i.to_string()).collect();
    assert_eq!(payloads, expected);
    assert_eq!(store.count_after(LogPosition::START).await.unwrap(), 25);
    assert_eq!(store.count_after(after).await.unwrap(), 0);
}

async fn competing_appenders_never_lose_or_duplicate_a_version(store: EventStore) {
    const WRITERS: usize = 8;
    const EACH: usize = 10;
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for n in 0..EACH {
                // Read, decide, append with the version read: retry on conflict like an aggregate would.
                loop {
                    let version = store
                        .stream_version("contended")
                        .await
                        .unwrap()
                        .unwrap_or(0);
                    let e = event("E", &format!("{writer}-{n}"));
                    // Half the writers append in a transaction with an inbox row, as consumers
                    // do: on SQLite files that is the sqlx pool, beside the store's own writer.
                    let appended = if writer % 2 == 0 {
                        store
                            .append("contended", ExpectedVersion::Exact(version), &[e])
                            .await
                    } else {
                        let mut tx = store.begin().await.unwrap();
                        assert!(
                            tx.record_inbox("contender", uuid::Uuid::now_v7())
                                .await
                                .unwrap()
                        );
                        match tx
                            .append("contended", ExpectedVersion::Exact(version), &[e])
                            .await
                        {
                            Ok(result) => tx.commit().await.map(|()| result),
                            Err(error) => {
                                tx.rollback().await.unwrap();
                                Err(error)
                            }
                        }
                    };
                    match appended {
                        Ok(_) => break,
                        Err(EventStoreError::Conflict { .. }) => conflicts += 1,
                        Err(other) => panic!("{other}"),
                    }
                }
                // Uncontended streams appended concurrently too.
                store
                    .append(
                        &format!("own-{writer}"),
                        ExpectedVersion::Any,
                        &[event("E", "x")],
                    )
                    .await
                    .unwrap();
            }
            conflicts
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let events = store.read_stream("contended", 1, 1000).await.unwrap();
    let versions: Vec<_> = events.iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, (1..=(WRITERS * EACH) as u64).collect::<Vec<_>>());
    let payloads: HashSet<_> = events.iter().map(|e| e.payload.clone()).collect();
    assert_eq!(payloads.len(), WRITERS * EACH);
    let all = settled(&store).await;
    assert_eq!(all.len(), 2 * WRITERS * EACH);
}

async fn inbox_and_append_commit_or_roll_back_together(store: EventStore) {
    let incoming = uuid::Uuid::now_v7();
    let mut tx = store.begin().await.unwrap();
    assert!(
        tx.record_inbox("installing.on-approved", incoming)
            .await
            .unwrap()
    );
    tx.append(
        "job-1",
        ExpectedVersion::NoStream,
        &[event("InstallJobQueued", "j")],
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(settled(&store).await.len(), 0);

    let mut tx = store.begin().await.unwrap();
    assert!(
        tx.record_inbox("installing.on-approved", incoming)
            .await
            .unwrap(),
        "rolled-back inbox row survived"
    );
    tx.append(
        "job-1",
        ExpectedVersion::NoStream,
        &[event("InstallJobQueued", "j")],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    // The duplicate delivery finds its inbox row; another consumer is independent.
    let mut tx = store.begin().await.unwrap();
    assert!(
        !tx.record_inbox("installing.on-approved", incoming)
            .await
            .unwrap()
    );
    assert!(tx.record_inbox("installing.other", incoming).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(settled(&store).await.len(), 1);
}

async fn a_batch_of_inbox_rows_reports_which_events_are_new(store: EventStore) {
    let (a, b, c) = (
        uuid::Uuid::now_v7(),
        uuid::Uuid::now_v7(),
        uuid::Uuid::now_v7(),
    );
    let mut tx = store.begin().await.unwrap();
    assert!(tx.record_inbox("consumer", a).await.unwrap());
    // a was recorded before; b appears twice in the batch: only its first occurrence is new.
    assert_eq!(
        tx.record_inbox_many("consumer", &[a, b, c, b])
            .await
            .unwrap(),
        [false, true, true, false]
    );
    assert!(
        tx.record_inbox_many("consumer", &[])
            .await
            .unwrap()
            .is_empty()
    );
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        tx.record_inbox_many("consumer", &[c, a]).await.unwrap(),
        [false, false]
    );
    assert_eq!(tx.record_inbox_many("another", &[c]).await.unwrap(), [true]);
    tx.rollback().await.unwrap();
}

async fn subscription_catches_up_then_follows_live_and_resumes_from_its_checkpoint(
    store: EventStore,
) {
    for i in 0..5 {
        store
            .append("s", ExpectedVersion::Any, &[event("E", &i.to_string())])
            .await
            .unwrap();
    }
    let mut subscription = store.subscribe("projector", 3).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let batch = subscription.next_batch().await.unwrap();
        seen.extend(batch.into_iter().map(|e| e.payload));
    }
    subscription.commit().await.unwrap();

    let writer = store.clone();
    let live = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        writer
            .append("s", ExpectedVersion::Any, &[event("E", "live")])
            .await
            .unwrap();
    });
    let batch = tokio::time::timeout(Duration::from_secs(5), subscription.next_batch())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(batch[0].payload, b"live");
    live.await.unwrap();
    // Not committed: a new subscription with the same name starts after the 5th event again.
    let mut resumed = store.subscribe("projector", 10).await.unwrap();
    let batch = resumed.next_batch().await.unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].payload, b"live");
    assert_eq!(resumed.lag().await.unwrap(), 1);
    resumed.commit().await.unwrap();
    assert_eq!(resumed.lag().await.unwrap(), 0);
    assert!(resumed.try_next_batch().await.unwrap().is_none());
}

async fn snapshots_return_the_newest_at_or_below_a_version(store: EventStore) {
    for version in [10, 20, 30] {
        store
            .save_snapshot(&Snapshot {
                key: "approvals".into(),
                version,
                schema_version: 1,
                payload: vec![version as u8],
            })
            .await
            .unwrap();
    }
    assert_eq!(
        store
            .load_snapshot("approvals", 25)
            .await
            .unwrap()
            .unwrap()
            .version,
        20
    );
    assert_eq!(
        store
            .load_snapshot("approvals", u64::MAX)
            .await
            .unwrap()
            .unwrap()
            .payload,
        vec![30]
    );
    assert!(store.load_snapshot("approvals", 5).await.unwrap().is_none());
    assert!(store.load_snapshot("other", 100).await.unwrap().is_none());
}

async fn bad_input_is_refused_before_it_reaches_the_log(store: EventStore) {
    for (stream, events) in [
        ("", vec![event("E", "x")]),
        ("s", vec![]),
        ("s", vec![event("has space", "x")]),
        ("s", vec![event("a.b", "x")]),
    ] {
        let error = store
            .append(stream, ExpectedVersion::Any, &events)
            .await
            .unwrap_err();
        assert!(
            matches!(error, EventStoreError::InvalidInput(_)),
            "{error:?}"
        );
    }
    assert_eq!(settled(&store).await.len(), 0);
}

#[tokio::test]
async fn old_payloads_are_upcast_on_read_and_never_rewritten() {
    let dir = TestSqlite::new();
    let url = dir.url("events.db");
    let old = EventStore::connect(&url).await.unwrap();
    old.append(
        "s",
        ExpectedVersion::Any,
        &[NewEvent::new("UpdateApproved", 1, b"alice".to_vec())],
    )
    .await
    .unwrap();
    old.close().await;

    let upcasters = Upcasters::new().register("UpdateApproved", 1, |p| Ok([b"user:", p].concat()));
    let store = EventStore::connect_with(
        &url,
        StoreOptions {
            upcasters,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let read = store.read_stream("s", 1, 10).await.unwrap();
    assert_eq!(
        (read[0].schema_version, read[0].payload.as_slice()),
        (2, &b"user:alice"[..])
    );
    let stored: Vec<u8> = sqlx::query_scalar("SELECT payload FROM events")
        .fetch_one(store.sqlite_pool().unwrap())
        .await
        .unwrap();
    assert_eq!(stored, b"alice");
}

#[tokio::test]
async fn a_corrupt_row_is_a_typed_error_not_a_panic() {
    let (store, _guard) = sqlite_store(Default::default()).await;
    store
        .append("s", ExpectedVersion::Any, &[event("E", "x")])
        .await
        .unwrap();
    sqlx::query("UPDATE events SET schema_version = -1")
        .execute(store.sqlite_pool().unwrap())
        .await
        .unwrap();
    let error = store.read_all(LogPosition::START, 10).await.unwrap_err();
    assert!(
        matches!(
            error,
            EventStoreError::Corrupt {
                global_position: 1,
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn an_unsupported_url_says_which_schemes_work() {
    let error = EventStore::connect("mysql://root:secret@localhost/db")
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("postgres://") && !message.contains("secret"),
        "{message}"
    );
}

/// The sequence-gap case: an event whose transaction commits after a later-positioned event's must
/// still be delivered, exactly once, to a subscriber that already read past its position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_late_committing_transaction_is_never_skipped() {
    let Some((store, _guard)) = postgres_store(Default::default()).await else {
        return;
    };
    let mut subscriber = store.subscribe("gap-test", 100).await.unwrap();

    // A takes global_position 1 and stays open; B takes position 2 and commits first.
    let mut slow = store.begin().await.unwrap();
    slow.append("a", ExpectedVersion::NoStream, &[event("E", "slow")])
        .await
        .unwrap();
    store
        .append("b", ExpectedVersion::NoStream, &[event("E", "fast")])
        .await
        .unwrap();

    // While A is open, B is held back: handing it out now would let a checkpoint pass A's position.
    assert!(subscriber.try_next_batch().await.unwrap().is_none());
    subscriber.commit().await.unwrap();
    slow.commit().await.unwrap();

    let mut seen = Vec::new();
    while seen.len() < 2 {
        let batch = tokio::time::timeout(Duration::from_secs(5), subscriber.next_batch())
            .await
            .unwrap()
            .unwrap();
        seen.extend(
            batch
                .into_iter()
                .map(|e| String::from_utf8(e.payload).unwrap()),
        );
    }
    subscriber.commit().await.unwrap();
    assert_eq!(seen, vec!["slow", "fast"]);
    assert!(subscriber.try_next_batch().await.unwrap().is_none());
    // A new reader of the whole log sees each event once, in the same order.
    let all = settled(&store).await;
    assert_eq!(
        all.iter().map(|e| e.payload.clone()).collect::<Vec<_>>(),
        vec![b"slow".to_vec(), b"fast".to_vec()]
    );
}

/// A batch larger than one SQLite `INSERT` statement takes (2,000 rows) is split; versions, positions
/// and the stream's version must still come out as one contiguous append.
async fn a_large_batch_keeps_versions_and_positions_in_step(store: EventStore) {
    store
        .append("big", ExpectedVersion::NoStream, &[event("E", "first")])
        .await
        .unwrap();
    let batch: Vec<NewEvent> = (0..4_500).map(|i| event("E", &i.to_string())).collect();
    let result = store
        .append("big", ExpectedVersion::Exact(1), &batch)
        .await
        .unwrap();
    assert_eq!(result.stream_version, 4_501);
    assert_eq!(store.stream_version("big").await.unwrap(), Some(4_501));
    let events = store.read_stream("big", 2, 10_000).await.unwrap();
    assert_eq!(events.len(), 4_500);
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.stream_version, i as u64 + 2);
        assert_eq!(event.payload, i.to_string().into_bytes());
        assert_eq!(event.event_id, batch[i].event_id);
    }
    assert!(events.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(
        events.last().unwrap().position.global_position,
        result.global_position
    );
    // The retry of the same batch is idempotent and reports the same result.
    let retry = store
        .append("big", ExpectedVersion::Exact(1), &batch)
        .await
        .unwrap();
    assert!(retry.deduplicated);
    assert_eq!(retry.stream_version, 4_501);
}

async fn replay_reads_ahead_and_returns_what_read_all_returns(store: EventStore) {
    let mut empty = store.replay(LogPosition::START, 10);
    assert!(empty.next_page().await.unwrap().is_none());
    for i in 0..35 {
        store
            .append(
                &format!("s-{}", i % 4),
                ExpectedVersion::Any,
                &[event("E", &i.to_string())],
            )
            .await
            .unwrap();
    }
    let all = settled(&store).await;
    assert_eq!(all.len(), 35);
    let mut replay = store.replay(LogPosition::START, 10);
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    while let Some(page) = replay.next_page().await.unwrap() {
        sizes.push(page.len());
        seen.extend(page);
    }
    assert_eq!(sizes, [10, 10, 10, 5]);
    assert_eq!(seen, all);
    // From the middle, and dropping a replay before its end stops it without harm.
    let mut rest = store.replay(all[29].position, 10);
    assert_eq!(rest.next_page().await.unwrap().unwrap(), all[30..].to_vec());
    assert!(rest.next_page().await.unwrap().is_none());
    let mut early = store.replay(LogPosition::START, 1);
    assert_eq!(early.next_page().await.unwrap().unwrap().len(), 1);
    drop(early);
    assert_eq!(store.read_all(LogPosition::START, 100).await.unwrap(), all);
}

/// Reads of the global order do not go through the pool on SQLite files; closing still ends them.
async fn a_closed_store_refuses_reads_and_appends(store: EventStore) {
    store
        .append("s", ExpectedVersion::NoStream, &[event("E", "x")])
        .await
        .unwrap();
    assert_eq!(settled(&store).await.len(), 1);
    store.close().await;
    let error = store.read_all(LogPosition::START, 10).await.unwrap_err();
    assert!(
        matches!(error, EventStoreError::Database(sqlx::Error::PoolClosed)),
        "{error:?}"
    );
    let error = store
        .append("s", ExpectedVersion::Exact(1), &[event("E", "y")])
        .await
        .unwrap_err();
    assert!(
        matches!(error, EventStoreError::Database(sqlx::Error::PoolClosed)),
        "{error:?}"
    );
}

/// An append whose caller stops waiting either commits whole or not at all, a retry of it is
/// idempotent, and subscribers see every event; the store keeps appending afterwards.
async fn appends_cancelled_midway_commit_whole_or_not_at_all(store: EventStore) {
    let mut subscription = store.subscribe_at("watcher", LogPosition::START, 1_000);
    let mut cancelled = Vec::new();
    for round in 0..20_u64 {
        let batch: Vec<NewEvent> = (0..500)
            .map(|n| event("E", &format!("{round}-{n}")))
            .collect();
        let stream = format!("cancelled-{round}");
        let append = store.append(&stream, ExpectedVersion::NoStream, &batch);
        // Cancel at different moments: before the append starts, mid-way, after it finished.
        let _ = tokio::time::timeout(Duration::from_micros(round * 400), append).await;
        cancelled.push((stream, batch));
    }
    let mut committed = 0;
    for (stream, batch) in &cancelled {
        let stored = store.read_stream(stream, 1, 1_000).await.unwrap();
        assert!(
            stored.is_empty() || stored.len() == batch.len(),
            "{stream}: {}",
            stored.len()
        );
        committed += stored.len();
        // A retry of the same batch completes it, or is recognised as already stored.
        let retried = store
            .append(stream, ExpectedVersion::NoStream, batch)
            .await
            .unwrap();
        assert_eq!(retried.deduplicated, !stored.is_empty());
    }
    let total = cancelled.len() * 500;
    assert!(committed <= total);
    // Every event reaches the subscriber, whichever append committed it.
    let mut seen = 0;
    while seen < total {
        let page = tokio::time::timeout(Duration::from_secs(30), subscription.next_batch())
            .await
            .expect("the subscriber saw every event")
            .unwrap();
        seen += page.len();
    }
    assert_eq!(seen, total);
}

/// A read cancelled while its rows stream in (a replay dropped early) must not leave a broken
/// connection in the pool: with one connection, every read after it would fail. (The narrowest
/// window, between a PostgreSQL `COPY`'s last two messages, is rarely hit by timing alone; the
/// store closes any connection whose read did not complete.)
async fn reads_cancelled_midway_leave_the_store_usable(store: EventStore) {
    for round in 0..10 {
        let batch: Vec<NewEvent> = (0..2_000)
            .map(|i| event("E", &"x".repeat(200 + i % 7)))
            .collect();
        store
            .append(&format!("s-{round}"), ExpectedVersion::NoStream, &batch)
            .await
            .unwrap();
    }
    let all = settled(&store).await;
    assert_eq!(all.len(), 20_000);
    // From cancelled before the first row to cancelled after the last, in small steps.
    for micros in (0..3_000).step_by(40) {
        let _ = tokio::time::timeout(
            Duration::from_micros(micros),
            store.read_all(LogPosition::START, 20_000),
        )
        .await;
        let first = store.read_all(LogPosition::START, 5).await.unwrap();
        assert_eq!(first, all[..5], "after a read cancelled at {micros} µs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_reads_cancelled_midway_leave_the_store_usable() {
    let options = StoreOptions {
        max_connections: 1,
        ..StoreOptions::default()
    };
    let (store, _guard) = sqlite_store(options).await;
    reads_cancelled_midway_leave_the_store_usable(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reads_cancelled_midway_leave_the_store_usable() {
    let options = StoreOptions {
        max_connections: 1,
        ..StoreOptions::default()
    };
    let Some((store, _guard)) = postgres_store(options).await else {
        return;
    };
    reads_cancelled_midway_leave_the_store_usable(store).await;
}

/// A read model for snapshot tests: the payloads applied, in order.
#[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct Payloads(Vec<String>);

impl Projection for Payloads {
    type Error = std::convert::Infallible;
    fn apply(&mut self, event: &RecordedEvent) -> Result<(), Self::Error> {
        self.0
            .push(String::from_utf8_lossy(&event.payload).into_owned());
        Ok(())
    }
}

impl Snapshottable for Payloads {
    const NAME: &'static str = "payloads";
    const FORMAT: u32 = 1;
}

/// A moment strictly between what was recorded before it and what is recorded after it.
async fn moment() -> DateTime<Utc> {
    tokio::time::sleep(Duration::from_millis(5)).await;
    let now = Utc::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    now
}

/// Given a log written in rounds with a snapshotter pass after each, when the state at each
/// round's end is rebuilt from snapshots and time marks, then it is what a replay from zero gives,
/// and the later questions read only a stretch of the log.
async fn snapshots_and_time_marks_answer_as_a_replay_from_zero(store: EventStore) {
    let snapshotter = Snapshotter::<Payloads>::new(store.clone())
        .every(3)
        .mark_every(2);
    let mut expected = Vec::new();
    let mut moments = Vec::new();
    let before_everything = moment().await;
    for round in 0..6 {
        let batch = [
            event("E", &format!("{round}a")),
            event("E", &format!("{round}b")),
        ];
        store
            .append(&format!("round-{round}"), ExpectedVersion::NoStream, &batch)
            .await
            .unwrap();
        settled(&store).await;
        expected.extend([format!("{round}a"), format!("{round}b")]);
        moments.push((moment().await, expected.clone()));
        let pass = snapshotter.pass().await.unwrap();
        assert!(pass.marked, "two events since the last mark: one is due");
    }
    assert!(!snapshotter.pass().await.unwrap().marked, "nothing moved");
    for (at, wanted) in &moments {
        let fast = load_as_of::<Payloads>(&store, *at, true).await.unwrap();
        let slow = load_as_of::<Payloads>(&store, *at, false).await.unwrap();
        assert_eq!(&fast.projection.0, wanted, "at {at}");
        assert_eq!(fast.projection, slow.projection, "at {at}");
        assert_eq!(fast.applied, slow.applied);
        assert_eq!(fast.first_recorded_at, slow.first_recorded_at);
        assert_eq!(slow.read, 12, "from zero reads the whole log");
    }
    // The fourth round's state: a snapshot of 6 events (after round 2), then round 3, up to the
    // mark taken after it.
    let fourth = load_as_of::<Payloads>(&store, moments[3].0, true)
        .await
        .unwrap();
    assert_eq!(fourth.snapshot.as_ref().unwrap().events_applied, 6);
    assert_eq!(fourth.read, 2);
    let nothing = load_as_of::<Payloads>(&store, before_everything, true)
        .await
        .unwrap();
    assert!(nothing.projection.0.is_empty());
    assert_eq!(
        nothing.read, 2,
        "the first mark, after round 0, bounds the read"
    );
    assert!(nothing.first_recorded_at.unwrap() > before_everything);
}

/// Given a transaction that stamps an event, stays open while another commits and a mark is
/// taken, when it commits, then the state at a moment between includes both events, read
/// through snapshots and marks as from zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_time_marks_never_cut_off_a_late_committing_transaction() {
    let Some((store, _guard)) = postgres_store(Default::default()).await else {
        return;
    };
    let snapshotter = Snapshotter::<Payloads>::new(store.clone())
        .every(1)
        .mark_every(1);
    let mut slow = store.begin().await.unwrap();
    slow.append("a", ExpectedVersion::NoStream, &[event("E", "slow")])
        .await
        .unwrap();
    store
        .append("b", ExpectedVersion::NoStream, &[event("E", "fast")])
        .await
        .unwrap();
    let at = moment().await;
    assert!(snapshotter.pass().await.unwrap().marked);
    store
        .append("c", ExpectedVersion::NoStream, &[event("E", "after")])
        .await
        .unwrap();
    slow.commit().await.unwrap();
    settled(&store).await;
    let pass = snapshotter.pass().await.unwrap();
    assert_eq!(pass.snapshots.len(), 3);
    let fast = load_as_of::<Payloads>(&store, at, true).await.unwrap();
    let slow = load_as_of::<Payloads>(&store, at, false).await.unwrap();
    assert_eq!(fast.projection.0, ["slow", "fast"]);
    assert_eq!(fast.projection, slow.projection);
    assert_eq!(fast.snapshot.unwrap().events_applied, 2);
    assert_eq!(fast.read, 0, "the mark bounds the read before `after`");
}

/// The SQLite writer leaves checkpoints to a thread of its own (`sqlite_checkpoint.rs`): if that
/// thread did not run, the WAL would grow without bound and the database file never would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_appends_reach_the_database_file_and_the_wal_is_reused() {
    let dir = TestSqlite::new();
    let url = dir.url("events.db");
    let store = EventStore::connect(&url).await.unwrap();
    let db_file = dir.dir.path().join("events.db");
    let wal_file = dir.dir.path().join("events.db-wal");
    let size = |path: &std::path::Path| std::fs::metadata(path).map_or(0, |m| m.len());
    let before = size(&db_file);
    // ~41 MB in 2 KiB payloads: ten times SQLite's default checkpoint threshold.
    for batch in 0..200 {
        let events: Vec<NewEvent> = (0..100)
            .map(|n| NewEvent::new("Scanned", 1, vec![(batch + n) as u8; 2048]))
            .collect();
        store
            .append(
                &format!("device-{batch}"),
                ExpectedVersion::NoStream,
                &events,
            )
            .await
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while size(&db_file) < before + 36_000_000 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        size(&db_file) >= before + 36_000_000,
        "the database file grew from {before} to only {} bytes",
        size(&db_file)
    );
    // Checkpointed WAL frames are overwritten, not appended to for ever: at most ~16 MB (4,000
    // pages) and a batch.
    assert!(
        size(&wal_file) < 20_000_000,
        "the WAL holds {} bytes",
        size(&wal_file)
    );
    assert_eq!(store.count_after(LogPosition::START).await.unwrap(), 20_000);
}
