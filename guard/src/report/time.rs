//! Time parsing for reports: RFC 3339 (what the audit log holds) and the `--from`/`--to` forms.

pub const NS_PER_SEC: i64 = 1_000_000_000;
pub const NS_PER_HOUR: i64 = 3600 * NS_PER_SEC;
pub const NS_PER_DAY: i64 = 24 * NS_PER_HOUR;

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn num(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn date(s: &str) -> Option<i64> {
    let (y, m, d) = (num(s.get(0..4)?)?, num(s.get(5..7)?)?, num(s.get(8..10)?)?);
    if s.len() != 10 || &s[4..5] != "-" || &s[7..8] != "-" {
        return None;
    }
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// Parses RFC 3339 (`2026-01-02T03:04:05.123456789Z`, or with `+hh:mm`) to Unix nanoseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    if !s.is_ascii() || s.len() < 20 {
        return None;
    }
    let days = date(s.get(0..10)?)?;
    if !matches!(&s[10..11], "T" | "t" | " ") || &s[13..14] != ":" || &s[16..17] != ":" {
        return None;
    }
    let (h, mi, sec) = (num(&s[11..13])?, num(&s[14..16])?, num(&s[17..19])?);
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
        let digits = &r[..n.min(9)];
        frac_ns = num(digits)? * 10i64.pow(9 - digits.len() as u32);
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
            sign * (num(&rest[1..3])? * 3600 + num(&rest[4..6])? * 60)
        }
        _ => return None,
    };
    let secs = days
        .checked_mul(86_400)?
        .checked_add(h * 3600 + mi * 60 + sec - offset_s)?;
    secs.checked_mul(NS_PER_SEC)?.checked_add(frac_ns)
}

/// `--from`/`--to`: RFC 3339, a date (`2026-01-02`, midnight UTC), or an age (`90m`, `24h`,
/// `7d`) counted back from `now_ns`.
pub fn parse_when(s: &str, now_ns: i64) -> Result<i64, String> {
    let s = s.trim();
    if let Some(t) = parse_rfc3339(s) {
        return Ok(t);
    }
    if let Some(d) = date(s) {
        return Ok(d * NS_PER_DAY);
    }
    if let Some(unit) = s.chars().last() {
        let mult = match unit {
            's' => Some(NS_PER_SEC),
            'm' => Some(60 * NS_PER_SEC),
            'h' => Some(NS_PER_HOUR),
            'd' => Some(NS_PER_DAY),
            _ => None,
        };
        if let (Some(mult), Some(n)) = (mult, num(&s[..s.len() - unit.len_utf8()])) {
            return n
                .checked_mul(mult)
                .and_then(|d| now_ns.checked_sub(d))
                .ok_or_else(|| format!("{s:?}: out of range"));
        }
    }
    Err(format!(
        "{s:?}: expected RFC 3339 (2026-01-02T03:04:05Z), a date (2026-01-02) or an age (90m, 24h, 7d)"
    ))
}

/// `2026-01-02T03:00Z`: the hour bucket of `ns`.
pub fn hour_bucket(ns: i64) -> String {
    let h = ns.div_euclid(NS_PER_HOUR) * NS_PER_HOUR;
    let s = crate::alert::rfc3339_ns(h.max(0) as u64);
    format!("{}Z", s.get(..16).unwrap_or(&s))
}

pub fn format_ns(ns: i64) -> String {
    crate::alert::rfc3339_ns(ns.max(0) as u64)
}

/// "3 days" when at least a day, else "5 hours" (at least 1).
pub fn span_text(ns: i64) -> String {
    if ns >= NS_PER_DAY {
        let d = ns / NS_PER_DAY;
        format!("{d} day{}", if d == 1 { "" } else { "s" })
    } else {
        let h = ((ns + NS_PER_HOUR - 1) / NS_PER_HOUR).max(1);
        format!("{h} hour{}", if h == 1 { "" } else { "s" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::rfc3339_ns;

    #[test]
    fn rfc3339_round_trip_and_offsets() {
        for ns in [0u64, 1_795_838_559_052_667_406, 951_782_400_000_000_001] {
            assert_eq!(parse_rfc3339(&rfc3339_ns(ns)), Some(ns as i64));
        }
        assert_eq!(
            parse_rfc3339("2026-01-01T01:00:00+01:00"),
            parse_rfc3339("2026-01-01T00:00:00Z")
        );
        assert_eq!(
            parse_rfc3339("2026-01-01T00:00:00.5Z").map(|n| n % NS_PER_SEC),
            Some(500_000_000)
        );
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-01-01",
            "2026-01-01T00:00:00",
            "x".repeat(30).as_str(),
            "2026-01-01T00:00:00.Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:00Zjunk",
            "２０２６-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn when_forms() {
        let now = 10 * NS_PER_DAY;
        assert_eq!(parse_when("7d", now), Ok(3 * NS_PER_DAY));
        assert_eq!(parse_when("24h", now), Ok(9 * NS_PER_DAY));
        assert_eq!(parse_when("1970-01-02", now), Ok(NS_PER_DAY));
        assert!(parse_when("soon", now).is_err());
        assert!(parse_when("7é", now).is_err());
        assert!(parse_when("99999999999999999d", now).is_err());
        assert_eq!(hour_bucket(NS_PER_HOUR * 25 + 5), "1970-01-02T01:00Z");
        assert_eq!(span_text(3 * NS_PER_DAY + 5), "3 days");
        assert_eq!(span_text(90 * 60 * NS_PER_SEC), "2 hours");
    }
}
