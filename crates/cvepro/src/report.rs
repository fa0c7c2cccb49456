//! What a snapshot had to work around: the vendor quirks met and normalised on the way, so an
//! operator (and `vetric cvepro check`) can see them instead of them being silently absorbed.

use crate::time::Calibration;
use serde::Serialize;
use std::collections::BTreeMap;
use vetric_domain::VendorSnapshot;

/// The vendor's `count` was larger than the list it sent (possible hidden paging).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CountMismatch {
    pub endpoint: &'static str,
    pub count: i64,
    pub list_len: usize,
}

/// Quirks met while reading and normalising vendor data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuirkReport {
    /// Connectors whose `powerMax` was below 1000, read as kW and converted to W.
    pub power_max_in_kw: u32,
    /// Connectors with a null `powerMax`.
    pub power_max_missing: u32,
    /// Tags that arrived in lower case (or padded) and were normalised.
    pub lowercase_tags_normalised: u32,
    /// Open sessions with an empty `ocppIdTag`.
    pub empty_tags: u32,
    /// …of which resolved through the `ocppTagPk` history.
    pub empty_tags_resolved: u32,
    /// Tags that are not valid tags at all (bad characters, too long): kept as unknown.
    pub invalid_tags: u32,
    /// Transactions listed more than once (deduplicated by id).
    pub duplicate_transactions: u32,
    pub count_mismatches: Vec<CountMismatch>,
    /// Keys not in the recorded payloads, as `endpoint: path` → occurrences.
    pub unknown_fields: BTreeMap<String, u32>,
    /// Hours added to parsed transaction times (0 under hypothesis H1).
    pub transaction_offset_hours: i64,
    /// What the active sessions said this time.
    pub calibration: Calibration,
    /// The `ocppTagPk` history lookup failed; the snapshot is still good, tags stay unknown.
    pub tag_history_error: Option<String>,
}

impl Default for QuirkReport {
    fn default() -> Self {
        Self {
            power_max_in_kw: 0,
            power_max_missing: 0,
            lowercase_tags_normalised: 0,
            empty_tags: 0,
            empty_tags_resolved: 0,
            invalid_tags: 0,
            duplicate_transactions: 0,
            count_mismatches: Vec::new(),
            unknown_fields: BTreeMap::new(),
            transaction_offset_hours: 0,
            calibration: Calibration::NoActiveSessions,
            tag_history_error: None,
        }
    }
}

impl QuirkReport {
    pub(crate) fn add_unknown_fields(&mut self, endpoint: &str, paths: &[String]) {
        for p in paths {
            *self
                .unknown_fields
                .entry(format!("{endpoint}: {p}"))
                .or_default() += 1;
        }
    }

    pub fn unknown_field_total(&self) -> u32 {
        self.unknown_fields.values().sum()
    }

    /// One plain-English line per quirk that actually occurred.
    pub fn notes(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.power_max_in_kw > 0 {
            out.push(format!(
                "powerMax in kW on {} connector(s), converted to W",
                self.power_max_in_kw
            ));
        }
        if self.power_max_missing > 0 {
            out.push(format!(
                "powerMax null on {} connector(s)",
                self.power_max_missing
            ));
        }
        if self.lowercase_tags_normalised > 0 {
            out.push(format!(
                "{} lowercase tag(s) normalised",
                self.lowercase_tags_normalised
            ));
        }
        if self.empty_tags > 0 {
            out.push(format!(
                "{} empty ocppIdTag on open session(s), {} resolved via ocppTagPk history",
                self.empty_tags, self.empty_tags_resolved
            ));
        }
        if self.invalid_tags > 0 {
            out.push(format!(
                "{} invalid tag(s) treated as unknown",
                self.invalid_tags
            ));
        }
        if self.duplicate_transactions > 0 {
            out.push(format!(
                "{} duplicate transaction(s) removed",
                self.duplicate_transactions
            ));
        }
        for m in &self.count_mismatches {
            out.push(format!(
                "{}: count {} > list length {} (possible paging)",
                m.endpoint, m.count, m.list_len
            ));
        }
        if !self.unknown_fields.is_empty() {
            let names: Vec<&str> = self.unknown_fields.keys().map(String::as_str).collect();
            out.push(format!(
                "{} unknown field occurrence(s): {}",
                self.unknown_field_total(),
                names.join(", ")
            ));
        }
        if self.transaction_offset_hours != 0 {
            out.push(format!(
                "transaction timestamps calibrated by {:+} h",
                self.transaction_offset_hours
            ));
        }
        if self.calibration == Calibration::Inconclusive {
            out.push(
                "active sessions disagree on the transaction time zone; previous offset kept"
                    .to_owned(),
            );
        }
        if let Some(e) = &self.tag_history_error {
            out.push(format!("ocppTagPk history lookup failed: {e}"));
        }
        out
    }
}

/// The result of [`crate::CveProClient::snapshot`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotReport {
    pub snapshot: VendorSnapshot,
    pub quirks: QuirkReport,
}
