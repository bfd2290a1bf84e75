//! The catalog service: every revision of every update Patchbay knows (Debian packages, CISA KEV
//! vulnerabilities, Microsoft updates from WSUS), as an event-sourced log with pure domain logic.

pub mod approvals;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod import;
pub mod installs;
pub mod service;
pub mod stats;
pub mod view;
pub mod wsus;

pub use service::{Catalog, CatalogServiceError, ImportOutcome};
