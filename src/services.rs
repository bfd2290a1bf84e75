//! The services Patchbay is made of; each owns one event log and publishes it on its own stream.

/// Service names as used for log files, databases, bus streams and health checks.
pub const SERVICES: [&str; 5] = [
    "catalog",
    "approvals",
    "scanning",
    "installing",
    "wsus-sync",
];
