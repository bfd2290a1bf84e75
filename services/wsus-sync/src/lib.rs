//! The WSUS sync service: a downstream server of the WSUS Server-Server protocol (MS-WSUSSS) that
//! synchronises Microsoft update metadata from an upstream WSUS or Microsoft Update, every step an
//! event, and hands each update revision to the catalog as `WsusUpdateSynced`.

pub mod client;
pub mod content;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod service;
pub mod sync;
pub mod view;

pub use service::{SyncOptions, WsusSync, WsusSyncError};
