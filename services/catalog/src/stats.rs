//! The consumer that records, in the catalog's log, what each device's latest scan requires: the
//! source of the per-update statistics and the "required by N devices" filter.

use patchbay_bus::{EventHandler, HandlerError, IncomingEvent};
use patchbay_eventstore::{ExpectedVersion, Transaction};
use patchbay_proto::catalog::v1 as pb;
use patchbay_proto::scanning::v1::ScanCompleted;
use prost::Message as _;

use crate::events::{CatalogEvent, SCHEMA_VERSION};

/// Durable consumer name.
pub const CONSUMER: &str = "catalog-device-requirements";
/// The scanning event it consumes.
pub const EVENT_TYPE: &str = "ScanCompleted";

#[derive(Debug, Clone, Copy, Default)]
pub struct DeviceRequirementsRecorder;

impl EventHandler for DeviceRequirementsRecorder {
    async fn handle(
        &self,
        tx: &mut Transaction,
        incoming: &IncomingEvent,
    ) -> Result<(), HandlerError> {
        if incoming.service != "scanning" || incoming.event.event_type != EVENT_TYPE {
            return Ok(());
        }
        let scan = ScanCompleted::decode(incoming.event.payload.as_slice())
            .map_err(|e| HandlerError::Permanent(format!("ScanCompleted does not decode: {e}")))?;
        if scan.device_id.is_empty() {
            return Err(HandlerError::Permanent(
                "ScanCompleted names no device".to_owned(),
            ));
        }
        let observed = CatalogEvent::DeviceRequirementsObserved(pb::DeviceRequirementsObserved {
            device_id: scan.device_id.clone(),
            required_update_ids: scan.required.into_iter().map(|r| r.update_id).collect(),
            scanned_at: incoming.event.recorded_at.to_rfc3339(),
        });
        let event = incoming.follow_up(
            observed.event_type(),
            SCHEMA_VERSION,
            observed.encode_payload(),
        );
        tx.append(
            &format!("devicerequirements-{}", scan.device_id),
            ExpectedVersion::Any,
            &[event],
        )
        .await?;
        Ok(())
    }
}
