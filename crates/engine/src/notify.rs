//! From a cycle's events to outbox rows: the bridge between the pure notification rules
//! ([`vetric_domain::notify`]) and the store's outbox, for the ingest.
//!
//! The rules decide *what* and *when* per audience; this room decides *to whom, by which
//! channel*: a resident message becomes one WhatsApp row whose phone the store takes from the
//! resident at insert; a manager or operator message becomes one row per configured recipient
//! and channel. Rows are written in the ingest's cycle transaction, next to the events that
//! caused them (DESIGN rule 4).
//!
//! Dedup keys: the rules' keys are unique within a site, the outbox's are global, so every key
//! is prefixed with `site:{id}:`; a manager or operator row adds `:{channel}:{recipient}` so
//! each recipient gets the message once. Alerts the rules mark as not for WhatsApp
//! ([`Rule::whatsapp_allowed`]) skip the WhatsApp recipients.

use vetric_domain::PhoneNumber;
use vetric_domain::notify::{Audience, NotificationPolicy, Plan, Planned};
use vetric_store::{CancelPending, NewNotification, SiteId};

/// Who hears about a site besides its residents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recipients {
    pub manager_whatsapp: Vec<PhoneNumber>,
    pub manager_email: Vec<String>,
    pub operator_whatsapp: Vec<PhoneNumber>,
    pub operator_email: Vec<String>,
    /// The operators' webhook URL (`[alerts] webhook_url`); the webhook row's recipient, as in
    /// the dispatcher's own alerts.
    pub operator_webhook: Option<String>,
}

/// What the ingest needs to enqueue notifications for a site.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteNotify {
    /// The policy used while the site has none stored (a policy saved on the settings page
    /// wins, read every cycle so edits apply without a restart).
    pub policy: NotificationPolicy,
    pub recipients: Recipients,
}

/// The outbox rows a [`Plan`] becomes for `site`.
pub fn expand(
    site: SiteId,
    plan: &Plan,
    recipients: &Recipients,
) -> (Vec<NewNotification>, Vec<CancelPending>) {
    let mut rows = Vec::new();
    for m in &plan.messages {
        match m.audience {
            Audience::Resident => {
                // Without a resident there is nobody to ask the store for a phone; the rules
                // never plan such a message, so skipping is the safe reading.
                if m.resident_id.is_some() {
                    rows.push(row(site, m, "whatsapp", None, None));
                }
            }
            Audience::Manager => targets(
                site,
                m,
                &recipients.manager_whatsapp,
                &recipients.manager_email,
                None,
                &mut rows,
            ),
            Audience::Operator => targets(
                site,
                m,
                &recipients.operator_whatsapp,
                &recipients.operator_email,
                recipients.operator_webhook.as_deref(),
                &mut rows,
            ),
        }
    }
    let cancellations = plan
        .cancel
        .iter()
        .map(|c| CancelPending {
            scope: c.scope.clone(),
            rules: c.rules.iter().map(|r| r.as_str().to_owned()).collect(),
            reason: c.reason.as_str().to_owned(),
        })
        .collect();
    (rows, cancellations)
}

fn targets(
    site: SiteId,
    m: &Planned,
    whatsapp: &[PhoneNumber],
    email: &[String],
    webhook: Option<&str>,
    rows: &mut Vec<NewNotification>,
) {
    if m.rule.whatsapp_allowed() {
        for phone in whatsapp {
            rows.push(row(site, m, "whatsapp", Some(phone.digits()), None));
        }
    }
    for address in email {
        rows.push(row(site, m, "email", Some(address), Some(&m.subject)));
    }
    if let Some(url) = webhook {
        rows.push(row(site, m, "webhook", Some(url), Some(&m.subject)));
    }
}

fn row(
    site: SiteId,
    m: &Planned,
    channel: &str,
    recipient: Option<&str>,
    subject: Option<&str>,
) -> NewNotification {
    let dedup_key = match recipient {
        Some(to) => format!("site:{site}:{}:{channel}:{to}", m.dedup_key),
        None => format!("site:{site}:{}", m.dedup_key),
    };
    NewNotification {
        dedup_key,
        rule: m.rule.as_str().to_owned(),
        audience: m.audience.as_str().to_owned(),
        channel: channel.to_owned(),
        resident_id: m.resident_id,
        recipient: recipient.map(str::to_owned),
        scope: m.scope.clone(),
        session_vendor_id: m.session_id,
        subject: subject.map(|s| format!("[vetric] {s}")),
        body: m.text.clone(),
        ref_code: m.ref_code.clone(),
        not_before: m.not_before,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use vetric_domain::notify::{PlanContext, plan_batch};
    use vetric_domain::{
        ChargerRef, Event, EventKind, FailureClass, ResidentRef, SessionInfo, Tag,
    };

    fn recipients() -> Recipients {
        Recipients {
            manager_whatsapp: vec![PhoneNumber::parse("+55 82 99000-0101").unwrap()],
            manager_email: vec!["sindico@example.com".into()],
            operator_whatsapp: vec![PhoneNumber::parse("+55 82 99000-0202").unwrap()],
            operator_email: vec!["ops@example.com".into()],
            operator_webhook: Some("http://127.0.0.1:9/hook".into()),
        }
    }

    fn plan_of(kinds: Vec<EventKind>) -> Plan {
        let policy = NotificationPolicy::default();
        let ctx = PlanContext {
            site_name: "Residencial Palmeiras",
            tz: chrono_tz::America::Sao_Paulo,
            policy: &policy,
            tariffs: None,
        };
        let at = Utc.with_ymd_and_hms(2026, 2, 11, 0, 40, 0).unwrap();
        let events: Vec<_> = kinds.into_iter().map(|k| Event::new(at, k)).collect();
        plan_batch(&events, &ctx)
    }

    fn charger() -> ChargerRef {
        ChargerRef {
            uuid: "u-1".into(),
            name: "Palmeiras 1".into(),
        }
    }

    #[test]
    fn residents_get_one_whatsapp_row_keyed_by_site() {
        let at = Utc.with_ymd_and_hms(2026, 2, 11, 0, 40, 0).unwrap();
        let session = SessionInfo {
            session_id: 42,
            charger: charger(),
            connector_id: 1,
            tag: Some(Tag::parse("AB").unwrap()),
            tag_pk: None,
            resident: Some(ResidentRef {
                resident_id: 7,
                name: "Maria".into(),
                apartment: "A-302".into(),
            }),
            start: at,
        };
        let plan = plan_of(vec![EventKind::SessionStarted { session }]);
        let (rows, cancels) = expand(SiteId(3), &plan, &recipients());
        assert!(cancels.is_empty());
        let [r] = rows.as_slice() else {
            panic!("{rows:?}")
        };
        assert_eq!(r.dedup_key, "site:3:session:42:session_started:resident");
        assert_eq!(
            (r.channel.as_str(), r.recipient.as_deref(), r.resident_id),
            ("whatsapp", None, Some(7))
        );
        assert_eq!(r.rule, "session_started");
        assert_eq!(r.audience, "resident");
        assert_eq!(r.scope, "session:42");
        assert_eq!(r.session_vendor_id, Some(42));
        assert!(r.body.ends_with(&r.ref_code));
    }

    #[test]
    fn managers_and_operators_get_one_row_per_recipient_and_channel() {
        let plan = plan_of(vec![
            EventKind::ChargerFaulted {
                charger: charger(),
                connector_id: 2,
                error_code: "GroundFailure".into(),
                since: Utc.with_ymd_and_hms(2026, 2, 11, 0, 0, 0).unwrap(),
            },
            EventKind::VendorDown {
                since: Utc.with_ymd_and_hms(2026, 2, 11, 0, 0, 0).unwrap(),
                failed_cycles: 3,
                last_failure: FailureClass::Unavailable,
            },
            EventKind::ChargerOnline {
                charger: charger(),
                last_heartbeat: None,
            },
        ]);
        let (rows, cancels) = expand(SiteId(3), &plan, &recipients());
        let got: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.audience.as_str(),
                    r.channel.as_str(),
                    r.recipient.clone().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("manager", "whatsapp", "5582990000101".to_owned()),
                ("manager", "email", "sindico@example.com".to_owned()),
                ("operator", "whatsapp", "5582990000202".to_owned()),
                ("operator", "email", "ops@example.com".to_owned()),
                ("operator", "webhook", "http://127.0.0.1:9/hook".to_owned()),
            ]
        );
        let keys: std::collections::BTreeSet<_> = rows.iter().map(|r| &r.dedup_key).collect();
        assert_eq!(keys.len(), rows.len());
        assert!(rows[1].dedup_key.ends_with(":email:sindico@example.com"));
        assert!(rows[0].subject.is_none() && rows[1].subject.is_some());
        assert_eq!(cancels.len(), 1);
        assert_eq!(cancels[0].rules, ["charger_offline"]);
        assert_eq!(cancels[0].reason, "charger_back");
    }
}
