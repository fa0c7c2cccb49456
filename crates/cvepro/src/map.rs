//! Wire → domain: turns decoded vendor payloads into [`vetric_domain`] observations, fixing
//! the vendor's quirks (local heartbeat times, W-or-kW power, tag case, transaction zone) and
//! counting each fix in the [`QuirkReport`].

use crate::error::CveProError;
use crate::report::{CountMismatch, QuirkReport};
use crate::time::{self, Calibration};
use crate::wire::chargepoints::{self, ChargepointsResponse, WireConnector};
use crate::wire::transaction::{self, TransactionResponse};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use chrono_tz::Tz;
use std::collections::HashMap;
use vetric_domain::{
    ChargerSnapshot, ConnectorSnapshot, ConnectorStatus, Tag, TagError, TransactionRecord,
};

fn shape(endpoint: &'static str, path: String, detail: impl Into<String>) -> CveProError {
    CveProError::ShapeChanged {
        endpoint,
        path,
        detail: detail.into(),
    }
}

/// Below this, `powerMax` is in kW (contract A4.2: `22` next to `22000`).
pub const POWER_KW_THRESHOLD: f64 = 1000.0;

/// Normalises `powerMax` to watts. Returns `(watts, was_kw)`; negative or absurd values are
/// unknown.
pub fn normalise_power_max(raw: Option<f64>) -> (Option<u32>, bool) {
    let Some(v) = raw.filter(|v| v.is_finite() && *v >= 0.0) else {
        return (None, false);
    };
    let (watts, was_kw) = if v < POWER_KW_THRESHOLD {
        (v * 1000.0, true)
    } else {
        (v, false)
    };
    if watts > f64::from(u32::MAX) {
        return (None, false);
    }
    (Some(watts.round() as u32), was_kw)
}

fn check_count(
    endpoint: &'static str,
    count: Option<i64>,
    list_len: usize,
    report: &mut QuirkReport,
) {
    if let Some(count) = count
        && count > i64::try_from(list_len).unwrap_or(i64::MAX)
    {
        tracing::warn!(
            endpoint,
            count,
            list_len,
            "vendor count exceeds list length"
        );
        metrics::counter!("vetric_cvepro_count_mismatch_total", "endpoint" => endpoint)
            .increment(1);
        report.count_mismatches.push(CountMismatch {
            endpoint,
            count,
            list_len,
        });
    }
}

fn map_connector(
    c: &WireConnector,
    path: &str,
    report: &mut QuirkReport,
) -> Result<ConnectorSnapshot, CveProError> {
    let ep = chargepoints::ENDPOINT;
    let connector_id = u32::try_from(c.connector_id).map_err(|_| {
        shape(
            ep,
            format!("{path}.connectorId"),
            format!("connector id {} out of range", c.connector_id),
        )
    })?;
    let status_since = time::parse_status_time(&c.last_status.time_stamp).map_err(|e| {
        shape(
            ep,
            format!("{path}.lastStatus.timeStamp"),
            format!(
                "expected ISO-8601 UTC, got {:?}: {e}",
                c.last_status.time_stamp
            ),
        )
    })?;
    let (power_max_w, was_kw) = normalise_power_max(c.power_max);
    if was_kw {
        report.power_max_in_kw += 1;
    }
    if c.power_max.is_none() {
        report.power_max_missing += 1;
    }
    Ok(ConnectorSnapshot {
        connector_id,
        status: ConnectorStatus::from_vendor(&c.last_status.status),
        status_since,
        error_code: c.last_status.error_code.clone(),
        power_max_w,
    })
}

/// Maps `/chargepoints` to chargers.
pub fn map_chargers(
    resp: ChargepointsResponse,
    vendor_tz: Tz,
    report: &mut QuirkReport,
) -> Result<Vec<ChargerSnapshot>, CveProError> {
    let ep = chargepoints::ENDPOINT;
    check_count(ep, resp.count, resp.charge_point_list.len(), report);
    let mut out = Vec::with_capacity(resp.charge_point_list.len());
    for (i, cp) in resp.charge_point_list.into_iter().enumerate() {
        let path = format!("chargePointList[{i}]");
        let last_heartbeat = match cp.last_heartbeat_timestamp.as_deref() {
            None | Some("") => None,
            Some(text) => Some(time::parse_heartbeat(text, vendor_tz).map_err(|e| {
                shape(
                    ep,
                    format!("{path}.lastHeartbeatTimestamp"),
                    format!("expected YYYY-MM-DD HH:mm:ss, got {text:?}: {e}"),
                )
            })?),
        };
        let connectors = cp
            .connectors
            .iter()
            .enumerate()
            .map(|(j, c)| map_connector(c, &format!("{path}.connectors[{j}]"), report))
            .collect::<Result<Vec<_>, _>>()?;
        let name = cp
            .description
            .filter(|d| !d.trim().is_empty())
            .unwrap_or_else(|| cp.charge_box_id.clone());
        out.push(ChargerSnapshot {
            uuid: cp.uuid,
            charge_box_id: cp.charge_box_id,
            name,
            vendor: cp.charge_point_vendor.unwrap_or_default(),
            model: cp.charge_point_model.unwrap_or_default(),
            firmware: cp.fw_version.unwrap_or_default(),
            last_heartbeat,
            connectors,
        });
    }
    Ok(out)
}

/// Maps `/transaction` to records, calibrating the zone of the timestamps.
///
/// `previous_offset` is the offset found by an earlier read; it is used when this list has no
/// active session to calibrate with (or they disagree). Returns the records, deduplicated by
/// id, and the offset in force, which the caller keeps for next time.
pub fn map_transactions(
    resp: TransactionResponse,
    zone: Tz,
    now: DateTime<Utc>,
    previous_offset: Option<i64>,
    report: &mut QuirkReport,
) -> Result<(Vec<TransactionRecord>, Option<i64>), CveProError> {
    let ep = transaction::ENDPOINT;
    check_count(ep, resp.count, resp.list.len(), report);

    // Parse every timestamp first: calibration needs the open sessions' starts.
    let mut parsed = Vec::with_capacity(resp.list.len());
    for (i, t) in resp.list.iter().enumerate() {
        let start = time::parse_transaction_time(&t.start_timestamp, zone).map_err(|e| {
            shape(
                ep,
                format!("list[{i}].startTimestamp"),
                format!(
                    "expected DD/MM/YYYY HH:mm:ss, got {:?}: {e}",
                    t.start_timestamp
                ),
            )
        })?;
        let stop = match t.stop_timestamp.as_deref() {
            None => None,
            Some(text) => Some(time::parse_transaction_time(text, zone).map_err(|e| {
                shape(
                    ep,
                    format!("list[{i}].stopTimestamp"),
                    format!("expected DD/MM/YYYY HH:mm:ss, got {text:?}: {e}"),
                )
            })?),
        };
        let connector_id = u32::try_from(t.connector_id).map_err(|_| {
            shape(
                ep,
                format!("list[{i}].connectorId"),
                format!("connector id {} out of range", t.connector_id),
            )
        })?;
        parsed.push((start, stop, connector_id));
    }

    let samples: Vec<(DateTime<Utc>, i64)> = resp
        .list
        .iter()
        .zip(&parsed)
        .filter(|(t, _)| t.stop_timestamp.is_none())
        .map(|(t, (start, _, _))| (*start, t.duration))
        .collect();
    let calibration = time::calibrate_transaction_offset(now, &samples);
    let offset = match calibration {
        Calibration::Agreed(h) => Some(h),
        Calibration::NoActiveSessions | Calibration::Inconclusive => previous_offset,
    };
    let hours = offset.unwrap_or(0);
    report.calibration = calibration;
    report.transaction_offset_hours = hours;
    if hours != 0 {
        tracing::info!(hours, "transaction timestamps shifted by calibrated offset");
    }
    let shift = ChronoDuration::hours(hours);

    let mut out: Vec<TransactionRecord> = Vec::with_capacity(resp.list.len());
    let mut index_by_id: HashMap<i64, usize> = HashMap::new();
    for (t, (start, stop, connector_id)) in resp.list.into_iter().zip(parsed) {
        let raw_tag = t.ocpp_id_tag.as_deref().unwrap_or("");
        let tag = match Tag::parse_optional(raw_tag) {
            Ok(Some(tag)) => {
                if tag.as_str() != raw_tag {
                    report.lowercase_tags_normalised += 1;
                }
                Some(tag)
            }
            Ok(None) => None,
            Err(TagError::Empty) => None,
            Err(e) => {
                tracing::warn!(transaction = t.id, error = %e, "invalid tag treated as unknown");
                report.invalid_tags += 1;
                None
            }
        };
        let record = TransactionRecord {
            id: t.id,
            charger_uuid: t.charge_box_uuid,
            charge_box_id: t.charge_box_id,
            connector_id,
            tag,
            tag_pk: t.ocpp_tag_pk,
            start: start + shift,
            stop: stop.map(|s| s + shift),
            energy_wh: t.energy.map(|e| e.0),
            idle_seconds: t.idle_duration,
            stop_reason: t.stop_reason,
            user_name: t.user_name,
            apartment_text: t.user_address_complement,
        };
        match index_by_id.get(&record.id) {
            Some(&k) => {
                report.duplicate_transactions += 1;
                // Keep the more complete copy: a finished record over an open one.
                if out[k].stop.is_none() && record.stop.is_some() {
                    out[k] = record;
                }
            }
            None => {
                index_by_id.insert(record.id, out.len());
                out.push(record);
            }
        }
    }
    Ok((out, offset))
}

/// Tags known from finished transactions in `records`, by `ocppTagPk` (the most recent wins).
pub fn tags_from_finished(records: &[TransactionRecord]) -> HashMap<i64, Tag> {
    let mut best: HashMap<i64, (DateTime<Utc>, Tag)> = HashMap::new();
    for r in records {
        if let (Some(pk), Some(tag), false) = (r.tag_pk, &r.tag, r.is_open()) {
            let newer = best.get(&pk).is_none_or(|(start, _)| r.start > *start);
            if newer {
                best.insert(pk, (r.start, tag.clone()));
            }
        }
    }
    best.into_iter().map(|(pk, (_, tag))| (pk, tag)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_max_heuristic() {
        assert_eq!(normalise_power_max(Some(22000.0)), (Some(22000), false));
        assert_eq!(normalise_power_max(Some(22.0)), (Some(22000), true));
        assert_eq!(normalise_power_max(Some(7.4)), (Some(7400), true));
        assert_eq!(normalise_power_max(Some(7400.0)), (Some(7400), false));
        assert_eq!(normalise_power_max(None), (None, false));
        assert_eq!(normalise_power_max(Some(-1.0)), (None, false));
    }
}
