//! The installing service: install tasks, the planner that turns scans and approvals into install and
//! uninstall jobs, and the job stream agents run them from.

pub mod domain;
pub mod events;
pub mod grpc;
pub mod observer;
pub mod planner;
pub mod service;
pub mod view;

pub use service::{Installing, InstallingServiceError};
