-- vetric store, notifications outbox (PostgreSQL). Keep in step with ../sqlite/0003_outbox.sql:
-- the same tables and columns; a test compares them.
-- Every message vetric sends is first a row here, written in the same transaction as the fact
-- that caused it (DESIGN rule 4). The dispatcher claims rows with a lease
-- (FOR UPDATE SKIP LOCKED), commits the claim before the network call, and records the outcome.
-- A claim whose lease expired (the process died mid-send) becomes 'in_doubt' and is reconciled
-- with the gateway before anything is resent.

CREATE TABLE outbox (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- NULL for operator alerts that belong to no site (e.g. the backlog of the whole store).
    site_id             BIGINT REFERENCES sites (id) ON DELETE CASCADE,
    dedup_key           TEXT NOT NULL UNIQUE CHECK (dedup_key <> ''),
    rule                TEXT NOT NULL,
    audience            TEXT NOT NULL,
    channel             TEXT NOT NULL CHECK (channel IN ('whatsapp', 'email', 'webhook')),
    resident_id         BIGINT REFERENCES residents (id) ON DELETE SET NULL,
    -- Phone (digits), e-mail address or webhook URL; NULL only on rows cancelled at insert.
    recipient           TEXT,
    -- 'session:{id}', 'charger:{uuid}' or 'site': what cancellations match on.
    scope               TEXT NOT NULL,
    session_vendor_id   BIGINT,
    subject             TEXT,
    body                TEXT NOT NULL,
    -- Printed in the message; reconciliation looks for it at the gateway.
    ref_code            TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN
                            ('pending', 'sending', 'in_doubt', 'sent', 'failed', 'cancelled')),
    not_before          TIMESTAMPTZ NOT NULL,
    next_attempt_at     TIMESTAMPTZ NOT NULL,
    attempts            BIGINT NOT NULL CHECK (attempts >= 0),
    lease_owner         TEXT,
    lease_until         TIMESTAMPTZ,
    gateway_message_id  TEXT,
    last_error          TEXT,
    -- Why a row is failed or cancelled, in words an operator reads.
    reason              TEXT,
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL,
    sent_at             TIMESTAMPTZ
);
-- The claim query: due pending rows in id order.
CREATE INDEX outbox_due ON outbox (status, next_attempt_at, id);
-- The log page: newest first per site.
CREATE INDEX outbox_site_log ON outbox (site_id, id);
CREATE INDEX outbox_resident ON outbox (resident_id);
-- Cancellations: pending rows of one scope.
CREATE INDEX outbox_scope ON outbox (site_id, scope, status);

-- Every try at sending a row, for the log page.
CREATE TABLE outbox_attempts (
    outbox_id    BIGINT NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    attempt      BIGINT NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    finished_at  TIMESTAMPTZ,
    -- 'sent', 'retry', 'failed', 'in_doubt', 'deferred', 'cancelled', 'operator', 'reconciled'.
    outcome      TEXT NOT NULL,
    error        TEXT,
    PRIMARY KEY (outbox_id, attempt)
);

-- A resident's choices: rules opted out of (comma-separated rule names) and quiet hours
-- ('HH:MM', local time of the site; both NULL when off).
CREATE TABLE resident_notification_prefs (
    resident_id  BIGINT PRIMARY KEY REFERENCES residents (id) ON DELETE CASCADE,
    opted_out    TEXT NOT NULL,
    quiet_start  TEXT,
    quiet_end    TEXT,
    updated_at   TIMESTAMPTZ NOT NULL
);

-- A site's notification policy (the domain's NotificationPolicy as JSON text).
CREATE TABLE site_notification_policy (
    site_id     BIGINT PRIMARY KEY REFERENCES sites (id) ON DELETE CASCADE,
    policy      TEXT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    updated_by  TEXT
);
