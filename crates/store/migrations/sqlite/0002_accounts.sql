-- vetric store, accounts (SQLite). Keep in step with ../postgres/0002_accounts.sql: the same
-- tables and columns; a test compares them.
-- People who log in, the sites a manager may see, login/API tokens (stored hashed only) and
-- the audit log of logins and account changes.

CREATE TABLE users (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    email                TEXT NOT NULL CHECK (email <> ''),
    -- argon2id, PHC string format.
    password_hash        TEXT NOT NULL,
    role                 TEXT NOT NULL CHECK (role IN ('admin', 'manager')),
    active               BOOLEAN NOT NULL,
    created_at           TEXT NOT NULL,
    password_changed_at  TEXT NOT NULL
);
-- E-mails compare case-insensitively; the first spelling is kept.
CREATE UNIQUE INDEX users_email ON users (lower(email));

-- The sites a manager may see (admins see every site).
CREATE TABLE user_sites (
    user_id  BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    site_id  BIGINT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, site_id)
);
CREATE INDEX user_sites_site ON user_sites (site_id);

-- Opaque tokens: the SHA-256 (hex) of a random 32-byte value; the value itself is never stored.
-- 'session' tokens live in the browser's cookie, 'api' tokens in Authorization: Bearer.
CREATE TABLE auth_tokens (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind          TEXT NOT NULL CHECK (kind IN ('session', 'api')),
    token_hash    TEXT NOT NULL UNIQUE CHECK (length(token_hash) = 64),
    label         TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    expires_at    TEXT,
    last_used_at  TEXT,
    revoked_at    TEXT
);
CREATE INDEX auth_tokens_user ON auth_tokens (user_id);

-- Who did what, when, from where. Append-only.
CREATE TABLE audit_log (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       TEXT NOT NULL,
    user_id  BIGINT REFERENCES users (id) ON DELETE SET NULL,
    action   TEXT NOT NULL,
    target   TEXT NOT NULL,
    detail   TEXT NOT NULL,
    ip       TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);
