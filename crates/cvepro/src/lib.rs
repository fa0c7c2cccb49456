//! `vetric-cvepro`: the client of the Intelbras CVE-Pro REST API (an OCPP central system).
//!
//! It owns everything about the vendor's wire format and its quirks, and hands the rest of
//! vetric plain [`vetric_domain`] observations. The contract it implements is
//! `shared/contracts/cvepro.md` (checklist A11).
//!
//! - [`client`]: [`CveProClient`]: login with single-flight renewal and 401 → re-login →
//!   replay; every call with timeouts, jittered retries within a budget and a circuit breaker;
//!   [`CveProClient::snapshot`] reads chargers and transactions in one go.
//! - [`wire`]: the payload structs, one module per endpoint, and the strict decoder
//!   (a missing field is [`CveProError::ShapeChanged`] with its JSON path, never a default).
//! - [`map`]: wire → domain, with the vendor's quirks fixed and counted.
//! - [`time`]: the three timestamp formats, the transaction window and zone calibration.
//! - [`resilience`]: backoff, retry budget and breaker as pure state machines.
//! - [`probe`]: one login-and-read of an account, for `vetric cvepro check` and the
//!   settings page's "Testar conexão".
//! - [`error`], [`config`], [`report`].
//!
//! Secrets (API key, password, token) never appear in a log line or an error message.

pub mod client;
pub mod config;
pub mod error;
pub mod map;
mod planted;
pub mod probe;
pub mod report;
pub mod resilience;
pub mod time;
pub mod wire;

pub use client::{BuildError, CveProClient, LinkError, LinkStatus};
pub use config::{BreakerPolicy, CveProConfig, RetryPolicy};
pub use error::{CveProError, ErrorKind};
pub use report::{CountMismatch, QuirkReport, SnapshotReport};
pub use resilience::BreakerState;
pub use time::{Calibration, calibrate_transaction_offset, transaction_window};
