//! The job loop: receives the device's install jobs over the server's stream, runs them one at a time
//! in order, reports each result, and reconnects with backoff when the stream is lost.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use anyhow::Context as _;
use patchbay_proto::installing::v1 as ipb;
use patchbay_proto::installing::v1::job_agent_service_client::JobAgentServiceClient;
use tokio_util::sync::CancellationToken;

use super::executor::{JobExecutor, JobResult};
use super::{AgentConfig, Identity, InventorySource, load_identity, report_from};

/// Results remembered so a resent job is reported again instead of run twice; older ones are
/// forgotten (the server only resends jobs it dispatched and has no result for).
const REMEMBERED_RESULTS: usize = 10_000;
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What the loop keeps across reconnections.
#[derive(Debug, Default)]
struct JobState {
    results: HashMap<String, JobResult>,
    order: VecDeque<String>,
    /// A job changed the device and the server has not seen the new inventory yet.
    inventory_stale: bool,
}

impl JobState {
    fn remember(&mut self, job_id: &str, result: JobResult) {
        if self.results.insert(job_id.to_owned(), result).is_none() {
            self.order.push_back(job_id.to_owned());
        }
        while self.order.len() > REMEMBERED_RESULTS {
            if let Some(old) = self.order.pop_front() {
                self.results.remove(&old);
            }
        }
    }
}

/// Runs jobs until `shutdown`. Only a `server` that is not a URL is an error; everything else is
/// logged and retried. A job already started is finished before stopping, since killing apt-get
/// half-way leaves dpkg needing repair.
pub(super) async fn run(
    config: &AgentConfig,
    server: &str,
    executor: &JobExecutor,
    source: &InventorySource,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let endpoint =
        tonic::transport::Endpoint::from_shared(server.to_owned()).with_context(|| {
            format!("--jobs-server {server:?} is not a URL like http://127.0.0.1:50051")
        })?;
    let mut state = JobState::default();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let delay = match load_identity(&config.state_dir) {
            Ok(Some(identity)) => {
                let mut connected = false;
                let session = Session {
                    config,
                    executor,
                    source,
                    identity: &identity,
                    shutdown: &shutdown,
                };
                match session
                    .stream(&endpoint, server, &mut state, &mut connected)
                    .await
                {
                    Ok(()) if shutdown.is_cancelled() => return Ok(()),
                    Ok(()) => tracing::info!("the job stream ended; reconnecting"),
                    Err(error) => tracing::warn!(
                        error = format!("{error:#}"),
                        "the job stream failed; will reconnect"
                    ),
                }
                if connected {
                    backoff = FIRST_BACKOFF;
                }
                let delay = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                delay
            }
            // The inventory loop registers the device; jobs wait for it rather than register twice.
            Ok(None) => FIRST_BACKOFF,
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "cannot read the device identity; jobs wait"
                );
                MAX_BACKOFF
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(delay) => {}
        }
    }
}

struct Session<'a> {
    config: &'a AgentConfig,
    executor: &'a JobExecutor,
    source: &'a InventorySource,
    identity: &'a Identity,
    shutdown: &'a CancellationToken,
}

impl Session<'_> {
    /// One connection: returns when the stream ends or `shutdown` fires, or fails when the server
    /// cannot be reached or a result cannot be reported (the server resends that job later).
    async fn stream(
        &self,
        endpoint: &tonic::transport::Endpoint,
        server: &str,
        state: &mut JobState,
        connected: &mut bool,
    ) -> anyhow::Result<()> {
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("cannot reach the job server at {server}"))?;
        let mut client = JobAgentServiceClient::new(channel);
        let mut stream = client
            .stream_jobs(ipb::StreamJobsRequest {
                device_id: self.identity.device_id.clone(),
                credential: self.identity.credential.clone(),
            })
            .await
            .map_err(|status| self.refused(&status, server))?
            .into_inner();
        *connected = true;
        tracing::info!(device_id = %self.identity.device_id, "waiting for install jobs");
        loop {
            let next = tokio::select! {
                () = self.shutdown.cancelled() => return Ok(()),
                next = stream.message() => next,
            };
            let Some(assignment) =
                next.map_err(|s| anyhow::anyhow!("job stream broke: {}", s.message()))?
            else {
                return Ok(());
            };
            let Some(job) = assignment.job else {
                tracing::warn!("the server sent an assignment without a job; ignored");
                continue;
            };
            if !job.device_id.is_empty() && job.device_id != self.identity.device_id {
                tracing::warn!(job_id = %job.job_id, device_id = %job.device_id, "the server sent another device's job; ignored");
                continue;
            }
            let result = self.result_of(&job, &assignment.title, state).await;
            let reported = client
                .report_job_result(ipb::ReportJobResultRequest {
                    device_id: self.identity.device_id.clone(),
                    credential: self.identity.credential.clone(),
                    job_id: job.job_id.clone(),
                    outcome: result.outcome.proto() as i32,
                    reason: result.reason.clone(),
                    output: result.output.clone(),
                })
                .await;
            match reported {
                Ok(_) => {}
                // The connection is lost: reconnect, and the server resends the job.
                Err(status) if transient(&status) => anyhow::bail!(
                    "the result of job {} could not be delivered: {}",
                    job.job_id,
                    status.message()
                ),
                // The server refused this result for good (e.g. the job was cancelled meanwhile);
                // reconnecting would only bring the same answer, so go on with the next job.
                Err(status) => tracing::warn!(
                    job_id = %job.job_id, code = ?status.code(), message = status.message(),
                    "the server refused the job's result"
                ),
            }
            if state.inventory_stale {
                // The server's next scan must see what the job changed, not wait for the interval.
                match report_from(self.config, self.source).await {
                    Ok(_) => state.inventory_stale = false,
                    Err(error) => tracing::warn!(
                        error = format!("{error:#}"),
                        "inventory report after a job failed; the next one will carry the change"
                    ),
                }
            }
        }
    }

    /// Why the server refused the job stream, with what to do about it.
    fn refused(&self, status: &tonic::Status, server: &str) -> anyhow::Error {
        match status.code() {
            tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => anyhow::anyhow!(
                "the job server at {server} does not accept this device's identity ({}); delete {} to register the device again",
                status.message(),
                self.config.state_dir.join(super::IDENTITY_FILE).display()
            ),
            tonic::Code::Unimplemented => anyhow::anyhow!(
                "the server at {server} has no job service; pass --jobs-server with the installing service's address"
            ),
            _ => anyhow::anyhow!("job stream refused by {server}: {}", status.message()),
        }
    }

    /// Runs the job, or returns its earlier result when this process already ran it.
    async fn result_of(&self, job: &ipb::Job, title: &str, state: &mut JobState) -> JobResult {
        if let Some(earlier) = state.results.get(&job.job_id) {
            tracing::info!(job_id = %job.job_id, "job already ran; reporting its result again");
            return earlier.clone();
        }
        tracing::info!(
            job_id = %job.job_id, update_id = %job.update_id, title, package = %job.package,
            version = %job.version, kb = %job.kb_article, attempt = job.attempt, "running job"
        );
        let result = self.executor.run(job).await;
        tracing::info!(job_id = %job.job_id, outcome = ?result.outcome, reason = %result.reason, "job finished");
        if result.outcome.changed_device() {
            state.inventory_stale = true;
        }
        state.remember(&job.job_id, result.clone());
        result
    }
}

/// Errors after which the same request may succeed on a new connection.
fn transient(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Cancelled
            | tonic::Code::Unknown
            | tonic::Code::Aborted
            | tonic::Code::Internal
            | tonic::Code::ResourceExhausted
    )
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};

    use patchbay_proto::installing::v1::job_agent_service_server::{
        JobAgentService, JobAgentServiceServer,
    };
    use patchbay_proto::scanning::v1 as spb;
    use patchbay_proto::scanning::v1::agent_service_server::{AgentService, AgentServiceServer};
    use tokio_stream::StreamExt as _;

    use super::*;
    use crate::agent::executor::{DebianJobs, Outcome, SimulatedInventory};
    use crate::agent::{DebianPaths, Executor};

    /// What the fake server saw.
    #[derive(Debug, Default)]
    struct Seen {
        connections: usize,
        results: Vec<(String, i32, String)>,
        inventories: usize,
    }

    #[derive(Debug, Clone, Default)]
    struct FakeServer(Arc<Mutex<Seen>>);

    fn assignment(id: &str, package: &str) -> Result<ipb::JobAssignment, tonic::Status> {
        Ok(ipb::JobAssignment {
            job: Some(ipb::Job {
                job_id: id.to_owned(),
                device_id: "d1".to_owned(),
                package: package.to_owned(),
                version: "1.0-1".to_owned(),
                attempt: 1,
                ..Default::default()
            }),
            title: format!("{package} 1.0-1"),
        })
    }

    type JobStream =
        Pin<Box<dyn tokio_stream::Stream<Item = Result<ipb::JobAssignment, tonic::Status>> + Send>>;

    #[tonic::async_trait]
    impl JobAgentService for FakeServer {
        type StreamJobsStream = JobStream;

        async fn stream_jobs(
            &self,
            request: tonic::Request<ipb::StreamJobsRequest>,
        ) -> Result<tonic::Response<JobStream>, tonic::Status> {
            assert_eq!(request.get_ref().credential, "secret");
            let connection = {
                let mut seen = self.0.lock().unwrap();
                seen.connections += 1;
                seen.connections
            };
            // First connection: two jobs, then the stream ends. Second: j1 again (as after a lost
            // result) and a new job, then the stream stays open.
            let stream: JobStream = if connection == 1 {
                Box::pin(tokio_stream::iter([
                    assignment("j1", "curl"),
                    assignment("j2", "broken"),
                ]))
            } else {
                Box::pin(
                    tokio_stream::iter([assignment("j1", "curl"), assignment("j3", "git")])
                        .chain(tokio_stream::pending()),
                )
            };
            Ok(tonic::Response::new(stream))
        }

        async fn report_job_result(
            &self,
            request: tonic::Request<ipb::ReportJobResultRequest>,
        ) -> Result<tonic::Response<ipb::ReportJobResultResponse>, tonic::Status> {
            let r = request.into_inner();
            self.0
                .lock()
                .unwrap()
                .results
                .push((r.job_id, r.outcome, r.reason));
            Ok(tonic::Response::new(ipb::ReportJobResultResponse {}))
        }
    }

    #[tonic::async_trait]
    impl AgentService for FakeServer {
        async fn register(
            &self,
            _: tonic::Request<spb::RegisterRequest>,
        ) -> Result<tonic::Response<spb::RegisterResponse>, tonic::Status> {
            Err(tonic::Status::failed_precondition(
                "the test device is registered",
            ))
        }

        async fn report_inventory(
            &self,
            _: tonic::Request<spb::ReportInventoryRequest>,
        ) -> Result<tonic::Response<spb::ReportInventoryResponse>, tonic::Status> {
            self.0.lock().unwrap().inventories += 1;
            Ok(tonic::Response::new(spb::ReportInventoryResponse {
                changed: true,
            }))
        }
    }

    #[tokio::test]
    async fn jobs_run_once_in_order_and_survive_a_reconnect() {
        let dir = tempfile::tempdir().unwrap();
        let apt_get = dir.path().join("apt-get");
        std::fs::write(
            &apt_get,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\ncase \"$*\" in *broken*) echo \"E: Unable to locate package broken\" >&2; exit 100;; esac\n",
                dir.path().join("calls").display()
            ),
        )
        .unwrap();
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&apt_get, std::fs::Permissions::from_mode(0o755)).unwrap();
        }

        let fake = FakeServer::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop_server = CancellationToken::new();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(JobAgentServiceServer::new(fake.clone()))
                .add_service(AgentServiceServer::new(fake.clone()))
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    stop_server.clone().cancelled_owned(),
                ),
        );

        let config = AgentConfig {
            server: url.clone(),
            executor: Executor::Debian(DebianPaths::default()),
            state_dir: dir.path().join("state"),
            hostname: "web-1".to_owned(),
            groups: vec![],
            interval: Duration::from_secs(3600),
        };
        crate::agent::save_identity(
            &config.state_dir,
            &Identity {
                device_id: "d1".to_owned(),
                credential: "secret".to_owned(),
            },
        )
        .unwrap();
        let executor = JobExecutor::Debian(DebianJobs {
            apt_get,
            reboot_required: dir.path().join("reboot-required"),
            native_architecture: Some("amd64".to_owned()),
            ..DebianJobs::default()
        });
        let source = InventorySource::Simulated(SimulatedInventory::default());
        let shutdown = CancellationToken::new();
        let agent = {
            let shutdown = shutdown.clone();
            async move { run(&config, &url, &executor, &source, shutdown).await }
        };
        let agent = tokio::spawn(agent);

        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while fake.0.lock().unwrap().results.len() < 4 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{:?}",
                fake.0.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        shutdown.cancel();
        agent.await.unwrap().unwrap();
        stop_server.cancel();
        server.await.unwrap().unwrap();

        let seen = fake.0.lock().unwrap();
        let ok = ipb::JobOutcome::Succeeded as i32;
        let failed = ipb::JobOutcome::Failed as i32;
        let results: Vec<_> = seen
            .results
            .iter()
            .map(|(id, outcome, _)| (id.as_str(), *outcome))
            .collect();
        assert_eq!(
            results,
            [("j1", ok), ("j2", failed), ("j1", ok), ("j3", ok)]
        );
        assert!(
            seen.results[1]
                .2
                .contains("Unable to locate package broken")
        );
        assert_eq!(seen.connections, 2);
        // One inventory report after each job that changed the device; none for the repeat.
        assert_eq!(seen.inventories, 2);
        let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap();
        assert_eq!(
            calls.lines().collect::<Vec<_>>(),
            [
                "install -y --no-install-recommends curl=1.0-1",
                "install -y --no-install-recommends broken=1.0-1",
                "install -y --no-install-recommends git=1.0-1",
            ]
        );
    }

    #[test]
    fn old_results_are_forgotten_in_order() {
        let mut state = JobState::default();
        let result = JobResult {
            outcome: Outcome::Succeeded,
            reason: String::new(),
            output: String::new(),
        };
        for i in 0..=REMEMBERED_RESULTS {
            state.remember(&format!("job-{i}"), result.clone());
        }
        state.remember("job-5", result.clone());
        assert_eq!(state.results.len(), REMEMBERED_RESULTS);
        assert!(!state.results.contains_key("job-0"));
        assert!(state.results.contains_key("job-1"));
        assert!(
            state
                .results
                .contains_key(&format!("job-{REMEMBERED_RESULTS}"))
        );
    }
}
