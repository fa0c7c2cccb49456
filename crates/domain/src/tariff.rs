//! A site's tariff: what a kWh costs at peak and off-peak, when the peak is, and what idling
//! costs (BILLING.md "Inputs" and rules 4–6; the maths is in [`crate::cost`]).
//!
//! Parse, don't validate: a [`Tariff`] exists only through [`TariffSpec::validate`], which reads
//! the config-file string forms of BILLING.md and lists *every* problem with its field name, so
//! the config loader (DESIGN.md rule 7) and the site's tariff page can show them all at once.
//! Everything downstream can then rely on a tariff's invariants: prices ≥ 0 with at most 4
//! decimals, a peak window with start < end inside one local day, an idle fee cap in whole
//! centavos, a positive maximum energy with at most 3 decimals.
//!
//! [`TariffHistory`] holds a site's tariffs with the dates they take effect; a session uses the
//! tariff in force on the local date of its start (BILLING.md "Inputs").
//!
//! Decisions where BILLING.md is silent:
//! - Required (no default, because a money value silently defaulting is the kind of bug this
//!   project exists to stop): `peak_price`, `offpeak_price`, `idle_fee_per_min`, `max_kwh`.
//!   Defaults: `peak_start` "17:30", `peak_end` "20:30", `peak_weekdays` Mon–Fri (BILLING.md),
//!   `idle_grace_min` 15 (the worked examples), no site holidays, no cap, no effective date.
//! - `peak_end` may be "24:00" (the peak runs to the end of the day); the window never crosses
//!   midnight, so `peak_end` must be after `peak_start`.
//! - An empty `peak_weekdays` list is accepted: every hour is off-peak (a flat tariff).
//! - `idle_fee_per_min` is a unit price (up to 4 decimals, like the energy prices);
//!   `idle_fee_cap` is an amount (up to 2 decimals).
//! - Plausibility bounds (they also keep every computation far from overflow): prices and the
//!   idle fee per minute at most R$ 1000, the cap at most R$ 1 000 000, `max_kwh` above 0 and at
//!   most 10 000 kWh, `idle_grace_min` at most 1440 (a day).
//! - Numbers may be given as TOML integers (`max_kwh = 150`) or strings; TOML floats are refused
//!   (`3.08` as a float is not exactly 3.08), with a hint to quote them.
//! - Values are trimmed; weekday names are case-insensitive; duplicates in lists are harmless.

use crate::holidays;
use chrono::{DateTime, NaiveDate, Utc, Weekday};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// Default start of the peak window (local time, inclusive).
pub const DEFAULT_PEAK_START: &str = "17:30";
/// Default end of the peak window (local time, exclusive).
pub const DEFAULT_PEAK_END: &str = "20:30";
/// Default idle grace in minutes (BILLING.md worked examples).
pub const DEFAULT_IDLE_GRACE_MIN: u32 = 15;
/// Upper bound of a price per kWh and of the idle fee per minute, in R$.
pub const MAX_UNIT_PRICE: Decimal = Decimal::from_parts(1000, 0, 0, false, 0);
/// Upper bound of the idle fee cap, in R$.
pub const MAX_IDLE_FEE_CAP: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);
/// Upper bound of `max_kwh`.
pub const MAX_MAX_KWH: Decimal = Decimal::from_parts(10_000, 0, 0, false, 0);
/// Upper bound of `idle_grace_min`.
pub const MAX_IDLE_GRACE_MIN: u32 = 1440;

const WEEKDAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const WEEKDAYS: [Weekday; 7] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
    Weekday::Sat,
    Weekday::Sun,
];

/// A number as it comes from a TOML file, an environment variable or a form: a string
/// (`"3.08"`, the documented form), an integer (`150`), or a float (always refused).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RawNumber {
    Text(String),
    Integer(i64),
    Float(f64),
}

impl From<&str> for RawNumber {
    fn from(s: &str) -> Self {
        Self::Text(s.to_owned())
    }
}

impl From<String> for RawNumber {
    fn from(s: String) -> Self {
        Self::Text(s)
    }
}

impl From<i64> for RawNumber {
    fn from(i: i64) -> Self {
        Self::Integer(i)
    }
}

impl fmt::Display for RawNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(s) => write!(f, "{s:?}"),
            Self::Integer(i) => write!(f, "{i}"),
            Self::Float(x) => write!(f, "{x}"),
        }
    }
}

/// The tariff as written in `[sites.tariff]` or posted by the tariff page: raw strings, checked
/// by [`TariffSpec::validate`]. Every field is optional here so that a missing one is reported
/// with the others instead of stopping deserialisation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TariffSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_price: Option<RawNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offpeak_price: Option<RawNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_end: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_weekdays: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holidays: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_grace_min: Option<RawNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_fee_per_min: Option<RawNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_fee_cap: Option<RawNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_kwh: Option<RawNumber>,
}

/// One problem of a [`TariffSpec`]: the field at fault and what is wrong, in English (logs,
/// config check) and pt-BR (the tariff page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TariffProblem {
    pub field: String,
    pub message: String,
    pub message_pt_br: String,
}

impl fmt::Display for TariffProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// All the problems of a [`TariffSpec`], as one error (e.g. for `serde`'s `try_from`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TariffProblems(pub Vec<TariffProblem>);

impl fmt::Display for TariffProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid tariff: ")?;
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// A checked tariff. Built only by [`TariffSpec::validate`]; see the module docs for what it
/// guarantees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "TariffSpec", into = "TariffSpec")]
pub struct Tariff {
    effective_from: Option<NaiveDate>,
    peak_price: Decimal,
    offpeak_price: Decimal,
    /// Minutes after local midnight, 0..=1439.
    peak_start_min: u32,
    /// Minutes after local midnight, peak_start_min < peak_end_min <= 1440.
    peak_end_min: u32,
    /// Indexed by `Weekday::num_days_from_monday`.
    peak_weekdays: [bool; 7],
    holidays: BTreeSet<NaiveDate>,
    idle_grace_min: u32,
    idle_fee_per_min: Decimal,
    idle_fee_cap: Option<Decimal>,
    max_kwh: Decimal,
}

impl Tariff {
    /// The local date from which this tariff applies; `None`: it applies to every session.
    pub fn effective_from(&self) -> Option<NaiveDate> {
        self.effective_from
    }
    /// R$/kWh at peak (≥ 0, at most 4 decimals).
    pub fn peak_price(&self) -> Decimal {
        self.peak_price
    }
    /// R$/kWh off-peak (≥ 0, at most 4 decimals).
    pub fn offpeak_price(&self) -> Decimal {
        self.offpeak_price
    }
    /// Start of the peak window, minutes after local midnight (inclusive).
    pub fn peak_start_minute(&self) -> u32 {
        self.peak_start_min
    }
    /// End of the peak window, minutes after local midnight (exclusive; 1440 = midnight).
    pub fn peak_end_minute(&self) -> u32 {
        self.peak_end_min
    }
    /// `"17:30"`.
    pub fn peak_start(&self) -> String {
        hhmm(self.peak_start_min)
    }
    /// `"20:30"` (or `"24:00"`).
    pub fn peak_end(&self) -> String {
        hhmm(self.peak_end_min)
    }
    /// The weekdays with a peak window, Monday first.
    pub fn peak_weekdays(&self) -> Vec<Weekday> {
        WEEKDAYS
            .iter()
            .copied()
            .filter(|w| self.is_peak_weekday(*w))
            .collect()
    }
    pub fn is_peak_weekday(&self, weekday: Weekday) -> bool {
        self.peak_weekdays[weekday.num_days_from_monday() as usize]
    }
    /// The site's own holidays (added to the national ones).
    pub fn site_holidays(&self) -> &BTreeSet<NaiveDate> {
        &self.holidays
    }
    /// A national holiday or one of the site's own.
    pub fn is_holiday(&self, date: NaiveDate) -> bool {
        self.holidays.contains(&date) || holidays::is_national_holiday(date)
    }
    /// Whether the local `date` has a peak window (rule 4: a peak weekday, not a holiday).
    pub fn has_peak_on(&self, date: NaiveDate) -> bool {
        use chrono::Datelike;
        self.is_peak_weekday(date.weekday()) && !self.is_holiday(date)
    }
    pub fn idle_grace_min(&self) -> u32 {
        self.idle_grace_min
    }
    /// R$ per idle minute beyond the grace (≥ 0, at most 4 decimals).
    pub fn idle_fee_per_min(&self) -> Decimal {
        self.idle_fee_per_min
    }
    /// Cap of the idle fee of one session, R$ with at most 2 decimals.
    pub fn idle_fee_cap(&self) -> Option<Decimal> {
        self.idle_fee_cap
    }
    /// The maximum plausible energy of one session (kWh, > 0, at most 3 decimals); exactly
    /// this much is accepted.
    pub fn max_kwh(&self) -> Decimal {
        self.max_kwh
    }

    /// The spec that validates back to this tariff (for the tariff page and storage).
    pub fn to_spec(&self) -> TariffSpec {
        TariffSpec {
            effective_from: self
                .effective_from
                .map(|d| d.format("%Y-%m-%d").to_string()),
            peak_price: Some(RawNumber::Text(self.peak_price.to_string())),
            offpeak_price: Some(RawNumber::Text(self.offpeak_price.to_string())),
            peak_start: Some(self.peak_start()),
            peak_end: Some(self.peak_end()),
            peak_weekdays: Some(
                self.peak_weekdays()
                    .iter()
                    .map(|w| WEEKDAY_NAMES[w.num_days_from_monday() as usize].to_owned())
                    .collect(),
            ),
            holidays: Some(
                self.holidays
                    .iter()
                    .map(|d| d.format("%Y-%m-%d").to_string())
                    .collect(),
            ),
            idle_grace_min: Some(RawNumber::Integer(i64::from(self.idle_grace_min))),
            idle_fee_per_min: Some(RawNumber::Text(self.idle_fee_per_min.to_string())),
            idle_fee_cap: self.idle_fee_cap.map(|c| RawNumber::Text(c.to_string())),
            max_kwh: Some(RawNumber::Text(self.max_kwh.to_string())),
        }
    }
}

impl From<Tariff> for TariffSpec {
    fn from(t: Tariff) -> Self {
        t.to_spec()
    }
}

impl TryFrom<TariffSpec> for Tariff {
    type Error = TariffProblems;
    fn try_from(spec: TariffSpec) -> Result<Self, Self::Error> {
        spec.validate().map_err(TariffProblems)
    }
}

fn hhmm(minutes: u32) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// Collects problems while reading a spec.
#[derive(Default)]
struct Problems(Vec<TariffProblem>);

impl Problems {
    fn push(&mut self, field: &str, message: impl Into<String>, message_pt_br: impl Into<String>) {
        self.0.push(TariffProblem {
            field: field.to_owned(),
            message: message.into(),
            message_pt_br: message_pt_br.into(),
        });
    }
}

/// What kind of decimal a field holds.
struct DecimalRule {
    max_dp: u32,
    /// `true`: must be > 0; `false`: must be ≥ 0.
    positive: bool,
    max: Decimal,
    example: &'static str,
}

const UNIT_PRICE: DecimalRule = DecimalRule {
    max_dp: 4,
    positive: false,
    max: MAX_UNIT_PRICE,
    example: "3.08",
};
const AMOUNT: DecimalRule = DecimalRule {
    max_dp: 2,
    positive: false,
    max: MAX_IDLE_FEE_CAP,
    example: "30.00",
};
const ENERGY: DecimalRule = DecimalRule {
    max_dp: 3,
    positive: true,
    max: MAX_MAX_KWH,
    example: "150",
};

fn is_plain_decimal(s: &str) -> bool {
    let body = s.strip_prefix('-').unwrap_or(s);
    let (int_part, frac_part) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    !int_part.is_empty()
        && int_part.bytes().all(|b| b.is_ascii_digit())
        && frac_part.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

fn read_decimal(
    field: &str,
    raw: &RawNumber,
    rule: &DecimalRule,
    problems: &mut Problems,
) -> Option<Decimal> {
    let ex = rule.example;
    let value = match raw {
        RawNumber::Float(x) => {
            problems.push(
                field,
                format!("write it as a string, e.g. \"{ex}\" (the number {x} is a float and may not be exact)"),
                format!("escreva entre aspas, por exemplo \"{ex}\" (o número {x} pode não ser exato)"),
            );
            return None;
        }
        RawNumber::Integer(i) => Decimal::from(*i),
        RawNumber::Text(text) => {
            let s = text.trim();
            if s.is_empty() {
                problems.push(
                    field,
                    format!("is empty (e.g. \"{ex}\")"),
                    format!("está vazio (por exemplo \"{ex}\")"),
                );
                return None;
            }
            if !is_plain_decimal(s) {
                let dotted = s.replace('.', "").replace(',', ".");
                if s.contains(',') && is_plain_decimal(&dotted) {
                    problems.push(
                        field,
                        format!("use a dot for decimals and no thousands separator: \"{dotted}\""),
                        format!(
                            "use ponto para os decimais e nenhum separador de milhar: \"{dotted}\""
                        ),
                    );
                } else {
                    problems.push(
                        field,
                        format!("{s:?} is not a number (e.g. \"{ex}\")"),
                        format!("{s:?} não é um número (por exemplo \"{ex}\")"),
                    );
                }
                return None;
            }
            match Decimal::from_str(s) {
                Ok(d) => d,
                Err(_) => {
                    problems.push(
                        field,
                        format!("must be at most {}", rule.max),
                        format!("deve ser no máximo {}", rule.max),
                    );
                    return None;
                }
            }
        }
    };
    if rule.positive && value <= Decimal::ZERO {
        problems.push(field, "must be > 0", "deve ser maior que zero");
        return None;
    }
    if value < Decimal::ZERO {
        problems.push(field, "must be ≥ 0", "não pode ser negativo");
        return None;
    }
    let value = value.normalize();
    if value.scale() > rule.max_dp {
        problems.push(
            field,
            format!("must have at most {} decimals", rule.max_dp),
            format!("deve ter no máximo {} casas decimais", rule.max_dp),
        );
        return None;
    }
    if value > rule.max {
        problems.push(
            field,
            format!("must be at most {}", rule.max),
            format!("deve ser no máximo {}", rule.max),
        );
        return None;
    }
    Some(value)
}

fn required<'a, T>(
    field: &str,
    value: &'a Option<T>,
    hint: &str,
    problems: &mut Problems,
) -> Option<&'a T> {
    if value.is_none() {
        problems.push(
            field,
            format!("missing ({hint})"),
            format!("obrigatório ({hint})"),
        );
    }
    value.as_ref()
}

/// `"YYYY-MM-DD"`, strictly.
fn parse_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape {
        return None;
    }
    let year = s[0..4].parse().ok()?;
    let month = s[5..7].parse().ok()?;
    let day = s[8..10].parse().ok()?;
    NaiveDate::from_ymd_opt(year, month, day)
}

fn read_date(field: &str, raw: &str, problems: &mut Problems) -> Option<NaiveDate> {
    let s = raw.trim();
    let parsed = parse_date(s);
    if parsed.is_none() {
        problems.push(
            field,
            format!("{s:?} is not a date; write YYYY-MM-DD, e.g. \"2026-04-21\""),
            format!("{s:?} não é uma data; escreva AAAA-MM-DD, por exemplo \"2026-04-21\""),
        );
    }
    parsed
}

/// `"HH:MM"` → minutes after midnight; `"24:00"` only when `allow_24`.
fn parse_hhmm(s: &str, allow_24: bool) -> Option<u32> {
    let b = s.as_bytes();
    if b.len() != 5
        || b[2] != b':'
        || !b
            .iter()
            .enumerate()
            .all(|(i, c)| i == 2 || c.is_ascii_digit())
    {
        return None;
    }
    let h: u32 = s[0..2].parse().ok()?;
    let m: u32 = s[3..5].parse().ok()?;
    match (h, m) {
        (24, 0) if allow_24 => Some(1440),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

fn read_time(
    field: &str,
    raw: &Option<String>,
    default: &str,
    allow_24: bool,
    problems: &mut Problems,
) -> Option<u32> {
    let s = raw.as_deref().unwrap_or(default).trim();
    let parsed = parse_hhmm(s, allow_24);
    if parsed.is_none() {
        let range = if allow_24 {
            "00:00 to 24:00"
        } else {
            "00:00 to 23:59"
        };
        let range_pt = if allow_24 {
            "00:00 a 24:00"
        } else {
            "00:00 a 23:59"
        };
        problems.push(
            field,
            format!("{s:?} is not a time; write HH:MM ({range}), e.g. \"{default}\""),
            format!(
                "{s:?} não é um horário; escreva HH:MM ({range_pt}), por exemplo \"{default}\""
            ),
        );
    }
    parsed
}

/// A likely meant weekday for a name that is not one of `mon`…`sun`.
fn suggest_weekday(name: &str) -> Option<&'static str> {
    let n = name.trim_end_matches('.');
    let idx = match n {
        "seg" | "segunda" | "segunda-feira" | "monday" | "mo" | "mon." => 0,
        "ter" | "terça" | "terca" | "terça-feira" | "terca-feira" | "tuesday" | "tu" | "tues" => {
            1
        }
        "qua" | "quarta" | "quarta-feira" | "wednesday" | "we" | "weds" => 2,
        "qui" | "quinta" | "quinta-feira" | "thursday" | "th" | "thur" | "thurs" => 3,
        "sex" | "sexta" | "sexta-feira" | "friday" | "fr" => 4,
        "sab" | "sáb" | "sábado" | "sabado" | "saturday" | "sa" => 5,
        "dom" | "domingo" | "sunday" | "su" => 6,
        _ => return None,
    };
    Some(WEEKDAY_NAMES[idx])
}

fn read_weekdays(raw: &Option<Vec<String>>, problems: &mut Problems) -> Option<[bool; 7]> {
    let Some(names) = raw else {
        return Some([true, true, true, true, true, false, false]);
    };
    let mut set = [false; 7];
    let mut ok = true;
    for name in names {
        let n = name.trim().to_lowercase();
        match WEEKDAY_NAMES.iter().position(|w| *w == n) {
            Some(i) => set[i] = true,
            None => {
                ok = false;
                let list = WEEKDAY_NAMES.join(", ");
                match suggest_weekday(&n) {
                    Some(s) => problems.push(
                        "peak_weekdays",
                        format!("{name:?} is not a weekday; did you mean \"{s}\"? (use {list})"),
                        format!(
                            "{name:?} não é um dia da semana; quis dizer \"{s}\"? (use {list})"
                        ),
                    ),
                    None => problems.push(
                        "peak_weekdays",
                        format!("{name:?} is not a weekday (use {list})"),
                        format!("{name:?} não é um dia da semana (use {list})"),
                    ),
                }
            }
        }
    }
    ok.then_some(set)
}

fn read_grace(raw: &Option<RawNumber>, problems: &mut Problems) -> Option<u32> {
    const FIELD: &str = "idle_grace_min";
    let value: Option<i64> = match raw {
        None => return Some(DEFAULT_IDLE_GRACE_MIN),
        Some(RawNumber::Integer(i)) => Some(*i),
        Some(RawNumber::Text(s)) => {
            let t = s.trim();
            let body = t.strip_prefix('-').unwrap_or(t);
            if !body.is_empty() && body.bytes().all(|b| b.is_ascii_digit()) {
                // Too many digits to read is "too large", reported below.
                Some(t.parse::<i64>().unwrap_or(i64::MAX))
            } else {
                None
            }
        }
        Some(RawNumber::Float(_)) => None,
    };
    let Some(value) = value else {
        problems.push(
            FIELD,
            "must be a whole number of minutes, e.g. 15",
            "deve ser um número inteiro de minutos, por exemplo 15",
        );
        return None;
    };
    if value < 0 {
        problems.push(FIELD, "must be ≥ 0", "não pode ser negativo");
        return None;
    }
    match u32::try_from(value) {
        Ok(v) if v <= MAX_IDLE_GRACE_MIN => Some(v),
        _ => {
            problems.push(
                FIELD,
                format!("must be at most {MAX_IDLE_GRACE_MIN} (one day)"),
                format!("deve ser no máximo {MAX_IDLE_GRACE_MIN} (um dia)"),
            );
            None
        }
    }
}

impl TariffSpec {
    /// The field names, in the order of BILLING.md (for a loader's unknown-key check).
    pub const FIELDS: &'static [&'static str] = &[
        "effective_from",
        "peak_price",
        "offpeak_price",
        "peak_start",
        "peak_end",
        "peak_weekdays",
        "holidays",
        "idle_grace_min",
        "idle_fee_per_min",
        "idle_fee_cap",
        "max_kwh",
    ];

    /// Check every field and build the [`Tariff`], or list every problem (each field at most
    /// once, except list fields, which get one problem per bad item). Never panics.
    pub fn validate(&self) -> Result<Tariff, Vec<TariffProblem>> {
        let mut p = Problems::default();

        let effective_from = match &self.effective_from {
            None => Some(None),
            Some(s) => read_date("effective_from", s, &mut p).map(Some),
        };
        let price_hint = "R$/kWh as a string, e.g. \"3.08\"";
        let peak_price = required("peak_price", &self.peak_price, price_hint, &mut p)
            .and_then(|r| read_decimal("peak_price", r, &UNIT_PRICE, &mut p));
        let offpeak_price = required("offpeak_price", &self.offpeak_price, price_hint, &mut p)
            .and_then(|r| read_decimal("offpeak_price", r, &UNIT_PRICE, &mut p));

        let peak_start = read_time(
            "peak_start",
            &self.peak_start,
            DEFAULT_PEAK_START,
            false,
            &mut p,
        );
        let peak_end = read_time("peak_end", &self.peak_end, DEFAULT_PEAK_END, true, &mut p);
        let window = match (peak_start, peak_end) {
            (Some(s), Some(e)) if e <= s => {
                p.push(
                    "peak_end",
                    format!("must be after peak_start ({}); the peak window cannot cross midnight", hhmm(s)),
                    format!("deve ser depois do início do horário de ponta ({}); a ponta não pode passar da meia-noite", hhmm(s)),
                );
                None
            }
            (Some(s), Some(e)) => Some((s, e)),
            _ => None,
        };

        let peak_weekdays = read_weekdays(&self.peak_weekdays, &mut p);

        let mut holidays = Some(BTreeSet::new());
        for raw in self.holidays.iter().flatten() {
            match (read_date("holidays", raw, &mut p), holidays.as_mut()) {
                (Some(d), Some(set)) => {
                    set.insert(d);
                }
                (None, _) => holidays = None,
                (Some(_), None) => {}
            }
        }

        let idle_grace_min = read_grace(&self.idle_grace_min, &mut p);
        let idle_fee_per_min = required(
            "idle_fee_per_min",
            &self.idle_fee_per_min,
            "R$ per minute as a string, e.g. \"0.10\"; \"0\" for no idle fee",
            &mut p,
        )
        .and_then(|r| read_decimal("idle_fee_per_min", r, &UNIT_PRICE, &mut p));
        let idle_fee_cap = match &self.idle_fee_cap {
            None => Some(None),
            Some(r) => read_decimal("idle_fee_cap", r, &AMOUNT, &mut p).map(Some),
        };
        let max_kwh = required(
            "max_kwh",
            &self.max_kwh,
            "the most energy one session can plausibly take, e.g. \"150\"",
            &mut p,
        )
        .and_then(|r| read_decimal("max_kwh", r, &ENERGY, &mut p));

        match (
            effective_from,
            peak_price,
            offpeak_price,
            window,
            peak_weekdays,
            holidays,
            idle_grace_min,
            idle_fee_per_min,
            idle_fee_cap,
            max_kwh,
        ) {
            (
                Some(effective_from),
                Some(peak_price),
                Some(offpeak_price),
                Some((peak_start_min, peak_end_min)),
                Some(peak_weekdays),
                Some(holidays),
                Some(idle_grace_min),
                Some(idle_fee_per_min),
                Some(idle_fee_cap),
                Some(max_kwh),
            ) if p.0.is_empty() => Ok(Tariff {
                effective_from,
                peak_price,
                offpeak_price,
                peak_start_min,
                peak_end_min,
                peak_weekdays,
                holidays,
                idle_grace_min,
                idle_fee_per_min,
                idle_fee_cap,
                max_kwh,
            }),
            _ => Err(p.0),
        }
    }
}

/// A site's tariffs over time. A session uses the tariff in force on the local date of its
/// start: the one with the latest `effective_from` on or before that date, else the one
/// without `effective_from` (which applies to every session no dated tariff covers).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<Tariff>", into = "Vec<Tariff>")]
pub struct TariffHistory {
    /// Sorted: the undated tariff (if any) first, then by `effective_from`.
    tariffs: Vec<Tariff>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TariffHistoryError {
    #[error("two tariffs take effect on {0}; keep one")]
    SameEffectiveDate(NaiveDate),
    #[error("more than one tariff has no effective_from; give all but one a date")]
    SeveralUndated,
}

impl TariffHistoryError {
    pub fn reason_pt_br(&self) -> String {
        match self {
            Self::SameEffectiveDate(d) => format!(
                "duas tarifas começam a valer em {}; mantenha apenas uma",
                d.format("%d/%m/%Y")
            ),
            Self::SeveralUndated => {
                "mais de uma tarifa sem data de início; dê uma data a todas menos uma".to_owned()
            }
        }
    }
}

impl TariffHistory {
    pub fn new(tariffs: impl IntoIterator<Item = Tariff>) -> Result<Self, TariffHistoryError> {
        let mut tariffs: Vec<Tariff> = tariffs.into_iter().collect();
        tariffs.sort_by_key(|t| t.effective_from);
        for pair in tariffs.windows(2) {
            if pair[0].effective_from == pair[1].effective_from {
                return Err(match pair[0].effective_from {
                    Some(d) => TariffHistoryError::SameEffectiveDate(d),
                    None => TariffHistoryError::SeveralUndated,
                });
            }
        }
        Ok(Self { tariffs })
    }

    /// The tariff in force on the local date `date`, if any.
    pub fn in_force_at(&self, date: NaiveDate) -> Option<&Tariff> {
        self.tariffs
            .iter()
            .rev()
            .find(|t| t.effective_from.is_none_or(|from| from <= date))
    }

    /// The tariff for a session starting at `start`, judged on its local date in `tz`.
    pub fn in_force_for_session(&self, start: DateTime<Utc>, tz: Tz) -> Option<&Tariff> {
        self.in_force_at(start.with_timezone(&tz).date_naive())
    }

    /// The tariffs, undated first, then by effective date.
    pub fn tariffs(&self) -> &[Tariff] {
        &self.tariffs
    }
}

impl TryFrom<Vec<Tariff>> for TariffHistory {
    type Error = TariffHistoryError;
    fn try_from(v: Vec<Tariff>) -> Result<Self, Self::Error> {
        Self::new(v)
    }
}

impl From<TariffHistory> for Vec<Tariff> {
    fn from(h: TariffHistory) -> Self {
        h.tariffs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    /// The tariff of BILLING.md's config example.
    fn example_spec() -> TariffSpec {
        TariffSpec {
            effective_from: Some("2026-01-01".into()),
            peak_price: Some("3.08".into()),
            offpeak_price: Some("0.53".into()),
            peak_start: Some("17:30".into()),
            peak_end: Some("20:30".into()),
            peak_weekdays: Some(
                ["mon", "tue", "wed", "thu", "fri"]
                    .map(String::from)
                    .to_vec(),
            ),
            holidays: Some(vec!["2026-04-03".into(), "2026-04-21".into()]),
            idle_grace_min: Some(15.into()),
            idle_fee_per_min: Some("0.10".into()),
            idle_fee_cap: Some("30.00".into()),
            max_kwh: Some("150".into()),
        }
    }

    fn minimal_spec() -> TariffSpec {
        TariffSpec {
            peak_price: Some("3.08".into()),
            offpeak_price: Some("0.53".into()),
            idle_fee_per_min: Some("0.10".into()),
            max_kwh: Some("150".into()),
            ..TariffSpec::default()
        }
    }

    fn fields(problems: &[TariffProblem]) -> Vec<&str> {
        problems.iter().map(|p| p.field.as_str()).collect()
    }

    #[test]
    fn the_billing_example_reads() {
        let t = example_spec().validate().unwrap();
        assert_eq!(t.effective_from(), NaiveDate::from_ymd_opt(2026, 1, 1));
        assert_eq!(t.peak_price(), dec("3.08"));
        assert_eq!(t.offpeak_price(), dec("0.53"));
        assert_eq!((t.peak_start_minute(), t.peak_end_minute()), (1050, 1230));
        assert_eq!(
            t.peak_weekdays(),
            vec![
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri
            ]
        );
        assert_eq!(t.site_holidays().len(), 2);
        assert_eq!(t.idle_grace_min(), 15);
        assert_eq!(t.idle_fee_per_min(), dec("0.1"));
        assert_eq!(t.idle_fee_cap(), Some(dec("30")));
        assert_eq!(t.max_kwh(), dec("150"));
    }

    #[test]
    fn defaults_are_billing_defaults() {
        let t = minimal_spec().validate().unwrap();
        assert_eq!(t.effective_from(), None);
        assert_eq!(t.peak_start(), "17:30");
        assert_eq!(t.peak_end(), "20:30");
        assert_eq!(t.peak_weekdays().len(), 5);
        assert!(!t.is_peak_weekday(Weekday::Sat) && !t.is_peak_weekday(Weekday::Sun));
        assert_eq!(t.idle_grace_min(), DEFAULT_IDLE_GRACE_MIN);
        assert_eq!(t.idle_fee_cap(), None);
        assert!(t.site_holidays().is_empty());
    }

    #[test]
    fn missing_required_fields_are_all_listed() {
        let problems = TariffSpec::default().validate().unwrap_err();
        assert_eq!(
            fields(&problems),
            vec!["peak_price", "offpeak_price", "idle_fee_per_min", "max_kwh"]
        );
        assert!(problems[0].message.starts_with("missing"));
    }

    #[test]
    fn every_problem_is_listed_with_its_field() {
        let spec = TariffSpec {
            effective_from: Some("01/01/2026".into()),
            peak_price: Some("3.08123".into()),
            offpeak_price: Some("-0.53".into()),
            peak_start: Some("17h30".into()),
            peak_end: Some("25:00".into()),
            peak_weekdays: Some(vec!["seg".into(), "tue".into(), "funday".into()]),
            holidays: Some(vec!["2026-02-30".into(), "2026-04-21".into()]),
            idle_grace_min: Some("-5".into()),
            idle_fee_per_min: Some(RawNumber::Float(0.1)),
            idle_fee_cap: Some("30.001".into()),
            max_kwh: Some("0".into()),
        };
        let problems = spec.validate().unwrap_err();
        assert_eq!(
            fields(&problems),
            vec![
                "effective_from",
                "peak_price",
                "offpeak_price",
                "peak_start",
                "peak_end",
                "peak_weekdays",
                "peak_weekdays",
                "holidays",
                "idle_grace_min",
                "idle_fee_per_min",
                "idle_fee_cap",
                "max_kwh",
            ],
            "{problems:#?}"
        );
        let msg = |i: usize| problems[i].message.as_str();
        assert_eq!(msg(1), "must have at most 4 decimals");
        assert_eq!(msg(2), "must be ≥ 0");
        assert!(msg(5).contains("did you mean \"mon\""), "{}", msg(5));
        assert!(!msg(6).contains("did you mean"));
        assert!(msg(7).contains("2026-02-30"));
        assert!(msg(9).contains("as a string"));
        assert_eq!(msg(10), "must have at most 2 decimals");
        assert_eq!(msg(11), "must be > 0");
        assert!(problems.iter().all(|p| !p.message_pt_br.is_empty()));
        assert_eq!(
            problems[1].message_pt_br,
            "deve ter no máximo 4 casas decimais"
        );
    }

    #[test]
    fn the_window_must_not_be_empty_or_cross_midnight() {
        for (start, end) in [("20:30", "17:30"), ("17:30", "17:30"), ("22:00", "02:00")] {
            let spec = TariffSpec {
                peak_start: Some(start.into()),
                peak_end: Some(end.into()),
                ..minimal_spec()
            };
            let problems = spec.validate().unwrap_err();
            assert_eq!(fields(&problems), vec!["peak_end"], "{start}-{end}");
        }
        let whole_evening = TariffSpec {
            peak_start: Some("18:00".into()),
            peak_end: Some("24:00".into()),
            ..minimal_spec()
        };
        assert_eq!(whole_evening.validate().unwrap().peak_end_minute(), 1440);
        let bad_start = TariffSpec {
            peak_start: Some("24:00".into()),
            ..minimal_spec()
        };
        assert_eq!(
            fields(&bad_start.validate().unwrap_err()),
            vec!["peak_start"]
        );
    }

    #[test]
    fn numbers_in_other_forms() {
        let spec = TariffSpec {
            peak_price: Some("3,08".into()),
            offpeak_price: Some("abc".into()),
            max_kwh: Some(150.into()),
            idle_grace_min: Some(" 20 ".into()),
            ..minimal_spec()
        };
        let problems = spec.validate().unwrap_err();
        assert_eq!(fields(&problems), vec!["peak_price", "offpeak_price"]);
        assert!(
            problems[0].message.contains("\"3.08\""),
            "{}",
            problems[0].message
        );
        // Trailing zeros beyond 4 places are still at most 4 decimals of value.
        let ok = TariffSpec {
            peak_price: Some(" 3.080000 ".into()),
            max_kwh: Some(150.into()),
            idle_grace_min: Some("20".into()),
            ..minimal_spec()
        }
        .validate()
        .unwrap();
        assert_eq!(ok.peak_price(), dec("3.08"));
        assert_eq!(ok.idle_grace_min(), 20);
        let too_big = TariffSpec {
            peak_price: Some("99999999999999999999999999999999".into()),
            max_kwh: Some("10000.001".into()),
            idle_grace_min: Some("99999999999999999999".into()),
            ..minimal_spec()
        };
        assert_eq!(
            fields(&too_big.validate().unwrap_err()),
            vec!["peak_price", "idle_grace_min", "max_kwh"]
        );
    }

    #[test]
    fn weekdays_are_case_insensitive_and_may_be_empty() {
        let spec = TariffSpec {
            peak_weekdays: Some(vec!["Mon".into(), " TUE ".into(), "mon".into()]),
            ..minimal_spec()
        };
        assert_eq!(
            spec.validate().unwrap().peak_weekdays(),
            vec![Weekday::Mon, Weekday::Tue]
        );
        let flat = TariffSpec {
            peak_weekdays: Some(vec![]),
            ..minimal_spec()
        };
        assert!(flat.validate().unwrap().peak_weekdays().is_empty());
    }

    #[test]
    fn holidays_are_national_plus_the_sites_own() {
        let t = example_spec().validate().unwrap();
        let d = |s| parse_date(s).unwrap();
        assert!(t.is_holiday(d("2026-04-21"))); // national and listed
        assert!(t.is_holiday(d("2026-02-17"))); // Carnival, national only
        assert!(!t.has_peak_on(d("2026-02-17")));
        let site = TariffSpec {
            holidays: Some(vec!["2026-01-25".into()]), // São Paulo city anniversary
            ..minimal_spec()
        }
        .validate()
        .unwrap();
        assert!(site.is_holiday(d("2026-01-25")));
        assert!(!t.is_holiday(d("2026-01-25")));
        assert!(t.has_peak_on(d("2026-03-05"))); // a Thursday
        assert!(!t.has_peak_on(d("2026-03-07"))); // a Saturday
    }

    #[test]
    fn to_spec_round_trips_and_serde_goes_through_validation() {
        let t = example_spec().validate().unwrap();
        assert_eq!(t.to_spec().validate().unwrap(), t);
        let json = serde_json::to_string(&t).unwrap();
        assert!(json.contains("\"peak_price\":\"3.08\""), "{json}");
        let back: Tariff = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t);
        let bad = json.replace("\"3.08\"", "\"-1\"");
        let err = serde_json::from_str::<Tariff>(&bad).unwrap_err();
        assert!(err.to_string().contains("peak_price: must be ≥ 0"), "{err}");
        // A spec as TOML/JSON would give it: integers are accepted where numbers are.
        let spec: TariffSpec = serde_json::from_str(
            r#"{"peak_price":"3.08","offpeak_price":"0.53","idle_grace_min":15,
                "idle_fee_per_min":"0.10","max_kwh":150}"#,
        )
        .unwrap();
        assert_eq!(spec.validate().unwrap().max_kwh(), dec("150"));
    }

    #[test]
    fn history_picks_the_tariff_in_force_at_the_local_start() {
        let dated = |from: &str, price: &str| {
            TariffSpec {
                effective_from: Some(from.into()),
                peak_price: Some(price.into()),
                ..minimal_spec()
            }
            .validate()
            .unwrap()
        };
        let base = minimal_spec().validate().unwrap();
        let h = TariffHistory::new([
            dated("2026-03-01", "4.00"),
            base.clone(),
            dated("2026-01-01", "3.50"),
        ])
        .unwrap();
        let d = |s| parse_date(s).unwrap();
        assert_eq!(h.in_force_at(d("2025-12-31")), Some(&base));
        assert_eq!(
            h.in_force_at(d("2026-01-01")).unwrap().peak_price(),
            dec("3.5")
        );
        assert_eq!(
            h.in_force_at(d("2026-02-28")).unwrap().peak_price(),
            dec("3.5")
        );
        assert_eq!(
            h.in_force_at(d("2026-03-01")).unwrap().peak_price(),
            dec("4")
        );
        // 2026-03-01 02:00 UTC is still 2026-02-28 23:00 in São Paulo.
        let start = DateTime::parse_from_rfc3339("2026-03-01T02:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let sp = chrono_tz::America::Sao_Paulo;
        assert_eq!(
            h.in_force_for_session(start, sp).unwrap().peak_price(),
            dec("3.5")
        );

        let only_dated = TariffHistory::new([dated("2026-01-01", "3.50")]).unwrap();
        assert_eq!(only_dated.in_force_at(d("2025-12-31")), None);
        assert_eq!(TariffHistory::default().in_force_at(d("2026-01-01")), None);

        assert_eq!(
            TariffHistory::new([dated("2026-01-01", "1"), dated("2026-01-01", "2")]),
            Err(TariffHistoryError::SameEffectiveDate(d("2026-01-01")))
        );
        assert_eq!(
            TariffHistory::new([base.clone(), base]),
            Err(TariffHistoryError::SeveralUndated)
        );
    }

    fn raw_number() -> impl Strategy<Value = Option<RawNumber>> {
        prop_oneof![
            Just(None),
            any::<String>().prop_map(|s| Some(RawNumber::Text(s))),
            "-?[0-9]{0,30}([.,][0-9]{0,30})?".prop_map(|s| Some(RawNumber::Text(s))),
            any::<i64>().prop_map(|i| Some(RawNumber::Integer(i))),
            any::<f64>().prop_map(|x| Some(RawNumber::Float(x))),
        ]
    }

    fn raw_text() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            Just(None),
            any::<String>().prop_map(Some),
            "[0-9:-]{0,12}".prop_map(Some),
        ]
    }

    fn raw_list() -> impl Strategy<Value = Option<Vec<String>>> {
        proptest::option::of(proptest::collection::vec(
            prop_oneof![any::<String>(), "[a-zç]{0,8}", "[0-9-]{0,12}"],
            0..5,
        ))
    }

    proptest! {
        #[test]
        fn validate_never_panics_and_valid_tariffs_round_trip(
            effective_from in raw_text(),
            peak_price in raw_number(),
            offpeak_price in raw_number(),
            peak_start in raw_text(),
            peak_end in raw_text(),
            peak_weekdays in raw_list(),
            holidays in raw_list(),
            idle_grace_min in raw_number(),
            idle_fee_per_min in raw_number(),
            idle_fee_cap in raw_number(),
            max_kwh in raw_number(),
        ) {
            let spec = TariffSpec {
                effective_from, peak_price, offpeak_price, peak_start, peak_end, peak_weekdays,
                holidays, idle_grace_min, idle_fee_per_min, idle_fee_cap, max_kwh,
            };
            match spec.validate() {
                Ok(t) => prop_assert_eq!(t.to_spec().validate(), Ok(t)),
                Err(problems) => {
                    prop_assert!(!problems.is_empty());
                    for p in &problems {
                        prop_assert!(TariffSpec::FIELDS.contains(&p.field.as_str()));
                    }
                }
            }
        }
    }
}
