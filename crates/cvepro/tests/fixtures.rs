//! Every recorded fixture decodes and maps as the contract says, and every shape change the
//! contract implies is an error naming its JSON path, never an empty value.

use chrono::{DateTime, Utc};
use serde_json::Value;
use vetric_cvepro::map::{map_chargers, map_transactions, tags_from_finished};
use vetric_cvepro::wire::{self, chargepoints, transaction};
use vetric_cvepro::{Calibration, CveProError, ErrorKind, QuirkReport};
use vetric_domain::{ConnectorStatus, Tag};

const CHARGEPOINTS: &str = include_str!("fixtures/cvepro-chargepoints.json");
const TRANSACTIONS: &str = include_str!("fixtures/cvepro-transactions.json");
const ERRORS: &str = include_str!("fixtures/cvepro-errors.json");

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

fn decode_chargers(
    body: &[u8],
) -> Result<(Vec<vetric_domain::ChargerSnapshot>, QuirkReport), CveProError> {
    let d = wire::decode::<chargepoints::ChargepointsResponse>(
        chargepoints::ENDPOINT,
        body,
        chargepoints::KNOWN,
    )?;
    let mut report = QuirkReport::default();
    report
        .unknown_fields
        .extend(d.unknown_fields.iter().map(|p| (p.clone(), 1)));
    let chargers = map_chargers(d.value, chrono_tz::America::Sao_Paulo, &mut report)?;
    Ok((chargers, report))
}

fn decode_transactions(
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(Vec<vetric_domain::TransactionRecord>, QuirkReport), CveProError> {
    let d = wire::decode::<transaction::TransactionResponse>(
        transaction::ENDPOINT,
        body,
        transaction::KNOWN,
    )?;
    let mut report = QuirkReport::default();
    report
        .unknown_fields
        .extend(d.unknown_fields.iter().map(|p| (p.clone(), 1)));
    let (records, _) = map_transactions(d.value, chrono_tz::UTC, now, None, &mut report)?;
    Ok((records, report))
}

fn edited(fixture: &str, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_str(fixture).expect("fixture is JSON");
    edit(&mut v);
    serde_json::to_vec(&v).expect("re-encode")
}

fn shape_path(err: CveProError) -> String {
    match err {
        CveProError::ShapeChanged { path, .. } => path,
        other => panic!("expected ShapeChanged, got {other:?}"),
    }
}

#[test]
fn chargepoints_fixture_decodes_with_power_units_normalised() {
    let (chargers, report) = decode_chargers(CHARGEPOINTS.as_bytes()).expect("decodes");
    assert_eq!(chargers.len(), 5);
    let power: Vec<Option<u32>> = chargers
        .iter()
        .map(|c| c.connectors[0].power_max_w)
        .collect();
    assert_eq!(
        power,
        vec![Some(22000), Some(22000), Some(22000), Some(7400), None]
    );
    assert_eq!(report.power_max_in_kw, 1);
    assert_eq!(report.power_max_missing, 1);
    assert!(
        report.unknown_fields.is_empty(),
        "{:?}",
        report.unknown_fields
    );

    let first = &chargers[0];
    assert_eq!(first.name, "Palmeiras 1");
    assert_eq!(first.charge_box_id, "JDBM2300187K4");
    assert_eq!(first.uuid, "0638e9d7-79d3-420a-a730-edd3f9e899e6");
    assert_eq!(first.firmware, "1.2.672");
    // "2026-02-10 21:39:19" São Paulo local = 00:39:19Z next day.
    assert_eq!(first.last_heartbeat, Some(utc("2026-02-11T00:39:19Z")));
    assert_eq!(first.connectors[0].status, ConnectorStatus::Available);
    assert_eq!(
        first.connectors[0].status_since,
        utc("2026-02-10T13:48:05.857Z")
    );
    assert_eq!(first.connectors[0].error_code, "NoError");
    let statuses: Vec<&str> = chargers
        .iter()
        .map(|c| c.connectors[0].status.as_vendor_str())
        .collect();
    assert_eq!(
        statuses,
        [
            "Available",
            "Charging",
            "Charging",
            "SuspendedEV",
            "Unavailable"
        ]
    );
}

#[test]
fn transactions_fixture_decodes_calibrates_and_normalises_tags() {
    // The fixture was taken at about 00:40Z on 11/02 (start + duration of each open session).
    let now = utc("2026-02-11T00:40:00Z");
    let (records, report) = decode_transactions(TRANSACTIONS.as_bytes(), now).expect("decodes");
    assert_eq!(records.len(), 6);
    assert_eq!(records.iter().filter(|r| r.is_open()).count(), 3);
    assert_eq!(report.calibration, Calibration::Agreed(0));
    assert_eq!(report.transaction_offset_hours, 0);
    assert_eq!(report.lowercase_tags_normalised, 1);
    assert!(
        report.unknown_fields.is_empty(),
        "{:?}",
        report.unknown_fields
    );

    let lower = records.iter().find(|r| r.id == 451870).expect("451870");
    assert_eq!(lower.tag, Some(Tag::parse("5BE07D1A").expect("tag")));

    let empty = records.iter().find(|r| r.id == 451907).expect("451907");
    assert_eq!(empty.tag, None);
    assert_eq!(empty.tag_pk, Some(5120418));
    assert_eq!(empty.start, utc("2026-02-10T23:51:40Z"));
    assert_eq!(empty.energy_wh, Some(5520));
    assert_eq!(empty.user_name, None);

    let finished = records.iter().find(|r| r.id == 451702).expect("451702");
    assert_eq!(finished.stop, Some(utc("2026-02-10T01:02:44Z")));
    assert_eq!(finished.stop_reason.as_deref(), Some("EVDisconnected"));
    assert_eq!(finished.idle_seconds, Some(5408));
    assert_eq!(
        finished.apartment_text.as_deref(),
        Some("Edf. Jardim das Palmeiras Apto 204-A")
    );

    // The empty tag's pk resolves from the finished session in the same list.
    let known = tags_from_finished(&records);
    assert_eq!(
        known.get(&5120418),
        Some(&Tag::parse("D41A0B7C").expect("tag"))
    );
}

#[test]
fn transactions_are_deduplicated_by_id_keeping_the_finished_copy() {
    let body = edited(TRANSACTIONS, |v| {
        let list = v["list"].as_array_mut().expect("list");
        let mut open_copy = list[3].clone(); // 451842, finished
        open_copy["stopTimestamp"] = Value::Null;
        list.insert(0, open_copy);
    });
    let (records, report) = decode_transactions(&body, utc("2026-02-11T00:40:00Z")).expect("ok");
    assert_eq!(records.len(), 6);
    assert_eq!(report.duplicate_transactions, 1);
    let r = records.iter().find(|r| r.id == 451842).expect("kept");
    assert!(!r.is_open());
}

#[test]
fn count_larger_than_list_is_reported_not_fatal() {
    let body = edited(TRANSACTIONS, |v| v["count"] = Value::from(50));
    let (_, report) = decode_transactions(&body, utc("2026-02-11T00:40:00Z")).expect("ok");
    assert_eq!(report.count_mismatches.len(), 1);
    assert_eq!(report.count_mismatches[0].count, 50);
}

#[test]
fn renamed_charge_point_list_is_a_shape_change() {
    let body = edited(CHARGEPOINTS, |v| {
        let obj = v.as_object_mut().expect("object");
        let list = obj.remove("chargePointList").expect("present");
        obj.insert("chargeBoxes".into(), list);
    });
    let err = decode_chargers(&body).expect_err("must fail");
    assert_eq!(err.kind(), ErrorKind::ShapeChanged);
    assert_eq!(shape_path(err), "chargePointList");
}

#[test]
fn missing_status_is_a_shape_change_at_its_path() {
    let body = edited(CHARGEPOINTS, |v| {
        v["chargePointList"][2]["connectors"][0]["lastStatus"]
            .as_object_mut()
            .expect("lastStatus")
            .remove("status");
    });
    let err = decode_chargers(&body).expect_err("must fail");
    assert_eq!(
        shape_path(err),
        "chargePointList[2].connectors[0].lastStatus.status"
    );
}

#[test]
fn status_of_the_wrong_type_is_a_shape_change_at_its_path() {
    let body = edited(CHARGEPOINTS, |v| {
        v["chargePointList"][2]["connectors"][0]["lastStatus"]["status"] = Value::from(3);
    });
    let err = decode_chargers(&body).expect_err("must fail");
    assert_eq!(
        shape_path(err),
        "chargePointList[2].connectors[0].lastStatus.status"
    );
}

#[test]
fn a_nullable_field_that_disappears_is_a_shape_change() {
    let body = edited(TRANSACTIONS, |v| {
        v["list"][1]
            .as_object_mut()
            .expect("tx")
            .remove("stopTimestamp");
    });
    let err = decode_transactions(&body, utc("2026-02-11T00:40:00Z")).expect_err("must fail");
    assert_eq!(shape_path(err), "list[1].stopTimestamp");
}

#[test]
fn changed_timestamp_format_is_a_shape_change() {
    let body = edited(TRANSACTIONS, |v| {
        v["list"][0]["startTimestamp"] = Value::from("2026-02-10T23:51:40Z");
    });
    let err = decode_transactions(&body, utc("2026-02-11T00:40:00Z")).expect_err("must fail");
    assert_eq!(shape_path(err), "list[0].startTimestamp");
    let body = edited(CHARGEPOINTS, |v| {
        v["chargePointList"][0]["lastHeartbeatTimestamp"] = Value::from("10/02/2026 21:39:19");
    });
    let err = decode_chargers(&body).expect_err("must fail");
    assert_eq!(shape_path(err), "chargePointList[0].lastHeartbeatTimestamp");
}

#[test]
fn missing_transaction_list_is_a_shape_change() {
    let body = edited(TRANSACTIONS, |v| {
        v.as_object_mut().expect("object").remove("list");
    });
    let err = decode_transactions(&body, utc("2026-02-11T00:40:00Z")).expect_err("must fail");
    assert_eq!(shape_path(err), "list");
}

#[test]
fn html_body_on_200_is_malformed_not_empty() {
    let errors: Value = serde_json::from_str(ERRORS).expect("json");
    let html = errors["gateway_502_html"].as_str().expect("html");
    let err = decode_chargers(html.as_bytes()).expect_err("must fail");
    assert_eq!(err.kind(), ErrorKind::MalformedBody);
    assert!(err.to_string().contains("HTML"), "{err}");
}

#[test]
fn new_fields_are_counted_not_fatal_and_known_unread_fields_may_vanish() {
    let body = edited(CHARGEPOINTS, |v| {
        let cp = v["chargePointList"][0].as_object_mut().expect("cp");
        cp.insert("brandNewField".into(), Value::from(1));
        cp.remove("monthConsumption"); // read by nobody: may go
        v["chargePointList"][1]["connectors"][0]["lastStatus"]["meterPower"] = Value::from(7000);
    });
    let (chargers, report) = decode_chargers(&body).expect("still decodes");
    assert_eq!(chargers.len(), 5);
    let names: Vec<&String> = report.unknown_fields.keys().collect();
    assert_eq!(
        names,
        [
            "chargePointList[].brandNewField",
            "chargePointList[].connectors[].lastStatus.meterPower"
        ]
    );
}

#[test]
fn fractional_energy_is_rounded_to_wh() {
    let body = edited(TRANSACTIONS, |v| {
        v["list"][0]["energy"] = Value::from(5520.6)
    });
    let (records, _) = decode_transactions(&body, utc("2026-02-11T00:40:00Z")).expect("ok");
    assert_eq!(records[0].energy_wh, Some(5521));
    let body = edited(TRANSACTIONS, |v| v["list"][0]["energy"] = Value::Null);
    let (records, _) = decode_transactions(&body, utc("2026-02-11T00:40:00Z")).expect("ok");
    assert_eq!(records[0].energy_wh, None);
}

#[test]
fn timestamps_in_brt_are_calibrated_by_three_hours() {
    // The vendor prints the same open sessions in BRT (3 h earlier); we parse as UTC.
    let body = edited(TRANSACTIONS, |v| {
        v["list"][0]["startTimestamp"] = Value::from("10/02/2026 20:51:40");
        v["list"][1]["startTimestamp"] = Value::from("10/02/2026 19:05:12");
        v["list"][2]["startTimestamp"] = Value::from("10/02/2026 16:12:05");
    });
    let (records, report) = decode_transactions(&body, utc("2026-02-11T00:40:00Z")).expect("ok");
    assert_eq!(report.calibration, Calibration::Agreed(3));
    assert_eq!(report.transaction_offset_hours, 3);
    assert_eq!(records[0].start, utc("2026-02-10T23:51:40Z"));
    assert!(report.notes().iter().any(|n| n.contains("+3 h")));
}
