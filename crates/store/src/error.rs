//! The store's error policy: one enum, each variant saying what went wrong in words a person
//! can act on. Database URLs in messages never carry a password ([`redact_url`]).

use crate::lock::LockError;

/// Everything a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is not one vetric understands.
    #[error("bad database_url {url}: {reason}")]
    BadUrl { url: String, reason: String },

    /// The database could not be opened or reached. `url` has the password removed; `hint`
    /// says what to do about it.
    #[error("cannot open the store at {url_without_password}: {hint}")]
    Unreachable {
        url_without_password: String,
        hint: String,
        #[source]
        source: sqlx::Error,
    },

    /// Applying the embedded migrations failed (a changed applied migration, a dirty one, or
    /// a store written by a newer vetric).
    #[error("store migration failed")]
    Migration(#[from] sqlx::migrate::MigrateError),

    /// The write would contradict what is stored (e.g. a tag that already has an owner then).
    #[error("conflict: {what}")]
    Conflict { what: String },

    /// A tag grant overlaps an ownership already stored (or another grant of the same
    /// write): nothing of the write was kept. `index` is the grant's position in the write.
    #[error(
        "conflict: tag {tag} already belongs to {owner} ({apartment}) from {valid_from}{}; end \
         that ownership first",
        valid_to.map(|t| format!(" until {t}")).unwrap_or_default()
    )]
    TagTaken {
        index: usize,
        tag: String,
        owner: String,
        apartment: String,
        valid_from: chrono::DateTime<chrono::Utc>,
        valid_to: Option<chrono::DateTime<chrono::Utc>>,
    },

    /// The thing a write refers to does not exist.
    #[error("not found: {what}")]
    NotFound { what: String },

    /// A stored value that this version cannot read back (e.g. an invalid tag).
    #[error("stored data is not valid: {what}")]
    Corrupt { what: String },

    /// A statement failed. `context` names the operation, `source` is the driver's error.
    #[error("store query failed while {context}")]
    Query {
        context: &'static str,
        #[source]
        source: sqlx::Error,
    },

    /// A fenced ingest write ([`crate::Store::write_cycle_fenced`]) found that another
    /// instance has taken the site's leadership since this one did: nothing was written, and
    /// the caller is no longer the site's leader (it must stop polling and drop its state).
    #[error(
        "lost the ingest leadership of site {site}: another instance took it (generation \
         {generation} is no longer current); nothing was written"
    )]
    LostLeadership {
        site: crate::model::SiteId,
        generation: i64,
    },

    /// The SQLite instance lock.
    #[error(transparent)]
    Lock(#[from] LockError),
}

impl StoreError {
    /// True for errors that a retry may cure (the database briefly away, a pool timeout,
    /// SQLite busy): the ingest loop keeps going on these.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Query { source, .. } => {
                matches!(
                    source,
                    sqlx::Error::Io(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::WorkerCrashed
                ) || is_busy(source)
            }
            _ => false,
        }
    }
}

fn is_busy(e: &sqlx::Error) -> bool {
    match e {
        // SQLITE_BUSY (5) / SQLITE_LOCKED (6), PG serialization_failure / deadlock_detected.
        sqlx::Error::Database(db) => matches!(
            db.code().as_deref(),
            Some("5") | Some("6") | Some("517") | Some("40001") | Some("40P01")
        ),
        _ => false,
    }
}

/// Adds the name of the operation to a driver error.
pub(crate) trait Ctx<T> {
    fn ctx(self, context: &'static str) -> Result<T, StoreError>;
}

impl<T> Ctx<T> for Result<T, sqlx::Error> {
    fn ctx(self, context: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Query { context, source })
    }
}

/// The URL with any password removed (`postgres://u:secret@h/db` → `postgres://u@h/db`), and
/// `password=` query parameters dropped. Safe to log and to show.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let authority = match authority.rsplit_once('@') {
                Some((userinfo, host)) => {
                    let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
                    format!("{user}@{host}")
                }
                None => authority.to_owned(),
            };
            format!("{scheme}://{authority}{path}")
        }
        None => base.to_owned(),
    };
    if let Some(q) = query {
        let kept: Vec<&str> = q
            .split('&')
            .filter(|kv| {
                let key = kv.split_once('=').map_or(*kv, |(k, _)| k);
                !key.eq_ignore_ascii_case("password") && !key.eq_ignore_ascii_case("sslpassword")
            })
            .collect();
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_survive_redaction() {
        assert_eq!(
            redact_url("postgres://vetric:s3cr%40t@db.example:5432/vetric?sslmode=require"),
            "postgres://vetric@db.example:5432/vetric?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://u@h/db?password=x&application_name=v"),
            "postgres://u@h/db?application_name=v"
        );
        assert_eq!(redact_url("postgres://h/db?password=x"), "postgres://h/db");
        assert_eq!(
            redact_url("sqlite:///var/lib/vetric/vetric.db"),
            "sqlite:///var/lib/vetric/vetric.db"
        );
        assert_eq!(redact_url("postgres://u:p@h"), "postgres://u@h");
    }
}
