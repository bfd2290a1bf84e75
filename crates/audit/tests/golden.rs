//! Upgrading Patchbay never loses history: every event payload in the golden fixture (written by
//! an earlier Patchbay, see `tests/e2e/golden.rs`) still decodes, after its service's upcasters
//! have upgraded it as a store read does — as its service's typed event and to the JSON the
//! current schema gives it — and each service's events still replay into its read model.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use chrono::Utc;
use patchbay_approvals::events::ApprovalsEvent;
use patchbay_approvals::view::ApprovalsView;
use patchbay_audit::EventDecoder;
use patchbay_catalog::events::CatalogEvent;
use patchbay_catalog::view::CatalogView;
use patchbay_eventstore::{
    EventMetadata, LogPosition, Projection, RecordedEvent, Snapshottable, Upcasters,
};
use patchbay_installing::events::InstallingEvent;
use patchbay_installing::view::InstallingView;
use patchbay_proto::scanning::v1 as scanning_pb;
use patchbay_scanning::events::ScanningEvent;
use patchbay_scanning::view::ScanningView;
use patchbay_wsus_sync::events::WsusEvent;
use patchbay_wsus_sync::view::WsusView;
use uuid::Uuid;

struct GoldenEvent {
    service: String,
    /// As stored by the Patchbay that wrote the fixture.
    event: RecordedEvent,
    /// Its payload as JSON, as that Patchbay decoded it.
    json: serde_json::Value,
}

/// The upcasters a store of `service`'s log is opened with (`patchbay::services::upcasters`).
fn upcasters(service: &str) -> Upcasters {
    match service {
        "scanning" => patchbay_scanning::upcast::upcasters(),
        _ => Upcasters::new(),
    }
}

impl GoldenEvent {
    /// The event as a store read gives it today: upgraded to its type's current version.
    fn upcast(&self) -> RecordedEvent {
        upcasters(&self.service)
            .apply(self.event.clone())
            .unwrap_or_else(|e| panic!("{} {}: {e}", self.service, self.event.event_type))
    }

    /// The JSON the upcast payload must decode to: the fixture's, with every change a schema
    /// version made since applied to it by hand (so a wrong upcaster cannot agree with itself).
    fn expected_json(&self) -> serde_json::Value {
        let mut json = self.json.clone();
        if self.service == "scanning"
            && self.event.event_type == "ScanTaskCreated"
            && self.event.schema_version == 1
        {
            // v2: the schedule text became the ScanSchedule enum ("" meant weekly).
            let schedule = match json["schedule"].as_str().unwrap_or("") {
                "" | "weekly" => "SCAN_SCHEDULE_WEEKLY",
                "daily" => "SCAN_SCHEDULE_DAILY",
                "manual" => "SCAN_SCHEDULE_MANUAL",
                other => panic!("the fixture holds a schedule v1 never wrote: {other}"),
            };
            json["schedule"] = schedule.into();
        }
        if self.service == "scanning"
            && self.event.event_type == "ScanCompleted"
            && self.event.schema_version == 1
        {
            // v2: a vulnerability's `fixedBy` ids became positions in `required`: of each id's
            // entries, the first that lists the CVE (`fixedByRequired`).
            let entries: Vec<(String, Vec<String>)> = json["required"]
                .as_array()
                .map(|required| {
                    required
                        .iter()
                        .map(|r| {
                            let cves = r["cveIds"].as_array().into_iter().flatten();
                            (
                                r["updateId"].as_str().unwrap_or("").to_owned(),
                                cves.map(|c| c.as_str().unwrap_or("").to_owned()).collect(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            if let Some(vulnerabilities) = json
                .get_mut("vulnerabilities")
                .and_then(serde_json::Value::as_array_mut)
            {
                for vulnerability in vulnerabilities {
                    let object = vulnerability.as_object_mut().unwrap();
                    let cve = object["cveId"].as_str().unwrap_or("").to_owned();
                    let fixed_by = object.remove("fixedBy").unwrap_or_default();
                    let positions: Vec<usize> = fixed_by
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|id| {
                            entries
                                .iter()
                                .position(|(known, cves)| id == known && cves.contains(&cve))
                                .unwrap()
                        })
                        .collect();
                    if !positions.is_empty() {
                        object.insert("fixedByRequired".into(), positions.into());
                    }
                }
            }
        }
        json
    }
}

fn golden() -> Vec<GoldenEvent> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/golden/events-v1.jsonl"
    );
    let text = std::fs::read_to_string(path).expect("the golden fixture");
    text.lines()
        .enumerate()
        .map(|(index, line)| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            let id = Uuid::now_v7();
            GoldenEvent {
                service: value["service"].as_str().unwrap().to_owned(),
                json: value["json"].clone(),
                event: RecordedEvent {
                    position: LogPosition {
                        commit_id: 0,
                        global_position: index as u64 + 1,
                    },
                    stream_id: value["stream_id"].as_str().unwrap().to_owned(),
                    stream_version: 1,
                    event_id: id,
                    event_type: value["event_type"].as_str().unwrap().to_owned(),
                    schema_version: u32::try_from(value["schema_version"].as_u64().unwrap())
                        .unwrap(),
                    payload: base64::engine::general_purpose::STANDARD
                        .decode(value["payload_base64"].as_str().unwrap())
                        .unwrap(),
                    metadata: EventMetadata {
                        correlation_id: id,
                        causation_id: None,
                        actor: "golden".into(),
                        traceparent: None,
                        tracestate: None,
                    },
                    recorded_at: Utc::now(),
                },
            }
        })
        .collect()
}

#[test]
fn every_golden_payload_decodes_as_its_typed_event_and_to_the_same_json() {
    let events = golden();
    assert!(events.len() >= 50, "the fixture covers a whole scenario");
    let decoder = EventDecoder::new().unwrap();
    for golden in &events {
        let e = &golden.upcast();
        let typed = match golden.service.as_str() {
            "catalog" => CatalogEvent::decode(&e.event_type, e.schema_version, &e.payload)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            "approvals" => ApprovalsEvent::decode(&e.event_type, e.schema_version, &e.payload)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            "scanning" => ScanningEvent::decode(&e.event_type, e.schema_version, &e.payload)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            "installing" => InstallingEvent::decode(&e.event_type, e.schema_version, &e.payload)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            "wsus-sync" => WsusEvent::decode(&e.event_type, e.schema_version, &e.payload)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            other => Err(format!("unknown service {other}")),
        };
        assert!(
            typed.is_ok(),
            "{} {}: {typed:?}",
            golden.service,
            e.event_type
        );
        let json = decoder
            .to_json(&golden.service, &e.event_type, &e.payload)
            .unwrap();
        assert_eq!(
            json,
            golden.expected_json(),
            "{} {} decodes differently: a field was renumbered or retyped, or an upcaster is wrong",
            golden.service,
            e.event_type
        );
    }
}

#[test]
fn v1_scan_tasks_decode_as_v2_with_their_schedule_as_the_enum() {
    // Given the fixture's ScanTaskCreated events, all written at schema version 1,
    let created: Vec<_> = golden()
        .into_iter()
        .filter(|g| g.service == "scanning" && g.event.event_type == "ScanTaskCreated")
        .collect();
    assert!(created.len() >= 2);
    for golden in &created {
        assert_eq!(golden.event.schema_version, 1);
        // a decoder never reads them as stored: that would drop the schedule,
        let stored = &golden.event;
        let refused = ScanningEvent::decode(&stored.event_type, 1, &stored.payload).unwrap_err();
        assert!(refused.to_string().contains("upcasters"), "{refused}");
        // but upcast, they are v2 and keep everything v1 said.
        let upcast = golden.upcast();
        assert_eq!(upcast.schema_version, 2);
        let ScanningEvent::ScanTaskCreated(task) =
            ScanningEvent::decode(&upcast.event_type, upcast.schema_version, &upcast.payload)
                .unwrap()
        else {
            panic!("not a ScanTaskCreated")
        };
        let v1 = &golden.json;
        assert_eq!(task.task_id, v1["taskId"].as_str().unwrap());
        assert_eq!(task.name, v1["name"].as_str().unwrap());
        assert_eq!(
            task.targets.as_ref().unwrap().all_devices,
            v1["targets"]["allDevices"].as_bool().unwrap()
        );
        let expected = match v1["schedule"].as_str().unwrap() {
            "weekly" => scanning_pb::ScanSchedule::Weekly,
            "daily" => scanning_pb::ScanSchedule::Daily,
            "manual" => scanning_pb::ScanSchedule::Manual,
            other => panic!("schedule {other}"),
        };
        assert_eq!(task.schedule(), expected, "{}", task.task_id);
    }
}

/// Replays `service`'s golden events, upcast as a store read gives them, into a fresh `P`.
fn replay<P: Projection>(events: &[GoldenEvent], service: &str) -> (P, usize) {
    let mut view = P::default();
    let mut applied = 0;
    for golden in events.iter().filter(|g| g.service == service) {
        view.apply(&golden.upcast())
            .unwrap_or_else(|e| panic!("{service} {}: {e}", golden.event.event_type));
        applied += 1;
    }
    (view, applied)
}

#[test]
fn every_service_replays_its_golden_history_into_its_read_model() {
    let events = golden();
    assert!(replay::<CatalogView>(&events, "catalog").1 > 0);
    assert!(replay::<ApprovalsView>(&events, "approvals").1 > 0);
    let (scanning, applied) = replay::<ScanningView>(&events, "scanning");
    assert!(applied > 0);
    assert!(replay::<InstallingView>(&events, "installing").1 > 0);
    assert!(replay::<WsusView>(&events, "wsus-sync").1 > 0);
    // The scan tasks' settings survive the v1 → v2 change of their schedule.
    let schedules: Vec<_> = scanning
        .tasks
        .iter()
        .map(|(id, task)| (id.as_str(), task.state.schedule.as_str()))
        .collect();
    assert_eq!(
        schedules,
        [
            ("01a22a55-3570-7353-976e-5170cb9f2afa", "manual"),
            ("default", "weekly")
        ]
    );
}

/// A snapshot holds the whole read model: written and read back, it is the same model, so time
/// travel from a snapshot cannot differ from a replay from zero.
fn snapshot_round_trip<P>(events: &[GoldenEvent], service: &str)
where
    P: Snapshottable + PartialEq + std::fmt::Debug,
{
    let (view, applied) = replay::<P>(events, service);
    assert!(applied > 0, "{service}");
    let bytes = postcard::to_stdvec(&view).unwrap();
    let restored: P = postcard::from_bytes(&bytes).unwrap();
    assert!(
        restored == view,
        "{service}: the snapshot differs from the model"
    );
}

#[test]
fn every_snapshotted_read_model_survives_a_snapshot_round_trip() {
    let events = golden();
    snapshot_round_trip::<ApprovalsView>(&events, "approvals");
    snapshot_round_trip::<ScanningView>(&events, "scanning");
    snapshot_round_trip::<InstallingView>(&events, "installing");
}
