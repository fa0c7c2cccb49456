-- vetric store, import report rows and the report library (PostgreSQL). Keep in step with
-- ../sqlite/0007_import_rejects_reports.sql: the same tables and columns; a test compares them.

-- The rows of a confirmed import of the vendor's export that were NOT imported (a date, a
-- number or an id that could not be read, or a vendor id repeated in the file), kept so the
-- statement pages can list them with their reason. One row per spreadsheet line.
CREATE TABLE import_rejected_rows (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id     BIGINT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    batch_id    BIGINT NOT NULL REFERENCES import_batches (id) ON DELETE CASCADE,
    -- The spreadsheet line (header = 1).
    line        BIGINT NOT NULL CHECK (line >= 1),
    -- 'YYYY-MM', the local month of the row's start; NULL when the start could not be read
    -- (such a row is listed only in the import report, BILLING.md rule 8).
    month       TEXT,
    -- NULL when the id could not be read.
    vendor_id   BIGINT,
    -- Every problem of the row, pt-BR, as one text.
    reason      TEXT NOT NULL,
    -- The row's cells as read, a JSON array of [column, value] pairs.
    raw         TEXT NOT NULL
);
CREATE INDEX import_rejected_rows_site_month ON import_rejected_rows (site_id, month, line);

-- The report library: PDF files uploaded by managers, kept in the database (no file paths:
-- `stored_name` is generated and only ever used as the download's file name).
CREATE TABLE report_files (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id        BIGINT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    -- 'YYYY-MM', the month the report is about.
    month          TEXT NOT NULL,
    title          TEXT NOT NULL,
    -- As the uploader's browser named it: shown (escaped), never used as a path.
    original_name  TEXT NOT NULL,
    -- Generated, `[a-z0-9-]+.pdf`.
    stored_name    TEXT NOT NULL UNIQUE,
    size           BIGINT NOT NULL CHECK (size > 0),
    sha256         TEXT NOT NULL,
    uploaded_by    BIGINT REFERENCES users (id) ON DELETE SET NULL,
    uploaded_at    TIMESTAMPTZ NOT NULL,
    bytes          BYTEA NOT NULL
);
CREATE INDEX report_files_site_month ON report_files (site_id, month, id);
