//! Upgrades of older scanning payloads to the versions the scanning service writes, applied on read.

use patchbay_eventstore::Upcasters;
use patchbay_proto::scanning::v1 as pb;
use prost::Message as _;

/// The event type whose schema went from version 1 to 2.
pub const SCAN_TASK_CREATED: &str = "ScanTaskCreated";

/// `ScanTaskCreated` as schema version 1 wrote it: the schedule as free text in field 4. Frozen
/// here, since the generated message only knows version 2 (field 4 is reserved there).
#[derive(Clone, PartialEq, prost::Message)]
struct ScanTaskCreatedV1 {
    #[prost(string, tag = "1")]
    task_id: String,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(message, optional, tag = "3")]
    targets: Option<pb::ScanTargets>,
    #[prost(string, tag = "4")]
    schedule: String,
}

/// Why a stored version 1 payload could not be upgraded.
#[derive(Debug, thiserror::Error)]
pub enum UpcastError {
    #[error(
        "the ScanTaskCreated v1 payload does not decode ({0}); the stored event is damaged: \
         check the log with `patchbay audit verify` and restore it from a backup"
    )]
    Malformed(#[from] prost::DecodeError),
    #[error(
        "the ScanTaskCreated v1 schedule {0:?} is not weekly, daily or manual, the only values \
         version 1 ever wrote; the stored event was altered: check the log with \
         `patchbay audit verify`"
    )]
    UnknownSchedule(String),
}

/// Every upgrade of the scanning service's payloads: register them on each store of its log that
/// is read, so that its decoders and read models only ever see current versions.
pub fn upcasters() -> Upcasters {
    Upcasters::new().register(SCAN_TASK_CREATED, 1, |payload| {
        scan_task_created_v1_to_v2(payload).map_err(|error| error.to_string())
    })
}

/// `ScanTaskCreated` v1 → v2: the free-text schedule (field 4) becomes the `ScanSchedule` enum
/// (field 5); every other field is unchanged.
pub fn scan_task_created_v1_to_v2(v1: &[u8]) -> Result<Vec<u8>, UpcastError> {
    let old = ScanTaskCreatedV1::decode(v1)?;
    // What version 1 meant by each value, fixed here rather than borrowed from the domain, whose
    // vocabulary may move on while version 1 payloads never change.
    let schedule = match old.schedule.as_str() {
        // Version 1 documented the empty schedule as the default, weekly.
        "" | "weekly" => pb::ScanSchedule::Weekly,
        "daily" => pb::ScanSchedule::Daily,
        "manual" => pb::ScanSchedule::Manual,
        _ => return Err(UpcastError::UnknownSchedule(old.schedule)),
    };
    Ok(pb::ScanTaskCreated {
        task_id: old.task_id,
        name: old.name,
        targets: old.targets,
        schedule: schedule.into(),
    }
    .encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchbay_eventstore::{EventMetadata, LogPosition, RecordedEvent};

    fn v1(schedule: &str) -> Vec<u8> {
        ScanTaskCreatedV1 {
            task_id: "nightly".into(),
            name: "Find vulnerabilities and required updates".into(),
            targets: Some(pb::ScanTargets {
                groups: vec!["web".into()],
                device_ids: vec!["d1".into()],
                ..Default::default()
            }),
            schedule: schedule.into(),
        }
        .encode_to_vec()
    }

    fn stored(event_type: &str, schema_version: u32, payload: Vec<u8>) -> RecordedEvent {
        RecordedEvent {
            position: LogPosition {
                commit_id: 0,
                global_position: 7,
            },
            stream_id: "scantask-nightly".into(),
            stream_version: 1,
            event_id: uuid::Uuid::now_v7(),
            event_type: event_type.into(),
            schema_version,
            payload,
            metadata: EventMetadata {
                correlation_id: uuid::Uuid::nil(),
                causation_id: None,
                actor: "user:alice".into(),
                traceparent: None,
                tracestate: None,
            },
            recorded_at: chrono::DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_v1_schedule_becomes_the_v2_enum_and_the_other_fields_stay() {
        // Given a v1 payload of each schedule version 1 wrote (and the empty default),
        for (schedule, expected) in [
            ("daily", pb::ScanSchedule::Daily),
            ("weekly", pb::ScanSchedule::Weekly),
            ("manual", pb::ScanSchedule::Manual),
            ("", pb::ScanSchedule::Weekly),
        ] {
            // when it is upgraded,
            let v2 = scan_task_created_v1_to_v2(&v1(schedule)).unwrap();
            // then it decodes as v2 with the schedule as the enum and nothing else changed.
            assert_eq!(
                pb::ScanTaskCreated::decode(v2.as_slice()).unwrap(),
                pb::ScanTaskCreated {
                    task_id: "nightly".into(),
                    name: "Find vulnerabilities and required updates".into(),
                    targets: Some(pb::ScanTargets {
                        groups: vec!["web".into()],
                        device_ids: vec!["d1".into()],
                        ..Default::default()
                    }),
                    schedule: expected.into(),
                },
                "schedule {schedule:?}"
            );
        }
    }

    #[test]
    fn the_v2_bytes_no_longer_carry_field_4() {
        // Given a v1 payload, when it is upgraded, then field 4 (reserved in v2) is gone: a v2
        // payload read as v1 has no schedule text left.
        let v2 = scan_task_created_v1_to_v2(&v1("manual")).unwrap();
        assert_eq!(
            ScanTaskCreatedV1::decode(v2.as_slice()).unwrap().schedule,
            ""
        );
    }

    #[test]
    fn malformed_bytes_and_unknown_schedules_are_clear_errors() {
        // Given bytes that are not a protobuf message, when upgraded, then the error says so.
        let malformed = scan_task_created_v1_to_v2(&[0xff, 0xff, 0xff]).unwrap_err();
        assert!(matches!(malformed, UpcastError::Malformed(_)));
        assert!(malformed.to_string().contains("does not decode"));
        // Given a schedule version 1 never wrote, then the error names it.
        let hourly = scan_task_created_v1_to_v2(&v1("hourly")).unwrap_err();
        assert!(hourly.to_string().contains("\"hourly\""), "{hourly}");
    }

    #[test]
    fn the_registry_upgrades_stored_v1_events_and_leaves_v2_and_other_types_alone() {
        let upcasters = upcasters();
        // Given a stored v1 ScanTaskCreated, when the registry applies, then it is v2.
        let upgraded = upcasters
            .apply(stored(SCAN_TASK_CREATED, 1, v1("daily")))
            .unwrap();
        assert_eq!(upgraded.schema_version, 2);
        assert_eq!(
            pb::ScanTaskCreated::decode(upgraded.payload.as_slice())
                .unwrap()
                .schedule(),
            pb::ScanSchedule::Daily
        );
        // Given a v2 one or another type, then it is untouched.
        let current = pb::ScanTaskCreated {
            schedule: pb::ScanSchedule::Manual.into(),
            ..Default::default()
        }
        .encode_to_vec();
        let kept = upcasters
            .apply(stored(SCAN_TASK_CREATED, 2, current.clone()))
            .unwrap();
        assert_eq!((kept.schema_version, kept.payload), (2, current));
        let other = upcasters
            .apply(stored("ScanTaskPaused", 1, vec![10, 1, 116]))
            .unwrap();
        assert_eq!((other.schema_version, other.payload), (1, vec![10, 1, 116]));
        // Given damaged bytes, then the store's error names the event and its position.
        let error = upcasters
            .apply(stored(SCAN_TASK_CREATED, 1, vec![0xff, 0xff]))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("ScanTaskCreated v1") && error.contains("position 7"),
            "{error}"
        );
    }
}
