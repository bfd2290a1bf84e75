//! The WSUS sync service's pure domain: settings, the upstream's anchors, runs and revisions.

pub mod config;
pub mod revision;
pub mod run;
pub mod upstream;

pub use config::{ConfigRequest, Schedule, decide_configure, filter_digest};
pub use revision::{CategoryInfo, RevisionChange, classify, synced_event};
pub use run::{RunState, RunSummary, evolve_run};
pub use upstream::UpstreamState;

/// A request the WSUS sync service refuses, in words an administrator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{0}")]
    InvalidInput(String),
    #[error(
        "WSUS sync is not configured: run `patchbay wsus config set --upstream URL --products ... --classifications ...` first"
    )]
    NotConfigured,
    #[error(
        "sync run {0} is still running; wait for it (`patchbay wsus runs`) before starting another"
    )]
    AlreadyRunning(String),
}
