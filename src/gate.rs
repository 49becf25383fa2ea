//! The regression gate behind `agentprof compare`: which metrics a candidate run made worse than
//! its baseline, and the report a CI job prints and exits by.
//!
//! The statistics are the service's own (`/v1/compare`: paired or Welch t-tests, Holm's
//! correction); this module only decides. A metric is worse when its Holm-adjusted p-value is
//! below alpha *and* it moved in the worse direction *and*, when a practical threshold is set
//! for it, it moved by more than that share of the baseline's mean. Latency, tokens and cost are
//! worse higher; evaluator scores are worse lower unless declared otherwise. Beside each
//! verdict stands the difference the samples could have detected, so that "no significant
//! difference" on a dozen requests is not read as "no difference".

use crate::profiler::statistics::compare::{Comparison, Pairing};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;

/// What the gate reads of a comparison: the fields of its JSON, so that a comparison made here
/// and one a server answered (`POST /v1/compare`) are decided by the same code.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ComparedRuns {
    pub alpha: f64,
    pub paired: bool,
    pub pairing: Option<Pairing>,
    pub metrics: BTreeMap<String, ComparedMetric>,
    /// Why `cost` is missing, when it is (absent from servers older than this field).
    #[serde(default)]
    pub unpriced_models: Vec<String>,
}

/// A metric asked for by name that a comparison does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub metric: String,
    /// Where it was asked for: its index in the list of metrics to compare, or `None` for a
    /// threshold (`max_regression`).
    pub listed_at: Option<usize>,
    pub why: String,
}

/// One metric of [`ComparedRuns`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ComparedMetric {
    pub unit: String,
    pub baseline: Mean,
    pub candidate: Mean,
    pub difference_of_means: Option<f64>,
    pub ci_holm: Option<[f64; 2]>,
    pub ci_holm_level: Option<f64>,
    pub p_value_holm: Option<f64>,
    /// Absent from servers older than this field.
    #[serde(default)]
    pub detectable_difference: Option<f64>,
    pub significant: bool,
}

/// The part of a sample's summary the gate shows.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Mean {
    pub mean: Option<f64>,
}

impl ComparedRuns {
    /// A comparison made here, read through its JSON as a server's answer is.
    pub fn of(comparison: &Comparison) -> Result<ComparedRuns, serde_json::Error> {
        serde_json::to_value(comparison).and_then(serde_json::from_value)
    }

    /// The first metric `only` lists or `gate` sets a threshold for that the comparison lacks:
    /// a gate on a metric that could not be compared (the cost of a model without a price, the
    /// scores of an evaluator one run lacks) is an error, never a pass.
    pub fn missing(&self, only: Option<&[String]>, gate: &GateOptions) -> Option<Missing> {
        let listed = only
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, m)| (m, Some(i)));
        let thresholds = gate.max_regression.keys().map(|m| (m, None));
        let (metric, listed_at) = listed
            .chain(thresholds)
            .find(|(m, _)| !self.metrics.contains_key(*m))?;
        let why = if metric == crate::profiler::statistics::compare::COST.0
            && !self.unpriced_models.is_empty()
        {
            format!(
                "cost cannot be compared: no price for {}",
                self.unpriced_models.join(", ")
            )
        } else {
            format!("{metric} is not a metric of this comparison")
        };
        Some(Missing {
            metric: metric.clone(),
            listed_at,
            why,
        })
    }
}

/// What the gate is told besides the comparison.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GateOptions {
    /// Percent of the baseline's mean a significant worsening must exceed to count, by metric.
    pub max_regression: BTreeMap<String, f64>,
    /// Evaluators whose scores are better lower (an error rate, say).
    pub lower_is_better: Vec<String>,
}

/// Which way a metric improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Lower,
    Higher,
}

/// What the gate concluded about one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Significantly worse, and past its threshold if it has one: fails the gate.
    Worse,
    /// Significantly worse, but by no more than its threshold.
    WithinThreshold,
    /// Significantly better.
    Better,
    /// No significant difference at this alpha.
    NoSignificantDifference,
    /// Not enough observations for a test (fewer than two on a side, or no pairs).
    NotTested,
}

/// One metric as the gate saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Finding {
    pub metric: String,
    pub unit: String,
    pub better: Better,
    pub baseline_mean: Option<f64>,
    pub candidate_mean: Option<f64>,
    /// Candidate minus baseline.
    pub difference: Option<f64>,
    /// The difference as a percentage of the baseline's mean.
    pub change_percent: Option<f64>,
    /// The interval at the level Holm's procedure tested this metric at (`interval_level`).
    pub interval: Option<[f64; 2]>,
    pub interval_level: Option<f64>,
    pub p_value_holm: Option<f64>,
    /// The smallest difference the samples could have detected (80% power, at alpha).
    pub detectable_difference: Option<f64>,
    pub max_regression_percent: Option<f64>,
    pub verdict: Verdict,
}

/// The gate's whole answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Report {
    pub alpha: f64,
    pub paired: bool,
    pub pairing: Option<Pairing>,
    /// The metrics that fail the gate, by name.
    pub worse: Vec<String>,
    pub findings: Vec<Finding>,
}

/// Which way `metric` improves.
pub fn better(metric: &str, options: &GateOptions) -> Better {
    match metric.strip_prefix("score:") {
        Some(evaluator) if !options.lower_is_better.iter().any(|e| e == evaluator) => {
            Better::Higher
        }
        _ => Better::Lower,
    }
}

/// Decides every metric of `comparison`.
pub fn decide(comparison: &ComparedRuns, options: &GateOptions) -> Report {
    let findings: Vec<Finding> = comparison
        .metrics
        .iter()
        .map(|(name, m)| {
            let better = better(name, options);
            let (base, cand) = (m.baseline.mean, m.candidate.mean);
            let change_percent = match (m.difference_of_means, base) {
                (Some(d), Some(b)) if b != 0.0 => Some(100.0 * d / b.abs()),
                _ => None,
            };
            let threshold = options.max_regression.get(name).copied();
            let worse_way = |d: f64| match better {
                Better::Lower => d > 0.0,
                Better::Higher => d < 0.0,
            };
            let verdict = match (m.p_value_holm, m.difference_of_means) {
                (Some(_), Some(d)) if m.significant && worse_way(d) => {
                    match (threshold, change_percent) {
                        (Some(t), Some(c)) if c.abs() <= t => Verdict::WithinThreshold,
                        _ => Verdict::Worse,
                    }
                }
                (Some(_), Some(d)) if m.significant && d != 0.0 => Verdict::Better,
                (Some(_), Some(_)) => Verdict::NoSignificantDifference,
                _ => Verdict::NotTested,
            };
            Finding {
                metric: name.clone(),
                unit: m.unit.clone(),
                better,
                baseline_mean: base,
                candidate_mean: cand,
                difference: m.difference_of_means,
                change_percent,
                interval: m.ci_holm,
                interval_level: m.ci_holm_level,
                p_value_holm: m.p_value_holm,
                detectable_difference: m.detectable_difference,
                max_regression_percent: threshold,
                verdict,
            }
        })
        .collect();
    Report {
        alpha: comparison.alpha,
        paired: comparison.paired,
        pairing: comparison.pairing,
        worse: findings
            .iter()
            .filter(|f| f.verdict == Verdict::Worse)
            .map(|f| f.metric.clone())
            .collect(),
        findings,
    }
}

/// A number as reports show it: four significant figures, no exponent for everyday sizes.
fn num(x: Option<f64>) -> String {
    match x {
        None => "-".to_owned(),
        Some(0.0) => "0".to_owned(),
        Some(x) if x.abs() >= 1e6 || x.abs() < 1e-4 => format!("{x:.3e}"),
        Some(x) => {
            let decimals = (3 - x.abs().log10().floor() as i32).max(0) as usize;
            format!("{x:.decimals$}")
        }
    }
}

fn signed(x: Option<f64>) -> String {
    match x {
        Some(x) if x > 0.0 => format!("+{}", num(Some(x))),
        other => num(other),
    }
}

fn percent(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_owned(), |p| format!("{p:+.1}%"))
}

fn interval(f: &Finding) -> String {
    match (f.interval, f.interval_level) {
        (Some([lo, hi]), Some(level)) => format!(
            "[{}, {}] at {:.1}%",
            num(Some(lo)),
            num(Some(hi)),
            100.0 * level
        ),
        _ => "-".to_owned(),
    }
}

fn p(x: Option<f64>) -> String {
    match x {
        None => "-".to_owned(),
        Some(p) if p < 1e-4 => format!("{p:.1e}"),
        Some(p) => format!("{p:.4}"),
    }
}

impl Finding {
    /// The figures both reports show, in their order: the two means, the difference, the
    /// change, the interval, the adjusted p-value and the detectable difference.
    fn figures(&self) -> [String; 7] {
        [
            num(self.baseline_mean),
            num(self.candidate_mean),
            signed(self.difference),
            percent(self.change_percent),
            interval(self),
            p(self.p_value_holm),
            num(self.detectable_difference),
        ]
    }
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Worse => "worse",
            Verdict::WithinThreshold => "worse, within threshold",
            Verdict::Better => "better",
            Verdict::NoSignificantDifference => "no significant difference",
            Verdict::NotTested => "not tested",
        }
    }
}

impl Report {
    /// 1 when a metric fails the gate, else 0 (errors, which never reach a report, are 2).
    pub fn exit_code(&self) -> u8 {
        u8::from(!self.worse.is_empty())
    }

    fn headline(&self) -> String {
        let how = match self.pairing {
            Some(Pairing::DatasetItem) => "paired by dataset item",
            Some(Pairing::ExternalId) => "paired by eval id",
            Some(Pairing::RequestNumber) => "paired by request number",
            None => "unpaired (Welch)",
        };
        let what = match self.worse.len() {
            0 => "no metric is worse".to_owned(),
            1 => format!("1 metric is worse: {}", self.worse[0]),
            n => format!("{n} metrics are worse: {}", self.worse.join(", ")),
        };
        format!(
            "{what} (alpha {}, {how}, Holm-corrected over {} metrics)",
            self.alpha,
            self.findings.len()
        )
    }

    /// Plain text for a terminal or a CI log: the verdict, then one line per metric.
    pub fn text(&self) -> String {
        let mut out = format!("agentprof compare: {}\n", self.headline());
        for f in &self.findings {
            // Writing to a String cannot fail.
            let [base, cand, diff, change, interval, p, detectable] = f.figures();
            let _ = writeln!(
                out,
                "{:<26} {}: {base} -> {cand} ({diff}, {change}), interval {interval}, \
                 p (Holm) {p}, detectable {detectable}{}",
                f.metric,
                f.verdict.label().to_uppercase(),
                f.max_regression_percent
                    .map_or(String::new(), |t| format!(", threshold {}%", num(Some(t)))),
            );
        }
        out
    }

    /// A GitHub-flavoured Markdown table, fit for a pull-request comment or
    /// `$GITHUB_STEP_SUMMARY`.
    pub fn markdown(&self) -> String {
        let mark = if self.worse.is_empty() { "✅" } else { "❌" };
        let mut out = format!("### {mark} agentprof compare: {}\n\n", self.headline());
        out.push_str(
            "| metric | baseline mean | candidate mean | difference | change | interval (Holm) \
             | p (Holm) | detectable | verdict |\n|---|---:|---:|---:|---:|---|---:|---:|---|\n",
        );
        for f in &self.findings {
            let verdict = match f.verdict {
                Verdict::Worse => format!("**{}**", f.verdict.label()),
                _ => f.verdict.label().to_owned(),
            };
            let _ = writeln!(
                out,
                "| `{}` | {} | {verdict} |",
                f.metric.replace('|', "\\|"),
                f.figures().join(" | "),
            );
        }
        out.push_str(
            "\n*detectable*: the smallest difference these samples detect with 80% power at this \
             alpha; a smaller one may be there unseen.\n",
        );
        out
    }
}

/// Reads `METRIC=PERCENT` (`llm_latency=10`): the practical threshold of `--max-regression`.
pub fn parse_threshold(s: &str) -> Result<(String, f64), String> {
    let (metric, percent) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: give METRIC=PERCENT, e.g. llm_latency=10"))?;
    let percent: f64 = percent
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{s:?}: {percent:?} is not a number of percent"))?;
    if !(percent.is_finite() && percent >= 0.0) {
        return Err(format!("{s:?}: the percent must be 0 or more"));
    }
    Ok((metric.trim().to_owned(), percent))
}

/// Reads `--alpha`: a level strictly between 0 and 1.
pub fn parse_alpha(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(a) if a > 0.0 && a < 1.0 => Ok(a),
        _ => Err(format!(
            "{s:?}: alpha is a number between 0 and 1, e.g. 0.05"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiler::statistics::compare::{paired, welch};

    fn comparison(
        metrics: Vec<(&str, crate::profiler::statistics::compare::MetricComparison)>,
    ) -> ComparedRuns {
        let mut c = Comparison {
            paired: true,
            pairing: Some(Pairing::RequestNumber),
            alpha: 0.05,
            metrics: metrics
                .into_iter()
                .map(|(k, m)| (k.to_owned(), m))
                .collect(),
            unpriced_models: Vec::new(),
        };
        crate::profiler::statistics::compare::decide_family(&mut c.metrics, c.alpha);
        ComparedRuns::of(&c).unwrap()
    }

    const BASE: [f64; 8] = [1.0, 1.2, 0.9, 1.1, 1.3, 0.8, 1.0, 1.15];

    #[test]
    fn slower_is_worse_and_higher_scores_are_better() {
        let slower: Vec<f64> = BASE
            .iter()
            .enumerate()
            .map(|(i, x)| x + 0.5 + 0.01 * i as f64)
            .collect();
        let c = comparison(vec![
            ("llm_latency", paired("s", &BASE, &slower)),
            ("score:accuracy", paired("score", &BASE, &slower)),
            ("score:error_rate", paired("score", &BASE, &slower)),
            ("total_tokens", paired("t", &BASE, &BASE)),
        ]);
        let options = GateOptions {
            lower_is_better: vec!["error_rate".to_owned()],
            ..GateOptions::default()
        };
        let r = decide(&c, &options);
        let verdict = |m: &str| r.findings.iter().find(|f| f.metric == m).unwrap().verdict;
        assert_eq!(verdict("llm_latency"), Verdict::Worse);
        assert_eq!(verdict("score:accuracy"), Verdict::Better);
        assert_eq!(verdict("score:error_rate"), Verdict::Worse);
        assert_eq!(verdict("total_tokens"), Verdict::NoSignificantDifference);
        assert_eq!(r.worse, ["llm_latency", "score:error_rate"]);
        assert_eq!(r.exit_code(), 1);
        let md = r.markdown();
        assert!(
            md.contains("| `llm_latency` |") && md.contains("**worse**"),
            "{md}"
        );
        assert!(
            r.text()
                .contains("2 metrics are worse: llm_latency, score:error_rate")
        );
    }

    #[test]
    fn a_threshold_forgives_small_significant_changes() {
        // 5% slower, consistently: significant, but within a 10% threshold.
        let slower: Vec<f64> = BASE.iter().map(|x| x * 1.05).collect();
        let c = comparison(vec![("llm_latency", paired("s", &BASE, &slower))]);
        let mut options = GateOptions::default();
        assert_eq!(decide(&c, &options).exit_code(), 1);
        options
            .max_regression
            .insert("llm_latency".to_owned(), 10.0);
        let r = decide(&c, &options);
        assert_eq!(r.findings[0].verdict, Verdict::WithinThreshold);
        assert_eq!(r.exit_code(), 0);
        options.max_regression.insert("llm_latency".to_owned(), 4.0);
        assert_eq!(decide(&c, &options).exit_code(), 1);
    }

    #[test]
    fn too_few_observations_are_not_tested() {
        let c = comparison(vec![("tool_latency", welch("s", &[1.0], &[2.0]))]);
        let r = decide(&c, &GateOptions::default());
        assert_eq!(r.findings[0].verdict, Verdict::NotTested);
        assert_eq!(r.exit_code(), 0);
    }

    #[test]
    fn thresholds_and_alphas_are_read_or_refused() {
        assert_eq!(
            parse_threshold("llm_latency=10"),
            Ok(("llm_latency".into(), 10.0))
        );
        assert_eq!(parse_threshold("cost=2.5%"), Ok(("cost".into(), 2.5)));
        for bad in ["llm_latency", "x=abc", "x=-1", "x=inf"] {
            assert!(parse_threshold(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_alpha("0.01"), Ok(0.01));
        for bad in ["0", "1", "-0.1", "x", "NaN"] {
            assert!(parse_alpha(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(num(Some(0.50123)), "0.5012");
        assert_eq!(num(Some(1234.5)), "1234");
        assert_eq!(num(Some(12.345)), "12.35");
        assert_eq!(signed(Some(0.5)), "+0.5000");
        assert_eq!(num(None), "-");
    }
}
