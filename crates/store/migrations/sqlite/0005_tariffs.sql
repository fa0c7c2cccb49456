-- vetric store, tariffs (SQLite). Keep in step with ../postgres/0005_tariffs.sql: the same
-- tables and columns; a test compares them.
-- Every version of a site's tariff ever recorded, from the config file or the tariff page.
-- Rows are never updated or deleted: a correction is a new row, and for each effective date
-- the newest row is the one in force (so the page can list what was replaced, and when).

CREATE TABLE site_tariffs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id         BIGINT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    -- Local date (site's zone) from which the tariff applies, 'YYYY-MM-DD'; NULL: always.
    effective_from  TEXT,
    -- The validated tariff in its normalised spec form (JSON; BILLING.md keys).
    spec            TEXT NOT NULL,
    source          TEXT NOT NULL CHECK (source IN ('config', 'ui')),
    created_at      TEXT NOT NULL,
    created_by      BIGINT REFERENCES users (id) ON DELETE SET NULL
);
CREATE INDEX site_tariffs_site ON site_tariffs (site_id, id);
