//! Server-rendered pages (pt-BR): login, the list of sites, a site's overview, and the live
//! cards fragment that the overview's SSE stream swaps in.
//!
//! Templates live in `crates/web/templates/` and are compiled in (askama). Pages never call
//! the vendor: a vendor outage shows the last-known cards under a banner saying since when
//! they are old.

use crate::auth::{self, AuthUser, LoginFailure, cookie_token};
use crate::error::PageError;
use crate::input::BODY_LIMIT;
use crate::security::is_tls;
use crate::view::{self, Card, SiteSnapshot};
use crate::{AppState, SiteSettings};
use askama::Template;
use askama_web::WebTemplate;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use vetric_domain::Freshness;

#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
struct LoginPage {
    error: Option<String>,
    email: String,
}

struct SiteItem {
    slug: String,
    name: String,
    state_label: &'static str,
    tone: &'static str,
}

#[derive(Template, WebTemplate)]
#[template(path = "sites.html")]
struct SitesPage {
    user_email: crate::account::NavUser,
    sites: Vec<SiteItem>,
}

#[derive(Template, WebTemplate)]
#[template(path = "site.html")]
struct SitePage {
    user_email: crate::account::NavUser,
    slug: String,
    name: String,
    multi_site: bool,
    cards_html: String,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    status: u16,
    title: &'static str,
    message: String,
}

struct CountItem {
    label: &'static str,
    tone: &'static str,
    count: usize,
}

struct CardItem {
    charger: String,
    connector_id: u32,
    label: &'static str,
    tone: &'static str,
    idle: bool,
    since: String,
    who: Option<String>,
    elapsed_s: i64,
    elapsed: Option<String>,
    energy: Option<String>,
    idle_for: Option<String>,
}

/// The live part of the overview: vendor freshness, banner, counters and cards.
#[derive(Template)]
#[template(path = "partials/cards.html")]
struct CardsFragment {
    updated_at: Option<String>,
    banner: Option<String>,
    counts: Vec<CountItem>,
    cards: Vec<CardItem>,
}

/// The order counters are shown in (most actionable first).
const TONE_ORDER: &[&str] = &[
    "charging",
    "unidentified",
    "idle",
    "paused",
    "waiting",
    "finishing",
    "free",
    "reserved",
    "fault",
    "offline",
    "unknown",
];

fn card_item(site: &SiteSettings, c: Card, now: DateTime<Utc>) -> CardItem {
    let tz = site.timezone;
    let since = c
        .connector
        .status_since
        .with_timezone(&tz)
        .format("%d/%m/%Y %H:%M")
        .to_string();
    let who = c
        .session
        .as_ref()
        .map(|s| match (&s.resident_name, &s.apartment_label, &s.tag) {
            (Some(r), Some(a), _) => format!("{r} — apto {a}"),
            (Some(r), None, _) => r.clone(),
            (None, _, Some(t)) => format!("tag {} (sem morador cadastrado)", t.as_str()),
            (None, _, None) => "morador não identificado".to_owned(),
        });
    let elapsed_s = c
        .session
        .as_ref()
        .map_or(0, |s| (now - s.start).num_seconds().max(0));
    CardItem {
        charger: c.connector.charger_name.clone(),
        connector_id: c.connector.connector_id,
        label: c.label,
        tone: c.tone,
        idle: c.idle,
        since,
        elapsed: c.session.as_ref().map(|_| view::duration_pt_br(elapsed_s)),
        elapsed_s,
        energy: c
            .session
            .as_ref()
            .and_then(|s| s.energy_wh)
            .map(view::kwh_pt_br),
        idle_for: c
            .idle
            .then(|| view::duration_pt_br((now - c.connector.status_since).num_seconds())),
        who,
    }
}

fn fragment(site: &SiteSettings, snap: SiteSnapshot, now: DateTime<Utc>) -> CardsFragment {
    let tz = site.timezone;
    let last = snap.freshness.as_of;
    let updated_at = last.map(|t| t.with_timezone(&tz).format("%H:%M:%S").to_string());
    let banner = match (snap.freshness_state, last) {
        (Freshness::Fresh, _) => None,
        (_, Some(t)) => Some(format!(
            "dados do fornecedor desatualizados desde {}",
            t.with_timezone(&tz).format(if (now - t).num_hours() >= 20 {
                "%d/%m/%Y %H:%M"
            } else {
                "%H:%M"
            })
        )),
        (_, None) => Some(
            "ainda sem dados do fornecedor: os carregadores aparecem após a primeira leitura"
                .to_owned(),
        ),
    };
    let mut counts: Vec<CountItem> = Vec::new();
    for c in &snap.cards {
        match counts.iter_mut().find(|x| x.label == c.label) {
            Some(x) => x.count += 1,
            None => counts.push(CountItem {
                label: c.label,
                tone: c.tone,
                count: 1,
            }),
        }
    }
    counts.sort_by_key(|c| TONE_ORDER.iter().position(|t| *t == c.tone));
    CardsFragment {
        updated_at,
        banner,
        counts,
        cards: snap
            .cards
            .into_iter()
            .map(|c| card_item(site, c, now))
            .collect(),
    }
}

/// The cards fragment of `site` as HTML, read from the store now.
pub async fn render_cards(state: &AppState, site: &SiteSettings) -> Result<String, PageError> {
    let now = Utc::now();
    let snap = view::snapshot(state.store(), site, now).await?;
    Ok(fragment(site, snap, now).render()?)
}

/// An HTML error page with the security headers (added by the middleware) and no details.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let title = match status {
        StatusCode::NOT_FOUND => "Página não encontrada",
        StatusCode::FORBIDDEN => "Acesso recusado",
        s if s.is_server_error() => "Erro interno",
        _ => "Não foi possível atender",
    };
    let page = ErrorPage {
        status: status.as_u16(),
        title,
        message: message.to_owned(),
    };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (status, message.to_owned()).into_response(),
    }
}

/// `GET /login`.
pub async fn login_form(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(t) = cookie_token(&headers)
        && let Ok(Some(_)) = state
            .store()
            .token_user(&auth::token_hash(&t), Utc::now())
            .await
    {
        return Redirect::to("/").into_response();
    }
    LoginPage {
        error: None,
        email: String::new(),
    }
    .into_response()
}

/// `POST /login` (an HTML form): sets the session cookie and goes to `/`, or shows the form
/// again with the one generic error.
pub async fn login_submit(State(state): State<AppState>, req: Request) -> Response {
    let ip = auth::client_ip(req.extensions());
    let headers = req.headers().clone();
    let bytes = match Bytes::from_request(req, &state).await {
        Ok(b) => b,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error_page(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "Formulário grande demais (máximo {} KiB).",
                    BODY_LIMIT / 1024
                ),
            );
        }
        Err(_) => return error_page(StatusCode::BAD_REQUEST, "Formulário ilegível."),
    };
    let mut email = String::new();
    let mut password = String::new();
    for (k, v) in url::form_urlencoded::parse(&bytes) {
        match k.as_ref() {
            "email" => email = v.chars().take(254).collect(),
            "password" => password = v.chars().take(1024).collect(),
            _ => {}
        }
    }
    let again = |status: StatusCode, msg: String, email: String| {
        let mut res = LoginPage {
            error: Some(msg),
            email,
        }
        .into_response();
        *res.status_mut() = status;
        res
    };
    if email.trim().is_empty() || password.is_empty() {
        return again(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Informe o e-mail e a senha.".into(),
            email,
        );
    }
    let previous = cookie_token(&headers);
    match auth::login(&state, &email, &password, &ip, previous.as_deref()).await {
        Ok(grant) => {
            let mut res = Redirect::to("/").into_response();
            if let Ok(v) = HeaderValue::from_str(&auth::session_cookie(
                &grant.session_token,
                is_tls(&state, &headers),
            )) {
                res.headers_mut().insert(header::SET_COOKIE, v);
            }
            res
        }
        Err(LoginFailure::Invalid) => again(
            StatusCode::UNAUTHORIZED,
            "E-mail ou senha inválidos.".into(),
            email,
        ),
        Err(LoginFailure::RateLimited { retry_after_s }) => {
            let mut res = again(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Muitas tentativas. Tente de novo em {} min.",
                    retry_after_s.div_ceil(60)
                ),
                email,
            );
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
            res
        }
        Err(LoginFailure::Internal(e)) => PageError::internal(&e).into_response(),
    }
}

/// `POST /logout`: revokes the session at once and clears the cookie.
pub async fn logout(
    State(state): State<AppState>,
    user: Option<AuthUser>,
    req: Request,
) -> Response {
    let ip = auth::client_ip(req.extensions());
    if let Some(user) = user
        && let Err(e) = auth::logout(&state, &user, &ip).await
    {
        return PageError::from(e).into_response();
    }
    let mut res = Redirect::to("/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&auth::clear_session_cookie(is_tls(&state, req.headers())))
    {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

/// `GET /`: the sites this user may see, or straight to the only one.
pub async fn home(State(state): State<AppState>, user: AuthUser) -> Result<Response, PageError> {
    let visible: Vec<&SiteSettings> = state.visible_sites(&user).collect();
    if let [only] = visible.as_slice() {
        return Ok(Redirect::to(&format!("/sites/{}", only.slug)).into_response());
    }
    let now = Utc::now();
    let mut sites = Vec::new();
    for s in visible {
        let link = state.store().vendor_link(s.id).await?;
        let (f, _) = view::site_freshness(s, link.as_ref(), now);
        let (state_label, tone) = match f {
            Freshness::Fresh => ("dados em dia", "fresh"),
            Freshness::Stale => ("dados atrasados", "idle"),
            Freshness::Offline => ("sem dados recentes", "offline"),
        };
        sites.push(SiteItem {
            slug: s.slug.clone(),
            name: s.name.clone(),
            state_label,
            tone,
        });
    }
    Ok(SitesPage {
        user_email: crate::account::NavUser::of(&user),
        sites,
    }
    .into_response())
}

/// `GET /sites/{slug}`: the overview.
pub async fn site(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    let cards_html = render_cards(&state, site).await?;
    let multi_site = state.visible_sites(&user).nth(1).is_some();
    Ok(SitePage {
        multi_site,
        user_email: crate::account::NavUser::of(&user),
        slug: site.slug.clone(),
        name: site.name.clone(),
        cards_html,
    }
    .into_response())
}

/// `GET /sites/{slug}/cards`: the live fragment alone (what the SSE stream pushes).
pub async fn cards(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    Ok(Html(render_cards(&state, site).await?).into_response())
}

/// Anything else that is not under `/api/`.
pub async fn not_found() -> Response {
    PageError::not_found().into_response()
}
