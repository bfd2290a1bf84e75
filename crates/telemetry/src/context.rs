//! W3C trace context (`traceparent`/`tracestate`) carried in event metadata and bus headers.

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// W3C trace context as carried in event metadata and bus headers.
///
/// Both fields are the raw header values (`traceparent` e.g.
/// `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`). An empty context (both `None`)
/// means "no trace"; it is what you get from spans that are disabled or not recorded by an
/// OpenTelemetry layer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceContext {
    /// W3C `traceparent` header value.
    pub traceparent: Option<String>,
    /// W3C `tracestate` header value (vendor-specific; `None` when empty).
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// Context of the given tracing span, or an empty context when the span has no valid
    /// OpenTelemetry context (disabled span, no subscriber, no OpenTelemetry layer).
    ///
    /// Note: this starts the span's OpenTelemetry counterpart, so call
    /// [`set_as_parent_of`](Self::set_as_parent_of) on a span *before* taking its context.
    pub fn of_span(span: &tracing::Span) -> TraceContext {
        if span.is_disabled() {
            return TraceContext::default();
        }
        Self::of_otel_context(&span.context())
    }

    /// Context of the current span; shortcut for `TraceContext::of_span(&Span::current())`.
    pub fn current() -> TraceContext {
        Self::of_span(&tracing::Span::current())
    }

    /// Makes `span` a child of this (remote) context.
    ///
    /// Must be called before the span is entered or its context is read, otherwise the parent
    /// can no longer be changed. A no-op when this context is empty or its `traceparent` is
    /// invalid; never panics on malformed input.
    pub fn set_as_parent_of(&self, span: &tracing::Span) {
        let Some(remote) = self.span_context() else {
            return;
        };
        if let Err(error) = span.set_parent(Context::new().with_remote_span_context(remote)) {
            tracing::debug!(%error, "cannot set the remote trace context as span parent");
        }
    }

    /// Adds this context as a span *link* of `span` (used on replay: old contexts become links,
    /// not parents). A no-op when this context is empty or invalid.
    pub fn add_as_link_to(&self, span: &tracing::Span) {
        if let Some(linked) = self.span_context() {
            span.add_link(linked);
        }
    }

    /// `true` when no `traceparent` is present.
    pub fn is_empty(&self) -> bool {
        self.traceparent.as_deref().is_none_or(str::is_empty)
    }

    /// Encodes the span context of an OpenTelemetry [`Context`] (empty if it has none).
    fn of_otel_context(cx: &Context) -> TraceContext {
        let mut out = TraceContext::default();
        if cx.span().span_context().is_valid() {
            TraceContextPropagator::new().inject_context(cx, &mut Carrier(&mut out));
        }
        out
    }

    /// Decodes this context; `None` when empty or invalid.
    fn span_context(&self) -> Option<SpanContext> {
        if self.is_empty() {
            return None;
        }
        let cx = TraceContextPropagator::new().extract(&Reader(self));
        let span_context = cx.span().span_context().clone();
        span_context.is_valid().then_some(span_context)
    }
}

/// Write access to a [`TraceContext`] for the propagator.
struct Carrier<'a>(&'a mut TraceContext);

impl Injector for Carrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        let value = (!value.is_empty()).then_some(value);
        if key.eq_ignore_ascii_case(TRACEPARENT) {
            self.0.traceparent = value;
        } else if key.eq_ignore_ascii_case(TRACESTATE) {
            self.0.tracestate = value;
        }
    }
}

/// Read access to a [`TraceContext`] for the propagator.
struct Reader<'a>(&'a TraceContext);

impl Extractor for Reader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if key.eq_ignore_ascii_case(TRACEPARENT) {
            self.0.traceparent.as_deref()
        } else if key.eq_ignore_ascii_case(TRACESTATE) {
            self.0.tracestate.as_deref()
        } else {
            None
        }
    }

    fn keys(&self) -> Vec<&str> {
        let mut keys = Vec::with_capacity(2);
        if self.0.traceparent.is_some() {
            keys.push(TRACEPARENT);
        }
        if self.0.tracestate.is_some() {
            keys.push(TRACESTATE);
        }
        keys
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::testing::TestTelemetry;
    use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
    use opentelemetry_sdk::trace::SpanData;
    use tracing_subscriber::layer::SubscriberExt as _;

    fn span_named<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no finished span named {name:?} in {spans:#?}"))
    }

    #[test]
    fn parent_round_trip_through_strings() {
        let telemetry = TestTelemetry::new();
        let carried = telemetry.with_default(|| {
            let producer = tracing::info_span!("producer");
            let cx = TraceContext::of_span(&producer);
            drop(producer);

            // Simulate transport: only the strings survive.
            let carried = TraceContext {
                traceparent: cx.traceparent.clone(),
                tracestate: cx.tracestate.clone(),
            };
            let consumer = tracing::info_span!("consumer");
            carried.set_as_parent_of(&consumer);
            consumer.in_scope(|| assert!(!TraceContext::current().is_empty()));
            drop(consumer);
            cx
        });
        assert!(!carried.is_empty());
        assert_eq!(carried.tracestate, None, "empty tracestate is not carried");
        let traceparent = carried.traceparent.as_deref().unwrap();
        assert_eq!(traceparent.len(), 55, "{traceparent}");
        assert!(traceparent.starts_with("00-"), "{traceparent}");

        let spans = telemetry.finished_spans().unwrap();
        let producer = span_named(&spans, "producer");
        let consumer = span_named(&spans, "consumer");
        assert_ne!(producer.span_context.trace_id(), TraceId::INVALID);
        assert_eq!(
            consumer.span_context.trace_id(),
            producer.span_context.trace_id()
        );
        assert_eq!(consumer.parent_span_id, producer.span_context.span_id());
        assert!(consumer.parent_span_is_remote);
        assert_ne!(
            consumer.span_context.span_id(),
            producer.span_context.span_id()
        );
        // The encoded string names exactly the producer span.
        assert_eq!(
            traceparent,
            format!(
                "00-{}-{}-01",
                producer.span_context.trace_id(),
                producer.span_context.span_id()
            )
        );
    }

    #[test]
    fn tracestate_survives_the_round_trip() {
        let telemetry = TestTelemetry::new();
        let incoming = TraceContext {
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            tracestate: Some("vendor=abc".into()),
        };
        let out = telemetry.with_default(|| {
            let span = tracing::info_span!("child");
            incoming.set_as_parent_of(&span);
            TraceContext::of_span(&span)
        });
        assert_eq!(out.tracestate.as_deref(), Some("vendor=abc"));
        let traceparent = out.traceparent.unwrap();
        assert!(
            traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{traceparent}"
        );
        assert!(!traceparent.contains("00f067aa0ba902b7"), "{traceparent}");
    }

    #[test]
    fn link_is_not_a_parent() {
        let telemetry = TestTelemetry::new();
        telemetry.with_default(|| {
            let original = tracing::info_span!("original");
            let cx = TraceContext::of_span(&original);
            drop(original);

            let replay = tracing::info_span!("replay");
            cx.add_as_link_to(&replay);
            drop(replay);
        });

        let spans = telemetry.finished_spans().unwrap();
        let original = span_named(&spans, "original");
        let replay = span_named(&spans, "replay");
        assert_ne!(
            replay.span_context.trace_id(),
            original.span_context.trace_id()
        );
        assert_eq!(replay.parent_span_id, SpanId::INVALID);
        assert_eq!(replay.links.links.len(), 1);
        let link = &replay.links.links[0];
        assert_eq!(
            link.span_context.trace_id(),
            original.span_context.trace_id()
        );
        assert_eq!(link.span_context.span_id(), original.span_context.span_id());
    }

    #[test]
    fn garbage_traceparents_are_ignored() {
        let too_long = format!(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01{}",
            "f".repeat(10_000)
        );
        let garbage = [
            "",
            " ",
            "00-xyz",
            "00-xyz-abc-01",
            "---",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-ééééééééééééééééééééééééééééééé-00f067aa0ba902b7-01",
            too_long.as_str(),
        ];
        let telemetry = TestTelemetry::new();
        telemetry.with_default(|| {
            for (i, bad) in garbage.iter().enumerate() {
                let cx = TraceContext {
                    traceparent: Some((*bad).to_owned()),
                    tracestate: Some("\u{0}garbage=,,==".into()),
                };
                let span = tracing::info_span!("victim", i);
                cx.set_as_parent_of(&span);
                cx.add_as_link_to(&span);
                drop(span);
            }
        });

        let spans = telemetry.finished_spans().unwrap();
        assert_eq!(spans.len(), garbage.len());
        for span in &spans {
            assert_eq!(span.parent_span_id, SpanId::INVALID, "{span:?}");
            assert!(span.links.links.is_empty(), "{span:?}");
            assert_ne!(
                span.span_context.trace_id(),
                TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
            );
        }
    }

    #[test]
    fn empty_context_is_a_no_op() {
        let empty = TraceContext::default();
        assert!(empty.is_empty());
        assert!(
            TraceContext {
                traceparent: Some(String::new()),
                tracestate: Some("a=b".into())
            }
            .is_empty()
        );
        let telemetry = TestTelemetry::new();
        telemetry.with_default(|| {
            let span = tracing::info_span!("lonely");
            empty.set_as_parent_of(&span);
            empty.add_as_link_to(&span);
        });
        let spans = telemetry.finished_spans().unwrap();
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].parent_span_id, SpanId::INVALID);
        assert!(spans[0].links.links.is_empty());
    }

    #[test]
    fn of_span_without_otel_is_empty() {
        // No subscriber at all on this thread.
        let no_subscriber = tracing::info_span!("nobody listens");
        assert_eq!(
            TraceContext::of_span(&no_subscriber),
            TraceContext::default()
        );
        assert_eq!(
            TraceContext::of_span(&tracing::Span::none()),
            TraceContext::default()
        );
        assert!(TraceContext::current().is_empty());

        // A subscriber without an OpenTelemetry layer.
        let plain = tracing_subscriber::registry();
        tracing::subscriber::with_default(plain, || {
            let span = tracing::info_span!("plain");
            let _entered = span.enter();
            assert!(TraceContext::of_span(&span).is_empty());
            assert!(TraceContext::current().is_empty());
        });

        // An OpenTelemetry subscriber, but the span is filtered out by level.
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let filtered = tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::INFO)
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(filtered, || {
            let disabled = tracing::debug_span!("too verbose");
            assert!(disabled.is_disabled());
            assert!(TraceContext::of_span(&disabled).is_empty());
            // Sanity check: an enabled span under the same subscriber does get a context.
            assert!(!TraceContext::of_span(&tracing::info_span!("enabled")).is_empty());
        });
    }
}
