//! The same flow as `scanning.rs` across separate processes: `patchbay serve catalog` and
//! `patchbay serve scanning`, each with its own PostgreSQL database, talking over NATS JetStream;
//! and `patchbay serve wsus-sync` feeding `patchbay serve catalog` the same way.

use std::time::Duration;

use patchbay::agent::{AgentConfig, DebianPaths, Executor, report_once};
use patchbay_proto::catalog::v1 as catalog;
use patchbay_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use patchbay_proto::scanning::v1 as pb;
use patchbay_proto::scanning::v1::scanning_service_client::ScanningServiceClient;
use patchbay_testkit::{TestPostgres, TestSqlite, nats_url};

use crate::processes::{serve, serve_at};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_and_scanning_as_separate_processes_over_nats_and_postgres() {
    let Some(nats) = nats_url() else { return };
    let Some(catalog_db) = TestPostgres::create().await else {
        return;
    };
    let Some(scanning_db) = TestPostgres::create().await else {
        return;
    };
    let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let catalog_service = serve("catalog", &catalog_db.url, &nats, &prefix).await;
    let scanning_service = serve("scanning", &scanning_db.url, &nats, &prefix).await;

    let mut catalog = CatalogServiceClient::connect(format!("http://{}", catalog_service.address))
        .await
        .unwrap();
    for (file, suite) in [
        ("bookworm-security_Packages", "bookworm-security"),
        ("bookworm_Packages", "bookworm"),
    ] {
        use catalog::import_apt_index_request::Part;
        let data = std::fs::read(format!(
            "{}/tests/fixtures/{file}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let header = catalog::AptIndexHeader {
            file_name: file.into(),
            suite: suite.into(),
            ..Default::default()
        };
        let messages = vec![
            catalog::ImportAptIndexRequest {
                part: Some(Part::Header(header)),
            },
            catalog::ImportAptIndexRequest {
                part: Some(Part::Chunk(data)),
            },
        ];
        catalog
            .import_apt_index(tokio_stream::iter(messages))
            .await
            .unwrap();
    }

    let scanning_url = format!("http://{}", scanning_service.address);
    let device =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/debian-device");
    let state = TestSqlite::new();
    let config = AgentConfig {
        server: scanning_url.clone(),
        executor: Executor::Debian(DebianPaths {
            dpkg_status: device.join("status"),
            apt_sources: device.join("apt"),
            os_release: device.join("os-release"),
        }),
        state_dir: state.dir.path().to_path_buf(),
        hostname: "web-1".into(),
        groups: vec![],
        interval: Duration::from_secs(3600),
    };
    let (identity, _) = report_once(&config).await.unwrap();

    let mut scanning = ScanningServiceClient::connect(scanning_url).await.unwrap();
    let mut required = Vec::new();
    for _ in 0..200 {
        scanning
            .run_scan(pb::RunScanRequest { targets: None })
            .await
            .unwrap();
        let found = scanning
            .get_required(pb::GetRequiredRequest {
                device_ids: vec![identity.device_id.clone()],
            })
            .await
            .unwrap()
            .into_inner();
        required = found.devices[0].required.clone();
        // Six updates imported: the index has them all once it reaches the sixth catalog event.
        if found.devices[0].catalog_position >= 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut seen: Vec<_> = required
        .iter()
        .map(|r| (r.package_or_product.as_str(), r.required_version.as_str()))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("git", "1:2.39.5-0+deb12u2"),
            ("openssl", "3.0.17-1~deb12u2")
        ]
    );

    drop(catalog_service);
    drop(scanning_service);
    let bus = patchbay_bus::Bus::nats(&nats, patchbay_bus::Subjects::new(&prefix).unwrap())
        .await
        .unwrap();
    for service in ["catalog", "scanning", "dlq"] {
        bus.delete_stream(service).await.unwrap();
    }
}

/// The install loop of `installing.rs` with every service in its own process, each with its own
/// PostgreSQL database, over NATS; then the installing service is killed mid-flow and restarted, and
/// no job is lost or queued twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_install_loop_across_processes_survives_killing_the_installing_service() {
    use crate::installing::{
        OPENSSL, Urls, eventually_within, install_scenario, register_old_openssl,
    };
    use patchbay_proto::approvals::v1 as approvals;
    use patchbay_proto::approvals::v1::approvals_service_client::ApprovalsServiceClient;
    use patchbay_proto::installing::v1 as installing;
    use patchbay_proto::installing::v1::installing_service_client::InstallingServiceClient;
    use patchbay_proto::scanning::v1::agent_service_client::AgentServiceClient;

    let Some(nats) = nats_url() else { return };
    let mut databases = Vec::new();
    for _ in 0..4 {
        let Some(database) = TestPostgres::create().await else {
            return;
        };
        databases.push(database);
    }
    let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let names = ["catalog", "approvals", "scanning", "installing"];
    let mut services = Vec::new();
    for (name, database) in names.iter().zip(&databases) {
        services.push(serve(name, &database.url, &nats, &prefix).await);
    }
    let url = |i: usize| format!("http://{}", services[i].address);
    let urls = Urls {
        catalog: url(0),
        approvals: url(1),
        scanning: url(2),
        installing: url(3),
    };
    install_scenario(&urls).await;

    // Twenty more devices need openssl; approving it again (after the scenario declined it) queues
    // it on each of them, while the installing service is killed and restarted.
    let mut agents = AgentServiceClient::connect(urls.scanning.clone())
        .await
        .unwrap();
    let mut fleet = Vec::new();
    for i in 0..20 {
        fleet.push(register_old_openssl(&mut agents, &format!("fleet-{i}"), "fleet").await);
    }
    let mut scanning = ScanningServiceClient::connect(urls.scanning.clone())
        .await
        .unwrap();
    scanning
        .run_scan(pb::RunScanRequest {
            targets: Some(pb::ScanTargets {
                groups: vec!["fleet".into()],
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let mut approvals = ApprovalsServiceClient::connect(urls.approvals.clone())
        .await
        .unwrap();
    approvals
        .set_approval(approvals::SetApprovalRequest {
            status: approvals::ApprovalStatus::Approved as i32,
            update_ids: vec![OPENSSL.into()],
            ..Default::default()
        })
        .await
        .unwrap();
    // Kill it while the approval is on its way, and start it again on the same database.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let installing_address = services[3].address;
    services.pop();
    services.push(
        serve_at(
            "installing",
            &databases[3].url,
            &nats,
            &prefix,
            installing_address,
        )
        .await,
    );

    let mut client = InstallingServiceClient::connect(urls.installing.clone())
        .await
        .unwrap();
    // Messages the killed process had fetched but not acked come back after the consumer's ack wait
    // (30 s): nothing is lost, but recovery can take that long.
    let jobs = eventually_within(
        "openssl queued on all twenty fleet devices",
        Duration::from_secs(90),
        || {
            let mut client = client.clone();
            let fleet = fleet.clone();
            async move {
                let jobs = client
                    .list_jobs(installing::ListJobsRequest {
                        update_id: OPENSSL.into(),
                        ..Default::default()
                    })
                    .await
                    .ok()?
                    .into_inner()
                    .jobs;
                let on_fleet = jobs
                    .iter()
                    .filter(|j| fleet.contains(&j.job.as_ref().unwrap().device_id))
                    .count();
                (on_fleet >= 20).then_some(jobs)
            }
        },
    )
    .await;
    // Let anything still in flight land, then count again: exactly one job per fleet device.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let jobs_after = client
        .list_jobs(installing::ListJobsRequest {
            update_id: OPENSSL.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert_eq!(jobs_after.len(), jobs.len());
    for device_id in &fleet {
        let mine = jobs_after
            .iter()
            .filter(|j| &j.job.as_ref().unwrap().device_id == device_id)
            .count();
        assert_eq!(mine, 1, "device {device_id} has {mine} jobs");
    }

    drop(services);
    let bus = patchbay_bus::Bus::nats(&nats, patchbay_bus::Subjects::new(&prefix).unwrap())
        .await
        .unwrap();
    for service in ["catalog", "approvals", "scanning", "installing", "dlq"] {
        let _ = bus.delete_stream(service).await;
    }
}

/// WSUS sync and the catalog as separate processes: `WsusUpdateSynced` reaches the catalog over
/// NATS JetStream, each service's log in its own PostgreSQL database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wsus_sync_feeds_the_catalog_over_nats() {
    use patchbay_proto::wsus::v1 as wsus;
    use patchbay_proto::wsus::v1::wsus_service_client::WsusServiceClient;
    use patchbay_wsus_upstream::{FakeUpstream, FixtureCatalog, UpstreamOptions, ids};

    let Some(nats) = nats_url() else { return };
    let (Some(catalog_db), Some(wsus_db)) =
        (TestPostgres::create().await, TestPostgres::create().await)
    else {
        return;
    };
    let upstream = FakeUpstream::start(FixtureCatalog::sample(), UpstreamOptions::default())
        .await
        .unwrap();
    let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let catalog_service = serve("catalog", &catalog_db.url, &nats, &prefix).await;
    let wsus_service = serve("wsus-sync", &wsus_db.url, &nats, &prefix).await;

    let mut client = WsusServiceClient::connect(format!("http://{}", wsus_service.address))
        .await
        .unwrap();
    client
        .set_config(wsus::SetConfigRequest {
            upstream_url: upstream.url(),
            schedule: "manual".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let run = crate::helpers::sync_wsus(&mut client).await;
    assert_eq!(run.state, "completed", "{run:?}");
    let synced = run.completed.unwrap().new_updates as usize;

    let mut catalog = CatalogServiceClient::connect(format!("http://{}", catalog_service.address))
        .await
        .unwrap();
    let mut listed = Vec::new();
    for _ in 0..300 {
        listed = catalog
            .list_updates(catalog::ListUpdatesRequest {
                kind: catalog::UpdateKind::Windows as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .updates;
        if listed.len() >= synced {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(listed.len(), synced);
    let old = listed
        .iter()
        .find(|u| u.update_id == ids::KB_CUMULATIVE_OLD)
        .unwrap();
    assert_eq!(old.superseded_by, ids::KB_CUMULATIVE_NEW);
}
