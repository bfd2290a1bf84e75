//! Managed (first-party) applications end to end, with the real agent and its simulated executor: an
//! update needing a newer server cannot be approved, an update waits for its EULA, a declined
//! first-party uninstallable update is uninstalled and a declined third-party one is not, and the
//! next scan sees what the jobs changed.

use std::time::Duration;

use patchbay::agent::{
    AgentConfig, DebianJobs, DebianPaths, Executor, JobSettings, read_debian_inventory,
};
use patchbay_proto::approvals::v1 as approvals;
use patchbay_proto::approvals::v1::approvals_service_client::ApprovalsServiceClient;
use patchbay_proto::catalog::v1 as catalog;
use patchbay_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use patchbay_proto::installing::v1 as pb;
use patchbay_proto::installing::v1::installing_service_client::InstallingServiceClient;
use patchbay_proto::scanning::v1 as scanning;
use patchbay_proto::scanning::v1::scanning_service_client::ScanningServiceClient;
use tokio_util::sync::CancellationToken;

use crate::helpers::{fixture, spawn_app};
use crate::installing::eventually;

const TOOLS: &str = "app:patchbay-tools:1.4.2-1:amd64";
const REPORTING: &str = "app:patchbay-reporting:2.1.0-1:amd64";
const COLLECTOR: &str = "app:patchbay-collector:3.0.0-1:amd64";
const VPN: &str = "app:contoso-vpn-client:5.2.1-1:amd64";
const REPORTING_EULA: &str = "patchbay-reporting-eula-2";

/// (update, kind, status) of every job, sorted.
async fn job_states(
    installing: &mut InstallingServiceClient<tonic::transport::Channel>,
) -> Vec<(String, i32, i32)> {
    let mut states: Vec<_> = installing
        .list_jobs(pb::ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .jobs
        .into_iter()
        .map(|j| {
            let job = j.job.unwrap();
            (job.update_id, job.kind, j.status)
        })
        .collect();
    states.sort();
    states
}

const INSTALL: i32 = pb::JobKind::Install as i32;
const UNINSTALL: i32 = pb::JobKind::Uninstall as i32;
const SUCCEEDED: i32 = pb::JobStatus::Succeeded as i32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_apps_min_version_eula_and_uninstall_with_the_real_agent() {
    let app = spawn_app().await;
    let url = app.url();
    let mut catalog_client = CatalogServiceClient::connect(url.clone()).await.unwrap();
    let summary = catalog_client
        .import_manifest(catalog::ImportManifestRequest {
            json: std::fs::read(fixture("managed-apps.json")).unwrap(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.published, 4, "{summary:?}");

    let mut installing = InstallingServiceClient::connect(url.clone()).await.unwrap();
    installing
        .create_task(pb::CreateTaskRequest {
            name: "Install approved updates".into(),
            kind: pb::TaskKind::InstallRequired as i32,
            targets: Some(pb::InstallTargets {
                all_devices: true,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();

    // The agent: the managed device's dpkg database, run by the simulated executor.
    let device = fixture("managed-device");
    let paths = DebianPaths {
        dpkg_status: device.join("status"),
        apt_sources: device.join("apt"),
        os_release: device.join("os-release"),
    };
    let (inventory, _) = read_debian_inventory(&paths).unwrap();
    let agent_stop = CancellationToken::new();
    let agent = tokio::spawn(patchbay::agent::run(
        AgentConfig {
            server: url.clone(),
            executor: Executor::Simulated(inventory),
            state_dir: app.data.dir.path().join("agent"),
            hostname: "app-1".into(),
            groups: vec![],
            interval: Duration::from_millis(300),
        },
        JobSettings {
            server: url.clone(),
            debian: DebianJobs::default(),
            fail_share: 0.0,
        },
        agent_stop.clone(),
    ));

    let scans = ScanningServiceClient::connect(url.clone()).await.unwrap();
    let required = |expected: usize| {
        let scans = scans.clone();
        move || {
            let mut scans = scans.clone();
            async move {
                scans
                    .run_scan(scanning::RunScanRequest { targets: None })
                    .await
                    .unwrap();
                let found = scans
                    .get_required(scanning::GetRequiredRequest::default())
                    .await
                    .ok()?
                    .into_inner();
                let device = found.devices.first()?;
                let mut ids: Vec<String> = device
                    .required
                    .iter()
                    .map(|r| r.update_id.clone())
                    .collect();
                ids.sort();
                (ids.len() == expected).then_some(ids)
            }
        }
    };
    let needed = eventually("the device to need the four managed updates", required(4)).await;
    assert_eq!(needed, [VPN, COLLECTOR, REPORTING, TOOLS]);

    // An update needing a newer Patchbay server cannot be approved.
    let mut approvals_client = ApprovalsServiceClient::connect(url.clone()).await.unwrap();
    let approve = |ids: &[&str]| approvals::SetApprovalRequest {
        status: approvals::ApprovalStatus::Approved as i32,
        update_ids: ids.iter().map(|id| id.to_string()).collect(),
        ..Default::default()
    };
    let refused = eventually("the approvals service to know the collector update", || {
        let mut client = approvals_client.clone();
        let request = approve(&[COLLECTOR]);
        async move {
            match client.set_approval(request).await {
                Err(status) if status.code() != tonic::Code::NotFound => Some(status),
                _ => None,
            }
        }
    })
    .await;
    assert!(refused.message().contains("99.0.0"), "{refused:?}");

    approvals_client
        .set_approval(approve(&[TOOLS, REPORTING, VPN]))
        .await
        .unwrap();
    // Tools and the VPN client install; reporting waits for its EULA.
    eventually("tools and vpn installed", || {
        let mut installing = installing.clone();
        async move {
            let states = job_states(&mut installing).await;
            (states
                == [
                    (VPN.to_owned(), INSTALL, SUCCEEDED),
                    (TOOLS.to_owned(), INSTALL, SUCCEEDED),
                ])
            .then_some(())
        }
    })
    .await;

    approvals_client
        .set_eula(approvals::SetEulaRequest {
            eula_id: REPORTING_EULA.into(),
            accept: true,
        })
        .await
        .unwrap();
    eventually("reporting installed once its EULA is accepted", || {
        let mut installing = installing.clone();
        async move {
            let states = job_states(&mut installing).await;
            states
                .contains(&(REPORTING.to_owned(), INSTALL, SUCCEEDED))
                .then_some(())
        }
    })
    .await;

    // Declined: the first-party uninstallable update comes off the device; the third-party one stays.
    for id in [TOOLS, VPN] {
        approvals_client
            .set_approval(approvals::SetApprovalRequest {
                status: approvals::ApprovalStatus::Declined as i32,
                update_ids: vec![id.into()],
                reason: "withdrawn".into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    eventually("tools uninstalled", || {
        let mut installing = installing.clone();
        async move {
            let states = job_states(&mut installing).await;
            states
                .contains(&(TOOLS.to_owned(), UNINSTALL, SUCCEEDED))
                .then_some(states)
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let states = job_states(&mut installing).await;
    assert_eq!(
        states,
        [
            (VPN.to_owned(), INSTALL, SUCCEEDED),
            (REPORTING.to_owned(), INSTALL, SUCCEEDED),
            (TOOLS.to_owned(), INSTALL, SUCCEEDED),
            (TOOLS.to_owned(), UNINSTALL, SUCCEEDED),
        ]
    );

    // The agent reported what the jobs changed: only the collector is still required (tools is gone
    // from the device, so nothing of it is required any more).
    let left = eventually("the next scan to see the jobs' effect", required(1)).await;
    assert_eq!(left, [COLLECTOR]);

    // The SOFTWARE UPDATES list learned the jobs and approvals from their events: tools was
    // uninstalled, the VPN client stays installed, and both are listed as declined.
    eventually(
        "the catalog's installation statistics and approval status",
        || {
            let mut client = catalog_client.clone();
            async move {
                let mut installed = Vec::new();
                for id in [TOOLS, VPN] {
                    let detail = client
                        .get_update(catalog::GetUpdateRequest {
                            update_id: id.into(),
                        })
                        .await
                        .unwrap()
                        .into_inner();
                    installed.push(detail.statistics?.installed);
                }
                let mut declined: Vec<String> = client
                    .list_updates(catalog::ListUpdatesRequest {
                        approval_status: Some(catalog::ApprovalStatus::Declined as i32),
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .updates
                    .into_iter()
                    .map(|u| u.update_id)
                    .collect();
                declined.sort();
                (installed == [0, 1] && declined == [VPN, TOOLS]).then_some(())
            }
        },
    )
    .await;

    agent_stop.cancel();
    agent.await.unwrap().unwrap();
    app.stop().await.unwrap();
}
