//! A tower layer that times every gRPC request into the host's metrics, by method and status code.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::codegen::http;

use crate::monitor::Metrics;

/// Adds [`RequestMetrics`] around the gRPC router.
#[derive(Debug, Clone)]
pub struct RequestMetricsLayer {
    metrics: Arc<Metrics>,
}

impl RequestMetricsLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for RequestMetricsLayer {
    type Service = RequestMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestMetrics {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// Times requests until the response headers (for a server stream: until it starts).
#[derive(Debug, Clone)]
pub struct RequestMetrics<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, RequestBody, ResponseBody> tower::Service<http::Request<RequestBody>> for RequestMetrics<S>
where
    S: tower::Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        let method = method_label(request.uri().path());
        let metrics = self.metrics.clone();
        let started = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            let code = match &response {
                // A handler's error comes back "trailers-only", its status in the headers; a
                // success carries its status in the trailers, after these headers.
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or("0")
                    .to_owned(),
                Err(_) => "transport".to_owned(),
            };
            // An unknown method under a known prefix answers UNIMPLEMENTED: not a label of its own.
            let method = if code == "12" {
                "other".to_owned()
            } else {
                method
            };
            metrics.observe_request(&method, &code, started.elapsed());
            response
        })
    }
}

/// The method a path names, or "other" for paths no Patchbay service serves (so a client sending
/// arbitrary paths cannot grow the metrics without bound).
fn method_label(path: &str) -> String {
    let known = ["/patchbay.", "/grpc.health.", "/grpc.reflection."];
    if known.iter().any(|prefix| path.starts_with(prefix)) && path.len() <= 128 {
        path.to_owned()
    } else {
        "other".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::method_label;

    #[test]
    fn only_patchbay_and_standard_paths_are_labels() {
        assert_eq!(
            method_label("/patchbay.catalog.v1.CatalogService/ListUpdates"),
            "/patchbay.catalog.v1.CatalogService/ListUpdates"
        );
        assert_eq!(
            method_label("/grpc.health.v1.Health/Check"),
            "/grpc.health.v1.Health/Check"
        );
        assert_eq!(method_label("/evil/anything"), "other");
    }
}
