//! The run resource: create, list, read, change, delete, and append step batches.

use super::AppState;
use super::auth::Client;
use super::body::{IdempotencyKeyHeader, IngestBody, JsonBytes, RunId};
use super::error::{
    ApiError, ApiResult, BodyProblems, ConflictProblems, Problem, ReadProblems, RunProblems,
    WriteProblems,
};
use super::schema::*;
use crate::ingest::request::{checked_prices, profiler_config};
use crate::jsontext::ObjectJson;
use crate::profiler::statistics::cost::PriceTable;
use crate::profiler::{ProfilerConfig, warnings};
use crate::store::{IngestOutcome, RunChanges, RunCursor, RunRecord, StoreError};
use crate::trace::schema::StepDocument;
use crate::trace::{FieldError, object_from_text_at};
use axum::Extension;
use axum::Json;
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use utoipa::IntoParams;

/// The run as the API shows it, with the effective profiler config.
pub(crate) fn run_view(r: RunRecord) -> ApiResult<RunView> {
    let config = ProfilerConfig::from_json(r.profiler_config.clone()).map_err(|e| {
        ApiError::internal(format!(
            "stored profiler config of run {} is invalid: {e}",
            r.id
        ))
    })?;
    let (toolkit, toolkit_source) = r.dialect();
    let warnings = warnings::of_run(&r.step_facts(), &config, toolkit);
    Ok(RunView {
        id: r.id,
        toolkit,
        toolkit_source,
        warnings,
        name: r.name,
        created_at: r.created_at,
        updated_at: r.updated_at,
        version: r.version,
        request_count: r.request_count,
        step_count: r.step_count,
        retention_seconds: r.retention_seconds,
        prices: r.prices,
        summary: RunSummary {
            first_event_at: r.summary.first_event_at,
            last_event_at: r.summary.last_event_at,
            wall_time_seconds: r
                .summary
                .first_event_at
                .zip(r.summary.last_event_at)
                .map(|(a, b)| b - a),
            llm_calls: r.summary.llm_calls,
            llm_tokens: r.summary.llm_tokens,
        },
        profiler_config: config,
        scores: crate::profiler::statistics::scores::summary(&r.metadata),
        metadata: r.metadata,
    })
}

pub(crate) fn ingest_view(run: &RunView, o: IngestOutcome) -> IngestResponse {
    IngestResponse {
        run_id: run.id,
        toolkit: run.toolkit,
        warnings: run.warnings.clone(),
        version: o.version,
        requests: RequestCounts {
            received: o.requests_received,
            created: o.requests_created,
        },
        steps: StepCounts {
            received: o.steps_received,
            stored: o.steps_stored,
            skipped_duplicate: o.steps_skipped_duplicate,
        },
    }
}

/// Create a run
///
/// Creates a run, optionally with its first batch of steps in `requests` (any input form: the
/// profiler's `all_requests_profiler_traces.json`, the eval `workflow_output.json`, or a list of
/// step lists). The run and its steps are stored in one transaction: if any step is invalid,
/// nothing is created. A bare JSON list as the body is shorthand for `{"requests": [...]}`.
/// `profiler_config` takes the toolkit's `ProfilerConfig` field names and is merged over the
/// default (every analysis on, the toolkit's default thresholds).
#[utoipa::path(
    post, path = "/v1/runs", tag = "runs",
    params(IdempotencyParams),
    request_body(content = CreateRunBody, description = "The run, optionally with steps", content_type = "application/json"),
    responses(
        (status = 201, description = "Run created (or, for a repeated Idempotency-Key, the run it created)", body = CreatedRun,
            headers(("Location" = String, description = "URL of the new run"),
                    ("Idempotent-Replayed" = String, description = "`true` when this is the first response to the Idempotency-Key again"))),
        BodyProblems, ReadProblems, WriteProblems,
    ),
    security(("bearer" = []))
)]
pub async fn create_run(
    State(st): State<AppState>,
    Extension(client): Extension<Client>,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    body: IngestBody,
) -> ApiResult<Response> {
    let written = st
        .ingest
        .create(body.admission, body.payload, key, &client.0)
        .await?;
    let id = written.record.id;
    let run = run_view(written.record)?;
    let view = CreatedRun {
        ingest: written.outcome.map(|o| ingest_view(&run, o)),
        run,
    };
    let mut resp = (StatusCode::CREATED, Json(view)).into_response();
    if let Ok(loc) = HeaderValue::from_str(&format!("/v1/runs/{id}")) {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    mark_replayed(&mut resp, written.replayed);
    Ok(resp)
}

/// The `Idempotency-Key` request header, as the OpenAPI document describes it.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // read by the `IdempotencyKeyHeader` extractor; here for the document
pub struct IdempotencyParams {
    /// Makes a retry safe (IETF httpapi `Idempotency-Key`): send a new unique value (a UUID) with
    /// each request and the same value with each retry of it. A retry with the same key and body
    /// gets the first response back (same run id, same counts, `Idempotent-Replayed: true`)
    /// and writes nothing; the same key with another body is a 422 problem
    /// (`idempotency-key-reused`). Keys are kept for `AGENTPROF_IDEMPOTENCY_WINDOW_SECS` (24 h by
    /// default), per API key. Without a key, a retried batch still stores nothing, because a
    /// step already stored is skipped; with one, identical steps in a new batch are kept.
    #[param(
        rename = "Idempotency-Key",
        min_length = 1,
        max_length = 255,
        pattern = "^[ -~]+$"
    )]
    pub idempotency_key: Option<String>,
}

/// Tells a client that it got the first response to its key again (the name Stripe and others
/// use; the draft leaves it open).
fn mark_replayed(resp: &mut Response, replayed: bool) {
    if replayed {
        resp.headers_mut().insert(
            HeaderName::from_static("idempotent-replayed"),
            HeaderValue::from_static("true"),
        );
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000, example = 50)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^([0-9]{1,16}-[0-9a-fA-F]{32})?$")]
    pub cursor: Option<String>,
    /// Only runs whose name contains this (ASCII letters in either case); at most 200
    /// characters, none of them NUL.
    #[param(max_length = 200, pattern = "^[^\\u0000]*$")]
    pub name: Option<String>,
}

/// List runs
///
/// Newest first, a page at a time; pass `next_cursor` back as `cursor` for the next page.
#[utoipa::path(
    get, path = "/v1/runs", tag = "runs", params(ListParams),
    responses(
        (status = 200, description = "A page of runs", body = RunList),
        (status = 400, description = "Bad limit or cursor", body = Problem, content_type = "application/problem+json"),
        ReadProblems,
    ),
    security(("bearer" = []))
)]
pub async fn list_runs(
    State(st): State<AppState>,
    query: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<RunList>> {
    let Query(p) =
        query.map_err(|e| ApiError::BadRequest(format!("bad query string: {}", e.body_text())))?;
    let limit = p.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::BadRequest(
            "limit must be between 1 and 1000".to_owned(),
        ));
    }
    let after = match p.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(RunCursor::decode(c).ok_or_else(|| {
            ApiError::BadRequest("cursor is not one this server issued".to_owned())
        })?),
    };
    let name = p.name.as_deref().filter(|n| !n.is_empty());
    if name.is_some_and(|n| n.chars().count() > 200 || n.contains('\0')) {
        return Err(ApiError::BadRequest(
            "name must be at most 200 characters, none of them NUL".to_owned(),
        ));
    }
    let page = st.store.list_runs(limit, after, name).await?;
    Ok(Json(RunList {
        items: page
            .items
            .into_iter()
            .map(run_view)
            .collect::<ApiResult<_>>()?,
        next_cursor: page.next.map(|c| c.encode()),
    }))
}

/// Get a run
///
/// Counts, version and the effective profiler config. `version` changes with every batch that
/// stores something.
#[utoipa::path(
    get, path = "/v1/runs/{run_id}", tag = "runs",
    params(("run_id" = Uuid, Path, description = "Run id")),
    responses(
        (status = 200, description = "The run", body = RunView),
        ReadProblems, RunProblems,
    ),
    security(("bearer" = []))
)]
pub async fn get_run(State(st): State<AppState>, RunId(id): RunId) -> ApiResult<Json<RunView>> {
    Ok(Json(run_view(st.store.get_run(id).await?)?))
}

/// Change a run
///
/// A JSON merge patch (RFC 7396) of `name`, `metadata` and `profiler_config`: keys given replace
/// the stored ones, `null` removes a key (a profiler setting then returns to its default).
/// `prices` replaces the run's price table (null: the server's as it is now). Outputs are
/// recomputed with the new settings on the next request.
#[utoipa::path(
    patch, path = "/v1/runs/{run_id}", tag = "runs",
    params(("run_id" = Uuid, Path, description = "Run id")),
    request_body(content = PatchRun, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, description = "The changed run", body = RunView),
        BodyProblems, ReadProblems, RunProblems, WriteProblems, ConflictProblems,
    ),
    security(("bearer" = []))
)]
pub async fn patch_run(
    State(st): State<AppState>,
    RunId(id): RunId,
    JsonBytes(body): JsonBytes,
) -> ApiResult<Json<RunView>> {
    let patch: PatchRun =
        object_from_text_at(&body, "").map_err(|e| ApiError::from_trace(e, ""))?;
    // Read, merge, write only if nobody wrote in between; on a race, merge again onto the newer
    // run (a merge patch computed from an old read would undo the other writer's change).
    for _ in 0..PATCH_ATTEMPTS {
        let current = st.store.get_run(id).await?;
        let changes = changes(&patch, &current, st.ingest.prices())?;
        match st.store.update_run(id, changes).await {
            Ok(record) => {
                st.cache.remember(record.clone()).await?;
                return Ok(Json(run_view(record)?));
            }
            Err(StoreError::Stale) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Conflict(format!(
        "run {id} kept changing while this patch was applied; retry it"
    )))
}

/// The changes a patch makes to `current`, conditional on `current` still being the stored
/// version when they are written.
fn changes(
    patch: &PatchRun,
    current: &RunRecord,
    server_prices: &PriceTable,
) -> ApiResult<RunChanges> {
    let invalid = |e: FieldError| ApiError::invalid_at(e.path, e.message);
    let profiler_config = match &patch.profiler_config {
        Patch::Absent => None,
        Patch::Null => Some(Value::Object(Map::new())),
        Patch::Value(p) => {
            // The stored config is small (a validated config); the patch is checked for size
            // before it is read as values.
            profiler_config(p, "/profiler_config").map_err(invalid)?;
            let stored = ObjectJson::parse(&current.profiler_config.to_string())
                .map_err(ApiError::internal)?;
            let merged = stored.merge_patch(p).map_err(ApiError::internal)?;
            let raw =
                RawValue::from_string(merged.as_str().to_owned()).map_err(ApiError::internal)?;
            Some(profiler_config(&raw, "/profiler_config").map_err(invalid)?)
        }
    };
    let metadata = match &patch.metadata {
        Patch::Absent => None,
        Patch::Null => Some(ObjectJson::empty()),
        Patch::Value(p) => {
            let raw = RawValue::from_string(p.as_str().to_owned()).map_err(ApiError::internal)?;
            Some(
                current
                    .metadata
                    .merge_patch(&raw)
                    .map_err(ApiError::internal)?,
            )
        }
    };
    Ok(RunChanges {
        name: match &patch.name {
            Patch::Absent => None,
            Patch::Null => Some(String::new()),
            Patch::Value(n) => Some(n.0.clone()),
        },
        toolkit: match patch.toolkit {
            Patch::Absent => None,
            Patch::Null => Some(None),
            Patch::Value(d) => Some(Some(d)),
        },
        retention_seconds: match patch.retention_seconds {
            Patch::Absent => None,
            Patch::Null => Some(None),
            Patch::Value(r) => Some(Some(r.0)),
        },
        prices: match &patch.prices {
            Patch::Absent => None,
            Patch::Null => Some(server_prices.clone()),
            Patch::Value(p) => Some(checked_prices(p.clone(), "/prices").map_err(invalid)?),
        },
        profiler_config,
        metadata,
        if_updated_at: Some(current.updated_at),
    })
}

/// Tries at a PATCH before answering 409: each lost race means another writer made progress.
const PATCH_ATTEMPTS: usize = 16;

/// Delete a run
///
/// Deletes the run with all its requests and steps.
#[utoipa::path(
    delete, path = "/v1/runs/{run_id}", tag = "runs",
    params(("run_id" = Uuid, Path, description = "Run id")),
    responses(
        (status = 204, description = "Deleted"),
        ReadProblems, RunProblems, WriteProblems,
    ),
    security(("bearer" = []))
)]
pub async fn delete_run(State(st): State<AppState>, RunId(id): RunId) -> ApiResult<StatusCode> {
    st.store.delete_run(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Append steps
///
/// Appends a batch in any input form (see `POST /v1/runs`), plain or with
/// `Content-Encoding: gzip`. Steps of a request that already exists are appended to it (the
/// profiler form matches requests by `request_number`, the eval form by `id`, step lists by
/// position). A step already stored (same request, UUID, event type and timestamp) is skipped,
/// so a retried batch changes nothing. The batch is atomic: stored whole or not at all.
#[utoipa::path(
    post, path = "/v1/runs/{run_id}/steps", tag = "runs",
    params(("run_id" = Uuid, Path, description = "Run id"), IdempotencyParams),
    request_body(content = StepDocument, description = "Steps in any input form", content_type = "application/json"),
    responses(
        (status = 200, description = "What the batch stored (or, for a repeated Idempotency-Key, what it stored the first time)", body = IngestResponse,
            headers(("Idempotent-Replayed" = String, description = "`true` when this is the first response to the Idempotency-Key again"))),
        BodyProblems, ReadProblems, RunProblems, WriteProblems,
    ),
    security(("bearer" = []))
)]
pub async fn append_steps(
    State(st): State<AppState>,
    RunId(id): RunId,
    Extension(client): Extension<Client>,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    body: Request,
) -> ApiResult<Response> {
    // A missing run is a 404 before the (possibly large) body is read and validated (a run
    // deleted meanwhile elsewhere still fails in `append`).
    st.cache.snapshot(id).await?;
    let body = IngestBody::from_request(body, &st).await?;
    let written = st
        .ingest
        .append(body.admission, id, body.payload, key, &client.0)
        .await?;
    let outcome = written
        .outcome
        .ok_or_else(|| ApiError::internal(format!("append to run {id} returned no outcome")))?;
    let run = run_view(written.record)?;
    let mut resp = Json(ingest_view(&run, outcome)).into_response();
    mark_replayed(&mut resp, written.replayed);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_patch_tells_absent_from_null() {
        let read = |v: Value| object_from_text_at::<PatchRun>(v.to_string().as_bytes(), "");
        let path = |e: crate::trace::TraceError| match e {
            crate::trace::TraceError::Invalid { errors, .. } => errors[0].path.clone(),
            other => panic!("{other:?}"),
        };
        let patch = read(json!({"name": null, "metadata": {"a": null, "b": 2}})).unwrap();
        assert_eq!(patch.name, Patch::Null);
        assert_eq!(patch.toolkit, Patch::Absent);
        assert!(matches!(patch.metadata, Patch::Value(_)));
        assert_eq!(
            path(read(json!({"name": "x".repeat(501)})).unwrap_err()),
            "/name"
        );
        assert_eq!(path(read(json!({"bogus/x": 1})).unwrap_err()), "/bogus~1x");
        assert_eq!(
            path(read(json!({"metadata": [1]})).unwrap_err()),
            "/metadata"
        );
        // serde would read an array as the struct's fields in order.
        assert_eq!(path(read(json!([null, null])).unwrap_err()), "");
    }
}
