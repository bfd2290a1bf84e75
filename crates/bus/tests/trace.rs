//! One trace follows an event from the span that appended it, through the relay and the bus, into the
//! consumer and the event the consumer appends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use patchbay_bus::{
    Bus, ConsumerConfig, ConsumerRunner, EventHandler, HandlerError, IncomingEvent, Relay, Subjects,
};
use patchbay_eventstore::{EventStore, ExpectedVersion, LogPosition, NewEvent, Transaction};
use patchbay_telemetry::TraceContext;
use patchbay_telemetry::testing::TestTelemetry;
use patchbay_testkit::{TestSqlite, nats_url};

struct QueueJob;

impl EventHandler for QueueJob {
    async fn handle(
        &self,
        tx: &mut Transaction,
        incoming: &IncomingEvent,
    ) -> Result<(), HandlerError> {
        let job = incoming.follow_up("InstallJobQueued", 1, b"job".to_vec());
        tx.append("job-1", ExpectedVersion::NoStream, &[job])
            .await?;
        Ok(())
    }
}

async fn trace_through(bus: Bus) {
    let telemetry = TestTelemetry::new();
    // A thread-local subscriber: the test runs on a current-thread runtime, so every span is seen.
    let _subscriber = telemetry.set_default();
    let dir = TestSqlite::new();
    let approvals = EventStore::connect(&dir.url("approvals.db")).await.unwrap();
    let installing = EventStore::connect(&dir.url("installing.db"))
        .await
        .unwrap();

    let request = tracing::info_span!("grpc.approve");
    let context = request.in_scope(TraceContext::current);
    assert!(!context.is_empty());
    let approved = NewEvent::new("UpdateApproved", 1, b"KB1".to_vec())
        .trace_context(context.traceparent.clone(), context.tracestate.clone());
    approvals
        .append("approval-KB1", ExpectedVersion::NoStream, &[approved])
        .await
        .unwrap();
    drop(request);

    Relay::new("approvals", approvals, bus.clone())
        .unwrap()
        .relay_pending()
        .await
        .unwrap();
    let runner = ConsumerRunner::new(
        ConsumerConfig::new("installing-on-approved", "approvals"),
        installing.clone(),
        bus.clone(),
        QueueJob,
    );
    let mut consumer = runner.bind().await.unwrap();
    let mut handled = 0;
    for _ in 0..50 {
        handled += runner
            .run_once(&mut consumer, Duration::from_millis(100))
            .await
            .unwrap()
            .handled;
        if handled == 1 {
            break;
        }
    }
    assert_eq!(handled, 1);

    // The SDK hands finished spans to the exporter off the calling thread: wait for the last one.
    let mut spans = telemetry.finished_spans().unwrap();
    for _ in 0..100 {
        if spans.iter().any(|s| s.name == "consume") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        spans = telemetry.finished_spans().unwrap();
    }
    let find = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span {name}: {spans:?}"))
    };
    let (request, relay, consume) = (find("grpc.approve"), find("relay.publish"), find("consume"));
    let trace_id = request.span_context.trace_id();
    assert_eq!(relay.span_context.trace_id(), trace_id);
    assert_eq!(consume.span_context.trace_id(), trace_id);
    assert_eq!(relay.parent_span_id, request.span_context.span_id());
    assert_eq!(consume.parent_span_id, relay.span_context.span_id());

    // The consumer's own event carries the same trace on, as the consume span's child.
    let job = installing.read_all(LogPosition::START, 10).await.unwrap();
    let traceparent = job[0].metadata.traceparent.clone().unwrap();
    assert!(traceparent.contains(&trace_id.to_string()), "{traceparent}");
    assert!(
        traceparent.contains(&consume.span_context.span_id().to_string()),
        "{traceparent}"
    );
}

#[tokio::test]
async fn one_trace_spans_append_relay_in_process_bus_and_consumer() {
    let dir = TestSqlite::new();
    trace_through(
        Bus::in_process(&dir.url("bus.db"), Subjects::default())
            .await
            .unwrap(),
    )
    .await;
}

#[tokio::test]
async fn one_trace_spans_append_relay_nats_and_consumer() {
    let Some(url) = nats_url() else { return };
    let subjects = Subjects::new(&format!(
        "t{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    ))
    .unwrap();
    let bus = Bus::nats(&url, subjects).await.unwrap();
    trace_through(bus.clone()).await;
    for service in ["approvals", "dlq"] {
        bus.delete_stream(service).await.unwrap();
    }
}
