//! The outbox relay: tails a service's own log from its checkpoint and publishes every event; the
//! checkpoint advances only after the bus has acknowledged the whole batch.

use std::time::Duration;

use patchbay_eventstore::{EventStore, RecordedEvent, Subscription};
use patchbay_telemetry::TraceContext;
use tokio_util::sync::CancellationToken;

use crate::bus::Bus;
use crate::envelope::{BusMessage, TRACEPARENT, TRACESTATE, encode_envelope};
use crate::error::BusError;
use crate::subject::validate_token;

/// Name of the relay's checkpoint in the service's store.
pub const RELAY_CHECKPOINT: &str = "relay";

/// Publishes one service's event log to the bus.
#[derive(Debug, Clone)]
pub struct Relay {
    service: String,
    store: EventStore,
    bus: Bus,
    batch_size: usize,
}

impl Relay {
    pub fn new(service: &str, store: EventStore, bus: Bus) -> Result<Self, BusError> {
        validate_token("service name", service)?;
        Ok(Self {
            service: service.to_owned(),
            store,
            bus,
            batch_size: 1_000,
        })
    }

    /// Events per publish batch (default 1,000).
    #[must_use]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// The subscription the relay reads through, resuming at its checkpoint.
    pub async fn subscribe(&self) -> Result<Subscription, BusError> {
        Ok(self
            .store
            .subscribe(RELAY_CHECKPOINT, self.batch_size)
            .await?)
    }

    /// Relays until `shutdown` is cancelled, retrying transient failures with backoff. After a failure
    /// the batch is published again from the checkpoint; the bus drops the duplicates.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), BusError> {
        let mut backoff = Backoff::default();
        loop {
            let result = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                result = self.run_until_error(&shutdown) => result,
            };
            match result {
                Ok(()) => return Ok(()),
                Err(error) if error.is_transient() => {
                    tracing::warn!(service = %self.service, %error, "relay failed; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(backoff.next()) => {}
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn run_until_error(&self, shutdown: &CancellationToken) -> Result<(), BusError> {
        self.bus.ensure_stream(&self.service).await?;
        let mut subscription = self.subscribe().await?;
        loop {
            let events = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                events = subscription.next_batch() => events?,
            };
            self.publish(&events).await?;
            subscription.commit().await?;
        }
    }

    /// Publishes everything visible now and commits the checkpoint; returns how many events it relayed.
    pub async fn relay_pending(&self) -> Result<usize, BusError> {
        self.bus.ensure_stream(&self.service).await?;
        let mut subscription = self.subscribe().await?;
        let mut relayed = 0;
        while let Some(events) = subscription.try_next_batch().await? {
            self.publish(&events).await?;
            subscription.commit().await?;
            relayed += events.len();
        }
        Ok(relayed)
    }

    /// Publishes `events` and waits for every acknowledgement, without touching the checkpoint.
    pub async fn publish(&self, events: &[RecordedEvent]) -> Result<(), BusError> {
        let messages: Vec<BusMessage> = events.iter().map(|e| self.message(e)).collect();
        self.bus.publish_batch(&messages).await?;
        Ok(())
    }

    fn message(&self, event: &RecordedEvent) -> BusMessage {
        let mut headers = Vec::new();
        // Events appended under a trace get a relay span in that trace; its context travels on.
        if event.metadata.traceparent.is_some() {
            let span = tracing::info_span!(
                "relay.publish",
                otel.kind = "producer",
                service = %self.service,
                event_type = %event.event_type,
                event_id = %event.event_id,
            );
            TraceContext {
                traceparent: event.metadata.traceparent.clone(),
                tracestate: event.metadata.tracestate.clone(),
            }
            .set_as_parent_of(&span);
            let context = TraceContext::of_span(&span);
            headers.extend(context.traceparent.map(|v| (TRACEPARENT.to_owned(), v)));
            headers.extend(context.tracestate.map(|v| (TRACESTATE.to_owned(), v)));
        }
        BusMessage {
            subject: self.bus.subjects().event(&self.service, &event.event_type),
            message_id: event.event_id.to_string(),
            headers,
            payload: encode_envelope(&self.service, event),
        }
    }
}

/// Exponential backoff from 100 ms to 10 s.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: Duration::from_millis(100),
        }
    }
}

impl Backoff {
    pub(crate) fn next(&mut self) -> Duration {
        let current = self.next;
        self.next = (self.next * 2).min(Duration::from_secs(10));
        current
    }
}
