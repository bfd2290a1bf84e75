//! The catalog's events and their encoding: protobuf payloads named by event type and schema version.

use patchbay_eventstore::NewEvent;
use patchbay_proto::catalog::v1 as pb;

patchbay_proto::event_enum! {
    /// Every event the catalog writes to its log.
    pub enum CatalogEvent {
        UpdatePublished(pb::UpdatePublished),
        UpdateRevised(pb::UpdateRevised),
        UpdateSuperseded(pb::UpdateSuperseded),
        UpdateExpired(pb::UpdateExpired),
        VulnerabilityPublished(pb::VulnerabilityPublished),
        DeviceRequirementsObserved(pb::DeviceRequirementsObserved),
        ApprovalObserved(pb::ApprovalObserved),
        InstallJobObserved(pb::InstallJobObserved),
    }
}

/// The schema version the catalog writes today; older ones are upcast on read.
pub const SCHEMA_VERSION: u32 = 1;

/// A stored catalog event that cannot be understood.
/// A stored catalog event this Patchbay cannot read.
pub type DecodeError = patchbay_proto::EventDecodeError;

impl CatalogEvent {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_bad_ones_are_typed_errors() {
        let event = CatalogEvent::UpdateExpired(pb::UpdateExpired {
            update_id: "u".into(),
            reason: "r".into(),
        });
        let stored = event.to_new_event();
        assert_eq!(stored.event_type, "UpdateExpired");
        assert_eq!(
            CatalogEvent::decode("UpdateExpired", 1, &stored.payload).unwrap(),
            event
        );
        assert!(matches!(
            CatalogEvent::decode("Nope", 1, &[]),
            Err(DecodeError::UnknownType(_))
        ));
        assert!(matches!(
            CatalogEvent::decode("UpdateExpired", 2, &[]),
            Err(DecodeError::FutureVersion { .. })
        ));
        assert!(matches!(
            CatalogEvent::decode("UpdateExpired", 1, &[0xff, 0xff]),
            Err(DecodeError::Payload { .. })
        ));
    }
}
