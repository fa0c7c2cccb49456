//! vetric's moving parts: the loops that run while `serve` or `demo` is up.
//!
//! Today that is the per-site ingest ([`ingest`]) under per-site leadership ([`leader`]). The
//! notification dispatcher and alerting join here as their issues land. Everything here talks
//! to the outside world through the client and store crates and leaves the rules to the pure
//! domain crate.

pub mod dispatch;
pub mod gateway_status;
pub mod ingest;
pub mod leader;
pub mod notify;
mod planted;
pub mod statements;

pub use dispatch::{DispatchSettings, Dispatcher, OperatorContacts, SiteDispatch, WhatsAppGateway};
pub use gateway_status::{GatewayObservation, GatewayStatus};
pub use ingest::{CycleOutcome, IngestError, IngestSettings, PersistedState, SiteIngest};
pub use leader::{LeaderSettings, Leadership};
pub use notify::{Recipients, SiteNotify};
pub use vetric_store::{LeadershipBoard, SiteLeadership};
