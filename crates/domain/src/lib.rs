//! vetric's domain: what a charger, a connector, a charging session and a tag *are*, and the
//! rules that turn vendor observations into facts.
//!
//! This crate is pure on purpose (DESIGN.md rule 3): no I/O, no async, no clock. Every function
//! that depends on time takes `now` as an argument, so property tests and replayed incidents run
//! against exactly the code that runs in production.

pub mod directory;
pub mod event;
pub mod link;
pub mod observation;
pub mod secret;
pub mod slug;
pub mod status;
pub mod tag;
pub mod tracker;

pub use directory::{Ownership, ResidentRef, TagDirectory};
pub use event::{
    ChargerRef, Event, EventKind, FailureClass, InterruptCause, SessionEnd, SessionInfo,
};
pub use link::{Freshness, LinkConfig, SnapshotDecision, VendorLink, freshness};
pub use observation::{ChargerSnapshot, ConnectorSnapshot, TransactionRecord, VendorSnapshot};
pub use secret::Secret;
pub use slug::{Slug, SlugError};
pub use status::ConnectorStatus;
pub use tag::{Tag, TagError};
pub use tracker::{ChargerState, ConnectorState, OpenSession, SiteState, TrackerConfig, observe};
