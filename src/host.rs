//! Hosting services in one process, whatever the mode: open each hosted service on its store, run
//! its relay, read-model followers and consumers, and serve its gRPC APIs until shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use patchbay_approvals::Approvals;
use patchbay_approvals::observer::{self as approvals_observer, CatalogObserver};
use patchbay_bus::{Bus, ConsumerConfig, ConsumerRunner, Relay};
use patchbay_catalog::Catalog;
use patchbay_catalog::approvals::{self as catalog_approvals, ApprovalRecorder};
use patchbay_catalog::installs::{self as catalog_installs, InstallResultRecorder};
use patchbay_catalog::stats::{self, DeviceRequirementsRecorder};
use patchbay_catalog::wsus::{self as catalog_wsus, WsusRecorder};
use patchbay_eventstore::{EventStore, Sealer};
use patchbay_installing::Installing;
use patchbay_installing::observer::OBSERVERS as INSTALLING_OBSERVERS;
use patchbay_scanning::Scanning;
use patchbay_scanning::indexer::{self, CatalogIndexer};
use patchbay_scanning::install_guard::{self, InstallGuard};
use patchbay_wsus_sync::content::{self as wsus_content, ContentRequester, Downloader};
use patchbay_wsus_sync::{SyncOptions, WsusSync};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::grpc;

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
        })
    }

    /// The address the gRPC server listens on.
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown` is cancelled, then stops every background task and drains requests.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut tasks: Vec<JoinHandle<anyhow::Result<()>>> = Vec::new();
        for (service, store) in &self.stores {
            let relay = Relay::new(service, store.clone(), self.bus.clone())?;
            let token = shutdown.child_token();
            tasks.push(tokio::spawn(async move { Ok(relay.run(token).await?) }));
            // The hash chain that `patchbay audit verify` checks.
            let sealer = Sealer::new(store.clone());
            let token = shutdown.child_token();
            tasks.push(tokio::spawn(async move { Ok(sealer.run(token).await?) }));
        }
        if let Some(catalog) = &self.catalog {
            let (view, token) = (catalog.clone(), shutdown.child_token());
            tasks.push(tokio::spawn(async move { Ok(view.follow(token).await?) }));
            let runner = ConsumerRunner::new(
                ConsumerConfig {
                    filter_subject: Some(self.bus.subjects().event("scanning", stats::EVENT_TYPE)),
                    ..ConsumerConfig::new(stats::CONSUMER, "scanning")
                },
                catalog.store().clone(),
                self.bus.clone(),
                DeviceRequirementsRecorder,
            );
            let token = shutdown.child_token();
            tasks.push(tokio::spawn(async move { Ok(runner.run(token).await?) }));
            // Several event types each, so no subject filter: the handlers skip the others.
            let runner = ConsumerRunner::new(
                ConsumerConfig::new(catalog_approvals::CONSUMER, catalog_approvals::SERVICE),
                catalog.store().clone(),
                self.bus.clone(),
                ApprovalRecorder,
            );
            let token = shutdown.child_token();
            tasks.push(tokio::spawn(async move { Ok(runner.run(token).await?) }));
            let runner = ConsumerRunner::new(
                ConsumerConfig {
                    filter_subject: Some(
                        self.bus
                            .subjects()
                            .event(catalog_wsus::SERVICE, catalog_wsus::EVENT_TYPE),
                    ),
                    ..ConsumerConfig::new(catalog_wsus::CONSUMER, catalog_wsus::SERVICE)
                },
                catalog.store().clone(),
                self.bus.clone(),
                WsusRecorder::new(catalog.clone()),
            );
            let token = shutdown.child_token();
            tasks.push(tokio::spawn(async move { Ok(runner.run(token).await?) }));
            let runner = ConsumerRunner::new(
                ConsumerConfig::new(catalog_installs::CONSUMER, catalog_installs::SERVICE),
                catalog.store().clone(),
                self.bus.clone(),
                InstallResultRecorder,
            );
            let token = shutdown.child_token();
            tasks.push(tokio::spawn(async move { Ok(runner.run(token).await?) }));
        }
        if let Some(approvals) = &self.approvals {
            let (view, token) = (approvals.clone(), shutdown.child_token());
            tasks.push(tokio::spawn(async move { Ok(view.follow(token).await?) }));
            let runner = ConsumerRunner::new(
                ConsumerConfig::new(approvals_observer::CONSUMER, "catalog"),
                approvals.store().clone(),
                self.bus.clone(),
                CatalogObserver::new(approvals.clone()),
            );
            let token = shutdown.child_token();
            tasks.push(tokio::spawn(async move { Ok(runner.run(token).await?) }));
        }
        if let Some(scanning) = &self.scanning {
            let (view, token) = (scanning.clone(), shutdown.child_token());
            tasks.push(tokio::spawn(async move { Ok(view.follow(token).await?) }));
            let runner = ConsumerRunner::new(
                ConsumerConfig::new(indexer::CONSUMER, "catalog"),
                scanning.store().clone(),
                self.bus.clone(),
                CatalogIndexer,
            );
            let token = shutdown.child_token();
            tasks.push(tokio::spawn(async move { Ok(runner.run(token).await?) }));
            let runner = ConsumerRunner::new(
                ConsumerConfig {
                    filter_subject: Some(
                        self.bus
                            .subjects()
                            .event("installing", install_guard::EVENT_TYPE),
                    ),
                    ..ConsumerConfig::new(install_guard::CONSUMER, "installing")
                },
                scanning.store().clone(),
                self.bus.clone(),
                InstallGuard::new(scanning.clone()),
            );
            let token = shutdown.child_token();
            tasks.push(tokio::spawn(async move { Ok(runner.run(token).await?) }));
            scanning.ensure_default_task().await?;
            tasks.push(tokio::spawn(run_schedule(
                scanning.clone(),
                shutdown.child_token(),
            )));
        }
        if let Some(installing) = &self.installing {
            let (view, token) = (installing.clone(), shutdown.child_token());
            tasks.push(tokio::spawn(async move { Ok(view.follow(token).await?) }));
            for observer in INSTALLING_OBSERVERS {
                let runner = ConsumerRunner::new(
                    ConsumerConfig::new(observer.consumer, observer.service),
                    installing.store().clone(),
                    self.bus.clone(),
                    observer,
                );
                let token = shutdown.child_token();
                tasks.push(tokio::spawn(async move { Ok(runner.run(token).await?) }));
            }
            let (planner, token) = (installing.clone(), shutdown.child_token());
            tasks.push(tokio::spawn(async move {
                Ok(patchbay_installing::planner::run_planner(planner, token).await?)
            }));
            tasks.push(tokio::spawn(run_install_schedule(
                installing.clone(),
                shutdown.child_token(),
            )));
        }
        if let Some(wsus) = &self.wsus {
            let (view, token) = (wsus.clone(), shutdown.child_token());
            tasks.push(tokio::spawn(async move { Ok(view.follow(token).await?) }));
            tasks.push(tokio::spawn(run_wsus_schedule(
                wsus.clone(),
                shutdown.child_token(),
            )));
            // Payloads of approved updates, when the settings ask for content.
            let runner = ConsumerRunner::new(
                ConsumerConfig {
                    filter_subject: Some(
                        self.bus
                            .subjects()
                            .event(wsus_content::SERVICE, wsus_content::EVENT_TYPE),
                    ),
                    ..ConsumerConfig::new(wsus_content::CONSUMER, wsus_content::SERVICE)
                },
                wsus.store().clone(),
                self.bus.clone(),
                ContentRequester::new(wsus.clone()),
            );
            let token = shutdown.child_token();
            tasks.push(tokio::spawn(async move { Ok(runner.run(token).await?) }));
            let downloader = Downloader::new(
                wsus.clone(),
                self.content_dir.clone(),
                std::time::Duration::from_secs(120),
            )?;
            let token = shutdown.child_token();
            tasks.push(tokio::spawn(
                async move { Ok(downloader.run(token).await?) },
            ));
        }
        let hosted = grpc::Hosted {
            stores: self.stores,
            catalog: self.catalog,
            approvals: self.approvals,
            scanning: self.scanning,
            installing: self.installing,
            wsus: self.wsus,
            mode: self.mode,
        };
        let served = grpc::serve(self.listener, hosted, shutdown.clone()).await;
        shutdown.cancel();
        for task in tasks {
            task.await??;
        }
        served
    }
}

/// How often the scheduler looks for scan tasks that are due.
const SCHEDULE_TICK: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs scheduled scan tasks when they are due (the default task: weekly, first at start).
async fn run_schedule(scanning: Scanning, shutdown: CancellationToken) -> anyhow::Result<()> {
    loop {
        // A root span, so the events of a scheduled scan (and the jobs they cause) carry a trace.
        let span = tracing::info_span!("schedule.scan");
        match scanning
            .run_due_tasks(chrono::Utc::now())
            .instrument(span)
            .await
        {
            Ok(runs) => {
                for run in runs {
                    tracing::info!(task = %run.task_id, run = run.run, devices = run.devices_scanned, "scheduled scan completed");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "scheduled scans failed; retrying at the next tick")
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(SCHEDULE_TICK) => {}
        }
    }
}

/// Runs install tasks with a daily or weekly schedule when they are due.
async fn run_install_schedule(
    installing: Installing,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let span = tracing::info_span!("schedule.install");
        match installing
            .run_due_tasks(chrono::Utc::now())
            .instrument(span)
            .await
        {
            Ok(runs) => {
                for (task_id, run) in runs {
                    tracing::info!(%task_id, run, "scheduled install run started");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "scheduled installs failed; retrying at the next tick")
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(SCHEDULE_TICK) => {}
        }
    }
}

/// Starts WSUS sync runs when the schedule says (daily by default, first at start once configured).
async fn run_wsus_schedule(wsus: WsusSync, shutdown: CancellationToken) -> anyhow::Result<()> {
    loop {
        let span = tracing::info_span!("schedule.wsus");
        match wsus.run_due(chrono::Utc::now()).instrument(span).await {
            Ok(Some((run_id, _running))) => tracing::info!(%run_id, "scheduled WSUS sync started"),
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, "cannot start a scheduled WSUS sync; retrying at the next tick")
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(SCHEDULE_TICK) => {}
        }
    }
}

/// This Patchbay's version: updates that need a newer server are never approved or installed.
pub fn server_version() -> anyhow::Result<semver::Version> {
    semver::Version::parse(env!("CARGO_PKG_VERSION")).context("the package version is not semver")
}
