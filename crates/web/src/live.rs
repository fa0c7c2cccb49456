//! Live updates over SSE: `GET /sites/{slug}/events`.
//!
//! One watcher task per watched site polls the store's change marker
//! ([`vetric_store::SiteChangeMarker`]) every [`WATCH_EVERY`] together with the site's
//! freshness (which changes with time alone), and when either moved it renders the cards
//! fragment once and broadcasts it to every subscriber of that site. A change therefore
//! reaches the page within about one watch period of being committed, whichever process (or
//! instance, on PostgreSQL) wrote it. The watcher ends when its last subscriber leaves or the
//! server shuts down.
//!
//! Each stream sends the current fragment at once (event `cards`), then every broadcast; a
//! subscriber that fell behind (`Lagged`) gets the current state instead of the missed ones;
//! a `tick` event every [`TICK_EVERY`] lets the page tell "live" from a silently dead
//! connection; the session behind the stream is re-checked on every message, so a logout ends
//! the stream too. Streams end when the server shuts down (`take_until` on the shutdown
//! token), otherwise graceful shutdown would wait for them forever, with a last
//! `retry: 2000` field ([`RETRY_AFTER_SHUTDOWN`]) so clients reconnect after a pause.

use crate::auth::{AuthUser, token_hash};
use crate::error::ApiError;
use crate::{AppState, SiteSettings, pages};
use axum::extract::{Path, State};
use axum::http::HeaderValue;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use vetric_store::SiteId;

/// How often a watcher looks at the store.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);
/// How often a stream sends a `tick` when nothing changed.
pub const TICK_EVERY: Duration = Duration::from_secs(15);
/// The `retry:` a stream ends with when the server shuts down.
pub const RETRY_AFTER_SHUTDOWN: Duration = Duration::from_millis(2000);

/// The per-site broadcast channels of rendered fragments.
#[derive(Default)]
pub struct LiveHub {
    channels: Mutex<HashMap<SiteId, broadcast::Sender<Arc<str>>>>,
}

impl LiveHub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SiteId, broadcast::Sender<Arc<str>>>> {
        self.channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Subscribes to a site's fragments, starting its watcher when none runs.
    pub fn subscribe(
        &self,
        state: &AppState,
        site: &SiteSettings,
    ) -> broadcast::Receiver<Arc<str>> {
        let mut channels = self.lock();
        if let Some(tx) = channels.get(&site.id) {
            return tx.subscribe();
        }
        let (tx, rx) = broadcast::channel(16);
        channels.insert(site.id, tx.clone());
        tokio::spawn(watch(state.clone(), site.clone(), tx));
        rx
    }

    /// How many sites are being watched now (for tests and metrics).
    pub fn watched_sites(&self) -> usize {
        self.lock().len()
    }
}

async fn watch(state: AppState, site: SiteSettings, tx: broadcast::Sender<Arc<str>>) {
    let mut last = None;
    let shutdown = state.shutdown().clone();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(WATCH_EVERY) => {}
        }
        {
            // Leave under the lock, so a new subscriber either finds this channel alive or
            // starts a new watcher.
            let mut channels = state.live().lock();
            if tx.receiver_count() == 0 {
                channels.remove(&site.id);
                return;
            }
        }
        let marker = match state.store().site_change_marker(site.id).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(site = %site.slug, error = %e, "live watcher cannot read the store");
                continue;
            }
        };
        let now = Utc::now();
        let link_last_success = match state.store().vendor_link(site.id).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(site = %site.slug, error = %e, "live watcher cannot read the store");
                continue;
            }
        };
        let (freshness, _) = crate::view::site_freshness(&site, link_last_success.as_ref(), now);
        let key = (marker, freshness);
        if last.as_ref() == Some(&key) {
            continue;
        }
        match pages::render_cards(&state, &site).await {
            Ok(html) => {
                last = Some(key);
                let _ = tx.send(Arc::from(html));
            }
            Err(e) => tracing::warn!(site = %site.slug, error = ?e, "cannot render live cards"),
        }
    }
    state.live().lock().remove(&site.id);
}

enum Next {
    Html(Arc<str>),
    Render,
    Tick,
    End,
}

/// `GET /sites/{slug}/events`.
pub async fn events(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
) -> Result<Response, ApiError> {
    let site = state
        .site_for(&user, &slug)
        .ok_or_else(ApiError::not_found)?
        .clone();
    let rx = state.live().subscribe(&state, &site);
    let first = pages::render_cards(&state, &site)
        .await
        .map_err(|e| ApiError::internal(&std::io::Error::other(e.message)))?;
    let hash = token_hash(&user.token);
    let shutdown = state.shutdown().clone();
    let initial = futures_util::stream::once(async move {
        Ok::<_, Infallible>(Event::default().event("cards").data(first))
    });
    let updates = futures_util::stream::unfold(
        (rx, state, site, hash),
        |(mut rx, state, site, hash)| async move {
            let next = tokio::select! {
                r = rx.recv() => match r {
                    Ok(html) => Next::Html(html),
                    Err(broadcast::error::RecvError::Lagged(_)) => Next::Render,
                    Err(broadcast::error::RecvError::Closed) => Next::End,
                },
                () = tokio::time::sleep(TICK_EVERY) => Next::Tick,
            };
            // The session may have been revoked (logout) since the stream opened.
            match state.store().token_user(&hash, Utc::now()).await {
                Ok(Some(_)) => {}
                _ => return None,
            }
            let event = match next {
                Next::Html(html) => Event::default().event("cards").data(&*html),
                Next::Render => match pages::render_cards(&state, &site).await {
                    Ok(html) => Event::default().event("cards").data(html),
                    Err(_) => return None,
                },
                Next::Tick => Event::default().event("tick").data(Utc::now().to_rfc3339()),
                Next::End => return None,
            };
            Some((Ok::<_, Infallible>(event), (rx, state, site, hash)))
        },
    );
    // Counted in `vetric_sse_clients` until the stream is dropped (client gone or shutdown).
    let client = crate::metrics::SseClient::open();
    // On shutdown the stream ends with a `retry:` hint, so browsers reconnect (to another
    // instance, or this one restarted) after a short pause instead of at once.
    let ended = shutdown.clone();
    let farewell = futures_util::stream::once(async move {
        ended.is_cancelled().then(|| {
            Ok::<_, Infallible>(
                Event::default()
                    .retry(RETRY_AFTER_SHUTDOWN)
                    .comment("server shutting down"),
            )
        })
    })
    .filter_map(futures_util::future::ready);
    let stream = initial
        .chain(updates)
        .take_until(shutdown.cancelled_owned())
        .chain(farewell)
        .inspect(move |_| {
            let _ = &client;
        });
    let mut res = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(20)))
        .into_response();
    // nginx: do not buffer the stream.
    res.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    res.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    Ok(res)
}
