//! Wiring of notifications: from the `[sites.whatsapp]`, `[sites.notifications]`, `[alerts]`,
//! `[smtp]` and `[dispatcher]` config to the engine's dispatcher and the ingest's recipients.
//! Nothing here decides anything; it only builds clients from checked configuration.

use crate::config::{Config, SiteConfig};
use anyhow::Context;
use std::sync::Arc;
use tracing::info;
use vetric_channels::{SmtpChannel, SmtpConfig, SmtpTls, WebhookChannel, WebhookConfig};
use vetric_engine::dispatch::{
    DispatchSettings, Dispatcher, EmailChannel, OperatorContacts, SiteDispatch, WebhookSender,
    WhatsAppGateway,
};
use vetric_engine::{Recipients, SiteNotify};
use vetric_evolution::{EvolutionClient, EvolutionConfig};
use vetric_store::{SiteId, Store};

/// The dispatcher of this process, with every configured channel.
pub fn build_dispatcher(
    config: &Config,
    store: &Store,
    sites: &[(SiteId, SiteConfig)],
) -> anyhow::Result<Dispatcher> {
    let d = &config.dispatcher;
    let settings = DispatchSettings {
        tick: d.tick,
        lease: d.lease,
        max_attempts: d.max_attempts,
        retry_base: d.retry_base,
        retry_cap: d.retry_cap,
        gateway_check: d.gateway_check,
        concurrency: d.concurrency,
        ..DispatchSettings::default()
    };
    let mut site_dispatch = Vec::new();
    for (id, site) in sites {
        let whatsapp = match &site.whatsapp {
            None => None,
            Some(w) => {
                let client = EvolutionClient::new(EvolutionConfig::new(
                    w.base_url.clone(),
                    w.api_key.clone(),
                    w.instance.clone(),
                ))
                .with_context(|| {
                    format!(
                        "building the WhatsApp (Evolution) client of site {}",
                        site.slug
                    )
                })?;
                Some(WhatsAppGateway {
                    client,
                    stores_messages: w.stores_messages,
                })
            }
        };
        site_dispatch.push(SiteDispatch {
            site: *id,
            slug: site.slug.to_string(),
            name: site.name.clone(),
            tz: site.timezone,
            whatsapp,
        });
    }
    let mut dispatcher =
        Dispatcher::new(store.clone(), settings, site_dispatch).with_operators(OperatorContacts {
            email: config.alerts.email.clone(),
            webhook_url: config.alerts.webhook_url.as_ref().map(ToString::to_string),
        });
    if let Some(smtp) = &config.smtp {
        let tls = if smtp.starttls {
            SmtpTls::StartTls
        } else {
            SmtpTls::None
        };
        let channel = SmtpChannel::new(SmtpConfig {
            host: smtp.host.clone(),
            port: smtp.port,
            username: smtp.username.clone(),
            password: smtp.password.clone(),
            from: smtp.from.clone(),
            tls,
            timeout: vetric_channels::DEFAULT_SMTP_TIMEOUT,
        })
        .context("building the SMTP channel ([smtp])")?;
        dispatcher = dispatcher.with_email(Arc::new(EmailChannel(channel)));
    }
    if let (Some(url), Some(secret)) = (&config.alerts.webhook_url, &config.alerts.webhook_secret) {
        let channel = WebhookChannel::new(WebhookConfig {
            url: url.clone(),
            secret: secret.clone(),
            timeout: vetric_channels::DEFAULT_WEBHOOK_TIMEOUT,
        })
        .context("building the alert webhook ([alerts] webhook_url)")?;
        dispatcher = dispatcher.with_webhook(Arc::new(WebhookSender(channel)));
    }
    info!(
        owner = %dispatcher.settings().owner,
        whatsapp_sites = sites.iter().filter(|(_, s)| s.whatsapp.is_some()).count(),
        email = config.smtp.is_some(),
        webhook = config.alerts.webhook_url.is_some(),
        "notification dispatcher ready"
    );
    Ok(dispatcher)
}

/// What the ingest of `site` needs to enqueue notifications; `None` when nobody could be
/// told anything (no gateway and no manager or operator contact), so nothing piles up.
pub fn site_notify(config: &Config, site: &SiteConfig) -> Option<SiteNotify> {
    let recipients = Recipients {
        manager_whatsapp: site.notifications.manager_whatsapp.clone(),
        manager_email: site.notifications.manager_email.clone(),
        operator_whatsapp: config.alerts.whatsapp.clone(),
        operator_email: config.alerts.email.clone(),
        operator_webhook: config.alerts.webhook_url.as_ref().map(ToString::to_string),
    };
    let anyone = site.whatsapp.is_some()
        || !recipients.manager_email.is_empty()
        || !recipients.operator_email.is_empty()
        || recipients.operator_webhook.is_some();
    anyone.then(|| SiteNotify {
        recipients,
        ..SiteNotify::default()
    })
}
