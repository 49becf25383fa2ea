//! Correctly rounded mean and population standard deviation, as Python's `statistics` gives.
//!
//! `statistics.mean` sums the floats as exact fractions and rounds once; `statistics.pstdev`
//! computes the exact sum of squared deviations and takes a correctly rounded square root
//! (CPython 3.11, `_ss` and `_float_sqrt_of_frac`). A naive `f64` sum differs in the last bits, and
//! the reference's confidence intervals are built on these two values, so we do the same exact
//! arithmetic: every finite `f64` is an integer times a power of two, so all sums are big integers
//! over a common power of two.

use num_bigint::{BigInt, BigUint};
use num_integer::Integer;
use num_traits::{One, Signed, Zero};

/// Exact sums of a sample: `Σx` and `Σx²`, scaled by `2^scale` and `2^(2*scale)`.
struct ExactSums {
    n: usize,
    sum: BigInt,
    sum_sq: BigInt,
    /// The power of two that every value was expressed in (the smallest exponent seen).
    scale: i32,
}

/// `x = mantissa * 2^exponent` with an integer mantissa; `x` must be finite.
fn decompose(x: f64) -> (i64, i32) {
    let bits = x.to_bits();
    let sign = if bits >> 63 == 0 { 1 } else { -1 };
    let exp_bits = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1u64 << 52) - 1);
    let (mantissa, exponent) = if exp_bits == 0 {
        (frac, -1074)
    } else {
        (frac | (1u64 << 52), exp_bits - 1075)
    };
    (sign * mantissa as i64, exponent)
}

impl ExactSums {
    fn of(data: &[f64]) -> Self {
        let parts: Vec<(i64, i32)> = data.iter().map(|x| decompose(*x)).collect();
        let scale = parts
            .iter()
            .filter(|(m, _)| *m != 0)
            .map(|(_, e)| *e)
            .min()
            .unwrap_or(0);
        let mut sum = BigInt::zero();
        let mut sum_sq = BigInt::zero();
        for (m, e) in parts {
            if m == 0 {
                continue;
            }
            let v = BigInt::from(m) << ((e - scale) as usize);
            sum_sq += &v * &v;
            sum += v;
        }
        ExactSums {
            n: data.len(),
            sum,
            sum_sq,
            scale,
        }
    }
}

/// `statistics.mean(data)`: the exact mean rounded once to the nearest `f64`.
/// Returns `None` for an empty sample; non-finite inputs propagate like `f64` arithmetic.
pub fn mean(data: &[f64]) -> Option<f64> {
    if data.is_empty() {
        return None;
    }
    if data.iter().any(|x| !x.is_finite()) {
        return Some(data.iter().sum::<f64>() / data.len() as f64);
    }
    let s = ExactSums::of(data);
    Some(signed_ratio_to_f64(&s.sum, &BigUint::from(s.n), s.scale))
}

/// `statistics.pstdev(data)`: the correctly rounded square root of the exact population variance.
pub fn pstdev(data: &[f64]) -> Option<f64> {
    if data.is_empty() {
        return None;
    }
    if data.iter().any(|x| !x.is_finite()) {
        return Some(f64::NAN);
    }
    let s = ExactSums::of(data);
    let n = BigInt::from(s.n);
    // variance = (n*Σx² - (Σx)²) / n², all scaled by 2^(2*scale).
    let num = (&n * &s.sum_sq - &s.sum * &s.sum).magnitude().clone();
    let mut den = (&n * &n).magnitude().clone();
    let mut num = num;
    let two_scale = 2 * s.scale;
    if two_scale >= 0 {
        num <<= two_scale as usize;
    } else {
        den <<= (-two_scale) as usize;
    }
    Some(sqrt_of_frac(&num, &den))
}

/// CPython's `_float_sqrt_of_frac`: round-to-odd integer square root with 109 spare bits, then a
/// correctly rounded division.
fn sqrt_of_frac(n: &BigUint, m: &BigUint) -> f64 {
    if n.is_zero() {
        return 0.0;
    }
    const SQRT_BIT_WIDTH: i64 = 2 * 53 + 3;
    let q = Integer::div_floor(&(n.bits() as i64 - m.bits() as i64 - SQRT_BIT_WIDTH), &2);
    let (numerator, denominator) = if q >= 0 {
        let root = isqrt_frac_rto(n, &(m << (2 * q) as usize));
        (root << q as usize, BigUint::one())
    } else {
        let root = isqrt_frac_rto(&(n << (-2 * q) as usize), m);
        (root, BigUint::one() << (-q) as usize)
    };
    ratio_to_f64(&numerator, &denominator, 0)
}

/// `isqrt(n // m)`, with the low bit set when the root is inexact (round to odd).
fn isqrt_frac_rto(n: &BigUint, m: &BigUint) -> BigUint {
    let a = (n / m).sqrt();
    if &(&a * &a * m) != n {
        a | BigUint::one()
    } else {
        a
    }
}

fn signed_ratio_to_f64(num: &BigInt, den: &BigUint, exp2: i32) -> f64 {
    let magnitude = ratio_to_f64(num.magnitude(), den, exp2);
    if num.is_negative() {
        -magnitude
    } else {
        magnitude
    }
}

/// `num / den * 2^exp2`, rounded to the nearest `f64`, ties to even (as Python's `int / int`).
pub(crate) fn ratio_to_f64(num: &BigUint, den: &BigUint, exp2: i32) -> f64 {
    if num.is_zero() {
        return 0.0;
    }
    // Scale so that the integer quotient has at least 55 significant bits.
    let shift = num.bits() as i64 - den.bits() as i64;
    let scale = 55 - shift;
    let (n, d) = if scale >= 0 {
        (num << scale as usize, den.clone())
    } else {
        (num.clone(), den << (-scale) as usize)
    };
    let (mut q, r) = n.div_rem(&d);
    // value = q * 2^(exp2 - scale) (+ a sticky remainder)
    let mut low_exp = exp2 as i64 - scale;
    let bits = q.bits() as i64;
    let mut excess = bits - 53;
    // Subnormal results keep fewer bits.
    if low_exp + excess < -1074 {
        excess = -1074 - low_exp;
    }
    if excess > 0 {
        let excess_u = excess as usize;
        let mask = (BigUint::one() << excess_u) - BigUint::one();
        let low = &q & &mask;
        let half = BigUint::one() << (excess_u - 1);
        q >>= excess_u;
        let round_up = low > half || (low == half && (!r.is_zero() || q.bit(0)));
        if round_up {
            q += BigUint::one();
        }
        low_exp += excess;
    }
    let q = u64::try_from(&q).unwrap_or(u64::MAX) as f64;
    ldexp(q, low_exp)
}

/// `2^e` for a normal exponent, built from its bits so that it is exact.
fn pow2(e: i64) -> f64 {
    f64::from_bits(((e + 1023) as u64) << 52)
}

/// `q * 2^e` for an integer `q < 2^54` whose product is representable (or overflows to infinity):
/// exact, because each step multiplies by a power of two in the normal range.
fn ldexp(q: f64, e: i64) -> f64 {
    if e > 1023 {
        f64::INFINITY
    } else if e >= -1022 {
        q * pow2(e)
    } else {
        // Subnormal: q * 2^(e + 1074) is an integer below 2^52, times the smallest subnormal.
        (q * pow2(e + 1074)) * 5e-324
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mean_is_correctly_rounded() {
        // 0.1 + 0.2 + 0.3 summed naively is 0.6000000000000001.
        assert_eq!(mean(&[0.1, 0.2, 0.3]), Some(0.2));
        assert_eq!(mean(&[1e16, 1.0, -1e16]), Some(1.0 / 3.0));
        assert_eq!(mean(&[]), None);
        assert_eq!(mean(&[5.0]), Some(5.0));
    }

    #[test]
    fn pstdev_matches_python() {
        // Values from CPython 3.11: statistics.pstdev([1.5, 2.5, 2.5, 2.75, 3.25, 4.75])
        assert_eq!(
            pstdev(&[1.5, 2.5, 2.5, 2.75, 3.25, 4.75]),
            Some(0.986893273527251)
        );
        assert_eq!(pstdev(&[2.0, 2.0]), Some(0.0));
        assert_eq!(pstdev(&[0.1, 0.2, 0.3]), Some(0.0816496580927726));
    }

    #[test]
    fn ratio_rounds_ties_to_even() {
        // (2^53 + 1) / 1 is a tie between 2^53 and 2^53 + 2.
        let n = (BigUint::one() << 53usize) + BigUint::one();
        assert_eq!(ratio_to_f64(&n, &BigUint::one(), 0), 9007199254740992.0);
        let n = (BigUint::one() << 53usize) + BigUint::from(3u32);
        assert_eq!(ratio_to_f64(&n, &BigUint::one(), 0), 9007199254740996.0);
        assert_eq!(
            ratio_to_f64(&BigUint::one(), &BigUint::from(3u32), 0),
            1.0 / 3.0
        );
        assert_eq!(
            ratio_to_f64(&BigUint::one(), &BigUint::one(), -1074),
            5e-324
        );
    }

    /// Brute force: with small integer inputs the f64 sum is exact, so the naive mean is the
    /// correctly rounded one.
    fn naive_mean_of_small_integers(xs: &[i32]) -> f64 {
        let sum: i64 = xs.iter().map(|x| *x as i64).sum();
        sum as f64 / xs.len() as f64
    }

    proptest! {
        #[test]
        fn mean_equals_exact_mean_of_integers(xs in proptest::collection::vec(-1_000_000i32..1_000_000, 1..200)) {
            let data: Vec<f64> = xs.iter().map(|x| *x as f64).collect();
            prop_assert_eq!(mean(&data), Some(naive_mean_of_small_integers(&xs)));
        }

        #[test]
        fn mean_is_order_independent(mut xs in proptest::collection::vec(-1e9f64..1e9, 1..100)) {
            let a = mean(&xs);
            xs.reverse();
            prop_assert_eq!(a, mean(&xs));
        }

        #[test]
        fn pstdev_is_close_to_two_pass(xs in proptest::collection::vec(-1e6f64..1e6, 1..100)) {
            let n = xs.len() as f64;
            let m = xs.iter().sum::<f64>() / n;
            let var = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n;
            let got = pstdev(&xs).unwrap_or(f64::NAN);
            prop_assert!((got - var.sqrt()).abs() <= 1e-6 * (1.0 + var.sqrt()), "{got} vs {}", var.sqrt());
        }
    }
}
