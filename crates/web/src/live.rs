//! Live updates over SSE: `GET /sites/{slug}/events`.
//!
//! One watcher task per watched site reads the store's change marker
//! ([`vetric_store::SiteChangeMarker`]) together with the site's freshness (which changes with
//! time alone), and when either moved it renders the cards fragment once and broadcasts it to
//! every subscriber of that site. The watcher ends when its last subscriber leaves or the
//! server shuts down.
//!
//! **When a watcher looks.** At once when it is woken, and otherwise every [`WATCH_EVERY`] or
//! [`FALLBACK_POLL`]. One feed task per process wakes the watchers:
//!
//! * ingest writes of THIS process ([`vetric_store::Store::local_changes`]) wake their site
//!   right after the commit, on both backends;
//! * on PostgreSQL, a `LISTEN vetric_changes` connection ([`vetric_store::ChangeListener`])
//!   hears the `pg_notify` every ingest write sends on commit, whichever instance leads the
//!   site, and wakes that site here. While it is up, watchers poll only every
//!   [`FALLBACK_POLL`] (freshness turning `stale`, a missed notice); while it is down (it
//!   reconnects with backoff, and wakes every site when it comes back or loses its
//!   connection, since notices may have been missed) they poll every [`WATCH_EVERY`], as on
//!   SQLite, where the process is the only writer and the poll stays as the backstop.
//!   `vetric_live_listener_up` (1/0) says which mode an instance is in.
//!
//! A change therefore reaches the page within a moment of its commit, and at worst within one
//! poll period, whichever process (or instance, on PostgreSQL) wrote it.
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, broadcast};
use vetric_store::{Backend, ChangeListener, ChangeNotice, SiteId, StoreError};

/// How often a watcher looks at the store when nothing tells it about changes (SQLite, or
/// PostgreSQL while the change listener is down).
pub const WATCH_EVERY: Duration = Duration::from_secs(1);
/// How often a watcher looks at the store while the PostgreSQL change listener is up (it is
/// woken at once for every committed change; this catches freshness and missed notices).
pub const FALLBACK_POLL: Duration = Duration::from_secs(5);
/// How often a stream sends a `tick` when nothing changed.
pub const TICK_EVERY: Duration = Duration::from_secs(15);
/// The `retry:` a stream ends with when the server shuts down.
pub const RETRY_AFTER_SHUTDOWN: Duration = Duration::from_millis(2000);
/// A listener that heard nothing this long pings its connection (a vanished network gives no
/// error by itself).
const LISTENER_IDLE_PING: Duration = Duration::from_secs(30);
/// Reconnection backoff of the listener: doubles from the first to the cap.
const LISTENER_BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));

/// One watched site: its broadcast channel and what wakes its watcher.
struct Watched {
    tx: broadcast::Sender<Arc<str>>,
    wake: Arc<Notify>,
}

/// The per-site broadcast channels of rendered fragments, and what wakes their watchers.
#[derive(Default)]
pub struct LiveHub {
    channels: Mutex<HashMap<SiteId, Watched>>,
    feed_started: AtomicBool,
    listener_up: AtomicBool,
}

impl LiveHub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SiteId, Watched>> {
        self.channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Subscribes to a site's fragments, starting its watcher when none runs (and the
    /// process's change feed when this is the first subscriber ever).
    pub fn subscribe(
        &self,
        state: &AppState,
        site: &SiteSettings,
    ) -> broadcast::Receiver<Arc<str>> {
        if !self.feed_started.swap(true, Ordering::SeqCst) {
            tokio::spawn(feed(state.clone()));
        }
        let mut channels = self.lock();
        if let Some(w) = channels.get(&site.id) {
            return w.tx.subscribe();
        }
        let (tx, rx) = broadcast::channel(16);
        let wake = Arc::new(Notify::new());
        channels.insert(
            site.id,
            Watched {
                tx: tx.clone(),
                wake: wake.clone(),
            },
        );
        tokio::spawn(watch(state.clone(), site.clone(), tx, wake));
        rx
    }

    /// How many sites are being watched now (for tests and metrics).
    pub fn watched_sites(&self) -> usize {
        self.lock().len()
    }

    /// Whether the PostgreSQL change listener is connected now (always `false` on SQLite).
    pub fn listener_up(&self) -> bool {
        self.listener_up.load(Ordering::SeqCst)
    }

    fn wake(&self, site: SiteId) {
        if let Some(w) = self.lock().get(&site) {
            // A permit is stored when the watcher is busy: wakes coalesce, none is lost.
            w.wake.notify_one();
        }
    }

    fn wake_all(&self) {
        for w in self.lock().values() {
            w.wake.notify_one();
        }
    }

    fn set_listener_up(&self, up: bool) {
        self.listener_up.store(up, Ordering::SeqCst);
        metrics::gauge!("vetric_live_listener_up").set(if up { 1.0 } else { 0.0 });
    }
}

/// What woke the feed.
enum Heard {
    Shutdown,
    Local(Result<SiteId, broadcast::error::RecvError>),
    Notice(Result<Option<ChangeNotice>, StoreError>),
    Retry,
}

/// The next notice of `listener`, or `None` after a quiet [`LISTENER_IDLE_PING`] whose ping
/// answered; never resolves without a listener.
async fn hear(listener: &mut Option<ChangeListener>) -> Result<Option<ChangeNotice>, StoreError> {
    let Some(l) = listener.as_mut() else {
        return std::future::pending().await;
    };
    match tokio::time::timeout(LISTENER_IDLE_PING, l.next()).await {
        Ok(notice) => notice.map(Some),
        Err(_) => l.ping().await.map(|()| None),
    }
}

/// The process's change feed: wakes watchers on in-process commits and, on PostgreSQL, on
/// the notices of every instance (module doc). Runs until shutdown.
async fn feed(state: AppState) {
    let shutdown = state.shutdown().clone();
    let mut local = state.store().local_changes();
    let pg = state.store().backend() == Backend::Postgres;
    let mut listener: Option<ChangeListener> = None;
    let mut backoff = LISTENER_BACKOFF.0;
    let mut retry_at = tokio::time::Instant::now();
    let mut failures: u64 = 0;
    if pg {
        state.live().set_listener_up(false);
    }
    loop {
        if pg && listener.is_none() && tokio::time::Instant::now() >= retry_at {
            match state.store().listen_changes().await {
                Ok(l) => {
                    listener = l;
                    if failures > 0 {
                        tracing::info!("live change listener connected again");
                    }
                    failures = 0;
                    backoff = LISTENER_BACKOFF.0;
                    state.live().set_listener_up(listener.is_some());
                    // Anything committed while it was down was not heard: look again.
                    state.live().wake_all();
                }
                Err(e) => {
                    failures += 1;
                    if failures % 20 == 1 {
                        tracing::warn!(error = %e, "live change listener cannot connect; live pages poll every second meanwhile");
                    }
                    retry_at = tokio::time::Instant::now() + backoff;
                    backoff = (backoff * 2).min(LISTENER_BACKOFF.1);
                }
            }
        }
        let waiting_to_retry = pg && listener.is_none();
        let heard = tokio::select! {
            () = shutdown.cancelled() => Heard::Shutdown,
            r = local.recv() => Heard::Local(r),
            r = hear(&mut listener) => Heard::Notice(r),
            () = tokio::time::sleep_until(retry_at), if waiting_to_retry => Heard::Retry,
        };
        match heard {
            Heard::Shutdown => break,
            Heard::Local(Ok(site)) | Heard::Notice(Ok(Some(ChangeNotice::Site(site)))) => {
                state.live().wake(site);
            }
            Heard::Local(Err(broadcast::error::RecvError::Lagged(_))) => state.live().wake_all(),
            // The store keeps the sender for as long as it lives; resubscribe all the same.
            Heard::Local(Err(broadcast::error::RecvError::Closed)) => {
                local = state.store().local_changes();
            }
            Heard::Notice(Ok(None)) | Heard::Retry => {}
            Heard::Notice(Ok(Some(ChangeNotice::Lost))) | Heard::Notice(Err(_)) => {
                if let Heard::Notice(Err(e)) = &heard {
                    tracing::warn!(error = %e, "live change listener lost; reconnecting");
                } else {
                    tracing::warn!("live change listener lost its connection; reconnecting");
                }
                listener = None;
                state.live().set_listener_up(false);
                state.live().wake_all();
                failures += 1;
                retry_at = tokio::time::Instant::now() + backoff;
                backoff = (backoff * 2).min(LISTENER_BACKOFF.1);
            }
        }
    }
    if pg {
        state.live().set_listener_up(false);
    }
}

async fn watch(
    state: AppState,
    site: SiteSettings,
    tx: broadcast::Sender<Arc<str>>,
    wake: Arc<Notify>,
) {
    let mut last = None;
    let shutdown = state.shutdown().clone();
    loop {
        let period = if state.live().listener_up() {
            FALLBACK_POLL
        } else {
            WATCH_EVERY
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = wake.notified() => {}
            () = tokio::time::sleep(period) => {}
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
