//! Upgrading Patchbay never loses history: every event payload in the golden fixture (written by
//! an earlier Patchbay, see `tests/e2e/golden.rs`) still decodes — as its service's typed event and
//! to the same JSON — and each service's events still replay into its read model.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use chrono::Utc;
use patchbay_approvals::events::ApprovalsEvent;
use patchbay_approvals::view::ApprovalsView;
use patchbay_audit::EventDecoder;
use patchbay_catalog::events::CatalogEvent;
use patchbay_catalog::view::CatalogView;
use patchbay_eventstore::{EventMetadata, LogPosition, Projection, RecordedEvent};
use patchbay_installing::events::InstallingEvent;
use patchbay_installing::view::InstallingView;
use patchbay_scanning::events::ScanningEvent;
use patchbay_scanning::view::ScanningView;
use patchbay_wsus_sync::events::WsusEvent;
use patchbay_wsus_sync::view::WsusView;
use uuid::Uuid;

struct GoldenEvent {
    service: String,
    event: RecordedEvent,
    json: serde_json::Value,
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
        let e = &golden.event;
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
            json, golden.json,
            "{} {} decodes differently: a field was renumbered or retyped",
            golden.service, e.event_type
        );
    }
}

fn replay<P: Projection>(events: &[GoldenEvent], service: &str) -> usize {
    let mut view = P::default();
    let mut applied = 0;
    for golden in events.iter().filter(|g| g.service == service) {
        view.apply(&golden.event)
            .unwrap_or_else(|e| panic!("{service} {}: {e}", golden.event.event_type));
        applied += 1;
    }
    applied
}

#[test]
fn every_service_replays_its_golden_history_into_its_read_model() {
    let events = golden();
    assert!(replay::<CatalogView>(&events, "catalog") > 0);
    assert!(replay::<ApprovalsView>(&events, "approvals") > 0);
    assert!(replay::<ScanningView>(&events, "scanning") > 0);
    assert!(replay::<InstallingView>(&events, "installing") > 0);
    assert!(replay::<WsusView>(&events, "wsus-sync") > 0);
}
