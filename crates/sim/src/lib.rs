//! Simulators of the vendor services vetric talks to, for tests and the demo.
//!
//! - [`cvepro`]: the Intelbras CVE-Pro cloud (REST), with a generated condominium fleet,
//!   a session engine, scripting and fault injection.
//! - [`evolution`]: the Evolution API v2 WhatsApp gateway, with instance states, the
//!   Brazilian JID rule, a record of accepted messages and fault injection.
//! - [`smtp`]: a minimal SMTP server that keeps the mails it accepts (AUTH, faults, hang).
//! - [`webhook`]: a webhook receiver that records requests and checks vetric's signature.

pub mod cvepro;
pub mod evolution;
pub mod smtp;
pub mod webhook;
