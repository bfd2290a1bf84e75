//! Errors returned while setting up telemetry.

/// Errors returned by [`crate::init`] and by parsing a [`crate::LogFormat`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// A global `tracing` subscriber was already installed (by an earlier `init` or by someone else).
    #[error(
        "a global tracing subscriber is already installed; telemetry::init may only be called once per process"
    )]
    AlreadyInitialized,

    /// The log filter in `PATCHBAY_LOG`/`RUST_LOG` could not be parsed.
    #[error("invalid log filter {value:?} in {var}: {source}")]
    InvalidLogFilter {
        /// Name of the environment variable the filter came from.
        var: &'static str,
        /// The rejected filter directive string.
        value: String,
        /// Parser error.
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },

    /// An environment variable is set but is not valid UTF-8.
    #[error("environment variable {var} is not valid UTF-8")]
    NonUnicodeEnvVar {
        /// Name of the offending environment variable.
        var: &'static str,
    },

    /// The OTLP span exporter could not be built (e.g. a malformed `OTEL_EXPORTER_OTLP_ENDPOINT`).
    #[error("cannot build the OTLP/gRPC span exporter for endpoint {endpoint:?}: {source}")]
    OtlpExporter {
        /// The configured endpoint.
        endpoint: String,
        /// Underlying exporter error.
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },

    /// OTLP export was requested but `init` was not called inside a Tokio runtime.
    #[error(
        "OTLP export to {endpoint:?} needs a Tokio runtime: call telemetry::init from within a Tokio runtime"
    )]
    NoTokioRuntime {
        /// The configured endpoint.
        endpoint: String,
    },

    /// A log format name other than `pretty` or `json`.
    #[error("unknown log format {0:?}; expected \"pretty\" or \"json\"")]
    UnknownLogFormat(String),
}
