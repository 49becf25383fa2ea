//! The step documents the parser reads, described for the OpenAPI document.
//!
//! What `trace::parse` accepts is wider than any Rust type it becomes (numbers may come as numeric
//! strings, pydantic's lax mode; optional fields may be absent; unknown keys are kept), so these
//! schemas are written out rather than derived. Two checks hold them to the parser:
//! `tests/openapi.rs` validates every fixture input against them, and schemathesis
//! (`scripts/schemathesis.sh`) sends what they allow.

#![allow(dead_code)] // the `*Doc` types exist for their schemas only

use super::{EventState, EventType, Framework};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
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

/// A step document or null: the `requests` of a create body.
pub fn nullable_step_document() -> Schema {
    Schema::AnyOf(
        AnyOfBuilder::new()
            .item(<StepDocument as utoipa::PartialSchema>::schema())
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .build(),
    )
}
