//! numpy's float arithmetic where the reference leans on it: `np.sum` and `np.mean` of a float64
//! array use pairwise summation (8-way unrolled blocks of up to 128 values), which rounds
//! differently from a left-to-right sum once there are eight or more values.

/// `np.sum(values)` for a contiguous float64 array (numpy's `pairwise_sum_DOUBLE`).
pub fn sum(values: &[f64]) -> f64 {
    let n = values.len();
    if n < 8 {
        let mut res = 0.0;
        for v in values {
            res += v;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&values[..8]);
        let mut i = 8;
        while i < n - (n % 8) {
            for j in 0..8 {
                r[j] += values[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += values[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        sum(&values[..n2]) + sum(&values[n2..])
    }
}

/// `np.mean(values)`; `None` for an empty array (numpy would return NaN with a warning).
pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| sum(values) / values.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_numpy_on_known_values() {
        // numpy 1.26: np.sum([0.1] * 10) == 1.0 (a naive loop gives 0.9999999999999999) and
        // np.sum(np.arange(1, 301) / 7) == 6450.0.
        assert_eq!(sum(&[0.1; 10]), 1.0);
        let v: Vec<f64> = (1..=300).map(|i| i as f64 / 7.0).collect();
        assert_eq!(sum(&v), 6450.0);
        assert_eq!(mean(&[]), None);
        assert_eq!(mean(&[1.0, 2.0]), Some(1.5));
    }

    #[test]
    fn differs_from_naive_sum_where_numpy_does() {
        // With eight or more values the unrolled accumulators change the rounding.
        let v = [1e16, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -1e16];
        let naive: f64 = v.iter().sum();
        assert_eq!(naive, 0.0);
        assert_eq!(sum(&v), 6.0); // numpy 1.26 gives 6.0
    }
}
