//! Tamper evidence on both backends: sealing, verifying, and rows edited behind the store's back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use patchbay_eventstore::{
    ChainHead, ChainProblem, ChainReport, EVENTS_PER_SEAL, EventStore, ExpectedVersion,
    GENESIS_DIGEST, LogPosition, NewEvent, RecordedEvent, Sealer, StoreOptions, StreamAppend,
    Upcasters, chain_digest, content_digest,
};
use patchbay_testkit::{TestPostgres, TestSqlite};
use sqlx::AssertSqlSafe;
use tokio_util::sync::CancellationToken;

/// A test's store, the URL it was opened from (to open a second one, as another process would),
/// and whatever keeps its database alive.
struct Log {
    store: EventStore,
    url: String,
    _guard: Guard,
}

#[allow(dead_code, clippy::large_enum_variant)] // held only for its Drop
enum Guard {
    Sqlite(TestSqlite),
    Postgres(TestPostgres),
}

impl Log {
    async fn sqlite() -> Log {
        let dir = TestSqlite::new();
        let url = dir.url("events.db");
        Log {
            store: EventStore::connect(&url).await.unwrap(),
            url,
            _guard: Guard::Sqlite(dir),
        }
    }

    async fn postgres() -> Option<Log> {
        let db = TestPostgres::create().await?;
        let url = db.url.clone();
        Some(Log {
            store: EventStore::connect(&url).await.unwrap(),
            url,
            _guard: Guard::Postgres(db),
        })
    }

    fn is_postgres(&self) -> bool {
        self.store.backend_name() == "postgres"
    }

    /// Runs SQL behind the store's back: `postgres` on PostgreSQL, `sqlite` on SQLite.
    async fn tamper(&self, postgres: &str, sqlite: &str) {
        match (self.store.postgres_pool(), self.store.sqlite_pool()) {
            (Some(pool), _) => {
                sqlx::raw_sql(AssertSqlSafe(postgres.to_owned()))
                    .execute(pool)
                    .await
                    .unwrap();
            }
            (_, Some(pool)) => {
                sqlx::raw_sql(AssertSqlSafe(sqlite.to_owned()))
                    .execute(pool)
                    .await
                    .unwrap();
            }
            _ => unreachable!(),
        }
    }

    async fn text(&self, postgres: &str, sqlite: &str) -> String {
        match (self.store.postgres_pool(), self.store.sqlite_pool()) {
            (Some(pool), _) => sqlx::query_scalar(AssertSqlSafe(postgres.to_owned()))
                .fetch_one(pool)
                .await
                .unwrap(),
            (_, Some(pool)) => sqlx::query_scalar(AssertSqlSafe(sqlite.to_owned()))
                .fetch_one(pool)
                .await
                .unwrap(),
            _ => unreachable!(),
        }
    }

    /// Every row of the log and seal tables, to show verification changes nothing.
    async fn fingerprint(&self) -> String {
        self.text(
            "SELECT concat_ws(';', \
               (SELECT count(*) FROM events), \
               (SELECT md5(coalesce(string_agg(e::text, '|' ORDER BY global_position), '')) FROM events e), \
               (SELECT count(*) FROM event_seals), \
               (SELECT md5(coalesce(string_agg(s::text, '|' ORDER BY last_sequence), '')) FROM event_seals s), \
               (SELECT md5(coalesce(string_agg(h::text, '|'), '')) FROM event_seal_head h), \
               (SELECT md5(coalesce(string_agg(c::text, '|' ORDER BY name), '')) FROM checkpoints c))",
            "SELECT (SELECT count(*) FROM events) || ';' || \
               coalesce((SELECT group_concat(quote(global_position) || quote(event_id) || quote(stream_id) \
                  || quote(stream_version) || quote(event_type) || quote(schema_version) || quote(payload) \
                  || quote(correlation_id) || quote(causation_id) || quote(actor) || quote(traceparent) \
                  || quote(tracestate) || quote(recorded_at_micros) || quote(content_digest), '|') \
                  FROM (SELECT * FROM events ORDER BY global_position)), '') || ';' || \
               (SELECT count(*) FROM event_seals) || ';' || \
               coalesce((SELECT group_concat(quote(first_sequence) || quote(last_sequence) \
                  || quote(event_count) || quote(first_global_position) || quote(last_global_position) \
                  || quote(first_commit_id) || quote(last_commit_id) || quote(chain_digest) \
                  || quote(records), '|') \
                  FROM (SELECT * FROM event_seals ORDER BY last_sequence)), '') || ';' || \
               coalesce((SELECT group_concat(quote(sequence) || quote(global_position) || quote(chain_digest) \
                  || quote(updated_at_micros), '|') FROM event_seal_head), '') || ';' || \
               coalesce((SELECT group_concat(quote(name) || quote(global_position), '|') \
                  FROM (SELECT * FROM checkpoints ORDER BY name)), '')",
        )
        .await
    }

    /// Verifies the chain and checks that doing so changed no row.
    async fn verify(&self) -> ChainReport {
        let before = self.fingerprint().await;
        let report = self.store.verify_chain().await.unwrap();
        assert_eq!(
            self.fingerprint().await,
            before,
            "verification modified the database"
        );
        // Shown with --nocapture: what an auditor would read.
        eprintln!("[{}] {report}", self.store.backend_name());
        report
    }

    /// The chain digest of the seal row ending at event #`last_sequence`.
    async fn seal_digest_hex(&self, last_sequence: u64) -> String {
        self.text(
            &format!(
                "SELECT encode(chain_digest, 'hex') FROM event_seals WHERE last_sequence = {last_sequence}"
            ),
            &format!(
                "SELECT lower(hex(chain_digest)) FROM event_seals WHERE last_sequence = {last_sequence}"
            ),
        )
        .await
    }

    async fn set_seal_digest(&self, last_sequence: u64, hex: &str) {
        self.tamper(
            &format!("UPDATE event_seals SET chain_digest = decode('{hex}', 'hex') WHERE last_sequence = {last_sequence}"),
            &format!("UPDATE event_seals SET chain_digest = X'{hex}' WHERE last_sequence = {last_sequence}"),
        )
        .await;
    }

    /// Overwrites `hex` into the records of the seal row ending at `last_sequence`, at byte `offset`.
    async fn overwrite_records(&self, last_sequence: u64, offset: usize, hex: &str) {
        let length = hex.len() / 2;
        self.tamper(
            &format!(
                "UPDATE event_seals SET records = overlay(records PLACING decode('{hex}', 'hex') \
                 FROM {} FOR {length}) WHERE last_sequence = {last_sequence}",
                offset + 1
            ),
            &format!(
                // `||` yields text; the cast turns the same bytes back into a blob.
                "UPDATE event_seals SET records = CAST(substr(records, 1, {offset}) || X'{hex}' \
                 || substr(records, {}) AS BLOB) WHERE last_sequence = {last_sequence}",
                offset + length + 1
            ),
        )
        .await;
    }

    /// The `content_digest` column of every event, in global position order (None: NULL).
    async fn stored_content_digests(&self) -> Vec<Option<Vec<u8>>> {
        match (self.store.postgres_pool(), self.store.sqlite_pool()) {
            (Some(pool), _) => {
                sqlx::query_scalar("SELECT content_digest FROM events ORDER BY global_position")
                    .fetch_all(pool)
                    .await
                    .unwrap()
            }
            (_, Some(pool)) => {
                sqlx::query_scalar("SELECT content_digest FROM events ORDER BY global_position")
                    .fetch_all(pool)
                    .await
                    .unwrap()
            }
            _ => unreachable!(),
        }
    }
}

macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Log::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(log) = super::Log::postgres().await else { return };
                    super::$name(log).await;
                }
            )*
        }
    };
}

on_every_backend!(
    a_sealed_log_verifies_and_later_appends_are_unsealed_not_a_problem,
    an_edited_payload_or_metadata_is_reported_as_altered_naming_the_event,
    a_deleted_event_is_reported_as_removed,
    the_newest_sealed_event_deleted_is_reported_as_removed,
    swapped_payloads_are_detected_at_the_first_swapped_event,
    swapped_stream_versions_are_detected,
    events_moved_in_the_global_order_are_reported_as_reordered,
    edited_or_deleted_seals_are_reported,
    deleting_the_newest_seals_is_reported_as_truncated,
    sealing_hashes_the_stored_payload_not_the_upcast_one,
    the_sealer_seals_new_events_as_they_are_appended,
    two_sealers_at_once_produce_one_chain,
    appends_store_the_documented_content_digest,
    an_event_altered_together_with_its_content_digest_is_still_named,
    events_without_a_content_digest_are_sealed_from_their_content,
    edited_seal_records_are_reported_as_seal_tampering,
    one_seal_row_covers_a_batch_and_still_names_the_altered_event,
    sealing_what_this_process_just_appended_gives_the_documented_chain,
);

fn event(event_type: &str, payload: &str) -> NewEvent {
    NewEvent::new(event_type, 1, payload.as_bytes().to_vec())
}

/// The whole log once every committed event is visible (see `settled` in backends.rs).
async fn settled(store: &EventStore) -> Vec<RecordedEvent> {
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

/// Seals everything committed (waiting out transactions other tests hold open on PostgreSQL).
async fn seal_all(store: &EventStore) -> ChainHead {
    let committed = settled(store).await.len() as u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let progress = store.seal(1_000).await.unwrap();
        if progress.head.sequence >= committed || tokio::time::Instant::now() > deadline {
            return progress.head;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Twelve events over four streams, written by single appends, a multi-stream append and a
/// transaction with two appends; sealed. Returns them in global read order.
async fn sealed_log(store: &EventStore) -> Vec<RecordedEvent> {
    store
        .append(
            "approval-1",
            ExpectedVersion::NoStream,
            &[
                event("Approved", "a1"),
                event("Declined", "a2"),
                event("Approved", "a3"),
            ],
        )
        .await
        .unwrap();
    store
        .append_streams(&[
            StreamAppend::new(
                "device-1",
                ExpectedVersion::NoStream,
                vec![event("Registered", "d1"), event("Scanned", "d2")],
            ),
            StreamAppend::new(
                "device-2",
                ExpectedVersion::NoStream,
                vec![event("Registered", "d3"), event("Scanned", "d4")],
            ),
        ])
        .await
        .unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.append(
        "approval-2",
        ExpectedVersion::NoStream,
        &[event("Approved", "b1")],
    )
    .await
    .unwrap();
    tx.append(
        "approval-1",
        ExpectedVersion::Exact(3),
        &[event("Approved", "a4"), event("Approved", "a5")],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let cause = store
        .read_stream("approval-1", 1, 1)
        .await
        .unwrap()
        .remove(0);
    store
        .append(
            "approval-3",
            ExpectedVersion::NoStream,
            &[
                event("Approved", "c1")
                    .caused_by(&cause)
                    .actor("rule:auto")
                    .trace_context(
                        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
                        Some("vendor=1".into()),
                    ),
                event("Approved", "").actor("user:bob"),
            ],
        )
        .await
        .unwrap();
    let events = settled(store).await;
    assert_eq!(events.len(), 12);
    // Seal rows of events 1-4, 5-8, 9-10 and 11-12: problems are found inside a row and at its
    // edges, and seal rows can be edited one by one.
    for last in [4, 8, 10, 12] {
        let head = store.seal_head().await.unwrap();
        let progress = store.seal((last - head.sequence) as usize).await.unwrap();
        assert_eq!(progress.head.sequence, last);
    }
    let rows = seal_rows(store).await;
    assert_eq!(rows, "1-4,5-8,9-10,11-12");
    events
}

/// The seal rows as `first-last` ranges, in chain order.
async fn seal_rows(store: &EventStore) -> String {
    const SQL: &str =
        "SELECT first_sequence, last_sequence FROM event_seals ORDER BY last_sequence";
    let rows: Vec<(i64, i64)> = match (store.postgres_pool(), store.sqlite_pool()) {
        (Some(pool), _) => sqlx::query_as(SQL).fetch_all(pool).await.unwrap(),
        (_, Some(pool)) => sqlx::query_as(SQL).fetch_all(pool).await.unwrap(),
        _ => unreachable!(),
    };
    rows.iter()
        .map(|(first, last)| format!("{first}-{last}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn a_sealed_log_verifies_and_later_appends_are_unsealed_not_a_problem(log: Log) {
    let store = &log.store;
    let empty = log.verify().await;
    assert!(empty.is_intact(), "{empty}");
    assert_eq!((empty.sealed, empty.head), (0, ChainHead::GENESIS));

    let events = sealed_log(store).await;
    let report = log.verify().await;
    assert!(report.is_intact(), "{report}");
    assert_eq!((report.sealed, report.unsealed_after), (12, 0));
    // The chain is the documented one: recomputed here from the events alone.
    let digest = events
        .iter()
        .fold(GENESIS_DIGEST, |previous, e| chain_digest(&previous, e));
    assert_eq!(report.head.digest, digest);
    assert_eq!(report.head.position, events[11].position);
    assert!(report.to_string().contains("intact"), "{report}");

    // Sealing again finds nothing new.
    let again = store.seal(1_000).await.unwrap();
    assert_eq!((again.sealed, again.caught_up), (0, true));

    for n in 0..3 {
        store
            .append(
                "late",
                ExpectedVersion::Any,
                &[event("Late", &n.to_string())],
            )
            .await
            .unwrap();
    }
    settled(store).await;
    let report = log.verify().await;
    assert!(report.is_intact(), "{report}");
    assert_eq!((report.sealed, report.unsealed_after), (12, 3));
    assert!(
        report.to_string().contains("3 events appended since"),
        "{report}"
    );

    let first = store.seal(2).await.unwrap();
    assert_eq!(
        (first.sealed, first.caught_up, first.head.sequence),
        (2, false, 14)
    );
    let second = store.seal(2).await.unwrap();
    assert_eq!(
        (second.sealed, second.caught_up, second.head.sequence),
        (1, true, 15)
    );
    let report = log.verify().await;
    assert!(report.is_intact(), "{report}");
    assert_eq!((report.sealed, report.unsealed_after), (15, 0));
}

async fn an_edited_payload_or_metadata_is_reported_as_altered_naming_the_event(log: Log) {
    let events = sealed_log(&log.store).await;
    let victim = &events[4];
    let position = victim.position.global_position;
    log.tamper(
        &format!(
            "UPDATE events SET payload = '\\xdeadbeef'::bytea WHERE global_position = {position}"
        ),
        &format!("UPDATE events SET payload = X'deadbeef' WHERE global_position = {position}"),
    )
    .await;
    let report = log.verify().await;
    assert_eq!(
        report.first_problem,
        Some(ChainProblem::Altered {
            sequence: 5,
            position: victim.position,
            stream_id: victim.stream_id.clone(),
            stream_version: victim.stream_version,
            event_id: victim.event_id,
        }),
        "{report}"
    );
    assert_eq!(report.sealed, 4);
    let message = report.to_string();
    assert!(
        message.contains(&victim.event_id.to_string())
            && message.contains("altered")
            && message.contains(&victim.stream_id),
        "{message}"
    );

    // Putting the original bytes back makes the chain whole again: verification only reports.
    let original = hex_of(&victim.payload);
    log.tamper(
        &format!("UPDATE events SET payload = decode('{original}', 'hex') WHERE global_position = {position}"),
        &format!("UPDATE events SET payload = X'{original}' WHERE global_position = {position}"),
    )
    .await;
    assert!(log.verify().await.is_intact());

    // Metadata is covered too: a rewritten actor on the last event.
    let last = &events[11];
    let position = last.position.global_position;
    let sql =
        format!("UPDATE events SET actor = 'user:mallory' WHERE global_position = {position}");
    log.tamper(&sql, &sql).await;
    let report = log.verify().await;
    assert!(
        matches!(report.first_problem, Some(ChainProblem::Altered { sequence: 12, event_id, .. }) if event_id == last.event_id),
        "{report}"
    );
}

async fn a_deleted_event_is_reported_as_removed(log: Log) {
    let events = sealed_log(&log.store).await;
    let victim = &events[5];
    let sql = format!(
        "DELETE FROM events WHERE global_position = {}",
        victim.position.global_position
    );
    log.tamper(&sql, &sql).await;
    let report = log.verify().await;
    assert_eq!(
        report.first_problem,
        Some(ChainProblem::Removed {
            sequence: 6,
            event_id: Some(victim.event_id),
            position: Some(victim.position),
        }),
        "{report}"
    );
    let message = report.to_string();
    assert!(
        message.contains("deleted") && message.contains(&victim.event_id.to_string()),
        "{message}"
    );
}

async fn the_newest_sealed_event_deleted_is_reported_as_removed(log: Log) {
    let events = sealed_log(&log.store).await;
    let victim = &events[11];
    let sql = format!(
        "DELETE FROM events WHERE global_position = {}",
        victim.position.global_position
    );
    log.tamper(&sql, &sql).await;
    let report = log.verify().await;
    assert!(
        matches!(report.first_problem, Some(ChainProblem::Removed { sequence: 12, event_id: Some(id), .. }) if id == victim.event_id),
        "{report}"
    );
}

async fn swapped_payloads_are_detected_at_the_first_swapped_event(log: Log) {
    let events = sealed_log(&log.store).await;
    let (a, b) = (&events[2], &events[7]);
    let (pa, pb) = (a.position.global_position, b.position.global_position);
    log.tamper(
        &format!(
            "UPDATE events SET payload = CASE global_position WHEN {pa} THEN decode('{hb}', 'hex') \
             ELSE decode('{ha}', 'hex') END WHERE global_position IN ({pa}, {pb})",
            ha = hex_of(&a.payload),
            hb = hex_of(&b.payload)
        ),
        &format!(
            "UPDATE events SET payload = CASE global_position WHEN {pa} THEN X'{hb}' ELSE X'{ha}' END \
             WHERE global_position IN ({pa}, {pb})",
            ha = hex_of(&a.payload),
            hb = hex_of(&b.payload)
        ),
    )
    .await;
    let report = log.verify().await;
    assert!(
        matches!(report.first_problem, Some(ChainProblem::Altered { sequence: 3, event_id, .. }) if event_id == a.event_id),
        "{report}"
    );
}

async fn swapped_stream_versions_are_detected(log: Log) {
    let events = sealed_log(&log.store).await;
    // approval-1 versions 1 and 2 (the first two events), swapped through a free version.
    let sql = "UPDATE events SET stream_version = 1000 WHERE stream_id = 'approval-1' AND stream_version = 1; \
               UPDATE events SET stream_version = 1 WHERE stream_id = 'approval-1' AND stream_version = 2; \
               UPDATE events SET stream_version = 2 WHERE stream_id = 'approval-1' AND stream_version = 1000;";
    log.tamper(sql, sql).await;
    let report = log.verify().await;
    assert!(
        matches!(report.first_problem, Some(ChainProblem::Altered { sequence: 1, event_id, stream_version: 2, .. }) if event_id == events[0].event_id),
        "{report}"
    );
}

async fn events_moved_in_the_global_order_are_reported_as_reordered(log: Log) {
    let events = sealed_log(&log.store).await;
    let moved = &events[1];
    let report = if log.is_postgres() {
        // The order key is (tx_id, global_position): give the event the last transaction's id.
        log.tamper(
            &format!(
                "UPDATE events SET tx_id = (SELECT tx_id FROM events WHERE global_position = {}) \
                 WHERE global_position = {}",
                events[11].position.global_position, moved.position.global_position
            ),
            "",
        )
        .await;
        log.verify().await
    } else {
        // The order key is global_position: swap two events' positions through a free one.
        let (a, b) = (
            moved.position.global_position,
            events[8].position.global_position,
        );
        let sql = format!(
            "UPDATE events SET global_position = -1 WHERE global_position = {a}; \
             UPDATE events SET global_position = {a} WHERE global_position = {b}; \
             UPDATE events SET global_position = {b} WHERE global_position = -1;"
        );
        log.tamper("", &sql).await;
        log.verify().await
    };
    match &report.first_problem {
        Some(ChainProblem::Reordered {
            sequence: 2,
            event_id,
            sealed_position,
            current_position,
        }) => {
            assert_eq!(*event_id, moved.event_id);
            assert_eq!(*sealed_position, moved.position);
            assert_ne!(*current_position, moved.position);
        }
        other => panic!("expected Reordered at #2, got {other:?}: {report}"),
    }
    assert!(report.to_string().contains("order"), "{report}");
}

async fn edited_or_deleted_seals_are_reported(log: Log) {
    let events = sealed_log(&log.store).await;
    let zeros = "00".repeat(32);

    // A seal in the middle: the next link still agrees with the event, so the seal was edited.
    let original = log.seal_digest_hex(4).await;
    log.set_seal_digest(4, &zeros).await;
    let report = log.verify().await;
    assert!(
        matches!(
            report.first_problem,
            Some(ChainProblem::SealTampered { sequence: 4, .. })
        ),
        "{report}"
    );
    log.set_seal_digest(4, &original).await;
    assert!(log.verify().await.is_intact());

    // The newest seal: the head holds a copy of its digest.
    let original = log.seal_digest_hex(12).await;
    log.set_seal_digest(12, &zeros).await;
    let report = log.verify().await;
    assert!(
        matches!(
            report.first_problem,
            Some(ChainProblem::SealTampered { sequence: 12, .. })
        ),
        "{report}"
    );
    log.set_seal_digest(12, &original).await;
    assert!(log.verify().await.is_intact());

    // A seal row (events 5-8) deleted while its events stay.
    let sql = "DELETE FROM event_seals WHERE first_sequence = 5";
    log.tamper(sql, sql).await;
    let report = log.verify().await;
    assert!(
        matches!(
            report.first_problem,
            Some(ChainProblem::SealTampered { sequence: 5, .. })
        ),
        "{report}"
    );

    // ... and then its event too: removed, though which event it was is no longer known.
    let sql = format!(
        "DELETE FROM events WHERE global_position = {}",
        events[4].position.global_position
    );
    log.tamper(&sql, &sql).await;
    let report = log.verify().await;
    assert_eq!(
        report.first_problem,
        Some(ChainProblem::Removed {
            sequence: 5,
            event_id: None,
            position: None
        }),
        "{report}"
    );
}

async fn deleting_the_newest_seals_is_reported_as_truncated(log: Log) {
    sealed_log(&log.store).await;
    let sql = "DELETE FROM event_seals WHERE last_sequence > 10";
    log.tamper(sql, sql).await;
    let report = log.verify().await;
    assert_eq!(
        report.first_problem,
        Some(ChainProblem::Truncated {
            head_sequence: 12,
            last_sequence: 10
        }),
        "{report}"
    );
}

async fn sealing_hashes_the_stored_payload_not_the_upcast_one(log: Log) {
    let upcasters = Upcasters::new().register("Approved", 1, |p| Ok([b"v2:", p].concat()));
    let upcasting = EventStore::connect_with(
        &log.url,
        StoreOptions {
            upcasters,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    upcasting
        .append(
            "s",
            ExpectedVersion::NoStream,
            &[event("Approved", "x"), event("Other", "y")],
        )
        .await
        .unwrap();
    assert_eq!(settled(&upcasting).await[0].payload, b"v2:x");
    let head = seal_all(&upcasting).await;
    assert_eq!(head.sequence, 2);
    let report = upcasting.verify_chain().await.unwrap();
    assert!(report.is_intact(), "{report}");
    // The store without upcasters reads the stored bytes: the chain covers exactly those.
    let stored = settled(&log.store).await;
    assert_eq!(stored[0].payload, b"x");
    let digest = stored
        .iter()
        .fold(GENESIS_DIGEST, |previous, e| chain_digest(&previous, e));
    assert_eq!(head.digest, digest);
    upcasting.close().await;
}

async fn the_sealer_seals_new_events_as_they_are_appended(log: Log) {
    let shutdown = CancellationToken::new();
    let sealer = tokio::spawn(Sealer::new(log.store.clone()).run(shutdown.clone()));
    for n in 0..20_u32 {
        log.store
            .append(
                &format!("device-{}", n % 3),
                ExpectedVersion::Any,
                &[
                    event("Scanned", &n.to_string()),
                    event("Reported", &n.to_string()),
                ],
            )
            .await
            .unwrap();
        if n % 5 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let report = wait_until_sealed(&log.store, 40).await;
    assert!(report.is_intact(), "{report}");
    assert_eq!((report.sealed, report.unsealed_after), (40, 0));
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), sealer)
        .await
        .expect("the sealer stops on shutdown")
        .unwrap()
        .unwrap();
}

async fn wait_until_sealed(store: &EventStore, events: u64) -> ChainReport {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let report = store.verify_chain().await.unwrap();
        if report.sealed >= events || tokio::time::Instant::now() > deadline {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn two_sealers_at_once_produce_one_chain(log: Log) {
    // A second store on the same database: another replica's process.
    let replica = EventStore::connect(&log.url).await.unwrap();
    let shutdown = CancellationToken::new();
    let sealers = [
        tokio::spawn(
            Sealer::new(log.store.clone())
                .batch_size(7)
                .run(shutdown.clone()),
        ),
        tokio::spawn(
            Sealer::new(replica.clone())
                .batch_size(7)
                .run(shutdown.clone()),
        ),
    ];
    // Two more sealers calling `seal` directly, racing the tasks.
    let racers: Vec<_> = [log.store.clone(), replica.clone()]
        .into_iter()
        .map(|store| {
            tokio::spawn(async move {
                for _ in 0..40 {
                    store.seal(5).await.unwrap();
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let store = if writer % 2 == 0 {
                log.store.clone()
            } else {
                replica.clone()
            };
            tokio::spawn(async move {
                for n in 0..25 {
                    let batch: Vec<_> = (0..=(n % 3))
                        .map(|i| event("Scanned", &format!("{writer}-{n}-{i}")))
                        .collect();
                    store
                        .append(&format!("writer-{writer}"), ExpectedVersion::Any, &batch)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in writers.into_iter().chain(racers) {
        task.await.unwrap();
    }
    let total = settled(&log.store).await.len() as u64;
    let report = wait_until_sealed(&log.store, total).await;
    shutdown.cancel();
    for sealer in sealers {
        sealer.await.unwrap().unwrap();
    }
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.sealed, total);
    let counts = log
        .text(
            "SELECT coalesce(sum(event_count), 0) || ' ' || coalesce(max(last_sequence), 0) FROM event_seals",
            "SELECT coalesce(sum(event_count), 0) || ' ' || coalesce(max(last_sequence), 0) FROM event_seals",
        )
        .await;
    assert_eq!(counts, format!("{total} {total}"));
    replica.close().await;
}

/// A transaction that commits after a later-positioned event: the sealer must not seal past it
/// while it is open, and must seal it, in read order, once it commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sealer_never_skips_a_late_committing_transaction() {
    let Some(log) = Log::postgres().await else {
        return;
    };
    let store = &log.store;
    let mut slow = store.begin().await.unwrap();
    slow.append("a", ExpectedVersion::NoStream, &[event("E", "slow")])
        .await
        .unwrap();
    store
        .append("b", ExpectedVersion::NoStream, &[event("E", "fast")])
        .await
        .unwrap();
    let progress = store.seal(100).await.unwrap();
    assert_eq!((progress.sealed, progress.caught_up), (0, true));
    slow.commit().await.unwrap();
    let head = seal_all(store).await;
    assert_eq!(head.sequence, 2);
    let report = log.verify().await;
    assert!(report.is_intact(), "{report}");
    let events = settled(store).await;
    assert_eq!(events[0].payload, b"slow");
}

/// An event written with an old transaction id lands in the sealed past: reported as inserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_event_written_into_the_past_is_reported_as_inserted() {
    let Some(log) = Log::postgres().await else {
        return;
    };
    let events = sealed_log(&log.store).await;
    // The first append's three events share one transaction; the forged row joins it.
    log.tamper(
        &format!(
            "INSERT INTO events (event_id, stream_id, stream_version, event_type, schema_version, \
                                 payload, correlation_id, actor, tx_id) \
             VALUES ('0195a3c0-0000-7000-8000-000000000001', 'forged', 1, 'Approved', 1, '\\x00', \
                     '0195a3c0-0000-7000-8000-000000000001', 'user:mallory', \
                     (SELECT tx_id FROM events WHERE global_position = {}))",
            events[0].position.global_position
        ),
        "",
    )
    .await;
    let report = log.verify().await;
    match &report.first_problem {
        Some(ChainProblem::Inserted {
            before_sequence: 4,
            stream_id,
            ..
        }) => assert_eq!(stream_id, "forged"),
        other => panic!("expected Inserted before #4, got {other:?}: {report}"),
    }
    assert!(report.to_string().contains("never sealed"), "{report}");
}

async fn appends_store_the_documented_content_digest(log: Log) {
    // Single appends, a multi-stream append and appends in a transaction: every append path.
    let events = sealed_log(&log.store).await;
    let stored = log.stored_content_digests().await;
    assert_eq!(stored.len(), events.len());
    for (event, stored) in events.iter().zip(stored) {
        assert_eq!(
            stored.as_deref(),
            Some(&content_digest(event)[..]),
            "event {} at global position {}",
            event.event_id,
            event.position.global_position
        );
    }
}

async fn an_event_altered_together_with_its_content_digest_is_still_named(log: Log) {
    let events = sealed_log(&log.store).await;
    // An attacker who knows the encoding rewrites the payload and its content digest: the
    // verifier recomputes the digest from the content and compares it with the seal's record.
    let victim = &events[6];
    let position = victim.position.global_position;
    let mut forged = victim.clone();
    forged.payload = b"forged".to_vec();
    let (payload, digest) = (hex_of(&forged.payload), hex_of(&content_digest(&forged)));
    log.tamper(
        &format!(
            "UPDATE events SET payload = decode('{payload}', 'hex'), \
             content_digest = decode('{digest}', 'hex') WHERE global_position = {position}"
        ),
        &format!(
            "UPDATE events SET payload = X'{payload}', content_digest = X'{digest}' \
             WHERE global_position = {position}"
        ),
    )
    .await;
    let report = log.verify().await;
    assert_eq!(
        report.first_problem,
        Some(ChainProblem::Altered {
            sequence: 7,
            position: victim.position,
            stream_id: victim.stream_id.clone(),
            stream_version: victim.stream_version,
            event_id: victim.event_id,
        }),
        "{report}"
    );
    assert_eq!(report.sealed, 6);

    let (payload, digest) = (hex_of(&victim.payload), hex_of(&content_digest(victim)));
    log.tamper(
        &format!(
            "UPDATE events SET payload = decode('{payload}', 'hex'), \
             content_digest = decode('{digest}', 'hex') WHERE global_position = {position}"
        ),
        &format!(
            "UPDATE events SET payload = X'{payload}', content_digest = X'{digest}' \
             WHERE global_position = {position}"
        ),
    )
    .await;
    assert!(log.verify().await.is_intact());

    // The content digest column alone rewritten: the event row was edited, so it is named too.
    let victim = &events[9];
    let zeros = "00".repeat(32);
    log.tamper(
        &format!(
            "UPDATE events SET content_digest = decode('{zeros}', 'hex') WHERE global_position = {}",
            victim.position.global_position
        ),
        &format!(
            "UPDATE events SET content_digest = X'{zeros}' WHERE global_position = {}",
            victim.position.global_position
        ),
    )
    .await;
    let report = log.verify().await;
    assert!(
        matches!(report.first_problem, Some(ChainProblem::Altered { sequence: 10, event_id, .. }) if event_id == victim.event_id),
        "{report}"
    );
}

async fn events_without_a_content_digest_are_sealed_from_their_content(log: Log) {
    let store = &log.store;
    store
        .append(
            "old",
            ExpectedVersion::NoStream,
            &[event("Approved", "o1"), event("Approved", "o2")],
        )
        .await
        .unwrap();
    store
        .append("new", ExpectedVersion::NoStream, &[event("Approved", "n1")])
        .await
        .unwrap();
    // Events appended before the column existed have none.
    let sql = "UPDATE events SET content_digest = NULL WHERE stream_id = 'old'";
    log.tamper(sql, sql).await;
    let events = settled(store).await;
    let head = seal_all(store).await;
    assert_eq!(head.sequence, 3);
    let digest = events
        .iter()
        .fold(GENESIS_DIGEST, |previous, e| chain_digest(&previous, e));
    assert_eq!(head.digest, digest);
    let report = log.verify().await;
    assert!(report.is_intact(), "{report}");

    // A malformed digest written before sealing is not trusted either: the sealer hashes the
    // content, and the verifier names the edited row.
    store
        .append("odd", ExpectedVersion::NoStream, &[event("Approved", "x1")])
        .await
        .unwrap();
    let sql = "UPDATE events SET content_digest = X'010203' WHERE stream_id = 'odd'";
    log.tamper(
        "UPDATE events SET content_digest = '\\x010203'::bytea WHERE stream_id = 'odd'",
        sql,
    )
    .await;
    let odd = settled(store).await.remove(3);
    let head = seal_all(store).await;
    assert_eq!(head.sequence, 4);
    assert_eq!(head.digest, chain_digest(&digest, &odd));
    let report = log.verify().await;
    assert!(
        matches!(report.first_problem, Some(ChainProblem::Altered { sequence: 4, event_id, .. }) if event_id == odd.event_id),
        "{report}"
    );
    let sql = "UPDATE events SET content_digest = NULL WHERE stream_id = 'odd'";
    log.tamper(sql, sql).await;
    assert!(log.verify().await.is_intact());

    // Such an event is still checked against its seal.
    let sql = format!(
        "UPDATE events SET actor = 'user:mallory' WHERE global_position = {}",
        events[1].position.global_position
    );
    log.tamper(&sql, &sql).await;
    let report = log.verify().await;
    assert!(
        matches!(report.first_problem, Some(ChainProblem::Altered { sequence: 2, event_id, .. }) if event_id == events[1].event_id),
        "{report}"
    );
}

async fn edited_seal_records_are_reported_as_seal_tampering(log: Log) {
    let events = sealed_log(&log.store).await;
    // Record layout (seal.rs): position 0..8, commit_id 8..16, event_id 16..32,
    // stream_version 32..40, recorded_at 40..48, content digest 48..80.

    // Event #6's recorded stream version (second record of the seal of events 5-8).
    log.overwrite_records(8, 80 + 32, &"ff".repeat(8)).await;
    let report = log.verify().await;
    assert!(
        matches!(
            &report.first_problem,
            Some(ChainProblem::SealTampered { sequence: 6, detail }) if detail.contains("unchanged")
        ),
        "{report}"
    );
    let original = hex_of(&events[5].stream_version.to_be_bytes());
    log.overwrite_records(8, 80 + 32, &original).await;
    assert!(log.verify().await.is_intact());

    // Event #7's recorded event id (third record).
    log.overwrite_records(8, 160 + 16, &"ab".repeat(16)).await;
    let report = log.verify().await;
    assert!(
        matches!(
            &report.first_problem,
            Some(ChainProblem::SealTampered { sequence: 7, detail }) if detail.contains("event id")
        ),
        "{report}"
    );
    log.overwrite_records(8, 160 + 16, &hex_of(events[6].event_id.as_bytes()))
        .await;
    assert!(log.verify().await.is_intact());

    // Event #9's recorded position (first record of the seal of events 9-10).
    log.overwrite_records(10, 0, &hex_of(&999_u64.to_be_bytes()))
        .await;
    let report = log.verify().await;
    assert!(
        matches!(
            &report.first_problem,
            Some(ChainProblem::SealTampered { sequence: 9, detail }) if detail.contains("recorded position")
        ),
        "{report}"
    );
    log.overwrite_records(
        10,
        0,
        &hex_of(&events[8].position.global_position.to_be_bytes()),
    )
    .await;
    assert!(log.verify().await.is_intact());

    // The seal's own position column (the records are right): it only locates the seal.
    let sql = "UPDATE event_seals SET last_global_position = 999 WHERE last_sequence = 10";
    log.tamper(sql, sql).await;
    let report = log.verify().await;
    assert!(
        matches!(
            &report.first_problem,
            Some(ChainProblem::SealTampered { sequence: 9, detail }) if detail.contains("position columns")
        ),
        "{report}"
    );
}

async fn one_seal_row_covers_a_batch_and_still_names_the_altered_event(log: Log) {
    let store = &log.store;
    let total = EVENTS_PER_SEAL * 2 + EVENTS_PER_SEAL / 2;
    for chunk in 0..total / 100 {
        let batch: Vec<_> = (0..100)
            .map(|i| event("Scanned", &format!("{chunk}-{i}")))
            .collect();
        store
            .append(
                &format!("device-{chunk}"),
                ExpectedVersion::NoStream,
                &batch,
            )
            .await
            .unwrap();
    }
    let events = settled(store).await;
    assert_eq!(events.len(), total);
    let progress = store.seal(10_000).await.unwrap();
    assert_eq!(progress.sealed, total as u64);
    assert_eq!(
        seal_rows(store).await,
        format!(
            "1-{},{}-{},{}-{total}",
            EVENTS_PER_SEAL,
            EVENTS_PER_SEAL + 1,
            EVENTS_PER_SEAL * 2,
            EVENTS_PER_SEAL * 2 + 1
        )
    );
    let report = log.verify().await;
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.sealed, total as u64);

    let victim = &events[EVENTS_PER_SEAL + 499];
    let sql = format!(
        "UPDATE events SET event_type = 'Forged' WHERE global_position = {}",
        victim.position.global_position
    );
    log.tamper(&sql, &sql).await;
    let report = log.verify().await;
    assert!(
        matches!(report.first_problem, Some(ChainProblem::Altered { sequence, event_id, .. })
            if sequence == (EVENTS_PER_SEAL + 500) as u64 && event_id == victim.event_id),
        "{report}"
    );
    assert_eq!(report.sealed, (EVENTS_PER_SEAL + 499) as u64);
}

/// Once a sealer has asked, a SQLite writer hands it the records of what it commits instead of the
/// sealer reading them back (`seal_feed.rs`). Whatever path an event took (the writer, with
/// versions after earlier ones and in more than one insert statement; a re-append; the pool, which
/// leaves a gap in the feed), the chain must be the one the events themselves give.
async fn sealing_what_this_process_just_appended_gives_the_documented_chain(log: Log) {
    let store = &log.store;
    // What a running `Sealer` holds; without it appends keep nothing.
    let _feed = store.keep_commits_for_sealer();
    let first = vec![event("Approved", "a1"), event("Declined", "a2")];
    store
        .append("approval-1", ExpectedVersion::NoStream, &first)
        .await
        .unwrap();
    store
        .append(
            "approval-1",
            ExpectedVersion::Exact(2),
            &[event("Approved", "a3")],
        )
        .await
        .unwrap();
    // Appending the same events again appends nothing, and feeds nothing.
    store
        .append("approval-1", ExpectedVersion::NoStream, &first)
        .await
        .unwrap();
    // Through the pool: positions the writer never saw.
    let mut tx = store.begin().await.unwrap();
    tx.append(
        "approval-2",
        ExpectedVersion::NoStream,
        &[event("Approved", "b1")],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    // More rows than one insert statement takes (2,000 on SQLite).
    let many: Vec<NewEvent> = (0..2_500)
        .map(|n| event("Scanned", &format!("d{n}")))
        .collect();
    store
        .append("device-1", ExpectedVersion::NoStream, &many)
        .await
        .unwrap();
    // Sealed in steps smaller than what is waiting, so runs end inside the feed too.
    let events = settled(store).await;
    assert_eq!(events.len(), 2_504);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let head = loop {
        let progress = store.seal(700).await.unwrap();
        if progress.head.sequence >= 2_504 || tokio::time::Instant::now() > deadline {
            break progress.head;
        }
        if progress.sealed == 0 {
            // PostgreSQL: the rest is behind a transaction another test holds open.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let digest = events
        .iter()
        .fold(GENESIS_DIGEST, |previous, e| chain_digest(&previous, e));
    assert_eq!(head.sequence, 2_504);
    assert_eq!(head.digest, digest);
    assert!(
        store.sealed_from_feed() > 0,
        "the sealer read back everything this process had just appended"
    );
    let report = log.verify().await;
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.sealed, 2_504);
}

/// Positions that another appender's rows interleaved cannot be derived from the versions: the
/// append returns them as a list, and the sealer still takes the commit from memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_appends_whose_positions_another_appender_interleaved_still_feed_the_sealer() {
    let Some(log) = Log::postgres().await else {
        return;
    };
    let store = &log.store;
    // Stands in for another appender whose rows took positions between this statement's rows,
    // which concurrent appends do at random: each row of type 'Interleaved' skips one position.
    sqlx::query(
        "CREATE FUNCTION take_a_position() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN \
           IF NEW.event_type = 'Interleaved' THEN \
             PERFORM nextval(pg_get_serial_sequence('events', 'global_position')); \
           END IF; \
           RETURN NEW; \
         END $$",
    )
    .execute(store.postgres_pool().unwrap())
    .await
    .unwrap();
    sqlx::query(
        "CREATE TRIGGER take_a_position BEFORE INSERT ON events \
         FOR EACH ROW EXECUTE FUNCTION take_a_position()",
    )
    .execute(store.postgres_pool().unwrap())
    .await
    .unwrap();
    let _feed = store.keep_commits_for_sealer();
    store
        .append("first", ExpectedVersion::NoStream, &[event("E", "f")])
        .await
        .unwrap();
    seal_all(store).await;
    let fed_before = store.sealed_from_feed();
    let interleaved = |n: usize, tag: &str| {
        (0..n)
            .map(|i| event("Interleaved", &format!("{tag}-{i}")))
            .collect::<Vec<_>>()
    };
    store
        .append("single", ExpectedVersion::NoStream, &interleaved(3, "s"))
        .await
        .unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.append_streams(&[
        StreamAppend::new("multi-a", ExpectedVersion::NoStream, interleaved(2, "a")),
        StreamAppend::new("multi-b", ExpectedVersion::NoStream, vec![event("E", "b")]),
    ])
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let head = seal_all(store).await;
    assert_eq!(
        store.sealed_from_feed() - fed_before,
        6,
        "the appends' records came back as a list of positions"
    );
    let events = settled(store).await;
    let positions: Vec<u64> = events.iter().map(|e| e.position.global_position).collect();
    assert!(
        positions.windows(2).any(|w| w[1] > w[0] + 1),
        "the trigger left gaps: {positions:?}"
    );
    let digest = events
        .iter()
        .fold(GENESIS_DIGEST, |previous, e| chain_digest(&previous, e));
    assert_eq!((head.sequence, head.digest), (7, digest));
    let report = log.verify().await;
    assert!(report.is_intact(), "{report}");
}

/// On PostgreSQL the feed holds this process's committed transactions by commit id, and the sealer
/// asks the database only about the commit ids it did not see. Another process's appends, one of
/// them committing late with an earlier commit id, and a transaction that wrote through its raw
/// connection must all still land in the chain in read order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sealing_from_this_process_commits_never_skips_anyone_elses() {
    let Some(log) = Log::postgres().await else {
        return;
    };
    let store = &log.store;
    let replica = EventStore::connect(&log.url).await.unwrap();
    let _feed = store.keep_commits_for_sealer();
    store
        .append("ours-1", ExpectedVersion::NoStream, &[event("E", "o1")])
        .await
        .unwrap();
    // The first seal reads the table: its head is at the start, behind every commit id.
    seal_all(store).await;
    // Ours alone: sealed from the feed.
    let fed_before = store.sealed_from_feed();
    for n in 0..3 {
        store
            .append(
                &format!("ours-{}", n + 2),
                ExpectedVersion::NoStream,
                &[event("E", &format!("o{}-a", n + 2)), event("E", "b")],
            )
            .await
            .unwrap();
    }
    let mut tx = store.begin().await.unwrap();
    tx.append_streams(&[
        StreamAppend::new("ours-5", ExpectedVersion::NoStream, vec![event("E", "o5")]),
        StreamAppend::new("ours-6", ExpectedVersion::NoStream, vec![event("E", "o6")]),
    ])
    .await
    .unwrap();
    tx.commit().await.unwrap();
    seal_all(store).await;
    assert_eq!(store.sealed_from_feed() - fed_before, 8);

    // Another process takes a commit id first and commits after our next append.
    let mut late = replica.begin().await.unwrap();
    late.append(
        "theirs-late",
        ExpectedVersion::NoStream,
        &[event("E", "t1")],
    )
    .await
    .unwrap();
    store
        .append("ours-7", ExpectedVersion::NoStream, &[event("E", "o7")])
        .await
        .unwrap();
    let progress = store.seal(1_000).await.unwrap();
    assert_eq!(progress.sealed, 0, "sealed past an open transaction");
    late.commit().await.unwrap();
    // Another process's append, and one of ours, committed in between.
    replica
        .append("theirs-2", ExpectedVersion::NoStream, &[event("E", "t2")])
        .await
        .unwrap();
    store
        .append("ours-8", ExpectedVersion::NoStream, &[event("E", "o8")])
        .await
        .unwrap();
    // A transaction of ours that also wrote a row through its raw connection.
    let mut raw = store.begin().await.unwrap();
    raw.append("ours-9", ExpectedVersion::NoStream, &[event("E", "o9")])
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO events (event_id, stream_id, stream_version, event_type, schema_version, \
                             payload, correlation_id, actor) \
         VALUES (gen_random_uuid(), 'raw', 1, 'E', 1, '\\x00', gen_random_uuid(), 'test')",
    )
    .execute(raw.postgres().unwrap())
    .await
    .unwrap();
    raw.commit().await.unwrap();
    store
        .append("ours-10", ExpectedVersion::NoStream, &[event("E", "o10")])
        .await
        .unwrap();

    let head = seal_all(store).await;
    let events = settled(store).await;
    assert_eq!(events.len(), 16);
    let digest = events
        .iter()
        .fold(GENESIS_DIGEST, |previous, e| chain_digest(&previous, e));
    assert_eq!((head.sequence, head.digest), (16, digest));
    let report = log.verify().await;
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.sealed, 16);
    replica.close().await;
}
