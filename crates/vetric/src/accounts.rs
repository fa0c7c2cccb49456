//! `vetric user add`, `vetric token create`, and the demo's two accounts.
//!
//! Passwords are read from stdin when it is piped (never from an argument, which would land in
//! the shell history and `ps`), or generated (20 letters and digits) and printed once. Every
//! change writes an audit row in the same transaction as the change.

use crate::config::SiteConfig;
use anyhow::{Context, bail};
use chrono::Utc;
use serde_json::json;
use std::io::{IsTerminal, Read};
use vetric_store::{AuditEntry, NewUser, Role, SiteId, Store, StoreError, TokenKind, UserId};
use vetric_web::auth;

/// The demo's operator account.
pub const DEMO_ADMIN: &str = "admin@vetric.local";
/// The demo's manager (síndico) account, limited to the demo site.
pub const DEMO_MANAGER: &str = "sindico@vetric.local";

/// Shortest password accepted from stdin.
const MIN_PASSWORD_CHARS: usize = 12;

async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .context("the hashing task failed")?
        .context("hashing the password")
}

fn check_email(email: &str) -> anyhow::Result<String> {
    let e = email.trim();
    let ok = e.len() <= 254
        && !e.chars().any(char::is_whitespace)
        && e.split_once('@')
            .is_some_and(|(local, host)| !local.is_empty() && host.contains('.'));
    if !ok {
        bail!("--email {email:?} is not an e-mail address (expected name@domain.tld)");
    }
    Ok(e.to_owned())
}

/// `vetric user add`.
pub async fn user_add(
    store: &Store,
    sites: &[(SiteId, SiteConfig)],
    email: &str,
    role: &str,
    site_slugs: &[String],
) -> anyhow::Result<()> {
    let email = check_email(email)?;
    let Some(role) = Role::parse(role) else {
        bail!("--role must be admin or manager, not {role:?}");
    };
    if role == Role::Manager && site_slugs.is_empty() {
        bail!("a manager sees only the sites given with --site SLUG; give at least one");
    }
    let mut site_ids = Vec::new();
    for slug in site_slugs {
        match sites.iter().find(|(_, s)| s.slug.as_str() == slug) {
            Some((id, _)) => site_ids.push(*id),
            None => bail!(
                "unknown site {slug:?}; the configured sites are: {}",
                sites
                    .iter()
                    .map(|(_, s)| s.slug.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    let (password, generated) = if std::io::stdin().is_terminal() {
        (auth::generate_password(), true)
    } else {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the password from stdin")?;
        let pw = text.trim_end_matches(['\r', '\n']).to_owned();
        if pw.is_empty() {
            (auth::generate_password(), true)
        } else {
            if pw.chars().count() < MIN_PASSWORD_CHARS {
                bail!(
                    "the password on stdin is too short: use at least {MIN_PASSWORD_CHARS} characters"
                );
            }
            (pw, false)
        }
    };
    let audit = AuditEntry::new(Utc::now(), None, "user_add", &email).with_detail(json!({
        "role": role.as_str(), "sites": site_slugs, "via": "cli",
    }));
    let new = NewUser {
        email: email.clone(),
        password_hash: hash(password.clone()).await?,
        role,
        sites: site_ids,
    };
    match store.create_user(&new, &audit).await {
        Ok(_) => {}
        Err(StoreError::Conflict { what }) => bail!("{what}"),
        Err(e) => return Err(e).context("adding the user"),
    }
    if generated {
        println!("{}: {email} {password}", role.as_str());
    } else {
        println!("{}: {email}", role.as_str());
    }
    Ok(())
}

/// `vetric token create`: prints the new token alone.
pub async fn token_create(store: &Store, email: &str, label: &str) -> anyhow::Result<()> {
    let Some(user) = store.user_credentials(email).await? else {
        bail!("no user with the e-mail {email}; add one with `vetric user add`");
    };
    let now = Utc::now();
    let audit = AuditEntry::new(now, Some(user.user.id), "token_create", &user.user.email)
        .with_detail(json!({ "label": label, "via": "cli" }));
    let token = auth::issue_token(
        store,
        user.user.id,
        TokenKind::Api,
        label,
        now,
        None,
        Some(&audit),
    )
    .await
    .context("creating the token")?;
    println!("{token}");
    Ok(())
}

/// Makes sure the demo's admin and manager exist, with fresh passwords (so the login printed
/// at every start works, also on a restart of the same data directory). Returns
/// `(role, email, password)` per account.
pub async fn ensure_demo_accounts(
    store: &Store,
    site: SiteId,
) -> anyhow::Result<Vec<(&'static str, &'static str, String)>> {
    let mut out = Vec::new();
    for (email, role) in [(DEMO_ADMIN, Role::Admin), (DEMO_MANAGER, Role::Manager)] {
        let password = auth::generate_password();
        let password_hash = hash(password.clone()).await?;
        let now = Utc::now();
        let sites = if role == Role::Manager {
            vec![site]
        } else {
            vec![]
        };
        match store.user_credentials(email).await? {
            Some(existing) => {
                let id: UserId = existing.user.id;
                let audit = AuditEntry::new(now, None, "password_reset", email)
                    .with_detail(json!({ "via": "demo" }));
                store.set_password(id, &password_hash, &audit).await?;
                for s in sites {
                    let audit = AuditEntry::new(now, None, "site_grant", email)
                        .with_detail(json!({ "site_id": s, "via": "demo" }));
                    store.grant_site(id, s, &audit).await?;
                }
            }
            None => {
                let audit = AuditEntry::new(now, None, "user_add", email)
                    .with_detail(json!({ "role": role.as_str(), "via": "demo" }));
                store
                    .create_user(
                        &NewUser {
                            email: email.to_owned(),
                            password_hash,
                            role,
                            sites,
                        },
                        &audit,
                    )
                    .await?;
            }
        }
        out.push((role.as_str(), email, password));
    }
    Ok(out)
}
