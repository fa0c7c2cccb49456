//! Bulk import of residents (a manager's CSV/XLSX upload): every resident of the file, their
//! apartments and tags, and one audit row summarising the import, in ONE transaction. A tag
//! that overlaps a stored ownership (or another grant of the same import) refuses the whole
//! import: nothing of the file is kept (RELIABILITY.md R7, "nothing stored half-way").

use crate::accounts::{AuditEntry, audit_in};
use crate::directory::{TAG_OWNERSHIP_SELECT, apartment_in, apartment_parts};
use crate::error::{Ctx, StoreError};
use crate::manage::{TagGrant, grant_in};
use crate::model::{
    ApartmentId, NewResident, ResidentId, SiteId, TagOwnershipRaw, TagOwnershipRow,
};
use crate::store::{Backend, Store, in_tx};
use chrono::Utc;

/// One resident of an import, with the tags to give them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportResident {
    pub resident: NewResident,
    pub tags: Vec<TagGrant>,
}

impl Store {
    /// Adds every resident of `rows` (apartments created when new) with their tags, and
    /// `audit`, in one transaction; returns the new ids in the order of `rows`.
    ///
    /// A tag grant that overlaps a stored ownership or an earlier grant of this import fails
    /// with [`StoreError::TagTaken`] whose `index` is the grant's position counted over all
    /// rows' tags in order (row 0's tags first), so the caller can name the row; nothing is
    /// kept then: no resident, apartment, tag or audit row.
    pub async fn import_residents(
        &self,
        site: SiteId,
        rows: &[ImportResident],
        audit: &AuditEntry,
    ) -> Result<Vec<ResidentId>, StoreError> {
        let now = audit.at;
        Ok(in_tx!(self, |tx, backend| {
            let mut ids = Vec::with_capacity(rows.len());
            let mut grant_index = 0;
            for row in rows {
                let r = &row.resident;
                let apartment = apartment_in!(tx, site, &r.block, &r.unit);
                // The same insert as `Store::create_resident` (which runs its own transaction,
                // so it cannot be called from inside this one).
                let id = sqlx::query_scalar::<_, ResidentId>(
                    "INSERT INTO residents (site_id, apartment_id, name, phone, email, active, \
                     created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                )
                .bind(site)
                .bind(apartment)
                .bind(r.name.trim())
                .bind(r.phone.trim())
                .bind(r.email.as_deref().map(str::trim))
                .bind(true)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .ctx("importing a resident")?;
                for g in &row.tags {
                    grant_in!(tx, backend, site, id, g, grant_index, now);
                    grant_index += 1;
                }
                ids.push(id);
            }
            audit_in!(tx, audit);
            ids
        }))
    }
}
