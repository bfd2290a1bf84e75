//! One behavioural suite for both bus backends: the in-process bus always, NATS JetStream when
//! `PATCHBAY_TEST_NATS_URL` is set. Plus the relay and the consumer runner over each.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use patchbay_bus::{
    Bus, BusConsumer, BusMessage, ConsumerConfig, ConsumerRunner, DEAD_LETTER_REASON, EventHandler,
    HandlerError, IncomingEvent, Relay, Subjects,
};
use patchbay_eventstore::{EventStore, ExpectedVersion, LogPosition, NewEvent, Transaction};
use patchbay_testkit::{TestSqlite, nats_url};

/// A bus with a prefix of its own, removed when the test ends.
struct TestBus {
    bus: Bus,
    _dir: TestSqlite,
    services: Vec<&'static str>,
}

impl Drop for TestBus {
    fn drop(&mut self) {
        if let Bus::Nats(_) = &self.bus {
            let bus = self.bus.clone();
            let services = self.services.clone();
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    for service in services {
                        let _ = bus.delete_stream(service).await;
                    }
                });
            })
            .join();
        }
    }
}

const SERVICES: &[&str] = &["approvals", "scanning", "dlq"];

fn unique_subjects() -> Subjects {
    Subjects::new(&format!(
        "t{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    ))
    .unwrap()
}

async fn in_process_bus() -> TestBus {
    let dir = TestSqlite::new();
    let bus = Bus::in_process(&dir.url("bus.db"), unique_subjects())
        .await
        .unwrap();
    TestBus {
        bus,
        _dir: dir,
        services: SERVICES.to_vec(),
    }
}

async fn nats_bus() -> Option<TestBus> {
    let url = nats_url()?;
    let bus = Bus::nats(&url, unique_subjects()).await.unwrap();
    for service in SERVICES {
        bus.ensure_stream(service).await.unwrap();
    }
    Some(TestBus {
        bus,
        _dir: TestSqlite::new(),
        services: SERVICES.to_vec(),
    })
}

macro_rules! on_every_bus {
    ($($name:ident),* $(,)?) => {
        mod in_process {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let bus = super::in_process_bus().await;
                    super::$name(&bus.bus).await;
                }
            )*
        }
        mod nats {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(bus) = super::nats_bus().await else { return };
                    super::$name(&bus.bus).await;
                }
            )*
        }
    };
}

on_every_bus!(
    messages_arrive_in_publish_order_and_acked_ones_never_return,
    a_republished_message_id_is_stored_once,
    unacked_and_nakd_messages_are_redelivered_until_max_deliver,
    replicas_of_one_durable_consumer_share_the_work,
    a_filtered_consumer_sees_only_its_subjects,
    relay_publishes_the_log_and_a_crash_before_the_checkpoint_duplicates_nothing,
    relay_without_a_span_forwards_the_stored_trace_context,
    consumer_runner_handles_each_event_once_and_dead_letters_poison,
    consumer_lag_counts_what_a_consumer_has_not_handled,
);

fn message(bus: &Bus, service: &str, event_type: &str, id: &str, body: &str) -> BusMessage {
    BusMessage {
        subject: bus.subjects().event(service, event_type),
        message_id: id.to_owned(),
        headers: vec![(
            "traceparent".into(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
        )],
        payload: Bytes::from(body.to_owned()),
    }
}

/// Long enough that nothing is redelivered while a test collects its deliveries.
fn config(name: &str, service: &str) -> ConsumerConfig {
    ConsumerConfig {
        ack_wait: Duration::from_secs(10),
        max_deliver: 3,
        ..ConsumerConfig::new(name, service)
    }
}

/// For the tests about redelivery.
fn short_ack_wait(name: &str, service: &str) -> ConsumerConfig {
    ConsumerConfig {
        ack_wait: Duration::from_millis(500),
        ..config(name, service)
    }
}

/// Fetches until `count` deliveries arrived or `limit` passed.
async fn fetch_n(
    consumer: &mut BusConsumer,
    count: usize,
    limit: Duration,
) -> Vec<patchbay_bus::Delivery> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut all = Vec::new();
    while all.len() < count && tokio::time::Instant::now() < deadline {
        all.extend(
            consumer
                .fetch(count - all.len(), Duration::from_millis(200))
                .await
                .unwrap(),
        );
    }
    all
}

async fn messages_arrive_in_publish_order_and_acked_ones_never_return(bus: &Bus) {
    bus.ensure_stream("approvals").await.unwrap();
    let batch: Vec<_> = (0..20)
        .map(|i| {
            message(
                bus,
                "approvals",
                "UpdateApproved",
                &format!("m{i}"),
                &i.to_string(),
            )
        })
        .collect();
    let acks = bus.publish_batch(&batch).await.unwrap();
    assert!(acks.windows(2).all(|w| w[0].sequence < w[1].sequence));
    assert!(acks.iter().all(|a| !a.duplicate));

    let mut consumer = bus
        .consumer(short_ack_wait("ordered", "approvals"))
        .await
        .unwrap();
    let deliveries = fetch_n(&mut consumer, 20, Duration::from_secs(5)).await;
    let bodies: Vec<_> = deliveries
        .iter()
        .map(|d| String::from_utf8(d.payload.to_vec()).unwrap())
        .collect();
    assert_eq!(bodies, (0..20).map(|i| i.to_string()).collect::<Vec<_>>());
    assert!(deliveries.iter().all(|d| d.delivery_count == 1));
    assert_eq!(
        deliveries[0].header("traceparent"),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
    for delivery in &deliveries {
        delivery.ack().await.unwrap();
    }
    // Past the ack wait, nothing comes back; a re-bound consumer resumes after the acked messages.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        consumer
            .fetch(10, Duration::from_millis(200))
            .await
            .unwrap()
            .is_empty()
    );
    drop(consumer);
    bus.publish_batch(&[message(bus, "approvals", "UpdateApproved", "m20", "20")])
        .await
        .unwrap();
    let mut rebound = bus
        .consumer(short_ack_wait("ordered", "approvals"))
        .await
        .unwrap();
    let next = fetch_n(&mut rebound, 1, Duration::from_secs(5)).await;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].payload, Bytes::from("20"));
}

async fn a_republished_message_id_is_stored_once(bus: &Bus) {
    bus.ensure_stream("approvals").await.unwrap();
    let first = bus
        .publish_batch(&[message(bus, "approvals", "E", "same-id", "a")])
        .await
        .unwrap();
    let again = bus
        .publish_batch(&[message(bus, "approvals", "E", "same-id", "a")])
        .await
        .unwrap();
    assert!(!first[0].duplicate);
    assert!(again[0].duplicate);
    assert_eq!(first[0].sequence, again[0].sequence);
    let mut consumer = bus.consumer(config("dedupe", "approvals")).await.unwrap();
    let deliveries = fetch_n(&mut consumer, 2, Duration::from_secs(1)).await;
    assert_eq!(deliveries.len(), 1);
}

async fn unacked_and_nakd_messages_are_redelivered_until_max_deliver(bus: &Bus) {
    bus.ensure_stream("approvals").await.unwrap();
    bus.publish_batch(&[
        message(bus, "approvals", "E", "r1", "x"),
        message(bus, "approvals", "E", "r2", "y"),
    ])
    .await
    .unwrap();
    let mut consumer = bus
        .consumer(short_ack_wait("redeliver", "approvals"))
        .await
        .unwrap();
    let first = fetch_n(&mut consumer, 2, Duration::from_secs(5)).await;
    assert_eq!(first.len(), 2);
    // "x" is nak'd with a short delay; "y" is neither acked nor nak'd and returns after ack_wait.
    first[0].nak(Duration::from_millis(50)).await.unwrap();
    let mut counts = std::collections::HashMap::<Bytes, u64>::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    while tokio::time::Instant::now() < deadline {
        for delivery in consumer
            .fetch(10, Duration::from_millis(200))
            .await
            .unwrap()
        {
            let seen = counts.entry(delivery.payload.clone()).or_default();
            *seen = (*seen).max(delivery.delivery_count);
            delivery.nak(Duration::from_millis(50)).await.unwrap();
        }
    }
    // Three deliveries each (max_deliver = 3), then the bus stops redelivering.
    assert_eq!(counts.get(&Bytes::from("x")), Some(&3), "{counts:?}");
    assert_eq!(counts.get(&Bytes::from("y")), Some(&3), "{counts:?}");
}

async fn replicas_of_one_durable_consumer_share_the_work(bus: &Bus) {
    bus.ensure_stream("scanning").await.unwrap();
    let batch: Vec<_> = (0..40)
        .map(|i| {
            message(
                bus,
                "scanning",
                "ScanCompleted",
                &format!("s{i}"),
                &i.to_string(),
            )
        })
        .collect();
    bus.publish_batch(&batch).await.unwrap();
    let mut a = bus.consumer(config("shared", "scanning")).await.unwrap();
    let mut b = bus.consumer(config("shared", "scanning")).await.unwrap();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.len() < 40 && tokio::time::Instant::now() < deadline {
        for consumer in [&mut a, &mut b] {
            for delivery in consumer.fetch(7, Duration::from_millis(100)).await.unwrap() {
                seen.push(String::from_utf8(delivery.payload.to_vec()).unwrap());
                delivery.ack().await.unwrap();
            }
        }
    }
    seen.sort_by_key(|s| s.parse::<u32>().unwrap());
    assert_eq!(seen, (0..40).map(|i| i.to_string()).collect::<Vec<_>>());
}

async fn a_filtered_consumer_sees_only_its_subjects(bus: &Bus) {
    bus.ensure_stream("approvals").await.unwrap();
    bus.publish_batch(&[
        message(bus, "approvals", "UpdateApproved", "f1", "approved"),
        message(bus, "approvals", "UpdateDeclined", "f2", "declined"),
        message(bus, "approvals", "UpdateApproved", "f3", "approved-2"),
    ])
    .await
    .unwrap();
    let filter = bus.subjects().event("approvals", "UpdateApproved");
    let mut consumer = bus
        .consumer(ConsumerConfig {
            filter_subject: Some(filter),
            ..config("filtered", "approvals")
        })
        .await
        .unwrap();
    let deliveries = fetch_n(&mut consumer, 3, Duration::from_secs(1)).await;
    let bodies: Vec<_> = deliveries.iter().map(|d| d.payload.clone()).collect();
    assert_eq!(
        bodies,
        vec![Bytes::from("approved"), Bytes::from("approved-2")]
    );
}

async fn store_with_events(count: usize) -> (EventStore, TestSqlite) {
    let dir = TestSqlite::new();
    let store = EventStore::connect(&dir.url("approvals.db")).await.unwrap();
    for i in 0..count {
        let event =
            NewEvent::new("UpdateApproved", 1, i.to_string().into_bytes()).actor("user:alice");
        store
            .append(
                &format!("approval-{i}"),
                ExpectedVersion::NoStream,
                &[event],
            )
            .await
            .unwrap();
    }
    (store, dir)
}

async fn relay_publishes_the_log_and_a_crash_before_the_checkpoint_duplicates_nothing(bus: &Bus) {
    let (store, _dir) = store_with_events(10).await;
    let relay = Relay::new("approvals", store.clone(), bus.clone())
        .unwrap()
        .batch_size(4);

    // A relay that dies after publishing its first batch but before saving its checkpoint.
    let mut crashed = relay.subscribe().await.unwrap();
    let first_batch = crashed.try_next_batch().await.unwrap().unwrap();
    relay.publish(&first_batch).await.unwrap();
    drop(crashed);
    assert_eq!(
        store.load_checkpoint("relay").await.unwrap(),
        LogPosition::START
    );

    // The restarted relay publishes from the checkpoint: the first batch again, then the rest.
    assert_eq!(relay.relay_pending().await.unwrap(), 10);
    assert_eq!(relay.relay_pending().await.unwrap(), 0);

    let mut consumer = bus
        .consumer(config("relay-check", "approvals"))
        .await
        .unwrap();
    let deliveries = fetch_n(&mut consumer, 14, Duration::from_secs(2)).await;
    let events: Vec<_> = deliveries
        .iter()
        .map(|d| patchbay_bus::decode_envelope(&d.subject, &d.payload).unwrap())
        .collect();
    let payloads: Vec<_> = events
        .iter()
        .map(|e| String::from_utf8(e.event.payload.clone()).unwrap())
        .collect();
    assert_eq!(payloads, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
    assert!(
        events
            .iter()
            .all(|e| e.service == "approvals" && e.event.metadata.actor == "user:alice")
    );
    assert_eq!(
        deliveries[0].subject,
        bus.subjects().event("approvals", "UpdateApproved")
    );
}

async fn relay_without_a_span_forwards_the_stored_trace_context(bus: &Bus) {
    // No tracing subscriber in this test binary: the relay span is disabled.
    let dir = TestSqlite::new();
    let store = EventStore::connect(&dir.url("approvals.db")).await.unwrap();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let traced = NewEvent::new("UpdateApproved", 1, b"traced".to_vec())
        .trace_context(Some(traceparent.to_owned()), Some("vendor=abc".to_owned()));
    let untraced = NewEvent::new("UpdateApproved", 1, b"untraced".to_vec());
    store
        .append("approval-1", ExpectedVersion::NoStream, &[traced, untraced])
        .await
        .unwrap();
    let relay = Relay::new("approvals", store, bus.clone()).unwrap();
    assert_eq!(relay.relay_pending().await.unwrap(), 2);

    let mut consumer = bus.consumer(config("traced", "approvals")).await.unwrap();
    let deliveries = fetch_n(&mut consumer, 2, Duration::from_secs(5)).await;
    assert_eq!(deliveries.len(), 2);
    assert_eq!(deliveries[0].header("traceparent"), Some(traceparent));
    assert_eq!(deliveries[0].header("tracestate"), Some("vendor=abc"));
    assert_eq!(deliveries[1].header("traceparent"), None);
    assert_eq!(deliveries[1].header("tracestate"), None);
}

/// The relay keeps a batch's acks outstanding while it sends the next: a publish that JetStream
/// refuses mid-way must stop it with the checkpoint at the end of the last batch whose every ack
/// came in, and a restart must publish the rest without storing anything twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_publish_leaves_the_relay_checkpoint_at_the_last_acked_batch() {
    use async_nats::jetstream::stream;

    let Some(test_bus) = nats_bus().await else {
        return;
    };
    let bus = test_bus.bus.clone();
    let Bus::Nats(nats) = &bus else {
        unreachable!("nats_bus makes a NATS bus")
    };
    let jetstream = async_nats::jetstream::new(nats.client().clone());
    // Room for 6 messages, then JetStream refuses publishes (DiscardPolicy::New answers with an
    // error ack instead of dropping old messages).
    let limited = |max_messages| stream::Config {
        name: bus.subjects().stream_name("limited"),
        subjects: vec![bus.subjects().service_wildcard("limited")],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        discard: stream::DiscardPolicy::New,
        max_messages,
        ..Default::default()
    };
    jetstream.create_stream(limited(6)).await.unwrap();

    let (store, _dir) = store_with_events(10).await;
    let relay = Relay::new("limited", store.clone(), bus.clone())
        .unwrap()
        .batch_size(4);
    // Batch 1 (events 0-3) is acked; batch 2 (4-7) is refused from event 6 on, while batch 3
    // (8-9) is already sent.
    let error = relay.relay_pending().await.unwrap_err();
    assert!(
        matches!(error, patchbay_bus::BusError::Nats { .. }),
        "{error}"
    );
    let first_batch = store.read_all(LogPosition::START, 4).await.unwrap();
    assert_eq!(
        store.load_checkpoint("relay").await.unwrap(),
        first_batch[3].position
    );

    // With room again, the restarted relay publishes from batch 2 on: events 4 and 5 again
    // (deduplicated by message id), then the rest.
    jetstream.update_stream(limited(-1)).await.unwrap();
    assert_eq!(relay.relay_pending().await.unwrap(), 6);
    assert_eq!(relay.relay_pending().await.unwrap(), 0);
    let info = jetstream
        .get_stream(bus.subjects().stream_name("limited"))
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap();
    assert_eq!(info.state.messages, 10);
    let mut consumer = bus
        .consumer(config("limited-check", "limited"))
        .await
        .unwrap();
    let deliveries = fetch_n(&mut consumer, 11, Duration::from_secs(2)).await;
    let payloads: Vec<_> = deliveries
        .iter()
        .map(|d| {
            let event = patchbay_bus::decode_envelope(&d.subject, &d.payload).unwrap();
            String::from_utf8(event.event.payload).unwrap()
        })
        .collect();
    assert_eq!(payloads, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
    bus.delete_stream("limited").await.unwrap();
}

/// async-nats lets a context have 5,000 publishes unacked and then waits for a free slot, which
/// only awaiting an earlier ack frees: a batch bigger than that must not wait on itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_beyond_the_unacked_publish_limit_is_published() {
    let Some(test_bus) = nats_bus().await else {
        return;
    };
    let bus = &test_bus.bus;
    let batch: Vec<_> = (0..6_000)
        .map(|i| message(bus, "scanning", "E", &format!("big-{i}"), "x"))
        .collect();
    // A failure guard only: the batch takes well under a second.
    let acks = tokio::time::timeout(Duration::from_secs(120), bus.publish_batch(&batch))
        .await
        .expect("the batch does not wait on itself")
        .unwrap();
    assert_eq!(acks.len(), 6_000);
    assert!(acks.windows(2).all(|w| w[0].sequence < w[1].sequence));
    assert!(acks.iter().all(|a| !a.duplicate));
}

/// Appends `InstallJobQueued` for every `UpdateApproved`, fails on demand.
#[derive(Clone, Default)]
struct QueueJobs {
    calls: Arc<AtomicUsize>,
    fail_first_transiently: Arc<AtomicUsize>,
}

impl EventHandler for QueueJobs {
    async fn handle(
        &self,
        tx: &mut Transaction,
        incoming: &IncomingEvent,
    ) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if incoming.event.payload == b"poison" {
            return Err(HandlerError::Permanent(
                "payload 'poison' names no update".into(),
            ));
        }
        if self.fail_first_transiently.load(Ordering::SeqCst) > 0 {
            self.fail_first_transiently.fetch_sub(1, Ordering::SeqCst);
            return Err(HandlerError::Transient("database briefly away".into()));
        }
        let job = NewEvent::new("InstallJobQueued", 1, incoming.event.payload.clone())
            .caused_by(&incoming.event);
        tx.append(
            &format!("job-{}", incoming.event.stream_id),
            ExpectedVersion::NoStream,
            &[job],
        )
        .await?;
        Ok(())
    }
}

async fn consumer_runner_handles_each_event_once_and_dead_letters_poison(bus: &Bus) {
    let (producer, _dir) = store_with_events(3).await;
    producer
        .append(
            "approval-poison",
            ExpectedVersion::NoStream,
            &[NewEvent::new("UpdateApproved", 1, b"poison".to_vec())],
        )
        .await
        .unwrap();
    let relay = Relay::new("approvals", producer.clone(), bus.clone()).unwrap();
    relay.relay_pending().await.unwrap();
    // The same event published again under another message id (outside any dedupe window): the inbox
    // must catch it.
    let first = producer.read_all(LogPosition::START, 1).await.unwrap();
    let mut again = BusMessage {
        subject: bus.subjects().event("approvals", "UpdateApproved"),
        message_id: "redelivered-later".into(),
        headers: vec![],
        payload: patchbay_bus::encode_envelope("approvals", &first[0]),
    };
    bus.publish_batch(std::slice::from_ref(&again))
        .await
        .unwrap();
    again.message_id = "garbage".into();
    again.payload = Bytes::from_static(b"\xff not protobuf");
    bus.publish_batch(&[again]).await.unwrap();

    let consumer_dir = TestSqlite::new();
    let installing = EventStore::connect(&consumer_dir.url("installing.db"))
        .await
        .unwrap();
    let handler = QueueJobs::default();
    handler.fail_first_transiently.store(1, Ordering::SeqCst);
    let runner = ConsumerRunner::new(
        ConsumerConfig {
            ack_wait: Duration::from_secs(5),
            max_deliver: 3,
            ..ConsumerConfig::new("installing-on-approved", "approvals")
        },
        installing.clone(),
        bus.clone(),
        handler.clone(),
    );
    let mut consumer = runner.bind().await.unwrap();
    let mut stats = patchbay_bus::RunStats::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while (stats.handled < 3 || stats.dead_lettered < 2 || stats.duplicates < 1)
        && tokio::time::Instant::now() < deadline
    {
        stats += runner
            .run_once(&mut consumer, Duration::from_millis(200))
            .await
            .unwrap();
    }
    assert_eq!(stats.handled, 3, "{stats:?}");
    assert_eq!(stats.duplicates, 1, "{stats:?}");
    assert_eq!(stats.retried, 1, "{stats:?}");
    assert_eq!(stats.dead_lettered, 2, "{stats:?}");
    let jobs = installing.read_all(LogPosition::START, 100).await.unwrap();
    assert_eq!(jobs.len(), 3);
    assert!(jobs.iter().all(|j| j.metadata.causation_id.is_some()));

    let mut dead = bus.consumer(config("dlq-reader", "dlq")).await.unwrap();
    let letters = fetch_n(&mut dead, 2, Duration::from_secs(5)).await;
    let mut reasons: Vec<_> = letters
        .iter()
        .map(|d| d.header(DEAD_LETTER_REASON).unwrap().to_owned())
        .collect();
    reasons.sort();
    assert!(reasons[0].contains("not a Patchbay event"), "{reasons:?}");
    assert!(reasons[1].contains("names no update"), "{reasons:?}");
}

#[tokio::test]
async fn in_process_bus_redelivers_unacked_messages_after_a_restart() {
    let dir = TestSqlite::new();
    let url = dir.url("bus.db");
    let subjects = Subjects::default();
    {
        let bus = Bus::in_process(&url, subjects.clone()).await.unwrap();
        bus.publish_batch(&[
            message(&bus, "approvals", "E", "a", "acked"),
            message(&bus, "approvals", "E", "b", "lost"),
        ])
        .await
        .unwrap();
        let mut consumer = bus.consumer(config("durable", "approvals")).await.unwrap();
        let deliveries = fetch_n(&mut consumer, 2, Duration::from_secs(1)).await;
        deliveries[0].ack().await.unwrap();
        // The floor is saved on the next fetch; then the process "crashes" with "lost" in flight.
        assert!(
            consumer
                .fetch(1, Duration::from_millis(10))
                .await
                .unwrap()
                .is_empty()
        );
    }
    let bus = Bus::in_process(&url, subjects).await.unwrap();
    let mut consumer = bus.consumer(config("durable", "approvals")).await.unwrap();
    let deliveries = fetch_n(&mut consumer, 2, Duration::from_secs(1)).await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].payload, Bytes::from("lost"));
    // Its message id is still known: publishing it again stores nothing.
    assert!(
        bus.publish_batch(&[message(&bus, "approvals", "E", "b", "lost")])
            .await
            .unwrap()[0]
            .duplicate
    );
}

#[tokio::test]
async fn bad_names_are_refused_with_a_clear_error() {
    let bus = in_process_bus().await;
    let error = bus
        .bus
        .consumer(ConsumerConfig::new("has.dot", "approvals"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("consumer name"), "{error}");
    let error = bus
        .bus
        .publish_batch(&[BusMessage {
            subject: "elsewhere.approvals.E".into(),
            message_id: "x".into(),
            headers: vec![],
            payload: Bytes::new(),
        }])
        .await
        .unwrap_err();
    assert!(error.to_string().contains("not on this bus"), "{error}");
}

#[tokio::test]
async fn an_unreachable_nats_server_is_a_clear_error() {
    let error = Bus::nats("nats://127.0.0.1:1", Subjects::default())
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("NATS connect failed")
            && error.to_string().contains("127.0.0.1:1"),
        "{error}"
    );
    assert!(error.is_transient());
}

/// The production path: PostgreSQL log → relay → NATS JetStream → consumer → PostgreSQL log, with a
/// relay crash before its checkpoint and the same event redelivered later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_relay_to_nats_and_consumer_into_postgres_handles_each_event_once() {
    let Some(producer_db) = patchbay_testkit::TestPostgres::create().await else {
        return;
    };
    let Some(consumer_db) = patchbay_testkit::TestPostgres::create().await else {
        return;
    };
    let Some(bus) = nats_bus().await else { return };
    let bus = bus.bus.clone();
    let approvals = EventStore::connect(&producer_db.url).await.unwrap();
    let installing = EventStore::connect(&consumer_db.url).await.unwrap();
    for i in 0..50 {
        let event = NewEvent::new("UpdateApproved", 1, i.to_string().into_bytes());
        approvals
            .append(
                &format!("approval-{i}"),
                ExpectedVersion::NoStream,
                &[event],
            )
            .await
            .unwrap();
    }
    let relay = Relay::new("approvals", approvals.clone(), bus.clone())
        .unwrap()
        .batch_size(20);
    let mut crashed = relay.subscribe().await.unwrap();
    let batch = crashed.try_next_batch().await.unwrap().unwrap();
    relay.publish(&batch).await.unwrap();
    drop(crashed);
    assert_eq!(relay.relay_pending().await.unwrap(), 50);

    let handler = QueueJobs::default();
    let runner = ConsumerRunner::new(
        ConsumerConfig::new("installing-on-approved", "approvals"),
        installing.clone(),
        bus.clone(),
        handler.clone(),
    );
    let mut consumer = runner.bind().await.unwrap();
    let mut stats = patchbay_bus::RunStats::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while stats.handled < 50 && tokio::time::Instant::now() < deadline {
        stats += runner
            .run_once(&mut consumer, Duration::from_millis(200))
            .await
            .unwrap();
    }
    // Event 0 published again under a new message id, as after JetStream's dedupe window.
    let first = approvals.read_all(LogPosition::START, 1).await.unwrap();
    bus.publish_batch(&[BusMessage {
        subject: bus.subjects().event("approvals", "UpdateApproved"),
        message_id: "after-the-window".into(),
        headers: vec![],
        payload: patchbay_bus::encode_envelope("approvals", &first[0]),
    }])
    .await
    .unwrap();
    while stats.duplicates < 1 && tokio::time::Instant::now() < deadline {
        stats += runner
            .run_once(&mut consumer, Duration::from_millis(200))
            .await
            .unwrap();
    }
    assert_eq!(
        (stats.handled, stats.duplicates, stats.dead_lettered),
        (50, 1, 0),
        "{stats:?}"
    );
    assert_eq!(handler.calls.load(Ordering::SeqCst), 50);
    assert_eq!(
        installing.count_after(LogPosition::START).await.unwrap(),
        50
    );
}

async fn consumer_lag_counts_what_a_consumer_has_not_handled(bus: &Bus) {
    assert!(bus.is_connected());
    // Not bound yet: no backlog to report.
    assert_eq!(bus.consumer_lag("lagging", "catalog").await.unwrap(), None);
    bus.ensure_stream("catalog").await.unwrap();
    let batch: Vec<_> = (0..5)
        .map(|i| message(bus, "catalog", "UpdatePublished", &format!("l{i}"), "x"))
        .collect();
    bus.publish_batch(&batch).await.unwrap();
    let mut consumer = bus.consumer(config("lagging", "catalog")).await.unwrap();
    let lag = bus
        .consumer_lag("lagging", "catalog")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((lag.pending, lag.ack_pending, lag.redelivered), (5, 0, 0));

    let fetched = fetch_n(&mut consumer, 2, Duration::from_secs(10)).await;
    assert_eq!(fetched.len(), 2);
    let lag = bus
        .consumer_lag("lagging", "catalog")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((lag.pending, lag.ack_pending), (3, 2));
    for delivery in &fetched {
        delivery.ack().await.unwrap();
    }
    // JetStream applies acks asynchronously: wait for the backlog to shrink.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let lag = bus
            .consumer_lag("lagging", "catalog")
            .await
            .unwrap()
            .unwrap();
        if lag.backlog() == 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "backlog stayed at {lag:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
