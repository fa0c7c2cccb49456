//! vetric's moving parts: the loops that run while `serve` or `demo` is up.
//!
//! Today that is the per-site ingest ([`ingest`]). Leadership, the notification dispatcher and
//! alerting join here as their issues land. Everything here talks to the outside world through
//! the client and store crates and leaves the rules to the pure domain crate.

pub mod ingest;

pub use ingest::{CycleOutcome, IngestError, IngestSettings, PersistedState, SiteIngest};
