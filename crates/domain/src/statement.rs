//! A site's monthly statement: who pays what for the month's charging (BILLING.md rules 2, 3,
//! 7, 8 and "Output"), built on the per-session rules of [`crate::cost`].
//!
//! This room takes everything a statement depends on as plain data ([`StatementInput`]: the
//! sessions, the dated tag ownership, the tariff history, the site's zone and the month) and
//! answers a [`Statement`]. It is pure and total: a session that cannot be priced becomes a
//! [`Rejected`] entry with its pt-BR reason, never an error of the whole statement, so a draft
//! can always be previewed. Computing twice — or with the sessions in another order — gives
//! the same statement, which is what lets an issued statement be frozen as a snapshot and
//! re-computed later to compare ([`diff`]).
//!
//! The steps, in order:
//! 1. **One vendor id, one session.** Copies of a vendor id are collapsed before anything else:
//!    vetric's own record wins over an imported row (it was seen live); among copies of the same
//!    source the first in a fixed order wins. A dropped copy whose energy, times, idle time or
//!    tag differ from the kept one is listed as a [`Disagreement`]. The kept copy is then
//!    checked like any other: a faulty own record is rejected even when an imported copy looks
//!    fine (the disagreement tells the manager why).
//! 2. **Month** (rule 3): the sessions whose local start falls in the month.
//! 3. **Tariff**: the one in force on the local date of the start
//!    ([`TariffHistory::in_force_for_session`]); none → rejected.
//! 4. **Checks and cost** (rules 1, 4–6, 8): [`session_cost`], whose errors are the rejected
//!    reasons, in rule 8's order.
//! 5. **Attribution** (rule 2): the owner of the tag at the start instant
//!    ([`TagDirectory::owner_at`]); no tag, an unknown tag or no owner then → the
//!    "sem morador" line, priced like any other.
//! 6. **Lines and totals** (rule 7), built so that they add up by construction: a line's money
//!    is the sum of its sessions' rounded amounts, the totals the sum of the lines.
//!
//! Decisions where BILLING.md is silent:
//! - Energy is carried as integer Wh and idle time as seconds (as everywhere in the domain); the
//!   vendor's kWh have 3 decimals, so nothing is lost.
//! - Peak kWh of a line: the exact sum of its sessions' unrounded peak kWh, rounded to 3
//!   decimals half-up; off-peak kWh of a line = its kWh − its peak kWh. That equals rule 7's
//!   "off-peak summed exactly, then rounded" except on an exact tie at the fourth decimal, and it
//!   keeps `peak + off-peak == kWh` on every line shown. A session line shows the same split.
//! - Totals' peak and off-peak kWh are the sums of the lines' rounded figures (so the lines add
//!   up to them), not a re-rounding of the exact month total; they can differ from the latter by
//!   at most half a Wh per line.
//! - Lines are ordered by apartment in natural order ("2" before "10"), the "sem morador" line
//!   last; sessions by start, then vendor id.
//! - Times of an imported row without seconds ([`TimePrecision::Minute`]) agree with vetric's
//!   own when less than a minute apart (the vendor may truncate or round), so a missing seconds
//!   field is not reported as a disagreement.
//! - Copies are compared only when one of them starts in the month, so a disagreement shows on
//!   the statement it concerns.

use crate::cost::{LocalMonth, PeakPiece, local_month, peak_pieces, session_cost};
use crate::directory::{ResidentRef, TagDirectory};
use crate::money::{format_kwh_pt_br, round_kwh, round_money};
use crate::tag::Tag;
use crate::tariff::TariffHistory;
use crate::{CostError, SessionCost};
use chrono::{DateTime, LocalResult, NaiveDate, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

/// How the line of sessions nobody owned is called (BILLING.md rule 2).
pub const UNASSIGNED_LABEL: &str = "sem morador";

/// Where a session's figures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionSource {
    /// Recorded by vetric from the vendor's live data.
    Own,
    /// A row of the vendor's XLSX export ([`crate::vendor_export`]).
    Imported,
}

/// How precise a session's start and stop are. The vendor's export may omit the seconds.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum TimePrecision {
    #[default]
    Second,
    Minute,
}

/// One finished charging session, as a statement needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The vendor's transaction id: a session's identity across sources.
    pub vendor_id: i64,
    /// The charger's name as shown (the export's `Estação`).
    pub charger: String,
    /// `None`: the vendor sent no tag.
    pub tag: Option<Tag>,
    pub start: DateTime<Utc>,
    pub stop: DateTime<Utc>,
    /// Energy in Wh (the vendor's kWh × 1000).
    pub energy_wh: i64,
    pub idle_seconds: i64,
    pub source: SessionSource,
    #[serde(default)]
    pub precision: TimePrecision,
    /// The spreadsheet line of an imported row (header = 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_line: Option<u32>,
    /// The vendor's user name, to help a manager resolve a "sem morador" session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
}

/// Everything a statement depends on. Owned and serialisable so that an issued statement can be
/// frozen with its inputs and computed again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatementInput {
    pub site_name: String,
    #[serde(with = "tz_name")]
    pub tz: Tz,
    pub month: LocalMonth,
    /// Own and imported sessions, in any order, copies included (step 1 collapses them).
    pub sessions: Vec<SessionRecord>,
    pub ownership: TagDirectory,
    pub tariffs: TariffHistory,
}

/// A resident on a statement line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LineResident {
    pub resident_id: i64,
    pub name: String,
}

impl From<&ResidentRef> for LineResident {
    fn from(r: &ResidentRef) -> Self {
        Self {
            resident_id: r.resident_id,
            name: r.name.clone(),
        }
    }
}

/// One accepted session with every figure that explains its price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionLine {
    pub vendor_id: i64,
    pub source: SessionSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_line: Option<u32>,
    pub charger: String,
    pub tag: Option<Tag>,
    /// The owner of the tag at the start; `None`: the "sem morador" line.
    pub resident: Option<LineResident>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    pub start: DateTime<Utc>,
    pub stop: DateTime<Utc>,
    /// Real elapsed seconds (whole seconds); `peak_seconds + offpeak_seconds`.
    pub seconds: i64,
    pub peak_seconds: i64,
    pub offpeak_seconds: i64,
    /// The parts of the session inside each local day's peak window.
    pub peak_pieces: Vec<PeakPiece>,
    /// kWh, 3 decimals.
    pub energy_kwh: Decimal,
    /// Peak kWh rounded to 3 decimals half-up; `peak_kwh + offpeak_kwh == energy_kwh`.
    pub peak_kwh: Decimal,
    pub offpeak_kwh: Decimal,
    /// The unrounded peak kWh the line sums (18 decimals at most).
    pub peak_kwh_exact: Decimal,
    /// The tariff that priced the session: its effective date (`None`: the undated tariff) and
    /// prices.
    pub tariff_effective_from: Option<NaiveDate>,
    pub peak_price: Decimal,
    pub offpeak_price: Decimal,
    pub energy_cost: Decimal,
    pub idle_seconds: i64,
    pub idle_fee: Decimal,
    pub idle_fee_capped: bool,
    /// `energy_cost + idle_fee`.
    pub total: Decimal,
}

/// One apartment's line (or the "sem morador" line) of the month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApartmentLine {
    /// `None`: the "sem morador" line ([`UNASSIGNED_LABEL`]).
    pub apartment: Option<String>,
    /// The residents whose tags charged, by name.
    pub residents: Vec<LineResident>,
    pub sessions: u64,
    pub kwh: Decimal,
    pub peak_kwh: Decimal,
    pub offpeak_kwh: Decimal,
    /// The sum of the sessions' rounded energy costs.
    pub energy_cost: Decimal,
    pub idle_seconds: i64,
    /// Idle seconds / 60, rounded to 2 decimals half-up (shown, never priced from).
    pub idle_minutes: Decimal,
    /// The sum of the sessions' rounded, capped idle fees.
    pub idle_fee: Decimal,
    pub total: Decimal,
    pub session_details: Vec<SessionLine>,
}

impl ApartmentLine {
    /// The apartment as shown, or "sem morador".
    pub fn label(&self) -> &str {
        self.apartment.as_deref().unwrap_or(UNASSIGNED_LABEL)
    }

    pub fn is_unassigned(&self) -> bool {
        self.apartment.is_none()
    }
}

/// The month's sums (BILLING.md "Output"): the sums of the lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub sessions: u64,
    pub kwh: Decimal,
    pub peak_kwh: Decimal,
    pub offpeak_kwh: Decimal,
    pub energy_cost: Decimal,
    pub idle_seconds: i64,
    pub idle_minutes: Decimal,
    pub idle_fee: Decimal,
    pub total: Decimal,
}

/// Why a session was kept out of the statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    NoTariff,
    EnergyNotPositive,
    EnergyAboveMaximum,
    EndNotAfterStart,
    NegativeIdle,
    OutOfRange,
}

/// A session of the month kept out of the statement (BILLING.md rule 8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    pub vendor_id: i64,
    pub source: SessionSource,
    /// The spreadsheet line of an imported row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    pub charger: String,
    pub tag: Option<Tag>,
    pub start: DateTime<Utc>,
    pub stop: DateTime<Utc>,
    pub energy_kwh: Decimal,
    pub reason: RejectReason,
    pub reason_pt_br: String,
}

/// What differs between two copies of one vendor id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisagreementField {
    Energy,
    Start,
    Stop,
    Idle,
    Tag,
}

impl DisagreementField {
    fn label_pt_br(self) -> &'static str {
        match self {
            Self::Energy => "energia",
            Self::Start => "início",
            Self::Stop => "fim",
            Self::Idle => "tempo de ociosidade",
            Self::Tag => "tag",
        }
    }
}

/// The figures of one copy of a session, as compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCopy {
    pub source: SessionSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    pub tag: Option<Tag>,
    pub start: DateTime<Utc>,
    pub stop: DateTime<Utc>,
    pub energy_kwh: Decimal,
    pub idle_seconds: i64,
}

impl From<&SessionRecord> for SessionCopy {
    fn from(s: &SessionRecord) -> Self {
        Self {
            source: s.source,
            line: s.import_line,
            tag: s.tag.clone(),
            start: s.start,
            stop: s.stop,
            energy_kwh: Decimal::new(s.energy_wh, 3),
            idle_seconds: s.idle_seconds,
        }
    }
}

/// Two copies of one vendor id that do not agree; `kept` is the one the statement used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disagreement {
    pub vendor_id: i64,
    pub kept: SessionCopy,
    pub dropped: SessionCopy,
    pub fields: Vec<DisagreementField>,
    pub message_pt_br: String,
}

/// A site's statement for one month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    pub site_name: String,
    /// The IANA zone the month and the windows were judged in.
    pub tz: String,
    pub month: LocalMonth,
    /// One line per apartment with an accepted session, then the "sem morador" line if any.
    pub lines: Vec<ApartmentLine>,
    pub totals: Totals,
    pub rejected: Vec<Rejected>,
    pub disagreements: Vec<Disagreement>,
}

impl Statement {
    /// The apartments' lines, without "sem morador".
    pub fn per_apartment(&self) -> impl Iterator<Item = &ApartmentLine> {
        self.lines.iter().filter(|l| !l.is_unassigned())
    }

    /// The "sem morador" line, for the manager to resolve.
    pub fn unassigned(&self) -> Option<&ApartmentLine> {
        self.lines.iter().find(|l| l.is_unassigned())
    }

    /// The line of `apartment` (`None`: "sem morador").
    pub fn line(&self, apartment: Option<&str>) -> Option<&ApartmentLine> {
        self.lines
            .iter()
            .find(|l| l.apartment.as_deref() == apartment)
    }
}

/// A tag's owner over local dates, as BILLING.md states ownership: from local midnight of
/// `valid_from` to local midnight of `valid_to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatedOwnership {
    pub tag: Tag,
    pub resident: ResidentRef,
    pub valid_from: NaiveDate,
    pub valid_to: Option<NaiveDate>,
}

/// The first instant of the local `date` in `tz`: its midnight, or, where the clock skipped
/// midnight (Brazil's old DST), the instant the skipped time ends; the earlier instant if
/// midnight happened twice. `None` only outside chrono's range.
pub fn local_midnight(tz: Tz, date: NaiveDate) -> Option<DateTime<Utc>> {
    let midnight = date.and_hms_opt(0, 0, 0)?;
    // Gaps in tzdb are whole minutes and far shorter than a day: the first minute that exists
    // after a skipped midnight is where the gap ends.
    for minute in 0..24 * 60 {
        let local = midnight.checked_add_signed(TimeDelta::minutes(minute))?;
        match tz.from_local_datetime(&local) {
            LocalResult::Single(t) => return Some(t.with_timezone(&Utc)),
            LocalResult::Ambiguous(a, b) => return Some(a.min(b).with_timezone(&Utc)),
            LocalResult::None => {}
        }
    }
    None
}

/// A [`TagDirectory`] from dated ownership (rule 2's local midnights in `tz`).
pub fn directory_from_dates(tz: Tz, entries: &[DatedOwnership]) -> TagDirectory {
    let mut dir = TagDirectory::new();
    for e in entries {
        let Some(from) = local_midnight(tz, e.valid_from) else {
            continue; // outside chrono's range: no session can fall in it either
        };
        let to = e.valid_to.and_then(|d| local_midnight(tz, d));
        dir.insert(e.tag.clone(), e.resident.clone(), from, to);
    }
    dir
}

/// Natural order of apartment labels: runs of digits compare as numbers ("Bloco A 2" before
/// "Bloco A 10"), the rest as text; ties fall back to plain text order so the order is total.
fn natural_cmp(a: &str, b: &str) -> Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for ((da, pa), (db, pb)) in ca.iter().zip(cb.iter()) {
        let ord = if *da && *db {
            let (ta, tb) = (pa.trim_start_matches('0'), pb.trim_start_matches('0'));
            ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb))
        } else {
            pa.to_lowercase().cmp(&pb.to_lowercase())
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    ca.len().cmp(&cb.len()).then_with(|| a.cmp(b))
}

/// Lines' order: apartments naturally, "sem morador" last.
fn apartment_cmp(a: &Option<String>, b: &Option<String>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => natural_cmp(a, b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// A fixed order of all copies of a vendor id: own first, then the rest of the record, so that
/// the kept copy does not depend on the input order.
fn copy_order(a: &SessionRecord, b: &SessionRecord) -> Ordering {
    a.vendor_id
        .cmp(&b.vendor_id)
        .then(a.source.cmp(&b.source))
        .then(a.import_line.cmp(&b.import_line))
        .then(a.start.cmp(&b.start))
        .then(a.stop.cmp(&b.stop))
        .then(a.energy_wh.cmp(&b.energy_wh))
        .then(a.idle_seconds.cmp(&b.idle_seconds))
        .then(a.tag.cmp(&b.tag))
        .then(a.precision.cmp(&b.precision))
        .then(a.charger.cmp(&b.charger))
        .then(a.user_name.cmp(&b.user_name))
}

fn to_second(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_nanosecond(0).unwrap_or(t)
}

/// The fields in which two copies of a session differ.
fn differences(kept: &SessionRecord, other: &SessionRecord) -> Vec<DisagreementField> {
    let coarse =
        kept.precision == TimePrecision::Minute || other.precision == TimePrecision::Minute;
    // A time written without seconds may have been truncated or rounded by the vendor: within
    // a minute of the precise one, it is the same time.
    let same_time = |a: DateTime<Utc>, b: DateTime<Utc>| {
        let gap = (to_second(a) - to_second(b)).num_seconds().abs();
        if coarse { gap < 60 } else { gap == 0 }
    };
    let mut fields = Vec::new();
    if kept.energy_wh != other.energy_wh {
        fields.push(DisagreementField::Energy);
    }
    if !same_time(kept.start, other.start) {
        fields.push(DisagreementField::Start);
    }
    if !same_time(kept.stop, other.stop) {
        fields.push(DisagreementField::Stop);
    }
    // The export writes idle time with seconds, and both sources take it from the vendor.
    if kept.idle_seconds != other.idle_seconds {
        fields.push(DisagreementField::Idle);
    }
    if kept.tag != other.tag {
        fields.push(DisagreementField::Tag);
    }
    fields
}

fn source_pt_br(source: SessionSource) -> &'static str {
    match source {
        SessionSource::Own => "registro do vetric",
        SessionSource::Imported => "planilha importada",
    }
}

/// Compares two copies of one vendor id the way a statement does (step 1): `None` when they
/// agree (times of a copy without seconds within the minute), else what differs with both
/// values. `kept` is the copy that counts (vetric's own record over an imported row). The
/// import preview uses it to show, before anything is stored, how a row matches a session
/// vetric already has.
pub fn compare_copies(kept: &SessionRecord, other: &SessionRecord) -> Option<Disagreement> {
    disagreement(kept, other)
}

fn disagreement(kept: &SessionRecord, other: &SessionRecord) -> Option<Disagreement> {
    let fields = differences(kept, other);
    if fields.is_empty() {
        return None;
    }
    let what: Vec<&str> = fields.iter().map(|f| f.label_pt_br()).collect();
    let mut message_pt_br = format!(
        "a recarga {} aparece no {} e na {} com {} diferente(s); vale o {}",
        kept.vendor_id,
        source_pt_br(kept.source),
        source_pt_br(other.source),
        what.join(", "),
        source_pt_br(kept.source),
    );
    if kept.source == other.source {
        message_pt_br = format!(
            "a recarga {} aparece duas vezes ({}) com {} diferente(s); vale a primeira",
            kept.vendor_id,
            source_pt_br(kept.source),
            what.join(", "),
        );
    }
    if fields.contains(&DisagreementField::Energy) {
        message_pt_br.push_str(&format!(
            " (energia: {} contra {})",
            format_kwh_pt_br(Decimal::new(kept.energy_wh, 3)),
            format_kwh_pt_br(Decimal::new(other.energy_wh, 3))
        ));
    }
    Some(Disagreement {
        vendor_id: kept.vendor_id,
        kept: kept.into(),
        dropped: other.into(),
        fields,
        message_pt_br,
    })
}

fn reject(s: &SessionRecord, reason: RejectReason, reason_pt_br: String) -> Rejected {
    Rejected {
        vendor_id: s.vendor_id,
        source: s.source,
        line: s.import_line,
        charger: s.charger.clone(),
        tag: s.tag.clone(),
        start: s.start,
        stop: s.stop,
        energy_kwh: Decimal::new(s.energy_wh, 3),
        reason,
        reason_pt_br,
    }
}

fn reject_cost(s: &SessionRecord, err: &CostError) -> Rejected {
    let reason = match err {
        CostError::EnergyNotPositive { .. } => RejectReason::EnergyNotPositive,
        CostError::EnergyAboveMaximum { .. } => RejectReason::EnergyAboveMaximum,
        CostError::EndNotAfterStart { .. } => RejectReason::EndNotAfterStart,
        CostError::NegativeIdle { .. } => RejectReason::NegativeIdle,
        CostError::OutOfRange => RejectReason::OutOfRange,
    };
    reject(s, reason, err.reason_pt_br())
}

/// Price one session of the month, or say why it is rejected.
fn price(
    input: &StatementInput,
    s: &SessionRecord,
) -> Result<(SessionLine, Option<String>), Box<Rejected>> {
    let Some(tariff) = input.tariffs.in_force_for_session(s.start, input.tz) else {
        let date = s.start.with_timezone(&input.tz).date_naive();
        return Err(Box::new(reject(
            s,
            RejectReason::NoTariff,
            format!(
                "nenhuma tarifa em vigor em {} (data de início da recarga)",
                date.format("%d/%m/%Y")
            ),
        )));
    };
    let cost: SessionCost = session_cost(
        tariff,
        input.tz,
        s.start,
        s.stop,
        s.energy_wh,
        s.idle_seconds,
    )
    .map_err(|e| Box::new(reject_cost(s, &e)))?;
    let pieces =
        peak_pieces(tariff, input.tz, s.start, s.stop).map_err(|e| Box::new(reject_cost(s, &e)))?;
    let owner = s
        .tag
        .as_ref()
        .and_then(|t| input.ownership.owner_at(t, s.start));
    let peak_kwh = round_kwh(cost.peak_kwh);
    let energy_kwh = round_kwh(cost.energy_kwh);
    let line = SessionLine {
        vendor_id: s.vendor_id,
        source: s.source,
        import_line: s.import_line,
        charger: s.charger.clone(),
        tag: s.tag.clone(),
        resident: owner.map(LineResident::from),
        user_name: s.user_name.clone(),
        start: s.start,
        stop: s.stop,
        seconds: cost.session_seconds(),
        peak_seconds: cost.peak_seconds,
        offpeak_seconds: cost.offpeak_seconds,
        peak_pieces: pieces,
        energy_kwh,
        peak_kwh,
        offpeak_kwh: energy_kwh - peak_kwh,
        peak_kwh_exact: cost.peak_kwh,
        tariff_effective_from: tariff.effective_from(),
        peak_price: tariff.peak_price(),
        offpeak_price: tariff.offpeak_price(),
        energy_cost: cost.energy_cost,
        idle_seconds: cost.idle_seconds,
        idle_fee: cost.idle_fee,
        idle_fee_capped: cost.idle_fee_capped,
        total: round_money(cost.total()),
    };
    Ok((line, owner.map(|o| o.apartment.clone())))
}

/// Idle seconds as minutes with 2 decimals, half-up (for display).
fn idle_minutes(idle_seconds: i64) -> Decimal {
    round_money(Decimal::from(idle_seconds) / Decimal::from(60))
}

fn build_line(apartment: Option<String>, mut sessions: Vec<SessionLine>) -> ApartmentLine {
    sessions.sort_by(|a, b| a.start.cmp(&b.start).then(a.vendor_id.cmp(&b.vendor_id)));
    let mut residents: Vec<LineResident> =
        sessions.iter().filter_map(|s| s.resident.clone()).collect();
    residents.sort_by(|a, b| {
        a.name
            .to_lowercase()
            .cmp(&b.name.to_lowercase())
            .then_with(|| a.cmp(b))
    });
    residents.dedup();
    // Exact sums. Bounds: a session has at most 10⁴ kWh (the tariff's max_kwh bound) at 18
    // decimals, 10²² units; a Decimal holds 7.9 × 10²⁸, i.e. millions of sessions per line.
    let kwh: Decimal = sessions.iter().map(|s| s.energy_kwh).sum();
    let peak_exact: Decimal = sessions.iter().map(|s| s.peak_kwh_exact).sum();
    let energy_cost: Decimal = sessions.iter().map(|s| s.energy_cost).sum();
    let idle_fee: Decimal = sessions.iter().map(|s| s.idle_fee).sum();
    let idle_seconds: i64 = sessions.iter().map(|s| s.idle_seconds).sum();
    let kwh = round_kwh(kwh);
    let peak_kwh = round_kwh(peak_exact);
    let energy_cost = round_money(energy_cost);
    let idle_fee = round_money(idle_fee);
    ApartmentLine {
        apartment,
        residents,
        sessions: sessions.len() as u64,
        kwh,
        peak_kwh,
        offpeak_kwh: kwh - peak_kwh,
        energy_cost,
        idle_seconds,
        idle_minutes: idle_minutes(idle_seconds),
        idle_fee,
        total: energy_cost + idle_fee,
        session_details: sessions,
    }
}

fn totals(lines: &[ApartmentLine]) -> Totals {
    let idle_seconds = lines.iter().map(|l| l.idle_seconds).sum();
    let energy_cost = round_money(lines.iter().map(|l| l.energy_cost).sum());
    let idle_fee = round_money(lines.iter().map(|l| l.idle_fee).sum());
    Totals {
        sessions: lines.iter().map(|l| l.sessions).sum(),
        kwh: round_kwh(lines.iter().map(|l| l.kwh).sum()),
        peak_kwh: round_kwh(lines.iter().map(|l| l.peak_kwh).sum()),
        offpeak_kwh: round_kwh(lines.iter().map(|l| l.offpeak_kwh).sum()),
        energy_cost,
        idle_seconds,
        idle_minutes: idle_minutes(idle_seconds),
        idle_fee,
        total: energy_cost + idle_fee,
    }
}

/// The month's statement (module docs for the steps). Pure and total.
pub fn compute(input: &StatementInput) -> Statement {
    let tz = input.tz;
    let in_month = |s: &SessionRecord| local_month(s.start, tz) == input.month;

    // Step 1: one copy per vendor id.
    let mut sorted: Vec<&SessionRecord> = input.sessions.iter().collect();
    sorted.sort_by(|a, b| copy_order(a, b));
    let mut kept: Vec<&SessionRecord> = Vec::new();
    let mut disagreements = Vec::new();
    for s in sorted {
        match kept.last() {
            Some(k) if k.vendor_id == s.vendor_id => {
                if in_month(k) || in_month(s) {
                    disagreements.extend(disagreement(k, s));
                }
            }
            _ => kept.push(s),
        }
    }

    // Steps 2–5.
    let mut by_apartment: BTreeMap<Option<String>, Vec<SessionLine>> = BTreeMap::new();
    let mut rejected = Vec::new();
    for s in kept.into_iter().filter(|s| in_month(s)) {
        match price(input, s) {
            Ok((line, apartment)) => by_apartment.entry(apartment).or_default().push(line),
            Err(r) => rejected.push(*r),
        }
    }

    // Step 6.
    let mut lines: Vec<ApartmentLine> = by_apartment
        .into_iter()
        .map(|(apartment, sessions)| build_line(apartment, sessions))
        .collect();
    lines.sort_by(|a, b| apartment_cmp(&a.apartment, &b.apartment));
    rejected.sort_by(|a, b| a.start.cmp(&b.start).then(a.vendor_id.cmp(&b.vendor_id)));
    let totals = totals(&lines);

    Statement {
        site_name: input.site_name.clone(),
        tz: tz.name().to_owned(),
        month: input.month,
        lines,
        totals,
        rejected,
        disagreements,
    }
}

/// A line's figures, for comparing two versions of a statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineSummary {
    pub sessions: u64,
    pub kwh: Decimal,
    pub peak_kwh: Decimal,
    pub offpeak_kwh: Decimal,
    pub energy_cost: Decimal,
    pub idle_fee: Decimal,
    pub total: Decimal,
}

impl From<&ApartmentLine> for LineSummary {
    fn from(l: &ApartmentLine) -> Self {
        Self {
            sessions: l.sessions,
            kwh: l.kwh,
            peak_kwh: l.peak_kwh,
            offpeak_kwh: l.offpeak_kwh,
            energy_cost: l.energy_cost,
            idle_fee: l.idle_fee,
            total: l.total,
        }
    }
}

/// How one apartment's line changed between two versions of a statement (for re-issuing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApartmentDiff {
    /// `None`: the "sem morador" line.
    pub apartment: Option<String>,
    /// `None`: the apartment had no line in that version.
    pub old: Option<LineSummary>,
    pub new: Option<LineSummary>,
    /// New total − old total (a missing line counts as 0.00).
    pub total_change: Decimal,
    /// Vendor ids of sessions only in the new line, only in the old one, and in both but
    /// priced or described differently.
    pub added_sessions: Vec<i64>,
    pub removed_sessions: Vec<i64>,
    pub changed_sessions: Vec<i64>,
}

impl ApartmentDiff {
    pub fn label(&self) -> &str {
        self.apartment.as_deref().unwrap_or(UNASSIGNED_LABEL)
    }
}

/// The apartments whose line differs between `old` and `new`, in line order (apartments
/// naturally, "sem morador" last). A session that moved to another apartment (a corrected tag
/// owner) shows as removed from one and added to the other.
pub fn diff(old: &Statement, new: &Statement) -> Vec<ApartmentDiff> {
    let mut keys: Vec<Option<String>> = old
        .lines
        .iter()
        .chain(new.lines.iter())
        .map(|l| l.apartment.clone())
        .collect();
    keys.sort_by(apartment_cmp);
    keys.dedup();
    fn index(st: &Statement) -> HashMap<Option<String>, &ApartmentLine> {
        st.lines.iter().map(|l| (l.apartment.clone(), l)).collect()
    }
    let (old_lines, new_lines) = (index(old), index(new));
    let mut out = Vec::new();
    for key in keys {
        let o = old_lines.get(&key).copied();
        let n = new_lines.get(&key).copied();
        let sessions = |l: Option<&ApartmentLine>| -> BTreeMap<i64, SessionLine> {
            l.map(|l| {
                l.session_details
                    .iter()
                    .map(|s| (s.vendor_id, s.clone()))
                    .collect()
            })
            .unwrap_or_default()
        };
        let (os, ns) = (sessions(o), sessions(n));
        let added: Vec<i64> = ns.keys().filter(|k| !os.contains_key(k)).copied().collect();
        let removed: Vec<i64> = os.keys().filter(|k| !ns.contains_key(k)).copied().collect();
        let changed: Vec<i64> = ns
            .iter()
            .filter(|(k, s)| os.get(k).is_some_and(|old_s| old_s != *s))
            .map(|(k, _)| *k)
            .collect();
        let old_summary = o.map(LineSummary::from);
        let new_summary = n.map(LineSummary::from);
        if old_summary == new_summary
            && added.is_empty()
            && removed.is_empty()
            && changed.is_empty()
        {
            continue;
        }
        let total = |s: &Option<LineSummary>| s.as_ref().map_or(Decimal::ZERO, |s| s.total);
        out.push(ApartmentDiff {
            apartment: key,
            total_change: round_money(total(&new_summary) - total(&old_summary)),
            old: old_summary,
            new: new_summary,
            added_sessions: added,
            removed_sessions: removed,
            changed_sessions: changed,
        });
    }
    out
}

/// A [`Tz`] as its IANA name (chrono-tz's own serde support is a feature the workspace does not
/// enable; a name is also what a frozen snapshot should hold).
mod tz_name {
    use chrono_tz::Tz;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(tz: &Tz, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(tz.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Tz, D::Error> {
        let name = String::deserialize(d)?;
        name.parse::<Tz>()
            .map_err(|_| D::Error::custom(format!("{name:?} is not an IANA time zone")))
    }
}

#[cfg(test)]
mod tests;
