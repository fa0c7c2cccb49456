//! vetric's domain: what a charger, a connector, a charging session and a tag *are*, and the
//! rules that turn vendor observations into facts.
//!
//! This crate is pure on purpose (DESIGN.md rule 3): no I/O, no async, no clock. Every function
//! that depends on time takes `now` as an argument, so property tests and replayed incidents run
//! against exactly the code that runs in production.

pub mod cost;
pub mod directory;
pub mod event;
pub mod holidays;
pub mod link;
pub mod money;
pub mod notify;
pub mod observation;
pub mod phone;
pub mod secret;
pub mod slug;
pub mod statement;
pub mod status;
pub mod tag;
pub mod tariff;
pub mod tracker;
pub mod vendor_export;

pub use cost::{
    CostError, KWH_SPLIT_SCALE, LocalMonth, LocalMonthError, PeakPiece, SessionCost, check_session,
    local_month, peak_pieces, session_cost,
};
pub use directory::{Ownership, ResidentRef, TagDirectory};
pub use event::{
    ChargerRef, Event, EventKind, FailureClass, InterruptCause, SessionEnd, SessionInfo,
};
pub use holidays::{NationalHoliday, easter_sunday, is_national_holiday, national_holidays};
pub use link::{Freshness, LinkConfig, SnapshotDecision, VendorLink, freshness};
pub use money::{
    format_kwh, format_kwh_pt_br, format_money, format_money_pt_br, round_kwh, round_money,
};
pub use notify::{
    Audience, CancelReason, Cancellation, Decision, NotificationPolicy, Plan, PlanContext, Planned,
    PolicyProblem, QuietHours, ResidentPrefs, Rule, RuleSettings, TemplateError, decide,
    default_template, plan, plan_batch, plan_operator_alert, preview, ref_code, render,
    validate_template,
};
pub use observation::{ChargerSnapshot, ConnectorSnapshot, TransactionRecord, VendorSnapshot};
pub use phone::{PhoneError, PhoneNumber};
pub use secret::Secret;
pub use slug::{Slug, SlugError};
pub use statement::{
    ApartmentDiff, ApartmentLine, DatedOwnership, Disagreement, DisagreementField, LineResident,
    LineSummary, RejectReason, Rejected, SessionCopy, SessionLine, SessionRecord, SessionSource,
    Statement, StatementInput, TimePrecision, Totals, UNASSIGNED_LABEL, directory_from_dates,
    local_midnight,
};
pub use status::ConnectorStatus;
pub use tag::{Tag, TagError};
pub use tariff::{
    RawNumber, Tariff, TariffHistory, TariffHistoryError, TariffProblem, TariffProblems, TariffSpec,
};
pub use tracker::{ChargerState, ConnectorState, OpenSession, SiteState, TrackerConfig, observe};
pub use vendor_export::{
    CellValue, ImportFileError, ImportReport, RejectedRow, RowProblem, map_rows, map_sheet,
};
