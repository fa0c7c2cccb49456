//! The vendor's three timestamp formats, the transaction query window and the self-calibration
//! of the transaction time zone (contract A3 and A5.4). All pure functions of their inputs.

use chrono::{
    DateTime, Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone, Utc,
};
use chrono_tz::Tz;
use serde::Serialize;

/// `lastHeartbeatTimestamp` / `insertTimestamp`: `YYYY-MM-DD HH:mm:ss`, vendor-local.
pub const HEARTBEAT_FORMAT: &str = "%Y-%m-%d %H:%M:%S";
/// Transaction `startTimestamp` / `stopTimestamp`: `DD/MM/YYYY HH:mm:ss`.
pub const TRANSACTION_FORMAT: &str = "%d/%m/%Y %H:%M:%S";
/// `fromDate` / `toDate` query parameters: `YYYY-MM-DD HH:mm:ss` with a space.
pub const QUERY_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Interprets a wall-clock time in `tz`, resolving DST edge cases explicitly:
/// an ambiguous time (clocks going back) takes the earlier instant; a time in a gap (clocks
/// going forward) is read with the offset in force just before the gap. São Paulo has had no
/// DST since 2019, but old heartbeats and other zones still meet these cases.
pub fn local_to_utc(naive: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(earliest, _) => earliest.with_timezone(&Utc),
        LocalResult::None => {
            // Offset in force one day before (safely before the gap), applied to the wall time.
            let before = naive - chrono::Duration::days(1);
            let secs = match tz.from_local_datetime(&before) {
                LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => {
                    i64::from(t.offset().fix().local_minus_utc())
                }
                LocalResult::None => 0,
            };
            (naive - chrono::Duration::seconds(secs)).and_utc()
        }
    }
}

/// Parses `lastHeartbeatTimestamp` (vendor-local) into UTC.
pub fn parse_heartbeat(text: &str, vendor_tz: Tz) -> Result<DateTime<Utc>, chrono::ParseError> {
    let naive = NaiveDateTime::parse_from_str(text.trim(), HEARTBEAT_FORMAT)?;
    Ok(local_to_utc(naive, vendor_tz))
}

/// Parses `lastStatus.timeStamp` (ISO-8601 UTC with milliseconds).
pub fn parse_status_time(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    Ok(DateTime::parse_from_rfc3339(text.trim())?.with_timezone(&Utc))
}

/// Parses a transaction timestamp in the configured zone, before calibration.
pub fn parse_transaction_time(text: &str, zone: Tz) -> Result<DateTime<Utc>, chrono::ParseError> {
    let naive = NaiveDateTime::parse_from_str(text.trim(), TRANSACTION_FORMAT)?;
    Ok(local_to_utc(naive, zone))
}

/// Formats a query bound as the vendor wants it (`2026-01-11 00:00:00`).
pub fn format_query_time(t: NaiveDateTime) -> String {
    t.format(QUERY_FORMAT).to_string()
}

fn midnight(d: NaiveDate) -> NaiveDateTime {
    d.and_time(NaiveTime::MIN)
}

/// The `/transaction` query window `(fromDate, toDate)` as wall-clock values to send.
///
/// Rule: `from` is the earlier of *yesterday 00:00* and *one day before the oldest still-open
/// session's start date, 00:00*, but never more than `max_days` back; `to` is *today + 2
/// days, 00:00*.
///
/// Which zone is "today"? The vendor most likely filters by start time in UTC (A5.4 H1), while
/// people think in `vendor_tz`; H2 says the hour of `toDate` is ignored. To be right under all
/// of them the window is the union of both readings: `from` uses the earlier of the local and
/// the UTC date, `to` the later one. For São Paulo (UTC−3) the UTC date is never earlier
/// than the local one, so this is `from = local yesterday`, `to = UTC today + 2`. The window is
/// one to two days wider than strictly needed; the vendor returns a handful of sessions a day
/// per site, so the cost is negligible and a late-evening session is never missed.
pub fn transaction_window(
    now: DateTime<Utc>,
    oldest_open_start: Option<DateTime<Utc>>,
    vendor_tz: Tz,
    max_days: u32,
) -> (NaiveDateTime, NaiveDateTime) {
    let today_local = now.with_timezone(&vendor_tz).date_naive();
    let today_utc = now.date_naive();
    let earliest_today = today_local.min(today_utc);
    let latest_today = today_local.max(today_utc);

    let yesterday = earliest_today - Days::new(1);
    let floor = earliest_today - Days::new(u64::from(max_days));
    let mut from = yesterday;
    if let Some(start) = oldest_open_start {
        let start_date = start
            .with_timezone(&vendor_tz)
            .date_naive()
            .min(start.date_naive());
        from = from.min(start_date - Days::new(1));
    }
    let from = from.max(floor);
    let to = latest_today + Days::new(2);
    (midnight(from), midnight(to))
}

/// The window for the `ocppTagPk` history lookup: `days` back from today, to tomorrow.
pub fn history_window(
    now: DateTime<Utc>,
    vendor_tz: Tz,
    days: u32,
) -> (NaiveDateTime, NaiveDateTime) {
    let today_local = now.with_timezone(&vendor_tz).date_naive();
    let today_utc = now.date_naive();
    let from = today_local.min(today_utc) - Days::new(u64::from(days));
    let to = today_local.max(today_utc) + Days::new(2);
    (midnight(from), midnight(to))
}

/// What the active sessions say about the zone of `startTimestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "result", content = "hours")]
pub enum Calibration {
    /// No usable active session: keep whatever offset was in force.
    NoActiveSessions,
    /// Every active session points at the same whole-hour offset (0 under H1). Add it to the
    /// parsed times.
    Agreed(i64),
    /// Sessions disagree, or some are not close to a whole hour (e.g. the vendor's `duration`
    /// lags): keep whatever offset was in force.
    Inconclusive,
}

/// Largest distance from a whole hour a sample may have and still count (vendor `duration`
/// is updated about once a minute while a session runs).
pub const CALIBRATION_TOLERANCE_SECS: i64 = 10 * 60;
/// Largest plausible zone error.
pub const CALIBRATION_MAX_HOURS: i64 = 14;

/// Self-calibration of the transaction zone (A5.4 step 3). For each active session
/// `(parsed start, duration seconds)`, `now − start − duration` should be a whole number of
/// hours: the error of the zone we parsed in. If all sessions agree, that is the offset to add.
pub fn calibrate_transaction_offset(
    now: DateTime<Utc>,
    active: &[(DateTime<Utc>, i64)],
) -> Calibration {
    let mut agreed: Option<i64> = None;
    for &(start, duration) in active {
        let residual_secs = (now - start).num_seconds() - duration;
        let hours = (residual_secs as f64 / 3600.0).round() as i64;
        let off_by = (residual_secs - hours * 3600).abs();
        if off_by > CALIBRATION_TOLERANCE_SECS || hours.abs() > CALIBRATION_MAX_HOURS {
            return Calibration::Inconclusive;
        }
        match agreed {
            None => agreed = Some(hours),
            Some(h) if h == hours => {}
            Some(_) => return Calibration::Inconclusive,
        }
    }
    agreed.map_or(Calibration::NoActiveSessions, Calibration::Agreed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::Sao_Paulo;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .expect("test time")
    }

    fn naive(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, QUERY_FORMAT).expect("test time")
    }

    #[test]
    fn heartbeat_is_sao_paulo_local() {
        // Contract A3 proof: report generated 03:58:27Z, heartbeat 00:58:03 local = 03:58:03Z.
        assert_eq!(
            parse_heartbeat("2026-01-09 00:58:03", Sao_Paulo).expect("parses"),
            utc("2026-01-09T03:58:03Z")
        );
        assert!(parse_heartbeat("09/01/2026 00:58:03", Sao_Paulo).is_err());
    }

    #[test]
    fn dst_edges_are_resolved_not_panicking() {
        // São Paulo DST start 2018-11-04 00:00 → 01:00 (gap) and end 2019-02-16 24:00 → 23:00.
        let gap = parse_heartbeat("2018-11-04 00:30:00", Sao_Paulo).expect("gap handled");
        assert_eq!(gap, utc("2018-11-04T03:30:00Z"));
        let ambiguous = parse_heartbeat("2019-02-16 23:30:00", Sao_Paulo).expect("ambiguous");
        assert_eq!(
            ambiguous,
            utc("2019-02-17T01:30:00Z"),
            "earlier instant (still DST, -02)"
        );
    }

    #[test]
    fn status_and_transaction_times() {
        assert_eq!(
            parse_status_time("2026-01-09T03:45:15.989Z").expect("iso"),
            utc("2026-01-09T03:45:15.989Z")
        );
        assert_eq!(
            parse_transaction_time("15/01/2026 00:26:33", chrono_tz::UTC).expect("br"),
            utc("2026-01-15T00:26:33Z")
        );
        assert_eq!(
            parse_transaction_time("14/01/2026 21:26:33", Sao_Paulo).expect("br"),
            utc("2026-01-15T00:26:33Z")
        );
        assert_eq!(
            format_query_time(naive("2026-01-11 00:00:00")),
            "2026-01-11 00:00:00"
        );
    }

    #[test]
    fn window_evening_in_sao_paulo_covers_both_readings() {
        // 14/01 22:00 BRT = 15/01 01:00Z: local today 14/01, UTC today 15/01.
        let (from, to) = transaction_window(utc("2026-01-15T01:00:00Z"), None, Sao_Paulo, 30);
        assert_eq!(from, naive("2026-01-13 00:00:00"));
        assert_eq!(to, naive("2026-01-17 00:00:00"));
    }

    #[test]
    fn window_midday() {
        let (from, to) = transaction_window(utc("2026-02-10T15:00:00Z"), None, Sao_Paulo, 30);
        assert_eq!(from, naive("2026-02-09 00:00:00"));
        assert_eq!(to, naive("2026-02-12 00:00:00"));
    }

    #[test]
    fn window_reaches_back_for_an_old_open_session_but_not_past_the_limit() {
        let now = utc("2026-02-10T15:00:00Z");
        let (from, _) = transaction_window(now, Some(utc("2026-02-06T23:30:00Z")), Sao_Paulo, 30);
        // Local start date 06/02 (20:30 BRT), one day before → 05/02.
        assert_eq!(from, naive("2026-02-05 00:00:00"));
        let (from, _) = transaction_window(now, Some(utc("2025-10-01T12:00:00Z")), Sao_Paulo, 30);
        assert_eq!(from, naive("2026-01-11 00:00:00"), "30 days back at most");
        // A recent open session does not narrow the default window.
        let (from, _) = transaction_window(now, Some(utc("2026-02-10T14:00:00Z")), Sao_Paulo, 30);
        assert_eq!(from, naive("2026-02-09 00:00:00"));
    }

    #[test]
    fn calibration_agrees_on_zero_under_h1() {
        // The fixture's three active sessions, at the instant the fixture was taken.
        let now = utc("2026-02-11T00:40:00Z");
        let z = chrono_tz::UTC;
        let active = [
            (
                parse_transaction_time("10/02/2026 23:51:40", z).expect("t"),
                2900,
            ),
            (
                parse_transaction_time("10/02/2026 22:05:12", z).expect("t"),
                9288,
            ),
            (
                parse_transaction_time("10/02/2026 19:12:05", z).expect("t"),
                19675,
            ),
        ];
        assert_eq!(
            calibrate_transaction_offset(now, &active),
            Calibration::Agreed(0)
        );
    }

    #[test]
    fn calibration_detects_brt_timestamps_parsed_as_utc() {
        // Real start 00:26:33Z, vendor printed it in BRT (21:26:33), we parsed as UTC.
        let parsed = parse_transaction_time("14/01/2026 21:26:33", chrono_tz::UTC).expect("t");
        let now = utc("2026-01-15T01:26:33Z");
        let c = calibrate_transaction_offset(now, &[(parsed, 3600), (parsed, 3600 + 30)]);
        assert_eq!(c, Calibration::Agreed(3));
    }

    #[test]
    fn calibration_refuses_disagreement_and_lagging_durations() {
        let now = utc("2026-01-15T12:00:00Z");
        let a = (utc("2026-01-15T10:00:00Z"), 7200); // 0 h
        let b = (utc("2026-01-15T07:00:00Z"), 7200); // 3 h
        assert_eq!(
            calibrate_transaction_offset(now, &[a, b]),
            Calibration::Inconclusive
        );
        // duration frozen at 0 on a 95-minute session: 1.58 h is not a whole hour.
        let lagging = (utc("2026-01-15T10:25:00Z"), 0);
        assert_eq!(
            calibrate_transaction_offset(now, &[lagging]),
            Calibration::Inconclusive
        );
        assert_eq!(
            calibrate_transaction_offset(now, &[]),
            Calibration::NoActiveSessions
        );
    }
}
