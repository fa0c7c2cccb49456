-- vetric store, chargers the vendor no longer lists (PostgreSQL). Keep in step with
-- ../sqlite/0009_charger_retired.sql: the same tables and columns; a test compares them.

-- Set by the ingest write when an ACCEPTED charger list (a successful read the vendor link
-- believed, including a confirmed empty list) no longer contains the charger; cleared when a
-- later accepted list has it again. Retired chargers are left out of what dashboards, the API
-- and `vetric status` show, but the row stays: sessions, statements and reports keep naming
-- the charger of their history (they join chargers by uuid, without a foreign key).
ALTER TABLE chargers ADD COLUMN retired_at TIMESTAMPTZ;
