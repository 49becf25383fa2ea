//! OpenTelemetry traces received over OTLP/HTTP, turned into the toolkit's steps
//! (docs/otlp.md).
//!
//! Agents instrumented with OpenInference, or NeMo Agent Toolkit's own `otelcollector` exporter,
//! send spans rather than `IntermediateStep`s. A span is a call with a start and an end, which is
//! what a START/END step pair records, so each span becomes those two steps (plus one
//! `LLM_NEW_TOKEN` per streamed-token event). The steps then go through the same validation,
//! identity and storage as any posted batch: a trace is a request (the eval form's `id` is the
//! trace id), and a span sent again yields the same steps, which the store skips.
//!
//! The mapping is a function of one span and its resource, never of the other spans in the same
//! export: exporters send children before their parents, and a span resent in another export
//! must give the same steps or it would be stored twice.
//!
//! Pure: decoding and mapping only. The HTTP side (`api::otlp`) picks the runs, stores the steps
//! and answers.

mod json;
mod mapping;
mod wire;

pub use mapping::{MAX_SERVICE_NAME, RunGroup, RunTarget, Walked, walk};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use serde::Serialize;

/// The two OTLP/HTTP encodings. A response uses the request's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// The encoding a `Content-Type` names (parameters such as `charset` are ignored).
    pub fn from_content_type(value: &str) -> Option<Encoding> {
        let media = value.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("application/x-protobuf")
            || media.eq_ignore_ascii_case("application/protobuf")
        {
            Some(Encoding::Protobuf)
        } else if media.eq_ignore_ascii_case("application/json") {
            Some(Encoding::Json)
        } else {
            None
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// The most spans one export may carry. Exporters send at most 512 per export by default.
pub const MAX_SPANS: usize = 100_000;
/// The most `ResourceSpans` and `ScopeSpans` one export may carry together: each costs memory
/// once decoded, spans or not.
pub const MAX_CONTAINERS: usize = 10_000;
/// How deep an attribute value may nest lists and maps: as deep as protobuf decoding goes (its
/// recursion limit of 100 messages, two per level), and JSON is held to the same.
pub const MAX_ATTRIBUTE_DEPTH: usize = 48;

/// How many containers and spans an export holds (or may hold).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// `ResourceSpans` and `ScopeSpans`.
    pub containers: usize,
    pub spans: usize,
}

impl Counts {
    /// The limits every export is held to.
    pub const LIMITS: Counts = Counts {
        containers: MAX_CONTAINERS,
        spans: MAX_SPANS,
    };

    fn check(&self, limits: &Counts) -> Result<(), DecodeError> {
        if self.spans > limits.spans {
            return Err(DecodeError::TooMany(format!(
                "an export may carry at most {} spans: lower the exporter's batch size",
                limits.spans
            )));
        }
        if self.containers > limits.containers {
            return Err(DecodeError::TooMany(format!(
                "an export may carry at most {} resource and scope entries together",
                limits.containers
            )));
        }
        Ok(())
    }
}

/// Why a body is not an export this server takes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// Not an `ExportTraceServiceRequest` in the encoding it claims.
    #[error("{0}")]
    Malformed(String),
    /// More than one export may carry.
    #[error("{0}")]
    TooMany(String),
}

impl DecodeError {
    fn malformed(encoding: &str, reason: impl std::fmt::Display) -> DecodeError {
        DecodeError::Malformed(format!(
            "the body is not an OTLP ExportTraceServiceRequest in {encoding}: {reason}"
        ))
    }

    fn too_deep() -> DecodeError {
        DecodeError::Malformed(format!(
            "an attribute value nests lists and maps deeper than {MAX_ATTRIBUTE_DEPTH} levels"
        ))
    }
}

/// Decodes an (inflated) export request, after counting what it holds against [`Counts::LIMITS`]
/// without decoding it: a small body of many empty entries is refused before it takes memory.
pub fn decode(encoding: Encoding, body: &[u8]) -> Result<ExportTraceServiceRequest, DecodeError> {
    // Both decoders recurse once per level of nesting, with frames that in an unoptimised build
    // outgrow a pool thread's 2 MiB well before the nesting limits: they run on a thread of
    // their own with room to spare.
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("otlp-decode".to_owned())
            .stack_size(DECODE_STACK)
            .spawn_scoped(scope, || decode_here(encoding, body))
            .map_err(|e| DecodeError::Malformed(format!("no thread to decode the export on: {e}")))?
            .join()
            .unwrap_or_else(|_| {
                Err(DecodeError::Malformed(
                    "decoding the export failed".to_owned(),
                ))
            })
    })
}

/// Stack for the thread that decodes an export.
const DECODE_STACK: usize = 32 * 1024 * 1024;

fn decode_here(encoding: Encoding, body: &[u8]) -> Result<ExportTraceServiceRequest, DecodeError> {
    match encoding {
        Encoding::Protobuf => {
            wire::count(body, &Counts::LIMITS)?;
            ExportTraceServiceRequest::decode(body).map_err(|e| {
                if e.to_string().contains("recursion limit") {
                    DecodeError::too_deep()
                } else {
                    DecodeError::malformed("protobuf", e)
                }
            })
        }
        Encoding::Json => {
            json::count(body, &Counts::LIMITS)?;
            json::decode(body)
        }
    }
}

/// `ExportTraceServiceResponse`, the success answer. Ours rather than opentelemetry-proto's so
/// that its OTLP/JSON form and its OpenAPI schema come from one type (and a full success is
/// `{}`, where the proto type's serde would write `"partialSuccess": null`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = ExportTraceServiceResponse))]
#[serde(rename_all = "camelCase")]
pub struct ExportResponse {
    /// Present only when some spans were not stored, as the specification asks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial_success: Option<PartialSuccess>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = ExportTracePartialSuccess))]
#[serde(rename_all = "camelCase")]
pub struct PartialSuccess {
    /// Spans that were not stored.
    pub rejected_spans: i64,
    /// Why, for the first few of them.
    pub error_message: String,
}

impl ExportResponse {
    pub fn new(rejected: u64, message: &str) -> ExportResponse {
        ExportResponse {
            partial_success: (rejected > 0 || !message.is_empty()).then(|| PartialSuccess {
                rejected_spans: i64::try_from(rejected).unwrap_or(i64::MAX),
                error_message: message.to_owned(),
            }),
        }
    }

    pub fn encode(&self, encoding: Encoding) -> Vec<u8> {
        match encoding {
            Encoding::Protobuf => ExportTraceServiceResponse {
                partial_success: self
                    .partial_success
                    .as_ref()
                    .map(|p| ExportTracePartialSuccess {
                        rejected_spans: p.rejected_spans,
                        error_message: p.error_message.clone(),
                    }),
            }
            .encode_to_vec(),
            // Strings and integers only: serialisation cannot fail.
            Encoding::Json => serde_json::to_vec(self).unwrap_or_default(),
        }
    }
}

/// `google.rpc.Status`, the body OTLP/HTTP gives a failed export.
#[derive(Clone, PartialEq, Message, Serialize)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

impl Status {
    pub fn encode(&self, encoding: Encoding) -> Vec<u8> {
        match encoding {
            Encoding::Protobuf => self.encode_to_vec(),
            // A number and a string: serialisation cannot fail.
            Encoding::Json => serde_json::to_vec(self).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(
            Encoding::from_content_type("application/x-protobuf"),
            Some(Encoding::Protobuf)
        );
        assert_eq!(
            Encoding::from_content_type("Application/JSON; charset=utf-8"),
            Some(Encoding::Json)
        );
        assert_eq!(Encoding::from_content_type("text/plain"), None);
    }

    #[test]
    fn json_follows_the_otlp_mapping() {
        // Hex ids, string nanoseconds, integer enums, and intValue as a string or a number.
        let body = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},
            "scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
            "name":"llm","kind":1,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000001500000000",
            "attributes":[{"key":"llm.token_count.prompt","value":{"intValue":"12"}},
                          {"key":"llm.token_count.completion","value":{"intValue":3}}]}]}]}]}"#;
        let req = decode(Encoding::Json, body).unwrap();
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.trace_id.len(), 16);
        assert_eq!(span.span_id.len(), 8);
        assert_eq!(span.end_time_unix_nano, 1_700_000_001_500_000_000);
    }

    #[test]
    fn attribute_nesting_is_held_to_one_depth_in_both_encodings() {
        use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
        let export = |depth: usize| {
            let mut v = AnyValue {
                value: Some(any_value::Value::IntValue(1)),
            };
            for _ in 1..depth {
                v = AnyValue {
                    value: Some(any_value::Value::ArrayValue(ArrayValue { values: vec![v] })),
                };
            }
            ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    scope_spans: vec![ScopeSpans {
                        spans: vec![Span {
                            attributes: vec![KeyValue {
                                key: "k".into(),
                                value: Some(v),
                            }],
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            }
        };
        for (depth, ok) in [
            (MAX_ATTRIBUTE_DEPTH, true),
            (MAX_ATTRIBUTE_DEPTH + 1, false),
        ] {
            let req = export(depth);
            let proto = decode(Encoding::Protobuf, &req.encode_to_vec());
            // Serialising this deep takes more stack than a test thread has.
            let text = std::thread::Builder::new()
                .stack_size(64 << 20)
                .spawn(move || serde_json::to_string(&req).unwrap())
                .unwrap()
                .join()
                .unwrap();
            let json = decode(Encoding::Json, text.as_bytes());
            assert_eq!(proto.is_ok(), ok, "protobuf at depth {depth}");
            assert_eq!(json.is_ok(), ok, "JSON at depth {depth}");
            if !ok {
                assert_eq!(proto.unwrap_err(), json.unwrap_err());
            }
        }
    }

    #[test]
    fn garbage_is_a_decode_error() {
        assert!(decode(Encoding::Protobuf, b"\xff\xff\xff").is_err());
        assert!(decode(Encoding::Json, b"[1,2]").is_err());
    }

    #[test]
    fn a_full_success_has_no_partial_success() {
        assert_eq!(ExportResponse::new(0, "").encode(Encoding::Json), b"{}");
        assert!(
            ExportResponse::new(0, "")
                .encode(Encoding::Protobuf)
                .is_empty()
        );
        let partial = ExportResponse::new(2, "2 spans lack a span id");
        let json: serde_json::Value =
            serde_json::from_slice(&partial.encode(Encoding::Json)).unwrap();
        assert_eq!(json["partialSuccess"]["rejectedSpans"], 2);
        let proto =
            ExportTraceServiceResponse::decode(partial.encode(Encoding::Protobuf).as_slice())
                .unwrap();
        assert_eq!(proto.partial_success.unwrap().rejected_spans, 2);
    }
}
