//! Test helpers: a `tracing` dispatcher recording OpenTelemetry spans in memory (feature `testing`).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::Dispatch;
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::layer::SubscriberExt as _;

/// A `tracing` subscriber with an OpenTelemetry layer whose SDK tracer provider exports every
/// finished span synchronously into an [`InMemorySpanExporter`].
///
/// Install it per test with [`set_default`](Self::set_default) or
/// [`with_default`](Self::with_default) (thread-local; never the global subscriber), then read
/// the spans with [`finished_spans`](Self::finished_spans). A span is finished once its last
/// `tracing::Span` handle is dropped.
#[derive(Debug, Clone)]
pub struct TestTelemetry {
    exporter: InMemorySpanExporter,
    provider: SdkTracerProvider,
    dispatch: Dispatch,
}

impl Default for TestTelemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl TestTelemetry {
    /// Creates a fresh in-memory pipeline (all levels enabled, no log output).
    pub fn new() -> Self {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let tracer = provider.tracer("patchbay-telemetry-test");
        let subscriber =
            tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer));
        Self {
            exporter,
            provider,
            dispatch: Dispatch::new(subscriber),
        }
    }

    /// The dispatcher, e.g. for `tracing::dispatcher::with_default` or `WithSubscriber`.
    pub fn dispatch(&self) -> &Dispatch {
        &self.dispatch
    }

    /// Makes this the current thread's default subscriber until the guard is dropped.
    pub fn set_default(&self) -> DefaultGuard {
        tracing::dispatcher::set_default(&self.dispatch)
    }

    /// Runs `f` with this as the current thread's default subscriber.
    pub fn with_default<T>(&self, f: impl FnOnce() -> T) -> T {
        tracing::dispatcher::with_default(&self.dispatch, f)
    }

    /// All spans finished so far, in the order they ended.
    pub fn finished_spans(&self) -> Result<Vec<SpanData>, opentelemetry_sdk::error::OTelSdkError> {
        self.provider.force_flush()?;
        self.exporter.get_finished_spans()
    }

    /// The underlying exporter.
    pub fn exporter(&self) -> &InMemorySpanExporter {
        &self.exporter
    }

    /// Forgets all finished spans recorded so far.
    pub fn reset(&self) {
        self.exporter.reset();
    }

    /// Shuts the tracer provider down (further spans are dropped).
    pub fn shutdown(&self) -> OTelSdkResult {
        self.provider.shutdown()
    }
}
