//! Global subscriber installation (env filter, log formatting, OpenTelemetry layer) and OTLP span export.

use std::fmt;
use std::io::IsTerminal as _;
use std::str::FromStr;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;

use crate::TelemetryError;

/// Environment variables holding the log filter, in order of precedence.
const FILTER_VARS: [&str; 2] = ["PATCHBAY_LOG", "RUST_LOG"];
/// Filter used when none of [`FILTER_VARS`] is set.
const DEFAULT_FILTER: &str = "info";
/// Signal-specific OTLP endpoint; takes precedence over [`OTLP_ENDPOINT_VAR`].
const OTLP_TRACES_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// Generic OTLP endpoint; when set (or the traces one is), spans are exported.
const OTLP_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// Instrumentation scope name of the tracer behind the `tracing` layer.
const TRACER_NAME: &str = "patchbay";

/// Output format of log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum LogFormat {
    /// Human-readable single-line records (ANSI colours when stderr is a terminal).
    #[default]
    Pretty,
    /// One JSON object per line, including the current span and span list.
    Json,
}

impl LogFormat {
    /// The lower-case name accepted by [`FromStr`] (`"pretty"` or `"json"`).
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Pretty => "pretty",
            LogFormat::Json => "json",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogFormat {
    type Err = TelemetryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "pretty" | "text" => Ok(LogFormat::Pretty),
            "json" => Ok(LogFormat::Json),
            _ => Err(TelemetryError::UnknownLogFormat(s.to_owned())),
        }
    }
}

/// Keeps exporters alive; flushes and shuts the tracer provider down on drop.
///
/// Hold it in `main` until the process is about to exit. When OTLP export is active, drop it while
/// the Tokio runtime is still running (e.g. at the end of `#[tokio::main] async fn main`).
#[derive(Debug)]
#[must_use = "dropping the guard immediately shuts span export down"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    otlp_endpoint: Option<String>,
}

impl TelemetryGuard {
    /// The OTLP/gRPC endpoint spans are exported to, or `None` when nothing is exported.
    pub fn otlp_endpoint(&self) -> Option<&str> {
        self.otlp_endpoint.as_deref()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = shutdown(&provider)
        {
            tracing::warn!(%error, "error while flushing and shutting down the tracer provider");
        }
    }
}

/// Installs the global tracing subscriber.
///
/// * Env filter from `PATCHBAY_LOG` or else `RUST_LOG` (default `"info"`).
/// * fmt layer writing to stderr, [`LogFormat::Pretty`] or [`LogFormat::Json`].
/// * Always a tracing-opentelemetry layer backed by an SDK tracer provider, so W3C trace ids exist
///   and propagate even when nothing is exported.
/// * When `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, which wins) is
///   set, spans are exported over OTLP/gRPC (tonic) through a batch span processor, with resource
///   `service.name = service_name`. This must then be called inside a Tokio runtime.
/// * Sets the global OpenTelemetry tracer provider and the global text-map propagator (W3C
///   TraceContext).
///
/// Calling it a second time (or after anyone else installed a global subscriber) returns
/// [`TelemetryError::AlreadyInitialized`].
pub fn init(service_name: &str, format: LogFormat) -> Result<TelemetryGuard, TelemetryError> {
    if tracing::dispatcher::has_been_set() {
        return Err(TelemetryError::AlreadyInitialized);
    }

    let filter = env_filter()?;
    let otlp_endpoint = otlp_endpoint_from_env()?;
    let provider = tracer_provider(service_name, otlp_endpoint.as_deref())?;

    let fmt_layer = match format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let otel_layer = tracing_opentelemetry::layer().with_tracer(provider.tracer(TRACER_NAME));
    let subscriber = tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer)
        .with(otel_layer);

    if tracing::subscriber::set_global_default(subscriber).is_err() {
        // Lost a race with another initialiser; release what we built.
        let _ = shutdown(&provider);
        return Err(TelemetryError::AlreadyInitialized);
    }

    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(provider.clone());

    Ok(TelemetryGuard {
        provider: Some(provider),
        otlp_endpoint,
    })
}

/// Builds the env filter from the first non-empty variable of [`FILTER_VARS`].
fn env_filter() -> Result<EnvFilter, TelemetryError> {
    for var in FILTER_VARS {
        if let Some(value) = non_empty_env(var)? {
            return EnvFilter::try_new(&value).map_err(|source| TelemetryError::InvalidLogFilter {
                var,
                value,
                source,
            });
        }
    }
    Ok(EnvFilter::new(DEFAULT_FILTER))
}

/// The configured OTLP endpoint, if span export is requested.
fn otlp_endpoint_from_env() -> Result<Option<String>, TelemetryError> {
    match non_empty_env(OTLP_TRACES_ENDPOINT_VAR)? {
        Some(endpoint) => Ok(Some(endpoint)),
        None => non_empty_env(OTLP_ENDPOINT_VAR),
    }
}

/// Reads an environment variable, treating an empty value as unset.
fn non_empty_env(var: &'static str) -> Result<Option<String>, TelemetryError> {
    match std::env::var(var) {
        Ok(value) if value.trim().is_empty() => Ok(None),
        Ok(value) => Ok(Some(value.trim().to_owned())),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(TelemetryError::NonUnicodeEnvVar { var }),
    }
}

/// SDK tracer provider with resource `service.name`; exports over OTLP/gRPC when `otlp_endpoint`
/// is given, otherwise only generates (and propagates) ids.
fn tracer_provider(
    service_name: &str,
    otlp_endpoint: Option<&str>,
) -> Result<SdkTracerProvider, TelemetryError> {
    let resource = Resource::builder()
        .with_service_name(service_name.to_owned())
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = otlp_endpoint {
        // The tonic channel spawns its connection task on the current Tokio runtime and would
        // panic without one.
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(TelemetryError::NoTokioRuntime {
                endpoint: endpoint.to_owned(),
            });
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|source| TelemetryError::OtlpExporter {
                endpoint: endpoint.to_owned(),
                source,
            })?;
        builder = builder.with_batch_exporter(exporter);
    }
    Ok(builder.build())
}

/// Flushes and shuts the provider down without starving the Tokio runtime the exporter's gRPC
/// channel runs on (the batch processor thread waits on a task of that runtime).
fn shutdown(provider: &SdkTracerProvider) -> opentelemetry_sdk::error::OTelSdkResult {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(|| provider.shutdown()),
        _ => provider.shutdown(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn log_format_parses_and_displays() {
        assert_eq!("pretty".parse::<LogFormat>().unwrap(), LogFormat::Pretty);
        assert_eq!(" JSON ".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert!(matches!(
            "yaml".parse::<LogFormat>(),
            Err(TelemetryError::UnknownLogFormat(s)) if s == "yaml"
        ));
        assert_eq!(LogFormat::Json.to_string(), "json");
        assert_eq!(LogFormat::default(), LogFormat::Pretty);
    }

    #[test]
    fn provider_without_endpoint_needs_no_runtime() {
        let provider = tracer_provider("test", None).unwrap();
        provider.shutdown().unwrap();
    }

    #[test]
    fn otlp_export_without_tokio_runtime_is_an_error_not_a_panic() {
        let err = tracer_provider("test", Some("http://127.0.0.1:4317")).unwrap_err();
        assert!(
            matches!(err, TelemetryError::NoTokioRuntime { .. }),
            "{err}"
        );
    }

    #[test]
    fn bad_otlp_endpoint_is_an_error() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let _enter = rt.enter();
        let err = tracer_provider("test", Some("http://bad host:4317")).unwrap_err();
        assert!(matches!(err, TelemetryError::OtlpExporter { .. }), "{err}");
        assert!(err.to_string().contains("bad host"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn otlp_provider_builds_and_shuts_down_inside_runtime() {
        // Nothing listens on port 9; shutdown must still return (export fails/times out).
        let provider = tracer_provider("test", Some("http://127.0.0.1:9")).unwrap();
        let _ = shutdown(&provider);
    }
}
