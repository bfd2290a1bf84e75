//! The approvals service: whether each update may be installed (Undefined / Approved / Declined), who
//! decided and why, EULA acceptances, and auto-approval rules applied to updates as they arrive.

pub mod domain;
pub mod events;
pub mod grpc;
pub mod observer;
pub mod service;
pub mod view;

pub use service::{Approvals, ApprovalsServiceError};
