//! How far behind the bus's consumers are, and whether the bus is reachable: what health checks
//! and the metrics endpoint report.

use async_nats::connection::State as ConnectionState;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::stream::ConsumerErrorKind;

use crate::bus::Bus;
use crate::error::BusError;
use crate::nats::NatsBus;

/// A durable consumer's backlog, as the bus counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsumerLag {
    /// Messages in the stream not yet delivered to the consumer.
    pub pending: u64,
    /// Messages delivered and not yet acknowledged.
    pub ack_pending: u64,
    /// Of those unacknowledged, how many were delivered more than once.
    pub redelivered: u64,
}

impl ConsumerLag {
    /// Messages the consumer still has to handle.
    pub fn backlog(&self) -> u64 {
        self.pending + self.ack_pending
    }
}

impl Bus {
    /// Whether the bus can be used right now (NATS: the client is connected).
    pub fn is_connected(&self) -> bool {
        match self {
            Bus::Nats(bus) => bus.client().connection_state() == ConnectionState::Connected,
            Bus::InProcess(_) => true,
        }
    }

    /// The backlog of durable consumer `name` on `service`'s stream; None if it does not exist yet.
    pub async fn consumer_lag(
        &self,
        name: &str,
        service: &str,
    ) -> Result<Option<ConsumerLag>, BusError> {
        match self {
            Bus::Nats(bus) => nats_lag(bus, name, service).await,
            Bus::InProcess(bus) => bus.consumer_lag(name).await,
        }
    }
}

async fn nats_lag(
    bus: &NatsBus,
    name: &str,
    service: &str,
) -> Result<Option<ConsumerLag>, BusError> {
    // One request: the consumer's info, which the lookup fetches anyway.
    let consumer: async_nats::jetstream::consumer::PullConsumer = match bus
        .jetstream()
        .get_consumer_from_stream(name, bus.subjects().stream_name(service))
        .await
    {
        Ok(consumer) => consumer,
        // Not created yet (the runner creates stream and consumer when it binds).
        Err(error) if is_not_found(error.kind()) => return Ok(None),
        Err(error) => return Err(BusError::nats("consumer info", error)),
    };
    let info = consumer.cached_info();
    Ok(Some(ConsumerLag {
        pending: info.num_pending,
        ack_pending: u64::try_from(info.num_ack_pending).unwrap_or(0),
        redelivered: u64::try_from(info.num_redelivered).unwrap_or(0),
    }))
}

fn is_not_found(kind: ConsumerErrorKind) -> bool {
    matches!(
        kind,
        ConsumerErrorKind::JetStream(error)
            if error.error_code() == ErrorCode::CONSUMER_NOT_FOUND
                || error.error_code() == ErrorCode::STREAM_NOT_FOUND
    )
}
