//! vetric's HTTP face. It reads the store and never calls the vendor on a request path
//! (DESIGN.md rule 1): a vendor outage makes data stale, never makes a page fail.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The routes served today.
pub fn router() -> Router {
    Router::new().route("/health/live", get(live))
}

/// `/health/live`: the process answers. It touches nothing else, so a slow store or a dead
/// vendor never gets a live process restarted.
async fn live() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/health+json")],
        r#"{"status":"pass"}"#,
    )
}

/// Serves `app` on an already-bound listener until `shutdown` is cancelled.
///
/// The caller binds first (and reports a taken port) before any other side effect, which is
/// why this takes a listener rather than an address.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    #[tokio::test]
    async fn live_answers_pass() {
        let res = router()
            .oneshot(Request::get("/health/live").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            res.headers()[header::CONTENT_TYPE],
            "application/health+json"
        );
    }
}
