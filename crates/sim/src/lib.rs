//! Simulators of the vendor services vetric talks to, for tests and the demo.
//!
//! - [`cvepro`]: the Intelbras CVE-Pro cloud (REST), with a generated condominium fleet,
//!   a session engine, scripting and fault injection.
//!
//! An Evolution (WhatsApp gateway) simulator will sit beside it as `evolution`.

pub mod cvepro;
