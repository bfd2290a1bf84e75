//! `Bus`: one API over NATS JetStream and the in-process bus, with at-least-once delivery.

use std::time::Duration;

use bytes::Bytes;

use crate::envelope::{BusMessage, header};
use crate::error::BusError;
use crate::in_process::{InProcessBus, InProcessConsumer};
use crate::nats::{NatsBus, NatsConsumer, NatsPendingAcks};
use crate::subject::{Subjects, validate_token};

/// The message bus services talk through. Cheap to clone.
#[derive(Debug, Clone)]
pub enum Bus {
    Nats(Box<NatsBus>),
    InProcess(InProcessBus),
}

/// What a durable consumer receives and how redelivery works.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Durable name; replicas with the same name share the work.
    pub name: String,
    /// The producing service whose stream is consumed.
    pub service: String,
    /// One subject filter (nats-server 2.9 allows one); `None` takes the whole stream.
    pub filter_subject: Option<String>,
    /// Deliveries of one message before the bus stops redelivering it.
    pub max_deliver: u32,
    /// How long a delivered message may stay unacknowledged before it is delivered again.
    pub ack_wait: Duration,
}

impl ConsumerConfig {
    /// A consumer of every event `service` publishes, with redelivery defaults.
    pub fn new(name: &str, service: &str) -> Self {
        Self {
            name: name.to_owned(),
            service: service.to_owned(),
            filter_subject: None,
            max_deliver: 5,
            ack_wait: Duration::from_secs(30),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), BusError> {
        validate_token("consumer name", &self.name)?;
        validate_token("service name", &self.service)?;
        if self.max_deliver == 0 {
            return Err(BusError::InvalidInput(format!(
                "consumer '{}' has max_deliver 0; it must be at least 1",
                self.name
            )));
        }
        Ok(())
    }
}

/// A published message's place in its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishAck {
    pub sequence: u64,
    /// True when the bus already had this message id and stored nothing.
    pub duplicate: bool,
}

/// The acknowledgements of a batch sent with [`Bus::send_batch`], possibly still on their way.
#[derive(Debug)]
pub struct PendingAcks(Pending);

#[derive(Debug)]
enum Pending {
    Nats(NatsPendingAcks),
    Stored(Vec<PublishAck>),
}

impl PendingAcks {
    /// Every message's ack, in message order. On error some messages may be stored, and others
    /// not; publishing the batch again is safe (deduplicated by id).
    pub async fn wait(self) -> Result<Vec<PublishAck>, BusError> {
        match self.0 {
            Pending::Nats(pending) => pending.wait().await,
            Pending::Stored(acks) => Ok(acks),
        }
    }
}

impl Bus {
    /// The in-process bus stored in the SQLite file at `url` (`sqlite::memory:` keeps nothing).
    pub async fn in_process(url: &str, subjects: Subjects) -> Result<Self, BusError> {
        Ok(Bus::InProcess(InProcessBus::open(url, subjects).await?))
    }

    /// NATS JetStream at `url`.
    pub async fn nats(url: &str, subjects: Subjects) -> Result<Self, BusError> {
        Ok(Bus::Nats(Box::new(NatsBus::connect(url, subjects).await?)))
    }

    pub fn subjects(&self) -> &Subjects {
        match self {
            Bus::Nats(bus) => bus.subjects(),
            Bus::InProcess(bus) => bus.subjects(),
        }
    }

    /// Creates the stream of `service` (`<prefix>.<service>.>`) if it does not exist.
    pub async fn ensure_stream(&self, service: &str) -> Result<(), BusError> {
        validate_token("service name", service)?;
        match self {
            Bus::Nats(bus) => bus.ensure_stream(service).await,
            Bus::InProcess(_) => Ok(()),
        }
    }

    /// Publishes every message and waits until the bus has stored each one (or knew it already).
    /// On error some messages may be stored; publishing them again is safe (deduplicated by id).
    pub async fn publish_batch(
        &self,
        messages: &[BusMessage],
    ) -> Result<Vec<PublishAck>, BusError> {
        match self {
            Bus::Nats(bus) => bus.publish_batch(messages).await,
            Bus::InProcess(bus) => bus.publish_batch(messages).await,
        }
    }

    /// Sends every message without waiting for the bus to store them: await [`PendingAcks::wait`]
    /// for that. Lets a publisher prepare its next batch while this one's acks are on their way. The
    /// in-process bus stores the batch before it returns.
    pub async fn send_batch(&self, messages: &[BusMessage]) -> Result<PendingAcks, BusError> {
        Ok(PendingAcks(match self {
            Bus::Nats(bus) => Pending::Nats(bus.send_batch(messages).await?),
            Bus::InProcess(bus) => Pending::Stored(bus.publish_batch(messages).await?),
        }))
    }

    /// Binds to (creating if needed) the durable consumer described by `config`.
    pub async fn consumer(&self, config: ConsumerConfig) -> Result<BusConsumer, BusError> {
        config.validate()?;
        Ok(match self {
            Bus::Nats(bus) => BusConsumer::Nats(Box::new(bus.consumer(config).await?)),
            Bus::InProcess(bus) => BusConsumer::InProcess(bus.consumer(config).await?),
        })
    }

    /// Deletes `service`'s stream and its consumers (tests and `admin` tooling).
    pub async fn delete_stream(&self, service: &str) -> Result<(), BusError> {
        match self {
            Bus::Nats(bus) => bus.delete_stream(service).await,
            Bus::InProcess(bus) => bus.delete_stream(service).await,
        }
    }
}

/// A bound durable consumer.
#[derive(Debug)]
pub enum BusConsumer {
    Nats(Box<NatsConsumer>),
    InProcess(InProcessConsumer),
}

impl BusConsumer {
    /// Up to `max` messages, waiting at most `wait` for the first one; empty when none came.
    pub async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        match self {
            BusConsumer::Nats(consumer) => consumer.fetch(max.max(1), wait).await,
            BusConsumer::InProcess(consumer) => consumer.fetch(max.max(1), wait).await,
        }
    }

    pub fn config(&self) -> &ConsumerConfig {
        match self {
            BusConsumer::Nats(consumer) => consumer.config(),
            BusConsumer::InProcess(consumer) => consumer.config(),
        }
    }
}

/// One delivery of a message to a consumer. Must be acked, nak'd or terminated.
#[derive(Debug)]
pub struct Delivery {
    pub subject: String,
    pub headers: Vec<(String, String)>,
    pub payload: Bytes,
    /// 1 on first delivery.
    pub delivery_count: u64,
    /// Position in the stream.
    pub sequence: u64,
    pub(crate) acker: Acker,
}

pub(crate) enum Acker {
    Nats(Box<async_nats::jetstream::message::Acker>),
    InProcess(crate::in_process::InProcessAcker),
}

impl std::fmt::Debug for Acker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Acker::Nats(_) => f.write_str("Acker::Nats"),
            Acker::InProcess(acker) => acker.fmt(f),
        }
    }
}

impl Delivery {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Done: never deliver again.
    pub async fn ack(&self) -> Result<(), BusError> {
        match &self.acker {
            Acker::Nats(acker) => acker.ack().await.map_err(|e| BusError::nats("ack", e)),
            Acker::InProcess(acker) => {
                acker.ack().await;
                Ok(())
            }
        }
    }

    /// Not now: deliver again after `delay` (counts as a delivery attempt).
    pub async fn nak(&self, delay: Duration) -> Result<(), BusError> {
        match &self.acker {
            Acker::Nats(acker) => acker
                .ack_with(async_nats::jetstream::AckKind::Nak(Some(delay)))
                .await
                .map_err(|e| BusError::nats("nak", e)),
            Acker::InProcess(acker) => {
                acker.nak(delay).await;
                Ok(())
            }
        }
    }

    /// Never deliver again, without success (used after dead-lettering).
    pub async fn term(&self) -> Result<(), BusError> {
        match &self.acker {
            Acker::Nats(acker) => acker
                .ack_with(async_nats::jetstream::AckKind::Term)
                .await
                .map_err(|e| BusError::nats("term", e)),
            Acker::InProcess(acker) => {
                acker.ack().await;
                Ok(())
            }
        }
    }

    /// The message as it would be published again, e.g. to the dead-letter stream.
    pub fn to_message(&self, subject: String, message_id: String) -> BusMessage {
        BusMessage {
            subject,
            message_id,
            headers: self.headers.clone(),
            payload: self.payload.clone(),
        }
    }
}
