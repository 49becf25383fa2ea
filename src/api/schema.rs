//! Request and response shapes of the HTTP API, with their OpenAPI schemas.
//!
//! Every shape here is a real type: the API reads request bodies through the same types that
//! give their schemas ([`PatchRun`], [`CompareRequest`], and the create body's
//! [`crate::ingest::request::CreateRun`]), and writes the run views below and the profiler's own
//! output types. The step documents themselves are described in [`crate::trace::schema`], beside
//! the parser they describe.

use crate::ingest::request::{CreateRun, RetentionSeconds, RunName};
use crate::jsontext::ObjectJson;
use crate::profiler::core::config_schema::ProfilerConfigPatch;
use crate::profiler::statistics::compare::Comparison;
pub use crate::profiler::statistics::cost::PriceTable;
use crate::profiler::{Dialect, ProfilerConfig};
use crate::store::DialectSource;
use crate::trace::pointer_segment;
use crate::trace::schema::StepDocument;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;

use crate::window::Window;
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{AnyOfBuilder, Schema};
use uuid::Uuid;

/// A run: a set of requests (workflow invocations) and their steps.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "0b6f3b1c-3a0a-4f5e-9f77-2d8c7e1f9a10", "toolkit": "nat-1.9", "toolkit_source": "detected", "warnings": [],
    "name": "nightly eval", "created_at": "2026-11-28T14:27:36Z",
    "updated_at": "2026-11-28T14:30:02Z", "version": 3, "request_count": 50, "step_count": 1032,
    "profiler_config": {"token_usage_forecast": true, "token_uniqueness_forecast": true, "workflow_runtime_forecast": true,
        "compute_llm_metrics": true, "csv_exclude_io_text": false,
        "prompt_caching_prefixes": {"enable": true, "min_frequency": 0.5},
        "bottleneck_analysis": {"enable_simple_stack": true, "enable_nested_stack": true},
        "concurrency_spike_analysis": {"enable": true, "spike_threshold": 1},
        "prefix_span_analysis": {"enable": true, "min_support": 2, "min_coverage": 0, "max_text_len": 1000, "top_k": 10, "chain_with_common_prefixes": false}},
    "metadata": {"commit": "4f2a9c1"}
}))]
pub struct RunView {
    pub id: Uuid,
    /// Which toolkit version's outputs the run's numbers follow.
    pub toolkit: Dialect,
    pub toolkit_source: DialectSource,
    /// What the run's outputs cannot show as the toolkit would, and what to change.
    pub warnings: Vec<String>,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Changes with every batch that stores something; outputs are cached per version.
    pub version: i64,
    pub request_count: i64,
    pub step_count: i64,
    /// Figures for the run list, kept current as batches land.
    pub summary: RunSummary,
    /// Requests whose last step is older than this many seconds are deleted (docs/live.md);
    /// null keeps everything.
    pub retention_seconds: Option<i64>,
    /// The prices the run is costed with (USD per million tokens, by model): the server's when
    /// the run was created, or its own; a later change of the server's prices leaves them.
    pub prices: PriceTable,
    /// The effective `ProfilerConfig` (toolkit field names): the run's settings merged over
    /// the defaults.
    pub profiler_config: ProfilerConfig,
    /// Free-form object stored with the run.
    #[schema(value_type = Object)]
    #[schema(value_type = Object)]
    pub metadata: ObjectJson,
    /// Per evaluator, the count and mean of the eval's scores in `metadata.eval.items`
    /// (docs/scores.md); absent when the run has none.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub scores:
        std::collections::BTreeMap<String, crate::profiler::statistics::scores::ScoreSummary>,
}

/// What a run list shows of a run without computing anything.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunSummary {
    /// Epoch seconds of the run's earliest and latest step; null before the first step.
    pub first_event_at: Option<f64>,
    pub last_event_at: Option<f64>,
    /// Seconds from the earliest to the latest step.
    pub wall_time_seconds: Option<f64>,
    /// LLM_END steps.
    pub llm_calls: i64,
    /// The total tokens of the LLM_END steps' usage.
    pub llm_tokens: i64,
}

/// The new run, plus what its first batch stored when `requests` was given.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedRun {
    #[serde(flatten)]
    pub run: RunView,
    /// Present when the request carried `requests`.
    pub ingest: Option<IngestResponse>,
}

/// Body of `PATCH /v1/runs/{run_id}`: a JSON merge patch. A field left out stays as it is;
/// `null` resets it (the name to empty, the toolkit to detection, a profiler setting or a
/// metadata key to absent).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "renamed", "profiler_config": {"concurrency_spike_analysis": {"spike_threshold": 4}}}))]
pub struct PatchRun {
    #[serde(default)]
    #[schema(value_type = Option<RunName>)]
    pub name: Patch<RunName>,
    /// `aiq-1.1` or `nat-1.9`; null returns the run to detection.
    #[serde(default)]
    #[schema(value_type = Option<Dialect>)]
    pub toolkit: Patch<Dialect>,
    /// Merged into the stored config (RFC 7396).
    #[serde(default)]
    #[schema(value_type = Option<ProfilerConfigPatch>)]
    pub profiler_config: Patch<Box<RawValue>>,
    /// Merged into the stored metadata (RFC 7396), as text: metadata of any size is merged without
    /// being read into values.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Patch<ObjectJson>,
    /// Delete requests whose last step is older than this many seconds; null keeps everything.
    #[serde(default)]
    #[schema(value_type = Option<RetentionSeconds>)]
    pub retention_seconds: Patch<RetentionSeconds>,
    /// Re-prices the run: a price table replaces the run's whole table; null takes the
    /// server's as it is now. The run's outputs are costed anew.
    #[serde(default)]
    #[schema(value_type = Option<PriceTable>)]
    pub prices: Patch<PriceTable>,
}

/// A field of a merge patch: left out, `null`, or a value. (`Option<Option<T>>` says the same
/// less plainly, and serde needs help to tell the first two apart either way.)
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Patch<T> {
    #[default]
    Absent,
    Null,
    Value(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patch<T> {
    /// Called only for a field that is present (absent ones take the default).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Patch<T>, D::Error> {
        Ok(match Option::<T>::deserialize(d)? {
            None => Patch::Null,
            Some(v) => Patch::Value(v),
        })
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunList {
    pub items: Vec<RunView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct RequestCounts {
    pub received: i64,
    /// Requests the run did not have before.
    pub created: i64,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct StepCounts {
    pub received: i64,
    pub stored: i64,
    /// Steps already stored (same request, UUID, event type and timestamp).
    pub skipped_duplicate: i64,
}

/// What a batch did to the run.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"run_id": "0b6f3b1c-3a0a-4f5e-9f77-2d8c7e1f9a10", "toolkit": "aiq-1.1", "warnings": [], "version": 4,
    "requests": {"received": 12, "created": 12}, "steps": {"received": 196, "stored": 196, "skipped_duplicate": 0}}))]
pub struct IngestResponse {
    pub run_id: Uuid,
    /// The run's dialect after the batch.
    pub toolkit: Dialect,
    /// The run's warnings after the batch (see `RunView.warnings`).
    pub warnings: Vec<String>,
    /// The run's version after the batch (unchanged when nothing was stored).
    pub version: i64,
    pub requests: RequestCounts,
    pub steps: StepCounts,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    pub status: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Readiness {
    pub status: String,
    /// `postgres` or `sqlite`.
    pub database: String,
    /// The streaming standbys that take reads (absent without `--read-database-url`). A
    /// standby that is down or lagging leaves the server ready: its reads go to the primary.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub standbys: Vec<crate::store::StandbyStatus>,
}

/// The body of `POST /v1/runs`: a run object, or a bare step document as its `requests`.
pub struct CreateRunBody;

impl utoipa::PartialSchema for CreateRunBody {
    fn schema() -> RefOr<Schema> {
        RefOr::T(Schema::AnyOf(
            AnyOfBuilder::new()
                .item(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    "CreateRun",
                )))
                .item(<StepDocument as utoipa::PartialSchema>::schema())
                .build(),
        ))
    }
}

impl ToSchema for CreateRunBody {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((
            "CreateRun".to_owned(),
            <CreateRun as utoipa::PartialSchema>::schema(),
        ));
        <CreateRun as ToSchema>::schemas(schemas);
        <StepDocument as ToSchema>::schemas(schemas);
    }
}

// ----- statistics -------------------------------------------------------------------------------

/// Body of `POST /v1/compare`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"baseline": "0b6f3b1c-3a0a-4f5e-9f77-2d8c7e1f9a10", "candidate": "5d1c8f0e-2b9a-4c3d-8e7f-1a2b3c4d5e6f"}))]
pub struct CompareRequest {
    pub baseline: Uuid,
    pub candidate: Uuid,
    /// Only the baseline's requests that started at or after this time.
    #[serde(default)]
    pub baseline_from: Option<TimeBound>,
    /// Only the baseline's requests that started before this time.
    #[serde(default)]
    pub baseline_to: Option<TimeBound>,
    /// Only the candidate's requests that started at or after this time.
    #[serde(default)]
    pub candidate_from: Option<TimeBound>,
    /// Only the candidate's requests that started before this time.
    #[serde(default)]
    pub candidate_to: Option<TimeBound>,
    /// The level of the tests and of Holm's correction, strictly between 0 and 1 (default 0.05).
    #[serde(default)]
    #[schema(exclusive_minimum = 0.0, exclusive_maximum = 1.0, example = 0.05)]
    pub alpha: Option<f64>,
    /// Compare only these metrics (default: all): the family Holm's correction runs over. An
    /// evaluator's score that the runs do not both have is left out of the answer.
    #[serde(default)]
    #[schema(min_items = 1, max_items = 64)]
    pub metrics: Option<Vec<MetricName>>,
    /// Decide as `agentprof compare` does, and answer with the verdict and its report in
    /// markdown (`gate` in the answer): for a CI step or an eval hook without the binary.
    #[serde(default)]
    pub gate: Option<GateRequest>,
}

/// What the gate is told besides the comparison (`agentprof compare`'s options).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GateRequest {
    /// Percent of the baseline's mean that a significant worsening must exceed to fail the gate,
    /// by metric (`{"llm_latency": 10}`); every key must be a metric of the comparison.
    #[serde(default)]
    #[schema(schema_with = max_regression_schema)]
    pub max_regression: BTreeMap<String, f64>,
    /// Evaluators whose scores are better lower (an error rate, say).
    #[serde(default)]
    #[schema(max_items = 64)]
    pub lower_is_better: Vec<String>,
}

impl GateRequest {
    /// The gate's options; a threshold that is not a finite, non-negative percent is refused
    /// with its pointer.
    pub fn options(&self) -> Result<crate::gate::GateOptions, super::error::ApiError> {
        if let Some((metric, _)) = self
            .max_regression
            .iter()
            .find(|(_, p)| !(p.is_finite() && **p >= 0.0))
        {
            return Err(super::error::ApiError::invalid_at(
                format!("/gate/max_regression{}", pointer_segment(metric)),
                "a percent of the baseline's mean: a finite number, 0 or more",
            ));
        }
        if self.lower_is_better.len() > 64 {
            return Err(super::error::ApiError::invalid_at(
                "/gate/lower_is_better",
                "name at most 64 evaluators",
            ));
        }
        Ok(crate::gate::GateOptions {
            max_regression: self.max_regression.clone(),
            lower_is_better: self.lower_is_better.clone(),
        })
    }
}

/// `max_regression`'s schema: metric names (the pattern of [`MetricName`]) to percents, 0 or
/// more.
fn max_regression_schema() -> Schema {
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
    let percent = ObjectBuilder::new()
        .schema_type(Type::Number)
        .minimum(Some(0.0));
    let name = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(METRIC_NAME_PATTERN));
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "Percent of the baseline's mean that a significant worsening must exceed to fail \
                 the gate, by metric; every key must be a metric of the comparison.",
            ))
            .property_names(Some(name))
            .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(Schema::Object(
                percent.build(),
            )))))
            .examples([serde_json::json!({"llm_latency": 10})])
            .build(),
    )
}

/// The gate's answer in `POST /v1/compare`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GateAnswer {
    /// 1 when a metric fails the gate, else 0: what `agentprof compare` exits with.
    pub exit_code: u8,
    /// The report as `agentprof compare --format markdown` writes it (a pull-request comment,
    /// `$GITHUB_STEP_SUMMARY`).
    pub markdown: String,
    #[serde(flatten)]
    pub report: crate::gate::Report,
}

/// A metric of `POST /v1/compare`: one of the six the runs' steps give, or
/// `score:<evaluator>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct MetricName(pub String);

/// What [`MetricName`] accepts (the schema's pattern says the same).
const METRIC_NAME_PATTERN: &str = "^(llm_latency|workflow_run_time|total_tokens|prompt_tokens|completion_tokens|tool_latency|cost|score:[\\s\\S]+)$";

impl MetricName {
    fn is_known(&self) -> bool {
        crate::profiler::statistics::compare::is_metric_name(&self.0)
    }
}

impl utoipa::PartialSchema for MetricName {
    fn schema() -> RefOr<Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(METRIC_NAME_PATTERN))
                .examples(["llm_latency"])
                .build(),
        ))
    }
}

impl ToSchema for MetricName {}

/// A time: Unix seconds (a number), or RFC 3339 text (`"2026-12-06T10:00:00Z"`). Kept as its
/// JSON text, so that a number is read as written (the body reader keeps numbers exact).
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct TimeBound(Box<RawValue>);

impl TimeBound {
    /// The bound as the text [`Window::parse`] reads: a string's contents, a number as written.
    fn text(&self) -> String {
        let raw = self.0.get();
        serde_json::from_str::<String>(raw).unwrap_or_else(|_| raw.to_owned())
    }
}

impl utoipa::PartialSchema for TimeBound {
    fn schema() -> RefOr<Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        // The same times either way: seconds are held to the years RFC 3339 can write.
        RefOr::T(Schema::AnyOf(
            AnyOfBuilder::new()
                .item(
                    ObjectBuilder::new()
                        .schema_type(Type::Number)
                        .minimum(Some(crate::window::EARLIEST_SECONDS))
                        .maximum(Some(crate::window::LATEST_SECONDS)),
                )
                .item(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
                )
                .description(Some("Unix seconds, or an RFC 3339 time"))
                .build(),
        ))
    }
}

impl ToSchema for TimeBound {}

impl CompareRequest {
    /// The level and the metrics asked for; a level outside (0, 1), an empty list or an
    /// unknown metric is refused with its pointer.
    pub fn options(
        &self,
    ) -> Result<crate::profiler::statistics::compare::CompareOptions, super::error::ApiError> {
        use crate::profiler::statistics::compare::{ALPHA, CompareOptions};
        let alpha = self.alpha.unwrap_or(ALPHA);
        if !(alpha > 0.0 && alpha < 1.0) {
            return Err(super::error::ApiError::invalid_at(
                "/alpha",
                "must be between 0 and 1 (exclusive), e.g. 0.05",
            ));
        }
        let only = match &self.metrics {
            None => None,
            Some(names) if names.is_empty() || names.len() > 64 => {
                return Err(super::error::ApiError::invalid_at(
                    "/metrics",
                    "name 1 to 64 metrics, or leave it out for all",
                ));
            }
            Some(names) => {
                if let Some(i) = names.iter().position(|n| !n.is_known()) {
                    return Err(super::error::ApiError::invalid_at(
                        format!("/metrics/{i}"),
                        "not a metric: llm_latency, workflow_run_time, total_tokens, \
                         prompt_tokens, completion_tokens, tool_latency, cost or score:<evaluator>",
                    ));
                }
                Some(names.iter().map(|n| n.0.clone()).collect())
            }
        };
        Ok(CompareOptions { alpha, only })
    }

    /// The baseline's window and the candidate's; a bound that is not a time is refused with
    /// its pointer.
    pub fn windows(&self) -> Result<(Window, Window), super::error::ApiError> {
        let window = |side: &str, from: &Option<TimeBound>, to: &Option<TimeBound>| {
            let (from, to) = (
                from.as_ref().map(TimeBound::text),
                to.as_ref().map(TimeBound::text),
            );
            Window::parse(from.as_deref(), to.as_deref()).map_err(|(bound, e)| {
                super::error::ApiError::invalid_at(format!("/{side}_{bound}"), e.to_string())
            })
        };
        Ok((
            window("baseline", &self.baseline_from, &self.baseline_to)?,
            window("candidate", &self.candidate_from, &self.candidate_to)?,
        ))
    }
}

/// A run as compared: the version of the frame that was analysed, which may be newer than the
/// record read just before (a batch can land in between).
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct RunRef {
    pub run_id: Uuid,
    pub version: i64,
}

/// `POST /v1/compare`: the comparison, and which versions of the two runs it read.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ComparisonResponse {
    #[serde(flatten)]
    pub comparison: Comparison,
    pub baseline: RunRef,
    pub candidate: RunRef,
    /// Present when the request asked for the gate's decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateAnswer>,
}
