//! `patchbay agent`: registers the device (or reuses its saved identity), reports its inventory on
//! an interval, and runs the install jobs the server streams to it.

mod executor;
mod inventory;
mod jobs;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use patchbay_proto::scanning::v1 as pb;
use patchbay_proto::scanning::v1::agent_service_client::AgentServiceClient;
use tokio_util::sync::CancellationToken;

pub use executor::{
    DebianJobs, JobExecutor, JobResult, Outcome, SimulatedInventory, SimulatedJobs,
};
pub use inventory::{DebianPaths, apt_suites, read_debian_inventory};

/// Where inventories come from.
#[derive(Debug, Clone)]
pub enum Executor {
    /// The machine's dpkg database and apt sources.
    Debian(DebianPaths),
    /// A fixed synthetic inventory, for tests and load runs.
    Simulated(pb::Inventory),
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub server: String,
    pub executor: Executor,
    /// Holds `identity.json` (device id and credential) between runs.
    pub state_dir: PathBuf,
    pub hostname: String,
    pub groups: Vec<String>,
    pub interval: Duration,
}

/// How the agent runs install jobs (everything but `--once`).
#[derive(Debug, Clone)]
pub struct JobSettings {
    /// gRPC address of the job stream; usually the server inventories go to.
    pub server: String,
    /// apt-get settings for the Debian executor; its native architecture is read from the dpkg
    /// database when the agent starts.
    pub debian: DebianJobs,
    /// Share of jobs the simulated executor fails, 0.0 to 1.0.
    pub fail_share: f64,
}

/// Where each inventory report reads the device's state. The simulated inventory is shared with the
/// job executor, so a report after a job shows what the job changed.
#[derive(Debug, Clone)]
pub(crate) enum InventorySource {
    Debian(DebianPaths),
    Simulated(SimulatedInventory),
}

impl InventorySource {
    fn of(executor: &Executor) -> Self {
        match executor {
            Executor::Debian(paths) => Self::Debian(paths.clone()),
            Executor::Simulated(inventory) => {
                Self::Simulated(SimulatedInventory::new(inventory.clone()))
            }
        }
    }

    fn read(&self) -> anyhow::Result<pb::Inventory> {
        match self {
            Self::Debian(paths) => {
                let (inventory, warnings) = read_debian_inventory(paths)?;
                for warning in warnings {
                    tracing::warn!(%warning, "skipped a malformed dpkg status entry");
                }
                Ok(inventory)
            }
            Self::Simulated(inventory) => Ok(inventory.snapshot()),
        }
    }
}

/// The device's identity as issued at registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub device_id: String,
    pub credential: String,
}

/// Registers if needed and reports once; returns the identity and whether the inventory changed.
pub async fn report_once(config: &AgentConfig) -> anyhow::Result<(Identity, bool)> {
    report_from(config, &InventorySource::of(&config.executor)).await
}

/// [`report_once`] with the inventory read from `source`.
pub(crate) async fn report_from(
    config: &AgentConfig,
    source: &InventorySource,
) -> anyhow::Result<(Identity, bool)> {
    let channel = tonic::transport::Endpoint::from_shared(config.server.clone())
        .with_context(|| format!("--server {:?} is not a URL", config.server))?
        .connect()
        .await
        .with_context(|| format!("cannot reach the Patchbay server at {}", config.server))?;
    let mut client = AgentServiceClient::new(channel);
    let identity = match load_identity(&config.state_dir)? {
        Some(identity) => identity,
        None => {
            let registered = client
                .register(pb::RegisterRequest {
                    hostname: config.hostname.clone(),
                    groups: config.groups.clone(),
                })
                .await
                .map_err(|s| anyhow::anyhow!("registration refused: {}", s.message()))?
                .into_inner();
            let identity = Identity {
                device_id: registered.device_id,
                credential: registered.credential,
            };
            save_identity(&config.state_dir, &identity)?;
            tracing::info!(device_id = %identity.device_id, "registered");
            identity
        }
    };
    let inventory = source.read()?;
    let changed = client
        .report_inventory(pb::ReportInventoryRequest {
            device_id: identity.device_id.clone(),
            credential: identity.credential.clone(),
            inventory: Some(inventory),
        })
        .await
        .map_err(|s| anyhow::anyhow!("inventory report refused: {}", s.message()))?
        .into_inner()
        .changed;
    Ok((identity, changed))
}

/// Reports the inventory now and then every `interval`, and runs the jobs the server streams, until
/// `shutdown`. Failed reports are logged and retried; a lost job stream is reconnected.
pub async fn run(
    config: AgentConfig,
    settings: JobSettings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (source, executor) = match &config.executor {
        Executor::Debian(paths) => {
            // Packages of the device's own architecture are named without `:ARCH`, as apt expects.
            let native_architecture = match read_debian_inventory(paths) {
                Ok((inventory, _)) if !inventory.native_architecture.is_empty() => {
                    Some(inventory.native_architecture)
                }
                Ok(_) => None,
                Err(error) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "cannot tell the native architecture; jobs will name every package's architecture"
                    );
                    None
                }
            };
            let jobs = DebianJobs {
                native_architecture,
                ..settings.debian
            };
            (
                InventorySource::Debian(paths.clone()),
                JobExecutor::Debian(jobs),
            )
        }
        Executor::Simulated(inventory) => {
            let shared = SimulatedInventory::new(inventory.clone());
            let jobs = SimulatedJobs {
                inventory: shared.clone(),
                fail_share: settings.fail_share,
            };
            (
                InventorySource::Simulated(shared),
                JobExecutor::Simulated(jobs),
            )
        }
    };
    match &executor {
        JobExecutor::Debian(jobs) => tracing::info!(
            apt_get = %jobs.apt_get.display(), dry_run = jobs.dry_run,
            native_architecture = jobs.native_architecture.as_deref().unwrap_or("unknown"),
            jobs_server = %settings.server, "agent started; install jobs run with apt-get"
        ),
        JobExecutor::Simulated(jobs) => tracing::info!(
            fail_share = jobs.fail_share, jobs_server = %settings.server,
            "agent started; install jobs are simulated"
        ),
    }
    // A job loop that cannot start (a bad --jobs-server) ends the agent rather than leaving it half up.
    tokio::try_join!(
        report_loop(&config, &source, shutdown.clone()),
        jobs::run(&config, &settings.server, &executor, &source, shutdown),
    )?;
    Ok(())
}

/// Reports now and then every `interval` until `shutdown`; a failed report is logged and retried.
async fn report_loop(
    config: &AgentConfig,
    source: &InventorySource,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        match report_from(config, source).await {
            Ok((identity, changed)) => {
                tracing::info!(device_id = %identity.device_id, changed, "inventory reported")
            }
            Err(error) => tracing::warn!(
                error = format!("{error:#}"),
                "inventory report failed; will retry"
            ),
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(config.interval) => {}
        }
    }
}

const IDENTITY_FILE: &str = "identity";

/// Reads `device_id` and `credential`, one per line.
fn load_identity(state_dir: &Path) -> anyhow::Result<Option<Identity>> {
    let path = state_dir.join(IDENTITY_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut lines = text.lines().map(str::trim);
    match (lines.next(), lines.next()) {
        (Some(device_id), Some(credential)) if !device_id.is_empty() && !credential.is_empty() => {
            Ok(Some(Identity {
                device_id: device_id.to_owned(),
                credential: credential.to_owned(),
            }))
        }
        _ => anyhow::bail!(
            "{} is damaged; delete it to register the device again",
            path.display()
        ),
    }
}

fn save_identity(state_dir: &Path, identity: &Identity) -> anyhow::Result<()> {
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("cannot create {}", state_dir.display()))?;
    let path = state_dir.join(IDENTITY_FILE);
    // Written beside and renamed, so a crash never leaves half an identity.
    let partial = state_dir.join(format!("{IDENTITY_FILE}.partial"));
    std::fs::write(
        &partial,
        format!("{}\n{}\n", identity.device_id, identity.credential),
    )
    .with_context(|| format!("cannot write {}", partial.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::rename(&partial, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
