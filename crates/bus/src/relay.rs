//! The outbox relay: tails a service's own log from its checkpoint and publishes every event; the
//! checkpoint advances only after the bus has acknowledged the whole batch (and every batch before).

use std::time::Duration;

use patchbay_eventstore::{EventStore, LogPosition, RecordedEvent, Subscription};
use patchbay_telemetry::TraceContext;
use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, PendingAcks};
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
    ///
    /// On shutdown it publishes what is still pending and saves the checkpoint before returning,
    /// so a restart has nothing to publish again (the caller bounds how long that may take).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), BusError> {
        let mut backoff = Backoff::default();
        loop {
            let result = tokio::select! {
                () = shutdown.cancelled() => break,
                result = self.run_until_error(&shutdown) => result,
            };
            match result {
                Ok(()) => break,
                Err(error) if error.is_transient() => {
                    tracing::warn!(service = %self.service, %error, "relay failed; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(backoff.next()) => {}
                    }
                }
                Err(error) => return Err(error),
            }
        }
        // A batch that was in flight when the loop stopped is published again here; the bus drops
        // the duplicates.
        match self.relay_pending().await {
            Ok(relayed) => {
                tracing::info!(service = %self.service, relayed, "relay flushed at shutdown");
            }
            Err(error) => tracing::warn!(
                service = %self.service,
                %error,
                "relay could not flush at shutdown; the next start publishes the rest"
            ),
        }
        Ok(())
    }

    async fn run_until_error(&self, shutdown: &CancellationToken) -> Result<(), BusError> {
        self.bus.ensure_stream(&self.service).await?;
        let mut subscription = self.subscribe().await?;
        let mut in_flight: Option<InFlight> = None;
        loop {
            let next = match in_flight.take() {
                // A batch is still being acked: take what is visible now, never wait for new
                // events before its checkpoint is saved.
                Some(previous) => match subscription.try_next_batch().await? {
                    Some(events) => {
                        self.step(&mut subscription, Some(previous), &events)
                            .await?
                    }
                    None => {
                        self.finish(&mut subscription, previous).await?;
                        continue;
                    }
                },
                None => {
                    let events = tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        events = subscription.next_batch() => events?,
                    };
                    self.step(&mut subscription, None, &events).await?
                }
            };
            in_flight = Some(next);
        }
    }

    /// Publishes everything visible now and commits the checkpoint; returns how many events it relayed.
    pub async fn relay_pending(&self) -> Result<usize, BusError> {
        self.bus.ensure_stream(&self.service).await?;
        let mut subscription = self.subscribe().await?;
        let mut relayed = 0;
        let mut in_flight: Option<InFlight> = None;
        while let Some(events) = subscription.try_next_batch().await? {
            let previous = in_flight.take();
            relayed += previous.as_ref().map_or(0, |p| p.events);
            in_flight = Some(self.step(&mut subscription, previous, &events).await?);
        }
        if let Some(last) = in_flight {
            relayed += last.events;
            self.finish(&mut subscription, last).await?;
        }
        Ok(relayed)
    }

    /// Sends `events` while the previous batch's acks come in, then saves the previous batch's
    /// checkpoint: the bus stores batch k while batch k+1 is read and encoded. The checkpoint only
    /// ever moves to the end of a batch whose every ack is in, and batches are acked in order, so a
    /// failed ack stops here with the checkpoint at the last fully acked batch; everything after
    /// it is published again on restart and deduplicated by message id.
    async fn step(
        &self,
        subscription: &mut Subscription,
        previous: Option<InFlight>,
        events: &[RecordedEvent],
    ) -> Result<InFlight, BusError> {
        let messages: Vec<BusMessage> = events.iter().map(|e| self.message(e)).collect();
        // Concurrently: async-nats lets a publisher have a bounded number of acks outstanding and
        // waits for a free slot, which only awaiting the previous batch's acks frees.
        let (sent, previous) = tokio::join!(self.bus.send_batch(&messages), async {
            match previous {
                Some(previous) => previous.acks.wait().await.map(|_| Some(previous.through)),
                None => Ok(None),
            }
        });
        if let Some(through) = previous? {
            subscription.commit_at(through).await?;
        }
        Ok(InFlight {
            acks: sent?,
            through: subscription.position(),
            events: events.len(),
        })
    }

    /// Waits for the last batch's acks, then saves its checkpoint.
    async fn finish(
        &self,
        subscription: &mut Subscription,
        last: InFlight,
    ) -> Result<(), BusError> {
        last.acks.wait().await?;
        subscription.commit_at(last.through).await?;
        Ok(())
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
        if let Some(traceparent) = &event.metadata.traceparent {
            let span = tracing::info_span!(
                "relay.publish",
                otel.kind = "producer",
                service = %self.service,
                event_type = %event.event_type,
                event_id = %event.event_id,
            );
            let mut context = TraceContext::default();
            // Without a subscriber for the span, parsing the stored context would be wasted.
            if !span.is_disabled() {
                TraceContext {
                    traceparent: Some(traceparent.clone()),
                    tracestate: event.metadata.tracestate.clone(),
                }
                .set_as_parent_of(&span);
                context = TraceContext::of_span(&span);
            }
            // No relay span in the trace (no OpenTelemetry layer): consumers join the producer's
            // span directly.
            if context.is_empty() {
                context = TraceContext {
                    traceparent: Some(traceparent.clone()),
                    tracestate: event.metadata.tracestate.clone(),
                };
            }
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

/// A sent batch whose acks are still awaited, and the checkpoint to save once they are all in.
#[derive(Debug)]
struct InFlight {
    acks: PendingAcks,
    through: LogPosition,
    events: usize,
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
