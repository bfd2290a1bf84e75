//! What a Kubernetes deployment relies on, as separate processes over real NATS and PostgreSQL:
//! replicas of scanning and installing share their databases and durable consumers and create every
//! job exactly once; a SIGTERM mid-flow loses no event and handles none twice; health and metrics
//! say what is going on.

use std::time::Duration;

use patchbay_proto::approvals::v1 as approvals;
use patchbay_proto::approvals::v1::approvals_service_client::ApprovalsServiceClient;
use patchbay_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use patchbay_proto::installing::v1 as installing;
use patchbay_proto::installing::v1::installing_service_client::InstallingServiceClient;
use patchbay_proto::scanning::v1 as pb;
use patchbay_proto::scanning::v1::agent_service_client::AgentServiceClient;
use patchbay_proto::scanning::v1::scanning_service_client::ScanningServiceClient;
use patchbay_testkit::{TestPostgres, nats_url};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::import_apt;
use crate::installing::{
    OPENSSL, create_install_required_task, eventually_within, register_old_openssl,
};
use crate::processes::{Service, metric, serve};

/// catalog, approvals, two scanning and two installing processes, each service on its own database.
struct Topology {
    nats: String,
    prefix: String,
    /// catalog, approvals, scanning, installing.
    databases: Vec<TestPostgres>,
    /// Running for the others; nothing asks it directly after the import.
    _catalog: Service,
    approvals: Service,
    scanning: Vec<Service>,
    installing: Vec<Service>,
    task_id: String,
}

const READY_LIMIT: Duration = Duration::from_secs(60);

impl Topology {
    /// Starts every process and waits until each is ready; None when PostgreSQL or NATS is not
    /// configured (outside CI).
    async fn start() -> Option<Self> {
        let nats = nats_url()?;
        let mut databases = Vec::new();
        for _ in 0..4 {
            databases.push(TestPostgres::create().await?);
        }
        let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let catalog = serve("catalog", &databases[0].url, &nats, &prefix).await;
        let approvals = serve("approvals", &databases[1].url, &nats, &prefix).await;
        let mut scanning = Vec::new();
        let mut installing = Vec::new();
        for _ in 0..2 {
            scanning.push(serve("scanning", &databases[2].url, &nats, &prefix).await);
            installing.push(serve("installing", &databases[3].url, &nats, &prefix).await);
        }
        for service in [&catalog, &approvals]
            .into_iter()
            .chain(&scanning)
            .chain(&installing)
        {
            service.wait_ready(READY_LIMIT).await;
            assert_eq!(
                service.health("liveness").await,
                Some(ServingStatus::Serving)
            );
        }
        let mut catalog_client = CatalogServiceClient::connect(catalog.url()).await.unwrap();
        import_apt(
            &mut catalog_client,
            "bookworm-security_Packages",
            "bookworm-security",
        )
        .await;
        let mut installing_client = InstallingServiceClient::connect(installing[1].url())
            .await
            .unwrap();
        let task_id = create_install_required_task(&mut installing_client)
            .await
            .task_id;
        Some(Self {
            nats,
            prefix,
            databases,
            _catalog: catalog,
            approvals,
            scanning,
            installing,
            task_id,
        })
    }

    /// Registers `count` devices that run an old openssl, alternating between the scanning
    /// replicas, and scans until every one of them requires the new openssl.
    async fn add_fleet(&self, name: &str, count: usize) -> Vec<String> {
        let mut fleet = Vec::new();
        for i in 0..count {
            let replica = &self.scanning[i % self.scanning.len()];
            let mut agents = AgentServiceClient::connect(replica.url()).await.unwrap();
            fleet.push(register_old_openssl(&mut agents, &format!("{name}-{i}"), name).await);
        }
        // The scanning replicas see each other's registrations through their shared log, and
        // index the catalog from NATS: scan until every device requires openssl.
        let scans = ScanningServiceClient::connect(self.scanning[0].url())
            .await
            .unwrap();
        eventually_within(
            "every new device to require openssl",
            Duration::from_secs(60),
            || {
                let mut scans = scans.clone();
                let fleet = fleet.clone();
                let group = name.to_owned();
                async move {
                    scans
                        .run_scan(pb::RunScanRequest {
                            targets: Some(pb::ScanTargets {
                                groups: vec![group],
                                ..Default::default()
                            }),
                        })
                        .await
                        .ok()?;
                    let found = scans
                        .get_required(pb::GetRequiredRequest { device_ids: fleet })
                        .await
                        .ok()?
                        .into_inner();
                    found
                        .devices
                        .iter()
                        .all(|device| device.required.iter().any(|r| r.update_id == OPENSSL))
                        .then_some(())
                }
            },
        )
        .await;
        fleet
    }

    async fn approve_openssl(&self) {
        let approvals = ApprovalsServiceClient::connect(self.approvals.url())
            .await
            .unwrap();
        eventually_within(
            "the approvals service to know openssl and approve it",
            Duration::from_secs(30),
            || {
                let mut approvals = approvals.clone();
                async move {
                    approvals
                        .set_approval(approvals::SetApprovalRequest {
                            status: approvals::ApprovalStatus::Approved as i32,
                            update_ids: vec![OPENSSL.into()],
                            ..Default::default()
                        })
                        .await
                        .ok()
                }
            },
        )
        .await;
    }

    /// Every openssl job `replica` knows of, as (device, job id).
    async fn openssl_jobs(&self, replica: &Service) -> Vec<(String, String)> {
        let mut client = InstallingServiceClient::connect(replica.url())
            .await
            .unwrap();
        client
            .list_jobs(installing::ListJobsRequest {
                update_id: OPENSSL.into(),
                task_id: self.task_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .jobs
            .into_iter()
            .map(|job| {
                let job = job.job.unwrap();
                (job.device_id, job.job_id)
            })
            .collect()
    }

    /// Waits until `replica` lists a job for every device of `fleet`, lets anything in flight
    /// land, and checks every device has exactly one, the same on every installing replica.
    async fn assert_one_job_per_device(&self, fleet: &[String]) {
        let replica = &self.installing[0];
        eventually_within(
            "an openssl job on every device",
            Duration::from_secs(90),
            || async {
                let jobs = self.openssl_jobs(replica).await;
                fleet
                    .iter()
                    .all(|device| jobs.iter().any(|(d, _)| d == device))
                    .then_some(())
            },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut seen = None;
        for replica in &self.installing {
            let mut jobs = self.openssl_jobs(replica).await;
            for device in fleet {
                let mine = jobs.iter().filter(|(d, _)| d == device).count();
                assert_eq!(mine, 1, "device {device} has {mine} openssl jobs");
            }
            assert_eq!(jobs.len(), fleet.len());
            jobs.sort();
            // Both replicas serve the same jobs from the same log.
            if let Some(seen) = &seen {
                assert_eq!(&jobs, seen);
            }
            seen = Some(jobs);
        }
    }

    async fn installing_log(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.databases[3].url).await.unwrap()
    }

    /// Stops every process, then deletes the streams and (on drop) the databases.
    async fn finish(self) {
        let Self {
            nats,
            prefix,
            databases,
            _catalog,
            approvals,
            scanning,
            installing,
            ..
        } = self;
        drop((_catalog, approvals, scanning, installing));
        let bus = patchbay_bus::Bus::nats(&nats, patchbay_bus::Subjects::new(&prefix).unwrap())
            .await
            .unwrap();
        for service in ["catalog", "approvals", "scanning", "installing", "dlq"] {
            let _ = bus.delete_stream(service).await;
        }
        drop(databases);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_of_scanning_and_installing_create_every_job_exactly_once() {
    let Some(topology) = Topology::start().await else {
        return;
    };
    let mut fleet = topology.add_fleet("early", 16).await;
    topology.approve_openssl().await;
    // Devices scanned after the approval are queued from their ScanCompleted.
    fleet.extend(topology.add_fleet("late", 16).await);
    topology.assert_one_job_per_device(&fleet).await;

    // Metrics: each installing replica's view counts every job; the consumers are caught up.
    for replica in &topology.installing {
        let text = eventually_within(
            "the replica's metrics to show every job queued",
            Duration::from_secs(20),
            || async {
                let text = replica.scrape().await;
                (metric(&text, "patchbay_jobs{state=\"queued\"}") == Some(fleet.len() as f64))
                    .then_some(text)
            },
        )
        .await;
        assert_eq!(
            metric(&text, "patchbay_dependency_up{dependency=\"bus\"}"),
            Some(1.0)
        );
        assert_eq!(
            metric(
                &text,
                "patchbay_dependency_up{dependency=\"database:installing\"}"
            ),
            Some(1.0)
        );
        assert_eq!(metric(&text, "patchbay_ready"), Some(1.0));
        assert!(
            text.contains("patchbay_consumer_pending_messages{consumer=\"installing-scanning\",stream=\"scanning\"}"),
            "{text}"
        );
        assert!(
            text.contains("patchbay_grpc_request_duration_seconds_count{method=\"/patchbay.installing.v1.InstallingService/ListJobs\",code=\"0\"}"),
            "{text}"
        );
    }
    // One replica appended the jobs, the other none of them (the planner's expected versions
    // make the loser of each race plan again on fresh state instead of appending twice).
    let appended: Vec<f64> = {
        let mut appended = Vec::new();
        for replica in &topology.installing {
            let text = replica.scrape().await;
            appended.push(
                metric(
                    &text,
                    "patchbay_events_appended_total{service=\"installing\"}",
                )
                .unwrap_or(0.0),
            );
        }
        appended
    };
    assert!(appended.iter().sum::<f64>() > 0.0, "{appended:?}");
    topology.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_flow_loses_no_event_and_handles_none_twice() {
    let Some(mut topology) = Topology::start().await else {
        return;
    };
    let mut fleet = topology.add_fleet("first", 16).await;
    topology.approve_openssl().await;
    // The approval is now on its way to both installing replicas' shared consumers: stop one.
    let stopping = topology.installing.remove(0);
    let stopped = tokio::spawn(stopping.terminate(Duration::from_secs(60)));
    // Work goes on meanwhile: new scans reach the replica that is left.
    fleet.extend(topology.add_fleet("second", 16).await);
    let status = stopped.await.unwrap();
    assert!(status.success(), "SIGTERM ended it with {status}");
    // Back on the same database, next to the other replica.
    let restarted = serve(
        "installing",
        &topology.databases[3].url,
        &topology.nats,
        &topology.prefix,
    )
    .await;
    restarted.wait_ready(READY_LIMIT).await;
    topology.installing.push(restarted);
    fleet.extend(topology.add_fleet("third", 8).await);
    topology.assert_one_job_per_device(&fleet).await;

    // Handled once: no foreign event was copied into the installing log twice.
    let log = topology.installing_log().await;
    let copied_twice: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT causation_id FROM events \
         WHERE event_type = 'ForeignEventObserved' GROUP BY causation_id HAVING count(*) > 1) d",
    )
    .fetch_one(&log)
    .await
    .unwrap();
    assert_eq!(copied_twice, 0);
    // Lost nothing: every event of the installing log reaches its NATS stream, exactly once.
    let client = async_nats::connect(&topology.nats).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let stream_name = patchbay_bus::Subjects::new(&topology.prefix)
        .unwrap()
        .stream_name("installing");
    eventually_within(
        "the installing stream to hold every logged event",
        Duration::from_secs(30),
        || {
            let jetstream = jetstream.clone();
            let stream_name = stream_name.clone();
            let log = log.clone();
            async move {
                let logged: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
                    .fetch_one(&log)
                    .await
                    .ok()?;
                let mut stream = jetstream.get_stream(stream_name).await.ok()?;
                let messages = stream.info().await.ok()?.state.messages;
                (messages == logged as u64).then_some(())
            }
        },
    )
    .await;
    topology.finish().await;
}

/// Settings: a flag beats a `PATCHBAY_*` variable, which beats the settings file, which beats the
/// default (shown on the embedded server, which needs no other service).
#[tokio::test]
async fn settings_come_from_flags_then_environment_then_the_file() {
    use crate::processes::free_address;

    let dir = tempfile::tempdir().unwrap();
    let (from_file, from_env, metrics) = (free_address(), free_address(), free_address());
    let settings = dir.path().join("patchbay.toml");
    std::fs::write(
        &settings,
        format!(
            "listen = \"{from_file}\"\nmetrics_listen = \"{metrics}\"\n\
             data_dir = \"{}\"\nlog_format = \"json\"\n",
            dir.path().join("from-file").display()
        ),
    )
    .unwrap();
    let data_dir = dir.path().join("from-flag");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_patchbay"))
        .args(["server", "--data-dir"])
        .arg(&data_dir)
        .env("PATCHBAY_CONFIG", &settings)
        .env("PATCHBAY_LISTEN", from_env.to_string())
        .env("PATCHBAY_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _server = KillOnDrop(child);
    let listening = eventually_within("the server to listen", Duration::from_secs(30), || async {
        tokio::net::TcpStream::connect(from_env).await.ok()
    })
    .await;
    drop(listening);
    // The variable beat the file's listen; the file's metrics_listen beat the default (none).
    assert!(tokio::net::TcpStream::connect(from_file).await.is_err());
    // (The metrics port opens once the services have started, after the gRPC port.)
    eventually_within("the metrics endpoint", Duration::from_secs(30), || async {
        tokio::net::TcpStream::connect(metrics).await.ok()
    })
    .await;
    // The flag beat the file's data_dir.
    assert!(data_dir.join("catalog.db").exists());
    assert!(!dir.path().join("from-file").exists());
}

/// A child process killed when the test ends, even by a panic.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A settings file with a mistake stops the server before it starts, naming the key.
#[tokio::test]
async fn a_wrong_settings_file_is_refused_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("patchbay.toml");
    std::fs::write(
        &settings,
        "listen = \"0.0.0.0:50051\"\nnats_ulr = \"nats://x\"\n",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_patchbay"))
        .args(["serve", "catalog", "--config"])
        .arg(&settings)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("nats_ulr"), "{stderr}");
    assert!(stderr.contains(settings.to_str().unwrap()), "{stderr}");
}
