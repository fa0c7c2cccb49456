//! A statement's charts as self-contained SVG (STACK.md §23, issue #8): the daily consumption
//! stacked peak/off-peak, the consumption by local hour of day, and the ranking of apartments.
//!
//! The same strings feed the web pages and the PDF ([`crate::pdf`] draws them with krilla-svg),
//! so they carry everything inline: presentation attributes (no CSS), a generic font list that
//! starts with the font the PDF embeds, a `<title>` and `role="img"` for screen readers, pt-BR
//! labels and numbers. The `class` attributes only let a page re-theme them.
//!
//! Figures are summed as the domain's decimals; `f64` appears only for geometry (bar heights and
//! positions), formatted with a fixed number of decimals, so the same statement gives the same
//! bytes. Apartment names are user data and are escaped wherever they appear.
//!
//! One apartment's charts: pass [`for_apartment`]'s statement to the same functions.

use crate::{local, pt_br_decimal, zone};
use chrono::{Datelike, Duration, NaiveDate, Timelike};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use std::fmt::Write;
use vetric_domain::{ApartmentLine, Statement, Totals};

/// Off-peak and peak colours (colour-blind safe pair: blue and orange).
const OFFPEAK: &str = "#1c7ed6";
const PEAK: &str = "#e8590c";
const INK: &str = "#212529";
const GRID: &str = "#dee2e6";
const MUTED: &str = "#868e96";
/// DejaVu Sans is what the PDF embeds; browsers fall back to their sans-serif.
const FONT: &str = "DejaVu Sans, Verdana, Arial, sans-serif";

/// The width of every chart's view box (the height depends on the chart).
pub const WIDTH: f64 = 720.0;
/// The height of the daily and hourly charts' view box.
pub const HEIGHT: f64 = 260.0;

const MARGIN_LEFT: f64 = 56.0;
const MARGIN_RIGHT: f64 = 12.0;
const MARGIN_TOP: f64 = 34.0;
const MARGIN_BOTTOM: f64 = 40.0;

const EMPTY: &str = "Sem consumo no período";

const MONTHS: [&str; 12] = [
    "janeiro",
    "fevereiro",
    "março",
    "abril",
    "maio",
    "junho",
    "julho",
    "agosto",
    "setembro",
    "outubro",
    "novembro",
    "dezembro",
];

/// `3` → `"março"`.
pub fn month_name_pt_br(month: u32) -> &'static str {
    MONTHS[(month.clamp(1, 12) - 1) as usize]
}

/// Escapes text for SVG/XML content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters are not allowed in XML 1.0; a name should not hold them.
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' && c != '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A kWh figure as shown on a chart: `"1.234,567 kWh"`.
fn kwh(v: Decimal) -> String {
    format!("{} kWh", pt_br_decimal(v, 3))
}

fn money(v: Decimal) -> String {
    format!("R$ {}", pt_br_decimal(v, 2))
}

/// A chart coordinate with one decimal (deterministic, short).
fn f(v: f64) -> String {
    let v = if v.is_finite() { v } else { 0.0 };
    // "-0.0" would be noise in a snapshot.
    let s = format!("{v:.1}");
    if s == "-0.0" { "0.0".to_owned() } else { s }
}

fn to_f64(d: Decimal) -> f64 {
    d.to_f64().filter(|v| v.is_finite()).unwrap_or(0.0)
}

fn open(out: &mut String, height: f64, title: &str, desc: &str) {
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" font-family=\"{FONT}\" font-size=\"11\" fill=\"{INK}\">\
         <title>{t}</title><desc>{d}</desc>\
         <rect class=\"background\" x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"#ffffff\"/>\
         <text class=\"chart-title\" x=\"{x}\" y=\"20\" font-size=\"13\" font-weight=\"bold\">{t}</text>",
        w = f(WIDTH),
        h = f(height),
        t = esc(title),
        d = esc(desc),
        x = f(MARGIN_LEFT),
    );
}

fn empty_message(out: &mut String, height: f64) {
    let _ = write!(
        out,
        "<text class=\"empty\" x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"14\" fill=\"{MUTED}\">{EMPTY}</text></svg>",
        f(WIDTH / 2.0),
        f(height / 2.0 + 5.0),
    );
}

/// A "nice" axis: a step of 1, 2 or 5 × 10ⁿ giving at most 5 intervals up to `max`.
/// Returns the step and the number of intervals (at least 1).
fn axis(max: Decimal) -> (Decimal, u32) {
    if max <= Decimal::ZERO {
        return (Decimal::ONE, 1);
    }
    // Start from the smallest step this module shows (0.001 kWh, 1 Wh) and grow.
    let mut exp: u32 = 0; // step = m × 10^(exp - 3)
    loop {
        for m in [1i64, 2, 5] {
            let step = Decimal::new(m, 0) * pow10(exp) / Decimal::new(1000, 0);
            let intervals = (max / step).ceil();
            if intervals <= Decimal::new(5, 0) {
                let n = intervals.to_u32().unwrap_or(1).max(1);
                return (step.normalize(), n);
            }
        }
        exp += 1;
        if exp > 30 {
            // Beyond any statement (a Decimal tops out near 10²⁸): one interval.
            return (max, 1);
        }
    }
}

fn pow10(exp: u32) -> Decimal {
    let mut v = Decimal::ONE;
    for _ in 0..exp {
        v *= Decimal::TEN;
    }
    v
}

/// Horizontal grid lines and their kWh labels for a vertical-bar chart.
fn y_axis(out: &mut String, step: Decimal, intervals: u32, plot_top: f64, plot_bottom: f64) {
    let places = step.scale();
    for i in 0..=intervals {
        let y = plot_bottom - (plot_bottom - plot_top) * f64::from(i) / f64::from(intervals);
        let value = step * Decimal::from(i);
        let _ = write!(
            out,
            "<line x1=\"{x1}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" stroke=\"{GRID}\" stroke-width=\"1\"/>\
             <text x=\"{tx}\" y=\"{ty}\" text-anchor=\"end\" font-size=\"10\" fill=\"{MUTED}\">{label}</text>",
            x1 = f(MARGIN_LEFT),
            x2 = f(WIDTH - MARGIN_RIGHT),
            y = f(y),
            tx = f(MARGIN_LEFT - 6.0),
            ty = f(y + 3.5),
            label = pt_br_decimal(value, places),
        );
    }
    let _ = write!(
        out,
        "<text x=\"14\" y=\"{y}\" font-size=\"10\" fill=\"{MUTED}\" transform=\"rotate(-90 14 {y})\" text-anchor=\"middle\">kWh</text>",
        y = f((plot_top + plot_bottom) / 2.0),
    );
}

fn legend(out: &mut String, y: f64) {
    let x = WIDTH - MARGIN_RIGHT - 190.0;
    let _ = write!(
        out,
        "<g class=\"legend\" font-size=\"10\">\
         <rect x=\"{x0}\" y=\"{ry}\" width=\"10\" height=\"10\" fill=\"{PEAK}\"/>\
         <text x=\"{tx0}\" y=\"{ty}\">Ponta</text>\
         <rect x=\"{x1}\" y=\"{ry}\" width=\"10\" height=\"10\" fill=\"{OFFPEAK}\"/>\
         <text x=\"{tx1}\" y=\"{ty}\">Fora de ponta</text></g>",
        x0 = f(x),
        tx0 = f(x + 14.0),
        x1 = f(x + 70.0),
        tx1 = f(x + 84.0),
        ry = f(y - 9.0),
        ty = f(y),
    );
}

/// Sessions' peak and off-peak kWh per local day of the month (by the session's start, the
/// day the statement counts it in). An unknown zone (a foreign snapshot) gives empty days.
fn per_day(statement: &Statement) -> Vec<(NaiveDate, Decimal, Decimal)> {
    let year = statement.month.year();
    let month = statement.month.month();
    let Some(first) = NaiveDate::from_ymd_opt(year, month, 1) else {
        return Vec::new();
    };
    let mut days: Vec<(NaiveDate, Decimal, Decimal)> = (0..31)
        .map(|i| first + Duration::days(i))
        .take_while(|d| d.month() == month)
        .map(|d| (d, Decimal::ZERO, Decimal::ZERO))
        .collect();
    let Ok(tz) = zone(&statement.tz) else {
        return days;
    };
    for s in statement.lines.iter().flat_map(|l| &l.session_details) {
        let date = local(tz, s.start).date();
        if date.year() == year && date.month() == month {
            let slot = &mut days[(date.day() - 1) as usize];
            slot.1 += s.peak_kwh;
            slot.2 += s.offpeak_kwh;
        }
    }
    days
}

/// One stacked bar per day of the month: peak kWh on top of off-peak kWh. An empty month (or
/// one with no energy) draws the axes' frame with "Sem consumo no período".
pub fn daily_consumption(statement: &Statement) -> String {
    let month = statement.month;
    let title = format!(
        "Consumo diário — {} de {}",
        month_name_pt_br(month.month()),
        month.year()
    );
    let days = per_day(statement);
    let total: Decimal = days.iter().map(|d| d.1 + d.2).sum();
    let mut out = String::with_capacity(8 * 1024);
    open(
        &mut out,
        HEIGHT,
        &title,
        &format!(
            "kWh por dia do mês, ponta e fora de ponta; total {}",
            kwh(total)
        ),
    );
    if total <= Decimal::ZERO || days.is_empty() {
        empty_message(&mut out, HEIGHT);
        return out;
    }
    legend(&mut out, 20.0);
    let max = days.iter().map(|d| d.1 + d.2).max().unwrap_or(Decimal::ONE);
    let (step, intervals) = axis(max);
    let top_value = to_f64(step * Decimal::from(intervals));
    let (plot_top, plot_bottom) = (MARGIN_TOP, HEIGHT - MARGIN_BOTTOM);
    y_axis(&mut out, step, intervals, plot_top, plot_bottom);
    let plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    let slot = plot_w / days.len() as f64;
    let bar_w = slot * 0.7;
    let scale = |v: Decimal| (plot_bottom - plot_top) * to_f64(v) / top_value;
    for (date, peak, offpeak) in &days {
        let x = MARGIN_LEFT + slot * f64::from(date.day() - 1) + (slot - bar_w) / 2.0;
        let h_off = scale(*offpeak);
        let h_peak = scale(*peak);
        let _ = write!(
            out,
            "<g class=\"bar\"><title>{}: {} ({} ponta, {} fora de ponta)</title>",
            date.format("%d/%m"),
            kwh(*peak + *offpeak),
            kwh(*peak),
            kwh(*offpeak),
        );
        if *offpeak > Decimal::ZERO {
            let _ = write!(
                out,
                "<rect class=\"offpeak\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{OFFPEAK}\"/>",
                f(x),
                f(plot_bottom - h_off),
                f(bar_w),
                f(h_off),
            );
        }
        if *peak > Decimal::ZERO {
            let _ = write!(
                out,
                "<rect class=\"peak\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{PEAK}\"/>",
                f(x),
                f(plot_bottom - h_off - h_peak),
                f(bar_w),
                f(h_peak),
            );
        }
        out.push_str("</g>");
        // Every day's number under its bar would crowd: 1, 5, 10, 15, ….
        let d = date.day();
        if d == 1 || d % 5 == 0 {
            let _ = write!(
                out,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"10\" fill=\"{MUTED}\">{d}</text>",
                f(x + bar_w / 2.0),
                f(plot_bottom + 14.0),
            );
        }
    }
    let _ = write!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"10\" fill=\"{MUTED}\">Dia do mês</text></svg>",
        f(MARGIN_LEFT + plot_w / 2.0),
        f(HEIGHT - 8.0),
    );
    out
}

/// kWh per local hour of day (0–23). A session's energy is spread evenly over its time (the
/// vendor gives no power curve), each part falling in the local hour it was charged in.
fn per_hour(statement: &Statement) -> [Decimal; 24] {
    let mut hours = [Decimal::ZERO; 24];
    let Ok(tz) = zone(&statement.tz) else {
        return hours;
    };
    for s in statement.lines.iter().flat_map(|l| &l.session_details) {
        let total_seconds = (s.stop - s.start).num_seconds();
        if total_seconds <= 0 {
            continue;
        }
        let mut seconds_in = [0i64; 24];
        let mut cursor = s.start;
        while cursor < s.stop {
            let t = local(tz, cursor);
            let into_hour = i64::from(t.minute()) * 60 + i64::from(t.second());
            let next = (cursor + Duration::seconds(3600 - into_hour)).min(s.stop);
            seconds_in[t.hour() as usize] += (next - cursor).num_seconds();
            // A sub-second start would otherwise never reach the boundary.
            cursor = next.max(cursor + Duration::seconds(1));
        }
        let total = Decimal::from(total_seconds);
        for (h, secs) in seconds_in.iter().enumerate() {
            if *secs > 0 {
                hours[h] += s.energy_kwh * Decimal::from(*secs) / total;
            }
        }
    }
    hours
}

/// kWh by local hour of day, one bar per hour 0–23 (see [`per_hour`] for how a session is
/// spread). An empty month draws "Sem consumo no período".
pub fn hourly_consumption(statement: &Statement) -> String {
    let hours = per_hour(statement);
    let total: Decimal = hours.iter().copied().sum();
    let mut out = String::with_capacity(6 * 1024);
    open(
        &mut out,
        HEIGHT,
        "Consumo por hora do dia",
        &format!(
            "kWh por hora local do dia, somando o mês; total {}",
            kwh(total.round_dp(3))
        ),
    );
    if total <= Decimal::ZERO {
        empty_message(&mut out, HEIGHT);
        return out;
    }
    let max = hours.iter().copied().max().unwrap_or(Decimal::ONE);
    let (step, intervals) = axis(max);
    let top_value = to_f64(step * Decimal::from(intervals));
    let (plot_top, plot_bottom) = (MARGIN_TOP, HEIGHT - MARGIN_BOTTOM);
    y_axis(&mut out, step, intervals, plot_top, plot_bottom);
    let plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    let slot = plot_w / 24.0;
    let bar_w = slot * 0.7;
    for (h, v) in hours.iter().enumerate() {
        let x = MARGIN_LEFT + slot * h as f64 + (slot - bar_w) / 2.0;
        let height = (plot_bottom - plot_top) * to_f64(*v) / top_value;
        let _ = write!(
            out,
            "<g class=\"bar\"><title>{h:02}h–{next:02}h: {}</title>",
            kwh(v.round_dp(3)),
            next = (h + 1) % 24,
        );
        if *v > Decimal::ZERO {
            let _ = write!(
                out,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{OFFPEAK}\"/>",
                f(x),
                f(plot_bottom - height),
                f(bar_w),
                f(height),
            );
        }
        out.push_str("</g>");
        if h % 3 == 0 {
            let _ = write!(
                out,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"10\" fill=\"{MUTED}\">{h}h</text>",
                f(x + bar_w / 2.0),
                f(plot_bottom + 14.0),
            );
        }
    }
    let _ = write!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"10\" fill=\"{MUTED}\">Hora do dia (horário local)</text></svg>",
        f(MARGIN_LEFT + plot_w / 2.0),
        f(HEIGHT - 8.0),
    );
    out
}

/// Cuts `s` to `max` characters, ending with "…" when cut.
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Horizontal bars: the `limit` apartments with the most kWh in the month (ties by total R$,
/// then the statement's order), each labelled with its kWh and total. The "sem morador" line
/// is not an apartment and is left out. The height grows with the number of bars.
pub fn apartment_ranking(statement: &Statement, limit: usize) -> String {
    let mut lines: Vec<(usize, &ApartmentLine)> = statement
        .lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.is_unassigned() && l.kwh > Decimal::ZERO)
        .collect();
    lines.sort_by(|(ia, a), (ib, b)| {
        b.kwh
            .cmp(&a.kwh)
            .then(b.total.cmp(&a.total))
            .then(ia.cmp(ib))
    });
    lines.truncate(limit);
    let row = 22.0;
    let top = MARGIN_TOP + 4.0;
    let height = if lines.is_empty() {
        HEIGHT / 2.0 + 20.0
    } else {
        top + row * lines.len() as f64 + 12.0
    };
    let mut out = String::with_capacity(1024 + 300 * lines.len());
    open(
        &mut out,
        height,
        "Ranking de apartamentos por consumo",
        &format!(
            "Os {} apartamentos que mais consumiram no mês, em kWh",
            lines.len()
        ),
    );
    if lines.is_empty() {
        empty_message(&mut out, height);
        return out;
    }
    let label_w = 130.0;
    let value_w = 170.0;
    let bar_left = MARGIN_LEFT.min(16.0) + label_w;
    let bar_max = WIDTH - MARGIN_RIGHT - value_w - bar_left;
    let max = to_f64(lines[0].1.kwh).max(f64::MIN_POSITIVE);
    for (i, (_, l)) in lines.iter().enumerate() {
        let y = top + row * i as f64;
        let w = (bar_max * to_f64(l.kwh) / max).max(1.0);
        let name = esc(&shorten(l.label(), 18));
        let _ = write!(
            out,
            "<g class=\"bar\"><title>{full}: {k}, {m}</title>\
             <text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\">{name}</text>\
             <rect x=\"{bx}\" y=\"{by}\" width=\"{w}\" height=\"{h}\" fill=\"{OFFPEAK}\"/>\
             <text x=\"{vx}\" y=\"{ty}\" font-size=\"10\">{k} · {m}</text></g>",
            full = esc(l.label()),
            k = kwh(l.kwh),
            m = money(l.total),
            lx = f(bar_left - 8.0),
            ty = f(y + row * 0.5 + 4.0),
            bx = f(bar_left),
            by = f(y + 3.0),
            w = f(w),
            h = f(row - 6.0),
            vx = f(bar_left + w + 6.0),
        );
    }
    out.push_str("</svg>");
    out
}

/// The statement reduced to one line (`apartment`; `None`: the "sem morador" line), its totals
/// that line's figures, without the month's rejected rows and disagreements (they are the
/// manager's, not a resident's). Feed it to the chart functions for one apartment's charts. An
/// apartment without a line gives an empty statement (its charts say "Sem consumo no período").
pub fn for_apartment(statement: &Statement, apartment: Option<&str>) -> Statement {
    let line = statement.line(apartment).cloned();
    let totals = match &line {
        Some(l) => Totals {
            sessions: l.sessions,
            kwh: l.kwh,
            peak_kwh: l.peak_kwh,
            offpeak_kwh: l.offpeak_kwh,
            energy_cost: l.energy_cost,
            idle_seconds: l.idle_seconds,
            idle_minutes: l.idle_minutes,
            idle_fee: l.idle_fee,
            total: l.total,
        },
        None => Totals {
            sessions: 0,
            kwh: Decimal::ZERO,
            peak_kwh: Decimal::ZERO,
            offpeak_kwh: Decimal::ZERO,
            energy_cost: Decimal::ZERO,
            idle_seconds: 0,
            idle_minutes: Decimal::ZERO,
            idle_fee: Decimal::ZERO,
            total: Decimal::ZERO,
        },
    };
    Statement {
        site_name: statement.site_name.clone(),
        tz: statement.tz.clone(),
        month: statement.month,
        lines: line.into_iter().collect(),
        totals,
        rejected: Vec::new(),
        disagreements: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn axis_steps_are_round() {
        let d = |s: &str| Decimal::from_str(s).unwrap();
        assert_eq!(axis(d("12.3")), (d("5"), 3));
        assert_eq!(axis(d("100")), (d("20"), 5));
        assert_eq!(axis(d("0.004")), (d("0.001"), 4));
        assert_eq!(axis(d("2329.358")), (d("500"), 5));
        assert_eq!(axis(Decimal::ZERO), (Decimal::ONE, 1));
    }

    #[test]
    fn escaping_and_shortening() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(shorten("Bloco A apto 1001", 10), "Bloco A a…");
        assert_eq!(shorten("A-101", 10), "A-101");
        assert_eq!(f(-0.01), "0.0");
    }
}
