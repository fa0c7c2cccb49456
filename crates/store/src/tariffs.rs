//! A site's tariff over time (BILLING.md "Inputs"; issue #5 part 0, issue #8 part 1): every
//! version ever recorded, from the config file (`[sites.tariff]`, upserted at start) or from the
//! site's tariff page, and the [`TariffHistory`] the cost of a session is computed with.
//!
//! Rows are append-only. For each effective date (or the undated tariff) the newest row is the
//! one in force; older rows for the same date are kept and listed as replaced, so a manager can
//! see what changed and who changed it. That rule is also what makes a config edit simple: a
//! changed `[sites.tariff]` becomes a new row at the next start, an unchanged one adds nothing.
//!
//! The store takes a [`Tariff`] (already validated by the domain: parse, don't validate), keeps
//! it in its normalised spec form as JSON text, and reads it back through the same validation,
//! so a row that no longer validates is reported as [`StoreError::Corrupt`], never used.

use crate::accounts::{AuditEntry, UserId, audit_in};
use crate::error::{Ctx, StoreError};
use crate::model::SiteId;
use crate::store::{Store, in_tx, with_pool};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use vetric_domain::{Tariff, TariffHistory, TariffSpec};

/// Where a tariff version came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TariffSource {
    /// `[sites.tariff]` in the config file, recorded at start.
    Config,
    /// The site's tariff page or `POST /api/v1/sites/{slug}/tariffs`.
    Ui,
}

impl TariffSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Ui => "ui",
        }
    }
}

impl fmt::Display for TariffSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for TariffSource {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        match s.as_str() {
            "config" => Ok(Self::Config),
            "ui" => Ok(Self::Ui),
            _ => Err(format!("unknown tariff source {s:?}")),
        }
    }
}

/// One recorded tariff version, newest first in [`Store::tariff_versions`].
#[derive(Debug, Clone, PartialEq)]
pub struct TariffVersionRow {
    pub id: i64,
    pub site_id: SiteId,
    pub tariff: Tariff,
    pub source: TariffSource,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<UserId>,
    /// The e-mail of `created_by`, when that user still exists.
    pub created_by_email: Option<String>,
    /// A newer row has the same effective date: this one is no longer used.
    pub replaced: bool,
}

impl TariffVersionRow {
    pub fn effective_from(&self) -> Option<NaiveDate> {
        self.tariff.effective_from()
    }
}

#[derive(sqlx::FromRow)]
struct RawRow {
    id: i64,
    site_id: SiteId,
    spec: String,
    source: String,
    created_at: DateTime<Utc>,
    created_by: Option<UserId>,
    created_by_email: Option<String>,
}

/// The newest row of each effective date (the rows passed newest first).
fn in_force(rows: &[TariffVersionRow]) -> Vec<&TariffVersionRow> {
    let mut seen = BTreeMap::new();
    for r in rows {
        seen.entry(r.effective_from()).or_insert(r);
    }
    seen.into_values().collect()
}

/// The normalised JSON of `tariff` (what is stored and compared).
fn spec_json(tariff: &Tariff) -> Result<String, StoreError> {
    serde_json::to_string(&tariff.to_spec()).map_err(|e| StoreError::Corrupt {
        what: format!("a tariff that cannot be written as JSON: {e}"),
    })
}

fn decode(raw: RawRow) -> Result<TariffVersionRow, StoreError> {
    let corrupt = |why: String| StoreError::Corrupt {
        what: format!("tariff version {} of site {}: {why}", raw.id, raw.site_id),
    };
    let spec: TariffSpec =
        serde_json::from_str(&raw.spec).map_err(|e| corrupt(format!("not a tariff spec: {e}")))?;
    let tariff = spec.validate().map_err(|problems| {
        corrupt(
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let source = TariffSource::try_from(raw.source.clone()).map_err(corrupt)?;
    Ok(TariffVersionRow {
        id: raw.id,
        site_id: raw.site_id,
        tariff,
        source,
        created_at: raw.created_at,
        created_by: raw.created_by,
        created_by_email: raw.created_by_email,
        replaced: false,
    })
}

fn decode_all(raw: Vec<RawRow>) -> Result<Vec<TariffVersionRow>, StoreError> {
    let mut rows = raw.into_iter().map(decode).collect::<Result<Vec<_>, _>>()?;
    let current: Vec<i64> = in_force(&rows).iter().map(|r| r.id).collect();
    for r in &mut rows {
        r.replaced = !current.contains(&r.id);
    }
    Ok(rows)
}

const SELECT: &str = "SELECT t.id, t.site_id, t.spec, t.source, t.created_at, t.created_by, \
     u.email AS created_by_email FROM site_tariffs t LEFT JOIN users u ON u.id = t.created_by \
     WHERE t.site_id = $1 ORDER BY t.id DESC";

const INSERT: &str = "INSERT INTO site_tariffs \
     (site_id, effective_from, spec, source, created_at, created_by) \
     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id";

/// Locks the site inside `$tx`, or fails with NotFound; `$context` names the step in a query
/// error. Evaluates to `()`. On PostgreSQL the row lock serialises the writers of one site
/// (SQLite's `BEGIN IMMEDIATE` already does): two instances starting together must not both
/// record the same config tariff, and two issues of one month get versions n and n + 1 rather
/// than a unique violation.
macro_rules! lock_site_in {
    ($tx:ident, $backend:ident, $site:expr, $context:expr) => {{
        let site: $crate::model::SiteId = $site;
        let sql = match $backend {
            $crate::store::Backend::Postgres => "SELECT id FROM sites WHERE id = $1 FOR UPDATE",
            $crate::store::Backend::Sqlite => "SELECT id FROM sites WHERE id = $1",
        };
        let found = sqlx::query_scalar::<_, $crate::model::SiteId>(sql)
            .bind(site)
            .fetch_optional(&mut *$tx)
            .await
            .ctx($context)?;
        if found.is_none() {
            return Err($crate::error::StoreError::NotFound {
                what: format!("site {site}"),
            });
        }
    }};
}

pub(crate) use lock_site_in;

impl Store {
    /// Every tariff version of the site, newest first, with who recorded it and whether a
    /// newer version for the same effective date replaced it.
    pub async fn tariff_versions(&self, site: SiteId) -> Result<Vec<TariffVersionRow>, StoreError> {
        let raw = with_pool!(self, |pool| sqlx::query_as::<_, RawRow>(SELECT)
            .bind(site)
            .fetch_all(pool)
            .await
            .ctx("listing tariff versions"))?;
        decode_all(raw)
    }

    /// The site's tariffs in force over time: for each effective date, the newest version.
    /// Empty when the site has no tariff. This is what session costs and statements use.
    pub async fn tariff_history(&self, site: SiteId) -> Result<TariffHistory, StoreError> {
        let rows = self.tariff_versions(site).await?;
        TariffHistory::new(in_force(&rows).into_iter().map(|r| r.tariff.clone())).map_err(|e| {
            // Impossible by construction (one tariff per effective date), kept as an error
            // rather than a panic.
            StoreError::Corrupt {
                what: format!("tariff history of site {site}: {e}"),
            }
        })
    }

    /// Records `tariff` from the config file for `site` unless the version in force for its
    /// effective date already is this very tariff from the config. Idempotent: starting twice
    /// with the same file adds nothing. Returns the new row's id when one was added; the
    /// addition is audited (no user: the config file did it).
    pub async fn upsert_config_tariff(
        &self,
        site: SiteId,
        tariff: &Tariff,
    ) -> Result<Option<i64>, StoreError> {
        let json = spec_json(tariff)?;
        let now = Utc::now();
        Ok(in_tx!(self, |tx, backend| {
            lock_site_in!(tx, backend, site, "locking a site for its tariff");
            let raw = sqlx::query_as::<_, RawRow>(SELECT)
                .bind(site)
                .fetch_all(&mut *tx)
                .await
                .ctx("listing tariff versions")?;
            let rows = decode_all(raw)?;
            let same = rows
                .iter()
                .find(|r| r.effective_from() == tariff.effective_from())
                .is_some_and(|r| r.source == TariffSource::Config && &r.tariff == tariff);
            if same {
                None
            } else {
                let id = sqlx::query_scalar::<_, i64>(INSERT)
                    .bind(site)
                    .bind(tariff.effective_from())
                    .bind(&json)
                    .bind(TariffSource::Config.as_str())
                    .bind(now)
                    .bind(None::<UserId>)
                    .fetch_one(&mut *tx)
                    .await
                    .ctx("recording a config tariff")?;
                let entry = AuditEntry::new(now, None, "tariff_config", format!("site:{site}"))
                    .with_detail(serde_json::json!({
                        "site_id": site.0,
                        "tariff_version": id,
                        "effective_from": tariff.effective_from(),
                    }));
                audit_in!(tx, &entry);
                Some(id)
            }
        }))
    }

    /// Adds a tariff version made on the tariff page (or its API twin) by the user of `audit`,
    /// with `audit`, in one transaction. A version for an effective date that already has one
    /// replaces it from then on (the old row stays, listed as replaced). Returns the new id.
    pub async fn add_tariff(
        &self,
        site: SiteId,
        tariff: &Tariff,
        audit: &AuditEntry,
    ) -> Result<i64, StoreError> {
        let json = spec_json(tariff)?;
        Ok(in_tx!(self, |tx, backend| {
            lock_site_in!(tx, backend, site, "locking a site for its tariff");
            let id = sqlx::query_scalar::<_, i64>(INSERT)
                .bind(site)
                .bind(tariff.effective_from())
                .bind(&json)
                .bind(TariffSource::Ui.as_str())
                .bind(audit.at)
                .bind(audit.user_id)
                .fetch_one(&mut *tx)
                .await
                .ctx("adding a tariff version")?;
            let mut entry = audit.clone();
            if let serde_json::Value::Object(map) = &mut entry.detail {
                map.insert("tariff_version".into(), serde_json::json!(id));
            }
            audit_in!(tx, &entry);
            id
        }))
    }
}
