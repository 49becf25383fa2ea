//! Workflow run time, LLM latency and throughput intervals (docs/toolkit-semantics.md#workflow-run-time-ci to #ci-helper).
//!
//! These are the reference's z-intervals on the *population* standard deviation (B12), with its
//! time-ordered LLM latency pairing (B6) and its throughput heuristic (B11), reproduced because
//! users compare them with what the toolkit printed. `stats.rs` has the sound versions.

use crate::profiler::core::dialect::Dialect;
use crate::profiler::core::frame::{Frame, time_order, time_span};
use crate::py::exact;
use crate::py::percentile::hand_linear_sorted;
use crate::trace::EventType;
use serde::ser::{Serialize, SerializeMap, Serializer};

const Z_VALUES: [f64; 3] = [1.645, 1.96, 2.576];

/// `InferenceMetricsModel`: a sample size, a mean, three intervals and, in nat 1.9, the
/// sample's p90/p95/p99.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InferenceMetrics {
    pub n: usize,
    pub mean: f64,
    /// The 90%, 95% and 99% intervals.
    pub intervals: [(f64, f64); 3],
    pub tail: TailPercentiles,
}

/// nat 1.9's `p90`, `p95` and `p99` of an interval object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TailPercentiles {
    /// aiq 1.1 has no such keys.
    Absent,
    /// nat's unvalidated model default, dumped as integer zeros: with no data, and always for
    /// throughput, which nat builds without them.
    Zero,
    Values([f64; 3]),
}

impl InferenceMetrics {
    /// The model's unvalidated default, which dumps integer zeros (`"mean": 0`).
    pub fn empty(dialect: Dialect) -> InferenceMetrics {
        InferenceMetrics {
            n: 0,
            mean: 0.0,
            intervals: [(0.0, 0.0); 3],
            tail: match dialect {
                Dialect::Aiq11 => TailPercentiles::Absent,
                Dialect::Nat19 => TailPercentiles::Zero,
            },
        }
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
}

impl Serialize for InferenceMetrics {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("n", &self.n)?;
        let names = [
            "ninetieth_interval",
            "ninety_fifth_interval",
            "ninety_ninth_interval",
        ];
        if self.is_empty() {
            m.serialize_entry("mean", &0)?;
            for name in names {
                m.serialize_entry(name, &[0, 0])?;
            }
        } else {
            m.serialize_entry("mean", &self.mean)?;
            for (name, (lo, hi)) in names.iter().zip(self.intervals) {
                m.serialize_entry(name, &[lo, hi])?;
            }
        }
        let tails = ["p90", "p95", "p99"];
        match self.tail {
            TailPercentiles::Absent => {}
            TailPercentiles::Zero => {
                for name in tails {
                    m.serialize_entry(name, &0)?;
                }
            }
            TailPercentiles::Values(values) => {
                for (name, v) in tails.iter().zip(values) {
                    m.serialize_entry(name, &v)?;
                }
            }
        }
        m.end()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for InferenceMetrics {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
        let interval = |what: &str| {
            ArrayBuilder::new()
                .items(ObjectBuilder::new().schema_type(Type::Number))
                .min_items(Some(2))
                .max_items(Some(2))
                .description(Some(format!(
                    "`[low, high]`: mean ± {what}·σ/√n (σ the population standard deviation)"
                )))
        };
        let tail = |which: &str| {
            ObjectBuilder::new().schema_type(Type::Number).description(Some(format!(
                "nat-1.9 only: the sample's {which} percentile (integer 0 without data, and always for throughput)"
            )))
        };
        ObjectBuilder::new()
            .description(Some(
                "`InferenceMetricsModel`: a sample size, its mean and z-intervals; all zeros (integers) without data",
            ))
            .property("n", ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)))
            .required("n")
            .property("mean", ObjectBuilder::new().schema_type(Type::Number))
            .required("mean")
            .property("ninetieth_interval", interval("1.645"))
            .required("ninetieth_interval")
            .property("ninety_fifth_interval", interval("1.96"))
            .required("ninety_fifth_interval")
            .property("ninety_ninth_interval", interval("2.576"))
            .required("ninety_ninth_interval")
            .property("p90", tail("90th"))
            .property("p95", tail("95th"))
            .property("p99", tail("99th"))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for InferenceMetrics {}

/// The three headline metrics of `inference_optimization.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConfidenceIntervals {
    pub workflow_run_time_confidence_intervals: InferenceMetrics,
    pub llm_latency_confidence_intervals: InferenceMetrics,
    pub throughput_estimate_confidence_interval: InferenceMetrics,
}

pub fn compute(frame: &Frame, dialect: Dialect) -> ConfidenceIntervals {
    ConfidenceIntervals {
        workflow_run_time_confidence_intervals: z_intervals(&run_times(frame), dialect),
        llm_latency_confidence_intervals: z_intervals(&llm_latencies(frame), dialect),
        throughput_estimate_confidence_interval: throughput(frame, dialect),
    }
}

/// `max(ts) - min(ts)` of every non-empty request, in request order.
pub fn run_times(frame: &Frame) -> Vec<f64> {
    frame
        .iter_requests()
        .filter_map(|(_, rows)| time_span(rows).map(|(lo, hi)| hi - lo))
        .collect()
}

/// docs/toolkit-semantics.md#llm-latency-ci: per request, in time order (stable), each LLM_END is paired with the latest unmatched
/// LLM_START before it, whatever their UUIDs.
pub fn llm_latencies(frame: &Frame) -> Vec<f64> {
    let mut latencies = Vec::new();
    let mut order: Vec<usize> = Vec::new();
    for (_, rows) in frame.iter_requests() {
        time_order(rows, &mut order);
        let mut start: Option<f64> = None;
        for &i in &order {
            let r = rows.get(i);
            match r.event_type() {
                EventType::LlmStart => start = Some(r.event_timestamp()),
                EventType::LlmEnd => {
                    if let Some(s) = start.take() {
                        latencies.push(r.event_timestamp() - s);
                    }
                }
                _ => {}
            }
        }
    }
    latencies
}

/// `_compute_confidence_intervals`: mean ± z·pstdev/√n, or (mean, mean) when n = 1; in nat 1.9
/// also the sample's p90/p95/p99 (each the mean when n = 1).
pub fn z_intervals(data: &[f64], dialect: Dialect) -> InferenceMetrics {
    let Some(mean) = exact::mean(data) else {
        return InferenceMetrics::empty(dialect);
    };
    let n = data.len();
    let tail = |values: &dyn Fn() -> [f64; 3]| match dialect {
        Dialect::Aiq11 => TailPercentiles::Absent,
        Dialect::Nat19 => TailPercentiles::Values(values()),
    };
    if n == 1 {
        return InferenceMetrics {
            n,
            mean,
            intervals: [(mean, mean); 3],
            tail: tail(&|| [mean; 3]),
        };
    }
    let sd = exact::pstdev(data).unwrap_or(0.0);
    let se = sd / (n as f64).sqrt();
    InferenceMetrics {
        n,
        mean,
        intervals: Z_VALUES.map(|z| {
            let margin = z * se;
            (mean - margin, mean + margin)
        }),
        tail: tail(&|| {
            let mut sorted = data.to_vec();
            sorted.sort_by(f64::total_cmp);
            [90.0, 95.0, 99.0].map(|p| hand_linear_sorted(&sorted, p))
        }),
    }
}

/// docs/toolkit-semantics.md#throughput: N requests (empty ones included) over the run's whole time span, SE = thr/√N, lower
/// bound clamped at 0.
/// nat 1.9 builds this object without percentiles, so its p90/p95/p99 stay the integer zeros.
pub fn throughput(frame: &Frame, dialect: Dialect) -> InferenceMetrics {
    let empty = InferenceMetrics::empty(dialect);
    let Some((lo, hi)) = time_span(frame.rows()) else {
        return empty;
    };
    let total_time = hi - lo;
    let n = frame.requests.len();
    if total_time <= 0.0 || n <= 1 {
        return empty;
    }
    let thr = n as f64 / total_time;
    let se = thr / (n as f64).sqrt();
    InferenceMetrics {
        n,
        mean: thr,
        intervals: Z_VALUES.map(|z| ((thr - z * se).max(0.0), thr + z * se)),
        ..empty
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiler::testutil::frame_of;
    use serde_json::json;

    #[test]
    fn latency_pairs_by_time_not_uuid() {
        // START A, START B, END A, END B: only END A - START B is recorded (B6).
        let f = frame_of(&[vec![
            ("LLM_START", 0.0, "a"),
            ("LLM_START", 1.0, "b"),
            ("LLM_END", 3.0, "a"),
            ("LLM_END", 4.0, "b"),
        ]]);
        assert_eq!(llm_latencies(&f), [2.0]);
    }

    #[test]
    fn orphan_end_ignored_and_unended_start_overwritten() {
        let f = frame_of(&[vec![
            ("LLM_END", 0.5, "x"),
            ("LLM_START", 1.0, "a"),
            ("LLM_START", 2.0, "b"),
            ("LLM_END", 2.5, "b"),
        ]]);
        assert_eq!(llm_latencies(&f), [0.5]);
    }

    #[test]
    fn single_request_and_empty_requests() {
        let f = frame_of(&[
            vec![("TOOL_START", 1.0, "t"), ("TOOL_END", 3.0, "t")],
            vec![],
        ]);
        assert_eq!(run_times(&f), [2.0]);
        let ci = z_intervals(&run_times(&f), Dialect::Aiq11);
        assert_eq!(ci.intervals, [(2.0, 2.0); 3]);
        // Two requests (one empty) over 2 s: throughput counts the empty one (B11).
        let t = throughput(&f, Dialect::Aiq11);
        assert_eq!((t.n, t.mean), (2, 1.0));
        let one = frame_of(&[vec![("TOOL_START", 1.0, "t"), ("TOOL_END", 3.0, "t")]]);
        assert!(throughput(&one, Dialect::Aiq11).is_empty());
    }

    #[test]
    fn same_timestamp_gives_zero_throughput() {
        let f = frame_of(&[
            vec![("TOOL_START", 1.0, "t")],
            vec![("TOOL_START", 1.0, "u")],
        ]);
        assert!(throughput(&f, Dialect::Aiq11).is_empty());
    }

    #[test]
    fn empty_serialises_integer_zeros() {
        assert_eq!(
            serde_json::to_value(InferenceMetrics::empty(Dialect::Aiq11)).unwrap(),
            json!({"n": 0, "mean": 0, "ninetieth_interval": [0, 0], "ninety_fifth_interval": [0, 0], "ninety_ninth_interval": [0, 0]})
        );
        assert_eq!(
            serde_json::to_value(InferenceMetrics::empty(Dialect::Nat19)).unwrap(),
            json!({"n": 0, "mean": 0, "ninetieth_interval": [0, 0], "ninety_fifth_interval": [0, 0], "ninety_ninth_interval": [0, 0],
                   "p90": 0, "p95": 0, "p99": 0})
        );
    }

    #[test]
    fn z_interval_uses_population_stdev() {
        let ci = z_intervals(&[1.0, 3.0], Dialect::Aiq11);
        // pstdev = 1, se = 1/sqrt(2)
        let se = 1.0 / 2f64.sqrt();
        assert_eq!(ci.intervals[1], (2.0 - 1.96 * se, 2.0 + 1.96 * se));
    }
}
