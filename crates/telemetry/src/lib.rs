//! Tracing setup, OpenTelemetry OTLP export and W3C trace-context propagation for Patchbay.
//!
//! * [`init`] installs the global `tracing` subscriber (env filter, human-readable or JSON log
//!   lines on stderr, and an OpenTelemetry layer) and, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set,
//!   exports spans over OTLP/gRPC. Keep the returned [`TelemetryGuard`] alive for the lifetime of
//!   the process; dropping it flushes pending spans.
//! * [`TraceContext`] is the W3C `traceparent`/`tracestate` pair carried in event metadata and bus
//!   headers; it converts to and from `tracing` spans.

mod context;
mod error;
mod init;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use context::TraceContext;
pub use error::TelemetryError;
pub use init::{LogFormat, TelemetryGuard, init};
