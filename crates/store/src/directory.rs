//! Sites, apartments, residents, tags and who owned which tag when.

use crate::error::{Ctx, StoreError};
use crate::manage::{TagGrant, grant_in};
use crate::model::{
    ApartmentId, NewResident, ResidentId, ResidentRow, SiteId, SiteRow, TagOwnershipRaw,
    TagOwnershipRow, apartment_label,
};
use crate::store::{Backend, Store, in_tx, with_pool};

/// Finds or creates an apartment inside the transaction `$tx` (block and unit compare
/// case-insensitively; the first spelling is kept). Evaluates to `ApartmentId`, `?` on error.
macro_rules! apartment_in {
    ($tx:ident, $site:expr, $block:expr, $unit:expr) => {{
        let (site, (block, unit)) = ($site, apartment_parts($block, $unit)?);
        const FIND: &str = "SELECT id FROM apartments WHERE site_id = $1 \
             AND lower(block) = lower($2) AND lower(unit) = lower($3)";
        let found = sqlx::query_scalar::<_, ApartmentId>(FIND)
            .bind(site)
            .bind(block)
            .bind(unit)
            .fetch_optional(&mut *$tx)
            .await
            .ctx("finding an apartment")?;
        match found {
            Some(id) => id,
            None => {
                let inserted = sqlx::query_scalar::<_, ApartmentId>(
                    "INSERT INTO apartments (site_id, block, unit, created_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING id",
                )
                .bind(site)
                .bind(block)
                .bind(unit)
                .bind(Utc::now())
                .fetch_optional(&mut *$tx)
                .await
                .ctx("adding an apartment")?;
                match inserted {
                    Some(id) => id,
                    // Someone else added it between our look and our insert.
                    None => sqlx::query_scalar::<_, ApartmentId>(FIND)
                        .bind(site)
                        .bind(block)
                        .bind(unit)
                        .fetch_one(&mut *$tx)
                        .await
                        .ctx("finding an apartment")?,
                }
            }
        }
    }};
}
pub(crate) use apartment_in;
use chrono::{DateTime, SecondsFormat, Utc};
use std::collections::BTreeMap;
use vetric_domain::Tag;

pub(crate) const TAG_OWNERSHIP_SELECT: &str = "SELECT t.tag, t.resident_id, r.name AS resident_name, \
     a.block, a.unit, t.valid_from, t.valid_to \
     FROM tags t JOIN residents r ON r.id = t.resident_id \
     JOIN apartments a ON a.id = r.apartment_id";

fn when(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Store {
    /// Creates the site or updates its name and time zone; returns its id. Idempotent.
    pub async fn upsert_site(
        &self,
        slug: &str,
        name: &str,
        timezone: &str,
    ) -> Result<SiteId, StoreError> {
        let now = Utc::now();
        with_pool!(self, |pool| sqlx::query_scalar::<_, SiteId>(
            "INSERT INTO sites (slug, name, timezone, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (slug) DO UPDATE SET name = excluded.name, timezone = excluded.timezone \
             RETURNING id",
        )
        .bind(slug)
        .bind(name)
        .bind(timezone)
        .bind(now)
        .fetch_one(pool)
        .await
        .ctx("upserting a site"))
    }

    pub async fn sites(&self) -> Result<Vec<SiteRow>, StoreError> {
        with_pool!(self, |pool| sqlx::query_as::<_, SiteRow>(
            "SELECT id, slug, name, timezone, created_at FROM sites ORDER BY slug"
        )
        .fetch_all(pool)
        .await
        .ctx("listing sites"))
    }

    pub async fn site_by_slug(&self, slug: &str) -> Result<Option<SiteRow>, StoreError> {
        with_pool!(self, |pool| sqlx::query_as::<_, SiteRow>(
            "SELECT id, slug, name, timezone, created_at FROM sites WHERE slug = $1"
        )
        .bind(slug)
        .fetch_optional(pool)
        .await
        .ctx("reading a site"))
    }

    /// The apartment `block`/`unit` of the site (compared case-insensitively), created when
    /// missing. The first spelling is kept.
    pub async fn upsert_apartment(
        &self,
        site: SiteId,
        block: &str,
        unit: &str,
    ) -> Result<ApartmentId, StoreError> {
        Ok(in_tx!(self, |tx, _backend| {
            apartment_in!(tx, site, block, unit)
        }))
    }

    /// Adds a resident (and their apartment when new).
    pub async fn add_resident(
        &self,
        site: SiteId,
        resident: &NewResident,
    ) -> Result<ResidentId, StoreError> {
        let now = Utc::now();
        Ok(in_tx!(self, |tx, _backend| {
            let apartment = apartment_in!(tx, site, &resident.block, &resident.unit);
            sqlx::query_scalar::<_, ResidentId>(
                "INSERT INTO residents (site_id, apartment_id, name, phone, email, active, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
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
            .ctx("adding a resident")?
        }))
    }

    /// The residents of a site with their apartments, by apartment then name.
    pub async fn residents(&self, site: SiteId) -> Result<Vec<ResidentRow>, StoreError> {
        with_pool!(self, |pool| sqlx::query_as::<_, ResidentRow>(
            "SELECT r.id, r.apartment_id, r.name, r.phone, r.email, r.active, a.block, a.unit, \
             r.created_at FROM residents r JOIN apartments a ON a.id = r.apartment_id \
             WHERE r.site_id = $1 ORDER BY lower(a.block), lower(a.unit), r.name, r.id"
        )
        .bind(site)
        .fetch_all(pool)
        .await
        .ctx("listing residents"))
    }

    /// Gives `tag` to `resident` over `[valid_from, valid_to)`. Refused with
    /// [`StoreError::Conflict`] naming the current owner when the tag already has an owner
    /// during any part of that interval. Also closes the tag's entry in the unknown-tag inbox.
    pub async fn add_tag(
        &self,
        site: SiteId,
        resident: ResidentId,
        tag: &Tag,
        valid_from: DateTime<Utc>,
        valid_to: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        if let Some(to) = valid_to
            && to <= valid_from
        {
            return Err(StoreError::Conflict {
                what: format!(
                    "tag {tag}: the ownership would end ({}) before it starts ({})",
                    when(to),
                    when(valid_from)
                ),
            });
        }
        let now = Utc::now();
        let grant = TagGrant {
            tag: tag.clone(),
            valid_from,
            valid_to,
        };
        // One grant, exactly as the resident pages make them (`grant_in!`: advisory lock on
        // PostgreSQL, overlap check, insert, inbox cleared), with this method's own wording.
        let granted: Result<(), StoreError> = async {
            in_tx!(self, |tx, backend| {
                grant_in!(tx, backend, site, resident, &grant, 0, now);
            });
            Ok(())
        }
        .await;
        granted.map_err(|e| match e {
            StoreError::TagTaken {
                owner,
                apartment,
                valid_from: from,
                valid_to: to,
                ..
            } => {
                let until = to.map_or_else(
                    || "with no end".to_owned(),
                    |t| format!("until {}", when(t)),
                );
                StoreError::Conflict {
                    what: format!(
                        "tag {tag} already belongs to {owner} ({apartment}) from {} {until}; \
                         end that ownership first",
                        when(from)
                    ),
                }
            }
            e => e,
        })
    }

    /// Ends the ownership of `tag` that is in force at `at` (sets its `valid_to` to `at`).
    pub async fn end_tag(
        &self,
        site: SiteId,
        tag: &Tag,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let done = with_pool!(self, |pool| sqlx::query(
            "UPDATE tags SET valid_to = $3 WHERE site_id = $1 AND tag = $2 \
             AND valid_from < $3 AND (valid_to IS NULL OR valid_to > $3)"
        )
        .bind(site)
        .bind(tag.as_str())
        .bind(at)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
        .ctx("ending a tag ownership"))?;
        if done == 0 {
            return Err(StoreError::NotFound {
                what: format!("an ownership of tag {tag} in force at {}", when(at)),
            });
        }
        Ok(())
    }

    /// Every ownership interval of every tag of the site, by tag then start.
    pub async fn tag_directory(&self, site: SiteId) -> Result<Vec<TagOwnershipRow>, StoreError> {
        let rows = with_pool!(self, |pool| sqlx::query_as::<_, TagOwnershipRaw>(
            sqlx::AssertSqlSafe(format!(
                "{TAG_OWNERSHIP_SELECT} WHERE t.site_id = $1 ORDER BY t.tag, t.valid_from"
            ))
        )
        .bind(site)
        .fetch_all(pool)
        .await
        .ctx("reading the tag directory"))?;
        Ok(rows.into_iter().map(TagOwnershipRow::from).collect())
    }

    /// Who owned `tag` at `at`, if anyone.
    pub async fn tag_owner_at(
        &self,
        site: SiteId,
        tag: &Tag,
        at: DateTime<Utc>,
    ) -> Result<Option<TagOwnershipRow>, StoreError> {
        let row = with_pool!(self, |pool| sqlx::query_as::<_, TagOwnershipRaw>(
            sqlx::AssertSqlSafe(format!(
                "{TAG_OWNERSHIP_SELECT} WHERE t.site_id = $1 AND t.tag = $2 \
                 AND t.valid_from <= $3 AND (t.valid_to IS NULL OR t.valid_to > $3) LIMIT 1"
            ))
        )
        .bind(site)
        .bind(tag.as_str())
        .bind(at)
        .fetch_optional(pool)
        .await
        .ctx("looking up a tag's owner"))?;
        Ok(row.map(TagOwnershipRow::from))
    }

    /// The vendor's `ocppTagPk` → tag mapping of the site.
    pub async fn tag_pk_map(&self, site: SiteId) -> Result<BTreeMap<i64, Tag>, StoreError> {
        let rows = with_pool!(self, |pool| sqlx::query_as::<_, (i64, String)>(
            "SELECT tag_pk, tag FROM tag_pk_map WHERE site_id = $1"
        )
        .bind(site)
        .fetch_all(pool)
        .await
        .ctx("reading the tag key map"))?;
        rows.into_iter()
            .map(|(pk, t)| {
                Tag::parse(&t)
                    .map(|t| (pk, t))
                    .map_err(|e| StoreError::Corrupt {
                        what: format!("tag key {pk}: {e}"),
                    })
            })
            .collect()
    }

    /// Records (or corrects) that the vendor's tag key `tag_pk` is `tag`.
    pub async fn learn_tag_pk(
        &self,
        site: SiteId,
        tag_pk: i64,
        tag: &Tag,
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        with_pool!(self, |pool| sqlx::query(
            "INSERT INTO tag_pk_map (site_id, tag_pk, tag, learned_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (site_id, tag_pk) DO UPDATE SET tag = excluded.tag, \
             learned_at = CASE WHEN tag_pk_map.tag = excluded.tag THEN tag_pk_map.learned_at \
             ELSE excluded.learned_at END"
        )
        .bind(site)
        .bind(tag_pk)
        .bind(tag.as_str())
        .bind(now)
        .execute(pool)
        .await
        .map(|_| ())
        .ctx("learning a tag key"))?;
        Ok(())
    }
}

pub(crate) fn apartment_parts<'a>(
    block: &'a str,
    unit: &'a str,
) -> Result<(&'a str, &'a str), StoreError> {
    let (block, unit) = (block.trim(), unit.trim());
    if block.is_empty() || unit.is_empty() {
        return Err(StoreError::Conflict {
            what: format!(
                "apartment {:?}: block and unit must both be given",
                apartment_label(block, unit)
            ),
        });
    }
    Ok((block, unit))
}
