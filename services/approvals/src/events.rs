//! The approvals service's events and their encoding.

use patchbay_eventstore::NewEvent;
use patchbay_proto::approvals::v1 as pb;

patchbay_proto::event_enum! {
    /// Every event the approvals service writes to its log.
    pub enum ApprovalsEvent {
        UpdateApproved(pb::UpdateApproved),
        UpdateDeclined(pb::UpdateDeclined),
        ApprovalReset(pb::ApprovalReset),
        EulaAccepted(pb::EulaAccepted),
        EulaDeclined(pb::EulaDeclined),
        ApprovalRuleAdded(pb::ApprovalRuleAdded),
        ApprovalRuleRemoved(pb::ApprovalRuleRemoved),
        CatalogEventObserved(pb::CatalogEventObserved),
    }
}

/// The schema version the approvals service writes today.
pub const SCHEMA_VERSION: u32 = 1;

/// A stored approvals event this Patchbay cannot read.
pub type DecodeError = patchbay_proto::EventDecodeError;

impl ApprovalsEvent {
    /// The event ready to append (fresh event id; the caller adds actor, causation, trace context).
    pub fn to_new_event(&self) -> NewEvent {
        NewEvent::new(self.event_type(), SCHEMA_VERSION, self.encode_payload())
    }

    pub fn decode(
        event_type: &str,
        schema_version: u32,
        payload: &[u8],
    ) -> Result<Self, DecodeError> {
        Self::decode_versioned(event_type, schema_version, SCHEMA_VERSION, payload)
    }
}
