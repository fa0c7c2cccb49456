//! `GET /api/v1/chargepoints` (contract A4): the chargers and their connectors.

use super::{KnownKeys, nullable};
use serde::Deserialize;

pub const ENDPOINT: &str = "chargepoints";
pub const PATH: &str = "api/v1/chargepoints";

/// `{"error": null, "chargePointList": [...], "count": n}`.
#[derive(Debug, Deserialize)]
pub struct ChargepointsResponse {
    #[serde(rename = "chargePointList")]
    pub charge_point_list: Vec<WireChargePoint>,
    /// Used only to warn when the vendor says there are more than it sent; its absence is
    /// harmless, so it is not required.
    #[serde(default)]
    pub count: Option<i64>,
}

/// The fields of a charge point vetric reads (56 keys in the recording).
///
/// Vendor, model and firmware come from the charger's OCPP BootNotification; in SteVe (which
/// CVE-Pro derives from) they are nullable columns, empty until a charger first boots, so they
/// are read as nullable here although the recording only has strings. Same for the
/// description (a charger registered without a name) and the heartbeat (never connected).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireChargePoint {
    pub uuid: String,
    pub charge_box_id: String,
    #[serde(deserialize_with = "nullable")]
    pub description: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub charge_point_vendor: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub charge_point_model: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub fw_version: Option<String>,
    /// `YYYY-MM-DD HH:mm:ss`, America/Sao_Paulo local time.
    #[serde(deserialize_with = "nullable")]
    pub last_heartbeat_timestamp: Option<String>,
    pub connectors: Vec<WireConnector>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireConnector {
    pub connector_id: i64,
    /// W on most units, kW on some (`22`), null on others. Read as a number because a kW
    /// value may be fractional (7.4).
    #[serde(deserialize_with = "nullable")]
    pub power_max: Option<f64>,
    pub last_status: WireLastStatus,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireLastStatus {
    /// ISO-8601 UTC with milliseconds. Capital S, as the vendor spells it.
    pub time_stamp: String,
    pub error_code: String,
    pub status: String,
}

/// Every key of the recorded payload (`fixtures/cvepro-chargepoints.json`).
#[rustfmt::skip]
pub const KNOWN: KnownKeys = &[
    ("", &["error", "chargePointList", "count"]),
    (
        "chargePointList[]",
        &[
            "chargeBoxPk", "chargeBoxId", "endpointAddress", "ocppProtocol", "uuid",
            "chargePointVendor", "chargePointModel", "chargePointSerialNumber",
            "chargeBoxSerialNumber", "fwVersion", "description", "lastHeartbeatTimestamp",
            "locationLatitude", "locationLongitude", "connectors", "address", "usage",
            "monthConsumption", "active", "isOpen_24Hours", "typeOf", "origin",
            "moneyPerKilowattCost", "moneyPerDurationCost", "moneyPerTransactionCost",
            "moneyPerTransactionIncome", "moneyPerKilowattIncome", "moneyPerDurationIncome",
            "registrationStatus", "showLocation", "chargeBoxGroupPk", "chargeBoxGroupName",
            "tenantName", "openTime", "closeTime", "owner", "master", "isHubjectCompatible",
            "reservation", "hasPayment", "externalId", "paymentChargeTypeCost",
            "paymentChargeTypeIncome", "paymentChargeByIncome", "taxIncome", "tenantPk",
            "tenantDeviceReader", "deviceReaderMac", "isOcpiCompatible", "isMode1And2Only",
            "insertTimestamp", "system", "phase", "voltage", "chargingRateUnit",
            "hasSocPercentage", "speedCount",
        ],
    ),
    (
        "chargePointList[].connectors[]",
        &[
            "connectorPk", "connectorId", "powerMax", "connectorUuid", "lastStatus",
            "connectorType", "currentType", "speed", "unusualStatus", "dynamicPricingUuid",
            "moneyPerKilowattIncome", "moneyPerDurationIncome", "chargeBoxUuid",
        ],
    ),
    (
        "chargePointList[].connectors[].lastStatus",
        &[
            "timeStamp", "errorCode", "erroInfo", "connectorUuid", "status", "usage",
            "connectorTypePk", "powerMax", "paymentChargeTypeIncome", "moneyPerKilowattIncome",
            "moneyPerDurationIncome", "moneyPerTransactionIncome", "taxIncome",
            "idleFeeDefaultAmount", "hasPayment", "dynamicPricingUuid", "idleConnectorFee",
            "totalDuration", "socPercentage", "currentChargingUserName",
            "moneyPerDurationIncomeHumanReadable", "moneyPerKilowattIncomeHumanReadable",
            "moneyIdleFeeDefaultAmountHumanReadable", "moneyPerTransactionIncomeHumanReadable",
            "taxIncomeHumanReadable",
        ],
    ),
];
