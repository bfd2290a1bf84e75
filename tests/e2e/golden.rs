//! Writes the golden fixture of event payloads (`tests/fixtures/golden/events-v1.jsonl`): the logs of
//! a whole scenario — apt imports, devices, scans, approvals, install jobs, a WSUS sync — as this
//! Patchbay writes them. Run on purpose only, when the fixture must grow:
//! `PATCHBAY_WRITE_GOLDEN=1 cargo test --test e2e write_golden_event_fixture -- --ignored`.
//! `crates/audit/tests/golden.rs` checks every later Patchbay still reads each of them.

use std::io::Write as _;

use base64::Engine as _;
use patchbay_audit::EventDecoder;
use patchbay_eventstore::{EventStore, LogPosition};
use patchbay_proto::wsus::v1 as wsus;
use patchbay_proto::wsus::v1::wsus_service_client::WsusServiceClient;
use patchbay_wsus_upstream::{FakeUpstream, FixtureCatalog, UpstreamOptions};

use crate::helpers::{spawn_app, spawn_app_on, sync_wsus};
use crate::installing::{Urls, install_scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes the golden fixture; run with PATCHBAY_WRITE_GOLDEN=1 when it must grow"]
async fn write_golden_event_fixture() {
    assert!(
        std::env::var_os("PATCHBAY_WRITE_GOLDEN").is_some(),
        "set PATCHBAY_WRITE_GOLDEN=1 to overwrite the golden fixture"
    );
    let app = spawn_app().await;
    let url = app.url();
    install_scenario(&Urls {
        catalog: url.clone(),
        approvals: url.clone(),
        scanning: url.clone(),
        installing: url.clone(),
    })
    .await;
    let upstream = FakeUpstream::start(FixtureCatalog::sample(), UpstreamOptions::default())
        .await
        .unwrap();
    let mut client = WsusServiceClient::connect(url).await.unwrap();
    client
        .set_config(wsus::SetConfigRequest {
            upstream_url: upstream.url(),
            schedule: "manual".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(sync_wsus(&mut client).await.state, "completed");
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    // Stop the server but keep its data directory to read the logs from.
    let crate::helpers::TestApp {
        data,
        shutdown,
        running,
        ..
    } = app;
    shutdown.cancel();
    running.await.unwrap().unwrap();

    let decoder = EventDecoder::new().unwrap();
    let path = golden_path();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // Old payloads of a type now written at a newer version are history no Patchbay writes any
    // more: they are kept, so the upcasters stay tested against them.
    let previous = if path.exists() {
        golden_lines()
    } else {
        Vec::new()
    };
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for line in &previous {
        let service = line["service"].as_str().unwrap();
        let event_type = line["event_type"].as_str().unwrap();
        let written = match service {
            "scanning" => patchbay_scanning::events::schema_version(event_type),
            _ => 1,
        };
        if line["schema_version"].as_u64().unwrap() < u64::from(written) {
            writeln!(out, "{line}").unwrap();
        }
    }
    for service in patchbay::services::SERVICES {
        let db = data
            .dir
            .path()
            .join("patchbay-data")
            .join(format!("{service}.db"));
        let store = EventStore::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        // At most a few of each type per service: enough to pin every field in use, small enough
        // to review.
        let mut per_type = std::collections::HashMap::<String, usize>::new();
        for event in store.read_all(LogPosition::START, 1_000_000).await.unwrap() {
            let seen = per_type.entry(event.event_type.clone()).or_default();
            *seen += 1;
            if *seen > 3 {
                continue;
            }
            let json = decoder
                .to_json(service, &event.event_type, &event.payload)
                .expect("every event this Patchbay writes decodes");
            let line = serde_json::json!({
                "service": service,
                "stream_id": event.stream_id,
                "event_type": event.event_type,
                "schema_version": event.schema_version,
                "payload_base64": base64::engine::general_purpose::STANDARD.encode(&event.payload),
                "json": json,
            });
            writeln!(out, "{line}").unwrap();
        }
    }
    out.flush().unwrap();
}

/// An upgraded Patchbay started on a scanning log that an earlier one wrote: the v1 events are read
/// through the scanning upcasters, by the service (the task keeps its schedule) and by
/// `patchbay events list` (`AuditService.ReplayEvents` shows them at v2, decoded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scanning_log_written_at_v1_is_served_at_v2() {
    use patchbay_eventstore::ExpectedVersion;
    use patchbay_proto::audit::v1 as audit;
    use patchbay_proto::audit::v1::audit_service_client::AuditServiceClient;
    use patchbay_proto::scanning::v1 as scanning;
    use patchbay_proto::scanning::v1::scanning_service_client::ScanningServiceClient;
    use tokio_stream::StreamExt as _;

    // Given the golden fixture's v1 ScanTaskCreated of a manual task, stored as it was written,
    let line = golden_lines()
        .into_iter()
        .find(|v| v["event_type"] == "ScanTaskCreated" && v["json"]["schedule"] == "manual")
        .unwrap();
    assert_eq!(line["schema_version"], 1);
    let task_id = line["json"]["taskId"].as_str().unwrap().to_owned();
    let (data, raw) = scanning_log().await;
    raw.append(
        &format!("scantask-{task_id}"),
        ExpectedVersion::NoStream,
        &[stored_event(&line)],
    )
    .await
    .unwrap();
    raw.close().await;

    // when this Patchbay starts on it,
    let app = spawn_app_on(data, Default::default()).await;

    // then the scanning service rebuilt the task with its schedule,
    let mut client = ScanningServiceClient::connect(app.url()).await.unwrap();
    let tasks = client
        .list_scan_tasks(scanning::ListScanTasksRequest {})
        .await
        .unwrap()
        .into_inner()
        .tasks;
    let task = tasks.iter().find(|t| t.task_id == task_id).unwrap();
    assert_eq!(task.schedule, "manual");

    // and the event log shows the stored event at v2, its payload decoded to the v2 JSON.
    let mut audit_client = AuditServiceClient::connect(app.url()).await.unwrap();
    let mut stream = audit_client
        .replay_events(audit::ReplayEventsRequest {
            filter: Some(audit::EventFilter {
                service: "scanning".into(),
                stream_id: format!("scantask-{task_id}"),
                ..Default::default()
            }),
            follow: false,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let event = stream.next().await.unwrap().unwrap();
    assert_eq!(
        (event.event_type.as_str(), event.schema_version),
        ("ScanTaskCreated", 2)
    );
    let json: serde_json::Value = serde_json::from_str(&event.payload_json).unwrap();
    let mut expected = line["json"].clone();
    expected["schedule"] = "SCAN_SCHEDULE_MANUAL".into();
    assert_eq!(json, expected);
    app.stop().await.unwrap();
}

/// `ScanCompleted` as schema version 1 wrote it: vulnerabilities named their fixes by update id,
/// in the message the API still answers with (`FoundVulnerability`). A copy of its own, not the
/// upcaster's frozen definition, so that a wrong one there cannot agree with itself here.
#[derive(Clone, PartialEq, prost::Message)]
struct ScanCompletedV1 {
    #[prost(string, tag = "1")]
    device_id: String,
    #[prost(string, tag = "2")]
    task_id: String,
    #[prost(uint64, tag = "3")]
    run: u64,
    #[prost(message, repeated, tag = "4")]
    required: Vec<patchbay_proto::scanning::v1::RequiredUpdate>,
    #[prost(message, repeated, tag = "5")]
    vulnerabilities: Vec<patchbay_proto::scanning::v1::FoundVulnerability>,
    #[prost(uint64, tag = "6")]
    catalog_position: u64,
}

/// An upgraded Patchbay serves a device's last scan stored at `ScanCompleted` v1, vulnerabilities
/// included: the store's upcaster turns fixes named by update id into positions, the view keeps
/// the v2 payload, and `GetRequired` names the fixes by update id again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_scan_is_served_with_its_fixes_by_update_id() {
    use patchbay_eventstore::{ExpectedVersion, NewEvent};
    use patchbay_proto::scanning::v1 as scanning;
    use patchbay_proto::scanning::v1::scanning_service_client::ScanningServiceClient;
    use prost::Message as _;

    // Given a device registered and inventoried by the Patchbay that wrote the golden fixture,
    let lines = golden_lines();
    let registered = lines
        .iter()
        .find(|v| v["service"] == "scanning" && v["event_type"] == "DeviceRegistered")
        .unwrap();
    let device_stream = registered["stream_id"].as_str().unwrap().to_owned();
    let device_id = device_stream.trim_start_matches("device-").to_owned();
    let (data, raw) = scanning_log().await;
    // (and the default scan task's last run, so that no scheduled scan replaces the stored one)
    for line in lines.iter().filter(|v| {
        v["service"] == "scanning"
            && (v["stream_id"] == device_stream.as_str() || v["stream_id"] == "scantask-default")
    }) {
        let stream = line["stream_id"].as_str().unwrap();
        raw.append(stream, ExpectedVersion::Any, &[stored_event(line)])
            .await
            .unwrap();
    }
    // and its last scan stored at v1, one CVE fixed by two updates,
    let required = |update_id: &str, package: &str, cves: &[&str]| scanning::RequiredUpdate {
        update_id: update_id.into(),
        package_or_product: package.into(),
        installed_version: "1.0-1".into(),
        required_version: "1.0-2".into(),
        architecture: "amd64".into(),
        cve_ids: cves.iter().map(|&c| c.to_owned()).collect(),
        known_exploited: false,
    };
    let found = |cve: &str, fixed_by: &[&str]| scanning::FoundVulnerability {
        cve_id: cve.into(),
        known_exploited: cve == "CVE-2024-1",
        fixed_by: fixed_by.iter().map(|&u| u.to_owned()).collect(),
    };
    let v1 = ScanCompletedV1 {
        device_id: device_id.clone(),
        task_id: "t1".into(),
        run: 1,
        required: vec![
            required("deb:git:2", "git", &["CVE-2024-1"]),
            required("deb:openssl:2", "openssl", &["CVE-2024-1", "CVE-2024-2"]),
        ],
        vulnerabilities: vec![
            found("CVE-2024-1", &["deb:git:2", "deb:openssl:2"]),
            found("CVE-2024-2", &["deb:openssl:2"]),
        ],
        catalog_position: 6,
    };
    raw.append(
        &format!("devicescan-{device_id}"),
        ExpectedVersion::Any,
        &[NewEvent::new("ScanCompleted", 1, v1.encode_to_vec())],
    )
    .await
    .unwrap();
    raw.close().await;

    // when this Patchbay starts on that log,
    let app = spawn_app_on(data, Default::default()).await;

    // then the device's required updates and vulnerabilities are those of the stored scan.
    let mut client = ScanningServiceClient::connect(app.url()).await.unwrap();
    let answer = client
        .get_required(scanning::GetRequiredRequest {
            device_ids: vec![device_id.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    let device = &answer.devices[0];
    assert_eq!(device.required, v1.required);
    assert_eq!(device.vulnerabilities, v1.vulnerabilities);
    assert_eq!(device.catalog_position, 6);
    app.stop().await.unwrap();
}

fn golden_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden/events-v1.jsonl")
}

/// The golden fixture's lines (see `write_golden_event_fixture`).
fn golden_lines() -> Vec<serde_json::Value> {
    std::fs::read_to_string(golden_path())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// A fixture line as the event its Patchbay stored: type, schema version and payload bytes.
fn stored_event(line: &serde_json::Value) -> patchbay_eventstore::NewEvent {
    patchbay_eventstore::NewEvent::new(
        line["event_type"].as_str().unwrap(),
        u32::try_from(line["schema_version"].as_u64().unwrap()).unwrap(),
        base64::engine::general_purpose::STANDARD
            .decode(line["payload_base64"].as_str().unwrap())
            .unwrap(),
    )
}

/// A data directory for the embedded server, and its scanning log opened to write a history into
/// before the server starts (close it first).
async fn scanning_log() -> (patchbay_testkit::TestSqlite, EventStore) {
    let data = patchbay_testkit::TestSqlite::new();
    let dir = data.dir.path().join("patchbay-data");
    std::fs::create_dir_all(&dir).unwrap();
    let log = EventStore::connect(&format!("sqlite://{}", dir.join("scanning.db").display()))
        .await
        .unwrap();
    (data, log)
}
