//! In-memory read models rebuilt from a service's own log and kept current by following it.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio_util::sync::CancellationToken;

use crate::error::EventStoreError;
use crate::event::{LogPosition, RecordedEvent};
use crate::store::EventStore;

/// A read model: folds the log's events, in global order, into state.
pub trait Projection: Default + Send + Sync + 'static {
    type Error: std::error::Error + Send + Sync + 'static;
    fn apply(&mut self, event: &RecordedEvent) -> Result<(), Self::Error>;
}

/// Why a view could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum ViewError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Store(#[from] EventStoreError),
    #[error("the log holds an event this read model cannot apply: {0}")]
    Apply(#[source] E),
}

/// A projection together with the log position it has applied up to.
#[derive(Debug, Default)]
pub struct Positioned<P> {
    projection: P,
    position: LogPosition,
}

impl<P> Positioned<P> {
    pub fn position(&self) -> LogPosition {
        self.position
    }
}

impl<P> Deref for Positioned<P> {
    type Target = P;
    fn deref(&self) -> &P {
        &self.projection
    }
}

impl<P> DerefMut for Positioned<P> {
    fn deref_mut(&mut self) -> &mut P {
        &mut self.projection
    }
}

/// A projection shared by a service's tasks: rebuilt from the log on open, then caught up before
/// commands decide against it and followed in the background. Cheap to clone.
#[derive(Debug)]
pub struct LiveView<P> {
    store: EventStore,
    state: Arc<RwLock<Positioned<P>>>,
    /// Tells waiters (e.g. a planner, a job stream) that the view moved on.
    changed: Arc<tokio::sync::watch::Sender<LogPosition>>,
}

impl<P> Clone for LiveView<P> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            state: Arc::clone(&self.state),
            changed: Arc::clone(&self.changed),
        }
    }
}

/// Events read per catch-up step.
const PAGE: usize = 10_000;

impl<P: Projection> LiveView<P> {
    /// Replays the whole log into a fresh projection.
    pub async fn open(store: EventStore) -> Result<Self, ViewError<P::Error>> {
        let view = Self {
            store,
            state: Arc::default(),
            changed: Arc::new(tokio::sync::watch::Sender::new(LogPosition::START)),
        };
        view.catch_up().await?;
        Ok(view)
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Positioned<P>> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// A receiver that is marked changed whenever the view applies new events.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<LogPosition> {
        self.changed.subscribe()
    }

    fn write(&self) -> RwLockWriteGuard<'_, Positioned<P>> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies every event the view has not seen yet.
    ///
    /// Reads through [`EventStore::replay`], so a rebuild applies one page while the next is read.
    pub async fn catch_up(&self) -> Result<(), ViewError<P::Error>> {
        let position = self.read().position;
        let mut replay = self.store.replay(position, PAGE);
        while let Some(events) = replay.next_page().await? {
            self.apply_new(&events)?;
        }
        Ok(())
    }

    /// Catches up until `reached` holds or `timeout` passes; returns whether it held. On PostgreSQL a
    /// transaction left open elsewhere on the server holds the global order back for a while, so a
    /// command that must see a write it knows is committed waits here rather than decide on old state.
    pub async fn catch_up_until(
        &self,
        reached: impl Fn(&P) -> bool,
        timeout: std::time::Duration,
    ) -> Result<bool, ViewError<P::Error>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = std::time::Duration::from_millis(2);
        loop {
            self.catch_up().await?;
            if reached(&self.read()) {
                return Ok(true);
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Ok(false);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_millis(100));
        }
    }

    /// Follows the log (writes by other replicas, consumers) until `shutdown`.
    pub async fn follow(self, shutdown: CancellationToken) -> Result<(), ViewError<P::Error>> {
        let mut subscription = self
            .store
            .subscribe_at("live-view", self.read().position, PAGE);
        loop {
            let events = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                events = subscription.next_batch() => events?,
            };
            self.apply_new(&events)?;
        }
    }

    /// Applies the events after the view's position; another task may have applied some already.
    fn apply_new(&self, events: &[RecordedEvent]) -> Result<(), ViewError<P::Error>> {
        let position = {
            let mut state = self.write();
            for event in events {
                if event.position > state.position {
                    state.projection.apply(event).map_err(ViewError::Apply)?;
                    state.position = event.position;
                }
            }
            state.position
        };
        self.changed.send_if_modified(|seen| {
            let moved = position > *seen;
            *seen = position.max(*seen);
            moved
        });
        Ok(())
    }
}
