//! Hosting services in one process, whatever the mode: open each hosted service on its store, run
//! its relay, read-model followers and consumers, and serve its gRPC APIs until shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use patchbay_approvals::Approvals;
use patchbay_approvals::observer::{self as approvals_observer, CatalogObserver};
use patchbay_approvals::view::ApprovalsView;
use patchbay_bus::{Bus, ConsumerConfig, ConsumerRunner, EventHandler, Relay};
use patchbay_catalog::Catalog;
use patchbay_catalog::approvals::{self as catalog_approvals, ApprovalRecorder};
use patchbay_catalog::installs::{self as catalog_installs, InstallResultRecorder};
use patchbay_catalog::stats::{self, DeviceRequirementsRecorder};
use patchbay_catalog::wsus::{self as catalog_wsus, WsusRecorder};
use patchbay_eventstore::{EventStore, Sealer, Snapshottable, Snapshotter};
use patchbay_installing::Installing;
use patchbay_installing::observer::OBSERVERS as INSTALLING_OBSERVERS;
use patchbay_installing::view::InstallingView;
use patchbay_scanning::Scanning;
use patchbay_scanning::indexer::{self, CatalogIndexer};
use patchbay_scanning::install_guard::{self, InstallGuard};
use patchbay_scanning::view::ScanningView;
use patchbay_wsus_sync::content::{self as wsus_content, ContentRequester, Downloader};
use patchbay_wsus_sync::{SyncOptions, WsusSync};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::grpc;
use crate::monitor::{self, ConsumerRef, Metrics, Monitor};

/// How a host is operated: its metrics endpoint and how long a shutdown may take.
#[derive(Debug, Clone)]
pub struct Operations {
    /// Where `GET /metrics` is served; none if not set.
    pub metrics_listen: Option<SocketAddr>,
    /// Longest a graceful shutdown may take before the process gives up on in-flight work.
    pub shutdown_timeout: Duration,
    /// Events between snapshots of the read models `audit state --at` replays.
    pub snapshot_every: u64,
    /// How often the snapshotter looks for a due time mark or snapshot.
    pub snapshot_interval: Duration,
}

impl Default for Operations {
    fn default() -> Self {
        Self {
            metrics_listen: None,
            shutdown_timeout: Duration::from_secs(20),
            snapshot_every: patchbay_eventstore::DEFAULT_SNAPSHOT_EVERY,
            snapshot_interval: patchbay_eventstore::DEFAULT_SNAPSHOT_POLL,
        }
    }
}

/// Snapshots the read models `audit state --at` rebuilds, beside the service that owns the log.
fn spawn_snapshotter(work: &mut Tasks<'_>, service: &str, store: &EventStore, ops: &Operations) {
    fn spawn<P: Snapshottable>(work: &mut Tasks<'_>, store: &EventStore, ops: &Operations) {
        let snapshotter = Snapshotter::<P>::new(store.clone())
            .every(ops.snapshot_every)
            .interval(ops.snapshot_interval);
        work.spawn(|token| async move { Ok(snapshotter.run(token).await?) });
    }
    match service {
        "approvals" => spawn::<ApprovalsView>(work, store, ops),
        "scanning" => spawn::<ScanningView>(work, store, ops),
        "installing" => spawn::<InstallingView>(work, store, ops),
        _ => {}
    }
}

/// Services ready to run in this process.
#[derive(Debug)]
pub struct Host {
    listener: TcpListener,
    stores: Vec<(&'static str, EventStore)>,
    bus: Bus,
    catalog: Option<Catalog>,
    approvals: Option<Approvals>,
    scanning: Option<Scanning>,
    installing: Option<Installing>,
    wsus: Option<WsusSync>,
    /// Where the WSUS sync service keeps downloaded payloads.
    content_dir: PathBuf,
    mode: &'static str,
    operations: Operations,
}

impl Host {
    /// Opens the domain service of every store given (rebuilding its read models from its log).
    pub async fn open(
        listen: SocketAddr,
        stores: Vec<(&'static str, EventStore)>,
        bus: Bus,
        mode: &'static str,
        content_dir: PathBuf,
    ) -> anyhow::Result<Self> {
        let store = |name: &str| {
            stores
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, s)| s.clone())
        };
        let catalog = match store("catalog") {
            Some(store) => Some(
                Catalog::open(store)
                    .await
                    .context("cannot read the catalog log")?,
            ),
            None => None,
        };
        let approvals = match store("approvals") {
            Some(store) => Some(
                Approvals::open(store, server_version()?)
                    .await
                    .context("cannot read the approvals log")?,
            ),
            None => None,
        };
        let scanning = match store("scanning") {
            Some(store) => Some(
                Scanning::open(store)
                    .await
                    .context("cannot read the scanning log")?,
            ),
            None => None,
        };
        let installing = match store("installing") {
            Some(store) => Some(
                Installing::open(store, server_version()?)
                    .await
                    .context("cannot read the installing log")?,
            ),
            None => None,
        };
        let wsus = match store("wsus-sync") {
            Some(store) => Some(
                WsusSync::open(store, SyncOptions::default())
                    .await
                    .context("cannot read the WSUS sync log")?,
            ),
            None => None,
        };
        let listener = TcpListener::bind(listen).await.with_context(|| {
            format!("cannot listen on {listen}; is another Patchbay running? choose another with --listen")
        })?;
        Ok(Self {
            listener,
            stores,
            bus,
            catalog,
            approvals,
            scanning,
            installing,
            wsus,
            content_dir,
            mode,
            operations: Operations::default(),
        })
    }

    /// Sets the metrics endpoint and the shutdown bound.
    pub fn with_operations(mut self, operations: Operations) -> Self {
        self.operations = operations;
        self
    }

    /// The address the gRPC server listens on.
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown` is cancelled, then shuts down gracefully within the shutdown timeout.
    ///
    /// Shutdown has two phases. First everything that takes work stops: health turns NOT_SERVING,
    /// the gRPC server refuses new requests and drains (job streams end, agents reconnect
    /// elsewhere), consumers finish the batch in hand and ack it (what they had not fetched stays
    /// on the bus), the planner and schedulers stop. Then the relays publish what is left and save
    /// their checkpoints, and the sealers stop.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let intake = CancellationToken::new();
        let outbox = CancellationToken::new();
        let mut work = Tasks::new(&intake, &self.bus);
        let mut publishing = Tasks::new(&outbox, &self.bus);
        for (service, store) in &self.stores {
            let relay = Relay::new(service, store.clone(), self.bus.clone())?;
            publishing.spawn(|token| async move { Ok(relay.run(token).await?) });
            // The hash chain that `patchbay audit verify` checks.
            let sealer = Sealer::new(store.clone());
            publishing.spawn(|token| async move { Ok(sealer.run(token).await?) });
        }
        self.spawn_services(&mut work).await?;
        for (service, store) in &self.stores {
            spawn_snapshotter(&mut work, service, store, &self.operations);
        }

        let metrics = Arc::new(Metrics::default());
        let health = tonic_health::server::HealthReporter::new();
        let monitor = Monitor::new(
            self.stores.clone(),
            self.bus.clone(),
            work.consumers.clone(),
            self.installing.clone(),
            metrics.clone(),
            health.clone(),
        );
        monitor.starting().await;
        if let Some(address) = self.operations.metrics_listen {
            let listener = monitor::bind_metrics(address).await?;
            let scraped = monitor.clone();
            tracing::info!(address = %listener.local_addr()?, "metrics on /metrics");
            // Scrapes go on until the very end of the shutdown.
            publishing.spawn(|token| monitor::serve_metrics(listener, scraped, token));
        }
        let sampler = monitor.clone();
        work.spawn(|token| sampler.run(token));
        {
            let (shutdown, intake, monitor) = (shutdown.clone(), intake.clone(), monitor.clone());
            tokio::spawn(async move {
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = intake.cancelled() => {}
                }
                monitor.stopping().await;
                intake.cancel();
            });
        }

        let hosted = grpc::Hosted {
            stores: self.stores,
            catalog: self.catalog,
            approvals: self.approvals,
            scanning: self.scanning,
            installing: self.installing,
            wsus: self.wsus,
            mode: self.mode,
            health,
            metrics,
        };
        let mut served = tokio::spawn(grpc::serve(self.listener, hosted, intake.clone()));
        let failed_early = tokio::select! {
            () = intake.cancelled() => None,
            result = &mut served => Some(result),
        };
        // The gRPC server failed on its own: stop everything else too.
        intake.cancel();
        let timeout = self.operations.shutdown_timeout;
        let stop_outbox = outbox.clone();
        let drained = tokio::time::timeout(timeout, async move {
            let served = match failed_early {
                Some(result) => result,
                None => served.await,
            };
            let mut outcome = served.context("the gRPC server task panicked")?;
            for result in work.join().await {
                outcome = outcome.and(result);
            }
            stop_outbox.cancel();
            for result in publishing.join().await {
                outcome = outcome.and(result);
            }
            outcome
        })
        .await;
        match drained {
            Ok(outcome) => {
                tracing::info!("stopped");
                outcome
            }
            Err(_) => anyhow::bail!(
                "shutdown did not finish within {} s; work in flight is redelivered at the next start \
                 (raise --shutdown-timeout to wait longer)",
                timeout.as_secs()
            ),
        }
    }

    /// Starts every hosted service's followers, consumers, planner and schedulers.
    async fn spawn_services(&self, tasks: &mut Tasks<'_>) -> anyhow::Result<()> {
        if let Some(catalog) = &self.catalog {
            let view = catalog.clone();
            tasks.spawn(|token| async move { Ok(view.follow(token).await?) });
            let store = catalog.store();
            tasks.consume(
                stats::CONSUMER,
                "scanning",
                Some(stats::EVENT_TYPE),
                store,
                DeviceRequirementsRecorder,
            );
            // Several event types each, so no subject filter: the handlers skip the others.
            tasks.consume(
                catalog_approvals::CONSUMER,
                catalog_approvals::SERVICE,
                None,
                store,
                ApprovalRecorder,
            );
            tasks.consume(
                catalog_wsus::CONSUMER,
                catalog_wsus::SERVICE,
                Some(catalog_wsus::EVENT_TYPE),
                store,
                WsusRecorder::new(catalog.clone()),
            );
            tasks.consume(
                catalog_installs::CONSUMER,
                catalog_installs::SERVICE,
                None,
                store,
                InstallResultRecorder,
            );
        }
        if let Some(approvals) = &self.approvals {
            let view = approvals.clone();
            tasks.spawn(|token| async move { Ok(view.follow(token).await?) });
            tasks.consume(
                approvals_observer::CONSUMER,
                "catalog",
                None,
                approvals.store(),
                CatalogObserver::new(approvals.clone()),
            );
        }
        if let Some(scanning) = &self.scanning {
            let view = scanning.clone();
            tasks.spawn(|token| async move { Ok(view.follow(token).await?) });
            tasks.consume(
                indexer::CONSUMER,
                "catalog",
                None,
                scanning.store(),
                CatalogIndexer,
            );
            tasks.consume(
                install_guard::CONSUMER,
                "installing",
                Some(install_guard::EVENT_TYPE),
                scanning.store(),
                InstallGuard::new(scanning.clone()),
            );
            scanning.ensure_default_task().await?;
            let scheduled = scanning.clone();
            tasks.spawn(|token| on_schedule(token, move || scan_when_due(scheduled.clone())));
        }
        if let Some(installing) = &self.installing {
            let view = installing.clone();
            tasks.spawn(|token| async move { Ok(view.follow(token).await?) });
            for observer in INSTALLING_OBSERVERS {
                tasks.consume(
                    observer.consumer,
                    observer.service,
                    None,
                    installing.store(),
                    observer,
                );
            }
            let planner = installing.clone();
            tasks.spawn(|token| async move {
                Ok(patchbay_installing::planner::run_planner(planner, token).await?)
            });
            let scheduled = installing.clone();
            tasks.spawn(|token| on_schedule(token, move || install_when_due(scheduled.clone())));
        }
        if let Some(wsus) = &self.wsus {
            let view = wsus.clone();
            tasks.spawn(|token| async move { Ok(view.follow(token).await?) });
            let scheduled = wsus.clone();
            tasks.spawn(|token| on_schedule(token, move || sync_when_due(scheduled.clone())));
            // Payloads of approved updates, when the settings ask for content.
            tasks.consume(
                wsus_content::CONSUMER,
                wsus_content::SERVICE,
                Some(wsus_content::EVENT_TYPE),
                wsus.store(),
                ContentRequester::new(wsus.clone()),
            );
            let downloader = Downloader::new(
                wsus.clone(),
                self.content_dir.clone(),
                std::time::Duration::from_secs(120),
            )?;
            tasks.spawn(|token| async move { Ok(downloader.run(token).await?) });
        }
        Ok(())
    }
}

/// The background work of a host: each task gets a child of the shutdown token.
struct Tasks<'a> {
    handles: Vec<JoinHandle<anyhow::Result<()>>>,
    shutdown: &'a CancellationToken,
    bus: &'a Bus,
    /// The durable consumers started, for health and metrics.
    consumers: Vec<ConsumerRef>,
}

impl<'a> Tasks<'a> {
    fn new(shutdown: &'a CancellationToken, bus: &'a Bus) -> Self {
        Self {
            handles: Vec::new(),
            shutdown,
            bus,
            consumers: Vec::new(),
        }
    }

    /// Waits for every task; a panic counts as an error.
    async fn join(self) -> Vec<anyhow::Result<()>> {
        let mut results = Vec::with_capacity(self.handles.len());
        for handle in self.handles {
            results.push(match handle.await {
                Ok(result) => result,
                Err(error) => Err(anyhow::anyhow!("a background task failed: {error}")),
            });
        }
        results
    }

    fn spawn<F>(&mut self, work: impl FnOnce(CancellationToken) -> F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.handles
            .push(tokio::spawn(work(self.shutdown.child_token())));
    }

    /// Runs durable consumer `consumer` of `service`'s events into `store`; with `event_type`,
    /// the bus delivers only that type.
    fn consume<H: EventHandler>(
        &mut self,
        consumer: &str,
        service: &str,
        event_type: Option<&str>,
        store: &EventStore,
        handler: H,
    ) {
        let config = ConsumerConfig {
            filter_subject: event_type.map(|t| self.bus.subjects().event(service, t)),
            ..ConsumerConfig::new(consumer, service)
        };
        self.consumers.push(ConsumerRef {
            name: consumer.to_owned(),
            service: service.to_owned(),
        });
        let runner = ConsumerRunner::new(config, store.clone(), self.bus.clone(), handler);
        self.spawn(|token| async move { Ok(runner.run(token).await?) });
    }
}

/// How often the schedulers look for work that is due.
const SCHEDULE_TICK: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs `step` at start and then every [`SCHEDULE_TICK`] until `shutdown`.
async fn on_schedule<F, Fut>(shutdown: CancellationToken, mut step: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        step().await;
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(SCHEDULE_TICK) => {}
        }
    }
}

// Each scheduled step runs in a root span, so the events it appends (and the jobs they cause)
// carry a trace.

/// Runs scheduled scan tasks that are due (the default task: weekly, first at start).
async fn scan_when_due(scanning: Scanning) {
    let due = scanning
        .run_due_tasks(chrono::Utc::now())
        .instrument(tracing::info_span!("schedule.scan"))
        .await;
    match due {
        Ok(runs) => {
            for run in runs {
                tracing::info!(task = %run.task_id, run = run.run, devices = run.devices_scanned, "scheduled scan completed");
            }
        }
        Err(error) => tracing::warn!(%error, "scheduled scans failed; retrying at the next tick"),
    }
}

/// Starts install tasks with a daily or weekly schedule that are due.
async fn install_when_due(installing: Installing) {
    let due = installing
        .run_due_tasks(chrono::Utc::now())
        .instrument(tracing::info_span!("schedule.install"))
        .await;
    match due {
        Ok(runs) => {
            for (task_id, run) in runs {
                tracing::info!(%task_id, run, "scheduled install run started");
            }
        }
        Err(error) => {
            tracing::warn!(%error, "scheduled installs failed; retrying at the next tick")
        }
    }
}

/// Starts a WSUS sync run when the schedule says (daily by default, first at start once configured).
async fn sync_when_due(wsus: WsusSync) {
    let due = wsus
        .run_due(chrono::Utc::now())
        .instrument(tracing::info_span!("schedule.wsus"))
        .await;
    match due {
        Ok(Some((run_id, _running))) => tracing::info!(%run_id, "scheduled WSUS sync started"),
        Ok(None) => {}
        Err(error) => {
            tracing::warn!(%error, "cannot start a scheduled WSUS sync; retrying at the next tick")
        }
    }
}

/// This Patchbay's version: updates that need a newer server are never approved or installed.
pub fn server_version() -> anyhow::Result<semver::Version> {
    semver::Version::parse(env!("CARGO_PKG_VERSION")).context("the package version is not semver")
}
