-- vetric store, initial schema (PostgreSQL). Keep in step with ../sqlite/0001_initial.sql:
-- the same tables and columns; a test compares them.
-- Instants are TIMESTAMPTZ (UTC), energy is integer Wh, money (later) integer centavos.

CREATE TABLE sites (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    timezone    TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

-- The state of each site's vendor account link (one row per site).
CREATE TABLE vendor_links (
    site_id                 BIGINT PRIMARY KEY REFERENCES sites (id) ON DELETE CASCADE,
    last_success            TIMESTAMPTZ,
    last_error_kind         TEXT,
    last_error_message      TEXT,
    last_error_at           TIMESTAMPTZ,
    consecutive_failures    BIGINT NOT NULL CHECK (consecutive_failures >= 0),
    breaker                 TEXT NOT NULL CHECK (breaker IN ('closed', 'open', 'half_open')),
    charger_count_last_good BIGINT,
    updated_at              TIMESTAMPTZ NOT NULL
);

CREATE TABLE chargers (
    site_id        BIGINT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    uuid           TEXT NOT NULL,
    charge_box_id  TEXT NOT NULL,
    name           TEXT NOT NULL,
    vendor         TEXT NOT NULL,
    model          TEXT NOT NULL,
    firmware       TEXT NOT NULL,
    last_heartbeat TIMESTAMPTZ,
    online         BOOLEAN NOT NULL,
    observed_at    TIMESTAMPTZ NOT NULL,
    changed_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (site_id, uuid)
);

CREATE TABLE connectors (
    site_id               BIGINT NOT NULL,
    charger_uuid          TEXT NOT NULL,
    connector_id          BIGINT NOT NULL,
    status                TEXT NOT NULL,
    status_since          TIMESTAMPTZ NOT NULL,
    error_code            TEXT NOT NULL,
    power_max_w           BIGINT,
    unidentified_charging BOOLEAN NOT NULL,
    observed_at           TIMESTAMPTZ NOT NULL,
    changed_at            TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (site_id, charger_uuid, connector_id),
    FOREIGN KEY (site_id, charger_uuid) REFERENCES chargers (site_id, uuid) ON DELETE CASCADE
);

CREATE TABLE apartments (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id     BIGINT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    block       TEXT NOT NULL,
    unit        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX apartments_site_block_unit ON apartments (site_id, lower(block), lower(unit));

CREATE TABLE residents (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id       BIGINT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    apartment_id  BIGINT NOT NULL REFERENCES apartments (id),
    name          TEXT NOT NULL,
    phone         TEXT NOT NULL,
    email         TEXT,
    active        BOOLEAN NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX residents_site ON residents (site_id);
CREATE INDEX residents_apartment ON residents (apartment_id);

-- Tag ownership over [valid_from, valid_to). Intervals of one tag within a site never overlap
-- (checked by Store::add_tag under a lock). Tags are stored normalised (upper-case).
CREATE TABLE tags (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id      BIGINT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    tag          TEXT NOT NULL CHECK (tag = upper(tag) AND tag <> ''),
    resident_id  BIGINT NOT NULL REFERENCES residents (id),
    valid_from   TIMESTAMPTZ NOT NULL,
    valid_to     TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL,
    CHECK (valid_to IS NULL OR valid_to > valid_from)
);
CREATE INDEX tags_site_tag ON tags (site_id, tag, valid_from);
CREATE INDEX tags_resident ON tags (resident_id);

-- The vendor's ocppTagPk → tag text, entered by hand or learned from transactions that
-- carried both.
CREATE TABLE tag_pk_map (
    site_id     BIGINT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    tag_pk      BIGINT NOT NULL,
    tag         TEXT NOT NULL CHECK (tag = upper(tag) AND tag <> ''),
    learned_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (site_id, tag_pk)
);

-- Charging sessions: one row per vendor transaction.
CREATE TABLE sessions (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id       BIGINT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    vendor_id     BIGINT NOT NULL,
    charger_uuid  TEXT NOT NULL,
    connector_id  BIGINT NOT NULL,
    tag           TEXT,
    tag_pk        BIGINT,
    resident_id   BIGINT REFERENCES residents (id),
    start         TIMESTAMPTZ NOT NULL,
    stop          TIMESTAMPTZ,
    energy_wh     BIGINT,
    idle_seconds  BIGINT NOT NULL CHECK (idle_seconds >= 0),
    stop_reason   TEXT,
    end_kind      TEXT CHECK (end_kind IN ('finished', 'interrupted', 'stale', 'recorded')),
    status        TEXT NOT NULL CHECK (status IN ('open', 'ended')),
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    UNIQUE (site_id, vendor_id)
);
CREATE INDEX sessions_site_start ON sessions (site_id, start);
CREATE INDEX sessions_site_open ON sessions (site_id) WHERE status = 'open';
CREATE INDEX sessions_resident ON sessions (resident_id);

-- Append-only event log (what the session tracker concluded), read in id order.
CREATE TABLE events (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id            BIGINT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    at                 TIMESTAMPTZ NOT NULL,
    kind               TEXT NOT NULL,
    session_vendor_id  BIGINT,
    charger_uuid       TEXT,
    payload            JSONB NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX events_site_id ON events (site_id, id);

-- The inbox of tags seen on chargers that nobody owns.
CREATE TABLE unknown_tags (
    site_id            BIGINT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    tag                TEXT NOT NULL CHECK (tag = upper(tag) AND tag <> ''),
    first_seen         TIMESTAMPTZ NOT NULL,
    last_seen          TIMESTAMPTZ NOT NULL,
    charger_uuid       TEXT,
    session_vendor_id  BIGINT,
    seen_count         BIGINT NOT NULL CHECK (seen_count >= 1),
    resolved_at        TIMESTAMPTZ,
    PRIMARY KEY (site_id, tag)
);

-- The session tracker's state (opaque JSON owned by the domain crate), one row per site.
CREATE TABLE tracker_state (
    site_id     BIGINT PRIMARY KEY REFERENCES sites (id) ON DELETE CASCADE,
    state       JSONB NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
