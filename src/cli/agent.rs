//! `patchbay agent`: the device side.

use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;
use patchbay_proto::scanning::v1 as pb;
use tokio_util::sync::CancellationToken;

use crate::agent::{AgentConfig, DebianPaths, Executor};

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// gRPC address of the Patchbay server.
    #[arg(
        long,
        env = "PATCHBAY_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    /// Where the inventory comes from.
    #[arg(long, value_enum, default_value = "debian")]
    executor: ExecutorArg,
    /// The dpkg database (Debian executor).
    #[arg(long, default_value = "/var/lib/dpkg/status")]
    dpkg_status: PathBuf,
    /// The apt configuration directory whose sources give the device's suites (Debian executor).
    #[arg(long, default_value = "/etc/apt")]
    apt_dir: PathBuf,
    /// Register (or reuse the saved identity), report the inventory once and exit.
    #[arg(long)]
    once: bool,
    /// Where the agent keeps its identity between runs.
    #[arg(
        long,
        env = "PATCHBAY_AGENT_STATE_DIR",
        default_value = "./patchbay-agent"
    )]
    state_dir: PathBuf,
    /// Name to register the device under (default: this machine's host name).
    #[arg(long)]
    hostname: Option<String>,
    /// Device groups to register in (repeatable).
    #[arg(long = "group")]
    groups: Vec<String>,
    /// Seconds between inventory reports when not --once.
    #[arg(long, default_value_t = 3600)]
    interval: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExecutorArg {
    Debian,
    Simulated,
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let executor = match args.executor {
        ExecutorArg::Debian => Executor::Debian(DebianPaths {
            dpkg_status: args.dpkg_status,
            apt_sources: args.apt_dir,
            ..DebianPaths::default()
        }),
        ExecutorArg::Simulated => Executor::Simulated(simulated_inventory()),
    };
    let config = AgentConfig {
        server: args.server,
        executor,
        state_dir: args.state_dir,
        hostname: args.hostname.unwrap_or_else(host_name),
        groups: args.groups,
        interval: Duration::from_secs(args.interval.max(1)),
    };
    if args.once {
        let (identity, changed) = crate::agent::report_once(&config).await?;
        println!(
            "device {} reported its inventory ({})",
            identity.device_id,
            if changed { "changed" } else { "unchanged" }
        );
        return Ok(());
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(super::stop_on_signal(shutdown.clone()));
    crate::agent::run(config, shutdown).await
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unnamed-device".to_owned())
}

/// A small Debian 12 machine, for trying Patchbay without a real device.
fn simulated_inventory() -> pb::Inventory {
    let package = |name: &str, version: &str, architecture: &str| pb::InstalledPackage {
        name: name.to_owned(),
        version: version.to_owned(),
        architecture: architecture.to_owned(),
    };
    pb::Inventory {
        os: "Debian GNU/Linux 12 (bookworm), simulated".to_owned(),
        native_architecture: "amd64".to_owned(),
        packages: vec![
            package("dpkg", "1.21.22", "amd64"),
            package("openssl", "3.0.11-1~deb12u2", "amd64"),
            package("libssl3", "3.0.11-1~deb12u2", "amd64"),
            package("git", "1:2.39.2-1.1", "amd64"),
            package("tzdata", "2024a-0+deb12u1", "all"),
            package("curl", "7.88.1-10+deb12u5", "amd64"),
        ],
        apt_suites: vec![
            "bookworm".to_owned(),
            "bookworm-security".to_owned(),
            "bookworm-updates".to_owned(),
        ],
        ..Default::default()
    }
}
