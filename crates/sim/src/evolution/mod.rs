//! A simulator of the Evolution API v2 WhatsApp gateway (contract `evolution.md`, B6) that
//! speaks the real wire format and injects faults.
//!
//! - [`EvolutionSim::start`] binds and serves in process and returns an
//!   [`EvolutionSimHandle`] (base URL, instance states, faults, the record of accepted
//!   messages, call counters, shutdown).
//! - [`run_until_ctrl_c`] is what a `vetric sim evolution --listen ADDR` command would run.
//! - Gateway routes: `POST /message/sendText/:instance`, `GET /instance/connectionState/:instance`,
//!   `GET /instance/fetchInstances`, `POST /chat/findMessages/:instance`; anything else
//!   answers Express's 404 `Cannot <METHOD> <path>`.
//! - Control routes: `/__sim/…` (module `control`, and `crates/sim/README.md`).
//!
//! Modules: `config`, `jid` (the gateway's `createJid` Brazil rule), `wire` (JSON shapes),
//! `server` (HTTP, guards, validation, faults), `control` (the `/__sim` API).

mod config;
mod control;
mod jid;
mod server;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::{DEFAULT_API_KEY, DEFAULT_INSTANCE, EvolutionSimConfig, InstanceState};
pub use jid::create_jid;
pub use server::{Calls, Faults, SentMessage};

use server::{Shared, lock};

/// Errors of the Evolution simulator and its scripting API.
#[derive(Debug, thiserror::Error)]
pub enum EvolutionSimError {
    /// No instance with this name.
    #[error("unknown instance {0:?}")]
    UnknownInstance(String),
    /// Binding or serving failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// The Evolution simulator.
pub struct EvolutionSim;

impl EvolutionSim {
    /// Binds `listen` (port 0 allowed), starts serving in the background and returns the
    /// handle. Must be called inside a Tokio runtime.
    pub async fn start(
        config: EvolutionSimConfig,
        listen: SocketAddr,
    ) -> Result<EvolutionSimHandle, EvolutionSimError> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config));
        let app = server::router(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "evolution simulator stopped with an error");
            }
        });
        tracing::info!(%addr, "evolution simulator listening");
        Ok(EvolutionSimHandle {
            shared,
            addr,
            base_url: format!("http://{addr}"),
            shutdown: Some(tx),
            server: Some(server),
        })
    }
}

/// Runs the simulator on `listen` until Ctrl-C, printing the base URL, the API key and the
/// instance name to configure in vetric.
pub async fn run_until_ctrl_c(
    config: EvolutionSimConfig,
    listen: SocketAddr,
) -> Result<(), EvolutionSimError> {
    let handle = EvolutionSim::start(config, listen).await?;
    println!("{}", handle.config().banner(handle.base_url()));
    tokio::signal::ctrl_c().await?;
    handle.shutdown().await;
    Ok(())
}

/// A running simulator. Dropping it stops the server (use [`shutdown`](Self::shutdown) to
/// wait).
pub struct EvolutionSimHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    base_url: String,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl EvolutionSimHandle {
    /// `http://ADDR` (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &EvolutionSimConfig {
        &self.shared.config
    }

    /// Every message the gateway accepted (answered 201), oldest first, whatever
    /// `stores_messages` says: this is ground truth, not what `findMessages` shows.
    pub fn messages(&self) -> Vec<SentMessage> {
        lock(&self.shared.messages).clone()
    }

    /// Forgets the accepted messages (also what `findMessages` finds).
    pub fn clear_messages(&self) {
        lock(&self.shared.messages).clear();
    }

    /// Sets one instance's connection state.
    pub fn set_state(&self, instance: &str, state: InstanceState) -> Result<(), EvolutionSimError> {
        if self.shared.set_state(Some(instance), state) {
            Ok(())
        } else {
            Err(EvolutionSimError::UnknownInstance(instance.to_owned()))
        }
    }

    /// Sets every instance's connection state.
    pub fn set_all_states(&self, state: InstanceState) {
        self.shared.set_state(None, state);
    }

    /// An instance's connection state.
    pub fn state(&self, instance: &str) -> Option<InstanceState> {
        self.shared
            .states()
            .into_iter()
            .find(|(n, _)| n == instance)
            .map(|(_, s)| s)
    }

    /// Whether `findMessages` finds stored messages (B5b).
    pub fn set_stores_messages(&self, on: bool) {
        *lock(&self.shared.stores_messages) = on;
    }

    /// Marks a number as not on WhatsApp (`on`) or back on it.
    pub fn set_not_on_whatsapp(&self, number: &str, on: bool) {
        self.shared.set_not_on_whatsapp(number, on);
    }

    /// Replaces the faults in force.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.set_faults(faults);
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    /// Clears every fault (a hang releases its requests).
    pub fn clear_faults(&self) {
        self.shared.set_faults(Faults::default());
    }

    /// The `token` of an instance (accepted in `apikey` like the global key, B2).
    pub fn instance_token(&self, instance: &str) -> Option<String> {
        lock(&self.shared.instances)
            .iter()
            .find(|i| i.name == instance)
            .map(|i| i.token.clone())
    }

    /// Gateway calls received so far, per route.
    pub fn calls(&self) -> Calls {
        *lock(&self.shared.calls)
    }

    /// Sets every call counter to zero.
    pub fn reset_calls(&self) {
        *lock(&self.shared.calls) = Calls::default();
    }

    /// Stops serving and waits (at most 5 s; requests still hanging are cut).
    pub async fn shutdown(mut self) {
        self.shared.set_faults(Faults::default());
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
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

impl Drop for EvolutionSimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(s) = self.server.take() {
            s.abort();
        }
    }
}
