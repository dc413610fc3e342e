//! Report times: the `--from`/`--to` forms, hour buckets and spans. RFC 3339 itself (what the
//! audit log holds) is `crate::rfc3339`.

use crate::rfc3339;

pub const NS_PER_SEC: i64 = 1_000_000_000;
pub const NS_PER_HOUR: i64 = 3600 * NS_PER_SEC;
pub const NS_PER_DAY: i64 = 24 * NS_PER_HOUR;

/// `--from`/`--to`: RFC 3339, a date (`2026-01-02`, midnight UTC), or an age (`90m`, `24h`,
/// `7d`) counted back from `now_ns`.
pub fn parse_when(s: &str, now_ns: i64) -> Result<i64, String> {
    let s = s.trim();
    if let Some(t) = rfc3339::parse(s) {
        return Ok(t);
    }
    if let Some(d) = rfc3339::parse_date(s) {
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
        if let (Some(mult), Some(n)) = (mult, rfc3339::digits(&s[..s.len() - unit.len_utf8()])) {
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
    let s = rfc3339::format(h.max(0) as u64);
    format!("{}Z", s.get(..16).unwrap_or(&s))
}

/// A report time (never before the epoch) as RFC 3339.
pub fn format_ns(ns: i64) -> String {
    rfc3339::format(ns.max(0) as u64)
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

    #[test]
    fn when_forms() {
        let now = 10 * NS_PER_DAY;
        assert_eq!(parse_when("7d", now), Ok(3 * NS_PER_DAY));
        assert_eq!(parse_when("24h", now), Ok(9 * NS_PER_DAY));
        assert_eq!(parse_when("1970-01-02", now), Ok(NS_PER_DAY));
        assert_eq!(
            parse_when("1970-01-02T00:00:00+01:00", now),
            Ok(NS_PER_DAY - NS_PER_HOUR)
        );
        assert!(parse_when("soon", now).is_err());
        assert!(parse_when("7é", now).is_err());
        assert!(parse_when("99999999999999999d", now).is_err());
        assert_eq!(hour_bucket(NS_PER_HOUR * 25 + 5), "1970-01-02T01:00Z");
        assert_eq!(span_text(3 * NS_PER_DAY + 5), "3 days");
        assert_eq!(span_text(90 * 60 * NS_PER_SEC), "2 hours");
    }
}
