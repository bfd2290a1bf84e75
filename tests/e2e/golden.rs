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

use crate::helpers::{spawn_app, sync_wsus};
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
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/golden/events-v1.jsonl");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
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
