//! How far behind the bus's consumers are, and whether the bus is reachable: what health checks
//! and the metrics endpoint report.

use async_nats::connection::State as ConnectionState;

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
    let jetstream = async_nats::jetstream::new(bus.client().clone());
    let stream = match jetstream
        .get_stream(bus.subjects().stream_name(service))
        .await
    {
        Ok(stream) => stream,
        Err(error) if error.to_string().contains("not found") => return Ok(None),
        Err(error) => return Err(BusError::nats("get stream", error)),
    };
    let info = match stream.consumer_info(name).await {
        Ok(info) => info,
        Err(error) if error.to_string().contains("not found") => return Ok(None),
        Err(error) => return Err(BusError::nats("consumer info", error)),
    };
    Ok(Some(ConsumerLag {
        pending: info.num_pending,
        ack_pending: u64::try_from(info.num_ack_pending).unwrap_or(0),
        redelivered: u64::try_from(info.num_redelivered).unwrap_or(0),
    }))
}
