//! The catalog service shell: commands in, events appended, the in-memory view kept current.

use std::sync::RwLockReadGuard;

use patchbay_eventstore::{
    EventStore, EventStoreError, ExpectedVersion, LiveView, NewEvent, Positioned, ViewError,
};
use patchbay_proto::catalog::v1 as pb;
use tokio_util::sync::CancellationToken;

use crate::domain::{CatalogError, CveId, UpdateCommand, UpdateId, decide, decide_vulnerability};
use crate::events::{CatalogEvent, DecodeError};
use crate::view::CatalogView;

/// Events appended per transaction during an import.
const IMPORT_CHUNK: usize = 1_000;
/// Retries of a chunk whose streams moved on under it (another replica wrote them).
const CONFLICT_RETRIES: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum CatalogServiceError {
    #[error(transparent)]
    Domain(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] EventStoreError),
    #[error("the catalog log holds an event this Patchbay cannot read: {0}")]
    Decode(#[from] DecodeError),
}

impl From<ViewError<DecodeError>> for CatalogServiceError {
    fn from(error: ViewError<DecodeError>) -> Self {
        match error {
            ViewError::Store(error) => CatalogServiceError::Store(error),
            ViewError::Apply(error) => CatalogServiceError::Decode(error),
        }
    }
}

/// What an import did, per item.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportOutcome {
    pub published: u64,
    pub revised: u64,
    pub unchanged: u64,
    /// `(item index, why it was refused)`.
    pub rejected: Vec<(usize, String)>,
}

/// The catalog service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Catalog {
    view: LiveView<CatalogView>,
}

impl Catalog {
    /// Opens the catalog on its store and rebuilds the view from the log.
    pub async fn open(store: EventStore) -> Result<Self, CatalogServiceError> {
        Ok(Self {
            view: LiveView::open(store).await?,
        })
    }

    pub fn store(&self) -> &EventStore {
        self.view.store()
    }

    pub fn view(&self) -> RwLockReadGuard<'_, Positioned<CatalogView>> {
        self.view.read()
    }

    /// Applies every event the view has not seen yet.
    pub async fn catch_up(&self) -> Result<(), CatalogServiceError> {
        Ok(self.view.catch_up().await?)
    }

    /// Catches up until `reached` holds or `timeout` passes; returns whether it held.
    pub async fn catch_up_until(
        &self,
        reached: impl Fn(&CatalogView) -> bool,
        timeout: std::time::Duration,
    ) -> Result<bool, CatalogServiceError> {
        Ok(self.view.catch_up_until(reached, timeout).await?)
    }

    /// Keeps the view following the log (other replicas' writes) until `shutdown`.
    pub async fn follow(self, shutdown: CancellationToken) -> Result<(), CatalogServiceError> {
        Ok(self.view.follow(shutdown).await?)
    }

    /// Publishes (or revises) each update; identical re-imports append nothing. Items the domain
    /// refuses are reported in `rejected`; the others are stored.
    pub async fn publish_updates(
        &self,
        items: Vec<(UpdateId, pb::UpdateDetails)>,
        actor: &str,
    ) -> Result<ImportOutcome, CatalogServiceError> {
        self.catch_up().await?;
        let mut outcome = ImportOutcome::default();
        for (chunk_index, chunk) in items.chunks(IMPORT_CHUNK).enumerate() {
            let mut attempt = 0;
            loop {
                match self
                    .publish_chunk(chunk, chunk_index * IMPORT_CHUNK, actor)
                    .await
                {
                    Ok(chunk_outcome) => {
                        outcome.published += chunk_outcome.published;
                        outcome.revised += chunk_outcome.revised;
                        outcome.unchanged += chunk_outcome.unchanged;
                        outcome.rejected.extend(chunk_outcome.rejected);
                        break;
                    }
                    Err(CatalogServiceError::Store(EventStoreError::Conflict { .. }))
                        if attempt < CONFLICT_RETRIES =>
                    {
                        // Another writer got there first, or the view is held back by a transaction
                        // elsewhere on the database server: give it a moment, catch up, decide again.
                        attempt += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(20 << attempt)).await;
                        self.catch_up().await?;
                    }
                    Err(error) => return Err(error),
                }
            }
        }
        self.catch_up().await?;
        Ok(outcome)
    }

    async fn publish_chunk(
        &self,
        chunk: &[(UpdateId, pb::UpdateDetails)],
        first_index: usize,
        actor: &str,
    ) -> Result<ImportOutcome, CatalogServiceError> {
        let mut outcome = ImportOutcome::default();
        let mut appends = Vec::new();
        {
            let view = self.view();
            for (offset, (id, details)) in chunk.iter().enumerate() {
                let entry = view.updates.get(id.as_str()).cloned().unwrap_or_default();
                let command = UpdateCommand::Publish {
                    id: id.clone(),
                    details: Box::new(details.clone()),
                };
                match decide(&entry.state, command) {
                    Ok(events) if events.is_empty() => outcome.unchanged += 1,
                    Ok(events) => {
                        if matches!(events[0], CatalogEvent::UpdatePublished(_)) {
                            outcome.published += 1;
                        } else {
                            outcome.revised += 1;
                        }
                        appends.push((
                            id.stream_id(),
                            entry.stream_version,
                            to_new_events(&events, actor),
                        ));
                    }
                    Err(error) => outcome
                        .rejected
                        .push((first_index + offset, error.to_string())),
                }
            }
        }
        self.append_all(appends).await?;
        Ok(outcome)
    }

    /// Publishes each vulnerability record that is new or changed.
    pub async fn publish_vulnerabilities(
        &self,
        records: Vec<pb::VulnerabilityPublished>,
        actor: &str,
    ) -> Result<ImportOutcome, CatalogServiceError> {
        self.catch_up().await?;
        let mut outcome = ImportOutcome::default();
        let mut appends = Vec::new();
        {
            let view = self.view();
            for (index, record) in records.into_iter().enumerate() {
                let cve = match CveId::parse(&record.cve_id) {
                    Ok(cve) => cve,
                    Err(error) => {
                        outcome.rejected.push((index, error.to_string()));
                        continue;
                    }
                };
                let (state, version) = view
                    .vulnerabilities
                    .get(cve.as_str())
                    .cloned()
                    .unwrap_or_default();
                let events = decide_vulnerability(&state, record);
                if events.is_empty() {
                    outcome.unchanged += 1;
                } else {
                    if version == 0 {
                        outcome.published += 1
                    } else {
                        outcome.revised += 1
                    }
                    appends.push((cve.stream_id(), version, to_new_events(&events, actor)));
                }
            }
        }
        for chunk in appends.chunks(IMPORT_CHUNK) {
            self.append_all(chunk.to_vec()).await?;
        }
        self.catch_up().await?;
        Ok(outcome)
    }

    /// Appends every stream's events in one transaction, each at the version the view knew.
    async fn append_all(
        &self,
        appends: Vec<(String, u64, Vec<NewEvent>)>,
    ) -> Result<(), CatalogServiceError> {
        if appends.is_empty() {
            return Ok(());
        }
        let mut tx = self.store().begin().await?;
        for (stream, version, events) in &appends {
            let expected = if *version == 0 {
                ExpectedVersion::NoStream
            } else {
                ExpectedVersion::Exact(*version)
            };
            if let Err(error) = tx.append(stream, expected, events).await {
                tx.rollback().await?;
                return Err(error.into());
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

fn to_new_events(events: &[CatalogEvent], actor: &str) -> Vec<NewEvent> {
    events
        .iter()
        .map(|event| patchbay_bus::stamped(event.to_new_event(), actor))
        .collect()
}
