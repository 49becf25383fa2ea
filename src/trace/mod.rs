//! The toolkit's wire format: `IntermediateStep` (aiqtoolkit 1.1.0, plus the nvidia-nat 1.9
//! additions), the documents that carry steps, and their validation with JSON-pointer errors.
//!
//! This layer knows nothing of HTTP, storage or metrics: bytes in, typed steps out.
//!
//! The door: [`read`], [`read_wrapped`] and [`read_parallel`] stream a document's steps into a
//! [`StepSink`] as they are read (the service prepares each within its budget); [`parse`],
//! [`parse_value`] and [`parse_step`] return the steps themselves. Everything else here serves
//! them.

mod compact;
mod direct;
mod document;
mod model;
mod parse;
mod read;
mod render;
#[cfg(feature = "openapi")]
pub mod schema;
mod source;
mod split;
#[cfg(test)]
mod testutil;
mod text;
mod types;

pub use document::{DocRequest, Document, KeepSteps, StepSink, Wrapped};
pub use model::{
    EventState, EventType, Framework, InSchema, IntermediateStep, InvocationNode, ObjectText,
    Payload, StepSchema, StreamEventData, TokenUsage, UsageInfo,
};
pub use parse::{
    FieldError, MAX_ABS_TIMESTAMP, MAX_FIELD_ERRORS, MAX_VALUE_DEPTH, from_text_at, from_value_at,
    object_from_text_at, pointer_segment, type_name, value_fits,
};
pub use read::{Batch, RequestInput, parse, parse_step, parse_value};
pub use render::{STEP_DEPTH, TracesWriter, render_step, render_step_in};
pub use source::{JsonSource, read, read_parallel, read_wrapped};
pub use text::{gunzip, is_gzip, json_value};
pub use types::{
    EvalItem, InputForm, MAX_REQUEST_NUMBER, NumberedRequest, ParseOptions, TraceError,
};
