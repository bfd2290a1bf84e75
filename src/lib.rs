//! Patchbay's one binary as a library: the command line, the embedded all-in-one server and the
//! gRPC surface, so the end-to-end tests can start the same application the binary runs.

pub mod agent;
pub mod cli;
pub mod distributed;
pub mod embedded;
pub mod grpc;
pub mod host;
pub mod monitor;
pub mod rebuild;
pub mod services;
pub mod settings;
