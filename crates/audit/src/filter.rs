//! Which events an auditor's query selects: service, stream, event types, a time window and a
//! correlation, validated once at the boundary.

use chrono::{DateTime, Utc};
use patchbay_eventstore::RecordedEvent;
use patchbay_proto::audit::v1 as pb;
use uuid::Uuid;

/// A query that cannot be run, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("{field} {value:?} is not a time: use RFC 3339, e.g. 2026-11-30T12:00:00Z")]
    Time { field: &'static str, value: String },
    #[error("--since {since} is not before --until {until}: nothing can match")]
    EmptyWindow { since: String, until: String },
    #[error("correlation id {0:?} is not a UUID")]
    Correlation(String),
    #[error("no service {service:?} here; this server hosts: {hosted}")]
    UnknownService { service: String, hosted: String },
}

/// A validated [`pb::EventFilter`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub service: Option<String>,
    pub stream_id: Option<String>,
    pub event_types: Vec<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub correlation_id: Option<Uuid>,
}

fn time(field: &'static str, value: &str) -> Result<Option<DateTime<Utc>>, FilterError> {
    if value.trim().is_empty() {
        return Ok(None);
    }
    DateTime::parse_from_rfc3339(value.trim())
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|_| FilterError::Time {
            field,
            value: value.to_owned(),
        })
}

fn non_empty(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

impl EventFilter {
    pub fn parse(filter: &pb::EventFilter) -> Result<Self, FilterError> {
        let since = time("--since", &filter.since)?;
        let until = time("--until", &filter.until)?;
        if let (Some(since), Some(until)) = (since, until)
            && since >= until
        {
            return Err(FilterError::EmptyWindow {
                since: since.to_rfc3339(),
                until: until.to_rfc3339(),
            });
        }
        let correlation_id = match non_empty(&filter.correlation_id) {
            Some(id) => {
                Some(Uuid::parse_str(&id).map_err(|_| FilterError::Correlation(id.clone()))?)
            }
            None => None,
        };
        Ok(Self {
            service: non_empty(&filter.service),
            stream_id: non_empty(&filter.stream_id),
            event_types: filter
                .event_types
                .iter()
                .filter_map(|t| non_empty(t))
                .collect(),
            since,
            until,
            correlation_id,
        })
    }

    /// Whether this query reads `service`'s log at all.
    pub fn selects_service(&self, service: &str) -> bool {
        self.service.as_deref().is_none_or(|s| s == service)
    }

    /// Whether `event` matches (the service is checked apart).
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        self.stream_id
            .as_deref()
            .is_none_or(|s| s == event.stream_id)
            && (self.event_types.is_empty() || self.event_types.contains(&event.event_type))
            && self.since.is_none_or(|since| event.recorded_at >= since)
            && self.until.is_none_or(|until| event.recorded_at < until)
            && self
                .correlation_id
                .is_none_or(|id| id == event.metadata.correlation_id)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use patchbay_eventstore::{EventMetadata, LogPosition};

    fn event(stream: &str, event_type: &str, at: &str, correlation: Uuid) -> RecordedEvent {
        RecordedEvent {
            position: LogPosition::START,
            stream_id: stream.into(),
            stream_version: 1,
            event_id: Uuid::now_v7(),
            event_type: event_type.into(),
            schema_version: 1,
            payload: vec![],
            metadata: EventMetadata {
                correlation_id: correlation,
                causation_id: None,
                actor: "user:alice".into(),
                traceparent: None,
                tracestate: None,
            },
            recorded_at: DateTime::parse_from_rfc3339(at)
                .unwrap()
                .with_timezone(&Utc),
        }
    }

    #[test]
    fn a_filter_selects_by_stream_type_window_and_correlation() {
        let correlation = Uuid::now_v7();
        let filter = EventFilter::parse(&pb::EventFilter {
            service: "approvals".into(),
            stream_id: "approval-KB1".into(),
            event_types: vec!["UpdateApproved".into()],
            since: "2026-11-01T00:00:00Z".into(),
            until: "2026-12-01T00:00:00+01:00".into(),
            correlation_id: correlation.to_string(),
        })
        .unwrap();
        assert!(filter.selects_service("approvals"));
        assert!(!filter.selects_service("catalog"));
        let matching = event(
            "approval-KB1",
            "UpdateApproved",
            "2026-11-15T10:00:00Z",
            correlation,
        );
        assert!(filter.matches(&matching));
        for other in [
            event(
                "approval-KB2",
                "UpdateApproved",
                "2026-11-15T10:00:00Z",
                correlation,
            ),
            event(
                "approval-KB1",
                "UpdateDeclined",
                "2026-11-15T10:00:00Z",
                correlation,
            ),
            event(
                "approval-KB1",
                "UpdateApproved",
                "2026-10-31T23:59:59Z",
                correlation,
            ),
            event(
                "approval-KB1",
                "UpdateApproved",
                "2026-11-30T23:00:00Z",
                correlation,
            ),
            event(
                "approval-KB1",
                "UpdateApproved",
                "2026-11-15T10:00:00Z",
                Uuid::now_v7(),
            ),
        ] {
            assert!(!filter.matches(&other), "{other:?}");
        }
        assert!(EventFilter::default().matches(&matching));
    }

    #[test]
    fn bad_queries_say_what_to_fix() {
        let cases = [
            (
                pb::EventFilter {
                    since: "yesterday".into(),
                    ..Default::default()
                },
                "RFC 3339",
            ),
            (
                pb::EventFilter {
                    since: "2026-12-01T00:00:00Z".into(),
                    until: "2026-11-01T00:00:00Z".into(),
                    ..Default::default()
                },
                "not before",
            ),
            (
                pb::EventFilter {
                    correlation_id: "abc".into(),
                    ..Default::default()
                },
                "UUID",
            ),
        ];
        for (filter, expected) in cases {
            let error = EventFilter::parse(&filter).unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
        }
    }
}
