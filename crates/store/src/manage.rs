//! What managers change from the dashboard: residents (with their first tags, in one
//! transaction), their details, tag grants and ends, and the unknown-tag inbox. Every change
//! takes the acting user's [`AuditEntry`] and writes it in the same transaction
//! (RELIABILITY.md R6): the change and its audit row are kept together or not at all.

use crate::accounts::{AuditEntry, audit_in};
use crate::directory::{TAG_OWNERSHIP_SELECT, apartment_in, apartment_parts};
use crate::error::{Ctx, StoreError};
use crate::model::{
    ApartmentId, NewResident, ResidentId, ResidentRow, SiteId, TagOwnershipRaw, TagOwnershipRow,
};
use crate::store::{Backend, Store, in_tx, with_pool};
use chrono::{DateTime, Utc};
use serde::Serialize;
use vetric_domain::Tag;

/// A tag to give a resident over `[valid_from, valid_to)` (open-ended when `valid_to` is
/// `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagGrant {
    pub tag: Tag,
    pub valid_from: DateTime<Utc>,
    pub valid_to: Option<DateTime<Utc>>,
}

/// New values of a resident's details. The apartment is created when it does not exist yet.
/// `phone` is stored as given: the caller validates it (`vetric_domain::PhoneNumber`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResidentUpdate {
    pub name: String,
    pub phone: String,
    pub email: Option<String>,
    pub block: String,
    pub unit: String,
    pub active: bool,
}

/// An apartment of a site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ApartmentRow {
    pub id: ApartmentId,
    pub block: String,
    pub unit: String,
}

const RESIDENT_SELECT: &str = "SELECT r.id, r.apartment_id, r.name, r.phone, r.email, r.active, \
     a.block, a.unit, r.created_at FROM residents r JOIN apartments a ON a.id = r.apartment_id";

/// Gives `$grant` (a `&TagGrant`, position `$index` in the write) to `$resident` inside the
/// transaction `$tx`: refuses an overlap with [`StoreError::TagTaken`], and closes the tag's
/// entry in the unknown-tag inbox.
macro_rules! grant_in {
    ($tx:ident, $backend:ident, $site:expr, $resident:expr, $grant:expr, $index:expr, $now:expr) => {{
        let (site, resident, g, index): (SiteId, ResidentId, &TagGrant, usize) =
            ($site, $resident, $grant, $index);
        if let Some(to) = g.valid_to
            && to <= g.valid_from
        {
            return Err(StoreError::Conflict {
                what: format!(
                    "tag {}: the ownership would end ({to}) before it starts ({})",
                    g.tag, g.valid_from
                ),
            });
        }
        if $backend == Backend::Postgres {
            // The same lock as `Store::add_tag`: two grants of one tag never both pass.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(format!("vetric.tag/{site}/{}", g.tag))
                .execute(&mut *$tx)
                .await
                .ctx("locking a tag")?;
        }
        let overlap = sqlx::query_as::<_, TagOwnershipRaw>(sqlx::AssertSqlSafe(format!(
            "{TAG_OWNERSHIP_SELECT} WHERE t.site_id = $1 AND t.tag = $2 \
             AND ($4 IS NULL OR t.valid_from < $4) \
             AND (t.valid_to IS NULL OR t.valid_to > $3) \
             ORDER BY t.valid_from LIMIT 1"
        )))
        .bind(site)
        .bind(g.tag.as_str())
        .bind(g.valid_from)
        .bind(g.valid_to)
        .fetch_optional(&mut *$tx)
        .await
        .ctx("checking tag ownership")?;
        if let Some(o) = overlap {
            let o = TagOwnershipRow::from(o);
            return Err(StoreError::TagTaken {
                index,
                tag: o.tag.as_str().to_owned(),
                owner: o.resident_name,
                apartment: o.apartment_label,
                valid_from: o.valid_from,
                valid_to: o.valid_to,
            });
        }
        let inserted = sqlx::query(
            "INSERT INTO tags (site_id, tag, resident_id, valid_from, valid_to, created_at) \
             SELECT $1, $2, r.id, $4, $5, $6 FROM residents r WHERE r.id = $3 AND r.site_id = $1",
        )
        .bind(site)
        .bind(g.tag.as_str())
        .bind(resident)
        .bind(g.valid_from)
        .bind(g.valid_to)
        .bind($now)
        .execute(&mut *$tx)
        .await
        .ctx("adding a tag")?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: format!("resident {resident} in site {site}"),
            });
        }
        sqlx::query(
            "UPDATE unknown_tags SET resolved_at = $3 \
             WHERE site_id = $1 AND tag = $2 AND resolved_at IS NULL",
        )
        .bind(site)
        .bind(g.tag.as_str())
        .bind($now)
        .execute(&mut *$tx)
        .await
        .ctx("resolving an unknown tag")?;
    }};
}

pub(crate) use grant_in;

impl Store {
    /// Adds a resident (and their apartment when new) with `tags`, and `audit`, in one
    /// transaction. A tag that overlaps a stored ownership (or another of `tags`) is refused
    /// with [`StoreError::TagTaken`] naming its position and current owner, and nothing is
    /// kept: no resident, no apartment, no tag, no audit row. `audit.target` is filled with
    /// the new resident's id when empty.
    pub async fn create_resident(
        &self,
        site: SiteId,
        resident: &NewResident,
        tags: &[TagGrant],
        audit: &AuditEntry,
    ) -> Result<ResidentId, StoreError> {
        let now = audit.at;
        Ok(in_tx!(self, |tx, backend| {
            let apartment = apartment_in!(tx, site, &resident.block, &resident.unit);
            let id = sqlx::query_scalar::<_, ResidentId>(
                "INSERT INTO residents (site_id, apartment_id, name, phone, email, active, \
                 created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .bind(site)
            .bind(apartment)
            .bind(resident.name.trim())
            .bind(resident.phone.trim())
            .bind(resident.email.as_deref().map(str::trim))
            .bind(true)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .ctx("adding a resident")?;
            for (i, g) in tags.iter().enumerate() {
                grant_in!(tx, backend, site, id, g, i, now);
            }
            let mut entry = audit.clone();
            if entry.target.is_empty() {
                entry.target = format!("resident:{id}");
            }
            audit_in!(tx, &entry);
            id
        }))
    }

    /// Changes a resident's details (moving them to another apartment, created when new), with
    /// `audit`, in one transaction. [`StoreError::NotFound`] when the resident is not the
    /// site's.
    pub async fn update_resident(
        &self,
        site: SiteId,
        resident: ResidentId,
        update: &ResidentUpdate,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        in_tx!(self, |tx, _backend| {
            let apartment = apartment_in!(tx, site, &update.block, &update.unit);
            let n = sqlx::query(
                "UPDATE residents SET apartment_id = $3, name = $4, phone = $5, email = $6, \
                 active = $7 WHERE id = $2 AND site_id = $1",
            )
            .bind(site)
            .bind(resident)
            .bind(apartment)
            .bind(update.name.trim())
            .bind(update.phone.trim())
            .bind(update.email.as_deref().map(str::trim))
            .bind(update.active)
            .execute(&mut *tx)
            .await
            .ctx("updating a resident")?
            .rows_affected();
            if n == 0 {
                return Err(StoreError::NotFound {
                    what: format!("resident {resident} in site {site}"),
                });
            }
            audit_in!(tx, audit);
        });
        Ok(())
    }

    /// Gives `grant` to `resident` (refused with [`StoreError::TagTaken`] on an overlap) and
    /// clears the tag from the unknown-tag inbox, with `audit`, in one transaction.
    pub async fn grant_tag(
        &self,
        site: SiteId,
        resident: ResidentId,
        grant: &TagGrant,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let now = audit.at;
        in_tx!(self, |tx, backend| {
            grant_in!(tx, backend, site, resident, grant, 0, now);
            audit_in!(tx, audit);
        });
        Ok(())
    }

    /// Ends `resident`'s ownership of `tag` that is in force at `at` (or starts after it:
    /// a future grant ending before it starts is removed), with `audit`, in one transaction.
    /// [`StoreError::NotFound`] when the resident has no such ownership.
    pub async fn end_resident_tag(
        &self,
        site: SiteId,
        resident: ResidentId,
        tag: &Tag,
        at: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        in_tx!(self, |tx, _backend| {
            let n = sqlx::query(
                "UPDATE tags SET valid_to = $4 WHERE site_id = $1 AND resident_id = $2 \
                 AND tag = $3 AND valid_from < $4 AND (valid_to IS NULL OR valid_to > $4)",
            )
            .bind(site)
            .bind(resident)
            .bind(tag.as_str())
            .bind(at)
            .execute(&mut *tx)
            .await
            .ctx("ending a tag ownership")?
            .rows_affected();
            if n == 0 {
                return Err(StoreError::NotFound {
                    what: format!("an ownership of tag {tag} by resident {resident} in force then"),
                });
            }
            audit_in!(tx, audit);
        });
        Ok(())
    }

    /// One resident of the site.
    pub async fn resident(
        &self,
        site: SiteId,
        resident: ResidentId,
    ) -> Result<Option<ResidentRow>, StoreError> {
        with_pool!(self, |pool| sqlx::query_as::<_, ResidentRow>(
            sqlx::AssertSqlSafe(format!(
                "{RESIDENT_SELECT} WHERE r.site_id = $1 AND r.id = $2"
            ))
        )
        .bind(site)
        .bind(resident)
        .fetch_optional(pool)
        .await
        .ctx("reading a resident"))
    }

    /// Every ownership interval of one resident's tags, newest first.
    pub async fn resident_tags(
        &self,
        site: SiteId,
        resident: ResidentId,
    ) -> Result<Vec<TagOwnershipRow>, StoreError> {
        let rows = with_pool!(self, |pool| sqlx::query_as::<_, TagOwnershipRaw>(
            sqlx::AssertSqlSafe(format!(
                "{TAG_OWNERSHIP_SELECT} WHERE t.site_id = $1 AND t.resident_id = $2 \
                 ORDER BY t.valid_from DESC, t.tag"
            ))
        )
        .bind(site)
        .bind(resident)
        .fetch_all(pool)
        .await
        .ctx("reading a resident's tags"))?;
        Ok(rows.into_iter().map(TagOwnershipRow::from).collect())
    }

    /// The apartments of the site, by block then unit.
    pub async fn apartments(&self, site: SiteId) -> Result<Vec<ApartmentRow>, StoreError> {
        with_pool!(self, |pool| sqlx::query_as::<_, ApartmentRow>(
            "SELECT id, block, unit FROM apartments WHERE site_id = $1 \
             ORDER BY lower(block), lower(unit), id"
        )
        .bind(site)
        .fetch_all(pool)
        .await
        .ctx("listing apartments"))
    }
}
