//! The scanning service: devices and their inventories, scan tasks, and the applicability engine
//! that computes each device's required updates and vulnerabilities from the catalog's events.

pub mod domain;
pub mod engine;
pub mod events;
mod group_commit;
pub mod grpc;
pub mod indexer;
pub mod install_guard;
pub mod scan_payload;
pub mod service;
pub mod upcast;
pub mod view;

pub use service::{Scanning, ScanningServiceError};
