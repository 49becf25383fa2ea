//! `POST /v1/traces`: the OTLP/HTTP trace receiver (docs/otlp.md).
//!
//! It answers the way OTLP exporters expect rather than with problem+json: a success is an
//! `ExportTraceServiceResponse` and a failure a `google.rpc.Status`, each in the request's
//! encoding; 429/503 carry `Retry-After`, which the exporters honour before retrying. Everything
//! else (keys, the ingest gate, validation, step identity, storage) is the step API's.

use super::AppState;
use super::body::{admit, is_gzip_body, read_limited};
use super::error::{ApiError, ApiResult};
use crate::ingest::OtlpPayload;
use crate::otlp::{self, Encoding, Status};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

/// The largest export accepted once inflated. Exporters send at most 512 spans per export by
/// default, well under a megabyte; this bounds what one decoded request can take in memory.
pub const MAX_OTLP_BYTES: usize = 32 * 1024 * 1024;
/// The header that sends every span of an export to one existing run.
pub const RUN_HEADER: &str = "x-agentprof-run-id";

/// OTLP trace export
///
/// Receives spans from any OpenTelemetry exporter (OTLP/HTTP, `application/x-protobuf` or
/// `application/json`, optionally gzip) and stores each as the toolkit's steps: a START at
/// its start, an END at its end (docs/otlp.md has the mapping). A trace is a request of the run;
/// a span sent again is stored once. The run is the one named by the `x-agentprof-run-id` header,
/// else by the resource attribute `agentprof.run.id` (created on first sight), else one run per
/// `service.name`, created on first sight with a fixed id. Spans that cannot be mapped are
/// counted in `partial_success`. Failures are `google.rpc.Status` messages in the request's
/// encoding; 429/503 carry `Retry-After`.
#[utoipa::path(
    post, path = "/v1/traces", tag = "otlp",
    params(
        ("x-agentprof-run-id" = Option<Uuid>, Header, description = "An existing run that every span of this export joins"),
    ),
    request_body(
        description = "An OTLP `ExportTraceServiceRequest`",
        content(
            (Vec<u8> = "application/x-protobuf"),
            (Value = "application/json"),
        ),
    ),
    responses(
        (status = 200, description = "Stored; `partialSuccess` counts the spans that were not", body = otlp::ExportResponse, content_type = "application/json",
            headers(("x-agentprof-run-id" = String, description = "The runs the spans went to, comma separated (absent when none was stored)"))),
        (status = 400, description = "Not a decodable export, or steps the mapping could not validate (`google.rpc.Status`)"),
        (status = 401, description = "No valid API key"),
        (status = 403, description = "A read-only API key"),
        (status = 404, description = "The run named by `x-agentprof-run-id` does not exist"),
        (status = 413, description = "Over the body, inflated-size, span or batch-memory limit"),
        (status = 415, description = "Neither protobuf nor JSON, or an unsupported Content-Encoding"),
        (status = 503, description = "Every ingest slot is busy or the database is unreachable; retry after `Retry-After`"),
    ),
    security(("bearer" = []))
)]
pub async fn export_traces(State(st): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let encoding = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(Encoding::from_content_type);
    let Some(encoding) = encoding else {
        return failure(
            Encoding::Json,
            ApiError::UnsupportedMediaType(
                "send an OTLP export as application/x-protobuf or application/json".to_owned(),
            ),
        );
    };
    match export(&st, &headers, body, encoding).await {
        Ok(resp) => resp,
        Err(e) => failure(encoding, e),
    }
}

async fn export(
    st: &AppState,
    headers: &HeaderMap,
    body: Body,
    encoding: Encoding,
) -> ApiResult<Response> {
    let header_run = named_run(st, headers).await?;
    let (body, admission) = admit(&st.ingest, body, st.limits).await?;
    let raw = read_limited(headers, body, st.limits).await?;
    let payload = OtlpPayload {
        encoding,
        gzip: is_gzip_body(headers, &raw)?,
        bytes: raw,
        limit: max_export_bytes(st) as u64,
    };
    let outcome = st.ingest.otlp(admission, payload, header_run).await?;
    let body = otlp::ExportResponse::new(outcome.rejected_spans, &outcome.message).encode(encoding);
    let mut resp = encoded(StatusCode::OK, encoding, body);
    // Which runs the spans went to: the OTLP body has no place for it.
    let runs: Vec<String> = outcome.runs.iter().map(Uuid::to_string).collect();
    if let Ok(value) = HeaderValue::from_str(&runs.join(", "))
        && !runs.is_empty()
    {
        resp.headers_mut().insert(RUN_HEADER, value);
    }
    Ok(resp)
}

/// The run an export's `x-agentprof-run-id` header (gRPC: metadata) names, if any; it must exist,
/// which is checked before the body is read (a 404 costs the sender nothing).
pub(crate) async fn named_run(st: &AppState, headers: &HeaderMap) -> ApiResult<Option<Uuid>> {
    let Some(v) = headers.get(RUN_HEADER) else {
        return Ok(None);
    };
    let id = v
        .to_str()
        .ok()
        .and_then(|s| Uuid::parse_str(s.trim()).ok())
        .ok_or_else(|| ApiError::BadRequest(format!("{RUN_HEADER} must be a run id (a UUID)")))?;
    st.cache.snapshot(id).await?;
    Ok(Some(id))
}

/// The largest export taken once inflated, over either transport.
pub(crate) fn max_export_bytes(st: &AppState) -> usize {
    st.limits.max_decompressed.min(MAX_OTLP_BYTES)
}

fn encoded(status: StatusCode, encoding: Encoding, body: Vec<u8>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(encoding.content_type()),
        )],
        body,
    )
        .into_response()
}

/// An error as OTLP/HTTP gives it: the status and headers (`Retry-After`) of our own error,
/// with a `google.rpc.Status` body in the request's encoding.
fn failure(encoding: Encoding, err: ApiError) -> Response {
    let problem = err.problem();
    let code = grpc_code(StatusCode::from_u16(problem.status).unwrap_or(StatusCode::BAD_REQUEST));
    let ours = err.into_response();
    let (mut parts, _) = ours.into_parts();
    let status = Status {
        code,
        message: problem.detail,
    };
    let body = status.encode(encoding);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(encoding.content_type()),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

/// The gRPC status code closest to an HTTP status (google.rpc.Code).
pub(crate) fn grpc_code(status: StatusCode) -> i32 {
    match status.as_u16() {
        400 | 415 | 422 => 3, // INVALID_ARGUMENT
        401 => 16,            // UNAUTHENTICATED
        403 => 7,             // PERMISSION_DENIED
        404 => 5,             // NOT_FOUND
        413 => 8,             // RESOURCE_EXHAUSTED
        429 | 503 => 14,      // UNAVAILABLE
        _ => 13,              // INTERNAL
    }
}
