//! `patchbay agent`: the device side (inventory reports and install jobs).

use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;
use patchbay_proto::scanning::v1 as pb;
use tokio_util::sync::CancellationToken;

use crate::agent::{AgentConfig, DebianJobs, DebianPaths, Executor, JobSettings};

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// gRPC address of the Patchbay server.
    #[arg(
        long,
        env = "PATCHBAY_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    /// gRPC address of the install job stream (default: --server).
    #[arg(long, env = "PATCHBAY_JOBS_SERVER")]
    jobs_server: Option<String>,
    /// What reads the inventory and runs jobs: `debian` (dpkg database, apt-get) or `simulated`
    /// (a synthetic Debian 12 machine kept in memory).
    #[arg(long, value_enum, default_value = "debian")]
    executor: ExecutorArg,
    /// Debian executor: simulate every job with `apt-get -s`; nothing is installed or removed.
    #[arg(long)]
    dry_run: bool,
    /// Debian executor: the apt-get program to run.
    #[arg(long, value_name = "PATH", default_value = "apt-get")]
    apt_get: PathBuf,
    /// Debian executor: seconds a job may run before apt-get is stopped and the job fails.
    #[arg(long, value_name = "SECONDS", default_value_t = 1800)]
    job_timeout: u64,
    /// Simulated executor: share of jobs that fail (0.0 to 1.0), chosen by job id so runs repeat.
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    fail_share: f64,
    /// The dpkg database (Debian executor).
    #[arg(long, default_value = "/var/lib/dpkg/status")]
    dpkg_status: PathBuf,
    /// The apt configuration directory whose sources give the device's suites (Debian executor).
    #[arg(long, default_value = "/etc/apt")]
    apt_dir: PathBuf,
    /// Register (or reuse the saved identity), report the inventory once and exit; no jobs are run.
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
    /// Seconds between inventory reports when not --once (each successful job also reports).
    #[arg(long, default_value_t = 3600)]
    interval: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExecutorArg {
    Debian,
    Simulated,
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.fail_share) {
        anyhow::bail!(
            "--fail-share {} is not a share; give a number from 0.0 (no job fails) to 1.0 (every job fails)",
            args.fail_share
        );
    }
    // Options of the other executor would be silently ignored; say so instead.
    match args.executor {
        ExecutorArg::Debian if args.fail_share > 0.0 => anyhow::bail!(
            "--fail-share only applies to --executor simulated; drop it, or use --dry-run to try jobs on this machine"
        ),
        ExecutorArg::Simulated if args.dry_run => anyhow::bail!(
            "--dry-run only applies to --executor debian; the simulated executor never touches the machine"
        ),
        _ => {}
    }
    let jobs = JobSettings {
        server: args.jobs_server.unwrap_or_else(|| args.server.clone()),
        debian: DebianJobs {
            apt_get: args.apt_get,
            dry_run: args.dry_run,
            timeout: Duration::from_secs(args.job_timeout.max(1)),
            ..DebianJobs::default()
        },
        fail_share: args.fail_share,
    };
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
    // A long-running agent must say what it does with jobs; `--once` only prints its one line.
    let _telemetry =
        patchbay_telemetry::init("patchbay-agent", patchbay_telemetry::LogFormat::Pretty)?;
    let shutdown = CancellationToken::new();
    tokio::spawn(super::stop_on_signal(shutdown.clone()));
    crate::agent::run(config, jobs, shutdown).await
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
