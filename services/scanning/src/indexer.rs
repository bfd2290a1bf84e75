//! The consumer that copies catalog events into the scanning log, where the matching index is built
//! from: the scanning service never reads the catalog's tables, and replaying its own log rebuilds
//! the index exactly.

use patchbay_bus::{EventHandler, HandlerError, IncomingEvent};
use patchbay_eventstore::{ExpectedVersion, Transaction};
use patchbay_proto::scanning::v1 as pb;

use crate::events::ScanningEvent;

/// Durable consumer name of the indexer.
pub const CONSUMER: &str = "scanning-catalog-index";
/// The stream holding the scanning service's copy of the catalog events it indexes.
pub const STREAM: &str = "catalog-index";

const INDEXED: [&str; 5] = [
    "UpdatePublished",
    "UpdateRevised",
    "UpdateSuperseded",
    "UpdateExpired",
    "VulnerabilityPublished",
];

#[derive(Debug, Clone, Copy, Default)]
pub struct CatalogIndexer;

impl EventHandler for CatalogIndexer {
    async fn handle(
        &self,
        tx: &mut Transaction,
        incoming: &IncomingEvent,
    ) -> Result<(), HandlerError> {
        let event = &incoming.event;
        if incoming.service != "catalog" || !INDEXED.contains(&event.event_type.as_str()) {
            return Ok(());
        }
        let observed = ScanningEvent::CatalogEventObserved(pb::CatalogEventObserved {
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            payload: event.payload.clone(),
            catalog_position: event.position.global_position,
        });
        let copy = incoming.follow_up(
            observed.event_type(),
            crate::events::schema_version(observed.event_type()),
            observed.encode_payload(),
        );
        tx.append(STREAM, ExpectedVersion::Any, &[copy]).await?;
        Ok(())
    }
}
