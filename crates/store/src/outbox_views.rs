//! Read-side queries of the notification log that the pages need beyond [`crate::outbox`]:
//! the log over a period (the page's date filter). Kept apart from the outbox module so the
//! dispatcher's room stays about sending.

use crate::error::{Ctx, StoreError};
use crate::outbox::{AttemptRow, OUTBOX_COLUMNS, OutboxEntry, OutboxFilter, OutboxRow};
use crate::store::{Store, with_pool};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

impl Store {
    /// [`Store::outbox_log`] restricted to rows created in `[from, to)` (either bound
    /// optional): newest first, each with its attempts (earlier rounds of a resent row have
    /// negative attempt numbers).
    pub async fn outbox_log_between(
        &self,
        filter: &OutboxFilter,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let limit = filter.limit.unwrap_or(50).clamp(1, 500);
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE ($1 IS NULL OR site_id = $1) \
             AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR resident_id = $3) \
             AND ($4 IS NULL OR rule = $4) AND ($5 IS NULL OR id < $5) \
             AND ($6 IS NULL OR created_at >= $6) AND ($7 IS NULL OR created_at < $7) \
             ORDER BY id DESC LIMIT $8"
        );
        let rows: Vec<OutboxRow> =
            with_pool!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(filter.site)
                .bind(filter.status.map(|s| s.as_str()))
                .bind(filter.resident)
                .bind(filter.rule.as_deref())
                .bind(filter.before_id)
                .bind(from)
                .bind(to)
                .bind(limit)
                .fetch_all(pool)
                .await
                .ctx("reading the notification log"))?;
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let mut by_row: HashMap<i64, Vec<AttemptRow>> = HashMap::new();
        for a in self.attempts_of(&ids).await? {
            by_row.entry(a.outbox_id).or_default().push(a);
        }
        Ok(rows
            .into_iter()
            .map(|row| OutboxEntry {
                attempts: by_row.remove(&row.id).unwrap_or_default(),
                row,
            })
            .collect())
    }
}
