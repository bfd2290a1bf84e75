//! End-to-end tests: the whole application, started as the binary starts it, driven over gRPC.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod approvals;
mod audit;
mod catalog;
mod deployment;
mod distributed;
mod golden;
mod helpers;
mod installing;
mod managed;
mod processes;
mod scanning;
mod server;
mod trace;
mod wsus;
