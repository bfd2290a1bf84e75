//! The NATS JetStream backend: a stream per service, `Nats-Msg-Id` dedupe, durable pull consumers.

use std::collections::VecDeque;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer::pull, stream};
use futures_util::StreamExt;

use crate::bus::{Acker, ConsumerConfig, Delivery, PublishAck};
use crate::envelope::{BusMessage, MESSAGE_ID};
use crate::error::BusError;
use crate::subject::{DEAD_LETTER_SERVICE, Subjects, validate_token};

/// How long JetStream remembers message ids for dedupe. Beyond it, consumers' inboxes dedupe.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Unacknowledged publishes one batch may have outstanding. async-nats holds a permit per unacked
/// publish (5,000 per context) until its ack is awaited, and waits for a free one: a bigger batch
/// would wait on itself forever. Half of that lets the relay keep two batches in flight.
const MAX_UNACKED_PER_BATCH: usize = 2_500;

#[derive(Debug, Clone)]
pub struct NatsBus {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    subjects: Subjects,
}

impl NatsBus {
    pub async fn connect(url: &str, subjects: Subjects) -> Result<Self, BusError> {
        let client = async_nats::ConnectOptions::new()
            .name("patchbay")
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| BusError::nats("connect", format!("{url}: {e}")))?;
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(10))
            .build(client.clone());
        let bus = Self {
            client,
            jetstream,
            subjects,
        };
        bus.ensure_stream(DEAD_LETTER_SERVICE).await?;
        Ok(bus)
    }

    pub fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    /// The JetStream context, for the consumer backlog health checks ask for.
    pub(crate) fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    /// The raw client, for benchmarks that compare the relay with plain publishing.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub async fn ensure_stream(&self, service: &str) -> Result<(), BusError> {
        validate_token("service name", service)?;
        self.jetstream
            .get_or_create_stream(stream::Config {
                name: self.subjects.stream_name(service),
                subjects: vec![self.subjects.service_wildcard(service)],
                storage: stream::StorageType::File,
                duplicate_window: DUPLICATE_WINDOW,
                ..Default::default()
            })
            .await
            .map_err(|e| BusError::nats("create stream", e))?;
        Ok(())
    }

    pub async fn delete_stream(&self, service: &str) -> Result<(), BusError> {
        match self
            .jetstream
            .delete_stream(self.subjects.stream_name(service))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("not found") => Ok(()),
            Err(e) => Err(BusError::nats("delete stream", e)),
        }
    }

    /// Sends every message first, then awaits the acks: publishing is pipelined, not one round trip each.
    pub async fn publish_batch(
        &self,
        messages: &[BusMessage],
    ) -> Result<Vec<PublishAck>, BusError> {
        self.send_batch(messages).await?.wait().await
    }

    /// Sends every message and returns their acks still on the way, so the caller can prepare the
    /// next batch meanwhile. Keeps at most `MAX_UNACKED_PER_BATCH` of them outstanding.
    pub(crate) async fn send_batch(
        &self,
        messages: &[BusMessage],
    ) -> Result<NatsPendingAcks, BusError> {
        let mut batch = NatsPendingAcks {
            acked: Vec::with_capacity(messages.len()),
            pending: VecDeque::with_capacity(messages.len().min(MAX_UNACKED_PER_BATCH)),
        };
        for message in messages {
            if batch.pending.len() >= MAX_UNACKED_PER_BATCH {
                batch.await_oldest().await?;
            }
            let mut headers = HeaderMap::new();
            for (name, value) in &message.headers {
                headers.insert(name.as_str(), value.as_str());
            }
            headers.insert(MESSAGE_ID, message.message_id.as_str());
            let publish = jetstream::message::PublishMessage::build()
                .payload(message.payload.clone())
                .headers(headers);
            let ack = self
                .jetstream
                .send_publish(message.subject.clone(), publish)
                .await
                .map_err(|e| BusError::nats("publish", e))?;
            batch.pending.push_back(ack);
        }
        Ok(batch)
    }

    pub async fn consumer(&self, config: ConsumerConfig) -> Result<NatsConsumer, BusError> {
        let stream = self
            .jetstream
            .get_stream(self.subjects.stream_name(&config.service))
            .await
            .map_err(|e| BusError::nats("get stream", format!("{}: {e}", config.service)))?;
        let consumer = stream
            .get_or_create_consumer(
                &config.name,
                pull::Config {
                    durable_name: Some(config.name.clone()),
                    filter_subject: config.filter_subject.clone().unwrap_or_default(),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: config.ack_wait,
                    max_deliver: i64::from(config.max_deliver),
                    deliver_policy: jetstream::consumer::DeliverPolicy::All,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| BusError::nats("create consumer", e))?;
        Ok(NatsConsumer { consumer, config })
    }
}

/// A sent batch's acks: those already awaited, then those still on their way, in message order.
#[derive(Debug)]
pub(crate) struct NatsPendingAcks {
    acked: Vec<PublishAck>,
    pending: VecDeque<jetstream::context::PublishAckFuture>,
}

impl NatsPendingAcks {
    async fn await_oldest(&mut self) -> Result<(), BusError> {
        if let Some(ack) = self.pending.pop_front() {
            let ack = ack.await.map_err(|e| BusError::nats("publish ack", e))?;
            self.acked.push(PublishAck {
                sequence: ack.sequence,
                duplicate: ack.duplicate,
            });
        }
        Ok(())
    }

    /// Every ack of the batch, in message order; the first failure ends the wait.
    pub(crate) async fn wait(mut self) -> Result<Vec<PublishAck>, BusError> {
        while !self.pending.is_empty() {
            self.await_oldest().await?;
        }
        Ok(self.acked)
    }
}

#[derive(Debug)]
pub struct NatsConsumer {
    consumer: jetstream::consumer::Consumer<pull::Config>,
    config: ConsumerConfig,
}

impl NatsConsumer {
    pub fn config(&self) -> &ConsumerConfig {
        &self.config
    }

    pub async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        let mut batch = self
            .consumer
            .fetch()
            .max_messages(max)
            // The server needs a little time to answer a pull at all.
            .expires(wait.max(Duration::from_millis(10)))
            .messages()
            .await
            .map_err(|e| BusError::nats("fetch", e))?;
        let mut deliveries = Vec::new();
        while let Some(message) = batch.next().await {
            let message = message.map_err(|e| BusError::nats("fetch", e))?;
            let (delivery_count, sequence) = message
                .info()
                .map(|info| {
                    (
                        u64::try_from(info.delivered).unwrap_or(1),
                        info.stream_sequence,
                    )
                })
                .map_err(|e| BusError::nats("message info", e))?;
            let (message, acker) = message.split();
            let headers = message
                .headers
                .iter()
                .flat_map(|headers| headers.iter())
                .flat_map(|(name, values)| {
                    values
                        .iter()
                        .map(move |value| (name.to_string(), value.as_str().to_owned()))
                })
                .collect();
            deliveries.push(Delivery {
                subject: message.subject.to_string(),
                headers,
                payload: message.payload,
                delivery_count,
                sequence,
                acker: Acker::Nats(Box::new(acker)),
            });
        }
        Ok(deliveries)
    }
}
