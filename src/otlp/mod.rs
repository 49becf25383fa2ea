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

mod mapping;

pub use mapping::{MappedExport, RunGroup, RunTarget, map_export};

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

/// Why a body is not an export request.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the body is not an OTLP ExportTraceServiceRequest in {encoding}: {reason}")]
pub struct DecodeError {
    encoding: &'static str,
    reason: String,
}

/// Decodes an (inflated) export request. JSON goes through sonic-rs because the service's
/// serde_json is built with `arbitrary_precision`, under which the OTLP types' untagged
/// `intValue` (string or number) does not deserialise.
pub fn decode(encoding: Encoding, body: &[u8]) -> Result<ExportTraceServiceRequest, DecodeError> {
    match encoding {
        Encoding::Protobuf => ExportTraceServiceRequest::decode(body).map_err(|e| DecodeError {
            encoding: "protobuf",
            reason: e.to_string(),
        }),
        Encoding::Json => sonic_rs::from_slice(body).map_err(|e| DecodeError {
            encoding: "JSON",
            reason: e.to_string(),
        }),
    }
}

/// The number of spans in an export, counted before any is mapped.
pub fn span_count(req: &ExportTraceServiceRequest) -> usize {
    req.resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum()
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
        assert_eq!(span_count(&req), 1);
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
