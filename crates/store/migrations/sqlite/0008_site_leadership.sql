-- vetric store, the ingest write fence (SQLite). Keep in step with
-- ../postgres/0008_site_leadership.sql: the same tables and columns; a test compares them.

-- One row per site that has ever had an ingest leader; each new leader bumps `generation`
-- and every ingest write checks it first. On SQLite one serving process is already
-- guaranteed by the instance lock, so the fence never refuses anything there; the same code
-- runs on both backends so that one test suite covers it.
CREATE TABLE site_leadership (
    site_id        BIGINT PRIMARY KEY REFERENCES sites (id) ON DELETE CASCADE,
    generation     BIGINT NOT NULL CHECK (generation >= 1),
    holder         TEXT NOT NULL,
    acquired_at    TEXT NOT NULL,
    last_write_at  TEXT
);
