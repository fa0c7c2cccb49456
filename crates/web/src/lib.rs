//! vetric's HTTP face. It reads the store and never calls the vendor on a request path
//! (DESIGN.md rule 1): a vendor outage makes data stale, never makes a page fail. The one
//! exception is an admin's explicit "Testar conexão" ([`settings`]), with its own short timeout.
//!
//! * [`router`] builds the whole app from an [`AppState`] (the store, the configured sites as
//!   plain data, `public_url` and the shutdown token): `/health/live`, the pages (`/login`,
//!   `/`, `/sites/{slug}`), the live stream (`/sites/{slug}/events`), static files, and the
//!   JSON API under `/api/v1` with its OpenAPI document.
//! * [`auth`]: argon2id passwords, hashed opaque tokens, the login rate limit, the
//!   [`auth::AuthUser`] extractor and the role rule (admin: every site; manager: their sites;
//!   anything else is a 404, exactly like a site that does not exist).
//! * [`security`]: headers on every response, CSRF checks on state-changing requests; bodies
//!   are limited to [`input::BODY_LIMIT`].
//! * [`live`]: SSE pushes of the re-rendered cards when the store changes.
//! * [`health`] (`/health/ready`, `/health`), [`metrics`] (`/metrics`, request metrics) and
//!   [`vitals`] (freshness and vendor link per site, shared with `vetric status`): no login,
//!   no secrets, no residents' data.

pub mod account;
pub mod api;
pub mod assets;
pub mod audit;
pub mod auth;
pub mod cors;
pub mod error;
pub mod forms;
pub mod health;
pub mod inbox;
pub mod input;
pub mod live;
pub mod metrics;
pub mod notifications;
pub mod openapi_more;
pub mod pages;
pub mod report_library;
pub mod request_log;
pub mod residents;
pub mod residents_import;
pub mod security;
pub mod sessions;
pub mod settings;
pub mod statement_import;
pub mod statements;
mod upload;
pub mod users;
pub mod view;
pub mod vitals;

pub use health::OpsSettings;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use vetric_store::{SiteId, Store};

/// A configured site, as the web layer needs it (plain data: this crate does not know the
/// binary's configuration types).
#[derive(Debug, Clone)]
pub struct SiteSettings {
    pub id: SiteId,
    pub slug: String,
    pub name: String,
    pub timezone: chrono_tz::Tz,
    /// The vendor poll interval (freshness: `stale` after two missed polls).
    pub poll_interval: Duration,
    /// Data is `offline` after this long without a good read.
    pub offline_after: Duration,
}

/// Everything the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    store: Store,
    sites: Vec<SiteSettings>,
    public_url: Option<url::Url>,
    shutdown: CancellationToken,
    limiter: auth::LoginLimiter,
    live: live::LiveHub,
    ops: OpsSettings,
    cors_origins: Vec<String>,
    settings: settings::SettingsState,
    notify: notifications::NotifyState,
}

impl AppState {
    /// `public_url` is the address people use (its origin is accepted by the CSRF check, and
    /// `https` there marks cookies `Secure` and turns HSTS on). `shutdown` ends live streams.
    pub fn new(
        store: Store,
        sites: Vec<SiteSettings>,
        public_url: Option<url::Url>,
        shutdown: CancellationToken,
    ) -> Self {
        Self::with_limiter(
            store,
            sites,
            public_url,
            shutdown,
            auth::LoginLimiter::default(),
        )
    }

    /// As [`AppState::new`] with a given login limiter (tests use small windows).
    pub fn with_limiter(
        store: Store,
        sites: Vec<SiteSettings>,
        public_url: Option<url::Url>,
        shutdown: CancellationToken,
        limiter: auth::LoginLimiter,
    ) -> Self {
        Self(Arc::new(Inner {
            store,
            sites,
            public_url,
            shutdown,
            limiter,
            live: live::LiveHub::default(),
            ops: OpsSettings::default(),
            cors_origins: Vec::new(),
            settings: settings::SettingsState::default(),
            notify: notifications::NotifyState::default(),
        }))
    }

    pub fn store(&self) -> &Store {
        &self.0.store
    }

    pub fn sites(&self) -> &[SiteSettings] {
        &self.0.sites
    }

    pub fn shutdown(&self) -> &CancellationToken {
        &self.0.shutdown
    }

    pub fn limiter(&self) -> &auth::LoginLimiter {
        &self.0.limiter
    }

    pub fn live(&self) -> &live::LiveHub {
        &self.0.live
    }

    /// Sets what health and metrics need (the metrics handle, the sites without a vendor
    /// account). Call it on a fresh state, before it is cloned into the router.
    pub fn with_ops(self, ops: OpsSettings) -> Self {
        self.configure("with_ops", |inner| inner.ops = ops)
    }

    /// The one way the `with_*` builders change a state: only while nobody else holds it
    /// (before it is cloned into the router), so a running server never sees its settings move.
    fn configure(mut self, builder: &str, change: impl FnOnce(&mut Inner)) -> Self {
        match Arc::get_mut(&mut self.0) {
            Some(inner) => change(inner),
            None => tracing::error!("AppState::{builder} called on a shared state; ignored"),
        }
        self
    }

    pub fn ops(&self) -> &OpsSettings {
        &self.0.ops
    }

    /// Sets the CORS allow-list (`cors_origins`, already checked: `scheme://host[:port]`).
    /// Call it on a fresh state, before it is cloned into the router.
    pub fn with_cors_origins(self, origins: Vec<String>) -> Self {
        self.configure("with_cors_origins", |inner| inner.cors_origins = origins)
    }

    /// The origins allowed to call `/api/v1` with credentials (empty: no CORS at all).
    pub fn cors_origins(&self) -> &[String] {
        &self.0.cors_origins
    }

    pub fn public_url_is_https(&self) -> bool {
        self.0
            .public_url
            .as_ref()
            .is_some_and(|u| u.scheme() == "https")
    }

    /// `scheme://host[:port]` of `public_url`.
    pub fn public_origin(&self) -> Option<String> {
        self.0
            .public_url
            .as_ref()
            .map(|u| u.origin().ascii_serialization())
    }

    /// The sites `user` may see, in configuration order.
    pub fn visible_sites<'a>(
        &'a self,
        user: &'a auth::AuthUser,
    ) -> impl Iterator<Item = &'a SiteSettings> + 'a {
        self.0.sites.iter().filter(|s| user.can_see(s.id))
    }

    /// The site `slug` if `user` may see it. `None` both when it does not exist and when it
    /// is not theirs, so the answer never tells the two apart.
    pub fn site_for(&self, user: &auth::AuthUser, slug: &str) -> Option<&SiteSettings> {
        self.0
            .sites
            .iter()
            .find(|s| s.slug == slug && user.can_see(s.id))
    }

    /// [`Self::site_for`] for a page handler: the same 404 page for "no such site" and "not
    /// yours".
    pub fn site_page(
        &self,
        user: &auth::AuthUser,
        slug: &str,
    ) -> Result<&SiteSettings, error::PageError> {
        self.site_for(user, slug)
            .ok_or_else(error::PageError::not_found)
    }
}

/// The client's address (the TCP peer), for the rate limit and the audit log.
#[derive(Debug, Clone)]
pub struct ClientAddr(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(auth::client_ip(&parts.extensions)))
    }
}

/// Marks requests routed to the JSON API (errors there are JSON, never redirects).
#[derive(Debug, Clone, Copy)]
pub struct ApiRequest;

/// The whole app.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/auth/login", post(api::login))
        .route("/auth/logout", post(api::logout))
        .route("/auth/password", post(account::api_change_password))
        .route("/audit", get(audit::api_list))
        .route("/users", get(users::api_list))
        .route("/users/invite", post(users::api_invite))
        .route("/users/{id}/reinvite", post(users::api_reinvite))
        .route("/users/{id}/deactivate", post(users::api_deactivate))
        .route("/users/{id}/reactivate", post(users::api_reactivate))
        .route(
            "/account/tokens",
            get(users::api_tokens).post(users::api_token_create),
        )
        .route(
            "/account/tokens/{id}",
            axum::routing::delete(users::api_token_revoke),
        )
        .route("/sites", get(api::sites))
        .route("/sites/{slug}/chargers", get(api::chargers))
        .route("/sites/{slug}/sessions", get(api::sessions))
        .route(
            "/sites/{slug}/residents",
            get(residents::api_list).post(residents::api_create),
        )
        .route(
            "/sites/{slug}/residents/{id}",
            get(residents::api_get).patch(residents::api_patch),
        )
        .route(
            "/sites/{slug}/residents/{id}/tags",
            post(residents::api_add_tag),
        )
        .route(
            "/sites/{slug}/residents/import",
            post(residents_import::api_import)
                .layer(DefaultBodyLimit::max(residents_import::FILE_LIMIT)),
        )
        .route(
            "/sites/{slug}/tariffs",
            get(settings::api_list).post(settings::api_add),
        )
        .route("/sites/{slug}/vendor/test", post(settings::api_vendor_test))
        .route("/sites/{slug}/notifications", get(notifications::api_list))
        .route(
            "/sites/{slug}/notifications/{id}/resend",
            post(notifications::api_resend),
        )
        .route(
            "/sites/{slug}/notifications/{id}/resolve",
            post(notifications::api_resolve),
        )
        .route(
            "/sites/{slug}/notifications/test",
            post(notifications::settings::api_test),
        )
        .route(
            "/sites/{slug}/notifications/gateway-check",
            post(notifications::settings::api_check),
        )
        .route(
            "/sites/{slug}/notification-policy",
            get(notifications::settings::api_get).put(notifications::settings::api_put),
        )
        .route(
            "/sites/{slug}/residents/{id}/notification-prefs",
            get(notifications::prefs::api_get).put(notifications::prefs::api_put),
        )
        .route("/sites/{slug}/statements/{month}", get(statements::api_get))
        .route(
            "/sites/{slug}/statements/{month}/issue",
            post(statements::api_issue),
        )
        .route(
            "/sites/{slug}/statements/import",
            post(statement_import::api_import)
                .layer(DefaultBodyLimit::max(statement_import::FILE_LIMIT)),
        )
        .route(
            "/sites/{slug}/reports",
            get(report_library::api_list)
                .post(report_library::api_upload)
                .layer(DefaultBodyLimit::max(report_library::FILE_LIMIT)),
        )
        .route(
            "/sites/{slug}/reports/{id}",
            get(report_library::api_download).delete(report_library::api_delete),
        )
        .route("/sites/{slug}/unknown-tags", get(inbox::api_list))
        .route(
            "/sites/{slug}/unknown-tags/{tag}/assign",
            post(inbox::api_assign),
        )
        .route("/openapi.json", get(api::openapi))
        .fallback(api::not_found)
        .layer(axum::middleware::map_response(api::json_errors))
        .layer(axum::Extension(ApiRequest));
    let api = match cors::layer(state.cors_origins()) {
        Some(cors) => api
            .layer(cors)
            .layer(axum::middleware::map_response(cors::strip_unallowed)),
        None => api,
    };
    let app = Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(health::ready))
        .route("/health", get(health::health))
        .route("/metrics", get(metrics::render))
        .route("/static/{*path}", get(assets::serve))
        .route("/login", get(pages::login_form).post(pages::login_submit))
        .route("/logout", post(pages::logout))
        .route(
            "/account/password",
            get(account::password_form).post(account::password_submit),
        )
        .route("/audit", get(audit::page))
        .route("/users", get(users::page))
        .route("/users/invite", post(users::invite_submit))
        .route("/users/{id}/reinvite", post(users::reinvite_submit))
        .route("/users/{id}/deactivate", post(users::deactivate_submit))
        .route("/users/{id}/reactivate", post(users::reactivate_submit))
        .route(
            "/invite/{token}",
            get(users::invite_form).post(users::invite_submit_password),
        )
        .route(
            "/account/tokens",
            get(users::tokens_page).post(users::token_create_submit),
        )
        .route(
            "/account/tokens/{id}/revoke",
            post(users::token_revoke_submit),
        )
        .route("/", get(pages::home))
        .route("/sites/{slug}", get(pages::site))
        .route("/sites/{slug}/cards", get(pages::cards))
        .route("/sites/{slug}/events", get(live::events))
        .route("/sites/{slug}/sessions", get(sessions::page))
        .route("/sites/{slug}/sessions.csv", get(sessions::csv))
        .route(
            "/sites/{slug}/residents",
            get(residents::list_page).post(residents::create_submit),
        )
        .route("/sites/{slug}/residents/new", get(residents::new_form))
        .route(
            "/sites/{slug}/residents/import",
            get(residents_import::form)
                .post(residents_import::upload)
                .layer(DefaultBodyLimit::max(residents_import::PAGE_BODY_LIMIT)),
        )
        .route(
            "/sites/{slug}/residents/import/confirm",
            post(residents_import::confirm)
                .layer(DefaultBodyLimit::max(residents_import::PAGE_BODY_LIMIT)),
        )
        .route(
            "/sites/{slug}/residents/import/modelo.csv",
            get(residents_import::template_csv),
        )
        .route(
            "/sites/{slug}/residents/{id}",
            get(residents::detail).post(residents::edit_submit),
        )
        .route(
            "/sites/{slug}/residents/{id}/deactivate",
            post(residents::deactivate_submit),
        )
        .route(
            "/sites/{slug}/residents/{id}/tags",
            post(residents::add_tag_submit),
        )
        .route(
            "/sites/{slug}/residents/{id}/tags/end",
            post(residents::end_tag_submit),
        )
        .route("/sites/{slug}/settings", get(settings::page))
        .route(
            "/sites/{slug}/settings/vendor-test",
            post(settings::vendor_test_submit),
        )
        .route(
            "/sites/{slug}/tariff",
            get(settings::tariff).post(settings::tariff_submit),
        )
        .route("/sites/{slug}/statements", get(statements::page))
        // `{month}` is `YYYY-MM.csv|xlsx|pdf` here: the month's files.
        .route(
            "/sites/{slug}/statements/{month}",
            get(statements::download),
        )
        .route(
            "/sites/{slug}/statements/{month}/issue",
            post(statements::issue_submit),
        )
        .route(
            "/sites/{slug}/statements/{month}/rejeitadas",
            get(statements::rejected_page),
        )
        .route(
            "/sites/{slug}/statements/{month}/apartments/{apartment}",
            get(statements::apartment_page),
        )
        .route(
            "/sites/{slug}/statements/{month}/apartments/{apartment}/pdf",
            get(statements::apartment_pdf),
        )
        .route(
            "/sites/{slug}/statements/import",
            get(statement_import::form)
                .post(statement_import::upload)
                .layer(DefaultBodyLimit::max(statement_import::PAGE_BODY_LIMIT)),
        )
        .route(
            "/sites/{slug}/statements/import/confirm",
            post(statement_import::confirm)
                .layer(DefaultBodyLimit::max(statement_import::PAGE_BODY_LIMIT)),
        )
        .route(
            "/sites/{slug}/reports",
            get(report_library::page)
                .post(report_library::upload)
                .layer(DefaultBodyLimit::max(report_library::PAGE_BODY_LIMIT)),
        )
        .route("/sites/{slug}/reports/{id}", get(report_library::download))
        .route(
            "/sites/{slug}/reports/{id}/delete",
            post(report_library::delete_submit),
        )
        .route("/sites/{slug}/inbox", get(inbox::page))
        .route(
            "/sites/{slug}/inbox/{tag}/assign",
            post(inbox::assign_submit),
        )
        .route("/sites/{slug}/notifications", get(notifications::log_page))
        .route(
            "/sites/{slug}/notifications/{id}/resend",
            post(notifications::resend_submit),
        )
        .route(
            "/sites/{slug}/notifications/{id}/resolve",
            post(notifications::resolve_submit),
        )
        .route(
            "/sites/{slug}/notifications/settings",
            get(notifications::settings::page).post(notifications::settings::submit),
        )
        .route(
            "/sites/{slug}/notifications/settings/preview",
            post(notifications::settings::preview_submit),
        )
        .route(
            "/sites/{slug}/notifications/settings/gateway-check",
            post(notifications::settings::check_submit),
        )
        .route(
            "/sites/{slug}/notifications/settings/test-message",
            post(notifications::settings::test_submit),
        )
        .route(
            "/sites/{slug}/residents/{id}/notifications",
            get(notifications::prefs::page).post(notifications::prefs::submit),
        )
        .nest("/api/v1", api)
        .route("/api/{*rest}", axum::routing::any(api::not_found))
        .fallback(pages::not_found)
        .layer(DefaultBodyLimit::max(input::BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            security::csrf,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            security::headers,
        ))
        // gzip when the client asks: a 1,000-connector overview is ~420 KB of HTML and ~44 KB
        // compressed (BENCHMARKS.md), which matters on a phone in a garage. The default
        // predicate leaves `text/event-stream` alone, so live updates are never buffered.
        .layer(tower_http::compression::CompressionLayer::new())
        // Outermost, so refused and failed requests are counted too.
        .layer(axum::middleware::from_fn(metrics::track));
    // Outermost of all: every response gets a request id and an INFO log line.
    request_log::layer(app).with_state(state)
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
