//! Date formats for mail headers (RFC 5322 §3.3) and for machine-readable output (RFC 3339),
//! both in UTC. Small enough that a date-time crate would be a worse fit.

use std::time::{SystemTime, UNIX_EPOCH};

struct Civil {
    year: i64,
    month: u32,
    day: u32,
    weekday: usize,
    hour: u64,
    minute: u64,
    second: u64,
}

/// Seconds since the Unix epoch (0 for a time before it), the unit of stored timestamps.
pub fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub fn unix_now() -> u64 {
    unix_seconds(SystemTime::now())
}

/// [`rfc3339`] of a stored Unix timestamp.
pub fn rfc3339_unix(seconds: u64) -> String {
    rfc3339(UNIX_EPOCH + std::time::Duration::from_secs(seconds))
}

fn civil(time: SystemTime) -> Civil {
    let secs = unix_seconds(time);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        weekday: (days + 4).rem_euclid(7) as usize, // 1970-01-01 was a Thursday
        hour: rem / 3600,
        minute: rem % 3600 / 60,
        second: rem % 60,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date: Howard Hinnant's days-from-civil, the
/// inverse of [`civil`]'s (for certificate validity dates).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `Sun, 22 Nov 2026 11:22:43 +0000`
pub fn rfc5322(time: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let c = civil(time);
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[c.weekday],
        c.day,
        MONTHS[c.month as usize - 1],
        c.year,
        c.hour,
        c.minute,
        c.second
    )
}

/// `2026-11-22T11:22:43Z`
pub fn rfc3339(time: SystemTime) -> String {
    let c = civil(time);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// The Unix seconds of a [`rfc3339`] timestamp (`2026-11-22T11:22:43Z`, the form the spool
/// stores); `None` for anything else.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    let shape_ok = bytes.len() == 20
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes[10] == b'T'
        && bytes[13] == b':'
        && bytes[16] == b':'
        && bytes[19] == b'Z';
    if !shape_ok {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    u64::try_from(days * 86_400 + hour * 3600 + minute * 60 + second).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_parses_back() {
        for seconds in [0, 1_764_000_000, 1_796_205_600, 4_102_444_799] {
            assert_eq!(parse_rfc3339(&rfc3339_unix(seconds)), Some(seconds));
        }
        assert_eq!(parse_rfc3339("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2026-12-01 00:00:00Z"), None);
        assert_eq!(parse_rfc3339(""), None);
    }

    #[test]
    fn formats_known_instants() {
        let epoch = UNIX_EPOCH;
        assert_eq!(rfc5322(epoch), "Thu, 1 Jan 1970 00:00:00 +0000");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_346_563);
        assert_eq!(rfc3339(t), "2026-11-22T11:22:43Z");
        assert_eq!(rfc5322(t), "Sun, 22 Nov 2026 11:22:43 +0000");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_unix(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(unix_seconds(leap), 951_782_400);
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }

    #[test]
    fn days_from_civil_inverts_civil() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for days in [0_i64, 59, 60, 11_016, 20_779, 30_000] {
            let c = civil(UNIX_EPOCH + Duration::from_secs(days as u64 * 86_400));
            assert_eq!(
                days_from_civil(c.year, i64::from(c.month), i64::from(c.day)),
                days
            );
        }
    }
}
