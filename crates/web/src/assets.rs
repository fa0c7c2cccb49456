//! Static files, compiled into the binary (`include_bytes!`): the stylesheet, the page script
//! and the vendored htmx files (`assets/vendor/VERSIONS` records their versions, sha256 and
//! licence). Vendored files carry their version in the name and are cached for a year;
//! `app.css`/`app.js` are revalidated after five minutes.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

struct Asset {
    path: &'static str,
    mime: &'static str,
    bytes: &'static [u8],
    immutable: bool,
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "app.css",
        mime: "text/css; charset=utf-8",
        bytes: include_bytes!("../assets/app.css"),
        immutable: false,
    },
    Asset {
        path: "app.js",
        mime: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../assets/app.js"),
        immutable: false,
    },
    Asset {
        path: "vendor/htmx-2.0.11.min.js",
        mime: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../assets/vendor/htmx-2.0.11.min.js"),
        immutable: true,
    },
    Asset {
        path: "vendor/htmx-ext-sse-2.2.4.min.js",
        mime: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../assets/vendor/htmx-ext-sse-2.2.4.min.js"),
        immutable: true,
    },
];

/// `GET /static/{*path}`: only the files listed above; anything else is 404 (no file system
/// access, so no path traversal).
pub async fn serve(Path(path): Path<String>) -> Response {
    let Some(a) = ASSETS.iter().find(|a| a.path == path) else {
        return crate::error::PageError::not_found().into_response();
    };
    let cache = if a.immutable {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=300"
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(a.mime)),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        a.bytes,
    )
        .into_response()
}
