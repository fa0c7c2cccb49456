//! A simulator of the Intelbras CVE-Pro cloud (contract `cvepro.md`, A10) that speaks the real
//! wire format, plays a scripted fleet and injects faults.
//!
//! - [`CveProSim::start`] binds and serves in process and returns a [`SimHandle`] (base URL,
//!   scripting, faults, call counters, ground-truth record, shutdown).
//! - [`run_until_ctrl_c`] is what `vetric sim cvepro --listen ADDR` runs.
//! - Vendor routes: `POST /api/v1/login`, `GET /api/v1/chargepoints`, `GET /api/v1/transaction`;
//!   anything else answers 404 (e.g. `/api/v1/transactions`, `/api/v1/id-tag`,
//!   `/api/v1/stats/all_stats`).
//! - Control routes: `/__sim/…` (module `control`, and `crates/sim/README.md`).
//!
//! Modules: `config` (settings and defaults), `fleet` (the generated site), `engine` (session
//! state machine, pure and clock-free), `wire` (the JSON shapes), `faults` (injected faults),
//! `server` (HTTP, auth, fault gate), `control` (the `/__sim` API), `error`.

mod config;
mod control;
mod engine;
mod error;
mod faults;
mod fleet;
mod server;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::{
    BearerPolicy, DEFAULT_API_KEY, DEFAULT_EMAIL, DEFAULT_PASSWORD, DEFAULT_SITE_NAME, SimConfig,
    TimeMode,
};
pub use control::{ChargerKey, DEFAULT_POWER_W};
pub use engine::{ConnectorStatus, Engine, SessionRecord, StopReason};
pub use error::SimError;
pub use faults::{
    ActiveFault, Fault, FaultKind, GATEWAY_502_HTML, GATEWAY_503_HTML, Route, gateway_html,
};
pub use fleet::{Apartment, ChargerSpec, ConnectorSpec, Fleet, FleetSpec, Resident, Tag, TagKind};
pub use server::{Calls, InFlight};

use server::Shared;

/// The CVE-Pro simulator.
pub struct CveProSim;

impl CveProSim {
    /// Generates the fleet for a configuration (what [`CveProSim::start`] will serve).
    pub fn fleet_for(config: &SimConfig) -> Fleet {
        Fleet::generate(&FleetSpec {
            chargers: config.chargers,
            seed: config.seed,
            site_name: config.site_name.clone(),
            residents_per_charger: config.residents_per_charger,
            dual_connector_chargers: config.dual_connector_chargers,
        })
    }

    /// Binds `listen` (port 0 allowed), starts serving and ticking in the background, and
    /// returns the handle. Must be called inside a Tokio runtime.
    pub async fn start(config: SimConfig, listen: SocketAddr) -> Result<SimHandle, SimError> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let engine = Engine::new(Self::fleet_for(&config), &config, Utc::now());
        let tick = config.tick.max(Duration::from_millis(10));
        let shared = Arc::new(Shared::new(config, engine));
        let app = server::router(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "cvepro simulator stopped with an error");
            }
        });
        let ticker_shared = shared.clone();
        let ticker = tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick);
            loop {
                interval.tick().await;
                drop(ticker_shared.engine_now());
            }
        });
        tracing::info!(%addr, "cvepro simulator listening");
        Ok(SimHandle {
            shared,
            addr,
            base_url: format!("http://{addr}"),
            shutdown: Some(tx),
            server: Some(server),
            ticker: Some(ticker),
        })
    }
}

/// Runs the simulator on `listen` until Ctrl-C, printing the base URL and the credentials to
/// configure in vetric on stdout. This is `vetric sim cvepro`.
pub async fn run_until_ctrl_c(config: SimConfig, listen: SocketAddr) -> Result<(), SimError> {
    let handle = CveProSim::start(config, listen).await?;
    println!("{}", handle.config().banner(handle.base_url()));
    tokio::signal::ctrl_c().await?;
    handle.shutdown().await;
    Ok(())
}

/// What `/__sim/state` and [`SimHandle::state`] show of one charger.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChargerView {
    /// Index in the fleet.
    pub charger: usize,
    /// `chargeBoxId`.
    pub charge_box_id: String,
    /// Whether it is online (heartbeating).
    pub online: bool,
    /// Its connectors.
    pub connectors: Vec<ConnectorView>,
}

/// One connector's true and reported state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConnectorView {
    /// OCPP connector id.
    pub connector_id: u32,
    /// True status.
    pub status: ConnectorStatus,
    /// What `lastStatus.status` shows now (lags, `Unavailable` offline, `Charging` for a ghost).
    pub reported_status: ConnectorStatus,
    /// Ghost `Charging` is on.
    pub ghost: bool,
    /// Transaction in progress.
    pub transaction_id: Option<i64>,
}

pub(crate) fn state_view(engine: &Engine) -> Vec<ChargerView> {
    engine
        .chargers
        .iter()
        .enumerate()
        .map(|(i, ch)| ChargerView {
            charger: i,
            charge_box_id: engine.fleet.chargers[i].charge_box_id.clone(),
            online: ch.online,
            connectors: ch
                .connectors
                .iter()
                .map(|co| ConnectorView {
                    connector_id: co.connector_id,
                    status: co.status,
                    reported_status: co.reported.status,
                    ghost: co.ghost,
                    transaction_id: co.tx.map(|t| engine.txs[t].id),
                })
                .collect(),
        })
        .collect()
}

/// A running simulator. Dropping it stops the server (use [`SimHandle::shutdown`] to wait).
pub struct SimHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    base_url: String,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    ticker: Option<JoinHandle<()>>,
}

impl SimHandle {
    /// `http://ADDR` (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    /// The fleet: chargers, residents, apartments, tags and `ocppTagPk`s.
    pub fn fleet(&self) -> Fleet {
        self.shared.engine().fleet().clone()
    }

    /// Vendor calls received so far, per endpoint.
    pub fn calls(&self) -> Calls {
        *self.shared.calls()
    }

    /// Sets every call counter to zero.
    pub fn reset_calls(&self) {
        *self.shared.calls() = Calls::default();
    }

    /// Vendor requests being answered now, and the peak since the start or the last
    /// [`reset_in_flight_peak`](Self::reset_in_flight_peak).
    pub fn in_flight(&self) -> InFlight {
        *self.shared.in_flight()
    }

    /// Restarts the peak from the requests in flight now.
    pub fn reset_in_flight_peak(&self) {
        let mut f = self.shared.in_flight();
        f.peak = f.now;
    }

    /// Ground truth of every session so far (advanced to now).
    pub fn record(&self) -> Vec<SessionRecord> {
        self.shared.engine_now().0.record()
    }

    /// True and reported state of every charger (advanced to now).
    pub fn state(&self) -> Vec<ChargerView> {
        state_view(&self.shared.engine_now().0)
    }

    /// Runs `f` on the engine after advancing it to now.
    pub fn with_engine<R>(&self, f: impl FnOnce(&mut Engine) -> R) -> R {
        f(&mut self.shared.engine_now().0)
    }

    fn at_now<R>(&self, f: impl FnOnce(&mut Engine, chrono::DateTime<Utc>) -> R) -> R {
        let (mut e, now) = self.shared.engine_now();
        f(&mut e, now)
    }

    /// Plugs in with a resident's tag: `Available → Preparing`.
    pub fn plug_in(&self, charger: usize, connector: u32, tag: &str) -> Result<(), SimError> {
        self.at_now(|e, now| e.plug_in(now, charger, connector, tag))
    }

    /// `Preparing → Charging` at `power_w`; creates the transaction and returns its id.
    pub fn start_charging(
        &self,
        charger: usize,
        connector: u32,
        power_w: f64,
    ) -> Result<i64, SimError> {
        self.at_now(|e, now| e.start_charging(now, charger, connector, power_w))
    }

    /// [`plug_in`](Self::plug_in) then [`start_charging`](Self::start_charging).
    pub fn start_session(
        &self,
        charger: usize,
        connector: u32,
        tag: &str,
        power_w: f64,
    ) -> Result<i64, SimError> {
        self.at_now(|e, now| {
            e.plug_in(now, charger, connector, tag)?;
            e.start_charging(now, charger, connector, power_w)
        })
    }

    /// `→ SuspendedEV` (idle, car full).
    pub fn suspend_ev(&self, charger: usize, connector: u32) -> Result<(), SimError> {
        self.at_now(|e, now| e.suspend_ev(now, charger, connector))
    }

    /// `→ SuspendedEVSE`.
    pub fn suspend_evse(&self, charger: usize, connector: u32) -> Result<(), SimError> {
        self.at_now(|e, now| e.suspend_evse(now, charger, connector))
    }

    /// Back to `Charging` (optionally at a new power).
    pub fn resume(
        &self,
        charger: usize,
        connector: u32,
        power_w: Option<f64>,
    ) -> Result<(), SimError> {
        self.at_now(|e, now| e.resume(now, charger, connector, power_w))
    }

    /// Stops the session (`Finishing`, then `Available` after the finishing delay). Returns
    /// the transaction id.
    pub fn stop(
        &self,
        charger: usize,
        connector: u32,
        reason: StopReason,
    ) -> Result<i64, SimError> {
        self.at_now(|e, now| e.stop(now, charger, connector, reason))
    }

    /// `Preparing`/`Finishing → Available` at once.
    pub fn unplug(&self, charger: usize, connector: u32) -> Result<(), SimError> {
        self.at_now(|e, now| e.unplug(now, charger, connector))
    }

    /// Faults a connector with an OCPP error code.
    pub fn fault_connector(
        &self,
        charger: usize,
        connector: u32,
        error_code: &str,
    ) -> Result<(), SimError> {
        self.at_now(|e, now| e.fault(now, charger, connector, error_code))
    }

    /// `Faulted → Available`.
    pub fn unfault_connector(&self, charger: usize, connector: u32) -> Result<(), SimError> {
        self.at_now(|e, now| e.unfault(now, charger, connector))
    }

    /// Takes a charger offline.
    pub fn set_offline(&self, charger: usize) -> Result<(), SimError> {
        self.at_now(|e, now| e.set_offline(now, charger))
    }

    /// Brings a charger back (late stops delivered).
    pub fn set_online(&self, charger: usize) -> Result<(), SimError> {
        self.at_now(|e, now| e.set_online(now, charger))
    }

    /// Empties (or restores) a transaction's `ocppIdTag` and user fields.
    pub fn set_tag_empty(&self, transaction_id: i64, empty: bool) -> Result<(), SimError> {
        self.at_now(|e, now| e.set_tag_empty(now, transaction_id, empty))
    }

    /// Makes a charger report tags in lower case (from its next transaction).
    pub fn set_lowercase_tags(&self, charger: usize, lowercase: bool) -> Result<(), SimError> {
        self.at_now(|e, now| e.set_lowercase_tags(now, charger, lowercase))
    }

    /// Ghost `Charging` on a connector (no transaction), or off.
    pub fn set_ghost(&self, charger: usize, connector: u32, on: bool) -> Result<(), SimError> {
        self.at_now(|e, now| e.set_ghost(now, charger, connector, on))
    }

    /// Automatic fleet on or off.
    pub fn set_auto(&self, on: bool) {
        self.at_now(|e, now| e.set_auto(now, on));
    }

    /// Injects a fault (replacing one of the same kind and route).
    pub fn set_fault(&self, fault: Fault) {
        self.shared.set_fault(fault);
    }

    /// Clears every fault of a kind.
    pub fn clear_fault(&self, kind: FaultKind) {
        self.shared.clear_fault(kind);
    }

    /// Clears every fault.
    pub fn clear_faults(&self) {
        self.shared.clear_faults();
    }

    /// Faults in force.
    pub fn faults(&self) -> Vec<ActiveFault> {
        self.shared.faults().list(Utc::now())
    }

    /// Revokes every token issued so far (the next call with one gets 401).
    pub fn revoke_tokens(&self) {
        self.shared.revoke_tokens();
    }

    /// Stops serving and waits (at most 5 s; requests still hanging are cut).
    pub async fn shutdown(mut self) {
        self.shared.clear_faults();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
        if let Some(mut server) = self.server.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut server)
                .await
                .is_err()
        {
            server.abort();
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
        if let Some(s) = self.server.take() {
            s.abort();
        }
    }
}
