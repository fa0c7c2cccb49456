//! Issuing a monthly statement (BILLING.md; issue #8): the one entry point every caller uses —
//! the web "Emitir extrato" button and `vetric statement --issue` — so that issuing and
//! everything that must happen with it stay in one place.
//!
//! Issuing freezes the statement as the next version of the month and, in the SAME store
//! transaction, enqueues its announcements (issue #8 item 8; DESIGN rule 4): an issue and its
//! messages are written together or not at all.
//!
//! * **Managers, by e-mail** ([`Rule::StatementIssuedManager`], on by default): one e-mail per
//!   manager of the site ([`Store::site_manager_emails`]: active `manager` users who may see
//!   the site; admins are not e-mailed), subject `Extrato de recarga MM/AAAA — <site> (versão
//!   N)`, the per-apartment table and totals, and a link to the statement's page when
//!   `public_url` is configured.
//! * **Residents, on WhatsApp** ([`Rule::StatementApartmentSummary`], opt-in: off until the
//!   site turns it on on the notification settings page): one message per active resident of
//!   each apartment with a line, with that apartment's summary; a resident who opted out of the
//!   rule gets nothing, one without a phone gets a row cancelled as `no_phone` (the log says
//!   why).
//!
//! Outbox keys are `site:{id}:statement:{YYYY-MM}:v{N}:{rule}` plus `:email:{address}` or
//! `:{resident_id}`: enqueuing the same version again adds nothing; a new version is announced
//! again. Templates are the site's (editable like every rule's).

use std::collections::BTreeSet;
use tracing::warn;
use vetric_domain::StatementInput;
use vetric_domain::notify::{
    Audience, NotificationPolicy, PlanContext, Planned, Rule, StatementResident,
    plan_statement_issued,
};
use vetric_domain::statement::compute;
use vetric_store::{AuditEntry, IssuedStatement, NewNotification, SiteId, Store, StoreError};

/// What issuing needs besides the statement itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssueContext {
    /// The configuration's `public_url` (`https://vetric.example.com/`): the managers' e-mail
    /// links to the statement's page. `None`: no link.
    pub public_url: Option<String>,
    /// The latest version the caller saw when it read the draft (0: none). When set, issuing
    /// is refused with [`StoreError::Conflict`] if another version was issued meanwhile, so
    /// two people issuing from the same page make one version, not two identical ones.
    pub expected_latest: Option<i64>,
}

impl IssueContext {
    pub fn new(public_url: Option<impl ToString>) -> Self {
        Self {
            public_url: public_url.map(|u| u.to_string()),
            expected_latest: None,
        }
    }

    /// See [`Self::expected_latest`].
    pub fn expecting_latest(mut self, version: i64) -> Self {
        self.expected_latest = Some(version);
        self
    }
}

/// Issues the statement computed from `input` for `site` as the month's next version, with
/// `audit` (its `at` and `user_id` are the issue's time and author), and enqueues its
/// announcements in the same transaction (see the module docs).
pub async fn issue(
    store: &Store,
    site: SiteId,
    input: &StatementInput,
    audit: &AuditEntry,
    ctx: &IssueContext,
) -> Result<IssuedStatement, StoreError> {
    let policy = site_policy(store, site).await?;
    let managers = store.site_manager_emails(site).await?;
    let residents = if policy.enabled(Rule::StatementApartmentSummary) {
        summary_residents(store, site).await?
    } else {
        Vec::new()
    };
    let slug = store
        .sites()
        .await?
        .into_iter()
        .find(|s| s.id == site)
        .map(|s| s.slug)
        .ok_or_else(|| StoreError::NotFound {
            what: format!("site {site}"),
        })?;
    let statement = compute(input);
    let month = input.month;
    let plan_ctx = PlanContext {
        site_name: &input.site_name,
        tz: input.tz,
        policy: &policy,
        tariffs: None,
    };
    let messages = |version: i64| {
        let link = ctx.public_url.as_deref().map(|base| {
            format!(
                "{}/sites/{slug}/statements?month={month}&version={version}",
                base.trim_end_matches('/')
            )
        });
        let planned = plan_statement_issued(
            &plan_ctx,
            &statement,
            version,
            audit.at,
            link.as_deref(),
            &residents,
        );
        rows(site, &planned, &managers)
    };
    store
        .issue_statement_with_messages(site, input, audit, ctx.expected_latest, messages)
        .await
}

/// The site's stored policy, or the defaults (as the dispatcher reads it).
async fn site_policy(store: &Store, site: SiteId) -> Result<NotificationPolicy, StoreError> {
    Ok(match store.site_policy(site).await? {
        None => NotificationPolicy::default(),
        Some(row) => serde_json::from_value(row.policy).unwrap_or_else(|e| {
            warn!(%site, error = %e, "stored notification policy unreadable; using the defaults");
            NotificationPolicy::default()
        }),
    })
}

/// The active residents who have not opted out of the apartment summary.
async fn summary_residents(
    store: &Store,
    site: SiteId,
) -> Result<Vec<StatementResident>, StoreError> {
    let rule = Rule::StatementApartmentSummary.as_str();
    let mut out = Vec::new();
    for r in store.residents(site).await? {
        if !r.active {
            continue;
        }
        let opted_out = store
            .resident_prefs(r.id)
            .await?
            .is_some_and(|p| p.opted_out.iter().any(|o| o == rule));
        if opted_out {
            continue;
        }
        out.push(StatementResident {
            resident_id: r.id.0,
            apartment: r.apartment_label(),
            name: r.name,
        });
    }
    Ok(out)
}

/// The outbox rows of the planned messages: the managers' message once per address (e-mail),
/// a resident's once (WhatsApp; the store takes the phone at insert).
fn rows(site: SiteId, planned: &[Planned], managers: &[String]) -> Vec<NewNotification> {
    let mut out = Vec::new();
    for m in planned {
        let base = NewNotification {
            dedup_key: format!("site:{site}:{}", m.dedup_key),
            rule: m.rule.as_str().to_owned(),
            audience: m.audience.as_str().to_owned(),
            channel: "whatsapp".to_owned(),
            resident_id: m.resident_id,
            recipient: None,
            scope: m.scope.clone(),
            session_vendor_id: None,
            subject: Some(m.subject.clone()),
            body: m.text.clone(),
            ref_code: m.ref_code.clone(),
            not_before: m.not_before,
        };
        match m.audience {
            Audience::Resident if m.resident_id.is_some() => out.push(base),
            Audience::Manager => {
                let mut seen = BTreeSet::new();
                for address in managers {
                    let address = address.trim();
                    if address.is_empty() || !seen.insert(address.to_lowercase()) {
                        continue;
                    }
                    out.push(NewNotification {
                        dedup_key: format!("{}:email:{}", base.dedup_key, address.to_lowercase()),
                        channel: "email".to_owned(),
                        recipient: Some(address.to_owned()),
                        ..base.clone()
                    });
                }
            }
            // The plan has no other audience for statements.
            Audience::Resident | Audience::Operator => {}
        }
    }
    out
}
