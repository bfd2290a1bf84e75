//! Catch-up + live subscriptions to a service's global order, with durable checkpoints.

use std::time::Duration;

use tokio::sync::watch;

use crate::error::EventStoreError;
use crate::event::{LogPosition, RecordedEvent};
use crate::store::{EventStore, Transaction};

/// Longest wait between polls when nothing wakes the subscription.
const IDLE_POLL: Duration = Duration::from_millis(250);
/// First re-poll after a wake-up that found nothing visible yet (an earlier transaction still open).
const HIDDEN_RETRY: Duration = Duration::from_millis(2);
/// Longest pause between re-polls while events stay hidden: on a busy server some transaction is
/// almost always open, and backing off further would add its whole length to delivery latency.
const HIDDEN_RETRY_MAX: Duration = Duration::from_millis(10);

/// Reads the log from a saved checkpoint to the end, then waits for new events.
///
/// `next_batch` advances the in-memory position; `commit` (or `commit_in` a transaction) makes it
/// durable. A subscriber that fails before committing calls `rewind` and sees the events again.
#[derive(Debug)]
pub struct Subscription {
    store: EventStore,
    name: String,
    position: LogPosition,
    committed: LogPosition,
    batch_size: usize,
    wake: watch::Receiver<u64>,
}

impl Subscription {
    pub(crate) fn new(
        store: EventStore,
        name: String,
        position: LogPosition,
        batch_size: usize,
        wake: watch::Receiver<u64>,
    ) -> Self {
        Self {
            store,
            name,
            position,
            committed: position,
            batch_size,
            wake,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The position after the last event returned.
    pub fn position(&self) -> LogPosition {
        self.position
    }

    /// The last durably saved position.
    pub fn committed(&self) -> LogPosition {
        self.committed
    }

    /// Events after the current position, or None if none are visible now.
    pub async fn try_next_batch(&mut self) -> Result<Option<Vec<RecordedEvent>>, EventStoreError> {
        self.wake.borrow_and_update();
        let events = self.store.read_all(self.position, self.batch_size).await?;
        Ok(match events.last() {
            Some(last) => {
                self.position = last.position;
                Some(events)
            }
            None => None,
        })
    }

    /// The next events after the current position, waiting until there are some.
    pub async fn next_batch(&mut self) -> Result<Vec<RecordedEvent>, EventStoreError> {
        let mut hidden_retry = None;
        loop {
            if let Some(events) = self.try_next_batch().await? {
                return Ok(events);
            }
            // After a wake-up that found nothing, the new events sit behind a transaction that is
            // still open (PostgreSQL): re-poll quickly, backing off a little.
            let wait = hidden_retry.unwrap_or(IDLE_POLL);
            match tokio::time::timeout(wait, self.wake.changed()).await {
                Ok(Ok(())) => hidden_retry = Some(HIDDEN_RETRY),
                Ok(Err(_)) => tokio::time::sleep(wait).await,
                Err(_) => hidden_retry = hidden_retry.map(|d| (d * 2).min(HIDDEN_RETRY_MAX)),
            }
        }
    }

    /// Saves the current position as the checkpoint.
    pub async fn commit(&mut self) -> Result<(), EventStoreError> {
        self.store
            .save_checkpoint(&self.name, self.position)
            .await?;
        self.committed = self.position;
        Ok(())
    }

    /// Saves `position` (at or before the current one) as the checkpoint.
    pub async fn commit_at(&mut self, position: LogPosition) -> Result<(), EventStoreError> {
        self.store.save_checkpoint(&self.name, position).await?;
        self.committed = position;
        Ok(())
    }

    /// Saves the current position inside `tx`; call `committed_in` after `tx` commits.
    pub async fn commit_in(&self, tx: &mut Transaction) -> Result<(), EventStoreError> {
        tx.save_checkpoint(&self.name, self.position).await
    }

    /// Records that the transaction passed to `commit_in` has committed.
    pub fn committed_in(&mut self) {
        self.committed = self.position;
    }

    /// Goes back to the last committed position, to see uncommitted events again.
    pub fn rewind(&mut self) {
        self.position = self.committed;
    }

    /// Events stored after the committed checkpoint.
    pub async fn lag(&self) -> Result<u64, EventStoreError> {
        self.store.count_after(self.committed).await
    }
}
