//! The relay and the consumer runner ride out NATS and PostgreSQL going away mid-run: nothing is
//! lost and nothing is handled twice.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use patchbay_bus::{
    Bus, ConsumerConfig, ConsumerRunner, EventHandler, HandlerError, IncomingEvent, Relay, Subjects,
};
use patchbay_eventstore::{EventStore, ExpectedVersion, LogPosition, NewEvent, Transaction};
use patchbay_testkit::{TcpProxy, TestPostgres, nats_url, with_address};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Default)]
struct QueueJob {
    calls: Arc<AtomicUsize>,
}

impl EventHandler for QueueJob {
    async fn handle(
        &self,
        tx: &mut Transaction,
        incoming: &IncomingEvent,
    ) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let job = incoming.follow_up("InstallJobQueued", 1, incoming.event.payload.clone());
        tx.append(
            &format!("job-{}", incoming.event.stream_id),
            ExpectedVersion::NoStream,
            &[job],
        )
        .await?;
        Ok(())
    }
}

async fn socket_address(url: &str) -> std::net::SocketAddr {
    let authority = url
        .split("://")
        .nth(1)
        .unwrap()
        .split(['/', '?'])
        .next()
        .unwrap();
    let host_port = authority.rsplit('@').next().unwrap();
    tokio::net::lookup_host(host_port)
        .await
        .unwrap()
        .next()
        .unwrap()
}

async fn wait_for(store: &EventStore, count: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while store.count_after(LogPosition::START).await.unwrap() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {count} events"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn approve(store: &EventStore, range: std::ops::Range<usize>) {
    for i in range {
        let event = NewEvent::new("UpdateApproved", 1, i.to_string().into_bytes());
        store
            .append(
                &format!("approval-{i}"),
                ExpectedVersion::NoStream,
                &[event],
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_and_consumer_survive_nats_and_postgres_outages() {
    let Some(nats) = nats_url() else { return };
    let Some(producer_db) = TestPostgres::create().await else {
        return;
    };
    let Some(consumer_db) = TestPostgres::create().await else {
        return;
    };
    let nats_proxy = TcpProxy::start(socket_address(&nats).await).await;
    let pg_proxy = TcpProxy::start(socket_address(&producer_db.url).await).await;

    let subjects = Subjects::new(&format!(
        "t{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    ))
    .unwrap();
    let bus = Bus::nats(&with_address(&nats, nats_proxy.address), subjects)
        .await
        .unwrap();
    let approvals = EventStore::connect(&with_address(&producer_db.url, pg_proxy.address))
        .await
        .unwrap();
    let writer = EventStore::connect(&producer_db.url).await.unwrap();
    let installing = EventStore::connect(&consumer_db.url).await.unwrap();
    let handler = QueueJob::default();

    let shutdown = CancellationToken::new();
    let relay = tokio::spawn(
        Relay::new("approvals", approvals, bus.clone())
            .unwrap()
            .run(shutdown.clone()),
    );
    let runner = ConsumerRunner::new(
        ConsumerConfig {
            ack_wait: Duration::from_secs(2),
            ..ConsumerConfig::new("installing-on-approved", "approvals")
        },
        installing.clone(),
        bus.clone(),
        handler.clone(),
    );
    let consuming = tokio::spawn(runner.run(shutdown.clone()));

    approve(&writer, 0..20).await;
    wait_for(&installing, 20).await;

    // NATS goes away while events keep arriving.
    nats_proxy.cut();
    approve(&writer, 20..40).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    nats_proxy.restore();
    wait_for(&installing, 40).await;

    // The relay's PostgreSQL goes away.
    pg_proxy.cut();
    approve(&writer, 40..60).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    pg_proxy.restore();
    wait_for(&installing, 60).await;

    shutdown.cancel();
    relay.await.unwrap().unwrap();
    consuming.await.unwrap().unwrap();
    assert_eq!(
        installing.count_after(LogPosition::START).await.unwrap(),
        60
    );
    assert_eq!(handler.calls.load(Ordering::SeqCst), 60);
    for service in ["approvals", "dlq"] {
        bus.delete_stream(service).await.unwrap();
    }
}
