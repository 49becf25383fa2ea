//! The run resource: create, list, read, change, delete, and append step batches.

use super::auth::Client;
use super::body::{IdempotencyKeyHeader, IngestBody, JsonBody, RunId};
use super::error::{
    ApiError, ApiResult, BodyProblems, ConflictProblems, Problem, ReadProblems, RunProblems,
    WriteProblems,
};
use super::schema::*;
use super::{AppState, blocking};
use crate::profiler::{Dialect, ProfilerConfig, warnings};
use crate::store::{
    IdempotencyKey, IngestOutcome, NewRun, PreparedBatch, Preparer, RunChanges, RunCursor,
    RunRecord, StoreError,
};
use crate::trace::{
    JsonSource, ParseOptions, pointer_segment, read_json_document, read_json_wrapped, type_name,
};
use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
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

fn record_ingest(o: &IngestOutcome) {
    metrics::counter!("agentprof_steps_received_total").increment(o.steps_received as u64);
    metrics::counter!("agentprof_steps_stored_total").increment(o.steps_stored as u64);
    metrics::counter!("agentprof_steps_duplicate_total")
        .increment(o.steps_skipped_duplicate as u64);
}

/// Validates a profiler config object (toolkit field names) at `path` in the body.
fn check_config(v: &Value, path: &str) -> ApiResult<()> {
    if !v.is_object() {
        return Err(ApiError::invalid_at(
            path,
            "expected an object with the toolkit's ProfilerConfig field names",
        ));
    }
    ProfilerConfig::from_json(v.clone())
        .map(|_| ())
        .map_err(|e| ApiError::invalid_at(format!("{path}{}", e.path), e.message))
}

/// A run name: a string of at most 500 characters; null (or absent) is the empty name.
fn run_name(v: Value) -> ApiResult<String> {
    match v {
        Value::Null => Ok(String::new()),
        Value::String(s) if s.chars().count() > 500 => {
            Err(ApiError::invalid_at("/name", "at most 500 characters"))
        }
        Value::String(s) => Ok(s),
        other => Err(ApiError::invalid_at(
            "/name",
            format!("expected a string or null, got {}", type_name(&other)),
        )),
    }
}

/// The `toolkit` field: a dialect, or null to detect it from the steps.
fn toolkit_field(v: Value) -> ApiResult<Option<Dialect>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Dialect::parse(&s).map(Some).ok_or_else(|| {
            ApiError::invalid_at(
                "/toolkit",
                format!("unknown toolkit {s:?}: use \"aiq-1.1\", \"nat-1.9\" or null to detect it from the steps"),
            )
        }),
        other => Err(ApiError::invalid_at(
            "/toolkit",
            format!("expected \"aiq-1.1\", \"nat-1.9\" or null, got {}", type_name(&other)),
        )),
    }
}

/// A metadata object (null is an empty one).
fn check_metadata(v: &Value) -> ApiResult<()> {
    match v {
        Value::Null => Ok(()),
        Value::Object(_) => Ok(()),
        other => Err(ApiError::invalid_at(
            "/metadata",
            format!("expected an object or null, got {}", type_name(other)),
        )),
    }
}

/// Batches the PostgreSQL store can number (see `store::SEQ_BLOCK_BITS`); both stores keep to it.
const MAX_BATCH_STEPS: usize = (1 << crate::store::SEQ_BLOCK_BITS) - 1;

/// A step document (any input form) as the whole body, read step by step within the batch
/// memory budget.
fn read_steps(body: JsonSource<'_>, budget: usize) -> ApiResult<PreparedBatch> {
    let mut preparer = Preparer::new(budget);
    let doc = read_json_document(body, &ParseOptions::default(), &mut preparer)
        .map_err(|e| ApiError::from_trace(e, ""))?;
    checked_size(preparer.finish(doc), "")
}

/// A batch the store can number (see `store::SEQ_BLOCK_BITS`).
fn checked_size(batch: PreparedBatch, at: &str) -> ApiResult<PreparedBatch> {
    if batch.step_count() > MAX_BATCH_STEPS {
        return Err(ApiError::invalid_at(
            at,
            format!("a batch holds at most {MAX_BATCH_STEPS} steps; split it"),
        ));
    }
    Ok(batch)
}

/// Parses and validates a create body: `{name?, toolkit?, profiler_config?, metadata?,
/// requests?}`, or a bare step document (a JSON list) as a shorthand for `{"requests": [...]}`.
/// The steps are read one at a time within the batch memory budget.
fn parse_create(body: JsonSource<'_>, budget: usize) -> ApiResult<(NewRun, Option<PreparedBatch>)> {
    let mut preparer = Preparer::new(budget);
    let wrapped = read_json_wrapped(body, "requests", &ParseOptions::default(), &mut preparer)
        .map_err(|e| ApiError::from_trace(e, ""))?;
    if let Some(other) = wrapped.other {
        return Err(ApiError::invalid_at(
            "",
            format!(
                "expected an object {{name, toolkit, profiler_config, metadata, requests}} or a list of requests, got {other}"
            ),
        ));
    }
    let mut obj = wrapped.fields;
    let name = run_name(obj.remove("name").unwrap_or(Value::Null))?;
    let profiler_config = match obj.remove("profiler_config") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(v) => {
            check_config(&v, "/profiler_config")?;
            v
        }
    };
    let metadata = match obj.remove("metadata") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(v) => {
            check_metadata(&v)?;
            v
        }
    };
    let toolkit = toolkit_field(obj.remove("toolkit").unwrap_or(Value::Null))?;
    if let Some(key) = obj.keys().next() {
        return Err(ApiError::invalid_at(
            pointer_segment(key),
            "unknown field: a run has name, toolkit, profiler_config, metadata and requests",
        ));
    }
    let batch = wrapped
        .document
        .map(|doc| checked_size(preparer.finish(doc), "/requests"))
        .transpose()?;
    Ok((
        NewRun {
            name,
            profiler_config,
            metadata,
            toolkit,
        },
        batch,
    ))
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
    let IngestBody { payload, permit } = body;
    let budget = st.limits.max_batch_memory;
    let (key, (run, batch)) = blocking(move || {
        let key = idempotency_key("create", &client, key, payload.source())?;
        Ok((key, parse_create(payload.source(), budget)?))
    })
    .await?;
    let written = st.store.create_run(run, batch, key.as_ref()).await?;
    drop(permit);
    if let (Some(o), false) = (&written.outcome, written.replayed) {
        record_ingest(o);
    }
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

/// A request's Idempotency-Key in its scope (the operation, and the client that sent it), with
/// the fingerprint of its body's JSON text.
fn idempotency_key(
    operation: &str,
    client: &Client,
    key: Option<String>,
    body: JsonSource<'_>,
) -> ApiResult<Option<IdempotencyKey>> {
    let Some(key) = key else { return Ok(None) };
    Ok(Some(IdempotencyKey {
        scope: format!("{operation} {}", client.0),
        key,
        fingerprint: body
            .fingerprint()
            .map_err(|e| ApiError::from_trace(e, ""))?,
    }))
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
/// Outputs are recomputed with the new config on the next request.
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
    JsonBody(body): JsonBody,
) -> ApiResult<Json<RunView>> {
    let patch = parse_patch(body)?;
    // Read, merge, write only if nobody wrote in between; on a race, merge again onto the newer
    // run (a merge patch computed from an old read would undo the other writer's change).
    for _ in 0..PATCH_ATTEMPTS {
        let current = st.store.get_run(id).await?;
        let changes = patch.apply_to(&current)?;
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

/// A validated `PATCH` body: which fields change, each as a merge patch of the stored value.
#[derive(Debug, Clone, Default)]
struct RunPatch {
    name: Option<String>,
    profiler_config: Option<Value>,
    metadata: Option<Value>,
    /// `Some(None)`: detect the dialect from the steps again.
    toolkit: Option<Option<Dialect>>,
}

/// Parses and validates a `PATCH` body; nothing is read from the store yet.
fn parse_patch(body: Value) -> ApiResult<RunPatch> {
    let Value::Object(mut obj) = body else {
        return Err(ApiError::invalid_at(
            "",
            "expected an object {name, profiler_config, metadata}",
        ));
    };
    let name = obj.remove("name").map(run_name).transpose()?;
    let profiler_config = obj.remove("profiler_config");
    if let Some(v) = &profiler_config
        && !(v.is_object() || v.is_null())
    {
        return Err(ApiError::invalid_at(
            "/profiler_config",
            format!("expected an object or null, got {}", type_name(v)),
        ));
    }
    let metadata = obj.remove("metadata");
    if let Some(v) = &metadata {
        check_metadata(v)?;
    }
    let toolkit = obj.remove("toolkit").map(toolkit_field).transpose()?;
    if let Some(key) = obj.keys().next() {
        return Err(ApiError::invalid_at(
            pointer_segment(key),
            "unknown field: only name, toolkit, profiler_config and metadata can change",
        ));
    }
    Ok(RunPatch {
        name,
        profiler_config,
        metadata,
        toolkit,
    })
}

impl RunPatch {
    /// The changes this patch makes to `current`, conditional on `current` still being the
    /// stored version when they are written.
    fn apply_to(&self, current: &RunRecord) -> ApiResult<RunChanges> {
        let mut changes = RunChanges {
            name: self.name.clone(),
            toolkit: self.toolkit,
            if_updated_at: Some(current.updated_at),
            ..RunChanges::default()
        };
        if let Some(v) = &self.profiler_config {
            let mut merged = current.profiler_config.clone();
            merge_patch(&mut merged, v.clone());
            if merged.is_null() {
                merged = Value::Object(Map::new());
            }
            check_config(&merged, "/profiler_config")?;
            changes.profiler_config = Some(merged);
        }
        if let Some(v) = &self.metadata {
            let mut merged = current.metadata.clone();
            merge_patch(&mut merged, v.clone());
            if !merged.is_object() {
                merged = Value::Object(Map::new());
            }
            changes.metadata = Some(merged);
        }
        Ok(changes)
    }
}

/// Tries at a PATCH before answering 409: each lost race means another writer made progress.
const PATCH_ATTEMPTS: usize = 16;

/// RFC 7396 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(&k);
                    } else {
                        merge_patch(t.entry(k).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other,
    }
}

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
    let IngestBody { payload, permit } = IngestBody::from_request(body, &st).await?;
    let budget = st.limits.max_batch_memory;
    let (key, batch) = blocking(move || {
        let key = idempotency_key(&format!("append {id}"), &client, key, payload.source())?;
        Ok((key, read_steps(payload.source(), budget)?))
    })
    .await?;
    let written = st.store.append(id, batch, key.as_ref()).await?;
    drop(permit);
    let outcome = written
        .outcome
        .ok_or_else(|| ApiError::internal(format!("append to run {id} returned no outcome")))?;
    if !written.replayed {
        st.cache.remember(written.record.clone()).await?;
        record_ingest(&outcome);
    }
    let run = run_view(written.record)?;
    let mut resp = Json(ingest_view(&run, outcome)).into_response();
    mark_replayed(&mut resp, written.replayed);
    Ok(resp)
}

/// Combined requests JSON
///
/// `all_requests_profiler_traces.json`: every request with its steps, in the toolkit's layout
/// (`json.dump(indent=2)`), streamed from the database.
#[utoipa::path(
    get, path = "/v1/runs/{run_id}/requests", tag = "outputs",
    params(("run_id" = Uuid, Path, description = "Run id")),
    responses(
        (status = 200, description = "The combined requests file", body = Vec<RequestDoc>, content_type = "application/json"),
        ReadProblems, RunProblems,
    ),
    security(("bearer" = []))
)]
pub async fn get_requests(State(st): State<AppState>, RunId(id): RunId) -> ApiResult<Response> {
    let rewrite = st.cache.snapshot(id).await?.record.rewrite_steps();
    let stream = st.store.stream_requests(id, rewrite).await?;
    let body = Body::from_stream(futures::TryStreamExt::map_err(stream, |e| {
        tracing::error!(error = %e, "streaming requests failed mid-response");
        std::io::Error::other("stream aborted")
    }));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut t = json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge_patch(&mut t, json!({"a": null, "b": {"c": 5}, "e": [1]}));
        assert_eq!(t, json!({"b": {"c": 5, "d": 3}, "e": [1]}));
    }

    #[test]
    fn create_body_validation_points_at_fields() {
        let create =
            |v: Value| parse_create(JsonSource::Text(v.to_string().as_bytes()), usize::MAX);
        let err = create(json!({"name": 5})).unwrap_err();
        assert!(matches!(&err, ApiError::Invalid { errors, .. } if errors[0].path == "/name"));
        let err = create(json!({"profiler_config": {"prefix_span_analysis": {"top_k": "x"}}}))
            .unwrap_err();
        assert!(
            matches!(&err, ApiError::Invalid { errors, .. } if errors[0].path == "/profiler_config/prefix_span_analysis/top_k"),
            "{err:?}"
        );
        let err = create(json!({"requests": [[{"payload": {"event_type": "NOPE"}}]]})).unwrap_err();
        assert!(
            matches!(&err, ApiError::Invalid { errors, .. } if errors[0].path == "/requests/0/0/payload/event_type"),
            "{err:?}"
        );
        let err = create(json!({"bogus": 1})).unwrap_err();
        assert!(matches!(&err, ApiError::Invalid { errors, .. } if errors[0].path == "/bogus"));
        let (run, batch) = create(json!([[{"payload": {"event_type": "LLM_START"}}]])).unwrap();
        assert_eq!(run.name, "");
        assert_eq!(batch.unwrap().step_count(), 1);
    }
}
