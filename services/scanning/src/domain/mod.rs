//! Pure scanning logic: devices (register, report inventory) and scan tasks, as decide/evolve.

mod device;
mod scan_task;

pub use device::{
    DeviceCommand, DeviceState, MAX_PACKAGES, credential_digest, decide_device, evolve_device,
};
pub use scan_task::{ScanTaskCommand, ScanTaskState, TaskStatus, decide_task, evolve_task};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanningError {
    #[error("{0}")]
    InvalidInput(String),
    #[error(
        "device '{0}' is not registered; run the agent without a saved identity to register it"
    )]
    UnknownDevice(String),
    #[error("device '{0}' is already registered")]
    AlreadyRegistered(String),
    #[error("the credential presented for device '{0}' is wrong")]
    BadCredential(String),
    #[error("scan task '{0}' does not exist")]
    UnknownTask(String),
    #[error("scan task '{task}' cannot {action} while it is {status}")]
    WrongStatus {
        task: String,
        action: &'static str,
        status: &'static str,
    },
}
