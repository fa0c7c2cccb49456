-- vetric store, user invitations (SQLite). Keep in step with ../postgres/0004_invites.sql: the
-- same tables and columns; a test compares them.
-- An invited user is created without a usable password (users.password_hash holds a marker
-- that is not a PHC string, so no password ever matches it) and gets a one-time link. The
-- link's token is 32 random bytes; only its SHA-256 (hex) is kept, like auth_tokens. A link is
-- live while used_at and revoked_at are NULL and expires_at is in the future; a new invite
-- for the same user revokes the previous one.

CREATE TABLE user_invites (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash  TEXT NOT NULL UNIQUE CHECK (length(token_hash) = 64),
    -- Who sent it (NULL when that account is gone, or the command line).
    created_by  BIGINT REFERENCES users (id) ON DELETE SET NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    used_at     TEXT,
    revoked_at  TEXT
);
CREATE INDEX user_invites_user ON user_invites (user_id);

-- The users page shows each user's last login, read from the audit log.
CREATE INDEX audit_log_user ON audit_log (user_id, action);
