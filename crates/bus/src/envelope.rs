//! Turning stored events into bus messages and back: the protobuf `EventEnvelope` plus NATS headers.

use bytes::Bytes;
use chrono::DateTime;
use patchbay_eventstore::{EventMetadata, LogPosition, NewEvent, RecordedEvent};
use patchbay_proto::common::v1::{EventEnvelope, EventMetadata as ProtoMetadata};
use patchbay_telemetry::TraceContext;
use prost::Message as _;
use uuid::Uuid;

use crate::error::BusError;

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";
pub const MESSAGE_ID: &str = "Nats-Msg-Id";
/// Set on dead letters: why the consumer gave up.
pub const DEAD_LETTER_REASON: &str = "Patchbay-Dead-Letter-Reason";
/// Set on dead letters: the subject the message was first published on.
pub const ORIGINAL_SUBJECT: &str = "Patchbay-Original-Subject";

/// A message to publish. `message_id` lets the bus drop a re-published duplicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusMessage {
    pub subject: String,
    pub message_id: String,
    pub headers: Vec<(String, String)>,
    pub payload: Bytes,
}

impl BusMessage {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

pub(crate) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// An event received from another service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingEvent {
    /// The producing service.
    pub service: String,
    /// The event as the producer stored it; `position.global_position` is its place in the producer's log.
    pub event: RecordedEvent,
}

impl IncomingEvent {
    /// A new event caused by this one: same correlation id, this event as causation, and the trace
    /// context of the current span (the consumer's), so the trace continues through the new event.
    pub fn follow_up(
        &self,
        event_type: impl Into<String>,
        schema_version: u32,
        payload: Vec<u8>,
    ) -> NewEvent {
        let event = NewEvent::new(event_type, schema_version, payload).caused_by(&self.event);
        stamped(event, &format!("service:{}", self.service))
    }
}

/// Stamps an event about to be appended with who caused it and the trace context of the current
/// span, so the trace continues through the event (and the relay that publishes it).
pub fn stamped(event: NewEvent, actor: &str) -> NewEvent {
    let context = TraceContext::current();
    event
        .actor(actor)
        .trace_context(context.traceparent, context.tracestate)
}

/// Encodes a stored event as the envelope published on the bus.
pub fn encode_envelope(service: &str, event: &RecordedEvent) -> Bytes {
    let envelope = EventEnvelope {
        service: service.to_owned(),
        stream_id: event.stream_id.clone(),
        stream_version: event.stream_version,
        global_position: event.position.global_position,
        event_type: event.event_type.clone(),
        schema_version: event.schema_version,
        payload: event.payload.clone(),
        metadata: Some(ProtoMetadata {
            event_id: event.event_id.to_string(),
            correlation_id: event.metadata.correlation_id.to_string(),
            causation_id: event
                .metadata
                .causation_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
            actor: event.metadata.actor.clone(),
            traceparent: event.metadata.traceparent.clone().unwrap_or_default(),
            tracestate: event.metadata.tracestate.clone().unwrap_or_default(),
        }),
        recorded_at_unix_micros: event.recorded_at.timestamp_micros(),
    };
    Bytes::from(envelope.encode_to_vec())
}

/// Decodes an envelope; anything that is not a well-formed Patchbay event is `Malformed`.
pub fn decode_envelope(subject: &str, payload: &[u8]) -> Result<IncomingEvent, BusError> {
    let malformed = |reason: String| BusError::Malformed {
        subject: subject.to_owned(),
        reason,
    };
    let envelope =
        EventEnvelope::decode(payload).map_err(|e| malformed(format!("protobuf: {e}")))?;
    let metadata = envelope
        .metadata
        .ok_or_else(|| malformed("no metadata".to_owned()))?;
    let uuid = |field: &str, value: &str| {
        Uuid::parse_str(value).map_err(|e| malformed(format!("{field} {value:?}: {e}")))
    };
    let non_empty = |value: String| (!value.is_empty()).then_some(value);
    let event_id = uuid("event_id", &metadata.event_id)?;
    if envelope.stream_id.is_empty() || envelope.event_type.is_empty() {
        return Err(malformed("empty stream id or event type".to_owned()));
    }
    Ok(IncomingEvent {
        service: envelope.service,
        event: RecordedEvent {
            position: LogPosition {
                commit_id: 0,
                global_position: envelope.global_position,
            },
            stream_id: envelope.stream_id,
            stream_version: envelope.stream_version,
            event_id,
            event_type: envelope.event_type,
            schema_version: envelope.schema_version,
            payload: envelope.payload,
            metadata: EventMetadata {
                correlation_id: uuid("correlation_id", &metadata.correlation_id)?,
                causation_id: match metadata.causation_id.as_str() {
                    "" => None,
                    id => Some(uuid("causation_id", id)?),
                },
                actor: metadata.actor,
                traceparent: non_empty(metadata.traceparent),
                tracestate: non_empty(metadata.tracestate),
            },
            recorded_at: DateTime::from_timestamp_micros(envelope.recorded_at_unix_micros)
                .ok_or_else(|| malformed("recorded_at out of range".to_owned()))?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_garbage_is_malformed() {
        let event = RecordedEvent {
            position: LogPosition {
                commit_id: 7,
                global_position: 42,
            },
            stream_id: "approval-KB1".into(),
            stream_version: 3,
            event_id: Uuid::now_v7(),
            event_type: "UpdateApproved".into(),
            schema_version: 2,
            payload: vec![1, 2, 3],
            metadata: EventMetadata {
                correlation_id: Uuid::now_v7(),
                causation_id: Some(Uuid::now_v7()),
                actor: "user:alice".into(),
                traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
                tracestate: None,
            },
            recorded_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
        };
        let decoded = decode_envelope("s", &encode_envelope("approvals", &event)).unwrap();
        assert_eq!(decoded.service, "approvals");
        // The commit id is the producer's private ordering detail and does not travel.
        assert_eq!(
            decoded.event,
            RecordedEvent {
                position: LogPosition {
                    commit_id: 0,
                    global_position: 42
                },
                ..event
            }
        );
        for garbage in [
            &b"\xff\xff\xff"[..],
            b"",
            &EventEnvelope::default().encode_to_vec(),
        ] {
            assert!(matches!(
                decode_envelope("s", garbage),
                Err(BusError::Malformed { .. })
            ));
        }
    }
}
