//! Operations of a host: its gRPC health status (readiness and liveness) and its Prometheus metrics,
//! both sampled from its stores, the bus and its durable consumers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use patchbay_bus::{Bus, RELAY_CHECKPOINT};
use patchbay_eventstore::{EventStore, EventStoreError};
use patchbay_installing::Installing;
use patchbay_installing::domain::state::JobStatus;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// The health service name of the liveness check; "" (the whole server) is readiness.
pub const LIVENESS: &str = "liveness";

/// A consumer at most this many messages behind counts as caught up.
const CAUGHT_UP_BACKLOG: u64 = 1_000;

/// How often health is re-sampled.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(2);

/// Longest a database or NATS query of a sample may take before the dependency counts as down.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(3);

type Labels = Vec<(&'static str, String)>;

/// The host's Prometheus metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    events_appended: Family<Labels, Counter>,
    relay_lag: Family<Labels, Gauge>,
    consumer_pending: Family<Labels, Gauge>,
    consumer_ack_pending: Family<Labels, Gauge>,
    consumer_redelivered: Family<Labels, Gauge>,
    jobs: Family<Labels, Gauge>,
    dependency_up: Family<Labels, Gauge>,
    ready: Gauge,
    requests: Family<Labels, Histogram, fn() -> Histogram>,
}

fn request_histogram() -> Histogram {
    // 0.5 ms to ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut metrics = Self {
            registry: Registry::with_prefix("patchbay"),
            events_appended: Family::default(),
            relay_lag: Family::default(),
            consumer_pending: Family::default(),
            consumer_ack_pending: Family::default(),
            consumer_redelivered: Family::default(),
            jobs: Family::default(),
            dependency_up: Family::default(),
            ready: Gauge::default(),
            requests: Family::new_with_constructor(request_histogram),
        };
        let registry = &mut metrics.registry;
        registry.register(
            "events_appended",
            "Events this process appended to the service's log",
            metrics.events_appended.clone(),
        );
        registry.register(
            "relay_lag_events",
            "Events in the service's log not yet published to the bus",
            metrics.relay_lag.clone(),
        );
        registry.register(
            "consumer_pending_messages",
            "Messages of a durable consumer's stream not yet delivered to it",
            metrics.consumer_pending.clone(),
        );
        registry.register(
            "consumer_ack_pending_messages",
            "Messages delivered to a durable consumer and not yet acknowledged",
            metrics.consumer_ack_pending.clone(),
        );
        registry.register(
            "consumer_redelivered_messages",
            "Unacknowledged messages delivered to a durable consumer more than once",
            metrics.consumer_redelivered.clone(),
        );
        registry.register(
            "jobs",
            "Install and uninstall jobs by state",
            metrics.jobs.clone(),
        );
        registry.register(
            "dependency_up",
            "1 if the dependency (a service's database, the bus) answered the last health sample",
            metrics.dependency_up.clone(),
        );
        registry.register(
            "ready",
            "1 if the host reports itself ready (gRPC health SERVING)",
            metrics.ready.clone(),
        );
        registry.register(
            "grpc_request_duration_seconds",
            "gRPC requests by method and status code, until the response headers",
            metrics.requests.clone(),
        );
        metrics
    }
}

impl Metrics {
    /// Records one gRPC request.
    pub fn observe_request(&self, method: &str, code: &str, elapsed: Duration) {
        self.requests
            .get_or_create(&vec![
                ("method", method.to_owned()),
                ("code", code.to_owned()),
            ])
            .observe(elapsed.as_secs_f64());
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// A durable consumer the host runs: its name and the service whose events it consumes.
#[derive(Debug, Clone)]
pub struct ConsumerRef {
    pub name: String,
    pub service: String,
}

/// What one sample found.
#[derive(Debug, Clone, Copy)]
struct Sample {
    databases_up: bool,
    bus_up: bool,
    /// Largest backlog of any consumer; None if one is not bound yet or could not be asked.
    backlog: Option<u64>,
}

/// Samples the host's dependencies into its health status and metrics.
#[derive(Debug, Clone)]
pub struct Monitor {
    inner: Arc<MonitorInner>,
}

#[derive(Debug)]
struct MonitorInner {
    stores: Vec<(&'static str, EventStore)>,
    bus: Bus,
    consumers: Vec<ConsumerRef>,
    installing: Option<Installing>,
    metrics: Arc<Metrics>,
    health: HealthReporter,
    /// Caught up once since start: later backlogs (a burst of work) no longer make it unready.
    caught_up: AtomicBool,
    stopping: AtomicBool,
}

impl Monitor {
    pub fn new(
        stores: Vec<(&'static str, EventStore)>,
        bus: Bus,
        consumers: Vec<ConsumerRef>,
        installing: Option<Installing>,
        metrics: Arc<Metrics>,
        health: HealthReporter,
    ) -> Self {
        Self {
            inner: Arc::new(MonitorInner {
                stores,
                bus,
                consumers,
                installing,
                metrics,
                health,
                caught_up: AtomicBool::new(false),
                stopping: AtomicBool::new(false),
            }),
        }
    }

    /// Health before the first sample: alive, not ready.
    pub async fn starting(&self) {
        self.set_readiness(ServingStatus::NotServing).await;
        self.inner
            .health
            .set_service_status(LIVENESS, ServingStatus::Serving)
            .await;
    }

    /// Shutdown has begun: neither ready nor alive, so no new work is routed here.
    pub async fn stopping(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.set_readiness(ServingStatus::NotServing).await;
        self.inner
            .health
            .set_service_status(LIVENESS, ServingStatus::NotServing)
            .await;
        self.inner.metrics.ready.set(0);
    }

    /// Samples every [`SAMPLE_INTERVAL`] until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        loop {
            self.refresh().await;
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(SAMPLE_INTERVAL) => {}
            }
        }
    }

    /// Takes a sample now and updates the health status and the metrics.
    pub async fn refresh(&self) {
        let sample = self.sample().await;
        let caught_up = match sample.backlog {
            Some(backlog) if backlog <= CAUGHT_UP_BACKLOG => {
                self.inner.caught_up.store(true, Ordering::SeqCst);
                true
            }
            _ => self.inner.caught_up.load(Ordering::SeqCst),
        };
        let ready = sample.databases_up && sample.bus_up && caught_up;
        if self.inner.stopping.load(Ordering::SeqCst) {
            return;
        }
        self.inner.metrics.ready.set(i64::from(ready));
        self.set_readiness(if ready {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        })
        .await;
    }

    /// A fresh sample and the job counts (which only the metrics need), as Prometheus text.
    async fn scrape(&self) -> String {
        self.refresh().await;
        self.count_jobs();
        self.inner.metrics.encode()
    }

    /// Jobs by state, from the installing view when this host runs it.
    fn count_jobs(&self) {
        if let Some(installing) = &self.inner.installing {
            let mut counts = [0_i64; 6];
            for job in installing.view().jobs.values() {
                counts[job_state_index(job.status)] += 1;
            }
            for (index, count) in counts.into_iter().enumerate() {
                self.inner
                    .metrics
                    .jobs
                    .get_or_create(&vec![("state", JOB_STATES[index].to_owned())])
                    .set(count);
            }
        }
    }

    async fn set_readiness(&self, status: ServingStatus) {
        let health = &self.inner.health;
        health.set_service_status("", status).await;
        for (service, _) in &self.inner.stores {
            health
                .set_service_status(format!("patchbay.{service}"), status)
                .await;
        }
    }

    async fn sample(&self) -> Sample {
        let inner = &self.inner;
        let metrics = &inner.metrics;
        let mut databases_up = true;
        for (service, store) in &inner.stores {
            let labels = vec![("service", (*service).to_owned())];
            let up = match tokio::time::timeout(SAMPLE_TIMEOUT, relay_lag(store)).await {
                Ok(Ok(lag)) => {
                    metrics
                        .relay_lag
                        .get_or_create(&labels)
                        .set(i64::try_from(lag).unwrap_or(i64::MAX));
                    true
                }
                Ok(Err(error)) => {
                    tracing::warn!(%service, %error, "health: the service's database does not answer");
                    false
                }
                Err(_) => {
                    tracing::warn!(%service, "health: the service's database did not answer in time");
                    false
                }
            };
            databases_up &= up;
            metrics
                .dependency_up
                .get_or_create(&vec![("dependency", format!("database:{service}"))])
                .set(i64::from(up));
            metrics
                .events_appended
                .get_or_create(&labels)
                .inner()
                .store(store.appended_events(), Ordering::Relaxed);
        }
        let mut bus_up = inner.bus.is_connected();
        let mut backlog = Some(0);
        for consumer in &inner.consumers {
            let lag = tokio::time::timeout(
                SAMPLE_TIMEOUT,
                inner.bus.consumer_lag(&consumer.name, &consumer.service),
            )
            .await;
            match lag {
                Ok(Ok(Some(lag))) => {
                    let labels = vec![
                        ("consumer", consumer.name.clone()),
                        ("stream", consumer.service.clone()),
                    ];
                    let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                    metrics
                        .consumer_pending
                        .get_or_create(&labels)
                        .set(gauge(lag.pending));
                    metrics
                        .consumer_ack_pending
                        .get_or_create(&labels)
                        .set(gauge(lag.ack_pending));
                    metrics
                        .consumer_redelivered
                        .get_or_create(&labels)
                        .set(gauge(lag.redelivered));
                    backlog = backlog.map(|b: u64| b.max(lag.backlog()));
                }
                // Not bound yet: the consumer has not started.
                Ok(Ok(None)) => backlog = None,
                Ok(Err(error)) => {
                    tracing::warn!(consumer = %consumer.name, %error, "health: cannot read the consumer's backlog");
                    bus_up = false;
                    backlog = None;
                }
                Err(_) => {
                    bus_up = false;
                    backlog = None;
                }
            }
        }
        metrics
            .dependency_up
            .get_or_create(&vec![("dependency", "bus".to_owned())])
            .set(i64::from(bus_up));
        Sample {
            databases_up,
            bus_up,
            backlog,
        }
    }
}

const JOB_STATES: [&str; 6] = [
    "queued",
    "dispatched",
    "succeeded",
    "failed",
    "reboot_required",
    "cancelled",
];

fn job_state_index(status: JobStatus) -> usize {
    match status {
        JobStatus::Queued => 0,
        JobStatus::Dispatched => 1,
        JobStatus::Succeeded => 2,
        JobStatus::Failed => 3,
        JobStatus::RebootRequired => 4,
        JobStatus::Cancelled => 5,
    }
}

/// Events in the log after the relay's checkpoint.
async fn relay_lag(store: &EventStore) -> Result<u64, EventStoreError> {
    let checkpoint = store.load_checkpoint(RELAY_CHECKPOINT).await?;
    store.count_after(checkpoint).await
}

/// Serves `GET /metrics` on `listener` until `shutdown`; each scrape takes a fresh sample.
pub async fn serve_metrics(
    listener: TcpListener,
    monitor: Monitor,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    use axum::http::header::CONTENT_TYPE;
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let monitor = monitor.clone();
            async move {
                (
                    [(
                        CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    monitor.scrape().await,
                )
            }
        }),
    );
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("the metrics endpoint failed")
}

/// Binds the metrics port, saying what to do if it is taken.
pub async fn bind_metrics(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address).await.with_context(|| {
        format!("cannot listen on {address} for metrics; choose another with --metrics-listen")
    })
}
