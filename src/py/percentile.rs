//! `numpy.percentile(x, p)` with numpy's default "linear" method (numpy 1.26 `_quantile`).
//!
//! The arithmetic is copied operation for operation, because the reference's numbers depend on
//! it: the virtual index is `(n - 1) * (p / 100)` in floating point, and `_lerp` switches to
//! `b - (b - a) * (1 - t)` when `t >= 0.5`, which rounds differently from `a + (b - a) * t`.

/// Percentile `p` (0..=100) of an already sorted, non-empty slice. NaN-free input is assumed.
pub fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    debug_assert!(n > 0);
    let q = p / 100.0;
    let virtual_index = (n as f64 - 1.0) * q;
    if virtual_index >= (n - 1) as f64 {
        return sorted[n - 1];
    }
    if virtual_index < 0.0 {
        return sorted[0];
    }
    let previous = virtual_index.floor();
    let lo = previous as usize;
    let a = sorted[lo];
    let b = sorted[lo + 1];
    let gamma = virtual_index - previous;
    lerp(a, b, gamma)
}

/// Percentile of an unsorted sample (sorted by `total_cmp`, which orders like numpy for finite
/// values). Returns `None` for an empty sample.
pub fn percentile(data: &[f64], p: f64) -> Option<f64> {
    if data.is_empty() {
        return None;
    }
    let mut sorted = data.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some(percentile_sorted(&sorted, p))
}

/// p90, p95 and p99 of a sample, sorting it once.
pub fn p90_p95_p99(data: &[f64]) -> Option<[f64; 3]> {
    if data.is_empty() {
        return None;
    }
    let mut sorted = data.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some([90.0, 95.0, 99.0].map(|p| percentile_sorted(&sorted, p)))
}

fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// nat 1.9's hand-written percentile (its CI `p90`/`p95`/`p99` and the prediction trie): the
/// same index `k = (n - 1) * (p / 100)` as numpy, but always `a + (b - a) * (k - floor(k))`, so it
/// differs from [`percentile_sorted`] in the last bit when `k`'s fraction is 0.5 or more.
/// `sorted` must be sorted and non-empty.
pub fn hand_linear_sorted(sorted: &[f64], p: f64) -> f64 {
    let k = (sorted.len() - 1) as f64 * (p / 100.0);
    let (f, c) = (k.floor(), k.ceil());
    if f == c {
        return sorted[k as usize];
    }
    let (a, b) = (sorted[f as usize], sorted[c as usize]);
    a + (b - a) * (k - f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values_from_numpy() {
        // numpy 1.26: np.percentile([1, 2, 3, 4], [90, 95, 99]) -> [3.7, 3.85, 3.97]
        assert_eq!(
            p90_p95_p99(&[1.0, 2.0, 3.0, 4.0]),
            Some([3.7, 3.8499999999999996, 3.9699999999999998])
        );
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 50.0), Some(2.0));
        assert_eq!(percentile(&[0.0, 10.0], 100.0), Some(10.0));
        assert_eq!(percentile(&[0.0, 10.0], 0.0), Some(0.0));
    }

    proptest! {
        /// Brute force: the result lies between the two order statistics around the virtual index
        /// and equals the exact interpolation within a few ulps.
        #[test]
        fn matches_exact_interpolation(mut xs in proptest::collection::vec(-1e6f64..1e6, 1..60), p in 0.0f64..=100.0) {
            let got = percentile(&xs, p).unwrap_or(f64::NAN);
            xs.sort_by(f64::total_cmp);
            let h = (xs.len() as f64 - 1.0) * p / 100.0;
            let lo = h.floor() as usize;
            let hi = (lo + 1).min(xs.len() - 1);
            prop_assert!(xs[lo] <= got + 1e-9 && got <= xs[hi] + 1e-9);
            let exact = xs[lo] + (h - lo as f64) * (xs[hi] - xs[lo]);
            prop_assert!((got - exact).abs() <= 1e-6);
        }
    }
}
