//! vetric's storage room: everything vetric remembers, behind one interface, on two backends.
//!
//! * **SQLite** is the embedded default: one file, one serving process (guarded by the
//!   [`InstanceLock`]), other commands as ordinary WAL readers and short writers.
//! * **PostgreSQL** is the production store, shared by several instances.
//!
//! [`Store`] holds a pool of either; each operation runs the same SQL text on both (runtime
//! `sqlx::query*`, `$N` placeholders, `ON CONFLICT` upserts, `RETURNING`), with two strings
//! only where the dialects differ. Each backend has its own migration folder describing the
//! same logical schema (`migrations/sqlite`, `migrations/postgres`; a test compares them).
//!
//! What is stored: sites, the vendor link of each site, chargers and connectors as last seen,
//! apartments, residents, tag ownership over time, the vendor's tag-key map, charging
//! sessions, the event log, the unknown-tag inbox and the session tracker's state; and the
//! accounts side: users, the sites a manager may see, hashed login/API tokens and the audit
//! log. Instants are UTC; energy is integer Wh. The one write the ingest loop makes per poll,
//! [`Store::write_cycle`], is a single transaction: all of it or nothing (DESIGN rule 4).
//!
//! The domain's event and tracker types are opaque here (kind + JSON payload, JSON state):
//! the store never interprets them.

mod accounts;
mod backup;
mod changes;
mod directory;
mod error;
mod import;
mod ingest;
mod invites;
mod leadership;
mod library;
mod lock;
mod manage;
mod model;
mod outbox;
mod outbox_views;
mod planted;
mod reads;
mod statements;
mod store;
mod tariffs;

#[cfg(feature = "testing")]
pub mod testing;

pub use accounts::{
    AuditEntry, AuditRow, AuditView, NewToken, NewUser, Role, TokenId, TokenKind, TokenUser,
    UserCredentials, UserId, UserRow,
};
pub use backup::{
    BackupError, BackupInfo, VerifiedBackup, find_pg_tool, pg_dump, pg_restore, restore_sqlite,
    split_pg_password, verify_sqlite_backup,
};
pub use changes::{CHANGES_CHANNEL, ChangeListener, ChangeNotice, SiteChangeMarker};
pub use error::{StoreError, redact_url};
pub use import::ImportResident;
pub use invites::{
    ActiveChange, InviteTarget, NewInvite, PENDING_PASSWORD_HASH, PersonalToken, UserScope,
    UserSummary,
};
pub use leadership::{
    INGEST_LOCK_NAMESPACE, LeaderConnection, LeadershipBoard, LeadershipError,
    QUERY_TIMEOUT as LEADERSHIP_QUERY_TIMEOUT, SiteLeadership, WriteFence, ingest_lock_key,
    instance_id,
};
pub use library::{
    IssuedMonthVersion, NewRejectedRow, NewReportFile, RejectedImportRow, ReportFileRow,
};
pub use lock::{InstanceLock, LockError, LockHolder};
pub use manage::{ApartmentRow, ResidentUpdate, TagGrant};
pub use model::{
    ApartmentId, BadValue, BreakerState, CancelPending, ChargerWrite, ConnectorView,
    ConnectorWrite, CycleWrite, EndKind, EventRow, NewEvent, NewNotification, NewResident,
    ResidentId, ResidentRow, SessionFilter, SessionStatus, SessionView, SessionWrite, SiteId,
    SiteRow, TagOwnershipRow, UnknownTagRow, UnknownTagSighting, VendorLinkRow, apartment_label,
};
pub use outbox::{
    AttemptRow, BacklogStats, Completion, Decided, OperatorDecision, OutboxEntry, OutboxFilter,
    OutboxRow, OutboxStatus, ResidentPrefsRow, Resolution, SitePolicyRow,
};
pub use statements::{ImportOutcome, IssuedStatement, IssuedVersion, NewImportBatch};
pub use store::{Backend, Store, sqlite_path_from_url};
pub use tariffs::{TariffSource, TariffVersionRow};
