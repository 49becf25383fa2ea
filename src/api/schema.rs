//! Request and response shapes of the HTTP API, with their OpenAPI schemas.
//!
//! Responses are real types: the run views below, and the profiler's own output types, whose
//! schemas are derived where they are defined. What the parser accepts (steps in their input
//! forms, a profiler-config merge patch) is wider than any Rust type it becomes, so those inputs
//! are described by documentation-only types (`*Doc`) kept in step with `trace::parse`.

#![allow(dead_code)] // the wire-format types exist for the OpenAPI document only

use crate::profiler::statistics::compare::Comparison;
use crate::profiler::{Dialect, ProfilerConfig};
use crate::store::DialectSource;
use crate::trace::{EventState, EventType, Framework};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;
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
    /// The effective `ProfilerConfig` (toolkit field names): the run's settings merged over
    /// the defaults.
    pub profiler_config: ProfilerConfig,
    /// Free-form object stored with the run.
    #[schema(value_type = Object)]
    pub metadata: Value,
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

/// Body of `POST /v1/runs`. Every field is optional; a bare list is taken as `requests`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "nightly eval", "profiler_config": {"prompt_caching_prefixes": {"min_frequency": 0.3}},
    "metadata": {"commit": "4f2a9c1"}}))]
pub struct CreateRun {
    #[schema(max_length = 500)]
    pub name: Option<String>,
    /// `aiq-1.1` or `nat-1.9`; absent or null: nat-1.9 once a step in nat 1.9's schema (with a
    /// top-level `parent_id`) is stored, aiq-1.1 until then.
    pub toolkit: Option<Dialect>,
    pub profiler_config: Option<ProfilerConfigPatch>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// Steps in any input form.
    #[schema(schema_with = nullable_step_document)]
    pub requests: Option<Value>,
}

fn nullable_step_document() -> Schema {
    Schema::AnyOf(
        AnyOfBuilder::new()
            .item(<StepDocument as utoipa::PartialSchema>::schema())
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .build(),
    )
}

/// Body of `PATCH /v1/runs/{run_id}`: a JSON merge patch; `null` removes a key.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "renamed", "profiler_config": {"concurrency_spike_analysis": {"spike_threshold": 4}}}))]
pub struct PatchRun {
    #[schema(max_length = 500)]
    pub name: Option<String>,
    /// `aiq-1.1` or `nat-1.9`; null returns the run to detection.
    pub toolkit: Option<Dialect>,
    pub profiler_config: Option<ProfilerConfigPatch>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
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
}

// ----- the toolkit's formats, for documentation -----------------------------------------------
//
// These describe what the parser accepts, which is wider than what the toolkit writes: numbers may
// come as numeric strings (pydantic's lax mode), optional fields may be absent. Keep them in step
// with `trace::parse`; schemathesis (`scripts/schemathesis.sh`) checks that they agree.

use utoipa::openapi::schema::{AnyOfBuilder, ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::{KnownFormat, RefOr, SchemaFormat};

fn described(s: ObjectBuilder, d: &str) -> Schema {
    Schema::Object(s.description(Some(d)).build())
}

/// A float as pydantic's lax mode takes it: a number, a boolean or a numeric string.
fn lax_number() -> Schema {
    Schema::AnyOf(
        AnyOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Number)
                    .minimum(Some(-crate::trace::MAX_ABS_TIMESTAMP))
                    .maximum(Some(crate::trace::MAX_ABS_TIMESTAMP))
                    .build(),
            )
            .item(ObjectBuilder::new().schema_type(Type::Boolean).build())
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(r"^[ \t\n\r\f\v]*[+-]?([0-9](_?[0-9]){0,11}(\.([0-9](_?[0-9])*)?)?|\.[0-9](_?[0-9])*)[ \t\n\r\f\v]*$"))
                    .build(),
            )
            .description(Some("Epoch seconds (within ±1e12): a number, or a numeric string in plain decimal notation"))
            .build(),
    )
}

/// An int as pydantic's lax mode takes it (within 64 bits): an integer, a boolean or an
/// integer string (`"7"`, `"7.0"`).
fn lax_integer() -> Schema {
    Schema::AnyOf(
        AnyOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                    .minimum(Some(i64::MIN))
                    .maximum(Some(i64::MAX))
                    .build(),
            )
            .item(ObjectBuilder::new().schema_type(Type::Boolean).build())
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(
                        r"^[ \t\n\r\f\v]*[+-]?[0-9](_?[0-9]){0,14}(\.0+)?[ \t\n\r\f\v]*$",
                    ))
                    .build(),
            )
            .build(),
    )
}

/// Steps in one of the input forms, detected from the document (the EvalInput dump, an object,
/// is accepted too but not described here).
pub struct StepDocument;

impl utoipa::PartialSchema for StepDocument {
    fn schema() -> RefOr<Schema> {
        let list_of = |item: RefOr<Schema>| ArrayBuilder::new().items(item).build();
        RefOr::T(Schema::AnyOf(
            AnyOfBuilder::new()
                .item(list_of(RefOr::Ref(utoipa::openapi::Ref::from_schema_name("RequestDoc"))))
                .item(list_of(RefOr::Ref(utoipa::openapi::Ref::from_schema_name("EvalItemDoc"))))
                .item(list_of(RefOr::T(Schema::Array(list_of(RefOr::Ref(utoipa::openapi::Ref::from_schema_name("StepDoc")))))))
                .description(Some(
                    "The profiler form (`all_requests_profiler_traces.json`), the eval form (`workflow_output.json`) \
                     or a list of step lists, one per request. The form is read off the first item.",
                ))
                .build(),
        ))
    }
}

impl ToSchema for StepDocument {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((
            "RequestDoc".to_owned(),
            <RequestDoc as utoipa::PartialSchema>::schema(),
        ));
        <RequestDoc as ToSchema>::schemas(schemas);
        schemas.push((
            "EvalItemDoc".to_owned(),
            <EvalItemDoc as utoipa::PartialSchema>::schema(),
        ));
        <EvalItemDoc as ToSchema>::schemas(schemas);
        schemas.push((
            "StepDoc".to_owned(),
            <StepDoc as utoipa::PartialSchema>::schema(),
        ));
        <StepDoc as ToSchema>::schemas(schemas);
    }
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

/// One request of the profiler form.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RequestDoc {
    /// Requests are ordered by it; later batches with the same number append to the request.
    #[schema(minimum = 0, maximum = 2147483647)]
    pub request_number: i64,
    /// `null` is taken as no steps.
    #[schema(required = true)]
    pub intermediate_steps: Option<Vec<StepDoc>>,
}

/// One item of an eval `workflow_output.json`; other keys are ignored.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct EvalItemDoc {
    /// The dataset id; later batches with the same id append to the same request.
    pub id: Option<Value>,
    pub question: Option<Value>,
    pub answer: Option<Value>,
    pub generated_answer: Option<Value>,
    /// `null` is taken as no steps.
    #[schema(required = true)]
    pub intermediate_steps: Option<Vec<StepDoc>>,
}

/// An `IntermediateStep` (aiqtoolkit 1.1.0; nvidia-nat 1.9's additions are accepted too).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "function_ancestry": {"function_id": "008a05a6-c464-4159-8324-c9859b810e76", "function_name": "react_agent", "parent_id": "root", "parent_name": "root"},
    "payload": {"event_type": "LLM_END", "event_timestamp": 1748779200.4603305, "span_event_timestamp": 1748779200.0307972,
        "framework": "langchain", "name": "meta/llama-3.1-70b-instruct", "tags": null, "metadata": null,
        "data": {"input": "What is the capital of France?", "output": "Paris.", "chunk": null},
        "usage_info": {"token_usage": {"prompt_tokens": 413, "completion_tokens": 26, "total_tokens": 439}, "num_llm_calls": 1, "seconds_between_calls": 0},
        "UUID": "b9d179e0-6c0f-44f5-b813-0c4237730edf"}
}))]
pub struct StepDoc {
    /// Defaults to `{"function_id": "N/A", "function_name": "N/A"}` when absent.
    pub function_ancestry: Option<AncestryDoc>,
    #[schema(schema_with = payload_schema)]
    pub payload: Value,
    /// nvidia-nat 1.9 only: the parent span's UUID.
    pub parent_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AncestryDoc {
    pub function_id: String,
    pub function_name: String,
    pub parent_id: Option<String>,
    pub parent_name: Option<String>,
}

/// The payload: END events may carry `span_event_timestamp`, the others may not (a `oneOf` on
/// the event type). Extra keys are kept.
fn payload_schema() -> Schema {
    let variant = |events: &[EventType], span: Schema, what: &str| {
        let mut o =
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .required("event_type")
                .property(
                    "event_type",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some(events.iter().map(|e| e.as_str()))),
                )
                .property("event_timestamp", lax_number())
                .property("span_event_timestamp", span)
                .property(
                    "framework",
                    ObjectBuilder::new()
                        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                            Type::String,
                            Type::Null,
                        ]))
                        .enum_values(Some(
                            Framework::ALL
                                .into_iter()
                                .map(|f| Value::from(f.as_str()))
                                .chain([Value::Null]),
                        )),
                )
                .property(
                    "name",
                    ObjectBuilder::new().schema_type(
                        utoipa::openapi::schema::SchemaType::from_iter([Type::String, Type::Null]),
                    ),
                )
                .property(
                    "tags",
                    ArrayBuilder::new()
                        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                            Type::Array,
                            Type::Null,
                        ]))
                        .items(ObjectBuilder::new().schema_type(Type::String)),
                )
                .property(
                    "metadata",
                    ObjectBuilder::new().schema_type(
                        utoipa::openapi::schema::SchemaType::from_iter([Type::Object, Type::Null]),
                    ),
                )
                .property(
                    "data",
                    ObjectBuilder::new()
                        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                            Type::Object,
                            Type::Null,
                        ]))
                        .description(Some(
                            "`input`, `output` and `chunk`, any JSON; extra keys are kept",
                        )),
                )
                .property(
                    "usage_info",
                    Schema::AnyOf(
                        AnyOfBuilder::new()
                            .item(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                                "UsageInfoDoc",
                            )))
                            .item(ObjectBuilder::new().schema_type(Type::Null))
                            .build(),
                    ),
                )
                .property(
                    "UUID",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .description(Some(
                            "Ties a START to its END; derived from the step when absent",
                        )),
                );
        o = o.description(Some(what));
        Schema::Object(o.build())
    };
    let nullable_number = AnyOfBuilder::new()
        .item(lax_number())
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .build();
    let (end_events, other_events): (Vec<EventType>, Vec<EventType>) = EventType::ALL
        .into_iter()
        .partition(|e| e.state() == EventState::End);
    Schema::OneOf(
        utoipa::openapi::schema::OneOfBuilder::new()
            .item(variant(
                &end_events,
                Schema::AnyOf(nullable_number),
                "An END event; `span_event_timestamp` is the span's start",
            ))
            .item(variant(
                &other_events,
                described(
                    ObjectBuilder::new().schema_type(Type::Null),
                    "only END events have one",
                ),
                "A START or CHUNK event",
            ))
            .build(),
    )
}

/// Usage counters; a missing counter is 0. `null` means no usage information.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UsageInfoDoc {
    #[serde(default)]
    pub token_usage: TokenUsageDoc,
    #[serde(default)]
    #[schema(schema_with = lax_integer)]
    pub num_llm_calls: i64,
    #[serde(default)]
    #[schema(schema_with = lax_integer)]
    pub seconds_between_calls: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct TokenUsageDoc {
    #[serde(default)]
    #[schema(schema_with = lax_integer)]
    pub prompt_tokens: i64,
    #[serde(default)]
    #[schema(schema_with = lax_integer)]
    pub completion_tokens: i64,
    #[serde(default)]
    #[schema(schema_with = lax_integer)]
    pub total_tokens: i64,
}

/// The toolkit's `ProfilerConfig`. Every field is optional and merged over the default; `null`
/// also means "the default" (and, in a PATCH, removes an earlier setting).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfilerConfigPatch {
    /// Fit the token-usage forecast (`GET .../forecast`).
    pub token_usage_forecast: Option<bool>,
    /// `token_uniqueness` in the metrics.
    pub token_uniqueness_forecast: Option<bool>,
    /// `workflow_runtimes` in the metrics.
    pub workflow_runtime_forecast: Option<bool>,
    /// The six NOVA columns of the CSV.
    pub compute_llm_metrics: Option<bool>,
    /// Leave the prompt/output/token text out of the CSV.
    pub csv_exclude_io_text: Option<bool>,
    pub prompt_caching_prefixes: Option<PromptCachingPatch>,
    pub bottleneck_analysis: Option<BottleneckPatch>,
    pub concurrency_spike_analysis: Option<SpikeConfigPatch>,
    pub prefix_span_analysis: Option<PrefixSpanConfigPatch>,
    /// nvidia-nat: also enables `workflow_runtimes`.
    pub base_metrics: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptCachingPatch {
    pub enable: Option<bool>,
    /// Share of calls a prefix needs (LLM_END rows count in the denominator, as in the toolkit).
    pub min_frequency: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BottleneckPatch {
    pub enable_simple_stack: Option<bool>,
    pub enable_nested_stack: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpikeConfigPatch {
    pub enable: Option<bool>,
    #[schema(minimum = -9007199254740992i64, maximum = 9007199254740992i64)]
    pub spike_threshold: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrefixSpanConfigPatch {
    pub enable: Option<bool>,
    /// Below 1: a fraction of the requests; 1 or more: an absolute count.
    #[schema(exclusive_minimum = 0)]
    pub min_support: Option<f64>,
    pub min_coverage: Option<f64>,
    #[schema(minimum = -9007199254740992i64, maximum = 9007199254740992i64)]
    pub max_text_len: Option<i64>,
    #[schema(minimum = 0, maximum = 9007199254740992i64)]
    pub top_k: Option<i64>,
    /// Accepted; it never had an effect in the toolkit.
    pub chain_with_common_prefixes: Option<bool>,
}

// ----- statistics -------------------------------------------------------------------------------

/// Body of `POST /v1/compare`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"baseline": "0b6f3b1c-3a0a-4f5e-9f77-2d8c7e1f9a10", "candidate": "5d1c8f0e-2b9a-4c3d-8e7f-1a2b3c4d5e6f"}))]
pub struct CompareRequest {
    pub baseline: Uuid,
    pub candidate: Uuid,
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
}
