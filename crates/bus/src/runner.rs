//! The consumer runner: pull, handle each event in one store transaction with its inbox row, commit,
//! then ack. Duplicates are acked without effect; poison messages go to the dead-letter stream.

use std::future::Future;
use std::time::Duration;

use patchbay_eventstore::{EventStore, EventStoreError, Transaction};
use patchbay_telemetry::TraceContext;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::bus::{Bus, BusConsumer, ConsumerConfig, Delivery};
use crate::envelope::{
    DEAD_LETTER_REASON, IncomingEvent, ORIGINAL_SUBJECT, TRACEPARENT, TRACESTATE, decode_envelope,
};
use crate::error::BusError;
use crate::relay::Backoff;

/// Why a handler did not handle an event.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth retrying (a conflict, a service briefly away): redelivered until `max_deliver`.
    #[error("{0}")]
    Transient(String),
    /// Will never succeed (an event the handler cannot accept): dead-lettered at once.
    #[error("{0}")]
    Permanent(String),
    /// The store failed; retried.
    #[error(transparent)]
    Store(#[from] EventStoreError),
}

/// Reacts to events from another service, appending its own events in the given transaction.
pub trait EventHandler: Send + Sync + 'static {
    /// True if [`EventHandler::handle_batch`] handles a batch better than event by event (e.g. with
    /// one append): the runner then calls it once per fetched batch.
    const BATCHED: bool = false;

    fn handle(
        &self,
        tx: &mut Transaction,
        event: &IncomingEvent,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Handles several new events, in order, in one transaction. The default handles each in turn.
    fn handle_batch(
        &self,
        tx: &mut Transaction,
        events: &[&IncomingEvent],
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        async move {
            for event in events {
                self.handle(tx, event).await?;
            }
            Ok(())
        }
    }
}

/// Most trace links one batch span carries.
const MAX_BATCH_LINKS: usize = 128;

/// What one fetch-and-handle pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunStats {
    pub handled: usize,
    pub duplicates: usize,
    pub retried: usize,
    pub dead_lettered: usize,
}

impl std::ops::AddAssign for RunStats {
    fn add_assign(&mut self, other: Self) {
        self.handled += other.handled;
        self.duplicates += other.duplicates;
        self.retried += other.retried;
        self.dead_lettered += other.dead_lettered;
    }
}

/// Runs one durable consumer into one service's store.
#[derive(Debug)]
pub struct ConsumerRunner<H> {
    config: ConsumerConfig,
    store: EventStore,
    bus: Bus,
    handler: H,
    batch_size: usize,
}

impl<H: EventHandler> ConsumerRunner<H> {
    pub fn new(config: ConsumerConfig, store: EventStore, bus: Bus, handler: H) -> Self {
        Self {
            config,
            store,
            bus,
            handler,
            batch_size: 100,
        }
    }

    /// Binds the durable consumer (creating the producer's stream if it does not exist yet).
    pub async fn bind(&self) -> Result<BusConsumer, BusError> {
        self.bus.ensure_stream(&self.config.service).await?;
        self.bus.consumer(self.config.clone()).await
    }

    /// Consumes until `shutdown` is cancelled; in-flight events finish first.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), BusError> {
        let mut backoff = Backoff::default();
        let mut consumer = None;
        while !shutdown.is_cancelled() {
            let result = async {
                if consumer.is_none() {
                    consumer = Some(self.bind().await?);
                }
                match consumer.as_mut() {
                    Some(bound) => {
                        tokio::select! {
                            () = shutdown.cancelled() => Ok(RunStats::default()),
                            deliveries = bound.fetch(self.batch_size, Duration::from_secs(1)) => {
                                // Once fetched, a batch is handled to the end even during shutdown.
                                self.handle_all(deliveries?).await
                            }
                        }
                    }
                    None => Ok(RunStats::default()),
                }
            }
            .await;
            if let Err(error) = result {
                if !error.is_transient() {
                    return Err(error);
                }
                tracing::warn!(consumer = %self.config.name, %error, "consumer failed; retrying");
                consumer = None;
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = tokio::time::sleep(backoff.next()) => {}
                }
            }
        }
        Ok(())
    }

    /// Fetches one batch (waiting up to `wait`) and handles it.
    pub async fn run_once(
        &self,
        consumer: &mut BusConsumer,
        wait: Duration,
    ) -> Result<RunStats, BusError> {
        let deliveries = consumer.fetch(self.batch_size, wait).await?;
        self.handle_all(deliveries).await
    }

    async fn handle_all(&self, deliveries: Vec<Delivery>) -> Result<RunStats, BusError> {
        if deliveries.len() > 1
            && let Some(stats) = self.handle_together(&deliveries).await?
        {
            return Ok(stats);
        }
        let mut stats = RunStats::default();
        for delivery in deliveries {
            stats += self.handle_one(&delivery).await?;
        }
        Ok(stats)
    }

    /// Handles a whole batch in one transaction: one commit instead of one per event, which is what
    /// makes catching up on a large stream fast. Returns None, having changed nothing, when any event
    /// needs treatment of its own (undecodable, a handler or store error); the caller then handles the
    /// batch one event at a time.
    async fn handle_together(&self, deliveries: &[Delivery]) -> Result<Option<RunStats>, BusError> {
        let mut events = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            match decode_envelope(&delivery.subject, &delivery.payload) {
                Ok(incoming) => events.push(incoming),
                Err(_) => return Ok(None),
            }
        }
        let outcome: Result<Option<RunStats>, HandlerError> = async {
            let mut tx = self.store.begin().await?;
            let mut stats = RunStats::default();
            let ids: Vec<_> = events.iter().map(|e| e.event.event_id).collect();
            let fresh = tx.record_inbox_many(&self.config.name, &ids).await?;
            if H::BATCHED {
                let new: Vec<&IncomingEvent> = events
                    .iter()
                    .zip(&fresh)
                    .filter_map(|(event, fresh)| fresh.then_some(event))
                    .collect();
                stats.duplicates = events.len() - new.len();
                let span = tracing::info_span!(
                    "consume.batch",
                    otel.kind = "consumer",
                    consumer = %self.config.name,
                    events = new.len(),
                );
                // One span handles many events, each from its own trace: it links to them rather
                // than picking one parent (OpenTelemetry's batch-consumer convention).
                for event in new.iter().take(MAX_BATCH_LINKS) {
                    TraceContext {
                        traceparent: event.event.metadata.traceparent.clone(),
                        tracestate: event.event.metadata.tracestate.clone(),
                    }
                    .add_as_link_to(&span);
                }
                if self
                    .handler
                    .handle_batch(&mut tx, &new)
                    .instrument(span)
                    .await
                    .is_err()
                {
                    tx.rollback().await?;
                    return Ok(None);
                }
                stats.handled = new.len();
                tx.commit().await?;
                return Ok(Some(stats));
            }
            for ((delivery, incoming), fresh) in deliveries.iter().zip(&events).zip(fresh) {
                if !fresh {
                    stats.duplicates += 1;
                    continue;
                }
                let span = self.consume_span(delivery, incoming);
                if self
                    .handler
                    .handle(&mut tx, incoming)
                    .instrument(span)
                    .await
                    .is_err()
                {
                    tx.rollback().await?;
                    return Ok(None);
                }
                stats.handled += 1;
            }
            tx.commit().await?;
            Ok(Some(stats))
        }
        .await;
        match outcome {
            Ok(Some(stats)) => {
                for delivery in deliveries {
                    delivery.ack().await?;
                }
                Ok(Some(stats))
            }
            Ok(None) | Err(_) => Ok(None),
        }
    }

    /// The span an event is handled in: a child of the relay span that published it.
    fn consume_span(&self, delivery: &Delivery, incoming: &IncomingEvent) -> tracing::Span {
        let span = tracing::info_span!(
            "consume",
            otel.kind = "consumer",
            consumer = %self.config.name,
            event_type = %incoming.event.event_type,
            event_id = %incoming.event.event_id,
            delivery = delivery.delivery_count,
        );
        TraceContext {
            traceparent: delivery.header(TRACEPARENT).map(str::to_owned),
            tracestate: delivery.header(TRACESTATE).map(str::to_owned),
        }
        .set_as_parent_of(&span);
        span
    }

    async fn handle_one(&self, delivery: &Delivery) -> Result<RunStats, BusError> {
        let incoming = match decode_envelope(&delivery.subject, &delivery.payload) {
            Ok(incoming) => incoming,
            Err(error) => return self.dead_letter(delivery, &error.to_string()).await,
        };
        let span = self.consume_span(delivery, &incoming);
        let outcome = self.handle_in_transaction(&incoming).instrument(span).await;
        match outcome {
            Ok(true) => {
                delivery.ack().await?;
                Ok(RunStats {
                    handled: 1,
                    ..Default::default()
                })
            }
            Ok(false) => {
                delivery.ack().await?;
                Ok(RunStats {
                    duplicates: 1,
                    ..Default::default()
                })
            }
            Err(HandlerError::Permanent(reason)) => self.dead_letter(delivery, &reason).await,
            Err(error) if delivery.delivery_count >= u64::from(self.config.max_deliver) => {
                self.dead_letter(
                    delivery,
                    &format!(
                        "gave up after {} deliveries: {error}",
                        delivery.delivery_count
                    ),
                )
                .await
            }
            Err(error) => {
                let delay =
                    Duration::from_millis(100 * 2u64.pow(delivery.delivery_count.min(8) as u32));
                tracing::warn!(consumer = %self.config.name, %error, ?delay, "handler failed; will retry");
                delivery.nak(delay).await?;
                Ok(RunStats {
                    retried: 1,
                    ..Default::default()
                })
            }
        }
    }

    /// True if handled now, false if this consumer had handled the event before.
    async fn handle_in_transaction(&self, incoming: &IncomingEvent) -> Result<bool, HandlerError> {
        let mut tx = self.store.begin().await?;
        if !tx
            .record_inbox(&self.config.name, incoming.event.event_id)
            .await?
        {
            tx.rollback().await?;
            return Ok(false);
        }
        match self.handler.handle(&mut tx, incoming).await {
            Ok(()) => {
                tx.commit().await?;
                Ok(true)
            }
            Err(error) => {
                tx.rollback().await?;
                Err(error)
            }
        }
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<RunStats, BusError> {
        tracing::error!(consumer = %self.config.name, subject = %delivery.subject, %reason, "dead-lettering message");
        let mut message = delivery.to_message(
            self.bus.subjects().dead_letter(&self.config.name),
            format!(
                "{}:{}:{}",
                self.config.name, delivery.subject, delivery.sequence
            ),
        );
        message
            .headers
            .retain(|(name, _)| name != DEAD_LETTER_REASON && name != ORIGINAL_SUBJECT);
        message.headers.push((
            DEAD_LETTER_REASON.to_owned(),
            reason.replace(['\r', '\n'], " "),
        ));
        message
            .headers
            .push((ORIGINAL_SUBJECT.to_owned(), delivery.subject.clone()));
        self.bus.publish_batch(&[message]).await?;
        delivery.term().await?;
        Ok(RunStats {
            dead_lettered: 1,
            ..Default::default()
        })
    }
}
