//! The consumer that records approval decisions in the catalog's log, for the list's approval status.

use patchbay_bus::{EventHandler, HandlerError, IncomingEvent};
use patchbay_eventstore::{ExpectedVersion, Transaction};
use patchbay_proto::approvals::v1 as approvals;
use patchbay_proto::catalog::v1 as pb;
use prost::Message as _;

use crate::events::{CatalogEvent, SCHEMA_VERSION};

/// Durable consumer name.
pub const CONSUMER: &str = "catalog-approvals";
/// The producing service.
pub const SERVICE: &str = "approvals";

/// The catalog's stream of approval decisions for one update.
pub fn approval_stream(update_id: &str) -> String {
    format!("approvalstatus-{update_id}")
}

/// Records `UpdateApproved`, `UpdateDeclined` and `ApprovalReset` as `ApprovalObserved`; every other
/// approvals event (EULAs, rules, its copies of catalog events) is ignored.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApprovalRecorder;

impl EventHandler for ApprovalRecorder {
    async fn handle(
        &self,
        tx: &mut Transaction,
        incoming: &IncomingEvent,
    ) -> Result<(), HandlerError> {
        let event = &incoming.event;
        if incoming.service != SERVICE {
            return Ok(());
        }
        let undecodable = |e: prost::DecodeError| {
            HandlerError::Permanent(format!("{} does not decode: {e}", event.event_type))
        };
        let payload = event.payload.as_slice();
        let (update_id, status) = match event.event_type.as_str() {
            "UpdateApproved" => (
                approvals::UpdateApproved::decode(payload)
                    .map_err(undecodable)?
                    .update_id,
                pb::ApprovalStatus::Approved,
            ),
            "UpdateDeclined" => (
                approvals::UpdateDeclined::decode(payload)
                    .map_err(undecodable)?
                    .update_id,
                pb::ApprovalStatus::Declined,
            ),
            "ApprovalReset" => (
                approvals::ApprovalReset::decode(payload)
                    .map_err(undecodable)?
                    .update_id,
                pb::ApprovalStatus::Undefined,
            ),
            _ => return Ok(()),
        };
        if update_id.is_empty() {
            return Err(HandlerError::Permanent(format!(
                "{} names no update",
                event.event_type
            )));
        }
        let observed = CatalogEvent::ApprovalObserved(pb::ApprovalObserved {
            update_id: update_id.clone(),
            status: status as i32,
            approval_version: event.stream_version,
        });
        let event = incoming.follow_up(
            observed.event_type(),
            SCHEMA_VERSION,
            observed.encode_payload(),
        );
        tx.append(&approval_stream(&update_id), ExpectedVersion::Any, &[event])
            .await?;
        Ok(())
    }
}
