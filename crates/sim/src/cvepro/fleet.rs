//! The simulated site: chargers, residents, apartments and RFID tags.
//!
//! Everything here is generated from the seed alone, so the same seed always yields the same
//! fleet (names, tags, `ocppTagPk`s, UUIDs, charge box ids). The demo reads it through
//! `SimHandle::fleet()` to seed vetric's own database with the very residents whose tags the
//! simulated chargers will report.

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// What the fleet generator needs to know.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    /// Number of chargers (at least 1).
    pub chargers: usize,
    /// Seed of the generator.
    pub seed: u64,
    /// Condominium name, reported as `chargeBoxGroupName`.
    pub site_name: String,
    /// Residents generated per charger (the total is at least 8).
    pub residents_per_charger: usize,
    /// How many chargers (the last ones) get two connectors instead of one.
    pub dual_connector_chargers: usize,
}

/// The generated site.
#[derive(Debug, Clone, Serialize)]
pub struct Fleet {
    /// Condominium name (`chargeBoxGroupName`).
    pub site_name: String,
    /// Short name used in charger descriptions ("Palmeiras" → "Palmeiras 1").
    pub charger_prefix: String,
    /// The chargers, in `chargeBoxPk` order.
    pub chargers: Vec<ChargerSpec>,
    /// The residents, each with one or two tags.
    pub residents: Vec<Resident>,
}

/// One charger as the vendor knows it.
#[derive(Debug, Clone, Serialize)]
pub struct ChargerSpec {
    /// Position in `Fleet::chargers` (what the scripting API calls `charger`).
    pub index: usize,
    /// `chargeBoxPk`.
    pub charge_box_pk: i64,
    /// `chargeBoxId`, the OCPP identity (alphanumeric like `JDBM2300187K4` or numeric like
    /// `1122907711`).
    pub charge_box_id: String,
    /// Charger `uuid` (= `chargeBoxUuid` on transactions).
    pub uuid: String,
    /// `description`, the human name ("Palmeiras 1").
    pub description: String,
    /// `chargePointModel` ("145", "133", "146").
    pub model: String,
    /// `fwVersion`.
    pub fw_version: String,
    /// `powerMax` exactly as the wire reports it: W on most models, kW on model 133, null on
    /// some numeric units.
    pub power_max_wire: Option<i64>,
    /// The real maximum power in watts.
    pub power_max_w: u32,
    /// Whether this charger reports tags in lower case by default (numeric-id firmware).
    pub lowercase_tags: bool,
    /// The connectors.
    pub connectors: Vec<ConnectorSpec>,
    /// `locationLatitude`.
    pub latitude: f64,
    /// `locationLongitude`.
    pub longitude: f64,
    /// Single-phase wiring details are reported (model 145) or all null.
    pub reports_wiring: bool,
    /// `hasSocPercentage`.
    pub has_soc_percentage: bool,
    /// Sessions done before the simulation started (`usage` starts here).
    pub usage_base: i64,
    /// `monthConsumption` before the simulation started.
    pub month_consumption_base: i64,
}

/// One connector of a charger.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectorSpec {
    /// OCPP connector number (1-based).
    pub connector_id: u32,
    /// `connectorPk`.
    pub connector_pk: i64,
    /// Lifetime energy register at the start of the simulation, Wh.
    pub meter_start_wh: i64,
}

/// A resident of the condominium (a CVE-Pro user).
#[derive(Debug, Clone, Serialize)]
pub struct Resident {
    /// `userPk`.
    pub user_pk: i64,
    /// `userUuid`.
    pub uuid: String,
    /// Clean display name ("Maria Souza").
    pub name: String,
    /// `userName` exactly as the vendor reports it: sometimes lower case with a trailing space.
    pub wire_name: String,
    /// `userPhone`, E.164 ("+5582990001234").
    pub phone: String,
    /// `userEmail` (@example.com).
    pub email: String,
    /// `userDocNumber` (a CPF for some residents).
    pub doc_number: Option<String>,
    /// `userDocType` ("CPF" when a document is known).
    pub doc_type: Option<String>,
    /// The apartment.
    pub apartment: Apartment,
    /// The resident's tags (one RFID card, sometimes also a virtual tag).
    pub tags: Vec<Tag>,
}

/// An apartment.
#[derive(Debug, Clone, Serialize)]
pub struct Apartment {
    /// Block or tower ("A", "B").
    pub block: String,
    /// Unit number ("302").
    pub unit: String,
    /// `userAddressComplement`, free text as residents type it ("Bloco B Apto 1104").
    pub text: String,
}

/// An RFID card or app tag.
#[derive(Debug, Clone, Serialize)]
pub struct Tag {
    /// `ocppIdTag` in upper case (chargers with lowercase firmware report it lower-cased).
    pub id_tag: String,
    /// `ocppTagPk`, stable per tag.
    pub tag_pk: i64,
    /// Card or virtual.
    pub kind: TagKind,
}

/// Kind of tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TagKind {
    /// 8-hex RFID card UID.
    Card,
    /// 19-character app / virtual tag.
    Virtual,
}

const FIRST_NAMES: &[&str] = &[
    "Maria",
    "Jose",
    "Ana",
    "Joao",
    "Francisca",
    "Antonio",
    "Adriana",
    "Carlos",
    "Juliana",
    "Paulo",
    "Fernanda",
    "Lucas",
    "Patricia",
    "Marcos",
    "Aline",
    "Rafael",
    "Camila",
    "Pedro",
    "Beatriz",
    "Gabriel",
    "Larissa",
    "Ricardo",
    "Mariana",
    "Thiago",
    "Renata",
    "Bruno",
    "Leticia",
    "Eduardo",
    "Vanessa",
    "Rodrigo",
    "Tatiane",
    "Felipe",
    "Simone",
    "Diego",
    "Luciana",
    "Gustavo",
    "Cristina",
    "Andre",
    "Sandra",
    "Vinicius",
];
const LAST_NAMES: &[&str] = &[
    "Silva",
    "Santos",
    "Oliveira",
    "Souza",
    "Lima",
    "Pereira",
    "Ferreira",
    "Costa",
    "Rodrigues",
    "Almeida",
    "Nascimento",
    "Alves",
    "Carvalho",
    "Araujo",
    "Ribeiro",
    "Gomes",
    "Barbosa",
    "Melo",
    "Rocha",
    "Nunes",
    "Cavalcanti",
    "Teixeira",
    "Moura",
    "Correia",
    "Pinto",
];
const BLOCKS: &[&str] = &["A", "B", "C"];

/// First base of the `ocppTagPk` sequence (7 digits, as recorded).
const TAG_PK_BASE: i64 = 5_120_300;
/// First `userPk`.
const USER_PK_BASE: i64 = 1_199_000;

impl Fleet {
    /// Generates the fleet. Deterministic for a given spec.
    pub fn generate(spec: &FleetSpec) -> Fleet {
        let mut rng = StdRng::seed_from_u64(spec.seed ^ 0xF1EE_7000_0000_0001);
        let charger_prefix = spec
            .site_name
            .split_whitespace()
            .last()
            .unwrap_or("Carregador")
            .to_string();
        let n = spec.chargers.max(1);
        let chargers = (0..n)
            .map(|i| gen_charger(&mut rng, spec, &charger_prefix, i, n))
            .collect();
        let resident_count = (spec.residents_per_charger * n).max(8);
        let residents = gen_residents(&mut rng, spec, resident_count);
        Fleet {
            site_name: spec.site_name.clone(),
            charger_prefix,
            chargers,
            residents,
        }
    }

    /// Finds the resident owning a tag (case-insensitive), with the tag.
    pub fn find_tag(&self, id_tag: &str) -> Option<(&Resident, &Tag)> {
        self.residents.iter().find_map(|r| {
            r.tags
                .iter()
                .find(|t| t.id_tag.eq_ignore_ascii_case(id_tag))
                .map(|t| (r, t))
        })
    }

    /// Finds the resident owning a tag by its `ocppTagPk`.
    pub fn find_tag_pk(&self, tag_pk: i64) -> Option<(&Resident, &Tag)> {
        self.residents
            .iter()
            .find_map(|r| r.tags.iter().find(|t| t.tag_pk == tag_pk).map(|t| (r, t)))
    }

    /// Every tag of every resident, with the resident's index.
    pub fn all_tags(&self) -> Vec<(usize, &Tag)> {
        self.residents
            .iter()
            .enumerate()
            .flat_map(|(i, r)| r.tags.iter().map(move |t| (i, t)))
            .collect()
    }
}

/// A random UUID v4 string drawn from the given generator.
pub(crate) fn uuid_v4(rng: &mut impl Rng) -> String {
    let mut b: [u8; 16] = rng.random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn gen_charger(
    rng: &mut StdRng,
    spec: &FleetSpec,
    prefix: &str,
    i: usize,
    n: usize,
) -> ChargerSpec {
    // Rotate through the recorded hardware styles, in the recorded order: alphanumeric 145
    // (22 kW, powerMax in W), alphanumeric 133 (powerMax in kW), 145 again, numeric 146 with a
    // 10-digit id (7.4 kW, powerMax in W) and numeric 146 with a 16-digit id (powerMax null).
    // Numeric-id firmware reports tags in lower case.
    let style = [0, 1, 0, 2, 3][i % 5];
    let letter = (b'A' + rng.random_range(0..26u8)) as char;
    let digit = rng.random_range(0..10u8);
    let serial = rng.random_range(100..99_999u32);
    let (charge_box_id, model, fw, power_max_wire, power_max_w, lowercase) = match style {
        0 => (
            format!("JDBM23{serial:05}{letter}{digit}"),
            "145",
            "1.2.672",
            Some(22_000),
            22_000,
            false,
        ),
        1 => (
            format!("QUXM24{serial:05}{letter}{digit}"),
            "133",
            "1.2.657",
            Some(22),
            22_000,
            false,
        ),
        2 => (
            format!("11229{serial:05}"),
            "146",
            "1.3.104",
            Some(7_400),
            7_400,
            true,
        ),
        _ => (
            format!("00001240900{serial:05}"),
            "146",
            "1.3.104",
            None,
            7_400,
            true,
        ),
    };
    let connectors = if i >= n.saturating_sub(spec.dual_connector_chargers) {
        2
    } else {
        1
    };
    let base_pk = 3_471_102 + 7 * i as i64;
    ChargerSpec {
        index: i,
        charge_box_pk: 5811 + i as i64,
        charge_box_id,
        uuid: uuid_v4(rng),
        description: format!("{prefix} {}", i + 1),
        model: model.to_string(),
        fw_version: fw.to_string(),
        power_max_wire,
        power_max_w,
        lowercase_tags: lowercase,
        connectors: (1..=connectors)
            .map(|c| ConnectorSpec {
                connector_id: c,
                connector_pk: base_pk + i64::from(c) - 1,
                meter_start_wh: rng.random_range(200_000..4_000_000),
            })
            .collect(),
        latitude: -9.651_203 + 0.000_013 * i as f64,
        longitude: -35.708_917 - 0.000_009 * i as f64,
        reports_wiring: style == 0,
        has_soc_percentage: style < 2,
        usage_base: rng.random_range(20..240),
        month_consumption_base: rng.random_range(5_000..150_000),
    }
}

/// Units per block: 15 floors × 4 doors.
const UNITS_PER_BLOCK: usize = 60;

/// "A", "B", … "Z", then "T27", "T28", … for very large fleets.
fn block_label(index: usize) -> String {
    match BLOCKS.get(index) {
        Some(b) => (*b).to_string(),
        None => match u8::try_from(index).ok().filter(|i| *i < 26) {
            Some(i) => char::from(b'A' + i).to_string(),
            None => format!("T{}", index + 1),
        },
    }
}

fn gen_residents(rng: &mut StdRng, spec: &FleetSpec, count: usize) -> Vec<Resident> {
    let mut used_names = std::collections::HashSet::new();
    let mut used_units = std::collections::HashSet::new();
    let mut used_tags = std::collections::HashSet::new();
    let mut next_tag_pk = TAG_PK_BASE;
    let building = spec
        .site_name
        .trim_start_matches("Residencial ")
        .trim_start_matches("Condominio ")
        .to_string();
    // 15 floors × 4 doors = 60 units per block; add blocks as the fleet grows so that a free
    // unit always exists (two blocks, as in the recorded condominium, up to 120 residents).
    let blocks = count.div_ceil(UNITS_PER_BLOCK).max(2);
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let mut attempts = 0_u32;
        let name = loop {
            let first = FIRST_NAMES.choose(rng).copied().unwrap_or("Maria");
            let l1 = LAST_NAMES.choose(rng).copied().unwrap_or("Silva");
            let l2 = LAST_NAMES.choose(rng).copied().unwrap_or("Souza");
            let candidate = if l1 == l2 {
                format!("{first} {l1}")
            } else {
                format!("{first} {l1} {l2}")
            };
            attempts += 1;
            // Past a few thousand residents the name combinations run short: number them.
            let candidate = if attempts > 50 {
                format!("{candidate} {}", i + 1)
            } else {
                candidate
            };
            if used_names.insert(candidate.clone()) {
                break candidate;
            }
        };
        let (block, unit) = loop {
            let block = block_label(rng.random_range(0..blocks));
            let floor = rng.random_range(1..=15u32);
            let door = rng.random_range(1..=4u32);
            let unit = format!("{floor}0{door}");
            if used_units.insert((block.clone(), unit.clone())) {
                break (block, unit);
            }
        };
        let text = match rng.random_range(0..4u8) {
            0 => format!("Bloco {block} Apto {unit}"),
            1 => format!("Edf. {building} Apto {unit}-{block}"),
            2 => format!("apto {unit} {block}"),
            _ => format!("Torre {block} - {unit}"),
        };
        let wire_name = if rng.random_bool(0.2) {
            format!("{} ", name.to_lowercase())
        } else {
            name.clone()
        };
        let email = format!(
            "{}.{}{}@example.com",
            ascii_slug(name.split(' ').next().unwrap_or("morador")),
            ascii_slug(name.split(' ').next_back().unwrap_or("silva")),
            i + 1
        );
        let phone = format!(
            "+5582990{:06}",
            1000 + i * 37 + rng.random_range(0..30usize)
        );
        let (doc_number, doc_type) = if rng.random_bool(0.3) {
            (
                Some(format!(
                    "{:011}",
                    rng.random_range(10_000_000_000u64..99_999_999_999)
                )),
                Some("CPF".to_string()),
            )
        } else {
            (None, None)
        };
        let mut tags = Vec::new();
        let card = loop {
            let v: u32 = rng.random();
            let t = format!("{v:08X}");
            if used_tags.insert(t.clone()) {
                break t;
            }
        };
        next_tag_pk += rng.random_range(1..60);
        tags.push(Tag {
            id_tag: card,
            tag_pk: next_tag_pk,
            kind: TagKind::Card,
        });
        if rng.random_bool(0.35) {
            let virt = loop {
                let t: String = (0..19)
                    .map(|_| {
                        let v = rng.random_range(0..16u32);
                        char::from_digit(v, 16).unwrap_or('0').to_ascii_uppercase()
                    })
                    .collect();
                if used_tags.insert(t.clone()) {
                    break t;
                }
            };
            next_tag_pk += rng.random_range(1..60);
            tags.push(Tag {
                id_tag: virt,
                tag_pk: next_tag_pk,
                kind: TagKind::Virtual,
            });
        }
        out.push(Resident {
            user_pk: USER_PK_BASE + (i as i64) * 131 + rng.random_range(0..100),
            uuid: uuid_v4(rng),
            name,
            wire_name,
            phone,
            email,
            doc_number,
            doc_type,
            apartment: Apartment { block, unit, text },
            tags,
        });
    }
    out
}

fn ascii_slug(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_fleets_get_enough_apartments_and_names() {
        // Regression: with two fixed blocks of 60 units, 16 or more chargers (8 residents each)
        // looped forever looking for a free apartment.
        let spec = FleetSpec {
            chargers: 200,
            seed: 3,
            site_name: "Residencial Grande".into(),
            residents_per_charger: 8,
            dual_connector_chargers: 0,
        };
        let fleet = Fleet::generate(&spec);
        assert_eq!(fleet.residents.len(), 200 * spec.residents_per_charger);
        let units: std::collections::HashSet<_> = fleet
            .residents
            .iter()
            .map(|r| (r.apartment.block.clone(), r.apartment.unit.clone()))
            .collect();
        assert_eq!(units.len(), fleet.residents.len(), "apartments are unique");
        let names: std::collections::HashSet<_> =
            fleet.residents.iter().map(|r| r.name.clone()).collect();
        assert_eq!(names.len(), fleet.residents.len(), "names are unique");
    }
}
