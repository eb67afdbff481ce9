//! One timestamp format everywhere: RFC 3339 UTC with milliseconds. It sorts
//! as text, which is what makes SQLite range filters on time use indexes.

use chrono::{DateTime, SecondsFormat, Utc};

pub fn now() -> DateTime<Utc> {
    // Truncated to milliseconds so a value read back equals the value written.
    let t = Utc::now();
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

pub fn fmt(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn parse(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Reads `24h`, `7d` (that long ago), `2026-01-31` (midnight UTC) or an
/// RFC 3339 time, as used by `since:` and `until:` filters.
pub fn parse_since(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Some(t) = parse(s) {
        return Ok(t);
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    if let Ok(d) = humantime::parse_duration(s) {
        let d = chrono::Duration::from_std(d).map_err(|_| format!("'{s}' is too long ago"))?;
        return now
            .checked_sub_signed(d)
            .ok_or_else(|| format!("'{s}' is too long ago"));
    }
    Err(format!(
        "'{s}' is not a time: use 24h, 7d, 2026-01-31 or an RFC 3339 time"
    ))
}
