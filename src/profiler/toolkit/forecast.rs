//! Token-usage forecasting (docs/toolkit-semantics.md#token-usage-forecast, served as docs/deviations.md#d3 says): the reference's training windows, fitted with a
//! small, seeded random forest of the same shape as its `RandomForestRegressor(n_estimators=3,
//! max_depth=2)`.
//!
//! Each request contributes one row per LLM_END: `[seconds_between_calls of its LLM_START,
//! prompt_tokens, completion_tokens]`. For every row, X is the last `matrix_length` rows up to it
//! (zero-padded, its completion tokens hidden) and Y the next `matrix_length` rows (zero-padded).
//! The forest is ours (CART on squared error over all outputs, bootstrap samples from a seeded
//! ChaCha stream), so results are reproducible; the reference's are not (it has no random_state).
//! Where the reference's fit raises, or the training set exceeds [`MAX_FIT_WORK`], we report
//! `skipped` with the reason.

use crate::profiler::core::frame::Frame;
use crate::trace::EventType;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::HashMap;

pub const N_ESTIMATORS: usize = 3;
pub const MAX_DEPTH: usize = 2;
pub const SEED: u64 = 0;

/// Largest training set we fit, in samples × features × outputs (≈ the additions per tree
/// level). Each feature and output is `3 · matrix_length`, the mean LLM calls per request, so
/// a single request of 10,000 calls would ask for gigabytes and hours; realistic evals (tens of
/// calls per request) stay far below.
pub const MAX_FIT_WORK: u64 = 2_000_000_000;

/// The fitted model, or why the toolkit's fit would fail on this run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Forecast {
    Fitted(FittedForecast),
    Skipped { reason: String },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelDescription {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub n_estimators: usize,
    pub max_depth: usize,
    pub criterion: &'static str,
    pub bootstrap: bool,
    pub seed: u64,
    pub columns: [&'static str; 3],
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RequestPrediction {
    pub request_number: i64,
    /// The next `matrix_length` calls after the request's last one, each
    /// `[seconds_between_calls, prompt_tokens, completion_tokens]`.
    pub next_calls: Vec<[f64; 3]>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FittedForecast {
    pub model: ModelDescription,
    pub matrix_length: usize,
    pub training_samples: usize,
    pub features: usize,
    pub outputs: usize,
    /// Mean absolute error of the model on its own training set, over every output value.
    pub in_sample_mae: f64,
    pub predictions: Vec<RequestPrediction>,
}

/// One LLM call as the forecast sees it: `[seconds_between_calls, prompt_tokens, completion_tokens]`.
pub type Call = [f64; 3];

/// The training matrices, exactly as the reference builds them.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingSet {
    pub matrix_length: usize,
    pub x: Vec<Vec<f64>>,
    pub y: Vec<Vec<f64>>,
    /// Per request (in order): its number and its `[sec, prompt, completion]` rows.
    pub runs: Vec<(i64, Vec<Call>)>,
}

/// Builds the reference's windows, or the reason its fit would fail (or, beyond
/// [`MAX_FIT_WORK`], why agentprof does not fit it).
pub fn training_set(frame: &Frame) -> Result<TrainingSet, String> {
    let runs = training_runs(frame)?;
    let total: usize = runs.iter().map(|(_, r)| r.len()).sum();
    let matrix_length = total.div_ceil(runs.len());
    let width = 3 * matrix_length as u64;
    let work = (total as u64).saturating_mul(width).saturating_mul(width);
    if work > MAX_FIT_WORK {
        return Err(format!(
            "{total} training samples of {width} features and {width} outputs (the mean request \
             makes {matrix_length} LLM calls) exceed agentprof's fitting budget of \
             {MAX_FIT_WORK} samples x features x outputs"
        ));
    }
    let mut x = Vec::with_capacity(total);
    let mut y = Vec::with_capacity(total);
    for (_, run) in &runs {
        for i in 0..run.len() {
            x.push(window_before(run, i, matrix_length));
            let mut out = Vec::with_capacity(matrix_length * 3);
            for j in 1..=matrix_length {
                out.extend(run.get(i + j).copied().unwrap_or([0.0; 3]));
            }
            y.push(out);
        }
    }
    Ok(TrainingSet {
        matrix_length,
        x,
        y,
        runs,
    })
}

/// Whether the toolkit's own fit raises on this run (nat 1.9's runner then returns its empty
/// `ProfilerResults`).
pub fn toolkit_fit_fails(frame: &Frame) -> bool {
    training_runs(frame).is_err()
}

/// Per request, its LLM calls as `[seconds_between_calls, prompt, completion]`, or why the
/// reference raises: no requests, an LLM_END without its LLM_START, a request without LLM_END.
fn training_runs(frame: &Frame) -> Result<Vec<(i64, Vec<Call>)>, String> {
    if frame.requests.is_empty() {
        return Err("no requests: the reference divides by the request count".to_owned());
    }
    let mut seconds_by_uuid: HashMap<&str, i64> = HashMap::new();
    let mut runs: Vec<(i64, Vec<Call>)> = Vec::with_capacity(frame.requests.len());
    for (req, rows) in frame.iter_requests() {
        let mut run = Vec::new();
        for r in rows.iter() {
            match r.event_type() {
                EventType::LlmStart => {
                    seconds_by_uuid.insert(r.uuid(), r.seconds_between_calls());
                }
                EventType::LlmEnd => {
                    let Some(sec) = seconds_by_uuid.get(r.uuid()) else {
                        return Err(format!(
                            "request {}: LLM_END {} has no earlier LLM_START with the same UUID \
                             (the reference raises KeyError)",
                            req.number,
                            r.uuid()
                        ));
                    };
                    run.push([
                        *sec as f64,
                        r.prompt_tokens() as f64,
                        r.completion_tokens() as f64,
                    ]);
                }
                _ => {}
            }
        }
        runs.push((req.number, run));
    }
    if let Some((n, _)) = runs.iter().find(|(_, run)| run.is_empty()) {
        return Err(format!(
            "request {n} has no LLM_END step (the reference raises IndexError)"
        ));
    }
    Ok(runs)
}

/// The last `n` rows up to and including row `i`, zero-padded at the top, with row `i`'s
/// completion tokens hidden, flattened row by row.
fn window_before(run: &[[f64; 3]], i: usize, n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n * 3);
    let first = (i + 1).saturating_sub(n);
    for _ in 0..(n - (i + 1 - first)) {
        out.extend([0.0; 3]);
    }
    for row in &run[first..=i] {
        out.extend(row);
    }
    let len = out.len();
    out[len - 1] = 0.0;
    out
}

pub fn fit(frame: &Frame) -> Forecast {
    let set = match training_set(frame) {
        Ok(s) => s,
        Err(reason) => return Forecast::Skipped { reason },
    };
    let forest = Forest::fit(&set.x, &set.y, N_ESTIMATORS, MAX_DEPTH, SEED);
    let mut abs_err = 0.0;
    let mut count = 0usize;
    for (x, y) in set.x.iter().zip(&set.y) {
        let p = forest.predict(x);
        for (a, b) in p.iter().zip(y) {
            abs_err += (a - b).abs();
            count += 1;
        }
    }
    let n = set.matrix_length;
    let predictions = set
        .runs
        .iter()
        .map(|(number, run)| {
            let p = forest.predict(&window_before(run, run.len() - 1, n));
            RequestPrediction {
                request_number: *number,
                next_calls: p.chunks(3).map(|c| [c[0], c[1], c[2]]).collect(),
            }
        })
        .collect();
    Forecast::Fitted(FittedForecast {
        model: ModelDescription {
            kind: "random_forest_regressor",
            n_estimators: N_ESTIMATORS,
            max_depth: MAX_DEPTH,
            criterion: "squared_error",
            bootstrap: true,
            seed: SEED,
            columns: [
                "seconds_between_calls",
                "prompt_tokens",
                "completion_tokens",
            ],
        },
        matrix_length: n,
        training_samples: set.x.len(),
        features: n * 3,
        outputs: n * 3,
        in_sample_mae: if count > 0 {
            abs_err / count as f64
        } else {
            0.0
        },
        predictions,
    })
}

/// A multi-output regression tree node.
#[derive(Debug, Clone)]
enum Node {
    Leaf(Vec<f64>),
    Split {
        feature: usize,
        threshold: f64,
        left: Box<Node>,
        right: Box<Node>,
    },
}

/// Bagged CART regression trees on squared error summed over outputs, every feature considered
/// at every split (scikit-learn's regressor default, `max_features=1.0`).
#[derive(Debug, Clone)]
pub struct Forest {
    trees: Vec<Node>,
}

impl Forest {
    pub fn fit(
        x: &[Vec<f64>],
        y: &[Vec<f64>],
        n_estimators: usize,
        max_depth: usize,
        seed: u64,
    ) -> Forest {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = x.len();
        let trees = (0..n_estimators)
            .map(|_| {
                // Bootstrap: n draws with replacement, kept as per-sample weights.
                let mut weight = vec![0.0f64; n];
                for _ in 0..n {
                    weight[rng.random_range(0..n)] += 1.0;
                }
                let idx: Vec<usize> = (0..n).filter(|i| weight[*i] > 0.0).collect();
                grow(x, y, &weight, &idx, max_depth)
            })
            .collect();
        Forest { trees }
    }

    pub fn predict(&self, x: &[f64]) -> Vec<f64> {
        let mut sum: Vec<f64> = Vec::new();
        for tree in &self.trees {
            let mut node = tree;
            let leaf = loop {
                match node {
                    Node::Leaf(v) => break v,
                    Node::Split {
                        feature,
                        threshold,
                        left,
                        right,
                    } => {
                        node = if x[*feature] <= *threshold {
                            left
                        } else {
                            right
                        }
                    }
                }
            };
            if sum.is_empty() {
                sum = leaf.clone();
            } else {
                for (s, v) in sum.iter_mut().zip(leaf) {
                    *s += v;
                }
            }
        }
        let k = self.trees.len().max(1) as f64;
        sum.iter().map(|s| s / k).collect()
    }
}

fn weighted_mean(y: &[Vec<f64>], weight: &[f64], idx: &[usize]) -> Vec<f64> {
    let outputs = y.first().map_or(0, Vec::len);
    let mut mean = vec![0.0; outputs];
    let mut w = 0.0;
    for &i in idx {
        w += weight[i];
        for (m, v) in mean.iter_mut().zip(&y[i]) {
            *m += weight[i] * v;
        }
    }
    if w > 0.0 {
        for m in &mut mean {
            *m /= w;
        }
    }
    mean
}

fn grow(x: &[Vec<f64>], y: &[Vec<f64>], weight: &[f64], idx: &[usize], depth: usize) -> Node {
    let leaf = || Node::Leaf(weighted_mean(y, weight, idx));
    if depth == 0 || idx.len() < 2 {
        return leaf();
    }
    let Some((feature, threshold)) = best_split(x, y, weight, idx) else {
        return leaf();
    };
    let (l, r): (Vec<usize>, Vec<usize>) = idx.iter().partition(|i| x[**i][feature] <= threshold);
    Node::Split {
        feature,
        threshold,
        left: Box::new(grow(x, y, weight, &l, depth - 1)),
        right: Box::new(grow(x, y, weight, &r, depth - 1)),
    }
}

/// The split with the largest drop in weighted squared error (summed over outputs); thresholds
/// are midpoints between distinct feature values. `None` when no split improves.
fn best_split(
    x: &[Vec<f64>],
    y: &[Vec<f64>],
    weight: &[f64],
    idx: &[usize],
) -> Option<(usize, f64)> {
    let outputs = y[idx[0]].len();
    // Totals: Σw, Σw·y, Σw·y² per output.
    let mut tw = 0.0;
    let mut ts = vec![0.0; outputs];
    let mut tq = 0.0;
    for &i in idx {
        tw += weight[i];
        for (o, v) in y[i].iter().enumerate() {
            ts[o] += weight[i] * v;
            tq += weight[i] * v * v;
        }
    }
    let sse = |w: f64, s: &[f64], q: f64| {
        if w > 0.0 {
            q - s.iter().map(|v| v * v).sum::<f64>() / w
        } else {
            0.0
        }
    };
    let parent = sse(tw, &ts, tq);
    let mut best: Option<(f64, usize, f64)> = None;
    let mut order: Vec<usize> = idx.to_vec();
    let mut ls = vec![0.0; outputs];
    let features = x[idx[0]].len();
    #[allow(clippy::needless_range_loop)] // `f` indexes a column across many rows
    for f in 0..features {
        order.sort_by(|a, b| x[*a][f].total_cmp(&x[*b][f]));
        let (mut lw, mut lq) = (0.0, 0.0);
        ls.iter_mut().for_each(|v| *v = 0.0);
        for k in 0..order.len() - 1 {
            let i = order[k];
            lw += weight[i];
            for (o, v) in y[i].iter().enumerate() {
                ls[o] += weight[i] * v;
                lq += weight[i] * v * v;
            }
            let (a, b) = (x[i][f], x[order[k + 1]][f]);
            if a == b {
                continue;
            }
            // Σ over outputs of the right child's squared sums, without allocating it.
            let rs2: f64 = ts.iter().zip(&ls).map(|(t, l)| (t - l) * (t - l)).sum();
            let rw = tw - lw;
            let right = if rw > 0.0 { (tq - lq) - rs2 / rw } else { 0.0 };
            let children = sse(lw, &ls, lq) + right;
            let gain = parent - children;
            if gain > 1e-12 * parent.abs().max(1.0) && best.is_none_or(|(g, _, _)| gain > g) {
                best = Some((gain, f, a + (b - a) / 2.0));
            }
        }
    }
    best.map(|(_, f, t)| (f, t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiler::testutil::frame_of_json;
    use serde_json::json;

    fn llm(
        uuid: &str,
        ts: f64,
        et: &str,
        prompt: i64,
        completion: i64,
        sec: i64,
    ) -> serde_json::Value {
        json!({"payload": {"event_type": et, "event_timestamp": ts, "UUID": uuid,
            "usage_info": {"token_usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
                           "seconds_between_calls": sec}}})
    }

    #[test]
    fn windows_match_the_reference() {
        let f = frame_of_json(json!([
            [
                llm("a", 0.0, "LLM_START", 0, 0, 5),
                llm("a", 1.0, "LLM_END", 10, 20, 0),
                llm("b", 2.0, "LLM_START", 0, 0, 7),
                llm("b", 3.0, "LLM_END", 30, 40, 0)
            ],
            [
                llm("c", 0.0, "LLM_START", 0, 0, 1),
                llm("c", 1.0, "LLM_END", 50, 60, 0)
            ]
        ]));
        let set = training_set(&f).unwrap();
        assert_eq!(set.matrix_length, 2); // ceil(3 / 2)
        assert_eq!(set.x[0], [0.0, 0.0, 0.0, 5.0, 10.0, 0.0]);
        assert_eq!(set.y[0], [7.0, 30.0, 40.0, 0.0, 0.0, 0.0]);
        assert_eq!(set.x[1], [5.0, 10.0, 20.0, 7.0, 30.0, 0.0]);
        assert_eq!(set.x[2], [0.0, 0.0, 0.0, 1.0, 50.0, 0.0]);
        assert_eq!(set.y[2], [0.0; 6]);
    }

    #[test]
    fn skipped_where_the_reference_fails() {
        let no_end = frame_of_json(json!([[llm("a", 0.0, "LLM_START", 0, 0, 0)]]));
        assert!(
            matches!(fit(&no_end), Forecast::Skipped { reason } if reason.contains("no LLM_END"))
        );
        let orphan = frame_of_json(json!([[llm("a", 0.0, "LLM_END", 1, 1, 0)]]));
        assert!(
            matches!(fit(&orphan), Forecast::Skipped { reason } if reason.contains("KeyError"))
        );
    }

    #[test]
    fn skipped_beyond_the_fitting_budget() {
        // One request of 3,000 calls: 9,000 features and outputs per sample.
        let steps: Vec<_> = (0..3000)
            .flat_map(|i| {
                let u = format!("u{i}");
                [
                    llm(&u, i as f64, "LLM_START", 0, 0, 1),
                    llm(&u, i as f64 + 0.5, "LLM_END", 10, 20, 0),
                ]
            })
            .collect();
        let f = frame_of_json(json!([steps]));
        assert!(
            matches!(fit(&f), Forecast::Skipped { reason } if reason.contains("fitting budget"))
        );
    }

    #[test]
    fn forest_fits_a_step_function_and_is_deterministic() {
        let x: Vec<Vec<f64>> = (0..40).map(|i| vec![i as f64, (i % 3) as f64]).collect();
        let y: Vec<Vec<f64>> = (0..40)
            .map(|i| vec![if i < 20 { 1.0 } else { 9.0 }, 2.0])
            .collect();
        let f = Forest::fit(&x, &y, 3, 2, 0);
        assert_eq!(f.predict(&[3.0, 0.0]), [1.0, 2.0]);
        assert_eq!(f.predict(&[35.0, 0.0]), [9.0, 2.0]);
        let g = Forest::fit(&x, &y, 3, 2, 0);
        assert_eq!(f.predict(&[19.5, 1.0]), g.predict(&[19.5, 1.0]));
    }
}
