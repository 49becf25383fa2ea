//! `POST /v1/traces`: the OTLP/HTTP trace receiver (docs/otlp.md).
//!
//! It answers the way OTLP exporters expect rather than with problem+json: a success is an
//! `ExportTraceServiceResponse` and a failure a `google.rpc.Status`, each in the request's
//! encoding; 429/503 carry `Retry-After`, which the exporters honour before retrying. Everything
//! else (keys, the ingest gate, validation, step identity, storage) is the step API's.

use super::body::{is_gzip_body, read_limited};
use super::error::{ApiError, ApiResult};
use super::{AppState, blocking};
use crate::otlp::{self, Encoding, RunGroup, RunTarget, Status};
use crate::store::{NewRun, PreparedBatch, Preparer};
use crate::trace::{ParseOptions, gunzip, read_value};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use uuid::Uuid;

/// The largest export accepted once inflated. Exporters send at most 512 spans per export by
/// default, well under a megabyte; this bounds what one decoded request can take in memory.
pub const MAX_OTLP_BYTES: usize = 32 * 1024 * 1024;
/// The most spans one export may carry.
pub const MAX_OTLP_SPANS: usize = 100_000;
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
        (status = 200, description = "Stored; `partialSuccess` counts the spans that were not", body = otlp::ExportResponse, content_type = "application/json"),
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
    let header_run = match headers.get(RUN_HEADER) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| Uuid::parse_str(s.trim()).ok())
                .ok_or_else(|| {
                    ApiError::BadRequest(format!("{RUN_HEADER} must be a run id (a UUID)"))
                })?,
        ),
    };
    if let Some(id) = header_run {
        // A missing run is a 404 before the body is read.
        st.cache.snapshot(id).await?;
    }
    let permit = st.ingest.enter().await?;
    let raw = read_limited(headers, body, st.limits).await?;
    let gzip = is_gzip_body(headers, &raw)?;
    let inflated_limit = st.limits.max_decompressed.min(MAX_OTLP_BYTES) as u64;
    let budget = st.limits.max_batch_memory;
    let (groups, rejected, message) = blocking(move || {
        let inflated;
        let bytes: &[u8] = if gzip {
            inflated =
                gunzip(&raw, Some(inflated_limit)).map_err(|e| ApiError::from_trace(e, ""))?;
            &inflated
        } else if raw.len() as u64 > inflated_limit {
            return Err(ApiError::TooLarge {
                limit: inflated_limit as usize,
            });
        } else {
            &raw
        };
        let request =
            otlp::decode(encoding, bytes).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let spans = otlp::span_count(&request);
        if spans > MAX_OTLP_SPANS {
            return Err(ApiError::BatchTooLarge(format!(
                "an export may carry at most {MAX_OTLP_SPANS} spans, this one has {spans}: \
                 lower the exporter's batch size"
            )));
        }
        let mapped = otlp::map_export(&request, header_run);
        drop(request);
        let share = budget / mapped.groups.len().max(1);
        let groups = mapped
            .groups
            .into_iter()
            .map(|g| prepare(g, share))
            .collect::<ApiResult<Vec<_>>>()?;
        Ok((groups, mapped.rejected, mapped.message))
    })
    .await?;
    let mut stored_spans = 0u64;
    for (group, batch) in groups {
        let id = group.target.run_id();
        if !matches!(group.target, RunTarget::Header(_)) {
            let created = st.store.ensure_run(id, new_run(&group)).await?;
            if created {
                tracing::info!(run = %id, service = %group.service, "OTLP: created a run on first sight");
            }
        }
        let written = st.store.append(id, batch, None).await?;
        st.cache.remember(written.record).await?;
        stored_spans += group.spans as u64;
    }
    drop(permit);
    metrics::counter!("agentprof_otlp_spans_total", "outcome" => "stored").increment(stored_spans);
    metrics::counter!("agentprof_otlp_spans_total", "outcome" => "rejected").increment(rejected);
    let body = otlp::ExportResponse::new(rejected, &message).encode(encoding);
    Ok(encoded(StatusCode::OK, encoding, body))
}

/// A group's requests validated and prepared like any posted batch (eval form, `id` = trace id).
fn prepare(mut group: RunGroup, budget: usize) -> ApiResult<(RunGroup, PreparedBatch)> {
    let mut preparer = Preparer::new(budget);
    let requests = Value::Array(std::mem::take(&mut group.requests));
    // The pointers of a validation error point into the mapped steps, not the sender's body: an
    // OTLP sender gets a 400 that says which value failed.
    let doc = read_value(requests, &ParseOptions::default(), &mut preparer).map_err(|e| {
        match ApiError::from_trace(e, "") {
            ApiError::Invalid { detail, .. } => ApiError::BadRequest(format!(
                "a span maps to a step that fails validation: {detail}"
            )),
            other => other,
        }
    })?;
    Ok((group, preparer.finish(doc)))
}

/// The run a resource's spans create on first sight: named after the service, marked as OTLP's.
fn new_run(group: &RunGroup) -> NewRun {
    NewRun {
        name: group.service.clone(),
        profiler_config: json!({}),
        metadata: json!({"source": "otlp", "service.name": group.service}),
        toolkit: None,
    }
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
fn grpc_code(status: StatusCode) -> i32 {
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
