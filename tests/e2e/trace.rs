//! One trace across services in distributed mode (each service its own PostgreSQL database, events
//! over NATS JetStream, hosted in this process so an in-memory exporter sees every span): from the
//! gRPC request that caused an install job (the approval, or the scan the planner saw with it),
//! through the append, the relay, NATS and the installing consumer, to the job dispatched on the
//! agent's job stream.

use opentelemetry::trace::{SpanId, TraceId};
use patchbay::host::Host;
use patchbay_bus::{Bus, Subjects};
use patchbay_eventstore::EventStore;
use patchbay_telemetry::testing::TestTelemetry;
use patchbay_testkit::{TestPostgres, TestSqlite, nats_url};
use tokio_util::sync::CancellationToken;

use patchbay_proto::approvals::v1 as approvals;
use patchbay_proto::approvals::v1::approvals_service_client::ApprovalsServiceClient;
use patchbay_proto::installing::v1 as jobs;
use patchbay_proto::installing::v1::job_agent_service_client::JobAgentServiceClient;
use patchbay_proto::scanning::v1 as scanning;
use patchbay_proto::scanning::v1::scanning_service_client::ScanningServiceClient;

use crate::installing::{Urls, install_scenario, next_job};

// A current-thread runtime: the test subscriber is thread-local, so every task of every hosted
// service runs where it records. It needs a process of its own: tracing caches each callsite's
// interest process-wide, and with other tests registering their own subscribers in parallel some of
// this test's spans go unrecorded. `.ci/run` runs it alone:
// `cargo test --test e2e one_trace -- --ignored`.
#[tokio::test]
#[ignore = "needs a process of its own; .ci/run runs it alone"]
async fn one_trace_from_the_grpc_request_to_the_job_stream() {
    let Some(nats) = nats_url() else { return };
    let telemetry = TestTelemetry::new();
    let _subscriber = telemetry.set_default();
    let subjects = Subjects::new(&format!(
        "t{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    ))
    .unwrap();
    let files = TestSqlite::new();
    let shutdown = CancellationToken::new();
    let mut databases = Vec::new();
    let mut urls = Vec::new();
    let mut hosts = Vec::new();
    for service in ["catalog", "approvals", "scanning", "installing"] {
        let Some(database) = TestPostgres::create().await else {
            return;
        };
        let store = EventStore::connect(&database.url).await.unwrap();
        let bus = Bus::nats(&nats, subjects.clone()).await.unwrap();
        let host = Host::open(
            "127.0.0.1:0".parse().unwrap(),
            vec![(service, store)],
            bus,
            "distributed",
            files.dir.path().join("wsus-content"),
        )
        .await
        .unwrap();
        urls.push(format!("http://{}", host.local_addr().unwrap()));
        hosts.push(tokio::spawn(host.run_until_stopped(shutdown.child_token())));
        databases.push(database);
    }
    let web1 = install_scenario(&Urls {
        catalog: urls[0].clone(),
        approvals: urls[1].clone(),
        scanning: urls[2].clone(),
        installing: urls[3].clone(),
    })
    .await;
    // A job dispatched on one connection and sent again on the next, as after an agent restart.
    let mut scans = ScanningServiceClient::connect(urls[2].clone())
        .await
        .unwrap();
    let git = scans
        .get_required(scanning::GetRequiredRequest {
            device_ids: vec![web1.device_id.clone()],
        })
        .await
        .unwrap()
        .into_inner()
        .devices[0]
        .required
        .iter()
        .find(|r| r.update_id.starts_with("deb:git:"))
        .expect("web-1 still requires git")
        .update_id
        .clone();
    ApprovalsServiceClient::connect(urls[1].clone())
        .await
        .unwrap()
        .set_approval(approvals::SetApprovalRequest {
            status: approvals::ApprovalStatus::Approved as i32,
            update_ids: vec![git.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    let mut agent = JobAgentServiceClient::connect(urls[3].clone())
        .await
        .unwrap();
    let connect = || jobs::StreamJobsRequest {
        device_id: web1.device_id.clone(),
        credential: web1.credential.clone(),
    };
    let mut first = agent.stream_jobs(connect()).await.unwrap().into_inner();
    let dispatched = next_job(&mut first).await;
    assert_eq!(dispatched.update_id, git);
    drop(first);
    let mut second = agent.stream_jobs(connect()).await.unwrap().into_inner();
    assert_eq!(next_job(&mut second).await.job_id, dispatched.job_id);
    drop(second);
    shutdown.cancel();
    for host in hosts {
        host.await.unwrap().unwrap();
    }

    let spans = telemetry.finished_spans().unwrap();
    let dispatches: Vec<_> = spans.iter().filter(|s| s.name == "job.dispatch").collect();
    assert!(!dispatches.is_empty(), "no job.dispatch span");
    let in_trace = |trace: TraceId, name: &str| {
        spans
            .iter()
            .filter(|s| s.span_context.trace_id() == trace && s.name == name)
            .count()
    };
    // A dispatched job continues the trace of the request that caused it, through relay and
    // consumer: the first attempts that of the approval (or of the scan the planner saw with it),
    // retries that of the agent's failure report.
    let mut causes = Vec::new();
    for dispatch in dispatches {
        let trace = dispatch.span_context.trace_id();
        let Some(root) = spans.iter().find(|s| {
            s.span_context.trace_id() == trace
                && s.name == "grpc.request"
                && s.parent_span_id == SpanId::INVALID
        }) else {
            continue;
        };
        assert!(
            in_trace(trace, "relay.publish") >= 1,
            "no relay span in the trace"
        );
        assert!(
            in_trace(trace, "consume") >= 1,
            "no consumer span in the trace"
        );
        let ids: Vec<SpanId> = spans
            .iter()
            .filter(|s| s.span_context.trace_id() == trace)
            .map(|s| s.span_context.span_id())
            .collect();
        assert!(
            ids.contains(&dispatch.parent_span_id),
            "the dispatch's parent is a span of the same trace"
        );
        causes.push(
            root.attributes
                .iter()
                .find(|kv| kv.key.as_str() == "path")
                .map(|kv| kv.value.to_string())
                .unwrap_or_default(),
        );
    }
    assert!(
        causes
            .iter()
            .any(|path| path.ends_with("/SetApproval") || path.ends_with("/RunScan")),
        "no job traced back to the approval or scan request: {causes:?}"
    );
    assert!(
        causes.iter().any(|path| path.ends_with("/ReportJobResult")),
        "the retries follow the failure reports: {causes:?}"
    );
    // The re-sent job links to the trace of the approval that queued it instead of joining it.
    let resend = spans
        .iter()
        .find(|s| s.name == "job.resend")
        .expect("a job.resend span");
    assert_eq!(resend.parent_span_id, SpanId::INVALID, "{resend:?}");
    let first_dispatch = spans
        .iter()
        .filter(|s| s.name == "job.dispatch")
        .find(|s| {
            s.attributes
                .iter()
                .any(|kv| kv.key.as_str() == "job_id" && kv.value.to_string() == dispatched.job_id)
        })
        .expect("the first dispatch of the re-sent job");
    assert!(
        resend
            .links
            .iter()
            .any(|link| link.span_context.trace_id() == first_dispatch.span_context.trace_id()),
        "the resend links to the job's trace: {resend:?}"
    );
    // The installing service's consumers copy other services' events in batches: a batch span
    // links to each event's trace rather than joining one. An event that arrives alone is handled
    // in a `consume` span of its own trace. Either way the approval's trace reaches the consumer.
    let approval_traces: Vec<TraceId> = spans
        .iter()
        .filter(|s| s.name == "grpc.request")
        .filter(|s| {
            s.attributes.iter().any(|kv| {
                kv.key.as_str() == "path" && kv.value.to_string().ends_with("/SetApproval")
            })
        })
        .map(|s| s.span_context.trace_id())
        .collect();
    let linked_by_a_batch = spans.iter().any(|s| {
        s.name == "consume.batch"
            && s.links
                .iter()
                .any(|link| approval_traces.contains(&link.span_context.trace_id()))
    });
    let consumed_alone = spans
        .iter()
        .any(|s| s.name == "consume" && approval_traces.contains(&s.span_context.trace_id()));
    assert!(
        linked_by_a_batch || consumed_alone,
        "the approval's trace reaches no consumer, by link or by parent"
    );
    // A batch span never joins the trace of one of its events.
    for batch in spans.iter().filter(|s| s.name == "consume.batch") {
        assert!(
            !approval_traces.contains(&batch.span_context.trace_id()),
            "a batch span joined the approval's trace: {batch:?}"
        );
    }
    drop(databases);
}
