//! The toolkit's wire format: `IntermediateStep` (aiqtoolkit 1.1.0, plus the nvidia-nat 1.9
//! additions), the documents that carry steps, and their validation with JSON-pointer errors.
//!
//! This layer knows nothing of HTTP, storage or metrics: bytes in, typed steps out.

mod compact;
mod direct;
mod document;
mod input;
mod model;
mod parse;
#[cfg(feature = "openapi")]
pub mod schema;
mod source;
mod split;
#[cfg(test)]
mod testutil;

pub use document::{DocRequest, Document, KeepSteps, StepSink, Wrapped};
pub use input::{
    Batch, EvalItem, InputForm, MAX_REQUEST_NUMBER, NumberedRequest, ParseOptions, RequestInput,
    TraceError, describe_start, gunzip, is_gzip, json_value, parse_document, parse_json_document,
    parse_step, parse_value, read_value,
};
pub use model::{
    EventState, EventType, Framework, InSchema, IntermediateStep, InvocationNode, ObjectText,
    Payload, StepSchema, StreamEventData, TokenUsage, UsageInfo,
};
pub use parse::{
    FieldError, MAX_ABS_TIMESTAMP, MAX_FIELD_ERRORS, MAX_VALUE_DEPTH, from_value_at,
    pointer_segment, type_name, value_fits,
};
pub use source::{JsonSource, read_json_document, read_json_parallel, read_json_wrapped};
