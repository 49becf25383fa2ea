//! Is run B different from run A? Per metric: the two distributions, the difference of means with
//! a 95% interval, and a p-value, Holm-corrected across the metrics.
//!
//! When both runs hold the same requests (the same eval ids, or else the same request numbers)
//! the metrics are compared per request, paired: a paired t-test and a Wilcoxon signed-rank test
//! on the per-request differences. Otherwise each metric's observations are compared with
//! Welch's t-test, which does not assume equal variances.

use super::stats::stable_mean as mean;
use crate::profiler::core::frame::{Frame, time_span};
use crate::profiler::statistics::cost::PriceTable;
use crate::profiler::statistics::scores::RequestScores;
use crate::profiler::statistics::stats::{
    Call, Summary, pair_calls, sample_std, t_quantile, two_sided_t_p,
};
use crate::trace::EventType;
use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal};
use std::collections::{BTreeMap, HashMap};

pub const ALPHA: f64 = 0.05;

/// The power at which [`MetricComparison::detectable_difference`] is stated: the usual 80%.
pub const POWER: f64 = 0.8;

/// What a comparison tests: at which level, and which metrics (the family Holm's correction
/// runs over, so leaving metrics out makes the rest easier to detect).
#[derive(Debug, Clone, PartialEq)]
pub struct CompareOptions {
    pub alpha: f64,
    /// The metrics to compare by name (`llm_latency`, `score:<evaluator>`, ...); `None`: all.
    pub only: Option<Vec<String>>,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            alpha: ALPHA,
            only: None,
        }
    }
}

/// The metrics compared, with their unit of observation when the runs are paired (one value per
/// request) and when they are not (the observations themselves).
pub const METRICS: [(&str, &str, &str); 6] = [
    (
        "llm_latency",
        "seconds per request (the mean of its LLM calls)",
        "seconds per LLM call",
    ),
    (
        "workflow_run_time",
        "seconds per request",
        "seconds per request",
    ),
    ("total_tokens", "tokens per request", "tokens per request"),
    ("prompt_tokens", "tokens per request", "tokens per request"),
    (
        "completion_tokens",
        "tokens per request",
        "tokens per request",
    ),
    (
        "tool_latency",
        "seconds per request (the mean of its tool calls)",
        "seconds per tool call",
    ),
];

/// How the Wilcoxon p-value was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum WilcoxonMethod {
    /// The exact null distribution: no ties and at most 25 non-zero differences.
    Exact,
    /// The normal approximation with tie correction.
    Normal,
}

/// The test behind a metric's p-value and interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum TestKind {
    /// Welch's unequal-variance t-test on independent observations (unpaired runs).
    WelchT,
    /// The t-test on per-request differences (paired runs).
    PairedT,
}

/// What identifies the same request in two runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Pairing {
    /// Every request is an item of the eval (`metadata.eval.items` names its request) and the
    /// two runs' items are the same set: two evals of one dataset, whose requests carry the
    /// toolkit's per-run ids.
    DatasetItem,
    /// Every request has an eval id and the two runs' ids are the same set.
    ExternalId,
    /// The two runs hold the same request numbers.
    RequestNumber,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Wilcoxon {
    /// W+: the sum of the ranks of the positive differences (zeros dropped).
    pub statistic: f64,
    pub p_value: f64,
    pub method: WilcoxonMethod,
}

/// One metric compared.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricComparison {
    pub unit: &'static str,
    pub baseline: Summary,
    pub candidate: Summary,
    /// Candidate mean minus baseline mean (per pair when paired).
    pub difference_of_means: Option<f64>,
    /// 95% interval for the difference (Welch or paired t), for this metric on its own: it goes
    /// with `p_value`.
    pub ci95: Option<[f64; 2]>,
    pub p_value: Option<f64>,
    /// Holm-adjusted across the compared metrics: what `significant` is decided on.
    pub p_value_holm: Option<f64>,
    /// The interval at the level Holm's procedure tests this metric at (`ci_holm_level`: 1 -
    /// 0.05 / (metrics not yet decided)): it goes with `p_value_holm`, and excludes zero when the
    /// metric is significant. (After a metric earlier in Holm's order was not significant, no
    /// later one is, whatever its interval.)
    pub ci_holm: Option<[f64; 2]>,
    pub ci_holm_level: Option<f64>,
    /// The smallest difference of means (in either direction) this metric's own test, at
    /// `alpha` before Holm's correction, detects with 80% power, given the spread the two
    /// samples show: a difference below it going unnoticed says little. Null without a spread.
    pub detectable_difference: Option<f64>,
    /// The standard error, degrees of freedom and least half-width of the t interval, to set it
    /// at another level.
    #[serde(skip)]
    spread: Option<Spread>,
    pub test: TestKind,
    pub paired: bool,
    pub n_pairs: Option<usize>,
    /// Paired only: the rank test, which does not assume normal differences.
    pub wilcoxon: Option<Wilcoxon>,
    /// `p_value_holm < alpha`.
    pub significant: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Comparison {
    pub paired: bool,
    /// What identified matching requests; null when the runs are compared unpaired.
    pub pairing: Option<Pairing>,
    pub alpha: f64,
    /// The metrics above, `cost` when both runs have a price for every model they called, and
    /// `score:<evaluator>` for each evaluator that scored both runs.
    pub metrics: BTreeMap<String, MetricComparison>,
    /// The models either run called that its prices leave out: why there is no `cost` metric.
    /// Absent when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unpriced_models: Vec<String>,
}

/// What a t interval is made of besides its centre.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Spread {
    se: f64,
    df: f64,
    /// The least half-width (the floating-point resolution of paired differences).
    floor: f64,
}

impl Spread {
    fn interval(self, centre: f64, level: f64) -> Option<[f64; 2]> {
        let half = (t_quantile(self.df, level)? * self.se).max(self.floor);
        Some([centre - half, centre + half])
    }
}

/// Per-request values of every metric, and the per-observation values for unpaired tests.
struct Observations {
    /// Each request's key across the two runs (see [`request_key`]), by request number.
    keys: HashMap<i64, String>,
    per_request: HashMap<String, BTreeMap<String, f64>>,
    per_observation: HashMap<String, Vec<f64>>,
}

impl Observations {
    /// A metric with one value per request (by request number; requests the frame does not
    /// hold are left out), each value also one observation.
    fn add_per_request(&mut self, name: &str, values: &BTreeMap<i64, f64>) {
        let keyed: BTreeMap<String, f64> = values
            .iter()
            .filter_map(|(n, v)| Some((self.keys.get(n)?.clone(), *v)))
            .collect();
        self.per_observation
            .insert(name.to_owned(), keyed.values().copied().collect());
        self.per_request.insert(name.to_owned(), keyed);
    }
}

fn observations(frame: &Frame, key: &dyn Fn(i64, Option<&str>) -> String) -> Observations {
    let keys: HashMap<i64, String> = frame
        .requests
        .iter()
        .map(|r| (r.number, key(r.number, r.external_id.as_deref())))
        .collect();
    let mut per_request: HashMap<String, BTreeMap<String, f64>> = HashMap::new();
    let mut per_observation: HashMap<String, Vec<f64>> = HashMap::new();
    let mut calls_by_request = |name: &'static str, calls: &[Call]| {
        let mut sums: BTreeMap<i64, (f64, usize)> = BTreeMap::new();
        for c in calls {
            let e = sums.entry(c.request).or_insert((0.0, 0));
            e.0 += c.latency();
            e.1 += 1;
        }
        per_request.insert(
            name.to_owned(),
            sums.into_iter()
                .map(|(r, (s, n))| (keys[&r].clone(), s / n as f64))
                .collect(),
        );
        per_observation.insert(name.to_owned(), calls.iter().map(Call::latency).collect());
    };
    let (llm, _, _) = pair_calls(frame, EventType::LlmStart, EventType::LlmEnd);
    calls_by_request("llm_latency", &llm);
    let (tools, _, _) = pair_calls(frame, EventType::ToolStart, EventType::ToolEnd);
    calls_by_request("tool_latency", &tools);

    let mut run_time = BTreeMap::new();
    let mut tokens: [BTreeMap<i64, f64>; 3] = Default::default();
    for (req, rows) in frame.iter_requests() {
        let Some((lo, hi)) = time_span(rows) else {
            continue;
        };
        run_time.insert(req.number, hi - lo);
        let ends = rows.iter().filter(|r| r.event_type() == EventType::LlmEnd);
        let (mut t, mut p, mut c) = (0.0, 0.0, 0.0);
        for r in ends {
            t += r.total_tokens() as f64;
            p += r.prompt_tokens() as f64;
            c += r.completion_tokens() as f64;
        }
        tokens[0].insert(req.number, t);
        tokens[1].insert(req.number, p);
        tokens[2].insert(req.number, c);
    }
    let mut obs = Observations {
        keys,
        per_request,
        per_observation,
    };
    for (name, values) in [
        ("workflow_run_time", &run_time),
        ("total_tokens", &tokens[0]),
        ("prompt_tokens", &tokens[1]),
        ("completion_tokens", &tokens[2]),
    ] {
        obs.add_per_request(name, values);
    }
    obs
}

/// The dataset items of a side's requests, sorted, when every request has one of its own.
fn items<'a>(s: Side<'a>) -> Option<Vec<&'a str>> {
    let mut v: Vec<&str> = s
        .frame
        .requests
        .iter()
        .map(|r| s.items.get(&r.number).map(String::as_str))
        .collect::<Option<_>>()?;
    v.sort_unstable();
    let n = v.len();
    v.dedup();
    // An item answered twice (repetitions) pairs with nothing in particular.
    (v.len() == n).then_some(v)
}

/// What identifies request `n` (eval id `ext`) of a side across the two runs.
fn request_key(pairing: Option<Pairing>, items: &ItemIds, n: i64, ext: Option<&str>) -> String {
    match (pairing, ext) {
        (Some(Pairing::DatasetItem), _) => items.get(&n).cloned().unwrap_or_default(),
        (Some(Pairing::ExternalId), Some(e)) => e.to_owned(),
        _ => n.to_string(),
    }
}

/// How the two runs' requests match, if they do: by eval id when every request of both runs has
/// one and the ids are the same set; else by dataset item when the eval's items name every
/// request of both and the items are the same set (two evals of one dataset, whose requests
/// carry per-run ids); else by request number when both hold the same numbers.
fn pairing(sa: Side<'_>, sb: Side<'_>) -> Option<Pairing> {
    let (a, b) = (sa.frame, sb.frame);
    let same_items = || {
        let (x, y) = (items(sa), items(sb));
        x.is_some() && x == y
    };
    let ids = |f: &Frame| -> Option<Vec<String>> {
        let mut v: Vec<String> = f
            .requests
            .iter()
            .map(|r| r.external_id.clone())
            .collect::<Option<_>>()?;
        v.sort();
        Some(v)
    };
    let numbers = |f: &Frame| f.requests.iter().map(|r| r.number).collect::<Vec<_>>();
    if a.requests.is_empty() || b.requests.is_empty() {
        return None;
    }
    match (ids(a), ids(b)) {
        (Some(x), Some(y)) if x == y => Some(Pairing::ExternalId),
        _ if same_items() => Some(Pairing::DatasetItem),
        (Some(_), Some(_)) => None,
        _ if numbers(a) == numbers(b) => Some(Pairing::RequestNumber),
        _ => None,
    }
}

pub fn compare(baseline: &Frame, candidate: &Frame) -> Comparison {
    let none = RequestScores::new();
    compare_sides(
        Side::of(baseline, &none),
        Side::of(candidate, &none),
        &CompareOptions::default(),
    )
}

/// One run of a comparison, with what is compared besides its steps.
#[derive(Debug, Clone, Copy)]
pub struct Side<'a> {
    pub frame: &'a Frame,
    /// Its requests' evaluator scores, compared as `score:<evaluator>` when both runs have an
    /// evaluator.
    pub scores: &'a RequestScores,
    /// The prices it is costed with: `cost` (USD per request) is compared when both runs have
    /// prices for every model they called.
    pub prices: Option<&'a PriceTable>,
    /// The eval's dataset item of each request (by request number), which pairs two evals'
    /// requests when both cover the same items.
    pub items: &'a ItemIds,
}

/// The dataset item id of each request, by request number.
pub type ItemIds = HashMap<i64, String>;

/// No items.
static NO_ITEMS: std::sync::LazyLock<ItemIds> = std::sync::LazyLock::new(ItemIds::new);

impl<'a> Side<'a> {
    pub fn of(frame: &'a Frame, scores: &'a RequestScores) -> Side<'a> {
        Side {
            frame,
            scores,
            prices: None,
            items: &NO_ITEMS,
        }
    }

    pub fn with_items(self, items: &'a ItemIds) -> Side<'a> {
        Side { items, ..self }
    }

    /// Its prices, unless it has none or an empty table (a run stored before prices, a server
    /// without them): such a side has no cost to compare rather than a cost of 0 a request.
    fn priced(self) -> Option<&'a PriceTable> {
        self.prices.filter(|p| !p.is_empty())
    }

    pub fn with_prices(self, prices: &'a PriceTable) -> Side<'a> {
        Side {
            prices: Some(prices),
            ..self
        }
    }
}

/// The name and unit of the cost metric.
pub const COST: (&str, &str) = ("cost", "USD per request");

/// Whether some comparison can have a metric of this name: one of [`METRICS`], the cost, or an
/// evaluator's `score:<evaluator>`.
pub fn is_metric_name(name: &str) -> bool {
    METRICS.iter().any(|m| m.0 == name)
        || name == COST.0
        || name.strip_prefix("score:").is_some_and(|e| !e.is_empty())
}

/// The two runs compared metric by metric, at `options`' level, over its metrics.
pub fn compare_sides(base: Side<'_>, cand: Side<'_>, options: &CompareOptions) -> Comparison {
    let (baseline, candidate) = (base.frame, cand.frame);
    let (baseline_scores, candidate_scores) = (base.scores, cand.scores);
    let pairing = pairing(base, cand);
    let key_a = |n: i64, ext: Option<&str>| request_key(pairing, base.items, n, ext);
    let key_b = |n: i64, ext: Option<&str>| request_key(pairing, cand.items, n, ext);
    let mut a = observations(baseline, &key_a);
    let mut b = observations(candidate, &key_b);
    let mut names: Vec<(String, &'static str)> = METRICS
        .iter()
        .map(|(name, paired, unpaired)| {
            let unit = if pairing.is_some() {
                *paired
            } else {
                *unpaired
            };
            ((*name).to_owned(), unit)
        })
        .collect();
    for (evaluator, per_request) in baseline_scores {
        let Some(other) = candidate_scores.get(evaluator) else {
            continue;
        };
        let name = format!("score:{evaluator}");
        a.add_per_request(&name, per_request);
        b.add_per_request(&name, other);
        names.push((name, "evaluator score per request"));
    }
    // Each request's cost, when every call of the side has a price.
    let costs = |side: Side<'_>| -> Option<BTreeMap<i64, f64>> {
        super::cost::per_request(side.frame, side.priced()?)
            .into_iter()
            .map(|(n, cost)| Some((n, cost?)))
            .collect()
    };
    // Only when every call of both runs has a price: a cost that left some calls out would
    // compare what the price table covers, not what the runs cost.
    let mut unpriced_models = Vec::new();
    if let (Some(ca), Some(cb)) = (costs(base), costs(cand)) {
        a.add_per_request(COST.0, &ca);
        b.add_per_request(COST.0, &cb);
        names.push((COST.0.to_owned(), COST.1));
    } else if let (Some(pa), Some(pb)) = (base.priced(), cand.priced()) {
        let unpriced = |frame, prices| super::cost::compute(frame, prices).unpriced_models;
        let mut models: Vec<String> = unpriced(baseline, pa).into_keys().collect();
        models.extend(unpriced(candidate, pb).into_keys());
        models.sort();
        models.dedup();
        unpriced_models = models;
    }
    if let Some(only) = &options.only {
        names.retain(|(name, _)| only.contains(name));
    }
    let mut metrics = BTreeMap::new();
    for (name, unit) in names {
        let m = match pairing {
            Some(_) => {
                let (xa, xb): (Vec<f64>, Vec<f64>) = a.per_request[&name]
                    .iter()
                    .filter_map(|(k, va)| b.per_request[&name].get(k).map(|vb| (*va, *vb)))
                    .unzip();
                paired(unit, &xa, &xb)
            }
            None => welch(unit, &a.per_observation[&name], &b.per_observation[&name]),
        };
        metrics.insert(name, m);
    }
    decide_family(&mut metrics, options.alpha);
    Comparison {
        paired: pairing.is_some(),
        pairing,
        alpha: options.alpha,
        metrics,
        unpriced_models,
    }
}

/// Holm's correction over `metrics` at `alpha`, and each metric's detectable difference.
pub(crate) fn decide_family(metrics: &mut BTreeMap<String, MetricComparison>, alpha: f64) {
    holm(metrics, alpha);
    for m in metrics.values_mut() {
        m.detectable_difference = m.spread.and_then(|s| detectable_difference(s, alpha));
    }
}

/// The true difference a two-sided t-test at `alpha` rejects with probability [`POWER`]: the
/// usual approximation `(t(1 - alpha/2) + t(POWER)) * se`, on the test's own degrees of freedom
/// (checked by simulation in the tests).
fn detectable_difference(s: Spread, alpha: f64) -> Option<f64> {
    let critical = t_quantile(s.df, 1.0 - alpha)?;
    let power = t_quantile(s.df, 2.0 * POWER - 1.0)?;
    Some(((critical + power) * s.se).max(s.floor))
}

/// A two-sample test's difference of means, its 95% interval and its p-value.
pub type TestResult = (Option<f64>, Option<[f64; 2]>, Option<f64>);

/// Welch's t-test on two independent samples: `mean(b) - mean(a)`, its 95% interval, p.
pub fn welch_test(a: &[f64], b: &[f64]) -> TestResult {
    let (diff, ci, p, _) = welch_spread(a, b);
    (diff, ci, p)
}

fn welch_spread(
    a: &[f64],
    b: &[f64],
) -> (Option<f64>, Option<[f64; 2]>, Option<f64>, Option<Spread>) {
    let diff = mean(a).zip(mean(b)).map(|(x, y)| y - x);
    let (mut ci, mut p, mut spread) = (None, None, None);
    if let (Some(d), Some(sa), Some(sb)) = (diff, sample_std(a), sample_std(b)) {
        let (va, vb) = (sa * sa / a.len() as f64, sb * sb / b.len() as f64);
        let se = (va + vb).sqrt();
        if se == 0.0 {
            // Both samples constant: the difference is known exactly.
            p = Some(if d == 0.0 { 1.0 } else { 0.0 });
            ci = Some([d, d]);
        } else {
            let df = (va + vb).powi(2)
                / (va * va / (a.len() - 1) as f64 + vb * vb / (b.len() - 1) as f64);
            p = two_sided_t_p(d / se, df);
            let s = Spread { se, df, floor: 0.0 };
            ci = s.interval(d, 0.95);
            spread = Some(s);
        }
    }
    (diff, ci, p, spread)
}

/// Welch's t-test on two independent samples, with both samples summarised.
pub fn welch(unit: &'static str, a: &[f64], b: &[f64]) -> MetricComparison {
    let (diff, ci, p, spread) = welch_spread(a, b);
    MetricComparison {
        ci_holm: None,
        ci_holm_level: None,
        detectable_difference: None,
        spread,
        unit,
        baseline: Summary::of(a),
        candidate: Summary::of(b),
        difference_of_means: diff,
        ci95: ci,
        p_value: p,
        p_value_holm: None,
        test: TestKind::WelchT,
        paired: false,
        n_pairs: None,
        wilcoxon: None,
        significant: false,
    }
}

/// Paired t-test and Wilcoxon signed-rank test on `b[i] - a[i]`.
pub fn paired(unit: &'static str, a: &[f64], b: &[f64]) -> MetricComparison {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| y - x).collect();
    let n = d.len();
    let dm = mean(&d);
    let (mut ci, mut p, mut spread) = (None, None, None);
    if let (Some(m), Some(s)) = (dm, sample_std(&d)) {
        if s == 0.0 {
            // Every pair differs by the same amount: no sampling uncertainty left.
            p = Some(if m == 0.0 { 1.0 } else { 0.0 });
            ci = Some([m, m]);
        } else {
            let se = s / (n as f64).sqrt();
            p = two_sided_t_p(m / se, (n - 1) as f64);
            // Never narrower than the floating-point resolution of the differences: when every
            // pair moved by the same amount up to rounding, the interval is that amount ± a few
            // ulps, not a width of rounding noise that may miss it.
            let resolution = 8.0 * f64::EPSILON * d.iter().fold(m.abs(), |acc, x| acc.max(x.abs()));
            let s = Spread {
                se,
                df: (n - 1) as f64,
                floor: resolution,
            };
            ci = s.interval(m, 0.95);
            spread = Some(s);
        }
    }
    MetricComparison {
        ci_holm: None,
        ci_holm_level: None,
        detectable_difference: None,
        spread,
        unit,
        baseline: Summary::of(a),
        candidate: Summary::of(b),
        difference_of_means: dm,
        ci95: ci,
        p_value: p,
        p_value_holm: None,
        test: TestKind::PairedT,
        paired: true,
        n_pairs: Some(n),
        wilcoxon: (n > 0).then(|| wilcoxon_signed_rank(&d)),
        significant: false,
    }
}

/// Two-sided Wilcoxon signed-rank test of differences `d` (zeros dropped, tied ranks averaged).
pub fn wilcoxon_signed_rank(d: &[f64]) -> Wilcoxon {
    let mut nz: Vec<f64> = d.iter().copied().filter(|x| *x != 0.0).collect();
    let n = nz.len();
    if n == 0 {
        return Wilcoxon {
            statistic: 0.0,
            p_value: 1.0,
            method: WilcoxonMethod::Exact,
        };
    }
    nz.sort_by(|x, y| x.abs().total_cmp(&y.abs()));
    let mut ranks = vec![0.0; n];
    let mut tie_term = 0.0;
    let mut ties = false;
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && nz[j].abs() == nz[i].abs() {
            j += 1;
        }
        let avg = (i + 1 + j) as f64 / 2.0;
        ranks[i..j].iter_mut().for_each(|r| *r = avg);
        let t = (j - i) as f64;
        if j - i > 1 {
            ties = true;
            tie_term += t * t * t - t;
        }
        i = j;
    }
    let w_plus: f64 = nz
        .iter()
        .zip(&ranks)
        .filter(|(x, _)| **x > 0.0)
        .map(|(_, r)| r)
        .sum();
    if !ties && n <= 25 {
        // Exact: the number of subsets of {1..n} with each rank sum.
        let max = n * (n + 1) / 2;
        let mut counts = vec![0f64; max + 1];
        counts[0] = 1.0;
        for k in 1..=n {
            for s in (k..=max).rev() {
                counts[s] += counts[s - k];
            }
        }
        let total: f64 = counts.iter().sum();
        let w = w_plus.round() as usize;
        let below: f64 = counts[..=w].iter().sum::<f64>() / total;
        let above: f64 = counts[w..].iter().sum::<f64>() / total;
        return Wilcoxon {
            statistic: w_plus,
            p_value: (2.0 * below.min(above)).min(1.0),
            method: WilcoxonMethod::Exact,
        };
    }
    let nf = n as f64;
    let mu = nf * (nf + 1.0) / 4.0;
    let var = nf * (nf + 1.0) * (2.0 * nf + 1.0) / 24.0 - tie_term / 48.0;
    let p = if var <= 0.0 {
        1.0
    } else {
        let z = ((w_plus - mu).abs() - 0.5).max(0.0) / var.sqrt();
        let normal = Normal::new(0.0, 1.0).map(|n| n.cdf(z)).unwrap_or(1.0);
        (2.0 * (1.0 - normal)).clamp(0.0, 1.0)
    };
    Wilcoxon {
        statistic: w_plus,
        p_value: p,
        method: WilcoxonMethod::Normal,
    }
}

/// Holm's step-down adjustment over the metrics that have a p-value.
fn holm(metrics: &mut BTreeMap<String, MetricComparison>, alpha: f64) {
    let mut ps: Vec<(String, f64)> = metrics
        .iter()
        .filter_map(|(k, m)| m.p_value.map(|p| (k.clone(), p)))
        .collect();
    ps.sort_by(|a, b| a.1.total_cmp(&b.1));
    let m = ps.len();
    let mut running: f64 = 0.0;
    for (i, (name, p)) in ps.into_iter().enumerate() {
        running = running.max(((m - i) as f64 * p).min(1.0));
        if let Some(c) = metrics.get_mut(&name) {
            c.p_value_holm = Some(running);
            c.significant = running < alpha;
            let level = 1.0 - alpha / (m - i) as f64;
            c.ci_holm_level = Some(level);
            c.ci_holm = match (c.spread, c.difference_of_means) {
                (Some(s), Some(d)) => s.interval(d, level),
                // A known difference (no spread): the same at every level.
                _ => c.ci95,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn lognormal(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
        let normal = Normal::new(0.0, 0.5).unwrap();
        (0..n)
            .map(|_| {
                normal
                    .inverse_cdf(rng.random_range(1e-12..1.0 - 1e-12))
                    .exp()
            })
            .collect()
    }

    #[test]
    fn holm_intervals_agree_with_holm_decisions() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let base = lognormal(&mut rng, 40);
        let mut metrics = BTreeMap::new();
        // Shifts from none to clear: some metrics significant on their own but not after Holm.
        for (i, shift) in [0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.6].iter().enumerate() {
            let cand: Vec<f64> = base
                .iter()
                .map(|x| x + shift + 0.05 * (x - 1.0) * (i as f64))
                .collect();
            metrics.insert(format!("m{i}"), paired("s", &base, &cand));
        }
        holm(&mut metrics, ALPHA);
        let mut in_holm_order: Vec<&MetricComparison> = metrics.values().collect();
        in_holm_order.sort_by(|a, b| a.p_value.unwrap().total_cmp(&b.p_value.unwrap()));
        let mut still_rejecting = true;
        for m in in_holm_order {
            let [lo, hi] = m.ci_holm.unwrap();
            let excludes_zero = lo > 0.0 || hi < 0.0;
            still_rejecting &= excludes_zero;
            assert_eq!(m.significant, still_rejecting, "{m:?}");
            let [lo95, hi95] = m.ci95.unwrap();
            assert!(
                lo <= lo95 && hi95 <= hi,
                "the Holm interval is never narrower"
            );
        }
    }

    #[test]
    fn welch_matches_known_values() {
        // scipy 1.x: ttest_ind([1,2,3,4,5], [2,4,6,8,10], equal_var=False) gives
        // t = -1.8973665961, df = 5.882352941, p = 0.10753119493062728.
        let c = welch("x", &[1.0, 2.0, 3.0, 4.0, 5.0], &[2.0, 4.0, 6.0, 8.0, 10.0]);
        assert!(
            (c.p_value.unwrap() - 0.107_531_194_930_627_28).abs() < 1e-9,
            "{:?}",
            c.p_value
        );
        assert_eq!(c.difference_of_means, Some(3.0));
    }

    #[test]
    fn paired_and_wilcoxon_known_values() {
        // scipy: ttest_rel([1,2,3,4,5,6], [1.5,2.1,3.9,4.2,5.8,6.3]) gives t = -3.5, p = 0.01728443178529335.
        let c = paired(
            "x",
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            &[1.5, 2.1, 3.9, 4.2, 5.8, 6.3],
        );
        assert!(
            (c.p_value.unwrap() - 0.017_284_431_785_293_35).abs() < 1e-9,
            "{:?}",
            c.p_value
        );
        // scipy: wilcoxon(d) for d = [.5,.1,.9,.2,.8,.3] gives min(W+, W-) = 0 and exact p = 0.03125;
        // we report W+ = 21.
        let w = c.wilcoxon.unwrap();
        assert_eq!((w.statistic, w.method), (21.0, WilcoxonMethod::Exact));
        assert!((w.p_value - 0.031_25).abs() < 1e-12);
    }

    #[test]
    fn identical_samples_give_p_one() {
        let v = [0.3, 0.7, 1.2, 0.9];
        let c = paired("x", &v, &v);
        assert_eq!(
            (c.p_value, c.difference_of_means, c.ci95),
            (Some(1.0), Some(0.0), Some([0.0, 0.0]))
        );
        assert_eq!(c.wilcoxon.unwrap().p_value, 1.0);
        assert_eq!(welch("x", &v, &v).p_value, Some(1.0));
    }

    #[test]
    fn holm_adjusts_in_order() {
        let mut m = BTreeMap::new();
        for (k, p) in [("a", 0.01), ("b", 0.04), ("c", 0.03)] {
            let mut c = welch("x", &[1.0, 2.0], &[1.0, 2.0]);
            c.p_value = Some(p);
            m.insert(k.to_owned(), c);
        }
        holm(&mut m, ALPHA);
        // sorted 0.01, 0.03, 0.04 -> 0.03, 0.06, max(0.06, 0.04) = 0.06
        assert_eq!(m["a"].p_value_holm, Some(0.03));
        assert!((m["c"].p_value_holm.unwrap() - 0.06).abs() < 1e-12);
        assert!((m["b"].p_value_holm.unwrap() - 0.06).abs() < 1e-12);
        assert!(m["a"].significant && !m["b"].significant);
    }

    /// A/A calibration: 1,000 Welch tests of two samples from one skewed distribution reject at
    /// alpha 0.05 between 3% and 7% of the time.
    #[test]
    fn welch_is_calibrated_on_skewed_data() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let rejections = (0..1000)
            .filter(|_| {
                let (a, b) = (lognormal(&mut rng, 50), lognormal(&mut rng, 50));
                welch_test(&a, &b).2.unwrap() < ALPHA
            })
            .count();
        eprintln!("A/A: rejected {rejections} of 1000 at alpha {ALPHA}");
        assert!(
            (30..=70).contains(&rejections),
            "rejected {rejections} of 1000"
        );
    }

    fn normal(rng: &mut ChaCha8Rng, n: usize, mean: f64, sd: f64) -> Vec<f64> {
        let z = Normal::new(mean, sd).unwrap();
        (0..n)
            .map(|_| z.inverse_cdf(rng.random_range(1e-12..1.0 - 1e-12)))
            .collect()
    }

    /// The detectable difference is what it says: for 12 paired requests and for two unpaired
    /// samples of 30, a true difference equal to it (from the known spread) is found 80% of
    /// the time at alpha 0.05 (2,000 simulated comparisons each, within 3.5 points), and the
    /// figure reported from each sample's own spread is that difference on average (within
    /// 5%: a sample's standard deviation runs slightly low).
    #[test]
    fn detectable_differences_are_detected_with_their_power() {
        let mut rng = ChaCha8Rng::seed_from_u64(13);
        let sd = 0.4;
        for (paired_runs, n) in [(true, 12usize), (false, 30)] {
            let (se, df) = if paired_runs {
                (sd / (n as f64).sqrt(), (n - 1) as f64)
            } else {
                (sd * (2.0 / n as f64).sqrt(), (2 * n - 2) as f64)
            };
            let truth = detectable_difference(Spread { se, df, floor: 0.0 }, ALPHA).unwrap();
            let (mut found, mut reported) = (0usize, 0.0);
            let runs = 2000;
            for _ in 0..runs {
                // The tests themselves, without the summaries (their bootstraps would take
                // minutes here).
                let a = normal(&mut rng, n, 1.0, sd);
                let (p, spread) = if paired_runs {
                    let d = normal(&mut rng, n, truth, sd);
                    let se = sample_std(&d).unwrap() / (n as f64).sqrt();
                    let spread = Spread {
                        se,
                        df: (n - 1) as f64,
                        floor: 0.0,
                    };
                    (two_sided_t_p(mean(&d).unwrap() / se, spread.df), spread)
                } else {
                    let b = normal(&mut rng, n, 1.0 + truth, sd);
                    let (_, _, p, spread) = welch_spread(&a, &b);
                    (p, spread.unwrap())
                };
                found += usize::from(p.unwrap() < ALPHA);
                reported += detectable_difference(spread, ALPHA).unwrap();
            }
            let power = found as f64 / runs as f64;
            let mean_reported = reported / runs as f64;
            eprintln!(
                "paired {paired_runs}, n {n}: true difference {truth:.4} found {power:.3} of the \
                 time; reported on average {mean_reported:.4}"
            );
            assert!((power - POWER).abs() < 0.035, "power {power}");
            assert!(
                (mean_reported / truth - 1.0).abs() < 0.05,
                "{mean_reported} against {truth}"
            );
        }
    }

    #[test]
    fn options_set_the_level_and_the_family() {
        let frame = |seed| {
            let doc = crate::synth::profiler_document_with(0, 20, seed, 4);
            let bytes = serde_json::to_vec(&doc).unwrap();
            let numbered = crate::trace::parse(&bytes, &Default::default())
                .unwrap()
                .into_numbered();
            Frame::from_numbered(&numbered)
        };
        let (a, b) = (frame(1), frame(2));
        let none = RequestScores::new();
        let all = compare(&a, &b);
        assert_eq!(all.metrics.len(), METRICS.len());
        let options = CompareOptions {
            alpha: 0.2,
            only: Some(vec!["llm_latency".to_owned()]),
        };
        let one = compare_sides(Side::of(&a, &none), Side::of(&b, &none), &options);
        assert_eq!(one.alpha, 0.2);
        assert_eq!(one.metrics.keys().collect::<Vec<_>>(), ["llm_latency"]);
        let m = &one.metrics["llm_latency"];
        // Alone in its family, its Holm p-value is its own p-value.
        assert_eq!(m.p_value_holm, m.p_value);
        assert!(m.detectable_difference.unwrap() > 0.0);
        // A looser level detects smaller differences.
        assert!(
            m.detectable_difference.unwrap()
                < all.metrics["llm_latency"].detectable_difference.unwrap()
        );
    }

    /// The t interval covers the true mean 95% ± 2% of the time.
    #[test]
    fn t_interval_coverage() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let true_mean = (0.5f64 * 0.5 / 2.0).exp(); // E[lognormal(0, 0.5)]
        let covered = (0..1000)
            .filter(|_| {
                let [lo, hi] =
                    crate::profiler::statistics::stats::t_interval(&lognormal(&mut rng, 50), 0.95)
                        .unwrap();
                lo <= true_mean && true_mean <= hi
            })
            .count();
        eprintln!("t interval: covered the true mean {covered} of 1000 times");
        assert!((930..=970).contains(&covered), "covered {covered} of 1000");
    }
}
