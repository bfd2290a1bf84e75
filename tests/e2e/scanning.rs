//! Stages 1-3 end to end in embedded mode: apt indexes imported, a Debian agent reports its dpkg
//! database once, a scan computes exactly the updates `apt list --upgradable` would show.

use std::time::Duration;

use patchbay::agent::{AgentConfig, DebianPaths, Executor, report_once};
use patchbay_proto::catalog::v1 as catalog;
use patchbay_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use patchbay_proto::scanning::v1 as pb;
use patchbay_proto::scanning::v1::scanning_service_client::ScanningServiceClient;

use crate::helpers::{fixture, import_apt as import, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debian_agent_scan_finds_exactly_the_upgradable_packages() {
    let app = spawn_app().await;
    let mut catalog = CatalogServiceClient::connect(app.url()).await.unwrap();
    import(
        &mut catalog,
        "bookworm-security_Packages",
        "bookworm-security",
    )
    .await;
    import(&mut catalog, "bookworm_Packages", "bookworm").await;
    import(
        &mut catalog,
        "bookworm-updates_Packages",
        "bookworm-updates",
    )
    .await;

    let device = fixture("debian-device");
    let config = AgentConfig {
        server: app.url(),
        executor: Executor::Debian(DebianPaths {
            dpkg_status: device.join("status"),
            apt_sources: device.join("apt"),
            os_release: device.join("os-release"),
        }),
        state_dir: app.data.dir.path().join("agent"),
        hostname: "web-1".into(),
        groups: vec!["web".into()],
        interval: Duration::from_secs(3600),
    };
    let (identity, changed) = report_once(&config).await.unwrap();
    assert!(changed);
    // A second run reuses the saved identity and reports nothing new.
    let (again, changed) = report_once(&config).await.unwrap();
    assert_eq!((again, changed), (identity.clone(), false));

    let mut scanning = ScanningServiceClient::connect(app.url()).await.unwrap();
    // The scanning service learns the catalog through events; scan until its index has caught up.
    let mut required = Vec::new();
    for _ in 0..100 {
        let run = scanning
            .run_scan(pb::RunScanRequest { targets: None })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((run.devices_scanned, run.devices_without_inventory), (1, 0));
        let found = scanning
            .get_required(pb::GetRequiredRequest {
                device_ids: vec![identity.device_id.clone()],
            })
            .await
            .unwrap()
            .into_inner();
        required = found.devices[0].required.clone();
        if found.devices[0].catalog_position >= 7 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut seen: Vec<_> = required
        .iter()
        .map(|r| {
            (
                r.package_or_product.as_str(),
                r.installed_version.as_str(),
                r.required_version.as_str(),
                r.update_id.as_str(),
            )
        })
        .collect();
    seen.sort();
    // openssl and git have newer versions in the device's suites (git: the highest of two). Not
    // required: libssl3 (same version), libc6:i386 (only amd64 offered), tzdata (newer only in
    // bookworm-updates, which the device does not use), curl (removed, config files only).
    assert_eq!(
        seen,
        vec![
            (
                "git",
                "1:2.39.2-1.1",
                "1:2.39.5-0+deb12u2",
                "deb:git:1:2.39.5-0+deb12u2:amd64"
            ),
            (
                "openssl",
                "3.0.11-1~deb12u2",
                "3.0.17-1~deb12u2",
                "deb:openssl:3.0.17-1~deb12u2:amd64"
            ),
        ]
    );

    let devices = scanning
        .list_devices(pb::ListDevicesRequest {
            group: "web".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .devices;
    assert_eq!(devices.len(), 1);
    assert_eq!(
        (devices[0].hostname.as_str(), devices[0].os.as_str()),
        ("web-1", "Debian GNU/Linux 12 (bookworm)")
    );
    assert_eq!(devices[0].required_count, 2);

    // The catalog learns what the scan found: both updates are required by one device.
    let mut required_by_one = Vec::new();
    for _ in 0..100 {
        let list = catalog
            .list_updates(catalog::ListUpdatesRequest {
                min_required_devices: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        required_by_one = list
            .updates
            .iter()
            .map(|u| (u.update_id.clone(), u.required_by_devices))
            .collect();
        if required_by_one.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        required_by_one,
        vec![
            ("deb:git:1:2.39.5-0+deb12u2:amd64".to_owned(), 1),
            ("deb:openssl:3.0.17-1~deb12u2:amd64".to_owned(), 1)
        ]
    );
    let shown = catalog
        .get_update(catalog::GetUpdateRequest {
            update_id: "deb:git:1:2.39.5-0+deb12u1:amd64".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        shown.statistics.map(|s| (s.required, s.not_required)),
        Some((0, 1))
    );

    // Groups can be changed; a completed scan task cannot be paused.
    let device = scanning
        .set_device_groups(pb::SetDeviceGroupsRequest {
            device_id: identity.device_id.clone(),
            groups: vec!["db".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(device.groups, ["db"]);
    let tasks = scanning
        .list_scan_tasks(pb::ListScanTasksRequest {})
        .await
        .unwrap()
        .into_inner()
        .tasks;
    let default = tasks.iter().find(|t| t.task_id == "default").unwrap();
    assert_eq!(
        (default.schedule.as_str(), default.status.as_str()),
        ("weekly", "completed")
    );
    let paused = scanning
        .pause_scan_task(pb::ScanTaskRequest {
            task_id: "default".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(paused.code(), tonic::Code::InvalidArgument);
    assert!(
        paused.message().contains("cannot pause"),
        "{}",
        paused.message()
    );

    // A wrong credential and an unknown device are refused.
    let mut agents =
        patchbay_proto::scanning::v1::agent_service_client::AgentServiceClient::connect(app.url())
            .await
            .unwrap();
    let wrong = agents
        .report_inventory(pb::ReportInventoryRequest {
            device_id: identity.device_id.clone(),
            credential: "guess".into(),
            inventory: Some(Default::default()),
        })
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
    let unknown = scanning
        .get_required(pb::GetRequiredRequest {
            device_ids: vec!["nope".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    app.stop().await.unwrap();
}
