//! RFC 3339 timestamps, formatted and parsed in one place: alerts, audit records and outputs
//! write them (`2026-01-02T03:04:05.123456789Z`, UTC, nine fractional digits), reports read
//! them back. Proleptic Gregorian calendar, Howard Hinnant's day/civil algorithms.

use std::time::{SystemTime, UNIX_EPOCH};

const NS_PER_SEC: i64 = 1_000_000_000;

/// Formats nanoseconds since the Unix epoch as RFC 3339 UTC with nine fractional digits.
pub fn format(epoch_ns: u64) -> String {
    let secs = (epoch_ns / 1_000_000_000) as i64;
    let nanos = epoch_ns % 1_000_000_000;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// The current time, formatted (the epoch if the clock is before it).
pub fn now() -> String {
    let ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos().min(u64::MAX as u128) as u64)
        .unwrap_or(0);
    format(ns)
}

/// Parses RFC 3339 (`2026-01-02T03:04:05.123456789Z`, or with `+hh:mm`) to Unix nanoseconds;
/// `None` if malformed or out of range.
pub fn parse(s: &str) -> Option<i64> {
    if !s.is_ascii() || s.len() < 20 {
        return None;
    }
    let days = parse_date(s.get(0..10)?)?;
    if !matches!(&s[10..11], "T" | "t" | " ") || &s[13..14] != ":" || &s[16..17] != ":" {
        return None;
    }
    let (h, mi, sec) = (
        digits(&s[11..13])?,
        digits(&s[14..16])?,
        digits(&s[17..19])?,
    );
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac_ns = 0i64;
    if let Some(r) = rest.strip_prefix('.') {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        let frac = &r[..n.min(9)];
        frac_ns = digits(frac)? * 10i64.pow(9 - frac.len() as u32);
        rest = &r[n..];
    }
    let offset_s = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && matches!(&rest[3..4], ":") => {
            let sign = match &rest[0..1] {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            sign * (digits(&rest[1..3])? * 3600 + digits(&rest[4..6])? * 60)
        }
        _ => return None,
    };
    let secs = days
        .checked_mul(86_400)?
        .checked_add(h * 3600 + mi * 60 + sec - offset_s)?;
    secs.checked_mul(NS_PER_SEC)?.checked_add(frac_ns)
}

/// A full date (`2026-01-02`) as days since 1970-01-01.
pub fn parse_date(s: &str) -> Option<i64> {
    let (y, m, d) = (
        digits(s.get(0..4)?)?,
        digits(s.get(5..7)?)?,
        digits(s.get(8..10)?)?,
    );
    if s.len() != 10 || &s[4..5] != "-" || &s[7..8] != "-" {
        return None;
    }
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// A number of only ASCII digits (`str::parse` would also take a sign).
pub(crate) fn digits(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_with_nanoseconds() {
        assert_eq!(format(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            format(1_795_838_559_052_667_406),
            "2026-11-28T04:02:39.052667406Z"
        );
        assert_eq!(
            format(951_782_400_000_000_001),
            "2000-02-29T00:00:00.000000001Z"
        );
    }

    #[test]
    fn parses_what_it_formats_and_offsets() {
        for ns in [0u64, 1_795_838_559_052_667_406, 951_782_400_000_000_001] {
            assert_eq!(parse(&format(ns)), Some(ns as i64));
        }
        let now = parse(&now()).expect("now() parses back");
        assert!(now > parse("2020-01-01T00:00:00Z").expect("valid"));
        assert_eq!(
            parse("2026-01-01T01:00:00+01:00"),
            parse("2026-01-01T00:00:00Z")
        );
        assert_eq!(
            parse("2026-01-01T00:00:00.5Z").map(|n| n % NS_PER_SEC),
            Some(500_000_000)
        );
        assert_eq!(parse_date("1970-01-02"), Some(1));
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-01-01",
            "2026-01-01T00:00:00",
            "x".repeat(30).as_str(),
            "2026-01-01T00:00:00.Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:00Zjunk",
            "+026-01-01T00:00:00Z",
            "２０２６-01-01T00:00:00Z",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
