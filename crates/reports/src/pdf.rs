//! A statement as PDF (issue #8): the site's monthly statement for the manager, and one
//! apartment's statement for its residents. A4 portrait, DejaVu Sans embedded (subset), text
//! that `pdftotext` extracts with its accents.
//!
//! Written with krilla (STACK.md §22: typst's own PDF backend, without typst), so this module
//! lays the pages out itself, in two passes: [`Layout`] places everything on pages measured in
//! points (top-left origin, y down) — headers, the summary, the charts, the tables whose header
//! row is repeated on each page — and only then, knowing the page count, [`render`] draws the
//! pages with their "Página X de Y" footers. Text widths come from the embedded font's advance
//! widths (skrifa), so numbers are right-aligned to the point and long names cut with "…".
//!
//! Charts are [`crate::charts`]' SVG, drawn as vectors with krilla-svg; their labels are real
//! text too. The logo is [`PdfMeta::logo_svg`] or vetric's own mark; an SVG that does not parse
//! (or that points at files: external references are never resolved) falls back to the mark
//! rather than failing the statement.

use crate::charts::{self, month_name_pt_br};
use crate::{ReportError, hms, local, pt_br_decimal, zone};
use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use chrono_tz::Tz;
use krilla::Document;
use krilla::color::rgb;
use krilla::geom::{PathBuilder, Point, Rect, Size, Transform};
use krilla::metadata::{DateTime as PdfDateTime, Metadata};
use krilla::num::NormalizedF32;
use krilla::page::PageSettings;
use krilla::paint::{Fill, FillRule, Stroke};
use krilla::surface::Surface;
use krilla::text::{Font, TextDirection};
use krilla_svg::{SurfaceExt, SvgSettings};
use rust_decimal::Decimal;
use skrifa::MetadataProvider;
use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use vetric_domain::statement::UNASSIGNED_LABEL;
use vetric_domain::{ApartmentLine, SessionLine, Statement};

/// What a PDF shows besides the statement itself.
#[derive(Debug, Clone)]
pub struct PdfMeta {
    /// When the file is produced (shown in the site's zone, and the PDF's creation date).
    pub generated_at: DateTime<Utc>,
    /// The issued version; `None`: a draft ("Rascunho").
    pub version: Option<i64>,
    /// The site's logo as SVG; `None`: vetric's own mark.
    pub logo_svg: Option<String>,
}

const REGULAR_TTF: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
const BOLD_TTF: &[u8] = include_bytes!("../fonts/DejaVuSans-Bold.ttf");

/// A4 in points.
const PAGE_W: f32 = 595.276;
const PAGE_H: f32 = 841.89;
const MARGIN_X: f32 = 40.0;
const CONTENT_W: f32 = PAGE_W - 2.0 * MARGIN_X;
/// Where content stops: the footer lives below.
const CONTENT_BOTTOM: f32 = PAGE_H - 52.0;
/// Where content starts on pages after the first (below the running header).
const CONTINUATION_TOP: f32 = 58.0;

const TABLE_FONT: f32 = 8.0;
const ROW_H: f32 = 14.0;
const CELL_PAD: f32 = 3.0;

const INK: Rgb = Rgb(0x21, 0x25, 0x29);
const MUTED: Rgb = Rgb(0x6c, 0x75, 0x7d);
const HEADER_BG: Rgb = Rgb(0xe9, 0xec, 0xef);
const ZEBRA: Rgb = Rgb(0xf5, 0xf7, 0xf9);
const TOTAL_BG: Rgb = Rgb(0xdb, 0xe4, 0xf0);
const RULE: Rgb = Rgb(0xad, 0xb5, 0xbd);
const DRAFT: Rgb = Rgb(0xc9, 0x2a, 0x2a);

/// vetric's mark: a bolt on a rounded square.
const VETRIC_MARK: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 48 48\" width=\"48\" height=\"48\"><rect x=\"0\" y=\"0\" width=\"48\" height=\"48\" rx=\"10\" fill=\"#2b8a3e\"/><path d=\"M27 6 L12 27 H22 L19 42 L36 19 H26 Z\" fill=\"#ffffff\"/></svg>";

#[derive(Debug, Clone, Copy, PartialEq)]
struct Rgb(u8, u8, u8);

/// One font with its advance widths (in em) for the characters a statement uses.
struct FontFace {
    font: Font,
    /// Advances of U+0000..U+3000 (Latin, punctuation, "…", "—"); others use `fallback`.
    advances: Vec<f32>,
    fallback: f32,
}

impl FontFace {
    fn load(bytes: &'static [u8]) -> Option<Self> {
        let font = Font::new(bytes.into(), 0)?;
        let sk = skrifa::FontRef::new(bytes).ok()?;
        let charmap = sk.charmap();
        let metrics = sk.glyph_metrics(
            skrifa::instance::Size::new(1.0),
            skrifa::instance::LocationRef::default(),
        );
        let fallback = 0.6;
        let advances = (0u32..0x3000)
            .map(|c| {
                charmap
                    .map(c)
                    .and_then(|g| metrics.advance_width(g))
                    .unwrap_or(fallback)
            })
            .collect();
        Some(Self {
            font,
            advances,
            fallback,
        })
    }

    /// The width of `text` at `size` points (advances only; DejaVu's kerning of digits and
    /// Latin letters is a fraction of a point).
    fn width(&self, text: &str, size: f32) -> f32 {
        text.chars()
            .map(|c| {
                self.advances
                    .get(c as usize)
                    .copied()
                    .unwrap_or(self.fallback)
            })
            .sum::<f32>()
            * size
    }

    /// `text`, cut with "…" so that it fits in `max` points.
    fn fit(&self, text: &str, size: f32, max: f32) -> String {
        if self.width(text, size) <= max {
            return text.to_owned();
        }
        let ellipsis = self.width("…", size);
        let mut out = String::new();
        let mut w = 0.0;
        for c in text.chars() {
            let cw = self.width(c.encode_utf8(&mut [0; 4]), size);
            if w + cw + ellipsis > max {
                break;
            }
            w += cw;
            out.push(c);
        }
        out.push('…');
        out
    }
}

struct Fonts {
    regular: FontFace,
    bold: FontFace,
    /// The same two fonts for the SVG charts' text.
    svg_db: Arc<usvg::fontdb::Database>,
}

fn fonts() -> Result<&'static Fonts, ReportError> {
    static FONTS: OnceLock<Option<Fonts>> = OnceLock::new();
    FONTS
        .get_or_init(|| {
            let mut db = usvg::fontdb::Database::new();
            db.load_font_data(REGULAR_TTF.to_vec());
            db.load_font_data(BOLD_TTF.to_vec());
            // The charts name DejaVu Sans first; anything generic lands on it too.
            db.set_sans_serif_family("DejaVu Sans");
            Some(Fonts {
                regular: FontFace::load(REGULAR_TTF)?,
                bold: FontFace::load(BOLD_TTF)?,
                svg_db: Arc::new(db),
            })
        })
        .as_ref()
        .ok_or_else(|| ReportError::Pdf("the embedded DejaVu Sans font did not load".into()))
}

/// Parses an SVG for drawing: the embedded fonts, and no external file or URL ever read.
fn parse_svg(svg: &str, fonts: &Fonts) -> Option<usvg::Tree> {
    let options = usvg::Options {
        fontdb: fonts.svg_db.clone(),
        font_family: "DejaVu Sans".into(),
        image_href_resolver: usvg::ImageHrefResolver {
            resolve_data: usvg::ImageHrefResolver::default_data_resolver(),
            resolve_string: Box::new(|_, _| None),
        },
        ..usvg::Options::default()
    };
    usvg::Tree::from_str(svg, &options).ok()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Align {
    Left,
    Right,
}

/// Something placed on a page.
enum Op {
    Text {
        x: f32,
        y: f32,
        size: f32,
        bold: bool,
        color: Rgb,
        text: String,
    },
    Rect {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        color: Rgb,
    },
    Line {
        x1: f32,
        y1: f32,
        x2: f32,
        y2: f32,
        color: Rgb,
        width: f32,
    },
    Svg {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        tree: usize,
    },
}

struct Column {
    /// The header; `\n` splits it in two lines.
    title: &'static str,
    width: f32,
    align: Align,
}

/// Pages being filled, top to bottom.
struct Layout<'f> {
    fonts: &'f Fonts,
    pages: Vec<Vec<Op>>,
    trees: Vec<usvg::Tree>,
    /// The next free y on the current page.
    y: f32,
    /// Shown at the top of every page after the first.
    running_header: String,
}

impl<'f> Layout<'f> {
    fn new(fonts: &'f Fonts, running_header: String) -> Self {
        Self {
            fonts,
            pages: vec![Vec::new()],
            trees: Vec::new(),
            y: 40.0,
            running_header,
        }
    }

    fn face(&self, bold: bool) -> &'f FontFace {
        if bold {
            &self.fonts.bold
        } else {
            &self.fonts.regular
        }
    }

    fn push(&mut self, op: Op) {
        if let Some(page) = self.pages.last_mut() {
            page.push(op);
        }
    }

    fn new_page(&mut self) {
        self.pages.push(Vec::new());
        let header = self.face(false).fit(&self.running_header, 8.0, CONTENT_W);
        self.text(MARGIN_X, 32.0, 8.0, false, MUTED, header);
        self.line(MARGIN_X, 38.0, PAGE_W - MARGIN_X, 38.0, RULE, 0.5);
        self.y = CONTINUATION_TOP;
    }

    /// Starts a new page unless `h` points fit on this one; true if it did.
    fn ensure(&mut self, h: f32) -> bool {
        if self.y + h > CONTENT_BOTTOM {
            self.new_page();
            true
        } else {
            false
        }
    }

    fn text(&mut self, x: f32, y: f32, size: f32, bold: bool, color: Rgb, text: String) {
        self.push(Op::Text {
            x,
            y,
            size,
            bold,
            color,
            text,
        });
    }

    fn text_right(&mut self, right: f32, y: f32, size: f32, bold: bool, color: Rgb, text: String) {
        let w = self.face(bold).width(&text, size);
        self.text(right - w, y, size, bold, color, text);
    }

    fn rect(&mut self, x: f32, y: f32, w: f32, h: f32, color: Rgb) {
        self.push(Op::Rect { x, y, w, h, color });
    }

    fn line(&mut self, x1: f32, y1: f32, x2: f32, y2: f32, color: Rgb, width: f32) {
        self.push(Op::Line {
            x1,
            y1,
            x2,
            y2,
            color,
            width,
        });
    }

    /// An SVG `w` points wide at the current y (height by its aspect ratio), on a new page if
    /// it does not fit. An SVG that does not parse is an error (ours always do).
    fn svg(&mut self, svg: &str, w: f32) -> Result<(), ReportError> {
        let tree = parse_svg(svg, self.fonts)
            .ok_or_else(|| ReportError::Pdf("a chart's SVG did not parse".into()))?;
        let size = tree.size();
        let h = w * size.height() / size.width();
        self.ensure(h);
        self.trees.push(tree);
        let tree = self.trees.len() - 1;
        self.push(Op::Svg {
            x: MARGIN_X,
            y: self.y,
            w,
            h,
            tree,
        });
        self.y += h + 10.0;
        Ok(())
    }

    fn heading(&mut self, text: &str) {
        self.ensure(40.0);
        self.y += 14.0;
        self.text(MARGIN_X, self.y, 11.0, true, INK, text.to_owned());
        self.y += 8.0;
    }

    /// A paragraph line of small text (cut to the width).
    fn note(&mut self, text: &str, size: f32, color: Rgb) {
        self.ensure(size + 4.0);
        self.y += size + 3.0;
        let t = self.face(false).fit(text, size, CONTENT_W);
        self.text(MARGIN_X, self.y, size, false, color, t);
    }

    fn table_header(&mut self, columns: &[Column]) {
        let two_lines = columns.iter().any(|c| c.title.contains('\n'));
        let h = if two_lines { 24.0 } else { ROW_H + 2.0 };
        self.rect(MARGIN_X, self.y, CONTENT_W, h, HEADER_BG);
        let mut x = MARGIN_X;
        for c in columns {
            let lines: Vec<&str> = c.title.split('\n').collect();
            // Bottom-aligned: a one-line title sits on the second line.
            let first_baseline = self.y + h - 5.0 - 9.0 * (lines.len() as f32 - 1.0);
            for (i, l) in lines.iter().enumerate() {
                let yy = first_baseline + 9.0 * i as f32;
                let t = self.face(true).fit(l, TABLE_FONT, c.width - 2.0 * CELL_PAD);
                match c.align {
                    Align::Left => self.text(x + CELL_PAD, yy, TABLE_FONT, true, INK, t),
                    Align::Right => {
                        self.text_right(x + c.width - CELL_PAD, yy, TABLE_FONT, true, INK, t)
                    }
                }
            }
            x += c.width;
        }
        self.y += h;
        self.line(MARGIN_X, self.y, MARGIN_X + CONTENT_W, self.y, RULE, 0.6);
    }

    fn table_row(&mut self, columns: &[Column], cells: &[String], bg: Option<Rgb>, bold: bool) {
        if let Some(bg) = bg {
            self.rect(MARGIN_X, self.y, CONTENT_W, ROW_H, bg);
        }
        let baseline = self.y + ROW_H - 4.0;
        let mut x = MARGIN_X;
        for (c, cell) in columns.iter().zip(cells) {
            let t = self
                .face(bold)
                .fit(cell, TABLE_FONT, c.width - 2.0 * CELL_PAD);
            match c.align {
                Align::Left => self.text(x + CELL_PAD, baseline, TABLE_FONT, bold, INK, t),
                Align::Right => {
                    self.text_right(x + c.width - CELL_PAD, baseline, TABLE_FONT, bold, INK, t)
                }
            }
            x += c.width;
        }
        self.y += ROW_H;
    }

    /// A table continuing across pages, its header row repeated at the top of each, zebra
    /// rows, and a bold totals row kept with at least the header on its page.
    fn table(&mut self, columns: &[Column], rows: &[Vec<String>], totals: Option<Vec<String>>) {
        self.ensure(24.0 + 2.0 * ROW_H);
        self.table_header(columns);
        for (i, row) in rows.iter().enumerate() {
            if self.ensure(ROW_H) {
                self.table_header(columns);
            }
            let bg = (i % 2 == 1).then_some(ZEBRA);
            self.table_row(columns, row, bg, false);
        }
        if let Some(totals) = totals {
            if self.ensure(ROW_H + 2.0) {
                self.table_header(columns);
            }
            self.line(MARGIN_X, self.y, MARGIN_X + CONTENT_W, self.y, INK, 0.8);
            self.table_row(columns, &totals, Some(TOTAL_BG), true);
        }
        self.y += 6.0;
    }
}

fn money(v: Decimal) -> String {
    format!("R$ {}", pt_br_decimal(v, 2))
}

fn kwh(v: Decimal) -> String {
    format!("{} kWh", pt_br_decimal(v, 3))
}

fn price(v: Decimal) -> String {
    format!("R$ {}", pt_br_decimal(v, v.scale().clamp(2, 4)))
}

fn period(statement: &Statement) -> String {
    format!(
        "{} de {}",
        month_name_pt_br(statement.month.month()),
        statement.month.year()
    )
}

fn when(tz: Tz, t: DateTime<Utc>) -> String {
    local(tz, t).format("%d/%m/%Y %H:%M").to_string()
}

/// "Rascunho — gerado em …" or "Versão N emitida em …".
fn status(meta: &PdfMeta, tz: Tz) -> String {
    match meta.version {
        Some(v) => format!("Versão {v} emitida em {}", when(tz, meta.generated_at)),
        None => format!(
            "Rascunho (não emitido) — gerado em {}",
            when(tz, meta.generated_at)
        ),
    }
}

/// The first page's header: logo, site, title, status.
fn first_header(
    l: &mut Layout<'_>,
    statement: &Statement,
    meta: &PdfMeta,
    tz: Tz,
    subtitle: Option<&str>,
) -> Result<(), ReportError> {
    let logo = meta
        .logo_svg
        .as_deref()
        .and_then(|s| parse_svg(s, l.fonts))
        .or_else(|| parse_svg(VETRIC_MARK, l.fonts))
        .ok_or_else(|| ReportError::Pdf("vetric's mark did not parse".into()))?;
    // Fit the logo in a 48 × 48 box, keeping its aspect ratio.
    let size = logo.size();
    let scale = (48.0 / size.width()).min(48.0 / size.height());
    let (w, h) = (size.width() * scale, size.height() * scale);
    l.trees.push(logo);
    let tree = l.trees.len() - 1;
    l.push(Op::Svg {
        x: MARGIN_X,
        y: 36.0,
        w,
        h,
        tree,
    });
    let x = MARGIN_X + 60.0;
    let text_w = CONTENT_W - 60.0;
    let site = l.face(true).fit(&statement.site_name, 16.0, text_w - 90.0);
    l.text(x, 52.0, 16.0, true, INK, site);
    l.text(
        x,
        70.0,
        12.0,
        false,
        INK,
        format!("Extrato de recarga — {}", period(statement)),
    );
    l.text(x, 84.0, 8.5, false, MUTED, status(meta, tz));
    if meta.version.is_none() {
        l.text_right(
            PAGE_W - MARGIN_X,
            52.0,
            12.0,
            true,
            DRAFT,
            "RASCUNHO".into(),
        );
    }
    l.y = 96.0;
    if let Some(sub) = subtitle {
        let t = l.face(true).fit(sub, 13.0, CONTENT_W);
        l.y += 18.0;
        l.text(MARGIN_X, l.y, 13.0, true, INK, t);
        l.y += 4.0;
    }
    l.y += 4.0;
    l.line(MARGIN_X, l.y, PAGE_W - MARGIN_X, l.y, RULE, 0.8);
    l.y += 4.0;
    Ok(())
}

/// The summary figures: two columns of label/value pairs, then the total in bold.
struct Summary {
    sessions: u64,
    kwh: Decimal,
    peak_kwh: Decimal,
    offpeak_kwh: Decimal,
    energy_cost: Decimal,
    idle_minutes: Decimal,
    idle_fee: Decimal,
    total: Decimal,
}

fn summary_block(l: &mut Layout<'_>, title: &str, s: &Summary, total_label: &str) {
    l.heading(title);
    let pairs = [
        ("Recargas", s.sessions.to_string()),
        ("Energia total", kwh(s.kwh)),
        ("Energia na ponta", kwh(s.peak_kwh)),
        ("Energia fora de ponta", kwh(s.offpeak_kwh)),
        ("Custo da energia", money(s.energy_cost)),
        (
            "Ociosidade",
            format!(
                "{} ({} min)",
                money(s.idle_fee),
                pt_br_decimal(s.idle_minutes, 2)
            ),
        ),
    ];
    let col_w = CONTENT_W / 2.0;
    for chunk in pairs.chunks(2) {
        l.ensure(14.0);
        l.y += 13.0;
        for (i, (k, v)) in chunk.iter().enumerate() {
            let x = MARGIN_X + col_w * i as f32;
            l.text(x, l.y, 9.0, false, MUTED, format!("{k}:"));
            l.text_right(x + col_w - 16.0, l.y, 9.0, false, INK, v.clone());
        }
    }
    l.ensure(20.0);
    l.y += 18.0;
    l.text(MARGIN_X, l.y, 11.0, true, INK, format!("{total_label}:"));
    l.text_right(
        MARGIN_X + col_w - 16.0,
        l.y,
        11.0,
        true,
        INK,
        money(s.total),
    );
    l.y += 4.0;
}

/// The tariffs that priced the sessions, one line each.
fn tariffs_block<'a>(l: &mut Layout<'_>, sessions: impl Iterator<Item = &'a SessionLine>) {
    let used: BTreeSet<(Option<NaiveDate>, Decimal, Decimal)> = sessions
        .map(|s| (s.tariff_effective_from, s.peak_price, s.offpeak_price))
        .collect();
    if used.is_empty() {
        return;
    }
    l.heading(if used.len() == 1 {
        "Tarifa aplicada"
    } else {
        "Tarifas aplicadas"
    });
    for (from, peak, offpeak) in used {
        let since = match from {
            Some(d) => format!("Em vigor desde {}", d.format("%d/%m/%Y")),
            None => "Tarifa única (sem data de início)".to_owned(),
        };
        l.note(
            &format!(
                "{since}: ponta {}/kWh · fora de ponta {}/kWh",
                price(peak),
                price(offpeak)
            ),
            9.0,
            INK,
        );
    }
    l.y += 4.0;
}

/// Draws the pages: every op, then the footer with the page count.
fn render(
    layout: Layout<'_>,
    title: String,
    footer_left: String,
    meta: &PdfMeta,
) -> Result<Vec<u8>, ReportError> {
    let fonts = layout.fonts;
    let mut doc = Document::new();
    let g = meta.generated_at;
    // The creation date is the statement's, not the clock's: same inputs, same file.
    let created = PdfDateTime::new(u16::try_from(g.year()).unwrap_or(2000))
        .month(g.month() as u8)
        .day(g.day() as u8)
        .hour(g.hour() as u8)
        .minute(g.minute() as u8)
        .second(g.second() as u8)
        .utc_offset_hour(0)
        .utc_offset_minute(0);
    doc.set_metadata(
        Metadata::new()
            .title(title)
            .language("pt-BR".into())
            .creator("vetric".into())
            .creation_date(created),
    );
    let total = layout.pages.len();
    let settings = PageSettings::from_wh(PAGE_W, PAGE_H)
        .ok_or_else(|| ReportError::Pdf("A4 is not a page size".into()))?;
    for (i, ops) in layout.pages.iter().enumerate() {
        let mut page = doc.start_page_with(settings.clone());
        let mut surface = page.surface();
        for op in ops {
            draw(&mut surface, fonts, &layout.trees, op);
        }
        let footer_y = PAGE_H - 28.0;
        let footer = fonts.regular.fit(&footer_left, 7.5, CONTENT_W - 90.0);
        draw(
            &mut surface,
            fonts,
            &layout.trees,
            &Op::Line {
                x1: MARGIN_X,
                y1: footer_y - 11.0,
                x2: PAGE_W - MARGIN_X,
                y2: footer_y - 11.0,
                color: RULE,
                width: 0.5,
            },
        );
        draw(
            &mut surface,
            fonts,
            &layout.trees,
            &Op::Text {
                x: MARGIN_X,
                y: footer_y,
                size: 7.5,
                bold: false,
                color: MUTED,
                text: footer,
            },
        );
        let label = format!("Página {} de {}", i + 1, total);
        let w = fonts.regular.width(&label, 8.0);
        draw(
            &mut surface,
            fonts,
            &layout.trees,
            &Op::Text {
                x: PAGE_W - MARGIN_X - w,
                y: footer_y,
                size: 8.0,
                bold: false,
                color: INK,
                text: label,
            },
        );
        surface.finish();
        page.finish();
    }
    doc.finish()
        .map_err(|e| ReportError::Pdf(format!("krilla: {e}")))
}

fn fill(color: Rgb) -> Fill {
    Fill {
        paint: rgb::Color::new(color.0, color.1, color.2).into(),
        opacity: NormalizedF32::ONE,
        rule: FillRule::NonZero,
    }
}

fn draw(surface: &mut Surface<'_>, fonts: &Fonts, trees: &[usvg::Tree], op: &Op) {
    match op {
        Op::Text {
            x,
            y,
            size,
            bold,
            color,
            text,
        } => {
            if text.is_empty() {
                return;
            }
            let face = if *bold { &fonts.bold } else { &fonts.regular };
            surface.set_stroke(None);
            surface.set_fill(Some(fill(*color)));
            surface.draw_text(
                Point::from_xy(*x, *y),
                face.font.clone(),
                *size,
                text,
                false,
                TextDirection::Auto,
            );
        }
        Op::Rect { x, y, w, h, color } => {
            let Some(rect) = Rect::from_xywh(*x, *y, *w, *h) else {
                return; // a zero-sized box draws nothing
            };
            let mut pb = PathBuilder::new();
            pb.push_rect(rect);
            if let Some(path) = pb.finish() {
                surface.set_stroke(None);
                surface.set_fill(Some(fill(*color)));
                surface.draw_path(&path);
            }
        }
        Op::Line {
            x1,
            y1,
            x2,
            y2,
            color,
            width,
        } => {
            let mut pb = PathBuilder::new();
            pb.move_to(*x1, *y1);
            pb.line_to(*x2, *y2);
            if let Some(path) = pb.finish() {
                surface.set_fill(None);
                surface.set_stroke(Some(Stroke {
                    paint: rgb::Color::new(color.0, color.1, color.2).into(),
                    width: *width,
                    ..Stroke::default()
                }));
                surface.draw_path(&path);
                surface.set_stroke(None);
            }
        }
        Op::Svg { x, y, w, h, tree } => {
            let (Some(tree), Some(size)) = (trees.get(*tree), Size::from_wh(*w, *h)) else {
                return;
            };
            surface.push_transform(&Transform::from_translate(*x, *y));
            surface.draw_svg(tree, size, SvgSettings::default());
            surface.pop();
        }
    }
}

fn running_header(statement: &Statement, extra: Option<&str>) -> String {
    let mut s = format!(
        "{} — Extrato de recarga — {}",
        statement.site_name,
        period(statement)
    );
    if let Some(e) = extra {
        s.push_str(" — ");
        s.push_str(e);
    }
    s
}

fn footer_left(statement: &Statement, meta: &PdfMeta, tz: Tz) -> String {
    format!(
        "{} · vetric · gerado em {} ({})",
        statement.site_name,
        when(tz, meta.generated_at),
        statement.tz
    )
}

const SITE_COLUMNS: [Column; 8] = [
    Column {
        title: "Apartamento",
        width: 90.0,
        align: Align::Left,
    },
    Column {
        title: "Sessões",
        width: 49.0,
        align: Align::Right,
    },
    Column {
        title: "kWh\nponta",
        width: 60.0,
        align: Align::Right,
    },
    Column {
        title: "kWh\nfora ponta",
        width: 62.0,
        align: Align::Right,
    },
    Column {
        title: "kWh\ntotal",
        width: 62.0,
        align: Align::Right,
    },
    Column {
        title: "Energia\nR$",
        width: 62.0,
        align: Align::Right,
    },
    Column {
        title: "Ociosidade\nR$",
        width: 60.0,
        align: Align::Right,
    },
    Column {
        title: "Total\nR$",
        width: 70.276,
        align: Align::Right,
    },
];

fn site_row(line: &ApartmentLine) -> Vec<String> {
    vec![
        line.label().to_owned(),
        line.sessions.to_string(),
        pt_br_decimal(line.peak_kwh, 3),
        pt_br_decimal(line.offpeak_kwh, 3),
        pt_br_decimal(line.kwh, 3),
        pt_br_decimal(line.energy_cost, 2),
        pt_br_decimal(line.idle_fee, 2),
        pt_br_decimal(line.total, 2),
    ]
}

/// The site's statement as a PDF: header, the month's summary, the tariffs, the daily chart,
/// the per-apartment table (the "sem morador" line last, then the totals), and the hourly and
/// ranking charts.
pub fn site_statement(statement: &Statement, meta: &PdfMeta) -> Result<Vec<u8>, ReportError> {
    let tz = zone(&statement.tz)?;
    let fonts = fonts()?;
    let mut l = Layout::new(fonts, running_header(statement, None));
    first_header(&mut l, statement, meta, tz, None)?;
    let t = &statement.totals;
    summary_block(
        &mut l,
        "Resumo do mês",
        &Summary {
            sessions: t.sessions,
            kwh: t.kwh,
            peak_kwh: t.peak_kwh,
            offpeak_kwh: t.offpeak_kwh,
            energy_cost: t.energy_cost,
            idle_minutes: t.idle_minutes,
            idle_fee: t.idle_fee,
            total: t.total,
        },
        "Total do mês",
    );
    tariffs_block(
        &mut l,
        statement.lines.iter().flat_map(|x| &x.session_details),
    );
    if !statement.rejected.is_empty() {
        l.note(
            &format!(
                "{} recarga(s) rejeitada(s) não entram neste extrato (veja o relatório do mês).",
                statement.rejected.len()
            ),
            8.5,
            DRAFT,
        );
        l.y += 4.0;
    }
    l.y += 6.0;
    l.svg(&charts::daily_consumption(statement), CONTENT_W)?;
    l.heading("Resumo por apartamento");
    let rows: Vec<Vec<String>> = statement.lines.iter().map(site_row).collect();
    let totals = vec![
        "Total".to_owned(),
        t.sessions.to_string(),
        pt_br_decimal(t.peak_kwh, 3),
        pt_br_decimal(t.offpeak_kwh, 3),
        pt_br_decimal(t.kwh, 3),
        pt_br_decimal(t.energy_cost, 2),
        pt_br_decimal(t.idle_fee, 2),
        pt_br_decimal(t.total, 2),
    ];
    l.table(&SITE_COLUMNS, &rows, Some(totals));
    if statement.totals.sessions > 0 {
        l.y += 6.0;
        l.svg(&charts::hourly_consumption(statement), CONTENT_W)?;
        l.svg(&charts::apartment_ranking(statement, 10), CONTENT_W)?;
    }
    let title = format!(
        "Extrato de recarga — {} — {}",
        statement.site_name,
        period(statement)
    );
    let footer = footer_left(statement, meta, tz);
    render(l, title, footer, meta)
}

const SESSION_COLUMNS: [Column; 8] = [
    Column {
        title: "Início",
        width: 62.0,
        align: Align::Left,
    },
    Column {
        title: "Fim",
        width: 62.0,
        align: Align::Left,
    },
    Column {
        title: "Carregador",
        width: 90.0,
        align: Align::Left,
    },
    Column {
        title: "kWh\nponta",
        width: 48.0,
        align: Align::Right,
    },
    Column {
        title: "kWh\nfora ponta",
        width: 56.0,
        align: Align::Right,
    },
    Column {
        title: "Ociosidade\ntempo",
        width: 60.0,
        align: Align::Right,
    },
    Column {
        title: "Ociosidade\nR$",
        width: 60.0,
        align: Align::Right,
    },
    Column {
        title: "Total\nR$",
        width: 77.276,
        align: Align::Right,
    },
];

/// One apartment's statement (`None`: the "sem morador" line) as a PDF: header, the line's
/// summary, residents, tariffs, its daily chart, and every session (local start and stop,
/// charger, peak/off-peak kWh, idle time and fee, total). An apartment without a line on the
/// statement is an error naming it.
pub fn apartment_statement(
    statement: &Statement,
    apartment: Option<&str>,
    meta: &PdfMeta,
) -> Result<Vec<u8>, ReportError> {
    let line = statement.line(apartment).ok_or_else(|| {
        ReportError::UnknownApartment(apartment.unwrap_or(UNASSIGNED_LABEL).to_owned())
    })?;
    let tz = zone(&statement.tz)?;
    let fonts = fonts()?;
    let who = match &line.apartment {
        Some(a) => format!("Apartamento {a}"),
        None => "Recargas sem morador identificado".to_owned(),
    };
    let mut l = Layout::new(fonts, running_header(statement, Some(&who)));
    first_header(&mut l, statement, meta, tz, Some(&who))?;
    if !line.residents.is_empty() {
        let names: Vec<&str> = line.residents.iter().map(|r| r.name.as_str()).collect();
        l.note(&format!("Moradores: {}", names.join(", ")), 9.0, INK);
    }
    summary_block(
        &mut l,
        "Resumo do mês",
        &Summary {
            sessions: line.sessions,
            kwh: line.kwh,
            peak_kwh: line.peak_kwh,
            offpeak_kwh: line.offpeak_kwh,
            energy_cost: line.energy_cost,
            idle_minutes: line.idle_minutes,
            idle_fee: line.idle_fee,
            total: line.total,
        },
        if line.is_unassigned() {
            "Total sem morador"
        } else {
            "Total do apartamento"
        },
    );
    tariffs_block(&mut l, line.session_details.iter());
    l.y += 6.0;
    l.svg(
        &charts::daily_consumption(&charts::for_apartment(statement, apartment)),
        CONTENT_W,
    )?;
    l.heading("Recargas do mês");
    let rows: Vec<Vec<String>> = line
        .session_details
        .iter()
        .map(|s| {
            vec![
                // The month is in the header: day, month and time are enough.
                local(tz, s.start).format("%d/%m %H:%M").to_string(),
                local(tz, s.stop).format("%d/%m %H:%M").to_string(),
                s.charger.clone(),
                pt_br_decimal(s.peak_kwh, 3),
                pt_br_decimal(s.offpeak_kwh, 3),
                hms(s.idle_seconds),
                pt_br_decimal(s.idle_fee, 2),
                pt_br_decimal(s.total, 2),
            ]
        })
        .collect();
    let totals = vec![
        "Total".to_owned(),
        String::new(),
        format!("{} recarga(s)", line.sessions),
        pt_br_decimal(line.peak_kwh, 3),
        pt_br_decimal(line.offpeak_kwh, 3),
        hms(line.idle_seconds),
        pt_br_decimal(line.idle_fee, 2),
        pt_br_decimal(line.total, 2),
    ];
    l.table(&SESSION_COLUMNS, &rows, Some(totals));
    l.note(
        "Horários locais do condomínio. Ponta e fora de ponta conforme a tarifa em vigor na data de início de cada recarga.",
        7.5,
        MUTED,
    );
    let title = format!(
        "Extrato de recarga — {} — {} — {}",
        statement.site_name,
        who,
        period(statement)
    );
    let footer = footer_left(statement, meta, tz);
    render(l, title, footer, meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_come_from_the_font_and_names_are_cut() {
        let f = fonts().unwrap();
        let narrow = f.regular.width("1111", 10.0);
        let wide = f.regular.width("MMMM", 10.0);
        assert!(narrow > 10.0 && wide > narrow, "{narrow} {wide}");
        // Bold is wider than regular.
        assert!(f.bold.width("Apartamento", 8.0) > f.regular.width("Apartamento", 8.0));
        let cut = f
            .regular
            .fit("Bloco Azul apartamento 1204 cobertura", 8.0, 60.0);
        assert!(cut.ends_with('…'), "{cut}");
        assert!(f.regular.width(&cut, 8.0) <= 60.0);
        assert_eq!(f.regular.fit("A-101", 8.0, 60.0), "A-101");
    }

    #[test]
    fn the_column_widths_fill_the_content_width() {
        for cols in [&SITE_COLUMNS, &SESSION_COLUMNS] {
            let w: f32 = cols.iter().map(|c| c.width).sum();
            assert!((w - CONTENT_W).abs() < 0.01, "{w} vs {CONTENT_W}");
        }
    }
}
