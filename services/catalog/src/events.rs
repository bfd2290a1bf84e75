//! The catalog's events and their encoding: protobuf payloads named by event type and schema version.

use patchbay_eventstore::NewEvent;
use patchbay_proto::catalog::v1 as pb;
use prost::Message as _;

/// Every event the catalog writes to its log.
#[derive(Debug, Clone, PartialEq)]
pub enum CatalogEvent {
    UpdatePublished(pb::UpdatePublished),
    UpdateRevised(pb::UpdateRevised),
    UpdateSuperseded(pb::UpdateSuperseded),
    UpdateExpired(pb::UpdateExpired),
    VulnerabilityPublished(pb::VulnerabilityPublished),
}

/// The schema version the catalog writes today; older ones are upcast on read.
pub const SCHEMA_VERSION: u32 = 1;

/// A stored catalog event that cannot be understood.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown catalog event type '{0}'")]
    UnknownType(String),
    #[error(
        "{event_type} v{schema_version} is newer than this Patchbay understands; upgrade Patchbay"
    )]
    FutureVersion {
        event_type: String,
        schema_version: u32,
    },
    #[error("{event_type} payload does not decode: {source}")]
    Payload {
        event_type: String,
        source: prost::DecodeError,
    },
}

impl CatalogEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            CatalogEvent::UpdatePublished(_) => "UpdatePublished",
            CatalogEvent::UpdateRevised(_) => "UpdateRevised",
            CatalogEvent::UpdateSuperseded(_) => "UpdateSuperseded",
            CatalogEvent::UpdateExpired(_) => "UpdateExpired",
            CatalogEvent::VulnerabilityPublished(_) => "VulnerabilityPublished",
        }
    }

    /// The event ready to append (fresh event id; the caller adds actor, causation, trace context).
    pub fn to_new_event(&self) -> NewEvent {
        let payload = match self {
            CatalogEvent::UpdatePublished(e) => e.encode_to_vec(),
            CatalogEvent::UpdateRevised(e) => e.encode_to_vec(),
            CatalogEvent::UpdateSuperseded(e) => e.encode_to_vec(),
            CatalogEvent::UpdateExpired(e) => e.encode_to_vec(),
            CatalogEvent::VulnerabilityPublished(e) => e.encode_to_vec(),
        };
        NewEvent::new(self.event_type(), SCHEMA_VERSION, payload)
    }

    pub fn decode(
        event_type: &str,
        schema_version: u32,
        payload: &[u8],
    ) -> Result<Self, DecodeError> {
        if schema_version > SCHEMA_VERSION {
            return Err(DecodeError::FutureVersion {
                event_type: event_type.to_owned(),
                schema_version,
            });
        }
        let wrap = |source| DecodeError::Payload {
            event_type: event_type.to_owned(),
            source,
        };
        Ok(match event_type {
            "UpdatePublished" => {
                CatalogEvent::UpdatePublished(pb::UpdatePublished::decode(payload).map_err(wrap)?)
            }
            "UpdateRevised" => {
                CatalogEvent::UpdateRevised(pb::UpdateRevised::decode(payload).map_err(wrap)?)
            }
            "UpdateSuperseded" => {
                CatalogEvent::UpdateSuperseded(pb::UpdateSuperseded::decode(payload).map_err(wrap)?)
            }
            "UpdateExpired" => {
                CatalogEvent::UpdateExpired(pb::UpdateExpired::decode(payload).map_err(wrap)?)
            }
            "VulnerabilityPublished" => CatalogEvent::VulnerabilityPublished(
                pb::VulnerabilityPublished::decode(payload).map_err(wrap)?,
            ),
            other => return Err(DecodeError::UnknownType(other.to_owned())),
        })
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
