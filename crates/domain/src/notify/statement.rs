//! Announcing an issued statement (issue #8 item 8): the site's managers get the statement by
//! e-mail ([`Rule::StatementIssuedManager`], on by default) and, when the site turns it on,
//! each resident gets their apartment's own summary on WhatsApp
//! ([`Rule::StatementApartmentSummary`], opt-in: off by default).
//!
//! Keys carry the month and the version (`statement:{YYYY-MM}:v{N}:{rule}`, plus
//! `:{resident_id}` for a resident), so enqueuing the same issue twice adds nothing and every
//! new version is announced again. The scope is `statement:{YYYY-MM}`.

use super::plan::{PlanContext, Planned, build_with};
use super::rule::Rule;
use crate::statement::{ApartmentLine, Statement};
use crate::{LocalMonth, format_kwh_pt_br, format_money_pt_br};
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::BTreeMap;

/// A resident who may get their apartment's summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementResident {
    pub resident_id: i64,
    pub name: String,
    /// The apartment as the statement labels it (`A-302`).
    pub apartment: String,
}

/// `02/2026`.
pub fn month_pt_br(month: LocalMonth) -> String {
    format!("{:02}/{}", month.month(), month.year())
}

/// The e-mail subject of an issued statement:
/// `Extrato de recarga 02/2026 — Residencial Palmeiras (versão 2)`.
pub fn statement_subject(site_name: &str, month: LocalMonth, version: i64) -> String {
    format!(
        "Extrato de recarga {} — {site_name} (versão {version})",
        month_pt_br(month)
    )
}

/// `12,345` (pt-BR, three places, no unit).
fn kwh_pt_br(value: rust_decimal::Decimal) -> String {
    format_kwh_pt_br(value).trim_end_matches(" kWh").to_owned()
}

/// The per-apartment table of the managers' e-mail, plain text in columns: one line per
/// apartment, the "sem morador" line, then the month's totals.
pub fn statement_table(statement: &Statement) -> String {
    let header = [
        "Apartamento",
        "Recargas",
        "kWh",
        "Ponta",
        "Fora de ponta",
        "Energia",
        "Ociosidade",
        "Total",
    ];
    let row = |l: &ApartmentLine| {
        vec![
            l.label().to_owned(),
            l.sessions.to_string(),
            kwh_pt_br(l.kwh),
            kwh_pt_br(l.peak_kwh),
            kwh_pt_br(l.offpeak_kwh),
            format_money_pt_br(l.energy_cost),
            format_money_pt_br(l.idle_fee),
            format_money_pt_br(l.total),
        ]
    };
    let t = &statement.totals;
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    rows.extend(statement.lines.iter().map(row));
    rows.push(vec![
        "Total".to_owned(),
        t.sessions.to_string(),
        kwh_pt_br(t.kwh),
        kwh_pt_br(t.peak_kwh),
        kwh_pt_br(t.offpeak_kwh),
        format_money_pt_br(t.energy_cost),
        format_money_pt_br(t.idle_fee),
        format_money_pt_br(t.total),
    ]);
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            r.iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn key(month: LocalMonth, version: i64, rule: Rule) -> String {
    format!("statement:{month}:v{version}:{}", rule.as_str())
}

/// The messages announcing version `version` of `statement`, issued at `issued_at`: one for
/// the managers (the engine sends it to each manager's address) and one per resident of an
/// apartment with a line, each only when its rule is on. `link` is the statement page's
/// address when vetric knows its public URL.
pub fn plan_statement_issued(
    ctx: &PlanContext,
    statement: &Statement,
    version: i64,
    issued_at: DateTime<Utc>,
    link: Option<&str>,
    residents: &[StatementResident],
) -> Vec<Planned> {
    let month = statement.month;
    let scope = format!("statement:{month}");
    let delay = |rule: Rule| TimeDelta::minutes(i64::from(ctx.policy.settings(rule).delay_min));
    let mut out = Vec::new();
    let common = |v: &mut BTreeMap<&'static str, String>| {
        v.insert("mes", month_pt_br(month));
        v.insert("versao", version.to_string());
    };
    let rule = Rule::StatementIssuedManager;
    if ctx.policy.enabled(rule) {
        let t = &statement.totals;
        let mut v = BTreeMap::new();
        common(&mut v);
        v.insert("tabela", statement_table(statement));
        v.insert("sessoes", t.sessions.to_string());
        v.insert("kwh", kwh_pt_br(t.kwh));
        v.insert("total", format_money_pt_br(t.total));
        v.insert(
            "link",
            link.map_or_else(String::new, |l| format!("Extrato completo: {l}")),
        );
        let mut planned = build_with(
            rule,
            &ctx.policy.settings(rule).template,
            ctx.site_name,
            &mut v,
            scope.clone(),
            key(month, version, rule),
            issued_at + delay(rule),
            None,
            None,
        );
        planned.subject = statement_subject(ctx.site_name, month, version);
        out.push(planned);
    }
    let rule = Rule::StatementApartmentSummary;
    if ctx.policy.enabled(rule) {
        for r in residents {
            let Some(line) = statement.line(Some(&r.apartment)) else {
                // No session of the apartment this month: nothing to tell.
                continue;
            };
            let mut v = BTreeMap::new();
            common(&mut v);
            v.insert("nome", r.name.clone());
            v.insert("apartamento", r.apartment.clone());
            v.insert("sessoes", line.sessions.to_string());
            v.insert("kwh", kwh_pt_br(line.kwh));
            v.insert("kwh_ponta", kwh_pt_br(line.peak_kwh));
            v.insert("kwh_fora_ponta", kwh_pt_br(line.offpeak_kwh));
            v.insert("custo_energia", format_money_pt_br(line.energy_cost));
            v.insert("taxa_ociosidade", format_money_pt_br(line.idle_fee));
            v.insert("total", format_money_pt_br(line.total));
            let mut planned = build_with(
                rule,
                &ctx.policy.settings(rule).template,
                ctx.site_name,
                &mut v,
                scope.clone(),
                format!("{}:{}", key(month, version, rule), r.resident_id),
                issued_at + delay(rule),
                Some(r.resident_id),
                None,
            );
            planned.subject = statement_subject(ctx.site_name, month, version);
            out.push(planned);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::{Audience, NotificationPolicy, RuleSettings};
    use crate::statement::{StatementInput, compute};
    use crate::tariff::TariffSpec;
    use crate::{
        ResidentRef, SessionRecord, SessionSource, Tag, TagDirectory, TariffHistory, TimePrecision,
    };
    use chrono::TimeZone;

    const TZ: chrono_tz::Tz = chrono_tz::America::Sao_Paulo;

    fn statement() -> Statement {
        let at =
            |d: u32, h: u32, m: u32| TZ.with_ymd_and_hms(2026, 2, d, h, m, 0).unwrap().to_utc();
        let session = |id: i64, tag: &str, start, stop, wh: i64, idle: i64| SessionRecord {
            vendor_id: id,
            charger: "Palmeiras 1".into(),
            tag: Tag::parse(tag).ok(),
            start,
            stop,
            energy_wh: wh,
            idle_seconds: idle,
            source: SessionSource::Imported,
            precision: TimePrecision::Minute,
            import_line: None,
            user_name: None,
        };
        let mut ownership = TagDirectory::new();
        for (tag, id, apt) in [("AA01", 1, "A-101"), ("BB02", 2, "B-202")] {
            ownership.insert(
                Tag::parse(tag).unwrap(),
                ResidentRef {
                    resident_id: id,
                    name: format!("Morador {id}"),
                    apartment: apt.into(),
                },
                Utc.with_ymd_and_hms(2025, 1, 1, 3, 0, 0).unwrap(),
                None,
            );
        }
        // Thursday 16:30 → 18:30, 10 kWh: R$ 18.05 (BILLING.md's first worked example).
        let input = StatementInput {
            site_name: "Residencial Palmeiras".into(),
            tz: TZ,
            month: LocalMonth::new(2026, 2).unwrap(),
            sessions: vec![
                session(1, "AA01", at(5, 16, 30), at(5, 18, 30), 10_000, 2_400),
                session(2, "FFFF", at(6, 10, 0), at(6, 11, 0), 2_000, 0),
            ],
            ownership,
            tariffs: TariffHistory::new([TariffSpec {
                peak_price: Some("3.08".into()),
                offpeak_price: Some("0.53".into()),
                peak_start: Some("17:30".into()),
                peak_end: Some("20:30".into()),
                idle_grace_min: Some(15.into()),
                idle_fee_per_min: Some("0.10".into()),
                idle_fee_cap: Some("30.00".into()),
                max_kwh: Some("150".into()),
                ..TariffSpec::default()
            }
            .validate()
            .unwrap()])
            .unwrap(),
        };
        compute(&input)
    }

    #[test]
    fn managers_get_the_table_and_residents_only_when_the_site_opts_in() {
        let s = statement();
        let residents = [
            StatementResident {
                resident_id: 1,
                name: "Ana".into(),
                apartment: "A-101".into(),
            },
            StatementResident {
                resident_id: 2,
                name: "Bruno".into(),
                apartment: "B-202".into(),
            },
        ];
        let mut policy = NotificationPolicy::default();
        fn ctx(p: &NotificationPolicy) -> PlanContext<'_> {
            PlanContext {
                site_name: "Residencial Palmeiras",
                tz: TZ,
                policy: p,
                tariffs: None,
            }
        }
        let at = Utc::now();
        let plan = plan_statement_issued(&ctx(&policy), &s, 2, at, None, &residents);
        assert_eq!(plan.len(), 1, "the resident rule is off by default");
        let m = &plan[0];
        assert_eq!(m.audience, Audience::Manager);
        assert_eq!(
            m.subject,
            "Extrato de recarga 02/2026 — Residencial Palmeiras (versão 2)"
        );
        assert_eq!(m.dedup_key, "statement:2026-02:v2:statement_issued_manager");
        assert!(
            m.text.contains("A-101") && m.text.contains("sem morador"),
            "{}",
            m.text
        );
        assert!(m.text.contains("R$ 20,55"), "18.05 + 2.50 idle: {}", m.text);
        assert!(!m.text.contains("Extrato completo"), "{}", m.text);
        assert!(m.text.ends_with(&format!("ref. {}", m.ref_code)));

        policy.rules.insert(
            Rule::StatementApartmentSummary,
            RuleSettings {
                enabled: true,
                ..RuleSettings::default_for(Rule::StatementApartmentSummary)
            },
        );
        let link = "https://v.example.com/sites/x/statements?month=2026-02";
        let plan = plan_statement_issued(&ctx(&policy), &s, 2, at, Some(link), &residents);
        assert!(plan[0].text.contains(link));
        // Bruno's apartment charged nothing this month: no message.
        assert_eq!(plan.len(), 2);
        let r = &plan[1];
        assert_eq!((r.audience, r.resident_id), (Audience::Resident, Some(1)));
        assert_eq!(
            r.dedup_key,
            "statement:2026-02:v2:statement_apartment_summary:1"
        );
        assert!(r.text.starts_with("Ana, o extrato"), "{}", r.text);
        assert!(r.text.contains("*Total: R$ 20,55*"), "{}", r.text);
        // A new version, new keys.
        let v3 = plan_statement_issued(&ctx(&policy), &s, 3, at, None, &residents);
        assert_ne!(v3[1].dedup_key, r.dedup_key);
    }

    #[test]
    fn a_policy_saved_before_the_rule_existed_keeps_it_off() {
        let p: NotificationPolicy = serde_json::from_str(
            r#"{"rules": {"session_started": {"enabled": true, "template": "x"}}}"#,
        )
        .unwrap();
        assert!(!p.enabled(Rule::StatementApartmentSummary));
        assert!(p.enabled(Rule::StatementIssuedManager));
    }
}
