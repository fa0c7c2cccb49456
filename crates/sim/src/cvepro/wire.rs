//! The CVE-Pro JSON shapes, written independently of the client crate from the recorded
//! fixtures (contract A4, A5): struct field order is the recorded key order, the sic names are
//! kept (`erroInfo`, `isOpen_24Hours`, `"null por minuto"`), and every time format is the
//! vendor's (heartbeat in São Paulo local time, `lastStatus.timeStamp` ISO UTC with millis,
//! transaction timestamps `DD/MM/YYYY HH:mm:ss`).

use chrono::{DateTime, Utc};
use chrono_tz::America::Sao_Paulo;
use serde::Serialize;

use super::config::TimeMode;
use super::engine::{ConnectorStatus, Engine};

const STREET: &str = "Rua das Acacias";
const HOUSE_NUMBER: &str = "250";
const ZIP: &str = "57035-180";
const CITY: &str = "Maceió";
const STATE: &str = "AL";
/// kg of CO2 avoided per kWh, as the recorded samples imply.
const CO2_KG_PER_KWH: f64 = 0.8617;
/// Autonomy assumed by the vendor, km per kWh.
const KM_PER_KWH: f64 = 6.0;

/// `{"error":null,"token":…,"user":{…}}`.
#[derive(Serialize)]
pub(crate) struct LoginOk<'a> {
    pub error: (),
    pub token: &'a str,
    pub user: LoginUser<'a>,
}

#[derive(Serialize)]
pub(crate) struct LoginUser<'a> {
    pub id: i64,
    pub name: String,
    pub email: &'a str,
    pub permissions: &'static [&'static str],
}

/// `{"error":"…","user":null,"token":null}`.
#[derive(Serialize)]
pub(crate) struct LoginError<'a> {
    pub error: &'a str,
    pub user: (),
    pub token: (),
}

/// Permissions the simulated API account has.
pub(crate) const PERMISSIONS: &[&str] = &[
    "API_ALL_STATS_GET",
    "API_BRANDS_GET",
    "API_CARS_GET",
    "API_CHARGEBOXES_GET",
    "API_TRANSACTIONS_GET",
];

/// `/chargepoints` envelope; exactly one of the two list keys is present.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ChargepointsEnvelope {
    pub error: (),
    #[serde(skip_serializing_if = "Option::is_none")]
    pub charge_point_list: Option<Vec<ChargePoint>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub charge_boxes: Option<Vec<ChargePoint>>,
    pub count: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ChargePoint {
    charge_box_pk: i64,
    charge_box_id: String,
    endpoint_address: &'static str,
    ocpp_protocol: &'static str,
    uuid: String,
    charge_point_vendor: &'static str,
    charge_point_model: String,
    charge_point_serial_number: String,
    charge_box_serial_number: (),
    fw_version: String,
    description: String,
    last_heartbeat_timestamp: String,
    location_latitude: f64,
    location_longitude: f64,
    connectors: Vec<Connector>,
    address: Address,
    usage: i64,
    month_consumption: i64,
    active: bool,
    #[serde(rename = "isOpen_24Hours")]
    is_open_24_hours: bool,
    type_of: &'static str,
    origin: &'static str,
    money_per_kilowatt_cost: i64,
    money_per_duration_cost: i64,
    money_per_transaction_cost: i64,
    money_per_transaction_income: i64,
    money_per_kilowatt_income: i64,
    money_per_duration_income: i64,
    registration_status: (),
    show_location: bool,
    charge_box_group_pk: i64,
    charge_box_group_name: String,
    tenant_name: &'static str,
    open_time: (),
    close_time: (),
    owner: (),
    master: (),
    is_hubject_compatible: bool,
    reservation: bool,
    has_payment: bool,
    external_id: (),
    payment_charge_type_cost: &'static str,
    payment_charge_type_income: &'static str,
    payment_charge_by_income: &'static str,
    tax_income: i64,
    tenant_pk: i64,
    tenant_device_reader: bool,
    device_reader_mac: (),
    is_ocpi_compatible: bool,
    #[serde(rename = "isMode1And2Only")]
    is_mode1_and2_only: (),
    insert_timestamp: &'static str,
    system: Option<&'static str>,
    phase: Option<&'static str>,
    voltage: Option<i64>,
    charging_rate_unit: Option<&'static str>,
    has_soc_percentage: bool,
    speed_count: SpeedCount,
}

impl ChargePoint {
    /// The charger's vendor uuid (what [`crate::cvepro::Fault::HideCharger`] names).
    pub(crate) fn uuid(&self) -> &str {
        &self.uuid
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Connector {
    connector_pk: i64,
    connector_id: u32,
    power_max: Option<i64>,
    connector_uuid: (),
    last_status: LastStatus,
    connector_type: &'static str,
    current_type: &'static str,
    speed: &'static str,
    unusual_status: (),
    dynamic_pricing_uuid: (),
    money_per_kilowatt_income: i64,
    money_per_duration_income: i64,
    charge_box_uuid: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LastStatus {
    time_stamp: String,
    error_code: String,
    erro_info: String,
    connector_uuid: (),
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    usage: i64,
    connector_type_pk: (),
    power_max: (),
    payment_charge_type_income: (),
    money_per_kilowatt_income: (),
    money_per_duration_income: (),
    money_per_transaction_income: (),
    tax_income: (),
    idle_fee_default_amount: (),
    has_payment: (),
    dynamic_pricing_uuid: (),
    idle_connector_fee: (),
    total_duration: i64,
    soc_percentage: (),
    current_charging_user_name: Option<String>,
    money_per_duration_income_human_readable: &'static str,
    money_per_kilowatt_income_human_readable: &'static str,
    money_idle_fee_default_amount_human_readable: (),
    money_per_transaction_income_human_readable: (),
    tax_income_human_readable: (),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Address {
    address_pk: i64,
    street: &'static str,
    complement: (),
    house_number: &'static str,
    zip_code: &'static str,
    district: (),
    city: &'static str,
    city_number: (),
    state: &'static str,
    country: &'static str,
    block: (),
    apartment: (),
    empty: bool,
    incomplete: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpeedCount {
    nr_slow_total: usize,
    nr_slow_available: usize,
    nr_fast_total: usize,
    nr_fast_available: usize,
}

/// `/transaction` envelope.
#[derive(Serialize)]
pub(crate) struct TransactionsEnvelope {
    pub error: (),
    pub list: Vec<TransactionWire>,
    pub count: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TransactionWire {
    id: i64,
    connector_id: u32,
    connector_pk: i64,
    charge_box_pk: i64,
    charge_box_uuid: String,
    charge_box_id: String,
    charge_box_description: String,
    ocpp_id_tag: String,
    ocpp_tag_pk: i64,
    start_timestamp: String,
    stop_timestamp: Option<String>,
    duration: i64,
    duration_human_readable: String,
    duration_time: String,
    energy: i64,
    energy_human_readable: String,
    start_value: String,
    stop_value: Option<String>,
    user_name: Option<String>,
    user_phone: Option<String>,
    user_email: Option<String>,
    user_doc_number: Option<String>,
    user_doc_type: Option<String>,
    user_address_complement: Option<String>,
    user_address_street: Option<&'static str>,
    user_address_house_number: Option<&'static str>,
    user_address_city: Option<&'static str>,
    user_address_state: Option<&'static str>,
    user_uuid: Option<String>,
    user_pk: Option<i64>,
    address_street: &'static str,
    address_house_number: &'static str,
    address_city: &'static str,
    address_state: &'static str,
    address_complement: (),
    cost: (),
    cost_human_readable: (),
    income: (),
    income_human_readable: (),
    idle_duration: i64,
    idle_duration_human_readable: String,
    autonomy: f64,
    autonomy_human_readable: String,
    environ_indicator: f64,
    environ_indicator_human_readable: String,
    km: f64,
    #[serde(rename = "kmKWh")]
    km_kwh: f64,
    #[serde(rename = "kmKWhHumanReadable")]
    km_kwh_human_readable: String,
    stop_reason: Option<&'static str>,
    stop_event_actor: Option<&'static str>,
    origin: (),
    has_payment: bool,
    is_paid: (),
    connector_type_name: &'static str,
    uuid: String,
}

/// `"HH:MM:SS"` (hours may exceed 24).
pub(crate) fn hms(secs: i64) -> String {
    let s = secs.max(0);
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// A number with `decimals` places and the pt-BR decimal comma.
pub(crate) fn pt_br(value: f64, decimals: usize) -> String {
    format!("{value:.decimals$}").replace('.', ",")
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// `YYYY-MM-DD HH:mm:ss` in America/Sao_Paulo.
pub(crate) fn heartbeat_format(t: DateTime<Utc>) -> String {
    t.with_timezone(&Sao_Paulo)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// `YYYY-MM-DDTHH:mm:ss.SSSZ` in UTC.
pub(crate) fn iso_millis(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// `DD/MM/YYYY HH:mm:ss` in UTC, or in São Paulo for [`TimeMode::Local`].
pub(crate) fn tx_format(t: DateTime<Utc>, mode: TimeMode) -> String {
    const F: &str = "%d/%m/%Y %H:%M:%S";
    match mode {
        TimeMode::Local => t.with_timezone(&Sao_Paulo).format(F).to_string(),
        TimeMode::Utc | TimeMode::TruncateToDate => t.format(F).to_string(),
    }
}

/// Options of a `/chargepoints` rendering.
#[derive(Debug, Default)]
pub(crate) struct ChargepointsView<'a> {
    /// `chargeBoxId` filter.
    pub charge_box_id: Option<&'a str>,
    /// Omit `lastStatus.status` (shape-drift fault).
    pub drop_status: bool,
}

/// Renders the charger list as of `now` (the engine must have been advanced to `now`).
pub(crate) fn chargepoints(
    engine: &Engine,
    now: DateTime<Utc>,
    view: &ChargepointsView<'_>,
) -> Vec<ChargePoint> {
    let fleet = engine.fleet();
    fleet
        .chargers
        .iter()
        .zip(engine.chargers.iter())
        .enumerate()
        .filter(|(_, (spec, _))| view.charge_box_id.is_none_or(|id| id == spec.charge_box_id))
        .map(|(c, (spec, state))| {
            let connectors: Vec<Connector> = state
                .connectors
                .iter()
                .map(|co| {
                    let user = co.tx.and_then(|ti| {
                        let tx = &engine.txs[ti];
                        if tx.tag_empty {
                            return None;
                        }
                        tx.resident
                            .and_then(|r| fleet.residents.get(r))
                            .map(|r| r.name.clone())
                    });
                    let user = match co.reported.status {
                        ConnectorStatus::Charging
                        | ConnectorStatus::SuspendedEV
                        | ConnectorStatus::SuspendedEVSE => user,
                        _ => None,
                    };
                    Connector {
                        connector_pk: co.connector_pk,
                        connector_id: co.connector_id,
                        power_max: spec.power_max_wire,
                        connector_uuid: (),
                        last_status: LastStatus {
                            time_stamp: iso_millis(co.reported.at),
                            error_code: co.reported.error_code.clone(),
                            erro_info: co.reported.error_code.clone(),
                            connector_uuid: (),
                            status: (!view.drop_status).then(|| co.reported.status.as_str()),
                            usage: state.usage,
                            connector_type_pk: (),
                            power_max: (),
                            payment_charge_type_income: (),
                            money_per_kilowatt_income: (),
                            money_per_duration_income: (),
                            money_per_transaction_income: (),
                            tax_income: (),
                            idle_fee_default_amount: (),
                            has_payment: (),
                            dynamic_pricing_uuid: (),
                            idle_connector_fee: (),
                            total_duration: (now - co.reported.at).num_seconds().max(0),
                            soc_percentage: (),
                            current_charging_user_name: user,
                            money_per_duration_income_human_readable: "null por minuto",
                            money_per_kilowatt_income_human_readable: "null por kWh",
                            money_idle_fee_default_amount_human_readable: (),
                            money_per_transaction_income_human_readable: (),
                            tax_income_human_readable: (),
                        },
                        connector_type: "Type 2",
                        current_type: "alternating_current",
                        speed: "SLOW",
                        unusual_status: (),
                        dynamic_pricing_uuid: (),
                        money_per_kilowatt_income: 0,
                        money_per_duration_income: 0,
                        charge_box_uuid: spec.uuid.clone(),
                    }
                })
                .collect();
            let available = connectors
                .iter()
                .zip(state.connectors.iter())
                .filter(|(_, co)| co.reported.status == ConnectorStatus::Available)
                .count();
            let wiring = spec.reports_wiring;
            ChargePoint {
                charge_box_pk: spec.charge_box_pk,
                charge_box_id: spec.charge_box_id.clone(),
                endpoint_address: "",
                ocpp_protocol: "ocpp1.6J",
                uuid: spec.uuid.clone(),
                charge_point_vendor: "Intelbras",
                charge_point_model: spec.model.clone(),
                charge_point_serial_number: spec.charge_box_id.clone(),
                charge_box_serial_number: (),
                fw_version: spec.fw_version.clone(),
                description: spec.description.clone(),
                last_heartbeat_timestamp: heartbeat_format(engine.heartbeat_at(c, now)),
                location_latitude: spec.latitude,
                location_longitude: spec.longitude,
                usage: state.usage,
                month_consumption: state.month_wh.round() as i64,
                connectors,
                address: Address {
                    address_pk: 90412,
                    street: STREET,
                    complement: (),
                    house_number: HOUSE_NUMBER,
                    zip_code: ZIP,
                    district: (),
                    city: CITY,
                    city_number: (),
                    state: STATE,
                    country: "BR",
                    block: (),
                    apartment: (),
                    empty: false,
                    incomplete: true,
                },
                active: true,
                is_open_24_hours: true,
                type_of: "PRIVATE",
                origin: "MOVE",
                money_per_kilowatt_cost: 0,
                money_per_duration_cost: 0,
                money_per_transaction_cost: 0,
                money_per_transaction_income: 0,
                money_per_kilowatt_income: 0,
                money_per_duration_income: 0,
                registration_status: (),
                show_location: false,
                charge_box_group_pk: 3307,
                charge_box_group_name: fleet.site_name.clone(),
                tenant_name: "exemplo_gestao",
                open_time: (),
                close_time: (),
                owner: (),
                master: (),
                is_hubject_compatible: false,
                reservation: false,
                has_payment: false,
                external_id: (),
                payment_charge_type_cost: "KWH",
                payment_charge_type_income: "KWH",
                payment_charge_by_income: "CHARGE_BOX",
                tax_income: 0,
                tenant_pk: 731,
                tenant_device_reader: true,
                device_reader_mac: (),
                is_ocpi_compatible: false,
                is_mode1_and2_only: (),
                insert_timestamp: "2025-11-18 10:22:41",
                system: wiring.then_some("SINGLE_PHASE"),
                phase: wiring.then_some("A"),
                voltage: wiring.then_some(220),
                charging_rate_unit: wiring.then_some("A"),
                has_soc_percentage: spec.has_soc_percentage,
                speed_count: SpeedCount {
                    nr_slow_total: state.connectors.len(),
                    nr_slow_available: available,
                    nr_fast_total: 0,
                    nr_fast_available: 0,
                },
            }
        })
        .collect()
}

/// Renders the transactions whose start lies in `[from, to]`, newest first.
pub(crate) fn transactions(
    engine: &Engine,
    now: DateTime<Utc>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    mode: TimeMode,
) -> Vec<TransactionWire> {
    let fleet = engine.fleet();
    let mut out: Vec<TransactionWire> = engine
        .txs
        .iter()
        .filter(|tx| tx.start >= from && tx.start <= to)
        .map(|tx| {
            let spec = &fleet.chargers[tx.charger];
            let co = &engine.chargers[tx.charger].connectors[tx.connector];
            let stop = tx.stop.filter(|_| tx.stop_delivered_at.is_some());
            let duration = (stop.unwrap_or(now) - tx.start).num_seconds().max(0);
            let energy = tx.visible_energy_wh.round() as i64;
            let kwh = energy as f64 / 1000.0;
            let autonomy = round2(kwh * KM_PER_KWH);
            let co2 = round2(kwh * CO2_KG_PER_KWH);
            let idle = tx.visible_idle_s.floor() as i64;
            let resident = if tx.tag_empty {
                None
            } else {
                tx.resident.and_then(|r| fleet.residents.get(r))
            };
            TransactionWire {
                id: tx.id,
                connector_id: co.connector_id,
                connector_pk: co.connector_pk,
                charge_box_pk: spec.charge_box_pk,
                charge_box_uuid: spec.uuid.clone(),
                charge_box_id: spec.charge_box_id.clone(),
                charge_box_description: spec.description.clone(),
                ocpp_id_tag: if tx.tag_empty {
                    String::new()
                } else {
                    tx.reported_tag.clone()
                },
                ocpp_tag_pk: tx.tag_pk,
                start_timestamp: tx_format(tx.start, mode),
                stop_timestamp: stop.map(|s| tx_format(s, mode)),
                duration,
                duration_human_readable: hms(duration),
                duration_time: hms(duration),
                energy,
                energy_human_readable: format!("{} kWh", pt_br(kwh, 4)),
                start_value: format!("{}", tx.start_value_wh.round() as i64),
                stop_value: stop.map(|_| format!("{}", tx.start_value_wh.round() as i64 + energy)),
                user_name: resident.map(|r| r.wire_name.clone()),
                user_phone: resident.map(|r| r.phone.clone()),
                user_email: resident.map(|r| r.email.clone()),
                user_doc_number: resident.and_then(|r| r.doc_number.clone()),
                user_doc_type: resident.and_then(|r| r.doc_type.clone()),
                user_address_complement: resident.map(|r| r.apartment.text.clone()),
                user_address_street: resident.map(|_| STREET),
                user_address_house_number: resident.map(|_| HOUSE_NUMBER),
                user_address_city: resident.map(|_| CITY),
                user_address_state: resident.map(|_| STATE),
                user_uuid: resident.map(|r| r.uuid.clone()),
                user_pk: resident.map(|r| r.user_pk),
                address_street: STREET,
                address_house_number: HOUSE_NUMBER,
                address_city: CITY,
                address_state: STATE,
                address_complement: (),
                cost: (),
                cost_human_readable: (),
                income: (),
                income_human_readable: (),
                idle_duration: idle,
                idle_duration_human_readable: hms(idle),
                autonomy,
                autonomy_human_readable: format!("{} km", pt_br(autonomy, 2)),
                environ_indicator: co2,
                environ_indicator_human_readable: format!("{} Kg", pt_br(co2, 2)),
                km: autonomy,
                km_kwh: KM_PER_KWH,
                km_kwh_human_readable: format!("{} km/kWh", pt_br(KM_PER_KWH, 2)),
                stop_reason: stop.and(tx.stop_reason.map(|r| r.as_str())),
                stop_event_actor: stop.map(|_| "station"),
                origin: (),
                has_payment: false,
                is_paid: (),
                connector_type_name: "Type 2",
                uuid: tx.uuid.clone(),
            }
        })
        .collect();
    out.sort_by_key(|t| std::cmp::Reverse(t.id));
    out
}
