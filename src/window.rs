//! Time windows of a run: the requests that started in `[from, to)`.
//!
//! A request starts at its first step in time (the earliest `event_timestamp` among its steps),
//! which does not change as later steps arrive out of order, and a window's output is exactly
//! the output of a run holding just its requests. The bounds are Unix seconds: clients give
//! them as RFC 3339 or as numbers, and the store keeps each request's start beside it, indexed,
//! so that reading a window reads only its requests.

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `[from, to)` in Unix seconds; an absent bound is open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Window {
    /// Requests that started at or after this (Unix seconds); null: from the first.
    pub from: Option<f64>,
    /// Requests that started before this (Unix seconds); null: to the last.
    pub to: Option<f64>,
}

/// A bound that is neither a number of seconds nor an RFC 3339 time.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "{given:?} is not a time: give Unix seconds (1733450000 or 1733450000.25, years 1 to 9999) \
     or RFC 3339 (2024-12-06T02:00:00Z)"
)]
pub struct BadBound {
    pub given: String,
}

impl Window {
    /// The whole run.
    pub const ALL: Window = Window {
        from: None,
        to: None,
    };

    /// A window from its bounds as text, each Unix seconds or RFC 3339.
    pub fn parse(from: Option<&str>, to: Option<&str>) -> Result<Window, (&'static str, BadBound)> {
        Ok(Window {
            from: from.map(parse_time).transpose().map_err(|e| ("from", e))?,
            to: to.map(parse_time).transpose().map_err(|e| ("to", e))?,
        })
    }

    /// Whether no bound is set: the whole run, requests without steps included.
    pub fn is_all(&self) -> bool {
        self.from.is_none() && self.to.is_none()
    }

    /// Whether a window holds no request at all whatever the run (`to` at or before `from`).
    pub fn is_empty(&self) -> bool {
        matches!((self.from, self.to), (Some(f), Some(t)) if t <= f)
    }

    /// Whether a request that started at `start` (`None`: it has no steps) is in the window.
    pub fn holds(&self, start: Option<f64>) -> bool {
        if self.is_all() {
            return true;
        }
        let Some(t) = start else { return false };
        self.from.is_none_or(|f| t >= f) && self.to.is_none_or(|to| t < to)
    }

    /// The bounds as SQL parameters: an open bound becomes an infinity, which every stored
    /// start (a finite number) compares with as expected.
    pub fn sql_bounds(&self) -> (f64, f64) {
        (
            self.from.unwrap_or(f64::NEG_INFINITY),
            self.to.unwrap_or(f64::INFINITY),
        )
    }

    /// Bytes that tell windows apart in cache keys and ETags (the whole run has none, so its
    /// keys are those it had before windows existed).
    pub fn key(&self) -> Option<[u8; 16]> {
        if self.is_all() {
            return None;
        }
        let bits = |b: Option<f64>| b.map_or(u64::MAX, f64::to_bits).to_le_bytes();
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&bits(self.from));
        k[8..].copy_from_slice(&bits(self.to));
        Some(k)
    }
}

/// The earliest time given as Unix seconds: 0001-01-01T00:00:00Z, where RFC 3339 begins.
pub const EARLIEST_SECONDS: f64 = -62_135_596_800.0;
/// The latest time given as Unix seconds: 9999-12-31T23:59:59Z, where RFC 3339 ends.
pub const LATEST_SECONDS: f64 = 253_402_300_799.0;

/// Unix seconds or an RFC 3339 time, as Unix seconds.
///
/// Seconds are held to the years RFC 3339 can write, so that both forms name the same times
/// and the API's schema can say which numbers are accepted.
pub fn parse_time(s: &str) -> Result<f64, BadBound> {
    let bad = || BadBound {
        given: s.chars().take(64).collect(),
    };
    let s = s.trim();
    if let Ok(t) = s.parse::<f64>() {
        // `parse` also reads "inf" and "NaN", which are not times.
        return (EARLIEST_SECONDS..=LATEST_SECONDS)
            .contains(&t)
            .then_some(t)
            .ok_or_else(bad);
    }
    let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|_| bad())?;
    Ok(t.unix_timestamp() as f64 + f64::from(t.nanosecond()) / 1e9)
}

/// The text of a bound in messages: RFC 3339 when it is a representable time.
pub fn rfc3339(seconds: f64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos((seconds * 1e9) as i128)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| seconds.to_string())
}

/// When a request started: its earliest step time, `None` without steps.
pub fn request_start(timestamps: impl IntoIterator<Item = f64>) -> Option<f64> {
    timestamps.into_iter().reduce(f64::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_read_as_seconds_or_rfc3339() {
        let w = Window::parse(Some("1733450000.5"), Some("2024-12-06T02:00:00Z")).unwrap();
        assert_eq!(w.from, Some(1_733_450_000.5));
        assert_eq!(w.to, Some(1_733_450_400.0));
        let w = Window::parse(Some("2024-12-06T03:00:00.25+01:00"), None).unwrap();
        assert_eq!(w.from, Some(1_733_450_400.25));
        for bad in [
            "yesterday",
            "inf",
            "NaN",
            "",
            "2024-13-01T00:00:00Z",
            "1e300",
            "-62135596801",
        ] {
            let (field, e) = Window::parse(None, Some(bad)).unwrap_err();
            assert_eq!(field, "to");
            assert!(e.to_string().contains("RFC 3339"), "{e}");
        }
        // The extremes that either form can write are times.
        for good in [
            "-62135596800",
            "253402300799",
            "0001-01-01T00:00:00+23:59",
            "9999-12-31T23:59:59.999999-23:59",
        ] {
            assert!(parse_time(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn a_window_holds_requests_that_started_in_it() {
        let w = Window {
            from: Some(10.0),
            to: Some(20.0),
        };
        assert!(w.holds(Some(10.0)) && w.holds(Some(19.9)));
        assert!(!w.holds(Some(20.0)) && !w.holds(Some(9.9)) && !w.holds(None));
        assert!(
            Window::ALL.holds(None),
            "the whole run keeps requests without steps"
        );
        let open = Window {
            from: None,
            to: Some(20.0),
        };
        assert!(open.holds(Some(-1e300)) && !open.holds(None));
        assert!(
            Window {
                from: Some(5.0),
                to: Some(5.0)
            }
            .is_empty()
        );
        assert_eq!(Window::ALL.key(), None);
        assert_ne!(w.key(), open.key());
        assert_eq!(request_start([3.0, 1.0, 2.0]), Some(1.0));
        assert_eq!(request_start([]), None);
    }
}
