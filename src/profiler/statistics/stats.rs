//! Sound statistics for a run, next to (never instead of) the reference-compatible outputs.
//!
//! Where the toolkit pairs LLM calls by time order and builds z-intervals on the population
//! standard deviation, these pair calls by UUID within their request, report the sample standard
//! deviation, Student-t and bootstrap intervals for means, and an exact Poisson interval for
//! throughput. Each `Summary` says how much data it rests on; a statistic that needs more data
//! than there is is `null`, never a zero-width interval.

use crate::profiler::core::frame::{Frame, Row, time_order, time_span};
use crate::py::npstats;
use crate::py::percentile::percentile_sorted;
use crate::trace::EventType;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use statrs::distribution::{Binomial, ChiSquared, ContinuousCDF, DiscreteCDF, StudentsT};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Bootstrap resamples per interval.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;
/// Seed of the bootstrap's ChaCha8 stream: the same data always gives the same interval.
pub const BOOTSTRAP_SEED: u64 = 20261128;
/// Below this many values the bootstrap is left out: resampling 2 or 5 values gives an interval
/// that covers the true mean far less often than 95% (for n = 2 at most about half the time).
pub const BOOTSTRAP_MIN_N: usize = 10;
/// Above this many values the bootstrap is left out: it costs 2,000 · n draws per statistic
/// (a run has dozens), while at such n the mean is normal enough that the t interval says the
/// same.
pub const BOOTSTRAP_MAX_N: usize = 2000;

/// Two 95% intervals for a mean.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeanIntervals {
    /// Student-t: mean ± t(0.975, n-1) · s/√n. Assumes roughly normal means (fine for moderate n
    /// unless the data are very skewed).
    pub t: Option<[f64; 2]>,
    /// Percentile bootstrap: the 2.5th and 97.5th percentiles of the means of 2,000 resamples.
    /// Assumes the sample represents the population. Null below [`BOOTSTRAP_MIN_N`] values,
    /// where it is far too narrow, and above [`BOOTSTRAP_MAX_N`], where the t interval serves.
    pub bootstrap: Option<[f64; 2]>,
    /// Why neither interval is given, when neither is: too few values, or values whose
    /// interval has no finite bounds. Absent when one is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<&'static str>,
}

impl MeanIntervals {
    fn of(values: &[f64], mean: Option<f64>, std: Option<f64>) -> MeanIntervals {
        let n = values.len();
        let t = mean
            .zip(std)
            .and_then(|(m, s)| t_interval_from(m, s, n, 0.95));
        let bootstrap = bootstrap_interval(values, 0.95);
        let unavailable = match (t, bootstrap) {
            (None, None) if n < 2 => Some("an interval needs at least two values"),
            (None, None) => {
                Some("the values are too large or not finite: no interval has finite bounds")
            }
            _ => None,
        };
        MeanIntervals {
            t,
            bootstrap,
            unavailable,
        }
    }
}

/// The distribution of one quantity.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Summary {
    pub n: usize,
    pub mean: Option<f64>,
    /// Sample standard deviation (divides by n - 1); null below 2 values.
    pub std: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Percentiles by linear interpolation between order statistics (numpy's default).
    pub p50: Option<f64>,
    pub p75: Option<f64>,
    pub p90: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub mean_ci95: MeanIntervals,
    /// Distribution-free 95% intervals for the median, p90 and p99.
    pub percentile_ci95: PercentileIntervals,
}

/// 95% intervals for percentiles from the order statistics: `[x(l), x(u)]` with the ranks chosen
/// from the binomial distribution of how many values fall below the true percentile, so that
/// the interval covers it with probability at least 0.95 whatever the distribution. Null when
/// there are too few values for that (a p99 needs about 300), never a fake narrow interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PercentileIntervals {
    pub p50: Option<[f64; 2]>,
    pub p90: Option<[f64; 2]>,
    pub p99: Option<[f64; 2]>,
}

/// The order-statistic interval for the `q` quantile (0 < q < 1) of `sorted` values at
/// confidence `level`: the largest lower rank whose binomial tail is at most (1 - level) / 2,
/// the smallest upper rank whose cumulative probability reaches 1 - (1 - level) / 2.
pub fn quantile_interval(sorted: &[f64], q: f64, level: f64) -> Option<[f64; 2]> {
    let n = sorted.len();
    let binom = Binomial::new(q, u64::try_from(n).ok()?).ok()?;
    let alpha = (1.0 - level) / 2.0;
    // The smallest k in 0..=n with cdf(k) >= p (cdf is monotone, cdf(n) = 1).
    let first_reaching = |p: f64| {
        let (mut lo, mut hi) = (0u64, n as u64);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if binom.cdf(mid) >= p {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    };
    // Lower: l (1-based) = j + 1 for the largest j with cdf(j) <= alpha; none when even
    // cdf(0) exceeds alpha.
    let k = first_reaching(alpha);
    let j = if binom.cdf(k) <= alpha {
        Some(k)
    } else {
        k.checked_sub(1)
    }?;
    let lower = usize::try_from(j).ok()?; // 0-based index of x(j + 1)
    // Upper: u (1-based) = the smallest k with cdf(k - 1) >= 1 - alpha.
    let upper = usize::try_from(first_reaching(1.0 - alpha)).ok()?; // 0-based index of x(u)
    (upper < n).then(|| [sorted[lower], sorted[upper]])
}

impl Summary {
    pub fn of(values: &[f64]) -> Summary {
        let n = values.len();
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let pct = |p: f64| (n > 0).then(|| percentile_sorted(&sorted, p));
        let mean = stable_mean(values);
        let std = mean.and_then(|m| sample_std_about(values, m));
        Summary {
            n,
            mean,
            std,
            min: sorted.first().copied(),
            max: sorted.last().copied(),
            p50: pct(50.0),
            p75: pct(75.0),
            p90: pct(90.0),
            p95: pct(95.0),
            p99: pct(99.0),
            mean_ci95: MeanIntervals::of(values, mean, std),
            percentile_ci95: PercentileIntervals {
                p50: quantile_interval(&sorted, 0.5, 0.95),
                p90: quantile_interval(&sorted, 0.9, 0.95),
                p99: quantile_interval(&sorted, 0.99, 0.95),
            },
        }
    }
}

/// The power of two nearest below the largest magnitude of `values` (1 for none or only zeros):
/// dividing by it is exact, and brings every value within ±2, where sums of a few billion values
/// cannot overflow.
fn scale_of(values: impl IntoIterator<Item = f64>) -> f64 {
    let largest = values.into_iter().fold(0.0f64, |m, x| m.max(x.abs()));
    if largest.is_finite() && largest >= f64::MIN_POSITIVE {
        2f64.powi(largest.log2().floor() as i32)
    } else {
        1.0
    }
}

/// The mean, computed on values scaled by [`scale_of`]: finite for any finite values (scores
/// near `f64::MAX` included, whose plain sum overflows), and numpy's pairwise mean otherwise.
pub fn stable_mean(values: &[f64]) -> Option<f64> {
    if values.iter().any(|x| !x.is_finite()) {
        return npstats::mean(values);
    }
    let s = scale_of(values.iter().copied());
    let scaled: Vec<f64> = values.iter().map(|x| x / s).collect();
    npstats::mean(&scaled).map(|m| m * s)
}

/// Sample standard deviation (two-pass); `None` below two values.
pub fn sample_std(values: &[f64]) -> Option<f64> {
    sample_std_about(values, stable_mean(values)?)
}

/// Sample standard deviation around an already computed `mean` (the one a `Summary` reports,
/// so that its intervals are centred exactly on it). The deviations are taken on values scaled
/// by [`scale_of`], so that neither they nor their squares overflow, and small spreads around
/// large values (1e30 + r) keep every digit the values have.
fn sample_std_about(values: &[f64], mean: f64) -> Option<f64> {
    let n = values.len();
    if n < 2 {
        return None;
    }
    let s = scale_of(values.iter().copied().chain([mean]));
    let ss: f64 = values
        .iter()
        .map(|x| {
            let d = x / s - mean / s;
            d * d
        })
        .sum();
    Some(s * (ss / (n - 1) as f64).sqrt())
}

/// The two-sided `level` quantile of Student's t with `df` degrees of freedom.
pub fn t_quantile(df: f64, level: f64) -> Option<f64> {
    Some(
        StudentsT::new(0.0, 1.0, df)
            .ok()?
            .inverse_cdf(0.5 + level / 2.0),
    )
}

/// The two-sided p-value of statistic `t` under Student's t with `df` degrees of freedom.
pub fn two_sided_t_p(t: f64, df: f64) -> Option<f64> {
    let dist = StudentsT::new(0.0, 1.0, df).ok()?;
    Some((2.0 * (1.0 - dist.cdf(t.abs()))).clamp(0.0, 1.0))
}

/// The two-sided `level` Student-t interval for the mean; `None` below two values.
pub fn t_interval(values: &[f64], level: f64) -> Option<[f64; 2]> {
    let mean = stable_mean(values)?;
    t_interval_from(mean, sample_std_about(values, mean)?, values.len(), level)
}

fn t_interval_from(mean: f64, sd: f64, n: usize, level: f64) -> Option<[f64; 2]> {
    let half = t_quantile((n - 1) as f64, level)? * sd / (n as f64).sqrt();
    let interval = [mean - half, mean + half];
    interval.iter().all(|x| x.is_finite()).then_some(interval)
}

/// The percentile bootstrap interval for the mean, seeded; `None` outside
/// [`BOOTSTRAP_MIN_N`]..=[`BOOTSTRAP_MAX_N`] values.
pub fn bootstrap_interval(values: &[f64], level: f64) -> Option<[f64; 2]> {
    let n = values.len();
    if !(BOOTSTRAP_MIN_N..=BOOTSTRAP_MAX_N).contains(&n) {
        return None;
    }
    if values.iter().any(|x| !x.is_finite()) {
        return None;
    }
    // Resampled sums of values near f64::MAX would overflow: work on the values scaled by a
    // power of two (exact), and scale the means back.
    let scale = scale_of(values.iter().copied());
    let scaled: Vec<f64> = values.iter().map(|x| x / scale).collect();
    let values = &scaled[..];
    let mut rng = ChaCha8Rng::seed_from_u64(BOOTSTRAP_SEED);
    // An index in 0..n from 64 random bits by multiply-shift: no rejection loop, and a bias of at
    // most n / 2^64. Four running sums keep the additions from waiting on each other.
    let mut pick = || values[((u128::from(rng.next_u64()) * n as u128) >> 64) as usize];
    let mut means: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            let mut acc = [0.0f64; 4];
            for _ in 0..n / 4 {
                for a in &mut acc {
                    *a += pick();
                }
            }
            for a in acc.iter_mut().take(n % 4) {
                *a += pick();
            }
            ((acc[0] + acc[1]) + (acc[2] + acc[3])) / n as f64 * scale
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let alpha = (1.0 - level) / 2.0;
    Some([
        percentile_sorted(&means, alpha * 100.0),
        percentile_sorted(&means, (1.0 - alpha) * 100.0),
    ])
}

/// LLM call latency paired START -> END by UUID within each request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LlmLatency {
    pub overall: Summary,
    pub by_model: BTreeMap<String, Summary>,
    /// LLM_STARTs never followed by their LLM_END (failed or cut-off calls).
    pub unmatched_starts: usize,
    /// LLM_ENDs with no earlier LLM_START of the same UUID in the request.
    pub unmatched_ends: usize,
}

/// Throughput with an exact (Garwood) Poisson interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Throughput {
    /// Requests with at least one step.
    pub requests: usize,
    /// From the first to the last step of the run.
    pub seconds: f64,
    pub requests_per_second: Option<f64>,
    /// Treats request arrivals as a Poisson process over the window; null when there are no
    /// requests or the window is empty.
    pub ci95: Option<[f64; 2]>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenStats {
    pub prompt: Summary,
    pub completion: Summary,
    pub total: Summary,
}

/// How prompt text is cut into tokens for the prefix-cache estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Tokenization {
    /// Runs of non-whitespace characters: no model's tokenizer, but the same for every model.
    Whitespace,
}

/// What a prefix cache could have saved, per model.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PrefixCache {
    /// How prompts were split into tokens.
    pub tokenization: Tokenization,
    pub prompts: usize,
    pub prompt_tokens: u64,
    /// Σ over prompts of the longest token prefix shared with any earlier prompt of the model.
    pub cacheable_tokens: u64,
    /// `cacheable_tokens / prompt_tokens`: the share of prompt tokens a prefix cache could serve.
    pub cacheable_share: Option<f64>,
    /// Per prompt, the shared-prefix length in tokens.
    pub shared_prefix_tokens: Summary,
}

/// `GET /v1/runs/{run_id}/stats` and `stats.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunStats {
    pub llm_latency: LlmLatency,
    pub workflow_run_time: Summary,
    /// Seconds from an LLM_START to its first LLM_NEW_TOKEN; null when no call streamed tokens.
    pub time_to_first_token: Option<Summary>,
    /// Per model, tokens per call (from each LLM_END's usage).
    pub tokens: BTreeMap<String, TokenStats>,
    pub throughput: Throughput,
    /// Per tool, TOOL_START -> TOOL_END by UUID within the request.
    pub tool_latency: BTreeMap<String, Summary>,
    pub prefix_cache: BTreeMap<String, PrefixCache>,
    /// Per evaluator, the scores of the run's requests (from an eval, see
    /// [`super::scores`]); absent when the run has none.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub scores: BTreeMap<String, Summary>,
    /// What the LLM calls cost under the run's prices (see [`super::cost`]).
    pub cost: super::cost::RunCost,
}

/// One paired call.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    pub request: i64,
    pub name: &'a str,
    pub start: f64,
    pub end: f64,
}

impl Call<'_> {
    pub fn latency(&self) -> f64 {
        self.end - self.start
    }
}

/// Pairs `start_type` with `end_type` events by UUID within each request (first open START of a
/// UUID with the next END of it). Returns the calls and the unmatched START and END counts.
pub fn pair_calls(
    frame: &Frame,
    start_type: EventType,
    end_type: EventType,
) -> (Vec<Call<'_>>, usize, usize) {
    let mut calls = Vec::new();
    let (mut unmatched_starts, mut unmatched_ends) = (0, 0);
    let mut order: Vec<usize> = Vec::new();
    for (req, rows) in frame.iter_requests() {
        time_order(rows, &mut order);
        let mut open: HashMap<&str, VecDeque<Row<'_>>> = HashMap::new();
        for &i in &order {
            let r = rows.get(i);
            if r.event_type() == start_type {
                open.entry(r.uuid()).or_default().push_back(r);
            } else if r.event_type() == end_type {
                match open.get_mut(r.uuid()).and_then(VecDeque::pop_front) {
                    Some(s) => calls.push(Call {
                        request: req.number,
                        name: call_name(s, r),
                        start: s.event_timestamp(),
                        end: r.event_timestamp(),
                    }),
                    None => unmatched_ends += 1,
                }
            }
        }
        unmatched_starts += open.values().map(VecDeque::len).sum::<usize>();
    }
    (calls, unmatched_starts, unmatched_ends)
}

fn call_name<'a>(start: Row<'a>, end: Row<'a>) -> &'a str {
    let pick = |r: Row<'a>| {
        if !r.llm_name().is_empty() {
            r.llm_name()
        } else {
            r.tool_name()
        }
    };
    match pick(start) {
        "" => pick(end),
        n => n,
    }
}

fn by_name<'a>(calls: &[Call<'a>]) -> BTreeMap<String, Summary> {
    let mut groups: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for c in calls {
        groups.entry(c.name).or_default().push(c.latency());
    }
    groups
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Summary::of(&v)))
        .collect()
}

pub fn compute(frame: &Frame) -> RunStats {
    compute_with(
        frame,
        &super::scores::RequestScores::new(),
        &super::cost::PriceTable::default(),
    )
}

/// [`compute`], with the evaluator scores of the run's requests and the prices it is costed
/// with.
pub fn compute_with(
    frame: &Frame,
    scores: &super::scores::RequestScores,
    prices: &super::cost::PriceTable,
) -> RunStats {
    let (llm, unmatched_starts, unmatched_ends) =
        pair_calls(frame, EventType::LlmStart, EventType::LlmEnd);
    let latencies: Vec<f64> = llm.iter().map(Call::latency).collect();
    let (tools, _, _) = pair_calls(frame, EventType::ToolStart, EventType::ToolEnd);
    RunStats {
        llm_latency: LlmLatency {
            overall: Summary::of(&latencies),
            by_model: by_name(&llm),
            unmatched_starts,
            unmatched_ends,
        },
        workflow_run_time: Summary::of(&crate::profiler::toolkit::confidence::run_times(frame)),
        time_to_first_token: time_to_first_token(frame),
        tokens: tokens_per_model(frame),
        throughput: throughput(frame),
        tool_latency: by_name(&tools),
        prefix_cache: prefix_cache(frame),
        scores: scores
            .iter()
            .map(|(evaluator, per_request)| {
                let values: Vec<f64> = per_request.values().copied().collect();
                (evaluator.clone(), Summary::of(&values))
            })
            .collect(),
        cost: super::cost::compute(frame, prices),
    }
}

fn time_to_first_token(frame: &Frame) -> Option<Summary> {
    let mut ttft = Vec::new();
    for (_, rows) in frame.iter_requests() {
        let mut starts: HashMap<&str, f64> = HashMap::new();
        let mut first_token: HashMap<&str, f64> = HashMap::new();
        for r in rows.iter() {
            match r.event_type() {
                EventType::LlmStart => {
                    starts.entry(r.uuid()).or_insert(r.event_timestamp());
                }
                EventType::LlmNewToken => {
                    let t = first_token.entry(r.uuid()).or_insert(r.event_timestamp());
                    *t = t.min(r.event_timestamp());
                }
                _ => {}
            }
        }
        for (uuid, token) in first_token {
            if let Some(start) = starts.get(uuid) {
                ttft.push(token - start);
            }
        }
    }
    ttft.sort_by(f64::total_cmp);
    (!ttft.is_empty()).then(|| Summary::of(&ttft))
}

fn tokens_per_model(frame: &Frame) -> BTreeMap<String, TokenStats> {
    let mut per: BTreeMap<&str, [Vec<f64>; 3]> = BTreeMap::new();
    for r in frame
        .rows()
        .iter()
        .filter(|r| r.event_type() == EventType::LlmEnd)
    {
        let v = per.entry(r.llm_name()).or_default();
        v[0].push(r.prompt_tokens() as f64);
        v[1].push(r.completion_tokens() as f64);
        v[2].push(r.total_tokens() as f64);
    }
    per.into_iter()
        .map(|(m, [p, c, t])| {
            (
                m.to_owned(),
                TokenStats {
                    prompt: Summary::of(&p),
                    completion: Summary::of(&c),
                    total: Summary::of(&t),
                },
            )
        })
        .collect()
}

/// Exact (Garwood) interval for a Poisson rate: k events in `seconds`.
pub fn poisson_rate_interval(k: usize, seconds: f64, level: f64) -> Option<[f64; 2]> {
    if seconds <= 0.0 || !seconds.is_finite() {
        return None;
    }
    let alpha = 1.0 - level;
    let lower = if k == 0 {
        0.0
    } else {
        ChiSquared::new(2.0 * k as f64)
            .ok()?
            .inverse_cdf(alpha / 2.0)
            / 2.0
    };
    let upper = ChiSquared::new(2.0 * (k as f64 + 1.0))
        .ok()?
        .inverse_cdf(1.0 - alpha / 2.0)
        / 2.0;
    Some([lower / seconds, upper / seconds])
}

fn throughput(frame: &Frame) -> Throughput {
    let requests = frame.requests.iter().filter(|r| !r.rows.is_empty()).count();
    let seconds = time_span(frame.rows()).map_or(0.0, |(lo, hi)| hi - lo);
    let rate = (seconds > 0.0 && requests > 0).then(|| requests as f64 / seconds);
    Throughput {
        requests,
        seconds,
        requests_per_second: rate,
        ci95: if requests > 0 {
            poisson_rate_interval(requests, seconds, 0.95)
        } else {
            None
        },
    }
}

/// Token-level prefix sharing per model: each prompt against every earlier prompt of the
/// model, in time order. The longest prefix shared with any earlier prompt is shared with one
/// of its two neighbours in sorted order, so a sorted set answers each prompt in O(log n)
/// comparisons.
fn prefix_cache(frame: &Frame) -> BTreeMap<String, PrefixCache> {
    let mut prompts: BTreeMap<&str, Vec<(f64, Cow<'_, str>)>> = BTreeMap::new();
    for r in frame
        .rows()
        .iter()
        .filter(|r| r.event_type() == EventType::LlmStart)
    {
        if let Some(text) = r.llm_text_input() {
            prompts
                .entry(r.llm_name())
                .or_default()
                .push((r.event_timestamp(), text));
        }
    }
    prompts
        .into_iter()
        .map(|(model, mut texts)| {
            texts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut vocab: HashMap<&str, u32> = HashMap::new();
            let mut seen: std::collections::BTreeSet<Vec<u32>> = std::collections::BTreeSet::new();
            let mut shared = Vec::with_capacity(texts.len());
            let (mut total, mut cacheable) = (0u64, 0u64);
            for (_, text) in &texts {
                let tokens: Vec<u32> = text
                    .split_whitespace()
                    .map(|w| {
                        let next = vocab.len() as u32;
                        *vocab.entry(w).or_insert(next)
                    })
                    .collect();
                let lcp =
                    |other: &Vec<u32>| tokens.iter().zip(other).take_while(|(a, b)| a == b).count();
                let before = seen.range(..tokens.clone()).next_back().map_or(0, lcp);
                let after = seen.range(tokens.clone()..).next().map_or(0, lcp);
                let best = before.max(after);
                total += tokens.len() as u64;
                cacheable += best as u64;
                shared.push(best as f64);
                seen.insert(tokens);
            }
            let entry = PrefixCache {
                tokenization: Tokenization::Whitespace,
                prompts: shared.len(),
                prompt_tokens: total,
                cacheable_tokens: cacheable,
                cacheable_share: (total > 0).then(|| cacheable as f64 / total as f64),
                shared_prefix_tokens: Summary::of(&shared),
            };
            (model.to_owned(), entry)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiler::testutil::frame_of;

    #[test]
    fn summary_nulls_instead_of_fake_intervals() {
        let empty = Summary::of(&[]);
        assert_eq!((empty.n, empty.mean, empty.p50), (0, None, None));
        let one = Summary::of(&[3.0]);
        assert_eq!((one.mean, one.std, one.p99), (Some(3.0), None, Some(3.0)));
        assert_eq!(
            one.mean_ci95,
            MeanIntervals {
                t: None,
                bootstrap: None,
                unavailable: Some("an interval needs at least two values"),
            }
        );
        let two = Summary::of(&[1.0, 3.0]);
        assert_eq!(two.std, Some(2f64.sqrt()));
        // t(0.975, 1) = 12.706204736...
        let [lo, hi] = two.mean_ci95.t.unwrap();
        assert!((hi - 2.0 - 12.706_204_736 * 1.0).abs() < 1e-6, "{lo} {hi}");
        // Resampling two values would give about [1, 3]: far too narrow to print.
        assert_eq!(two.mean_ci95.bootstrap, None);
        let few: Vec<f64> = (0..BOOTSTRAP_MIN_N).map(|i| i as f64).collect();
        assert_eq!(Summary::of(&few[1..]).mean_ci95.bootstrap, None);
        assert!(Summary::of(&few).mean_ci95.bootstrap.is_some());
    }

    #[test]
    fn huge_and_offset_values_keep_finite_numbers() {
        // Scores near the largest float: the plain sum overflows; the scaled one does not.
        let huge = [1.7e308, 1.6e308, 1.5e308];
        let s = Summary::of(&huge);
        assert_eq!(s.mean, Some(1.6e308));
        assert!(s.std.unwrap() > 9.9e306 && s.std.unwrap() < 1.01e307);
        assert!(s.mean_ci95.t.is_none(), "its bounds would pass f64::MAX");
        assert_eq!(
            s.mean_ci95.unavailable,
            Some("the values are too large or not finite: no interval has finite bounds")
        );
        // 1e30 + r: a real spread, which a sum that rounds at 1e30 would lose.
        let offset: Vec<f64> = (0..20).map(|i| 1e30 + f64::from(i) * 1e16).collect();
        let s = Summary::of(&offset);
        let [lo, hi] = s.mean_ci95.t.unwrap();
        assert!(hi > lo, "a zero-width interval for a spread of 1.9e17");
        // The values themselves are rounded to multiples of 2^47 (about 1.4e14).
        assert!(
            (s.std.unwrap() / 5.916_079_783e16 - 1.0).abs() < 1e-3,
            "{:?}",
            s.std
        );
    }

    #[test]
    fn percentile_intervals_from_order_statistics() {
        // The textbook median interval for n = 10 is [x(2), x(9)] (coverage 0.979).
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(quantile_interval(&ten, 0.5, 0.95), Some([2.0, 9.0]));
        // A p99 needs the largest of about 300 values to lie above it with 97.5% probability.
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile_interval(&hundred, 0.99, 0.95), None);
        let s = Summary::of(&hundred);
        let [lo, hi] = s.percentile_ci95.p50.unwrap();
        assert!(lo < s.p50.unwrap() && s.p50.unwrap() < hi && (40.0..=61.0).contains(&lo));
        assert_eq!(Summary::of(&[1.0]).percentile_ci95.p50, None);
    }

    #[test]
    fn pairs_by_uuid_not_time() {
        // Overlapping calls: the toolkit would record only END A - START B.
        let f = frame_of(&[vec![
            ("LLM_START", 0.0, "a"),
            ("LLM_START", 1.0, "b"),
            ("LLM_END", 3.0, "a"),
            ("LLM_END", 4.0, "b"),
            ("LLM_END", 5.0, "x"),
            ("LLM_START", 6.0, "open"),
        ]]);
        let s = compute(&f);
        let mut lat: Vec<f64> = pair_calls(&f, EventType::LlmStart, EventType::LlmEnd)
            .0
            .iter()
            .map(Call::latency)
            .collect();
        lat.sort_by(f64::total_cmp);
        assert_eq!(lat, [3.0, 3.0]);
        assert_eq!(
            (s.llm_latency.unmatched_starts, s.llm_latency.unmatched_ends),
            (1, 1)
        );
        assert_eq!(s.llm_latency.by_model["m"].n, 2);
    }

    #[test]
    fn poisson_interval_known_values() {
        // Garwood 95% for k = 10: [4.7954, 18.3904] events.
        let [lo, hi] = poisson_rate_interval(10, 1.0, 0.95).unwrap();
        assert!(
            (lo - 4.795_389).abs() < 1e-5 && (hi - 18.390_356).abs() < 1e-5,
            "{lo} {hi}"
        );
        let [lo, _] = poisson_rate_interval(0, 2.0, 0.95).unwrap();
        assert_eq!(lo, 0.0);
        assert!(poisson_rate_interval(3, 0.0, 0.95).is_none());
    }

    #[test]
    fn bootstrap_is_left_out_for_large_samples() {
        let v: Vec<f64> = (0..=BOOTSTRAP_MAX_N).map(|i| i as f64).collect();
        assert!(bootstrap_interval(&v[..BOOTSTRAP_MAX_N], 0.95).is_some());
        assert_eq!(bootstrap_interval(&v, 0.95), None);
        assert!(t_interval(&v, 0.95).is_some());
    }

    #[test]
    fn bootstrap_is_seeded_and_brackets_the_mean() {
        let v: Vec<f64> = (0..50).map(|i| (i as f64).sqrt()).collect();
        let a = bootstrap_interval(&v, 0.95).unwrap();
        assert_eq!(Some(a), bootstrap_interval(&v, 0.95));
        let m = v.iter().sum::<f64>() / 50.0;
        assert!(a[0] < m && m < a[1]);
    }

    #[test]
    fn prefix_cache_counts_shared_tokens() {
        use crate::profiler::testutil::frame_of_json;
        use serde_json::json;
        let start = |ts: f64, uuid: &str, text: &str| json!({"payload": {"event_type": "LLM_START", "event_timestamp": ts, "UUID": uuid, "name": "m", "data": {"input": text}}});
        let f = frame_of_json(json!([[
            start(0.0, "a", "sys prompt one q1"),
            start(1.0, "b", "sys prompt one q2 more"),
            start(2.0, "c", "sys other")
        ]]));
        let p = &prefix_cache(&f)["m"];
        // First prompt: 0 shared; second: 3 of 5; third: 1 of 2.
        assert_eq!((p.prompts, p.prompt_tokens, p.cacheable_tokens), (3, 11, 4));
        assert_eq!(p.cacheable_share, Some(4.0 / 11.0));
    }
}
