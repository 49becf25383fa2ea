//! Every output of a run, listed once.
//!
//! An [`Output`] says what the output is called (its name, its URL segment, the file the toolkit
//! writes), what it is (content type, toolkit dialects), whether `agentprof analyze` writes its
//! file for a run (as the toolkit decides, from the config and the data), and how it is made. The
//! service's routes, its OpenAPI document, its cache, `agentprof analyze`, the dashboard's list of
//! files and the Python client's list (`agentprof outputs`) all read [`OUTPUTS`], so the CLI and
//! the service cannot build an output two ways. Adding an output is one entry here
//! (docs/architecture.md has the checklist).
//!
//! Pure: outputs are written into a caller's `Write`.

use crate::profiler::core::calltree::CallForest;
use crate::profiler::statistics::cost::PriceTable;
use crate::profiler::statistics::scores::RequestScores;
use crate::profiler::toolkit::{atif, csv, forecast, gantt, prediction_trie};
use crate::profiler::{
    self, CallTrees, Dialect, Frame, InferenceOptimization, ProfilerConfig, WorkflowProfiling,
};
use crate::py;
use crate::trace::NumberedRequest;
use std::cell::OnceCell;
use std::io::{self, Write};

/// What an output is made from.
#[derive(Clone, Copy)]
pub enum Source {
    /// The standardized frame and what the profiler computes from it.
    Frame(fn(&Analysis<'_>, &mut dyn Write) -> io::Result<()>),
    /// The steps themselves (they need no frame): written from parsed steps, or by the service
    /// straight from stored bodies when `streamed`.
    Steps {
        write: fn(&[NumberedRequest], Dialect, &mut dyn Write) -> io::Result<()>,
        streamed: bool,
    },
}

/// What a computation allocates at its peak beyond its input (the frame; for an output made
/// from parsed steps, everything), per step and per byte of the steps' columns (of their bodies
/// for an output made from the steps). Each figure is set above what
/// `examples/analysis_memory.rs` measured, and `tests/analysis_memory.rs` holds it there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Memory {
    pub per_step: f64,
    pub per_byte: f64,
    /// Multiples of the bound on the concurrency spikes' UUID lists (`--max-spike-uuid-bytes`)
    /// it may hold: those lists grow with concurrency, not with the steps alone, up to it.
    pub spike_lists: f64,
}

impl Memory {
    /// An output that is streamed, holding a chunk at a time.
    pub const NONE: Memory = Memory {
        per_step: 0.0,
        per_byte: 0.0,
        spike_lists: 0.0,
    };
}

/// When `agentprof analyze` writes an output's file.
#[derive(Clone, Copy)]
pub enum Files {
    Always,
    /// Only for a run in nvidia-nat 1.9's dialect.
    InNat,
    /// When the run's config and data say so (decided from the analysis).
    When(fn(&Analysis<'_>) -> bool),
}

impl Files {
    /// Whether the file is written, for an output whose rule needs no analysis (the step
    /// files, written before the frame exists).
    pub fn without_analysis(self, dialect: Dialect) -> bool {
        match self {
            Files::Always => true,
            Files::InNat => dialect == Dialect::Nat19,
            Files::When(_) => false,
        }
    }

    pub fn with(self, analysis: &Analysis<'_>) -> bool {
        match self {
            Files::When(rule) => rule(analysis),
            other => other.without_analysis(analysis.dialect),
        }
    }
}

/// Which of `agentprof analyze`'s threads writes an output: the step files start while the
/// frame is built; the table and the analyses then share the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Steps,
    Table,
    Analyses,
}

/// One output of a run.
pub struct Output {
    /// Its name in caches, metrics labels and the registry listing.
    pub name: &'static str,
    /// The last segment of its URL, `/v1/runs/{run_id}/<path>`.
    pub path: &'static str,
    /// The file `agentprof analyze` writes it to (the toolkit's name where it writes one).
    pub file: fn(&ProfilerConfig) -> String,
    pub content_type: &'static str,
    /// Whether only nvidia-nat 1.9 has it: an `aiq-1.1` run does not.
    pub nat_only: bool,
    /// Whether `agentprof analyze` writes its file for this run, as the toolkit would.
    pub in_files: Files,
    pub source: Source,
    pub lane: Lane,
    /// Another output the same computation gives (cached alongside when one is asked for).
    pub sibling: Option<&'static str>,
    /// Whether it reads the run's metadata (the evaluator scores) and prices, so that a change
    /// of either, which leaves the run's version as it is, changes its cache key and ETag.
    pub reads_metadata: bool,
    /// What computing it takes in memory beyond its input, at its peak: the service admits a
    /// computation to its analysis budget by it (`compute::budget`).
    pub memory: Memory,
    /// The OpenAPI operation's summary, and its description.
    pub summary: &'static str,
    pub description: &'static str,
    /// What the 200 response is, in a word or two (the OpenAPI response description).
    pub what: &'static str,
    /// The OpenAPI operation id.
    pub operation: &'static str,
    /// The OpenAPI schema of its body, and the components that schema refers to.
    #[cfg(feature = "openapi")]
    pub schema: schema::BodySchema,
}

/// Body schemas for the OpenAPI document.
#[cfg(feature = "openapi")]
pub mod schema {
    use utoipa::ToSchema;
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
    use utoipa::openapi::{Ref, RefOr};

    /// A body's schema and the component schemas it refers to.
    pub type BodySchema = fn() -> (RefOr<Schema>, Vec<(String, RefOr<Schema>)>);

    fn components<T: ToSchema>() -> Vec<(String, RefOr<Schema>)> {
        let mut all = vec![(T::name().into_owned(), T::schema())];
        T::schemas(&mut all);
        all
    }

    /// A `T`, as a reference to its component.
    pub fn of<T: ToSchema>() -> (RefOr<Schema>, Vec<(String, RefOr<Schema>)>) {
        (
            RefOr::Ref(Ref::from_schema_name(T::name())),
            components::<T>(),
        )
    }

    /// A list of `T`.
    pub fn list_of<T: ToSchema>() -> (RefOr<Schema>, Vec<(String, RefOr<Schema>)>) {
        let list = ArrayBuilder::new().items(RefOr::Ref(Ref::from_schema_name(T::name())));
        (RefOr::T(Schema::Array(list.build())), components::<T>())
    }

    /// Text.
    pub fn text() -> (RefOr<Schema>, Vec<(String, RefOr<Schema>)>) {
        let string = ObjectBuilder::new().schema_type(Type::String).build();
        (RefOr::T(Schema::Object(string)), Vec::new())
    }
}

impl Output {
    /// Whether a run of `dialect` has this output.
    pub fn offered_in(&self, dialect: Dialect) -> bool {
        !self.nat_only || dialect == Dialect::Nat19
    }

    pub fn is_json(&self) -> bool {
        self.content_type == "application/json"
    }

    /// Writes an output made from the frame (empty for one made from the steps).
    pub fn render(&self, analysis: &Analysis<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        if let Source::Frame(write) = self.source {
            // Writing to a Vec cannot fail.
            let _ = write(analysis, &mut out);
        }
        out
    }
}

/// The output named `name`.
pub fn by_name(name: &str) -> Option<&'static Output> {
    OUTPUTS.iter().find(|o| o.name == name)
}

/// The inputs of a run's analyses, and what several outputs compute from them, computed once.
pub struct Analysis<'a> {
    pub frame: &'a Frame,
    pub config: &'a ProfilerConfig,
    pub dialect: Dialect,
    /// Evaluator scores per request (the service's, from the run's metadata; none offline).
    pub scores: RequestScores,
    /// The prices the run is costed with (the run's own in the service; `--prices` offline).
    pub prices: PriceTable,
    inference: OnceCell<InferenceOptimization>,
    trees: OnceCell<CallTrees<'a>>,
    profiling: OnceCell<WorkflowProfiling<'a>>,
    gantt: OnceCell<CallForest<'a>>,
}

impl<'a> Analysis<'a> {
    pub fn new(frame: &'a Frame, config: &'a ProfilerConfig, dialect: Dialect) -> Analysis<'a> {
        Analysis {
            frame,
            config,
            dialect,
            scores: RequestScores::new(),
            prices: PriceTable::default(),
            inference: OnceCell::new(),
            trees: OnceCell::new(),
            profiling: OnceCell::new(),
            gantt: OnceCell::new(),
        }
    }

    pub fn with_scores(mut self, scores: RequestScores) -> Analysis<'a> {
        self.scores = scores;
        self
    }

    pub fn with_prices(mut self, prices: PriceTable) -> Analysis<'a> {
        self.prices = prices;
        self
    }

    pub fn inference(&self) -> &InferenceOptimization {
        self.inference
            .get_or_init(|| profiler::inference_optimization(self.frame, self.config, self.dialect))
    }

    fn trees(&self) -> &CallTrees<'a> {
        self.trees
            .get_or_init(|| profiler::call_trees(self.frame, self.config, self.dialect))
    }

    pub fn profiling(&self) -> &WorkflowProfiling<'a> {
        self.profiling.get_or_init(|| {
            profiler::workflow_profiling_with(self.frame, self.trees(), self.config)
        })
    }

    /// The nested-stack call tree of the run's dialect, which the Gantt chart draws (whether or
    /// not the nested-stack analysis is on).
    fn gantt_forest(&self) -> &CallForest<'a> {
        if self.config.bottleneck_analysis.enable_nested_stack {
            return &self.trees().nested;
        }
        self.gantt.get_or_init(|| {
            if self.frame.is_standardized() {
                CallForest::build(self.frame, self.dialect.function_nodes())
            } else {
                CallForest::default()
            }
        })
    }
}

fn json<T: serde::Serialize + ?Sized>(w: &mut dyn Write, value: &T) -> io::Result<()> {
    py::json::write(w, value, true).map_err(io::Error::other)
}

/// A request as an ATIF item: its eval fields, or its number when it came without them.
pub fn atif_item(r: &NumberedRequest) -> atif::AtifItem<'_> {
    let eval = r.eval.clone().unwrap_or_default();
    atif::AtifItem {
        item_id: if eval.id.is_null() {
            serde_json::Value::from(r.number)
        } else {
            eval.id
        },
        expected_output: eval.answer,
        output: eval.generated_answer,
        steps: &r.steps,
    }
}

const JSON: &str = "application/json";

/// Every output, in the order `agentprof analyze` lists its files.
pub static OUTPUTS: [Output; 11] = [
    Output {
        name: "requests",
        path: "requests",
        file: |_| "all_requests_profiler_traces.json".to_owned(),
        content_type: JSON,
        nat_only: false,
        in_files: Files::Always,
        source: Source::Steps {
            write: |requests, dialect, w| {
                let mut t = crate::trace::TracesWriter::new(w);
                for r in requests {
                    t.begin_request(r.number)?;
                    for s in &r.steps {
                        t.step(s, dialect.step_schema())?;
                    }
                }
                t.finish().map(|_| ())
            },
            streamed: true,
        },
        lane: Lane::Steps,
        sibling: None,
        reads_metadata: false,
        memory: Memory::NONE,
        summary: "Combined requests JSON",
        description: "`all_requests_profiler_traces.json`: every request with its steps, in the toolkit's layout\n\
                      (`json.dump(indent=2)`), streamed from the database.",
        what: "The combined requests file",
        operation: "get_requests",
        #[cfg(feature = "openapi")]
        schema: schema::list_of::<crate::trace::schema::RequestDoc>,
    },
    Output {
        name: "atif",
        path: "atif",
        file: |_| "workflow_output_atif.json".to_owned(),
        content_type: JSON,
        nat_only: false,
        // nat 1.9's `nat eval` writes it; aiqtoolkit 1.1 has no ATIF.
        in_files: Files::InNat,
        source: Source::Steps {
            write: |requests, _, w| {
                let items: Vec<atif::AtifItem> = requests.iter().map(atif_item).collect();
                json(w, &atif::samples(&items))
            },
            streamed: false,
        },
        lane: Lane::Steps,
        sibling: None,
        reads_metadata: false,
        memory: Memory {
            per_step: 1200.0,
            per_byte: 2.6,
            spike_lists: 0.0,
        },
        summary: "ATIF trajectories",
        description: "`workflow_output_atif.json`: each request as an ATIF v1.7 trajectory, as nvidia-nat 1.9's\n\
                      `nat eval` converts its steps (the user's input, one agent step per LLM call with the tool\n\
                      calls and observations that followed, the final answer, token totals). Eval items keep their\n\
                      dataset id, answer and generated answer; other requests are identified by their number.",
        what: "workflow_output_atif.json",
        operation: "atif",
        #[cfg(feature = "openapi")]
        schema: schema::list_of::<atif::AtifSample>,
    },
    Output {
        name: "csv",
        path: "standardized.csv",
        file: |_| "standardized_data_all.csv".to_owned(),
        content_type: "text/csv; charset=utf-8",
        nat_only: false,
        in_files: Files::Always,
        source: Source::Frame(|a, mut w| csv::write(&mut w, a.frame, a.config)),
        lane: Lane::Table,
        sibling: None,
        reads_metadata: false,
        memory: Memory {
            per_step: 900.0,
            per_byte: 2.0,
            spike_lists: 0.0,
        },
        summary: "Standardized CSV",
        description: "`standardized_data_all.csv`: one row per step, with the six NOVA columns when\n\
                      `compute_llm_metrics` is on and without the text columns when `csv_exclude_io_text` is.",
        what: "standardized_data_all.csv",
        operation: "csv",
        #[cfg(feature = "openapi")]
        schema: schema::text,
    },
    Output {
        name: "metrics",
        path: "metrics",
        file: |_| "inference_optimization.json".to_owned(),
        content_type: JSON,
        nat_only: false,
        in_files: Files::Always,
        source: Source::Frame(|a, w| json(w, a.inference())),
        lane: Lane::Analyses,
        sibling: None,
        reads_metadata: false,
        memory: Memory {
            per_step: 150.0,
            per_byte: 0.6,
            spike_lists: 0.0,
        },
        summary: "Inference metrics",
        description: "`inference_optimization.json`: confidence intervals of workflow run time, LLM latency and\n\
                      throughput, common prompt prefixes, token uniqueness and runtime percentiles, with the\n\
                      toolkit's numbers (and quirks: time-ordered latency pairing, population-stdev z-intervals).",
        what: "inference_optimization.json",
        operation: "metrics",
        #[cfg(feature = "openapi")]
        schema: schema::of::<InferenceOptimization>,
    },
    Output {
        name: "report",
        path: "report",
        file: |_| "workflow_profiling_report.txt".to_owned(),
        content_type: "text/plain; charset=utf-8",
        nat_only: false,
        // The toolkit skips both profiling files when no analysis is enabled.
        in_files: Files::When(|a| !a.profiling().is_empty()),
        source: Source::Frame(|a, w| w.write_all(a.profiling().report.as_bytes())),
        lane: Lane::Analyses,
        sibling: Some("profiling"),
        reads_metadata: false,
        memory: Memory {
            per_step: 1900.0,
            per_byte: 0.5,
            spike_lists: 3.0,
        },
        summary: "Profiling report",
        description: "`workflow_profiling_report.txt`, the toolkit's text report, byte for byte.",
        what: "workflow_profiling_report.txt",
        operation: "report",
        #[cfg(feature = "openapi")]
        schema: schema::text,
    },
    Output {
        name: "profiling",
        path: "profiling",
        file: |_| "workflow_profiling_metrics.json".to_owned(),
        content_type: JSON,
        nat_only: false,
        in_files: Files::When(|a| !a.profiling().is_empty()),
        source: Source::Frame(|a, w| json(w, a.profiling())),
        lane: Lane::Analyses,
        sibling: Some("report"),
        reads_metadata: false,
        memory: Memory {
            per_step: 1900.0,
            per_byte: 0.5,
            spike_lists: 3.0,
        },
        summary: "Workflow profiling metrics",
        description: "`workflow_profiling_metrics.json`: simple and nested stack bottleneck analyses, concurrency\n\
                      spikes and PrefixSpan sub-workflow patterns.",
        what: "workflow_profiling_metrics.json",
        operation: "profiling",
        #[cfg(feature = "openapi")]
        schema: schema::of::<WorkflowProfiling<'static>>,
    },
    Output {
        name: "gantt",
        path: "gantt.svg",
        file: |_| "gantt_chart.svg".to_owned(),
        content_type: "image/svg+xml",
        nat_only: false,
        // The toolkit draws the chart with the nested-stack analysis, and only when there are
        // calls to draw.
        in_files: Files::When(|a| {
            a.config.bottleneck_analysis.enable_nested_stack && !a.gantt_forest().nodes.is_empty()
        }),
        source: Source::Frame(|a, w| {
            let mut w = w;
            if !gantt::write_svg(&mut w, a.gantt_forest())? {
                w.write_all(gantt::empty_svg().as_bytes())?;
            }
            Ok(())
        }),
        lane: Lane::Analyses,
        sibling: None,
        reads_metadata: false,
        memory: Memory {
            per_step: 350.0,
            per_byte: 0.5,
            spike_lists: 0.0,
        },
        summary: "Gantt chart",
        description: "One bar per LLM or tool call, sorted by start (blue: LLM, green: tool), as a standalone SVG.",
        what: "The chart",
        operation: "gantt",
        #[cfg(feature = "openapi")]
        schema: schema::text,
    },
    Output {
        name: "prediction_trie",
        path: "prediction_trie",
        file: |c| c.prediction_trie.output_filename.clone(),
        content_type: JSON,
        nat_only: true,
        in_files: Files::When(|a| a.config.prediction_trie.enable),
        source: Source::Frame(|a, w| {
            json(
                w,
                &prediction_trie::build(a.frame, &a.config.prediction_trie),
            )
        }),
        lane: Lane::Analyses,
        sibling: None,
        reads_metadata: false,
        memory: Memory {
            per_step: 80.0,
            per_byte: 0.1,
            spike_lists: 0.0,
        },
        summary: "Prediction trie",
        description: "`prediction_trie.json` (nvidia-nat 1.9 only; a 404 `not-in-dialect` problem for aiq-1.1\n\
                      runs): per calling function and call index, the remaining LLM calls, the time to the next\n\
                      call, the output tokens and a latency-sensitivity level. `generated_at` is the time of the\n\
                      run's last step (the toolkit writes the wall clock).",
        what: "prediction_trie.json",
        operation: "prediction_trie",
        #[cfg(feature = "openapi")]
        schema: schema::of::<prediction_trie::PredictionTrie>,
    },
    Output {
        name: "profiler_results",
        path: "profiler_results",
        file: |_| "profiler_results.json".to_owned(),
        content_type: JSON,
        nat_only: true,
        in_files: Files::Always,
        source: Source::Frame(|a, w| {
            json(
                w,
                &profiler::profiler_results(a.frame, a.config, a.inference()),
            )
        }),
        lane: Lane::Analyses,
        sibling: None,
        reads_metadata: false,
        memory: Memory {
            per_step: 150.0,
            per_byte: 0.6,
            spike_lists: 0.0,
        },
        summary: "Profiler results",
        description: "`profiler_results.json` (nvidia-nat 1.9 only): what the toolkit's profiler run returns, the\n\
                      workflow runtime percentiles and the LLM latency interval, or both null when its\n\
                      token-usage forecast fails (a request without LLM_END, an LLM_END without its START).",
        what: "profiler_results.json",
        operation: "profiler_results",
        #[cfg(feature = "openapi")]
        schema: schema::of::<profiler::ProfilerResults>,
    },
    Output {
        name: "forecast",
        path: "forecast",
        file: |_| "forecast.json".to_owned(),
        content_type: JSON,
        nat_only: false,
        in_files: Files::When(|a| a.config.token_usage_forecast),
        source: Source::Frame(|a, w| {
            if a.config.token_usage_forecast {
                json(w, &forecast::fit(a.frame))
            } else {
                json(
                    w,
                    &forecast::Forecast::Skipped {
                        reason: "token_usage_forecast is off in the run's profiler_config"
                            .to_owned(),
                    },
                )
            }
        }),
        lane: Lane::Analyses,
        sibling: None,
        reads_metadata: false,
        memory: Memory {
            per_step: 100.0,
            per_byte: 0.1,
            spike_lists: 0.0,
        },
        summary: "Token-usage forecast",
        description: "The toolkit fits a random forest to predict the next calls' token usage and pickles it; we\n\
                      fit the same shape of model on the same windows, seeded, and serve its description,\n\
                      in-sample error and each request's predicted next calls. `status: skipped` says why the\n\
                      toolkit's fit would fail on this run (a request without LLM_END, an LLM_END without its\n\
                      LLM_START).",
        what: "Forecast model summary and predictions",
        operation: "forecast",
        #[cfg(feature = "openapi")]
        schema: schema::of::<forecast::Forecast>,
    },
    Output {
        name: "stats",
        path: "stats",
        file: |_| "stats.json".to_owned(),
        content_type: JSON,
        nat_only: false,
        in_files: Files::Always,
        source: Source::Frame(|a, w| {
            let stats = profiler::statistics::stats::compute_with(a.frame, &a.scores, &a.prices);
            serde_json::to_writer_pretty(w, &stats).map_err(io::Error::other)
        }),
        lane: Lane::Analyses,
        sibling: None,
        reads_metadata: true,
        memory: Memory {
            per_step: 200.0,
            per_byte: 1.0,
            spike_lists: 0.0,
        },
        summary: "Sound statistics",
        description: STATS_DESCRIPTION,
        what: "Statistics of the run",
        operation: "stats",
        #[cfg(feature = "openapi")]
        schema: schema::of::<profiler::statistics::stats::RunStats>,
    },
];

const STATS_DESCRIPTION: &str =
    "What a careful statistician would report, next to the toolkit-compatible numbers:

- `llm_latency`: LLM calls paired START -> END **by UUID** within their request (the toolkit
  pairs by time order, which mismeasures overlapping calls), overall and per model, with the
  unmatched STARTs and ENDs counted;
- `workflow_run_time`: seconds from a request's first to its last step;
- `time_to_first_token`: from an LLM_START to its first LLM_NEW_TOKEN (null when nothing streamed);
- `tokens`: per model, prompt/completion/total tokens per call;
- `throughput`: requests per second with an **exact Poisson (Garwood) 95% interval**, which
  assumes arrivals independent of each other (not true of a fixed-concurrency eval, where it
  is conservative);
- `tool_latency`: per tool, by UUID;
- `prefix_cache`: per model, the longest **whitespace-token** prefix each prompt shares with an
  earlier prompt of the model, and the share of prompt tokens a prefix cache could serve.

Every `Summary` has `n`, mean, the **sample** standard deviation (n-1), min, max,
p50/p75/p90/p95/p99 (linear interpolation) and two 95% intervals for the mean: Student-t
(assumes the mean is roughly normal; check the skew for small n) and a seeded percentile
bootstrap of 2,000 resamples (distribution-free; null below 10 values, where it is far
too narrow, and above 2,000, where the t interval is as good). Statistics that need more
data than there is are null, never a zero-width interval.";

/// The registry as `agentprof outputs` prints it: what a client needs to list and fetch them.
pub fn listing() -> serde_json::Value {
    serde_json::Value::Array(
        OUTPUTS
            .iter()
            .map(|o| {
                serde_json::json!({
                    "name": o.name,
                    "path": o.path,
                    "file": (o.file)(&ProfilerConfig::default()),
                    "content_type": o.content_type,
                    "nat_only": o.nat_only,
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths_are_unique_and_siblings_point_back() {
        for (i, a) in OUTPUTS.iter().enumerate() {
            for b in &OUTPUTS[i + 1..] {
                assert_ne!(a.name, b.name);
                assert_ne!(a.path, b.path);
            }
            if let Some(s) = a.sibling {
                assert_eq!(by_name(s).and_then(|o| o.sibling), Some(a.name));
            }
        }
    }
}
