//! `init` installs global state: the second call must return an error instead of panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use patchbay_telemetry::{LogFormat, TelemetryError, TraceContext, init};

#[test]
fn second_init_is_an_error() {
    let guard = init("init-twice-test", LogFormat::Json).expect("first init succeeds");
    assert_eq!(
        guard.otlp_endpoint(),
        None,
        "test expects no OTLP endpoint in env"
    );

    // The global subscriber has an OpenTelemetry layer: spans get W3C ids without exporting.
    let span = tracing::info_span!("after init");
    let cx = TraceContext::of_span(&span);
    assert!(
        cx.traceparent
            .as_deref()
            .is_some_and(|tp| tp.starts_with("00-")),
        "{cx:?}"
    );

    let second = init("init-twice-test", LogFormat::Pretty);
    assert!(
        matches!(second, Err(TelemetryError::AlreadyInitialized)),
        "{second:?}"
    );
    let third = init("init-twice-test", LogFormat::Json);
    assert!(matches!(third, Err(TelemetryError::AlreadyInitialized)));
    drop(guard);
}
