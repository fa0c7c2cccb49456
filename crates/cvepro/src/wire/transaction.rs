//! `GET /api/v1/transaction?fromDate=…&toDate=…` (contract A5): sessions, open and finished.

use super::{EnergyWh, KnownKeys, nullable};
use serde::Deserialize;

pub const ENDPOINT: &str = "transaction";
pub const PATH: &str = "api/v1/transaction";

/// `{"error": null, "list": [...], "count": n}`.
#[derive(Debug, Deserialize)]
pub struct TransactionResponse {
    pub list: Vec<WireTransaction>,
    /// Used only to warn when it exceeds the list length (possible hidden paging).
    #[serde(default)]
    pub count: Option<i64>,
}

/// The fields of a transaction vetric reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireTransaction {
    pub id: i64,
    pub connector_id: i64,
    pub charge_box_uuid: String,
    pub charge_box_id: String,
    /// May be `""` on an open session (A5.5 #1); null is read the same way.
    #[serde(deserialize_with = "nullable")]
    pub ocpp_id_tag: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub ocpp_tag_pk: Option<i64>,
    /// `DD/MM/YYYY HH:mm:ss` in the configured transaction zone.
    pub start_timestamp: String,
    /// Null while the session is open.
    #[serde(deserialize_with = "nullable")]
    pub stop_timestamp: Option<String>,
    /// Seconds; live while the session is open. Used for zone self-calibration.
    pub duration: i64,
    #[serde(deserialize_with = "nullable")]
    pub energy: Option<EnergyWh>,
    #[serde(deserialize_with = "nullable")]
    pub idle_duration: Option<i64>,
    #[serde(deserialize_with = "nullable")]
    pub stop_reason: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub user_name: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub user_address_complement: Option<String>,
}

/// Every key of `fixtures/cvepro-transactions.json` (the field list of contract A5.3).
#[rustfmt::skip]
pub const KNOWN: KnownKeys = &[
    ("", &["error", "list", "count"]),
    (
        "list[]",
        &[
            "id", "connectorId", "connectorPk", "chargeBoxPk", "chargeBoxUuid", "chargeBoxId",
            "chargeBoxDescription", "ocppIdTag", "ocppTagPk", "startTimestamp", "stopTimestamp",
            "duration", "durationHumanReadable", "durationTime", "energy",
            "energyHumanReadable", "startValue", "stopValue", "userName", "userPhone",
            "userEmail", "userDocNumber", "userDocType", "userAddressComplement",
            "userAddressStreet", "userAddressHouseNumber", "userAddressCity",
            "userAddressState", "userUuid", "userPk", "addressStreet", "addressHouseNumber",
            "addressCity", "addressState", "addressComplement", "cost", "costHumanReadable",
            "income", "incomeHumanReadable", "idleDuration", "idleDurationHumanReadable",
            "autonomy", "autonomyHumanReadable", "environIndicator",
            "environIndicatorHumanReadable", "km", "kmKWh", "kmKWhHumanReadable", "stopReason",
            "stopEventActor", "origin", "hasPayment", "isPaid", "connectorTypeName", "uuid",
        ],
    ),
];
