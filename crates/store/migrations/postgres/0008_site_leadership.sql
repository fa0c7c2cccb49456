-- vetric store, the ingest write fence (PostgreSQL). Keep in step with
-- ../sqlite/0008_site_leadership.sql: the same tables and columns; a test compares them.

-- One row per site that has ever had an ingest leader. Whoever takes a site's advisory lock
-- bumps `generation` (UPDATE … RETURNING: a fencing token) before it reads the site's state;
-- every ingest write first updates this row WHERE generation is still its own, under the
-- row lock, and writes nothing otherwise. So a write of a leader that lost its lock either
-- commits before the new leader's bump (which waits for that row lock, and then reads the
-- state the write left) or is refused. See docs/architecture.md, "Leadership".
CREATE TABLE site_leadership (
    site_id        BIGINT PRIMARY KEY REFERENCES sites (id) ON DELETE CASCADE,
    generation     BIGINT NOT NULL CHECK (generation >= 1),
    -- The instance that took it (`host:pid:random`), for people reading the table.
    holder         TEXT NOT NULL,
    acquired_at    TIMESTAMPTZ NOT NULL,
    -- The last ingest write that passed the fence.
    last_write_at  TIMESTAMPTZ
);
