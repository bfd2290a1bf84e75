//! Stage 1 with WSUS end to end in embedded mode: the server syncs from a fake upstream WSUS over
//! the real MS-WSUSSS wire format, the catalog lists the Microsoft updates with KB, classification,
//! product, severity and supersedence, and a scan finds a simulated Windows device's required
//! updates from the KBs it reports.

use std::time::Duration;

use patchbay_proto::catalog::v1 as catalog;
use patchbay_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use patchbay_proto::scanning::v1 as scanning;
use patchbay_proto::scanning::v1::agent_service_client::AgentServiceClient;
use patchbay_proto::scanning::v1::scanning_service_client::ScanningServiceClient;
use patchbay_proto::wsus::v1 as pb;
use patchbay_proto::wsus::v1::wsus_service_client::WsusServiceClient;
use patchbay_wsus_upstream::{FakeUpstream, FixtureCatalog, UpstreamOptions, ids};

use crate::helpers::spawn_app;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wsus_sync_feeds_the_catalog_and_windows_scans() {
    let app = spawn_app().await;
    let upstream = FakeUpstream::start(FixtureCatalog::sample(), UpstreamOptions::default())
        .await
        .unwrap();
    let mut wsus = WsusServiceClient::connect(app.url()).await.unwrap();

    // A product filter without classifications is refused with what to do.
    let refused = wsus
        .set_config(pb::SetConfigRequest {
            upstream_url: upstream.url(),
            product_ids: vec![ids::WINDOWS_11.into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().contains("classification"), "{refused:?}");

    wsus.set_config(pb::SetConfigRequest {
        upstream_url: upstream.url(),
        product_ids: vec![ids::WINDOWS_11.into()],
        classification_ids: vec![ids::SECURITY_UPDATES.into(), ids::CRITICAL_UPDATES.into()],
        schedule: "manual".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let run = crate::helpers::sync_wsus(&mut wsus).await;
    assert_eq!(run.state, "completed", "{run:?}");
    let completed = run.completed.unwrap();
    assert!(completed.new_updates >= 2, "{completed:?}");
    let status = wsus
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!status.updates_anchor.is_empty());
    assert_eq!(status.updates_known, u64::from(completed.new_updates));

    // The catalog learns them through WsusUpdateSynced events.
    let mut catalog_client = CatalogServiceClient::connect(app.url()).await.unwrap();
    let mut updates = Vec::new();
    for _ in 0..200 {
        updates = catalog_client
            .list_updates(catalog::ListUpdatesRequest {
                kind: catalog::UpdateKind::Windows as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .updates;
        if updates.len() as u32 >= completed.new_updates {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let new = updates
        .iter()
        .find(|u| u.update_id == ids::KB_CUMULATIVE_NEW)
        .expect("the new cumulative update is listed");
    let details = new.details.clone().unwrap();
    assert_eq!(details.version, "KB5034123");
    assert_eq!(details.product, "Windows 11");
    assert_eq!(
        details.classification,
        catalog::Classification::Security as i32
    );
    assert_eq!(details.severity, catalog::Severity::Critical as i32);
    assert!(details.cve_ids.iter().any(|c| c == "CVE-2024-20674"));
    let old = updates
        .iter()
        .find(|u| u.update_id == ids::KB_CUMULATIVE_OLD)
        .expect("the old cumulative update is listed");
    assert_eq!(old.superseded_by, ids::KB_CUMULATIVE_NEW);

    // A Windows 11 device that has the old cumulative update installed requires the new one.
    let mut agent = AgentServiceClient::connect(app.url()).await.unwrap();
    let registered = agent
        .register(scanning::RegisterRequest {
            hostname: "win-1".into(),
            groups: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    agent
        .report_inventory(scanning::ReportInventoryRequest {
            device_id: registered.device_id.clone(),
            credential: registered.credential.clone(),
            inventory: Some(scanning::Inventory {
                os: "Windows 11 Enterprise 23H2".into(),
                native_architecture: "amd64".into(),
                installed_kbs: vec!["KB5033375".into()],
                windows_products: vec![ids::WINDOWS_11.into()],
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let mut scans = ScanningServiceClient::connect(app.url()).await.unwrap();
    let mut required = Vec::new();
    for _ in 0..100 {
        scans
            .run_scan(scanning::RunScanRequest { targets: None })
            .await
            .unwrap();
        required = scans
            .get_required(scanning::GetRequiredRequest {
                device_ids: vec![registered.device_id.clone()],
            })
            .await
            .unwrap()
            .into_inner()
            .devices[0]
            .required
            .clone();
        if required
            .iter()
            .any(|r| r.update_id == ids::KB_CUMULATIVE_NEW)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ids_required: Vec<&str> = required.iter().map(|r| r.update_id.as_str()).collect();
    assert!(
        ids_required.contains(&ids::KB_CUMULATIVE_NEW),
        "{required:?}"
    );
    assert!(
        !ids_required.contains(&ids::KB_CUMULATIVE_OLD),
        "installed, and superseded"
    );
    app.stop().await.unwrap();
}
