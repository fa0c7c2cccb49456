//! `vetric-evolution`: the client of the Evolution API v2 WhatsApp gateway (contract
//! `shared/contracts/evolution.md`, part B).
//!
//! - [`client`]: [`EvolutionClient`]: [`send_text`](EvolutionClient::send_text),
//!   [`connection_state`](EvolutionClient::connection_state) and
//!   [`find_messages`](EvolutionClient::find_messages) for one instance, with the configured
//!   timeouts, one attempt per call.
//! - [`error`]: [`EvolutionError`] and [`ErrorKind`], which decides what happens next
//!   (retry, give up on the message, alert the operator).
//! - [`wire`]: the JSON shapes and the mapping of answers to results, as pure functions.
//! - [`config`]: the settings, [`EvolutionConfig`].
//!
//! Numbers are [`PhoneNumber`]s (from `vetric-domain`): parsed once, masked in every log line.
//! The API key never appears in a log line or an error message.

pub mod client;
pub mod config;
pub mod error;
pub mod wire;

pub use client::{BuildError, EvolutionClient};
pub use config::EvolutionConfig;
pub use error::{ErrorKind, EvolutionError};
pub use vetric_domain::{PhoneError, PhoneNumber};
pub use wire::{ConnectionState, FoundMessage, SentMessage};
