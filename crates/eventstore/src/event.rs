//! The values that go into and come out of the log: new events, recorded events, versions, positions.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::EventStoreError;

/// Who caused an event and the request it belongs to; stored beside every event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMetadata {
    /// The request or workflow the event belongs to. Defaults to the event's own id.
    pub correlation_id: Uuid,
    /// The event or command that directly caused this one.
    pub causation_id: Option<Uuid>,
    /// The user, rule or service that caused the event, e.g. `user:alice`.
    pub actor: String,
    /// W3C `traceparent` of the span that appended the event.
    pub traceparent: Option<String>,
    /// W3C `tracestate` that goes with `traceparent`.
    pub tracestate: Option<String>,
}

/// An event to append: its type, schema version and protobuf payload, plus metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// UUIDv7. Appending an event id that is already stored is idempotent.
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    pub payload: Vec<u8>,
    pub metadata: EventMetadata,
}

impl NewEvent {
    /// A new event with a fresh UUIDv7 id that starts its own correlation.
    pub fn new(event_type: impl Into<String>, schema_version: u32, payload: Vec<u8>) -> Self {
        let event_id = Uuid::now_v7();
        Self {
            event_id,
            event_type: event_type.into(),
            schema_version,
            payload,
            metadata: EventMetadata {
                correlation_id: event_id,
                causation_id: None,
                actor: "system".to_owned(),
                traceparent: None,
                tracestate: None,
            },
        }
    }

    /// Sets who caused the event.
    #[must_use]
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.metadata.actor = actor.into();
        self
    }

    /// Marks the event as caused by `cause`: same correlation, causation = the cause's id.
    #[must_use]
    pub fn caused_by(mut self, cause: &RecordedEvent) -> Self {
        self.metadata.correlation_id = cause.metadata.correlation_id;
        self.metadata.causation_id = Some(cause.event_id);
        self
    }

    /// Sets the W3C trace context the event was appended under.
    #[must_use]
    pub fn trace_context(
        mut self,
        traceparent: Option<String>,
        tracestate: Option<String>,
    ) -> Self {
        self.metadata.traceparent = traceparent;
        self.metadata.tracestate = tracestate;
        self
    }
}

/// An event as stored in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// Where the event stands in the service's global order.
    pub position: LogPosition,
    pub stream_id: String,
    /// 1-based version of the event within its stream.
    pub stream_version: u64,
    pub event_id: Uuid,
    pub event_type: String,
    /// Schema version of `payload` after upcasting (the stored payload is never rewritten).
    pub schema_version: u32,
    pub payload: Vec<u8>,
    pub metadata: EventMetadata,
    pub recorded_at: DateTime<Utc>,
}

/// A point in a service's global order: events are read in `(commit_id, global_position)` order.
///
/// On PostgreSQL `commit_id` is the appending transaction's id (`xid8`), which orders events by the
/// transaction that wrote them; on SQLite writers are serialised, so it is always 0.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct LogPosition {
    pub commit_id: u64,
    pub global_position: u64,
}

impl LogPosition {
    /// Before the first event.
    pub const START: LogPosition = LogPosition {
        commit_id: 0,
        global_position: 0,
    };
}

/// What the appender believes the stream's current version is (optimistic concurrency).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version is.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have this version (`Exact(0)` is the same as `NoStream`).
    Exact(u64),
}

impl std::fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream | ExpectedVersion::Exact(0) => f.write_str("no stream"),
            ExpectedVersion::Exact(version) => write!(f, "version {version}"),
        }
    }
}

/// One stream's part of a multi-stream append ([`crate::Transaction::append_streams`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAppend {
    pub stream_id: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

impl StreamAppend {
    pub fn new(
        stream_id: impl Into<String>,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Self {
        Self {
            stream_id: stream_id.into(),
            expected,
            events,
        }
    }
}

/// The outcome of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    /// Version of the last event of the batch: pass it as `Exact` to append next.
    pub stream_version: u64,
    /// Global position of the last event of the batch.
    pub global_position: u64,
    /// True when every event id of the batch was already stored and nothing was appended.
    pub deduplicated: bool,
}

/// A snapshot of an aggregate or projection at some version, to shorten replays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// A stream id or projection name.
    pub key: String,
    /// The stream version (or global position) the snapshot was taken at.
    pub version: u64,
    pub schema_version: u32,
    pub payload: Vec<u8>,
}

/// Longest stream id accepted, in bytes.
pub const MAX_STREAM_ID_LEN: usize = 256;
/// Most events accepted in one append.
pub const MAX_BATCH: usize = 10_000;

/// Checks a batch before it reaches the database, so bad input fails without a round trip.
pub(crate) fn validate_append(stream_id: &str, events: &[NewEvent]) -> Result<(), EventStoreError> {
    validate_stream_id(stream_id)?;
    if events.is_empty() {
        return Err(EventStoreError::InvalidInput(format!(
            "append to stream '{stream_id}' has no events; skip the append when a command produces none"
        )));
    }
    if events.len() > MAX_BATCH {
        return Err(EventStoreError::InvalidInput(format!(
            "append to stream '{stream_id}' has {} events, more than the limit of {MAX_BATCH}; split the batch",
            events.len()
        )));
    }
    for event in events {
        validate_event_type(&event.event_type)?;
    }
    Ok(())
}

/// Checks every stream's batch, and that no stream appears twice (its version could not be claimed
/// once for both parts).
pub(crate) fn validate_append_streams(appends: &[StreamAppend]) -> Result<(), EventStoreError> {
    let mut seen = std::collections::HashSet::with_capacity(appends.len());
    for append in appends {
        validate_append(&append.stream_id, &append.events)?;
        if !seen.insert(append.stream_id.as_str()) {
            return Err(EventStoreError::InvalidInput(format!(
                "stream '{}' appears twice in one multi-stream append; put all its events in one part",
                append.stream_id
            )));
        }
    }
    Ok(())
}

pub(crate) fn validate_stream_id(stream_id: &str) -> Result<(), EventStoreError> {
    if stream_id.is_empty()
        || stream_id.len() > MAX_STREAM_ID_LEN
        || stream_id.chars().any(char::is_control)
    {
        return Err(EventStoreError::InvalidInput(format!(
            "stream id {stream_id:?} is not valid: it must be 1 to {MAX_STREAM_ID_LEN} bytes without control characters"
        )));
    }
    Ok(())
}

/// Event types become the last token of a bus subject, so they are restricted to `[A-Za-z0-9_-]`.
pub fn validate_event_type(event_type: &str) -> Result<(), EventStoreError> {
    let valid = !event_type.is_empty()
        && event_type.len() <= 128
        && event_type
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(EventStoreError::InvalidInput(format!(
            "event type {event_type:?} is not valid: use 1 to 128 characters from A-Z, a-z, 0-9, '_' and '-'"
        )))
    }
}

/// Whether a stream at `actual` (None = no stream) satisfies `expected`.
pub(crate) fn version_matches(expected: ExpectedVersion, actual: Option<u64>) -> bool {
    match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream | ExpectedVersion::Exact(0) => actual.is_none(),
        ExpectedVersion::Exact(version) => actual == Some(version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_that_would_break_a_bus_subject_are_refused() {
        for bad in ["", "Update Approved", "a.b", "a*", "a>", "Ünicode"] {
            assert!(validate_event_type(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_event_type("UpdateApproved").is_ok());
    }

    #[test]
    fn empty_and_oversized_batches_are_refused() {
        assert!(validate_append("s", &[]).is_err());
        let many = vec![NewEvent::new("E", 1, vec![]); MAX_BATCH + 1];
        assert!(validate_append("s", &many).is_err());
        assert!(validate_append("", &many[..1]).is_err());
        assert!(validate_append("s\n", &many[..1]).is_err());
    }

    #[test]
    fn exact_zero_means_no_stream() {
        assert!(version_matches(ExpectedVersion::Exact(0), None));
        assert!(!version_matches(ExpectedVersion::Exact(0), Some(1)));
        assert!(version_matches(ExpectedVersion::Exact(3), Some(3)));
        assert!(!version_matches(ExpectedVersion::NoStream, Some(1)));
        assert!(version_matches(ExpectedVersion::Any, Some(7)));
    }
}
