//! The scanning service's events and their encoding.

use patchbay_eventstore::NewEvent;
use patchbay_proto::scanning::v1 as pb;

patchbay_proto::event_enum! {
    /// Every event the scanning service writes to its log.
    pub enum ScanningEvent {
        DeviceRegistered(pb::DeviceRegistered),
        InventoryReported(pb::InventoryReported),
        DeviceGroupsSet(pb::DeviceGroupsSet),
        ScanTaskCreated(pb::ScanTaskCreated),
        ScanStarted(pb::ScanStarted),
        ScanTaskPaused(pb::ScanTaskPaused),
        ScanTaskResumed(pb::ScanTaskResumed),
        ScanTaskStopped(pb::ScanTaskStopped),
        ScanCompleted(pb::ScanCompleted),
        ScanTaskCompleted(pb::ScanTaskCompleted),
        CatalogEventObserved(pb::CatalogEventObserved),
    }
}

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown scanning event type '{0}'")]
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

impl ScanningEvent {
    pub fn to_new_event(&self) -> NewEvent {
        NewEvent::new(self.event_type(), SCHEMA_VERSION, self.encode_payload())
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
        Self::decode_payload(event_type, payload)
            .ok_or_else(|| DecodeError::UnknownType(event_type.to_owned()))?
            .map_err(|source| DecodeError::Payload {
                event_type: event_type.to_owned(),
                source,
            })
    }
}
