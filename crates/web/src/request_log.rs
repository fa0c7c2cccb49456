//! One log line per HTTP request, each with a request id.
//!
//! `x-request-id` is taken from the request or made up (a UUID), echoed on the response, and
//! recorded on the request's span together with the method and the *matched route* (the
//! template such as `/sites/{slug}`, never the raw path or query string, which may carry data).
//! Everything logged while handling the request carries that span. `TraceLayer` logs at DEBUG
//! by default (STACK.md §1), so the span and the response line are set to INFO here.

use axum::Router;
use axum::extract::MatchedPath;
use axum::http::{HeaderName, Request};
use tower_http::LatencyUnit;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The span of one request: `request_id`, `method`, `route`.
fn make_span<B>(req: &Request<B>) -> tracing::Span {
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        // A client-supplied id is logged as given, but bounded.
        .map(|v| v.chars().take(64).collect::<String>())
        .unwrap_or_default();
    let route = crate::metrics::route_label(req.extensions().get::<MatchedPath>());
    tracing::info_span!(
        "http",
        request_id = %request_id,
        method = %req.method(),
        route = %route,
    )
}

/// Wraps `router` with request ids and request logging (outermost, so every response,
/// including refusals by the security layers, gets a line and an id).
pub fn layer<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(make_span)
                .on_request(())
                .on_response(
                    DefaultOnResponse::new()
                        .level(Level::INFO)
                        .latency_unit(LatencyUnit::Millis),
                )
                .on_failure(
                    DefaultOnFailure::new()
                        .level(Level::WARN)
                        .latency_unit(LatencyUnit::Millis),
                ),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}
