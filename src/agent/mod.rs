//! `patchbay agent`: registers the device (or reuses its saved identity), reports its inventory,
//! and keeps reporting on an interval.

mod inventory;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use patchbay_proto::scanning::v1 as pb;
use patchbay_proto::scanning::v1::agent_service_client::AgentServiceClient;
use tokio_util::sync::CancellationToken;

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

/// The device's identity as issued at registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub device_id: String,
    pub credential: String,
}

/// Registers if needed and reports once; returns the identity and whether the inventory changed.
pub async fn report_once(config: &AgentConfig) -> anyhow::Result<(Identity, bool)> {
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
    let inventory = match &config.executor {
        Executor::Debian(paths) => {
            let (inventory, warnings) = read_debian_inventory(paths)?;
            for warning in warnings {
                tracing::warn!(%warning, "skipped a malformed dpkg status entry");
            }
            inventory
        }
        Executor::Simulated(inventory) => inventory.clone(),
    };
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

/// Reports now and then every `interval` until `shutdown`; a failed report is logged and retried.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    loop {
        match report_once(&config).await {
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
