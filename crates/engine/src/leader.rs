//! Per-site ingest leadership: only the instance that leads a site polls its vendor
//! (DESIGN rule 5, RELIABILITY R5). The locks themselves live in the store
//! ([`vetric_store::LeaderConnection`], whose module doc explains the PostgreSQL advisory
//! locks, the key namespace and the keepalives); this room runs the loop around them.
//!
//! [`Leadership::run`] ticks every [`LeaderSettings::tick`]. Each tick it
//!
//! 1. opens the dedicated leadership connection if it has none (a failure: every site is
//!    followed, tried again next tick);
//! 2. if it leads any site, checks the connection (`SELECT 1` with a timeout). On any error it
//!    stops every site it leads AT ONCE — the site tasks are cancelled and an in-flight cycle
//!    is dropped (its transaction rolls back), so no vendor call or store write starts after
//!    the loss is known — and drops the connection. The server releases the locks of a dead
//!    session by itself; a peer takes over at its next try;
//! 3. gives up a site whose ingest task ended on its own — it does so only when a write was
//!    refused by the fence (below): another instance took the site, so this one releases the
//!    lock if it still has it and goes back to trying;
//! 4. tries the lock of every site it does not lead (`pg_try_advisory_lock`, never blocking).
//!    On success it starts the site's ingest task, which waits [`LeaderSettings::grace`],
//!    takes the site's write fence ([`vetric_store::Store::take_write_fence`]), resumes from
//!    the store ([`SiteIngest::resume`]) and polls at the site's interval, every write fenced.
//!
//! **Why nothing is lost or doubled across a hand-over.** A cycle writes its events together
//! with the tracker state that produced them in ONE transaction ([`vetric_store::Store::write_cycle`]),
//! and a new leader starts from that stored state. The tracker derives events from the change
//! between its stored state and the vendor's snapshot, so the next leader derives exactly the
//! events not yet committed: a cycle the old leader committed is in the state (its events are
//! not derived again), one it did not commit left nothing behind (they are derived again,
//! once). Sessions are upserted by vendor id, so a session row cannot double either. Events
//! carry no unique key of their own: what keeps them single is that only one writer advances a
//! site's state at a time, and that is what the write fence enforces in the database (see
//! `vetric_store`'s `leadership` module for the ordering argument): the new leader bumps the
//! site's generation before it reads the state, and that bump waits for an old leader's write
//! already past its fence check, so the state read includes it; any later write of the old
//! leader is refused ([`vetric_store::StoreError::LostLeadership`]), and the old leader then
//! drops the site and its in-memory state. The grace wait is no longer needed for
//! correctness; it still saves an old leader whose session died while its process lives
//! (it notices within one tick) from polling the vendor once more for nothing.
//!
//! **Shutdown.** On `stop` the site tasks are cancelled and awaited, then the connection
//! releases its locks and closes, so a peer takes over at its next tick.
//!
//! **SQLite.** The connection is a stand-in that always leads (the instance lock already
//! guarantees one serving process), and there is no grace wait.

use crate::ingest::{IngestSettings, SiteIngest};
use chrono::Utc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{Instrument, info, info_span, warn};
use vetric_cvepro::CveProClient;
use vetric_store::{
    Backend, LeaderConnection, LeadershipBoard, SiteId, Store, ingest_lock_key, instance_id,
};

/// How the leader loop runs.
#[derive(Debug, Clone)]
pub struct LeaderSettings {
    /// How often the holder checks its connection and a follower tries the locks.
    pub tick: Duration,
    /// How long a new leader waits before reading the state (PostgreSQL only).
    pub grace: Duration,
}

impl LeaderSettings {
    /// For sites polled every `poll_interval` (the shortest, with several sites): a tick of
    /// at most 2 s and a grace of two ticks, so a hand-over takes a few seconds.
    pub fn for_poll_interval(poll_interval: Duration) -> Self {
        let tick = poll_interval.clamp(Duration::from_millis(50), Duration::from_secs(2));
        Self {
            tick,
            grace: tick * 2,
        }
    }
}

/// A site this instance may lead.
#[derive(Clone)]
struct LeaderSite {
    site: SiteId,
    slug: String,
    key: i64,
    client: CveProClient,
    settings: IngestSettings,
}

/// The leader loop of one instance over all its polled sites.
pub struct Leadership {
    store: Store,
    sites: Vec<LeaderSite>,
    board: LeadershipBoard,
    instance_id: String,
    settings: LeaderSettings,
}

/// A site led here. Dropping it (the leader loop's future dropped, e.g. its task aborted)
/// cancels the site's ingest too: a site task must never outlive the lock that allows it.
struct Led {
    cancel: CancellationToken,
    task: JoinHandle<()>,
    _guard: DropGuard,
}

impl Leadership {
    pub fn new(store: Store, settings: LeaderSettings) -> Self {
        Self {
            store,
            sites: Vec::new(),
            board: LeadershipBoard::new(),
            instance_id: instance_id(),
            settings,
        }
    }

    /// Adds a site to lead when its lock is free.
    pub fn add_site(
        &mut self,
        site: SiteId,
        slug: impl Into<String>,
        client: CveProClient,
        settings: IngestSettings,
    ) {
        let slug = slug.into();
        self.sites.push(LeaderSite {
            site,
            key: ingest_lock_key(&slug),
            slug,
            client,
            settings,
        });
    }

    /// What `/health` and `/metrics` read.
    pub fn board(&self) -> LeadershipBoard {
        self.board.clone()
    }

    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Leads what it can until `stop` fires; then stops the ingests and releases the locks.
    pub async fn run(self, stop: CancellationToken) {
        let span = info_span!("leadership", instance = %self.instance_id);
        self.run_inner(stop).instrument(span).await
    }

    async fn run_inner(self, stop: CancellationToken) {
        let grace = match self.store.backend() {
            Backend::Sqlite => Duration::ZERO,
            Backend::Postgres => self.settings.grace,
        };
        let mut led: Vec<Option<Led>> = self.sites.iter().map(|_| None).collect();
        let mut conn: Option<LeaderConnection> = None;
        let mut connect_failures: u64 = 0;
        for s in &self.sites {
            self.board.set(s.site, false, &self.instance_id, Utc::now());
        }
        let mut ticker = tokio::time::interval(self.settings.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = ticker.tick() => {}
            }
            self.board.tick();
            if conn.is_none() {
                match self.store.leader_connection().await {
                    Ok(c) => {
                        connect_failures = 0;
                        conn = Some(c);
                    }
                    Err(e) => {
                        connect_failures += 1;
                        if connect_failures % 30 == 1 {
                            warn!(error = %e, "cannot open the leadership connection; following every site");
                        }
                        self.publish(&led);
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_mut() else {
                continue;
            };
            let mut lost = None;
            if led.iter().any(Option::is_some)
                && let Err(e) = c.check().await
            {
                lost = Some(e);
            }
            // Sites whose task ended by itself: refused by the fence (another instance leads).
            let mut given_up = vec![false; self.sites.len()];
            if lost.is_none() {
                for (i, s) in self.sites.iter().enumerate() {
                    if !led[i].as_ref().is_some_and(|l| l.task.is_finished()) {
                        continue;
                    }
                    if let Some(l) = led[i].take() {
                        match l.task.await {
                            Ok(()) => {
                                warn!(site = %s.slug, "another instance took this site; giving up its lock and following")
                            }
                            Err(e) => {
                                warn!(site = %s.slug, error = %e, "an ingest task ended abnormally; giving up the site's lock")
                            }
                        }
                    }
                    given_up[i] = true;
                    // Our lock, if we still hold it, goes; retried from the next tick on.
                    if let Err(e) = c.unlock(s.key).await {
                        lost = Some(e);
                        break;
                    }
                }
            }
            if lost.is_none() {
                for (i, s) in self.sites.iter().enumerate() {
                    if led[i].is_some() || given_up[i] {
                        continue;
                    }
                    match c.try_lock(s.key).await {
                        Ok(true) => {
                            info!(site = %s.slug, "now leading the ingest of this site");
                            led[i] = Some(self.start_site(s, grace));
                        }
                        Ok(false) => {}
                        Err(e) => {
                            lost = Some(e);
                            break;
                        }
                    }
                }
            }
            if let Some(e) = lost {
                if led.iter().any(Option::is_some) {
                    warn!(error = %e, "lost the leadership connection; stopping the ingest of every site led here");
                } else {
                    warn!(error = %e, "the leadership connection failed; reconnecting");
                }
                stop_all(&mut led).await;
                // Dropping the connection closes the socket; the server frees what it held.
                conn = None;
            }
            self.publish(&led);
        }
        stop_all(&mut led).await;
        if let Some(c) = conn {
            c.close().await;
        }
        for s in &self.sites {
            self.board.set(s.site, false, &self.instance_id, Utc::now());
            metrics::gauge!("vetric_ingest_leader", "site" => s.slug.clone()).set(0.0);
        }
        info!("leadership released");
    }

    fn publish(&self, led: &[Option<Led>]) {
        let now = Utc::now();
        for (s, l) in self.sites.iter().zip(led) {
            let leading = l.is_some();
            self.board.set(s.site, leading, &self.instance_id, now);
            metrics::gauge!("vetric_ingest_leader", "site" => s.slug.clone()).set(if leading {
                1.0
            } else {
                0.0
            });
        }
    }

    fn start_site(&self, s: &LeaderSite, grace: Duration) -> Led {
        let cancel = CancellationToken::new();
        let task = tokio::spawn(
            lead_site(
                self.store.clone(),
                self.instance_id.clone(),
                s.clone(),
                grace,
                cancel.clone(),
            )
            .instrument(info_span!("ingest", site = %s.slug)),
        );
        Led {
            _guard: cancel.clone().drop_guard(),
            cancel,
            task,
        }
    }
}

async fn stop_all(led: &mut [Option<Led>]) {
    for l in led.iter().flatten() {
        l.cancel.cancel();
    }
    for l in led.iter_mut() {
        if let Some(l) = l.take()
            && let Err(e) = l.task.await
        {
            warn!(error = %e, "an ingest task ended abnormally");
        }
    }
}

/// One led site: wait the grace, take the write fence, resume from the store, poll until
/// cancelled — or until a write is refused by the fence, when it returns by itself (the
/// leader loop then gives the site up). Every await races the cancellation, so a lost lock
/// stops the site before its next vendor call, and an in-flight cycle is dropped (its
/// transaction rolls back; the state in memory never moved).
async fn lead_site(
    store: Store,
    instance_id: String,
    led: LeaderSite,
    grace: Duration,
    cancel: CancellationToken,
) {
    let LeaderSite {
        site,
        slug,
        client,
        settings,
        ..
    } = led;
    let interval = settings.poll_interval;
    // A little jitter so many sites taken at once do not poll in lockstep.
    let jitter = interval.mul_f64(rand::random::<f64>() * 0.2);
    tokio::select! {
        () = cancel.cancelled() => return,
        () = tokio::time::sleep(grace + jitter) => {}
    }
    // The fence first, the state after: on PostgreSQL taking the fence waits for a write of
    // the previous leader that already passed its own fence, so the state read below has it.
    let fence = loop {
        let taken = tokio::select! {
            () = cancel.cancelled() => return,
            r = store.take_write_fence(site, &instance_id) => r,
        };
        match taken {
            Ok(f) => break f,
            Err(e) => {
                warn!(error = %e, "cannot take the site's write fence; retrying");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(interval) => {}
                }
            }
        }
    };
    info!(generation = fence.generation, "took the site's write fence");
    let mut ingest = loop {
        let resumed = tokio::select! {
            () = cancel.cancelled() => return,
            r = SiteIngest::resume(site, slug.as_str(), client.clone(), store.clone(), settings.clone()) => r,
        };
        match resumed {
            Ok(i) => break i.with_fence(fence),
            Err(e) => {
                warn!(error = %e, "cannot resume the ingest from the store; retrying");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(interval) => {}
                }
            }
        }
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = ticker.tick() => {}
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            r = ingest.cycle(Utc::now()) => match r {
                Err(e) if e.is_lost_leadership() => {
                    warn!(error = %e, "write refused by the fence: another instance leads this site now; stopping its ingest");
                    metrics::counter!("vetric_ingest_cycles_total", "site" => slug.clone(), "outcome" => "lost_leadership").increment(1);
                    // Dropping `ingest` drops its state: it is no longer the site's.
                    return;
                }
                Err(e) => {
                    warn!(error = %e, "ingest cycle not stored; the next cycle retries from the last stored state");
                    metrics::counter!("vetric_ingest_cycles_total", "site" => slug.clone(), "outcome" => "store_failed").increment(1);
                }
                Ok(_) => {}
            },
        }
    }
    info!("ingest stopped (leadership ended)");
}
