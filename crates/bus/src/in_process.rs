//! The in-process bus of the embedded mode: JetStream's delivery semantics over a SQLite file.
//!
//! Messages are stored (deduplicated by message id, per stream) before a publish returns. Durable
//! consumers keep an acknowledgement floor on disk and their in-flight deliveries in memory, so after a
//! crash every unacknowledged message is delivered again: at-least-once, as with JetStream.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row};
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;

use crate::bus::{Acker, ConsumerConfig, Delivery, PublishAck};
use crate::envelope::BusMessage;
use crate::error::BusError;
use crate::subject::{Subjects, subject_matches};

/// Message ids looked up per statement when publishing.
const LOOKUP_CHUNK: usize = 500;
/// Rows per `INSERT` when publishing (6 parameters each, well under SQLite's limit).
const INSERT_CHUNK: usize = 150;

#[derive(Debug, Clone)]
pub struct InProcessBus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: SqlitePool,
    subjects: Subjects,
    published: watch::Sender<u64>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last_sequence: HashMap<String, u64>,
    consumers: HashMap<String, ConsumerState>,
}

#[derive(Debug)]
struct ConsumerState {
    config: ConsumerConfig,
    /// Every sequence at or below is acknowledged (or not for this consumer).
    ack_floor: u64,
    persisted_floor: u64,
    /// Highest sequence read from storage so far.
    read_up_to: u64,
    pending: BTreeMap<u64, Pending>,
    done_above_floor: BTreeSet<u64>,
}

#[derive(Debug)]
struct Pending {
    deliveries: u64,
    due: Instant,
}

impl ConsumerState {
    fn mark_done(&mut self, sequence: u64) {
        self.pending.remove(&sequence);
        if sequence > self.ack_floor {
            self.done_above_floor.insert(sequence);
        }
        while self.done_above_floor.remove(&(self.ack_floor + 1)) {
            self.ack_floor += 1;
        }
    }
}

impl InProcessBus {
    pub async fn open(url: &str, subjects: Subjects) -> Result<Self, BusError> {
        let in_memory = url.contains(":memory:");
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(if in_memory { 1 } else { 4 })
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/in_process").run(&pool).await?;
        let (published, _) = watch::channel(0);
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                subjects,
                published,
                state: Mutex::new(State::default()),
            }),
        })
    }

    pub fn subjects(&self) -> &Subjects {
        &self.inner.subjects
    }

    /// The stream a subject belongs to: its service token, `<prefix>.<service>.…`.
    fn stream_of<'a>(&self, subject: &'a str) -> Result<&'a str, BusError> {
        let mut tokens = subject.split('.');
        match (tokens.next(), tokens.next(), tokens.next()) {
            (Some(prefix), Some(service), Some(_)) if prefix == self.inner.subjects.prefix() => {
                Ok(service)
            }
            _ => Err(BusError::InvalidInput(format!(
                "subject '{subject}' is not on this bus: expected {}.<service>.<event>",
                self.inner.subjects.prefix()
            ))),
        }
    }

    /// Stores `messages` in one transaction: per stream, one lookup of the message ids already
    /// stored and multi-row inserts of the new ones (one statement per message made the relay into
    /// this bus, and so the embedded mode, slow).
    pub async fn publish_batch(
        &self,
        messages: &[BusMessage],
    ) -> Result<Vec<PublishAck>, BusError> {
        let mut streams = Vec::with_capacity(messages.len());
        let mut headers = Vec::with_capacity(messages.len());
        for message in messages {
            streams.push(self.stream_of(&message.subject)?);
            headers.push(
                serde_json::to_string(&message.headers).map_err(|e| {
                    BusError::InvalidInput(format!("headers cannot be stored: {e}"))
                })?,
            );
        }
        let mut state = self.inner.state.lock().await;
        let mut tx = self.inner.pool.begin().await?;
        let mut last_sequence = state.last_sequence.clone();
        // Message id → sequence, per stream: what is stored already, then what this batch adds.
        let mut known: HashMap<&str, HashMap<String, u64>> = HashMap::new();
        for stream in &streams {
            if known.contains_key(stream) {
                continue;
            }
            let ids: Vec<&str> = messages
                .iter()
                .zip(&streams)
                .filter(|(_, s)| *s == stream)
                .map(|(m, _)| m.message_id.as_str())
                .collect();
            let mut stored = HashMap::new();
            for chunk in ids.chunks(LOOKUP_CHUNK) {
                let placeholders = vec!["?"; chunk.len()].join(", ");
                let sql = format!(
                    "SELECT message_id, sequence FROM bus_messages \
                     WHERE stream = ? AND message_id IN ({placeholders})"
                );
                // Only placeholders are formatted in; every value is bound.
                let mut query =
                    sqlx::query_as::<_, (String, i64)>(AssertSqlSafe(sql)).bind(*stream);
                for id in chunk {
                    query = query.bind(*id);
                }
                for (id, sequence) in query.fetch_all(&mut *tx).await? {
                    stored.insert(id, u64::try_from(sequence).unwrap_or(0));
                }
            }
            if !last_sequence.contains_key(*stream) {
                let max: Option<i64> =
                    sqlx::query_scalar("SELECT max(sequence) FROM bus_messages WHERE stream = ?")
                        .bind(*stream)
                        .fetch_one(&mut *tx)
                        .await?;
                last_sequence.insert(
                    (*stream).to_owned(),
                    u64::try_from(max.unwrap_or(0)).unwrap_or(0),
                );
            }
            known.insert(stream, stored);
        }
        let mut acks = Vec::with_capacity(messages.len());
        let mut new_rows = Vec::new();
        for (index, (message, stream)) in messages.iter().zip(&streams).enumerate() {
            let ids = known.entry(stream).or_default();
            if let Some(sequence) = ids.get(message.message_id.as_str()) {
                acks.push(PublishAck {
                    sequence: *sequence,
                    duplicate: true,
                });
                continue;
            }
            let last = last_sequence.entry((*stream).to_owned()).or_insert(0);
            *last += 1;
            ids.insert(message.message_id.clone(), *last);
            acks.push(PublishAck {
                sequence: *last,
                duplicate: false,
            });
            new_rows.push((index, *last));
        }
        for chunk in new_rows.chunks(INSERT_CHUNK) {
            let rows = vec!["(?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
            let sql = format!(
                "INSERT INTO bus_messages (stream, sequence, subject, message_id, headers, payload) \
                 VALUES {rows}"
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (index, sequence) in chunk {
                let message = &messages[*index];
                query = query
                    .bind(streams[*index])
                    .bind(i64::try_from(*sequence).unwrap_or(i64::MAX))
                    .bind(&message.subject)
                    .bind(&message.message_id)
                    .bind(&headers[*index])
                    .bind(message.payload.as_ref());
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        // Only now is the batch durable; until here `state` kept the old sequences.
        state.last_sequence = last_sequence;
        drop(state);
        self.inner.published.send_modify(|n| *n = n.wrapping_add(1));
        Ok(acks)
    }

    pub async fn consumer(&self, config: ConsumerConfig) -> Result<InProcessConsumer, BusError> {
        let mut state = self.inner.state.lock().await;
        if let Some(existing) = state.consumers.get(&config.name) {
            if existing.config.service != config.service {
                return Err(BusError::InvalidInput(format!(
                    "consumer '{}' already consumes '{}', not '{}'",
                    config.name, existing.config.service, config.service
                )));
            }
        } else {
            sqlx::query(
                "INSERT INTO bus_consumers (name, stream, filter, ack_floor) VALUES (?, ?, ?, 0) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(&config.name)
            .bind(&config.service)
            .bind(&config.filter_subject)
            .execute(&self.inner.pool)
            .await?;
            let floor: i64 =
                sqlx::query_scalar("SELECT ack_floor FROM bus_consumers WHERE name = ?")
                    .bind(&config.name)
                    .fetch_one(&self.inner.pool)
                    .await?;
            let floor = u64::try_from(floor).unwrap_or(0);
            state.consumers.insert(
                config.name.clone(),
                ConsumerState {
                    config: config.clone(),
                    ack_floor: floor,
                    persisted_floor: floor,
                    read_up_to: floor,
                    pending: BTreeMap::new(),
                    done_above_floor: BTreeSet::new(),
                },
            );
        }
        Ok(InProcessConsumer {
            bus: self.clone(),
            config,
        })
    }

    pub async fn delete_stream(&self, service: &str) -> Result<(), BusError> {
        let mut state = self.inner.state.lock().await;
        sqlx::query("DELETE FROM bus_messages WHERE stream = ?")
            .bind(service)
            .execute(&self.inner.pool)
            .await?;
        sqlx::query("DELETE FROM bus_consumers WHERE stream = ?")
            .bind(service)
            .execute(&self.inner.pool)
            .await?;
        state.last_sequence.remove(service);
        state.consumers.retain(|_, c| c.config.service != service);
        Ok(())
    }

    /// Due redeliveries first, then new messages, for consumer `name`.
    async fn take(
        &self,
        name: &str,
        max: usize,
    ) -> Result<(Vec<Delivery>, Option<Instant>), BusError> {
        let mut state = self.inner.state.lock().await;
        let consumer = state.consumers.get_mut(name).ok_or_else(|| {
            BusError::InvalidInput(format!("consumer '{name}' was deleted with its stream"))
        })?;
        if consumer.ack_floor != consumer.persisted_floor {
            sqlx::query("UPDATE bus_consumers SET ack_floor = ? WHERE name = ?")
                .bind(i64::try_from(consumer.ack_floor).unwrap_or(i64::MAX))
                .bind(name)
                .execute(&self.inner.pool)
                .await?;
            consumer.persisted_floor = consumer.ack_floor;
        }
        let now = Instant::now();
        let ack_wait = consumer.config.ack_wait;
        let max_deliver = u64::from(consumer.config.max_deliver);
        let mut due = Vec::new();
        for (sequence, pending) in &mut consumer.pending {
            if due.len() >= max {
                break;
            }
            if pending.due <= now && pending.deliveries < max_deliver {
                pending.deliveries += 1;
                pending.due = now + ack_wait;
                due.push((*sequence, pending.deliveries));
            }
        }
        let mut deliveries = Vec::with_capacity(max);
        for (sequence, deliveries_so_far) in due {
            let row = sqlx::query(
                "SELECT subject, headers, payload FROM bus_messages WHERE stream = ? AND sequence = ?",
            )
            .bind(&consumer.config.service)
            .bind(i64::try_from(sequence).unwrap_or(i64::MAX))
            .fetch_optional(&self.inner.pool)
            .await?;
            if let Some(row) = row {
                deliveries.push(self.delivery(name, sequence, deliveries_so_far, &row)?);
            }
        }
        if deliveries.len() < max {
            let rows = sqlx::query(
                "SELECT sequence, subject, headers, payload FROM bus_messages \
                 WHERE stream = ? AND sequence > ? ORDER BY sequence LIMIT ?",
            )
            .bind(&consumer.config.service)
            .bind(i64::try_from(consumer.read_up_to).unwrap_or(i64::MAX))
            .bind(i64::try_from(max - deliveries.len()).unwrap_or(i64::MAX))
            .fetch_all(&self.inner.pool)
            .await?;
            for row in rows {
                let sequence = u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or(0);
                let subject: String = row.try_get(1)?;
                consumer.read_up_to = sequence;
                let wanted = consumer
                    .config
                    .filter_subject
                    .as_deref()
                    .is_none_or(|filter| subject_matches(filter, &subject));
                if wanted {
                    consumer.pending.insert(
                        sequence,
                        Pending {
                            deliveries: 1,
                            due: now + ack_wait,
                        },
                    );
                    deliveries.push(self.delivery_from_row(name, sequence, 1, subject, &row)?);
                } else {
                    consumer.mark_done(sequence);
                }
            }
        }
        let next_due = consumer
            .pending
            .values()
            .filter(|p| p.deliveries < max_deliver)
            .map(|p| p.due)
            .min();
        Ok((deliveries, next_due))
    }

    fn delivery(
        &self,
        consumer: &str,
        sequence: u64,
        delivery_count: u64,
        row: &sqlx::sqlite::SqliteRow,
    ) -> Result<Delivery, BusError> {
        let subject: String = row.try_get(0)?;
        let headers: String = row.try_get(1)?;
        let payload: Vec<u8> = row.try_get(2)?;
        self.build_delivery(
            consumer,
            sequence,
            delivery_count,
            subject,
            &headers,
            payload,
        )
    }

    fn delivery_from_row(
        &self,
        consumer: &str,
        sequence: u64,
        delivery_count: u64,
        subject: String,
        row: &sqlx::sqlite::SqliteRow,
    ) -> Result<Delivery, BusError> {
        let headers: String = row.try_get(2)?;
        let payload: Vec<u8> = row.try_get(3)?;
        self.build_delivery(
            consumer,
            sequence,
            delivery_count,
            subject,
            &headers,
            payload,
        )
    }

    fn build_delivery(
        &self,
        consumer: &str,
        sequence: u64,
        delivery_count: u64,
        subject: String,
        headers: &str,
        payload: Vec<u8>,
    ) -> Result<Delivery, BusError> {
        let headers = serde_json::from_str(headers).map_err(|e| BusError::Malformed {
            subject: subject.clone(),
            reason: format!("stored headers: {e}"),
        })?;
        Ok(Delivery {
            subject,
            headers,
            payload: Bytes::from(payload),
            delivery_count,
            sequence,
            acker: Acker::InProcess(InProcessAcker {
                bus: self.clone(),
                consumer: consumer.to_owned(),
                sequence,
            }),
        })
    }
}

/// A durable consumer of the in-process bus; clones with the same name share its deliveries.
#[derive(Debug)]
pub struct InProcessConsumer {
    bus: InProcessBus,
    config: ConsumerConfig,
}

impl InProcessConsumer {
    pub fn config(&self) -> &ConsumerConfig {
        &self.config
    }

    pub async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        let deadline = Instant::now() + wait;
        loop {
            // Subscribe before looking, so a publish in between still wakes us.
            let mut published = self.bus.inner.published.subscribe();
            let (deliveries, next_due) = self.bus.take(&self.config.name, max).await?;
            if !deliveries.is_empty() {
                return Ok(deliveries);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let until = next_due.map_or(deadline, |due| due.min(deadline));
            let _ = tokio::time::timeout_at(until, published.changed()).await;
        }
    }
}

/// Acknowledges one in-process delivery.
#[derive(Debug)]
pub struct InProcessAcker {
    bus: InProcessBus,
    consumer: String,
    sequence: u64,
}

impl InProcessAcker {
    pub(crate) async fn ack(&self) {
        let mut state = self.bus.inner.state.lock().await;
        if let Some(consumer) = state.consumers.get_mut(&self.consumer) {
            consumer.mark_done(self.sequence);
        }
    }

    pub(crate) async fn nak(&self, delay: Duration) {
        let mut state = self.bus.inner.state.lock().await;
        if let Some(pending) = state
            .consumers
            .get_mut(&self.consumer)
            .and_then(|c| c.pending.get_mut(&self.sequence))
        {
            pending.due = Instant::now() + delay;
        }
        drop(state);
        // Wake fetchers so they re-plan around the new due time.
        self.bus
            .inner
            .published
            .send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl InProcessBus {
    /// The backlog of consumer `name` (see [`crate::ConsumerLag`]); None if it was never bound.
    pub async fn consumer_lag(&self, name: &str) -> Result<Option<crate::ConsumerLag>, BusError> {
        let bound = {
            let state = self.inner.state.lock().await;
            state.consumers.get(name).map(|consumer| {
                let redelivered = consumer
                    .pending
                    .values()
                    .filter(|pending| pending.deliveries > 1)
                    .count() as u64;
                (
                    consumer.ack_floor,
                    consumer.done_above_floor.len() as u64,
                    consumer.pending.len() as u64,
                    redelivered,
                )
            })
        };
        let stored: Option<(String, Option<String>, i64)> =
            sqlx::query_as("SELECT stream, filter, ack_floor FROM bus_consumers WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.inner.pool)
                .await?;
        let Some((stream, filter, stored_floor)) = stored else {
            return Ok(None);
        };
        // Not bound in this process: only the stored floor tells.
        let (floor, done_above_floor, ack_pending, redelivered) =
            bound.unwrap_or((u64::try_from(stored_floor).unwrap_or(0), 0, 0, 0));
        let floor = i64::try_from(floor).unwrap_or(i64::MAX);
        // Patchbay filters on exact subjects; a wildcard filter counts the whole stream.
        let exact = filter.filter(|f| !f.contains('*') && !f.contains('>'));
        let above_floor: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM bus_messages \
             WHERE stream = ? AND sequence > ? AND (? IS NULL OR subject = ?)",
        )
        .bind(&stream)
        .bind(floor)
        .bind(&exact)
        .bind(&exact)
        .fetch_one(&self.inner.pool)
        .await?;
        let unhandled = u64::try_from(above_floor)
            .unwrap_or(0)
            .saturating_sub(done_above_floor);
        Ok(Some(crate::ConsumerLag {
            pending: unhandled.saturating_sub(ack_pending),
            ack_pending,
            redelivered,
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn message(stream: &str, id: &str) -> BusMessage {
        BusMessage {
            subject: format!("patchbay.{stream}.Something"),
            message_id: id.to_owned(),
            headers: vec![("k".into(), "v".into())],
            payload: Bytes::from(id.as_bytes().to_vec()),
        }
    }

    #[tokio::test]
    async fn a_batch_numbers_each_stream_and_acks_repeated_ids_as_duplicates() {
        let bus = InProcessBus::open("sqlite::memory:", Subjects::default())
            .await
            .unwrap();
        let first = bus
            .publish_batch(&[
                message("catalog", "a"),
                message("scanning", "x"),
                message("catalog", "b"),
                // The same id twice in one batch: stored once.
                message("catalog", "a"),
            ])
            .await
            .unwrap();
        let numbered: Vec<(u64, bool)> = first.iter().map(|a| (a.sequence, a.duplicate)).collect();
        assert_eq!(numbered, [(1, false), (1, false), (2, false), (1, true)]);
        // Ids stored by an earlier batch are duplicates; new ones go on from the last sequence.
        let second = bus
            .publish_batch(&[message("catalog", "b"), message("catalog", "c")])
            .await
            .unwrap();
        let numbered: Vec<(u64, bool)> = second.iter().map(|a| (a.sequence, a.duplicate)).collect();
        assert_eq!(numbered, [(2, true), (3, false)]);
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM bus_messages")
            .fetch_one(&bus.inner.pool)
            .await
            .unwrap();
        assert_eq!(stored, 4);
    }
}
