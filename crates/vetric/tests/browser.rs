//! Browser end-to-end: the dashboard issue's "Done when", done as a person does it, in Debian's
//! headless Chromium driven over CDP (chromiumoxide, STACK.md §31) against the real `vetric
//! serve` binary and an in-process CVE-Pro simulator polled every second.
//!
//! 1. log in through the form (type e-mail and password, submit);
//! 2. see the site's chargers (cards "Palmeiras 1…" with pt-BR status labels);
//! 3. the simulator starts a session and the card changes without a reload;
//! 4. the simulator answers 502 → the vendor banner appears while the cards stay; it recovers →
//!    the banner goes;
//! 5. a manager cannot open another site's page or API (404, like a site that does not exist);
//! 6. the link indicator says "Ao vivo" once connected.
//!
//! Every wait polls the DOM with a deadline (SSE keeps the network busy, so there is no
//! "network idle" to wait for) and fails with what the page showed, a screenshot path and the
//! server's output. Screenshots go to `$TMPDIR/vetric-browser/`, never into the repository.
//! Without `/usr/bin/chromium` the test fails (never skips): `.ci/run` installs it.

use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::cdp::browser_protocol::page::CaptureScreenshotFormat;
use chromiumoxide::handler::viewport::Viewport;
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::{Browser, BrowserConfig, Page};
use chrono::TimeZone;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vetric_sim::cvepro::{CveProSim, Fault, SimConfig, SimHandle};
use vetric_store::{NewResident, Store};
use vetric_testkit::{VetricProcess, free_local_addr, scratch_dir};

const BIN: &str = env!("CARGO_BIN_EXE_vetric");
const CHROMIUM: &str = "/usr/bin/chromium";
const SITE: &str = "jardim-palmeiras";
const OTHER_SITE: &str = "outro-condominio";
const MANAGER: &str = "sindica@example.com";
const MANAGER_PASSWORD: &str = "senha-da-sindica-2026";
const ADMIN: &str = "ops@example.com";
const ADMIN_PASSWORD: &str = "senha-do-operador-2026";
const CHARGERS: usize = 3;

/// A DOM condition that should hold soon (the store is polled every second, the SSE watcher
/// every second, freshness turns stale after about 4 s).
const SOON: Duration = Duration::from_secs(15);
/// Recovery waits for the client's circuit breaker to probe again (every 10 s).
const RECOVERY: Duration = Duration::from_secs(30);

fn write_config(dir: &Path, listen: SocketAddr, sim: &SimHandle) -> PathBuf {
    let cfg = sim.config();
    let path = dir.join("vetric.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"{listen}\"\n\
             database_url = \"sqlite://vetric.db\"\n\
             [[sites]]\n\
             slug = \"{SITE}\"\n\
             name = \"Residencial Jardim das Palmeiras\"\n\
             timezone = \"America/Sao_Paulo\"\n\
             [sites.cvepro]\n\
             base_url = \"{}\"\n\
             api_key = \"{}\"\n\
             email = \"{}\"\n\
             password = \"{}\"\n\
             poll_interval_s = 1\n\
             [[sites]]\n\
             slug = \"{OTHER_SITE}\"\n\
             name = \"Condomínio Vizinho\"\n",
            sim.base_url(),
            cfg.api_key,
            cfg.email,
            cfg.password
        ),
    )
    .expect("write config");
    path
}

/// `vetric user add`, the password piped on stdin as an operator would.
fn user_add(config: &Path, email: &str, password: &str, role: &str, site: Option<&str>) {
    use std::io::Write;
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["user", "add", "--config"])
        .arg(config)
        .args(["--email", email, "--role", role])
        .env("VETRIC_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(s) = site {
        cmd.args(["--site", s]);
    }
    let mut child = cmd.spawn().expect("start `vetric user add`");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write the password to `vetric user add`");
    let out = child
        .wait_with_output()
        .expect("wait for `vetric user add`");
    assert!(
        out.status.success(),
        "`vetric user add --email {email}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The simulator's residents and tags, registered before `serve` starts (as `demo` does), so
/// cards say who is charging.
async fn seed_residents(db: &Path, sim: &SimHandle) {
    let store = Store::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open the store");
    let site = store
        .site_by_slug(SITE)
        .await
        .expect("query sites")
        .expect("`user add` recorded the configured sites");
    let since = chrono::Utc
        .with_ymd_and_hms(2025, 1, 1, 3, 0, 0)
        .single()
        .expect("a valid instant");
    for r in &sim.fleet().residents {
        let id = store
            .add_resident(
                site.id,
                &NewResident {
                    name: r.name.clone(),
                    phone: r.phone.clone(),
                    email: Some(r.email.clone()),
                    block: r.apartment.block.clone(),
                    unit: r.apartment.unit.clone(),
                },
            )
            .await
            .expect("add a resident");
        for t in &r.tags {
            let tag = vetric_domain::Tag::parse(&t.id_tag).expect("a simulator tag parses");
            store
                .add_tag(site.id, id, &tag, since, None)
                .await
                .expect("add a tag");
        }
    }
    store.close().await;
}

/// `text` as a JS string literal.
fn js_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string serialises")
}

/// Fails (never skips) when the browser is not installed, saying how to get it.
fn require_chromium() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: the browser tests need Debian's chromium package \
         (`.ci/run` installs it; by hand: apt-get install chromium)"
    );
}

/// The browser, its page, and the server it looks at: every wait fails with a screenshot
/// path, what the page showed and what the server printed.
struct Ui {
    browser: Browser,
    handler: tokio::task::JoinHandle<()>,
    page: Page,
    base: String,
    shots: PathBuf,
    vetric: VetricProcess,
    started: Instant,
    _profile: tempfile::TempDir,
}

impl Ui {
    async fn launch(base: String, vetric: VetricProcess) -> Self {
        let profile = scratch_dir();
        let config = BrowserConfig::builder()
            .chrome_executable(CHROMIUM)
            .new_headless_mode()
            .no_sandbox()
            .user_data_dir(profile.path())
            .viewport(Viewport {
                width: 1280,
                height: 900,
                ..Viewport::default()
            })
            .window_size(1280, 900)
            .args([
                "disable-gpu",
                "disable-quic",
                "no-first-run",
                "disable-background-networking",
                "disable-component-update",
                "disable-sync",
            ])
            .launch_timeout(Duration::from_secs(30))
            .request_timeout(Duration::from_secs(15))
            .build()
            .expect("browser configuration");
        let (browser, mut events) = Browser::launch(config)
            .await
            .unwrap_or_else(|e| panic!("cannot start {CHROMIUM} headless: {e}"));
        // The CDP connection only makes progress while its handler is polled.
        let handler = tokio::spawn(async move { while events.next().await.is_some() {} });
        let page = browser
            .new_page("about:blank")
            .await
            .expect("open a browser tab");
        let shots = std::env::temp_dir().join("vetric-browser");
        std::fs::create_dir_all(&shots).expect("create the screenshot directory");
        Self {
            browser,
            handler,
            page,
            base,
            shots,
            vetric,
            started: Instant::now(),
            _profile: profile,
        }
    }

    fn log(&self, step: &str) {
        eprintln!("[{:>5.1} s] {step}", self.started.elapsed().as_secs_f64());
    }

    async fn goto(&self, path: &str) {
        let url = format!("{}{path}", self.base);
        self.page
            .goto(url.as_str())
            .await
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    }

    /// Evaluates a JS expression and returns its JSON value.
    async fn eval<T: DeserializeOwned>(&self, js: &str) -> Result<T, String> {
        let result = self
            .page
            .evaluate_expression(js)
            .await
            .map_err(|e| e.to_string())?;
        result.into_value::<T>().map_err(|e| e.to_string())
    }

    async fn eval_ok<T: DeserializeOwned>(&self, js: &str) -> T {
        match self.eval(js).await {
            Ok(v) => v,
            Err(e) => self.fail(&format!("evaluating `{js}` failed: {e}")).await,
        }
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let path = self.shots.join(format!("{name}.png"));
        let params = ScreenshotParams::builder()
            .format(CaptureScreenshotFormat::Png)
            .build();
        if let Err(e) = self.page.save_screenshot(params, &path).await {
            eprintln!("screenshot {} failed: {e}", path.display());
        }
        path
    }

    /// Fails the test with a screenshot, the page's text and the server's output.
    async fn fail<T>(&self, what: &str) -> T {
        let shot = self
            .screenshot(&format!(
                "failure-{}",
                what.chars()
                    .filter(char::is_ascii_alphanumeric)
                    .take(40)
                    .collect::<String>()
            ))
            .await;
        let url = self.page.url().await.ok().flatten().unwrap_or_default();
        let text: String = self
            .eval("document.body ? document.body.innerText : '(no body)'")
            .await
            .unwrap_or_else(|e| format!("(page text unavailable: {e})"));
        panic!(
            "{what}\n  page: {url}\n  screenshot: {}\n--- page text ---\n{text}\n{}",
            shot.display(),
            self.vetric.transcript()
        );
    }

    /// Polls `js` (a boolean expression) every 100 ms until it is true, or fails after
    /// `limit` saying `what` was expected. Evaluation errors (a navigation in between) count
    /// as "not yet".
    async fn wait_until(&self, what: &str, limit: Duration, js: &str) {
        let deadline = Instant::now() + limit;
        loop {
            let last_error = match self.eval::<bool>(js).await {
                Ok(true) => return,
                Ok(false) => None,
                Err(e) => Some(e),
            };
            if Instant::now() > deadline {
                let why = last_error.map_or(String::new(), |e| format!(" (last error: {e})"));
                self.fail::<()>(&format!(
                    "timed out after {limit:?} waiting for: {what}{why}"
                ))
                .await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The text of the card of `charger` (`.charger` starts with the name), or "" if none.
    fn card_js(charger: &str) -> String {
        let charger = js_string(charger);
        format!(
            "(Array.from(document.querySelectorAll('#cards li.card')).find(c => \
               (c.querySelector('.charger')?.firstChild?.textContent || '').trim() === {charger}) \
             || {{ innerText: '' }}).innerText"
        )
    }

    /// Emulates a screen of `width`×`height` CSS pixels and saves a screenshot of the whole
    /// page at that width (the viewport is stretched to the page's height for the capture).
    async fn screenshot_at(&self, name: &str, width: i64, height: i64, mobile: bool) -> PathBuf {
        let metrics = |h: i64| {
            let mut p = SetDeviceMetricsOverrideParams::new(width, h, 1.0, mobile);
            p.screen_width = Some(width);
            p.screen_height = Some(height);
            p
        };
        self.page
            .execute(metrics(height))
            .await
            .expect("emulate the screen size");
        let full: i64 = self
            .eval_ok("Math.ceil(document.documentElement.scrollHeight)")
            .await;
        self.page
            .execute(metrics(full.max(height)))
            .await
            .expect("stretch the viewport to the page");
        let path = self.screenshot(name).await;
        self.page
            .execute(metrics(height))
            .await
            .expect("restore the screen size");
        path
    }

    async fn close(mut self) -> VetricProcess {
        if let Err(e) = self.browser.close().await {
            eprintln!("closing the browser: {e}");
        }
        if tokio::time::timeout(Duration::from_secs(10), self.browser.wait())
            .await
            .is_err()
        {
            let _ = self.browser.kill().await;
        }
        self.handler.abort();
        self.vetric
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_watches_the_overview_live_in_a_real_browser() {
    require_chromium();
    let dir = scratch_dir();
    let sim = CveProSim::start(
        SimConfig {
            chargers: CHARGERS,
            ..SimConfig::scripted()
        },
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("simulator");
    let listen = free_local_addr();
    let config = write_config(dir.path(), listen, &sim);
    user_add(&config, MANAGER, MANAGER_PASSWORD, "manager", Some(SITE));
    user_add(&config, ADMIN, ADMIN_PASSWORD, "admin", None);
    seed_residents(&dir.path().join("vetric.db"), &sim).await;

    let base = format!("http://{listen}");
    let mut vetric = VetricProcess::spawn(
        Path::new(BIN),
        &["serve", "--config", config.to_str().expect("utf-8 path")],
        &[("VETRIC_LOG", "info")],
    );
    vetric.wait_live(&base, Duration::from_secs(30)).await;
    let ui = Ui::launch(base.clone(), vetric).await;
    ui.log("browser and server up");

    // 1. Log in through the form, as a person: type, then press the button.
    ui.goto("/").await;
    ui.wait_until(
        "the login form (an unauthenticated visit goes to /login)",
        SOON,
        "location.pathname === '/login' && !!document.querySelector('form #email')",
    )
    .await;
    for (selector, text) in [("#email", MANAGER), ("#password", MANAGER_PASSWORD)] {
        ui.page
            .find_element(selector)
            .await
            .expect("login field")
            .click()
            .await
            .expect("focus the field")
            .type_str(text)
            .await
            .expect("type into the field");
    }
    ui.page
        .find_element("form button[type=submit]")
        .await
        .expect("the Entrar button")
        .click()
        .await
        .expect("press Entrar");
    ui.wait_until(
        "the manager's only site after logging in",
        SOON,
        &format!("location.pathname === '/sites/{SITE}' && !!document.getElementById('cards')"),
    )
    .await;
    ui.log("logged in");

    // 6. The link indicator turns "Ao vivo" once the SSE stream is open.
    ui.wait_until(
        "the link indicator saying \"Ao vivo\"",
        SOON,
        "document.getElementById('live-status')?.textContent.trim() === 'Ao vivo'",
    )
    .await;
    ui.log("Ao vivo");

    // 2. The chargers, as cards named after the condominium with pt-BR labels (the first poll
    //    may land after the page: then the cards arrive over SSE).
    let names: Vec<String> = (1..=CHARGERS).map(|i| format!("Palmeiras {i}")).collect();
    for name in &names {
        ui.wait_until(
            &format!("a card \"{name}\" saying Disponível"),
            SOON,
            &format!("{}.includes('Disponível')", Ui::card_js(name)),
        )
        .await;
    }
    let count: usize = ui
        .eval_ok("document.querySelectorAll('#cards li.card').length")
        .await;
    assert_eq!(count, CHARGERS, "one card per connector");
    ui.log("cards shown");
    let shot = ui
        .screenshot_at("overview-desktop-free", 1280, 900, false)
        .await;
    eprintln!("screenshot: {}", shot.display());

    // 3. The simulator starts a session on "Palmeiras 1": the card changes with no reload.
    let marker: i64 = ui.eval_ok("window.__marker = 1").await;
    assert_eq!(marker, 1);
    let resident = sim.fleet().residents[0].clone();
    sim.start_session(0, 1, &resident.tags[0].id_tag, 7_400.0)
        .expect("start a session in the simulator");
    let first = Ui::card_js(&names[0]);
    ui.wait_until(
        "the card \"Palmeiras 1\" saying Carregando, with who is charging",
        SOON,
        &format!(
            "{first}.includes('Carregando') && {first}.includes({})",
            js_string(&resident.name)
        ),
    )
    .await;
    let marker: Option<i64> = ui.eval_ok("window.__marker ?? null").await;
    assert_eq!(
        marker,
        Some(1),
        "the page was reloaded: the card must change in place"
    );
    let others_free: bool = ui
        .eval_ok(&format!(
            "{}.includes('Disponível') && {}.includes('Disponível')",
            Ui::card_js(&names[1]),
            Ui::card_js(&names[2])
        ))
        .await;
    assert!(others_free, "only Palmeiras 1 changed");
    ui.log("card changed live");
    let shot = ui
        .screenshot_at("overview-desktop-charging", 1280, 900, false)
        .await;
    eprintln!("screenshot: {}", shot.display());
    let shot = ui
        .screenshot_at("overview-phone-charging", 390, 844, true)
        .await;
    eprintln!("screenshot: {}", shot.display());
    // On a phone the cards stack in one column and nothing runs off the right edge.
    ui.page
        .execute(SetDeviceMetricsOverrideParams::new(390, 844, 1.0, true))
        .await
        .expect("emulate a phone");
    let phone_layout: (i64, i64, usize) = ui
        .eval_ok(
            "(() => { const cards = Array.from(document.querySelectorAll('#cards li.card')); \
               return [document.documentElement.scrollWidth, window.innerWidth, \
                       new Set(cards.map(c => Math.round(c.getBoundingClientRect().left))).size]; })()",
        )
        .await;
    assert!(
        phone_layout.0 <= phone_layout.1,
        "the page is wider than a 390 px phone: scrollWidth {} > {}",
        phone_layout.0,
        phone_layout.1
    );
    assert_eq!(
        phone_layout.2, 1,
        "on a phone the cards stack in one column"
    );
    ui.page
        .execute(SetDeviceMetricsOverrideParams::new(1280, 900, 1.0, false))
        .await
        .expect("back to the desktop size");

    // 4. Vendor outage (502): the banner appears, the last-known cards stay.
    sim.set_fault(Fault::Outage {
        status: 502,
        duration_s: None,
    });
    ui.wait_until(
        "the vendor banner during a 502 outage",
        SOON,
        "(document.querySelector('#cards .banner')?.textContent || '')\
           .includes('dados do fornecedor desatualizados')",
    )
    .await;
    let still: (usize, bool) = ui
        .eval_ok(&format!(
            "[document.querySelectorAll('#cards li.card').length, {first}.includes('Carregando')]"
        ))
        .await;
    assert_eq!(
        still,
        (CHARGERS, true),
        "the last-known cards stay during an outage"
    );
    ui.log("banner shown during the outage");
    let shot = ui
        .screenshot_at("overview-desktop-outage", 1280, 900, false)
        .await;
    eprintln!("screenshot: {}", shot.display());
    let shot = ui
        .screenshot_at("overview-phone-outage", 390, 844, true)
        .await;
    eprintln!("screenshot: {}", shot.display());
    ui.page
        .execute(SetDeviceMetricsOverrideParams::new(1280, 900, 1.0, false))
        .await
        .expect("back to the desktop size");

    sim.clear_faults();
    ui.wait_until(
        "the vendor banner to go once the vendor answers again",
        RECOVERY,
        "!!document.querySelector('#cards li.card') && !document.querySelector('#cards .banner')",
    )
    .await;
    let marker: Option<i64> = ui.eval_ok("window.__marker ?? null").await;
    assert_eq!(marker, Some(1), "the page was reloaded during the outage");
    ui.log("banner gone after recovery");

    // 5. Another site: 404 for this manager, page and API alike, exactly as a site that does
    //    not exist; the site does exist (the admin sees it).
    let statuses: Vec<u16> = ui
        .eval_ok(&format!(
            "Promise.all(['/sites/{OTHER_SITE}', '/sites/{OTHER_SITE}/cards', \
               '/sites/{OTHER_SITE}/events', '/api/v1/sites/{OTHER_SITE}/chargers', \
               '/api/v1/sites/{OTHER_SITE}/sessions', '/sites/nao-existe', \
               '/api/v1/sites/nao-existe/chargers', '/api/v1/sites/{SITE}/chargers']\
               .map(u => fetch(u, {{ credentials: 'same-origin' }}).then(r => r.status)))"
        ))
        .await;
    assert_eq!(
        statuses,
        vec![404, 404, 404, 404, 404, 404, 404, 200],
        "another site's page/cards/events/API, a missing site, then the manager's own API"
    );
    let sites: serde_json::Value = ui
        .eval_ok("fetch('/api/v1/sites').then(r => r.json())")
        .await;
    let slugs: Vec<&str> = sites["data"]
        .as_array()
        .expect("data list")
        .iter()
        .filter_map(|s| s["slug"].as_str())
        .collect();
    assert_eq!(slugs, vec![SITE], "the manager lists only their site");
    let admin = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http client");
    let login: serde_json::Value = admin
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"email": ADMIN, "password": ADMIN_PASSWORD}))
        .send()
        .await
        .expect("admin login")
        .json()
        .await
        .expect("login answer");
    let token = login["token"].as_str().expect("a token");
    let other = admin
        .get(format!("{base}/api/v1/sites/{OTHER_SITE}/chargers"))
        .bearer_auth(token)
        .send()
        .await
        .expect("admin reads the other site");
    assert_eq!(other.status(), 200, "the other site exists (for the admin)");
    // And as a person: typing the address shows the not-found page.
    ui.goto(&format!("/sites/{OTHER_SITE}")).await;
    ui.wait_until(
        "the not-found page for another site",
        SOON,
        "document.body.innerText.includes('Página não encontrada') \
         && !document.getElementById('cards')",
    )
    .await;
    ui.log("other site refused");

    let mut vetric = ui.close().await;
    let status = vetric.terminate(Duration::from_secs(35)).await;
    assert!(
        status.success(),
        "serve did not exit cleanly: {status}\n{}",
        vetric.transcript()
    );
    sim.shutdown().await;
}

/// The dashboard issue's "a CSV import with one bad row reports that row": the manager picks
/// a CSV in the import page's file input (CDP `DOM.setFileInputFiles`, as a person choosing a
/// file), the preview names the bad row and its column, and the confirmation imports only the
/// good rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_import_with_one_bad_row_reports_that_row() {
    use chromiumoxide::cdp::browser_protocol::dom::SetFileInputFilesParams;
    require_chromium();
    let dir = scratch_dir();
    let sim = CveProSim::start(
        SimConfig {
            chargers: 1,
            ..SimConfig::scripted()
        },
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("simulator");
    let listen = free_local_addr();
    let config = write_config(dir.path(), listen, &sim);
    user_add(&config, MANAGER, MANAGER_PASSWORD, "manager", Some(SITE));
    let base = format!("http://{listen}");
    let mut vetric = VetricProcess::spawn(
        Path::new(BIN),
        &["serve", "--config", config.to_str().expect("utf-8 path")],
        &[("VETRIC_LOG", "info")],
    );
    vetric.wait_live(&base, Duration::from_secs(30)).await;
    let ui = Ui::launch(base, vetric).await;

    ui.goto("/login").await;
    ui.wait_until(
        "the login form",
        SOON,
        "!!document.querySelector('form #email')",
    )
    .await;
    for (selector, text) in [("#email", MANAGER), ("#password", MANAGER_PASSWORD)] {
        ui.page
            .find_element(selector)
            .await
            .expect("login field")
            .click()
            .await
            .expect("focus the field")
            .type_str(text)
            .await
            .expect("type into the field");
    }
    ui.page
        .find_element("form button[type=submit]")
        .await
        .expect("the Entrar button")
        .click()
        .await
        .expect("press Entrar");
    ui.wait_until(
        "the site after logging in",
        SOON,
        &format!("location.pathname === '/sites/{SITE}'"),
    )
    .await;

    // From the residents list, the "Importar" button.
    ui.goto(&format!("/sites/{SITE}/residents")).await;
    ui.wait_until(
        "the residents list with its Importar button",
        SOON,
        "!!document.querySelector('a[href$=\"/residents/import\"]')",
    )
    .await;
    ui.page
        .find_element("a[href$=\"/residents/import\"]")
        .await
        .expect("the Importar link")
        .click()
        .await
        .expect("press Importar");
    ui.wait_until(
        "the import page's file input",
        SOON,
        "location.pathname.endsWith('/residents/import') && !!document.getElementById('file')",
    )
    .await;
    ui.log("import page open");

    // A pt-BR Excel CSV (BOM, `;`): row 3 has a phone without the country code.
    let csv = dir.path().join("moradores.csv");
    std::fs::write(
        &csv,
        "\u{FEFF}nome;bloco;unidade;telefone;tags\r\n\
         Helena Costa;A;11;+55 11 93333-0001;IMP001\r\n\
         Otávio Nunes;A;12;3333-0002;IMP002\r\n\
         Sofia Ramos;B;21;+55 11 93333-0003;IMP003|IMP004\r\n",
    )
    .expect("write the CSV");
    let input = ui.page.find_element("#file").await.expect("the file input");
    let pick = SetFileInputFilesParams::builder()
        .file(csv.to_str().expect("utf-8 path"))
        .backend_node_id(input.backend_node_id)
        .build()
        .expect("file input parameters");
    ui.page
        .execute(pick)
        .await
        .expect("choose the file in the file input");
    ui.page
        .find_element("form[enctype=\"multipart/form-data\"] button[type=submit]")
        .await
        .expect("the Verificar button")
        .click()
        .await
        .expect("press Verificar");
    ui.wait_until(
        "the preview naming row 3 and its telefone column",
        SOON,
        "(document.querySelector('#linha-3')?.innerText || '').includes('telefone') \
         && document.querySelector('#linha-3')?.dataset.ok === 'false' \
         && document.querySelector('#linha-2')?.dataset.ok === 'true'",
    )
    .await;
    let counts: String = ui
        .eval_ok("document.getElementById('import-counts').innerText")
        .await;
    assert!(
        counts.contains("2 linha(s) válida(s)") && counts.contains("1 com problema"),
        "{counts}"
    );
    let shot = ui.screenshot("import-preview").await;
    eprintln!("screenshot: {}", shot.display());
    ui.log("bad row reported");

    ui.page
        .find_element("#import-confirm")
        .await
        .expect("the Importar 2 linhas válidas button")
        .click()
        .await
        .expect("press Importar");
    ui.wait_until(
        "the result page",
        SOON,
        "(document.getElementById('import-done')?.innerText || '').includes('2 moradores importados')",
    )
    .await;
    ui.goto(&format!("/sites/{SITE}/residents")).await;
    ui.wait_until(
        "the imported residents in the list, without the bad row",
        SOON,
        "document.body.innerText.includes('Helena Costa') \
         && document.body.innerText.includes('Sofia Ramos') \
         && !document.body.innerText.includes('Otávio Nunes')",
    )
    .await;
    ui.log("good rows imported");

    let mut vetric = ui.close().await;
    let status = vetric.terminate(Duration::from_secs(35)).await;
    assert!(
        status.success(),
        "serve did not exit cleanly: {status}\n{}",
        vetric.transcript()
    );
    sim.shutdown().await;
}

/// The statements issue's "Done when": on the demo (`vetric demo`, as a person starts it), the
/// admin printed on its stdout logs in, opens the demo site's statements for the previous
/// local month (the page's default), presses "Emitir extrato" (and its confirmation, if the
/// page asks), sees "Versão 1" with its total; then the PDF and the XLSX of that version,
/// fetched over HTTP with the browser's own session cookie, carry the same total (the PDF read
/// with poppler's `pdftotext`, the XLSX with calamine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_is_issued_and_its_files_match_the_page() {
    use chrono::Datelike;
    require_chromium();
    let dir = scratch_dir();
    let listen = free_local_addr();
    let base = format!("http://{listen}");
    let mut vetric = VetricProcess::spawn(
        Path::new(BIN),
        &[
            "demo",
            "--listen",
            &listen.to_string(),
            "--data-dir",
            dir.path().to_str().expect("utf-8 path"),
            "--chargers",
            "2",
        ],
        &[("VETRIC_LOG", "info")],
    );
    let admin_line = vetric
        .wait_for_stdout(Duration::from_secs(60), |l| l.starts_with("admin: "))
        .await;
    let mut parts = admin_line.split_whitespace().skip(1);
    let (email, password) = (
        parts.next().expect("admin e-mail").to_owned(),
        parts.next().expect("admin password").to_owned(),
    );
    vetric.wait_live(&base, Duration::from_secs(30)).await;
    let ui = Ui::launch(base.clone(), vetric).await;

    ui.goto("/login").await;
    ui.wait_until(
        "the login form",
        SOON,
        "!!document.querySelector('form #email')",
    )
    .await;
    for (selector, text) in [("#email", email.as_str()), ("#password", password.as_str())] {
        ui.page
            .find_element(selector)
            .await
            .expect("login field")
            .click()
            .await
            .expect("focus the field")
            .type_str(text)
            .await
            .expect("type into the field");
    }
    ui.page
        .find_element("form button[type=submit]")
        .await
        .expect("the Entrar button")
        .click()
        .await
        .expect("press Entrar");
    ui.wait_until(
        "the home page after logging in",
        SOON,
        "location.pathname !== '/login'",
    )
    .await;

    // The previous local month is the page's default.
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::America::Sao_Paulo)
        .date_naive();
    let previous = today
        .with_day(1)
        .and_then(|d| d.pred_opt())
        .expect("a date");
    let month = format!("{:04}-{:02}", previous.year(), previous.month());
    ui.goto(&format!("/sites/{SITE}/statements")).await;
    ui.wait_until(
        "the statements page with its Emitir button",
        SOON,
        "!!document.getElementById('issue-button')",
    )
    .await;
    let shown: String = ui.eval_ok("document.getElementById('f-month').value").await;
    assert_eq!(shown, month, "the default month is the previous one");
    let draft_total: String = ui
        .eval_ok("document.getElementById('statement-total').innerText")
        .await;
    ui.log(&format!("draft of {month}: {draft_total}"));
    ui.page
        .find_element("#issue-button")
        .await
        .expect("the Emitir extrato button")
        .click()
        .await
        .expect("press Emitir extrato");
    ui.wait_until(
        "version 1, or a confirmation step",
        SOON,
        "!!document.getElementById('issue-confirm') \
         || document.getElementById('statement-status')?.dataset.version === '1'",
    )
    .await;
    let confirm: bool = ui
        .eval_ok("!!document.getElementById('issue-confirm')")
        .await;
    if confirm {
        ui.page
            .find_element("#issue-confirm")
            .await
            .expect("the confirm button")
            .click()
            .await
            .expect("press Confirmar");
        ui.wait_until(
            "version 1 after confirming",
            SOON,
            "document.getElementById('statement-status')?.dataset.version === '1'",
        )
        .await;
    }
    let status: String = ui
        .eval_ok("document.getElementById('statement-status').innerText")
        .await;
    assert!(status.contains("Versão 1 emitida em"), "{status}");
    let total: String = ui
        .eval_ok("document.getElementById('statement-total').innerText")
        .await;
    assert!(total.starts_with("R$ "), "{total}");
    let shot = ui.screenshot_at("statement-issued", 1280, 900, false).await;
    eprintln!("screenshot: {}", shot.display());
    ui.log(&format!("version 1 issued: {total}"));

    // The files of the version on screen, with the browser's session cookie.
    let link = |ext: &str| {
        format!(
            "Array.from(document.querySelectorAll('a[download]')).map(a => a.getAttribute('href')) \
             .find(h => h.includes('.{ext}?version=1'))"
        )
    };
    let pdf_href: String = ui.eval_ok(&link("pdf")).await;
    let xlsx_href: String = ui.eval_ok(&link("xlsx")).await;
    let cookie = ui
        .page
        .get_cookies()
        .await
        .expect("the browser's cookies")
        .into_iter()
        .find(|c| c.name == "vetric_session")
        .expect("the session cookie");
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http client");
    let fetch = |href: String| {
        let req = http
            .get(format!("{base}{href}"))
            .header("Cookie", format!("vetric_session={}", cookie.value));
        async move {
            let res = req.send().await.expect("download");
            assert_eq!(res.status(), 200, "{href}");
            let ct = res
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            (ct, res.bytes().await.expect("file body").to_vec())
        }
    };
    let number = total.trim_start_matches("R$ ").to_owned();

    let (ct, pdf) = fetch(pdf_href).await;
    assert_eq!(ct, "application/pdf");
    let pdf_path = dir.path().join("extrato.pdf");
    std::fs::write(&pdf_path, &pdf).expect("write the PDF");
    let out = std::process::Command::new("pdftotext")
        .args(["-layout", "-enc", "UTF-8"])
        .arg(&pdf_path)
        .arg("-")
        .output()
        .expect("pdftotext (Debian's poppler-utils; .ci/run installs it)");
    assert!(out.status.success(), "pdftotext failed");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&number), "{number} not in the PDF:\n{text}");

    let (ct, xlsx) = fetch(xlsx_href).await;
    assert_eq!(
        ct,
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    let cents = {
        use calamine::{Data, Reader, Xlsx};
        let mut wb: Xlsx<_> = Xlsx::new(std::io::Cursor::new(xlsx)).expect("an XLSX");
        let range = wb.worksheet_range("Resumo").expect("the Resumo sheet");
        let row = range
            .rows()
            .find(|r| matches!(r.first(), Some(Data::String(s)) if s == "Total"))
            .expect("the Total row");
        let last = row
            .iter()
            .rev()
            .find_map(|c| match c {
                Data::Float(f) => Some(*f),
                Data::Int(i) => Some(*i as f64),
                _ => None,
            })
            .expect("the total as a number");
        (last * 100.0).round() as i64
    };
    let page_cents: i64 = number
        .replace(['.', ','], "")
        .parse()
        .expect("the page's total is a number");
    assert_eq!(cents, page_cents, "XLSX total vs the page's {total}");
    ui.log("PDF and XLSX totals match the page");

    let mut vetric = ui.close().await;
    let status = vetric.terminate(Duration::from_secs(35)).await;
    assert!(
        status.success(),
        "demo did not exit cleanly: {status}\n{}",
        vetric.transcript()
    );
}
