//! Upgrades of older scanning payloads to the versions the scanning service writes, applied on read.

use patchbay_eventstore::Upcasters;
use patchbay_proto::scanning::v1 as pb;
use prost::Message as _;

/// `ScanCompleted` went from version 1 to 2 when vulnerabilities began to name their fixes by
/// position in `required`.
pub use crate::scan_payload::SCAN_COMPLETED;

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

/// `ScanCompleted` as schema version 1 wrote it: vulnerabilities as `FoundVulnerability`, with
/// the ids of the updates that fix them in field 3. Frozen here, since the generated message
/// only knows version 2; the required updates did not change, so they are the generated message.
#[derive(Clone, PartialEq, prost::Message)]
struct ScanCompletedV1 {
    #[prost(string, tag = "1")]
    device_id: String,
    #[prost(string, tag = "2")]
    task_id: String,
    #[prost(uint64, tag = "3")]
    run: u64,
    #[prost(message, repeated, tag = "4")]
    required: Vec<pb::RequiredUpdate>,
    #[prost(message, repeated, tag = "5")]
    vulnerabilities: Vec<FoundVulnerabilityV1>,
    #[prost(uint64, tag = "6")]
    catalog_position: u64,
    #[prost(string, repeated, tag = "7")]
    problems: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct FoundVulnerabilityV1 {
    #[prost(string, tag = "1")]
    cve_id: String,
    #[prost(bool, tag = "2")]
    known_exploited: bool,
    #[prost(string, repeated, tag = "3")]
    fixed_by: Vec<String>,
}

/// Why a stored version 1 payload could not be upgraded.
#[derive(Debug, thiserror::Error)]
pub enum UpcastError {
    #[error(
        "the {event_type} v1 payload does not decode ({source}); the stored event is damaged: \
         check the log with `patchbay audit verify` and restore it from a backup"
    )]
    Malformed {
        event_type: &'static str,
        source: prost::DecodeError,
    },
    #[error(
        "the ScanTaskCreated v1 schedule {0:?} is not weekly, daily or manual, the only values \
         version 1 ever wrote; the stored event was altered: check the log with \
         `patchbay audit verify`"
    )]
    UnknownSchedule(String),
    #[error(
        "the ScanCompleted v1 vulnerability {cve_id} is fixed by update {update_id:?}, which is \
         not among the scan's required updates, as version 1 always wrote it; the stored event \
         was altered: check the log with `patchbay audit verify`"
    )]
    UnknownFix { cve_id: String, update_id: String },
}

/// Every upgrade of the scanning service's payloads: register them on each store of its log that
/// is read, so that its decoders and read models only ever see current versions.
pub fn upcasters() -> Upcasters {
    Upcasters::new()
        .register(SCAN_TASK_CREATED, 1, |payload| {
            scan_task_created_v1_to_v2(payload).map_err(|error| error.to_string())
        })
        .register(SCAN_COMPLETED, 1, |payload| {
            scan_completed_v1_to_v2(payload).map_err(|error| error.to_string())
        })
}

/// `ScanTaskCreated` v1 → v2: the free-text schedule (field 4) becomes the `ScanSchedule` enum
/// (field 5); every other field is unchanged.
pub fn scan_task_created_v1_to_v2(v1: &[u8]) -> Result<Vec<u8>, UpcastError> {
    let old = ScanTaskCreatedV1::decode(v1).map_err(|source| UpcastError::Malformed {
        event_type: SCAN_TASK_CREATED,
        source,
    })?;
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

/// `ScanCompleted` v1 → v2: each vulnerability's `fixed_by` update ids become positions in
/// `required`, in the same order; every other field is unchanged. An update required through two
/// installed packages has two entries: the position is the first of them whose CVEs include the
/// vulnerability (the entry that exposes the device, as version 2 writes it), or else the first.
pub fn scan_completed_v1_to_v2(v1: &[u8]) -> Result<Vec<u8>, UpcastError> {
    let old = ScanCompletedV1::decode(v1).map_err(|source| UpcastError::Malformed {
        event_type: SCAN_COMPLETED,
        source,
    })?;
    let mut entries: std::collections::HashMap<&str, Vec<usize>> =
        std::collections::HashMap::with_capacity(old.required.len());
    for (position, required) in old.required.iter().enumerate() {
        entries
            .entry(required.update_id.as_str())
            .or_default()
            .push(position);
    }
    let position_of = |update_id: &str, cve_id: &str| {
        let positions = entries.get(update_id)?;
        let exposing = positions
            .iter()
            .find(|&&p| old.required[p].cve_ids.iter().any(|c| c == cve_id));
        exposing
            .or(positions.first())
            .map(|&p| u32::try_from(p).unwrap_or(u32::MAX))
    };
    let vulnerabilities = old
        .vulnerabilities
        .into_iter()
        .map(|vulnerability| {
            let fixed_by_required = vulnerability
                .fixed_by
                .iter()
                .map(|update_id| {
                    position_of(update_id, &vulnerability.cve_id).ok_or_else(|| {
                        UpcastError::UnknownFix {
                            cve_id: vulnerability.cve_id.clone(),
                            update_id: update_id.clone(),
                        }
                    })
                })
                .collect::<Result<Vec<u32>, UpcastError>>()?;
            Ok(pb::ScanVulnerability {
                cve_id: vulnerability.cve_id,
                known_exploited: vulnerability.known_exploited,
                fixed_by_required,
            })
        })
        .collect::<Result<Vec<_>, UpcastError>>()?;
    Ok(pb::ScanCompleted {
        device_id: old.device_id,
        task_id: old.task_id,
        run: old.run,
        required: old.required,
        vulnerabilities,
        catalog_position: old.catalog_position,
        problems: old.problems,
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
        assert!(matches!(malformed, UpcastError::Malformed { .. }));
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

    fn required(update_id: &str, package: &str, cve_ids: &[&str]) -> pb::RequiredUpdate {
        pb::RequiredUpdate {
            update_id: update_id.into(),
            package_or_product: package.into(),
            installed_version: "1.0-1".into(),
            required_version: "1.0-2".into(),
            architecture: "amd64".into(),
            cve_ids: cve_ids.iter().map(|&c| c.to_owned()).collect(),
            known_exploited: false,
        }
    }

    /// One update required through two installed packages (the older one skipped a version that
    /// fixed CVE-2024-3 too), as the engine may report it.
    fn required_entries() -> Vec<pb::RequiredUpdate> {
        vec![
            required("u-b", "libfoo", &["CVE-2024-1"]),
            required("u-a", "bash", &["CVE-2024-1", "CVE-2024-2"]),
            required("u-b", "libfoo-old", &["CVE-2024-1", "CVE-2024-3"]),
        ]
    }

    fn scan_v1(fixed_by: &[&str]) -> Vec<u8> {
        ScanCompletedV1 {
            device_id: "d1".into(),
            task_id: "t1".into(),
            run: 3,
            required: required_entries(),
            vulnerabilities: vec![
                FoundVulnerabilityV1 {
                    cve_id: "CVE-2024-1".into(),
                    known_exploited: true,
                    fixed_by: fixed_by.iter().map(|&id| id.to_owned()).collect(),
                },
                FoundVulnerabilityV1 {
                    cve_id: "CVE-2024-2".into(),
                    known_exploited: false,
                    fixed_by: vec!["u-a".into()],
                },
                FoundVulnerabilityV1 {
                    cve_id: "CVE-2024-3".into(),
                    known_exploited: false,
                    fixed_by: vec!["u-b".into()],
                },
            ],
            catalog_position: 42,
            problems: vec!["package x: version 'y' is not a Debian version".into()],
        }
        .encode_to_vec()
    }

    #[test]
    fn a_v1_scan_names_its_fixes_by_position_in_v2_and_keeps_everything_else() {
        // Given a v1 scan whose vulnerabilities are fixed by an update required twice,
        // when it is upgraded,
        let v2 = scan_completed_v1_to_v2(&scan_v1(&["u-a", "u-b"])).unwrap();
        // then each id becomes the position of its first entry that carries the CVE, in the
        // same order.
        assert_eq!(
            pb::ScanCompleted::decode(v2.as_slice()).unwrap(),
            pb::ScanCompleted {
                device_id: "d1".into(),
                task_id: "t1".into(),
                run: 3,
                required: required_entries(),
                vulnerabilities: vec![
                    pb::ScanVulnerability {
                        cve_id: "CVE-2024-1".into(),
                        known_exploited: true,
                        fixed_by_required: vec![1, 0],
                    },
                    pb::ScanVulnerability {
                        cve_id: "CVE-2024-2".into(),
                        known_exploited: false,
                        fixed_by_required: vec![1],
                    },
                    pb::ScanVulnerability {
                        cve_id: "CVE-2024-3".into(),
                        known_exploited: false,
                        fixed_by_required: vec![2],
                    },
                ],
                catalog_position: 42,
                problems: vec!["package x: version 'y' is not a Debian version".into()],
            }
        );
        // And the ids are gone from the bytes: read as v1, no vulnerability names a fix.
        let as_v1 = ScanCompletedV1::decode(v2.as_slice()).unwrap();
        assert!(as_v1.vulnerabilities.iter().all(|v| v.fixed_by.is_empty()));
    }

    #[test]
    fn a_v1_scan_naming_a_fix_it_does_not_require_is_a_clear_error() {
        let error = scan_completed_v1_to_v2(&scan_v1(&["u-a", "u-zzz"])).unwrap_err();
        assert!(matches!(error, UpcastError::UnknownFix { .. }));
        let message = error.to_string();
        assert!(
            message.contains("CVE-2024-1") && message.contains("\"u-zzz\""),
            "{message}"
        );
        let malformed = scan_completed_v1_to_v2(&[0x2a, 0x05, 0x01]).unwrap_err();
        assert!(
            malformed
                .to_string()
                .contains("ScanCompleted v1 payload does not decode"),
            "{malformed}"
        );
    }

    #[test]
    fn the_registry_upgrades_stored_v1_scans() {
        let upgraded = upcasters()
            .apply(stored(SCAN_COMPLETED, 1, scan_v1(&["u-b"])))
            .unwrap();
        assert_eq!(upgraded.schema_version, 2);
        let scan = pb::ScanCompleted::decode(upgraded.payload.as_slice()).unwrap();
        assert_eq!(scan.vulnerabilities[0].fixed_by_required, [0]);
    }
}
