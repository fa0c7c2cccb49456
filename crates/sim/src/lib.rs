//! Simulators of the vendor services vetric talks to, for tests and the demo.
//!
//! - [`cvepro`]: the Intelbras CVE-Pro cloud (REST), with a generated condominium fleet,
//!   a session engine, scripting and fault injection.
//! - [`evolution`]: the Evolution API v2 WhatsApp gateway, with instance states, the
//!   Brazilian JID rule, a record of accepted messages and fault injection.

pub mod cvepro;
pub mod evolution;
