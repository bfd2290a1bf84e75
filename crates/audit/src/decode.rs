//! Decoding stored events for people: the payload's protobuf message found by service and event
//! type in Patchbay's own descriptors, rendered with the proto3 JSON mapping.

use base64::Engine as _;
use patchbay_eventstore::RecordedEvent;
use patchbay_proto::audit::v1 as pb;
use prost_reflect::{DescriptorPool, DynamicMessage};

/// Decodes any Patchbay event payload. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EventDecoder {
    pool: DescriptorPool,
}

/// The protobuf package of a service's events.
fn package_of(service: &str) -> String {
    match service {
        "wsus-sync" => "patchbay.wsus.v1".to_owned(),
        other => format!("patchbay.{other}.v1"),
    }
}

impl EventDecoder {
    /// The decoder for the descriptors compiled into this Patchbay.
    pub fn new() -> Result<Self, prost_reflect::DescriptorError> {
        Ok(Self {
            pool: DescriptorPool::decode(patchbay_proto::FILE_DESCRIPTOR_SET)?,
        })
    }

    /// The payload as JSON, or `None` if the event type is unknown to this Patchbay or the bytes do
    /// not decode as its message (the caller then shows the raw bytes).
    pub fn to_json(
        &self,
        service: &str,
        event_type: &str,
        payload: &[u8],
    ) -> Option<serde_json::Value> {
        // Event types are the message names (the services' event enums are built that way).
        let name = format!("{}.{event_type}", package_of(service));
        let descriptor = self.pool.get_message_by_name(&name)?;
        let message = DynamicMessage::decode(descriptor, payload).ok()?;
        serde_json::to_value(&message).ok()
    }
}

/// The wire form of one stored event of `service`, payload decoded.
pub fn audit_event(decoder: &EventDecoder, service: &str, event: &RecordedEvent) -> pb::AuditEvent {
    let json = decoder.to_json(service, &event.event_type, &event.payload);
    pb::AuditEvent {
        service: service.to_owned(),
        commit_id: event.position.commit_id,
        global_position: event.position.global_position,
        stream_id: event.stream_id.clone(),
        stream_version: event.stream_version,
        event_id: event.event_id.to_string(),
        event_type: event.event_type.clone(),
        schema_version: event.schema_version,
        recorded_at: event.recorded_at.to_rfc3339(),
        actor: event.metadata.actor.clone(),
        correlation_id: event.metadata.correlation_id.to_string(),
        causation_id: event
            .metadata
            .causation_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        traceparent: event.metadata.traceparent.clone().unwrap_or_default(),
        payload_base64: if json.is_none() {
            base64::engine::general_purpose::STANDARD.encode(&event.payload)
        } else {
            String::new()
        },
        payload_json: json.map(|v| v.to_string()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use prost::Message as _;

    #[test]
    fn every_service_payload_decodes_to_json_by_its_event_type() {
        let decoder = EventDecoder::new().unwrap();
        let approved = patchbay_proto::approvals::v1::UpdateApproved {
            update_id: "KB5034123".into(),
            reason: "January".into(),
            ..Default::default()
        };
        let json = decoder
            .to_json("approvals", "UpdateApproved", &approved.encode_to_vec())
            .unwrap();
        assert_eq!(json["updateId"], "KB5034123");
        assert_eq!(json["reason"], "January");

        let synced = patchbay_proto::wsus::v1::WsusUpdateSynced {
            update_id: "4148bb5e-2b1b-456d-a13e-db8d6d33c3e8".into(),
            revision_number: 200,
            ..Default::default()
        };
        let json = decoder
            .to_json("wsus-sync", "WsusUpdateSynced", &synced.encode_to_vec())
            .unwrap();
        assert_eq!(json["revisionNumber"], 200);
    }

    #[test]
    fn unknown_types_and_bad_bytes_are_not_decoded() {
        let decoder = EventDecoder::new().unwrap();
        assert!(decoder.to_json("approvals", "NoSuchEvent", &[]).is_none());
        assert!(decoder.to_json("nosuch", "UpdateApproved", &[]).is_none());
        assert!(
            decoder
                .to_json("approvals", "UpdateApproved", &[0xff, 0xff, 0xff])
                .is_none()
        );
    }
}
