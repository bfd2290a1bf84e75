//! Stages 4, 5 and 7 end to end: import, scan, approve, jobs queued only for approved updates the
//! task's rules allow, agents run them and report, failed jobs retried up to the limit, the run ends
//! with its status, the report counts it, and a declined third-party update is not uninstalled.
//! The same scenario runs in embedded mode and across processes (`distributed.rs`).

use std::time::Duration;

use patchbay::agent::{DebianPaths, read_debian_inventory};
use patchbay_proto::approvals::v1 as approvals;
use patchbay_proto::approvals::v1::approvals_service_client::ApprovalsServiceClient;
use patchbay_proto::audit::v1 as audit_pb;
use patchbay_proto::audit::v1::audit_service_client::AuditServiceClient;
use patchbay_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use patchbay_proto::installing::v1 as pb;
use patchbay_proto::installing::v1::installing_service_client::InstallingServiceClient;
use patchbay_proto::installing::v1::job_agent_service_client::JobAgentServiceClient;
use patchbay_proto::scanning::v1 as scanning;
use patchbay_proto::scanning::v1::agent_service_client::AgentServiceClient;
use patchbay_proto::scanning::v1::scanning_service_client::ScanningServiceClient;
use tonic::transport::Channel;

use patchbay::host::Operations;

use crate::helpers::{fixture, import_apt, spawn_app_with};

pub const OPENSSL: &str = "deb:openssl:3.0.17-1~deb12u2:amd64";

/// Where each service's API is (one URL in embedded mode).
pub struct Urls {
    pub catalog: String,
    pub approvals: String,
    pub scanning: String,
    pub installing: String,
}

pub struct Device {
    pub device_id: String,
    pub credential: String,
}

async fn register(
    agents: &mut AgentServiceClient<Channel>,
    hostname: &str,
    inventory: scanning::Inventory,
) -> Device {
    register_in(agents, hostname, &[], inventory).await
}

/// Registers a device in `groups` and reports `inventory`.
async fn register_in(
    agents: &mut AgentServiceClient<Channel>,
    hostname: &str,
    groups: &[&str],
    inventory: scanning::Inventory,
) -> Device {
    let registered = agents
        .register(scanning::RegisterRequest {
            hostname: hostname.into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        })
        .await
        .unwrap()
        .into_inner();
    agents
        .report_inventory(scanning::ReportInventoryRequest {
            device_id: registered.device_id.clone(),
            credential: registered.credential.clone(),
            inventory: Some(inventory),
        })
        .await
        .unwrap();
    Device {
        device_id: registered.device_id,
        credential: registered.credential,
    }
}

/// Creates "Install required updates and fix vulnerabilities" for all devices, default rules.
pub async fn create_install_required_task(
    installing: &mut InstallingServiceClient<Channel>,
) -> pb::InstallTask {
    installing
        .create_task(pb::CreateTaskRequest {
            name: "Install required updates and fix vulnerabilities".into(),
            kind: pb::TaskKind::InstallRequired as i32,
            rules: Some(pb::InstallRules::default()),
            targets: Some(pb::InstallTargets {
                all_devices: true,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

/// Registers a device in `group` that runs openssl 3.0.11 (so it requires [`OPENSSL`]) and reports
/// its inventory; returns its id.
pub async fn register_old_openssl(
    agents: &mut AgentServiceClient<Channel>,
    hostname: &str,
    group: &str,
) -> String {
    let inventory = scanning::Inventory {
        native_architecture: "amd64".into(),
        packages: vec![scanning::InstalledPackage {
            name: "openssl".into(),
            version: "3.0.11-1~deb12u2".into(),
            architecture: "amd64".into(),
        }],
        apt_suites: vec!["bookworm-security".into()],
        ..Default::default()
    };
    register_in(agents, hostname, &[group], inventory)
        .await
        .device_id
}

/// Polls `check` until it returns `Some`, for up to 20 s.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_within(what, Duration::from_secs(20), check).await
}

/// Polls `check` until it returns `Some`, for up to `limit`.
pub async fn eventually_within<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..(limit.as_millis() / 50) {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn jobs(
    installing: &mut InstallingServiceClient<Channel>,
    task_id: &str,
) -> Vec<pb::JobEntry> {
    installing
        .list_jobs(pb::ListJobsRequest {
            task_id: task_id.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .jobs
}

/// Receives the next job the server streams to a device.
pub async fn next_job(stream: &mut tonic::Streaming<pb::JobAssignment>) -> pb::Job {
    tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("a job within 20 s")
        .unwrap()
        .expect("the job stream stays open")
        .job
        .unwrap()
}

async fn report(
    agent: &mut JobAgentServiceClient<Channel>,
    device: &Device,
    job: &pb::Job,
    outcome: pb::JobOutcome,
) -> Result<(), tonic::Status> {
    agent
        .report_job_result(pb::ReportJobResultRequest {
            device_id: device.device_id.clone(),
            credential: device.credential.clone(),
            job_id: job.job_id.clone(),
            outcome: outcome as i32,
            reason: if outcome == pb::JobOutcome::Failed {
                "E: Sub-process /usr/bin/dpkg returned an error code (1)".into()
            } else {
                String::new()
            },
            output: String::new(),
        })
        .await
        .map(|_| ())
}

/// The whole loop over the APIs at `urls`.
/// Runs the whole install loop; returns web-1 (which still requires git, not approved yet).
pub async fn install_scenario(urls: &Urls) -> Device {
    let mut catalog = CatalogServiceClient::connect(urls.catalog.clone())
        .await
        .unwrap();
    import_apt(
        &mut catalog,
        "bookworm-security_Packages",
        "bookworm-security",
    )
    .await;
    import_apt(&mut catalog, "bookworm_Packages", "bookworm").await;

    // web-1 runs the fixture's dpkg database (needs openssl and git); web-2 has only openssl.
    let mut agents = AgentServiceClient::connect(urls.scanning.clone())
        .await
        .unwrap();
    let device = fixture("debian-device");
    let (full, _) = read_debian_inventory(&DebianPaths {
        dpkg_status: device.join("status"),
        apt_sources: device.join("apt"),
        os_release: device.join("os-release"),
    })
    .unwrap();
    let mut small = full.clone();
    small.packages.retain(|p| p.name == "openssl");
    let web1 = register(&mut agents, "web-1", full).await;
    let web2 = register(&mut agents, "web-2", small).await;

    let mut installing = InstallingServiceClient::connect(urls.installing.clone())
        .await
        .unwrap();
    let task = create_install_required_task(&mut installing).await;

    // Scan until the scanning service has indexed the whole catalog.
    let scans = ScanningServiceClient::connect(urls.scanning.clone())
        .await
        .unwrap();
    eventually("web-1 to require openssl and git", || {
        let mut scans = scans.clone();
        let device_id = web1.device_id.clone();
        async move {
            scans
                .run_scan(scanning::RunScanRequest { targets: None })
                .await
                .unwrap();
            let found = scans
                .get_required(scanning::GetRequiredRequest {
                    device_ids: vec![device_id],
                })
                .await
                .unwrap()
                .into_inner();
            (found.devices[0].required.len() == 2).then_some(())
        }
    })
    .await;
    // Nothing is approved yet: nothing is queued.
    assert!(jobs(&mut installing, &task.task_id).await.is_empty());

    let mut approvals = ApprovalsServiceClient::connect(urls.approvals.clone())
        .await
        .unwrap();
    eventually(
        "the approvals service to know openssl and approve it",
        || {
            let mut approvals = approvals.clone();
            async move {
                approvals
                    .set_approval(approvals::SetApprovalRequest {
                        status: approvals::ApprovalStatus::Approved as i32,
                        update_ids: vec![OPENSSL.into()],
                        reason: "fixes CVE-2024-5535".into(),
                        ..Default::default()
                    })
                    .await
                    .ok()
            }
        },
    )
    .await;

    let queued = eventually("openssl to be queued on both devices", || {
        let mut installing = installing.clone();
        let task_id = task.task_id.clone();
        async move {
            let jobs = jobs(&mut installing, &task_id).await;
            (jobs.len() == 2).then_some(jobs)
        }
    })
    .await;
    assert!(
        queued
            .iter()
            .all(|j| j.job.as_ref().unwrap().update_id == OPENSSL),
        "{queued:?}"
    );
    let web1_job = queued
        .iter()
        .find(|j| j.job.as_ref().unwrap().device_id == web1.device_id)
        .unwrap();
    assert_eq!(web1_job.job.as_ref().unwrap().package, "openssl");
    assert_eq!(web1_job.job.as_ref().unwrap().version, "3.0.17-1~deb12u2");
    // Queued by the approval (or by a scan that the planner saw in the same step as the approval).
    let trigger = web1_job.job.as_ref().unwrap().trigger.as_str();
    assert!(
        ["UpdateApproved", "ScanCompleted"].contains(&trigger),
        "{trigger}"
    );

    // The agents: web-1 succeeds, web-2 fails every attempt (three by default).
    let mut agent = JobAgentServiceClient::connect(urls.installing.clone())
        .await
        .unwrap();
    let mut web1_jobs = agent
        .stream_jobs(pb::StreamJobsRequest {
            device_id: web1.device_id.clone(),
            credential: web1.credential.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let job = next_job(&mut web1_jobs).await;
    assert_eq!(job.update_id, OPENSSL);
    report(&mut agent, &web1, &job, pb::JobOutcome::Succeeded)
        .await
        .unwrap();
    // Reporting the same result again is harmless; a device cannot report another's job.
    report(&mut agent, &web1, &job, pb::JobOutcome::Succeeded)
        .await
        .unwrap();

    let mut web2_jobs = agent
        .stream_jobs(pb::StreamJobsRequest {
            device_id: web2.device_id.clone(),
            credential: web2.credential.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut attempts = Vec::new();
    for _ in 0..3 {
        let job = next_job(&mut web2_jobs).await;
        let stolen = report(&mut agent, &web1, &job, pb::JobOutcome::Succeeded)
            .await
            .unwrap_err();
        assert_eq!(stolen.code(), tonic::Code::PermissionDenied, "{stolen:?}");
        report(&mut agent, &web2, &job, pb::JobOutcome::Failed)
            .await
            .unwrap();
        attempts.push(job.attempt);
    }
    assert_eq!(attempts, [1, 2, 3]);

    let finished = eventually("the run to complete", || {
        let mut installing = installing.clone();
        let task_id = task.task_id.clone();
        async move {
            let task = installing
                .get_task(pb::GetTaskRequest { task_id })
                .await
                .unwrap()
                .into_inner();
            (task.last_run_status != "Running" && !task.last_run_status.is_empty()).then_some(task)
        }
    })
    .await;
    assert_eq!(finished.last_run_status, "Completed with errors");
    let counts = finished.jobs.unwrap();
    assert_eq!((counts.succeeded, counts.failed, counts.queued), (1, 3, 0));

    let install_report = installing
        .get_install_report(pb::InstallReportRequest::default())
        .await
        .unwrap()
        .into_inner();
    let failed: Vec<_> = install_report
        .jobs
        .iter()
        .filter(|j| j.status == pb::JobStatus::Failed as i32)
        .collect();
    assert_eq!(failed.len(), 3);
    assert!(
        failed
            .iter()
            .all(|j| j.hostname == "web-2" && j.reason.contains("dpkg"))
    );

    // A wrong credential is refused; so is an unknown job.
    let wrong = agent
        .stream_jobs(pb::StreamJobsRequest {
            device_id: web1.device_id.clone(),
            credential: "guess".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
    let unknown = report(
        &mut agent,
        &web1,
        &pb::Job {
            job_id: "no-such-job".into(),
            ..Default::default()
        },
        pb::JobOutcome::Succeeded,
    )
    .await
    .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    // Declining the installed third-party update leaves it installed: no uninstall job.
    approvals
        .set_approval(approvals::SetApprovalRequest {
            status: approvals::ApprovalStatus::Declined as i32,
            update_ids: vec![OPENSSL.into()],
            reason: "breaks the web servers".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = jobs(&mut installing, &task.task_id).await;
    assert_eq!(after.len(), 4, "{after:?}");
    assert!(
        after
            .iter()
            .all(|j| j.job.as_ref().unwrap().kind == pb::JobKind::Install as i32)
    );
    web1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_install_and_report_in_embedded_mode() {
    // Snapshots every few events, so that time travel below starts from them.
    let app = spawn_app_with(Operations {
        snapshot_every: 4,
        snapshot_interval: Duration::from_millis(100),
        ..Operations::default()
    })
    .await;
    let url = app.url();
    let started = chrono::Utc::now();
    install_scenario(&Urls {
        catalog: url.clone(),
        approvals: url.clone(),
        scanning: url.clone(),
        installing: url.clone(),
    })
    .await;

    // The provenance trail of the update across every service, in time order.
    let mut audit = AuditServiceClient::connect(url).await.unwrap();
    let trail = audit
        .trail(audit_pb::TrailRequest {
            update_id: OPENSSL.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let steps: Vec<&str> = trail.steps.iter().map(|s| s.step.as_str()).collect();
    let position = |step: &str| {
        steps
            .iter()
            .position(|s| *s == step)
            .unwrap_or_else(|| panic!("no {step:?} in {steps:?}"))
    };
    assert!(
        position("published") < position("found required"),
        "{steps:?}"
    );
    assert!(
        position("approved") < position("install queued"),
        "{steps:?}"
    );
    assert!(
        position("install queued") < position("dispatched"),
        "{steps:?}"
    );
    assert!(position("dispatched") < position("succeeded"), "{steps:?}");
    assert_eq!(
        steps.iter().filter(|s| **s == "failed").count(),
        3,
        "{steps:?}"
    );
    let approved = &trail.steps[position("approved")];
    assert!(
        approved.detail.contains("fixes CVE-2024-5535"),
        "{approved:?}"
    );
    // One device remediated by the install, the other still exposed after three failures.
    let mut how: Vec<&str> = trail.remediations.iter().map(|r| r.how.as_str()).collect();
    how.sort_unstable();
    assert_eq!(how, ["", "installed"], "{:?}", trail.remediations);
    let unknown = audit
        .trail(audit_pb::TrailRequest {
            update_id: "deb:nosuch:1:amd64".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    // Every read model rebuilt from its log equals the live one.
    let rebuilt = audit
        .rebuild_read_models(audit_pb::RebuildRequest {
            service: String::new(),
            verify: true,
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(rebuilt.len(), 5, "{rebuilt:?}");
    for result in &rebuilt {
        assert!(result.verified && result.identical, "{result:?}");
    }
    assert!(
        rebuilt
            .iter()
            .any(|r| r.service == "installing" && r.events > 0)
    );

    // Time travel from snapshots answers as a replay from zero, at moments all through the run.
    let state_at = |at: chrono::DateTime<chrono::Utc>, from_zero| {
        let mut audit = audit.clone();
        async move {
            // A moment before the first event is refused the same way by both.
            match audit
                .state_at(audit_pb::StateAtRequest {
                    at: at.to_rfc3339(),
                    from_zero,
                    ..Default::default()
                })
                .await
            {
                Ok(state) => {
                    let mut state = state.into_inner();
                    (std::mem::take(&mut state.replayed), Ok(state))
                }
                Err(status) => (
                    Vec::new(),
                    Err((status.code(), status.message().to_owned())),
                ),
            }
        }
    };
    let finished = chrono::Utc::now();
    eventually("snapshots of every read model", || async {
        let (replayed, _) = state_at(chrono::Utc::now(), false).await;
        (replayed.iter().filter(|r| r.contains("snapshot")).count() == 3).then_some(())
    })
    .await;
    let mut from_snapshots = 0;
    for step in 1..=12 {
        let at = started + (finished - started) * step / 12;
        let (replayed, fast) = state_at(at, false).await;
        let (_, slow) = state_at(at, true).await;
        assert_eq!(fast, slow, "at {at}: {replayed:?}");
        from_snapshots += replayed.iter().filter(|r| r.contains("snapshot")).count();
    }
    assert!(from_snapshots > 0, "no answer started from a snapshot");
    app.stop().await.unwrap();
}
