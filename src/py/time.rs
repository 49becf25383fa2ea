//! `datetime.fromtimestamp(t, UTC).isoformat()`: how nat 1.9 writes the timestamps of ATIF
//! steps (and the trie's `generated_at`).
//!
//! CPython splits the float into whole seconds and a fraction and rounds the fraction to
//! microseconds half to even, carrying into the seconds; the fraction is left out when it rounds
//! to zero.

use time::OffsetDateTime;

/// `YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00`, or `None` beyond the years the calendar covers
/// (Python raises there too).
pub fn isoformat_utc(t: f64) -> Option<String> {
    let (secs, micros) = split(t)?;
    let at = OffsetDateTime::from_unix_timestamp(secs).ok()?;
    let mut out = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
    if micros != 0 {
        out.push_str(&format!(".{micros:06}"));
    }
    out.push_str("+00:00");
    Some(out)
}

/// The epoch seconds an [`isoformat_utc`] string reads back as: the timestamp rounded to whole
/// microseconds (`datetime.fromisoformat(s).timestamp()`).
pub fn to_microseconds(t: f64) -> Option<f64> {
    let (secs, micros) = split(t)?;
    // Python divides the exact integer count of microseconds: one correctly rounded division.
    Some((secs.checked_mul(1_000_000)? + i64::from(micros)) as f64 / 1e6)
}

/// Whole seconds and microseconds, as CPython's `_PyTime_ObjectToTimeval` with half-even rounding.
fn split(t: f64) -> Option<(i64, u32)> {
    if !t.is_finite() || t.abs() > 1e14 {
        return None;
    }
    let whole = t.trunc();
    let mut micros = ((t - whole) * 1e6).round_ties_even();
    let mut secs = whole as i64;
    if micros >= 1e6 {
        secs += 1;
        micros -= 1e6;
    } else if micros < 0.0 {
        secs -= 1;
        micros += 1e6;
    }
    Some((secs, micros as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_python() {
        // Values checked with CPython 3.11: datetime.fromtimestamp(t, timezone.utc).isoformat()
        assert_eq!(
            isoformat_utc(1764442265.031179).as_deref(),
            Some("2025-11-29T18:51:05.031179+00:00")
        );
        assert_eq!(
            isoformat_utc(0.0).as_deref(),
            Some("1970-01-01T00:00:00+00:00")
        );
        assert_eq!(
            isoformat_utc(1.9999995).as_deref(),
            Some("1970-01-01T00:00:01.999999+00:00")
        );
        assert_eq!(to_microseconds(1.9999995), Some(1.999999));
        assert_eq!(
            isoformat_utc(-0.5).as_deref(),
            Some("1969-12-31T23:59:59.500000+00:00")
        );
    }
}
