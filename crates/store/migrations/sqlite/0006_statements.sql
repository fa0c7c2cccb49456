-- vetric store, statements (SQLite). Keep in step with ../postgres/0006_statements.sql: the
-- same tables and columns; a test compares them.

-- One import of the vendor's XLSX export, confirmed by a user (or by `vetric statement
-- --import --commit`). Kept so an imported session can say where it came from.
CREATE TABLE import_batches (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id        BIGINT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    file_name      TEXT NOT NULL,
    rows_read      BIGINT NOT NULL CHECK (rows_read >= 0),
    rows_refused   BIGINT NOT NULL CHECK (rows_refused >= 0),
    -- Rows stored by this batch (a vendor id already imported is not stored again).
    rows_imported  BIGINT NOT NULL CHECK (rows_imported >= 0),
    imported_at    TEXT NOT NULL,
    imported_by    BIGINT REFERENCES users (id) ON DELETE SET NULL
);
CREATE INDEX import_batches_site ON import_batches (site_id, id);

-- Sessions read from the vendor's export (the domain's SessionRecord). One row per vendor id
-- and site: the first import wins, a later copy is reported, not stored. A vendor id that
-- vetric also recorded itself is kept here too; the statement uses vetric's own record and
-- lists the disagreement, if any.
CREATE TABLE imported_sessions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id       BIGINT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    vendor_id     BIGINT NOT NULL,
    charger       TEXT NOT NULL,
    -- Normalised (upper-case) as in `tags`; NULL: the export had no tag.
    tag           TEXT,
    user_name     TEXT,
    start         TEXT NOT NULL,
    stop          TEXT NOT NULL,
    energy_wh     BIGINT NOT NULL,
    idle_seconds  BIGINT NOT NULL,
    time_precision TEXT NOT NULL CHECK (time_precision IN ('second', 'minute')),
    -- The spreadsheet line the row came from (header = 1).
    import_line   BIGINT,
    batch_id      BIGINT NOT NULL REFERENCES import_batches (id) ON DELETE CASCADE,
    imported_at   TEXT NOT NULL,
    imported_by   BIGINT REFERENCES users (id) ON DELETE SET NULL,
    UNIQUE (site_id, vendor_id)
);
CREATE INDEX imported_sessions_site_start ON imported_sessions (site_id, start);

-- Issued statements: frozen, versioned snapshots. A row is never updated: late data makes a
-- new version. `input` is the domain's StatementInput and `result` its Statement, as JSON text,
-- so an issued statement reads back exactly as it was issued, whatever changed since.
CREATE TABLE statements (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id     BIGINT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    -- 'YYYY-MM', the local month of the site.
    month       TEXT NOT NULL,
    version     BIGINT NOT NULL CHECK (version >= 1),
    issued_at   TEXT NOT NULL,
    issued_by   BIGINT REFERENCES users (id) ON DELETE SET NULL,
    -- The month's total in R$ ('1208.25'), for listings without parsing the snapshot.
    total       TEXT NOT NULL,
    input       TEXT NOT NULL,
    result      TEXT NOT NULL,
    UNIQUE (site_id, month, version)
);
