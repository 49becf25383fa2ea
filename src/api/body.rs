//! Request extractors: the run id in the path, and request bodies read within the limits —
//! size (413), content type (415), gzip by `Content-Encoding` or by its magic number, and JSON
//! syntax (400), each as problem+json. Handlers get a run id and a parsed body, never a
//! half-read stream.

use super::error::{ApiError, ApiResult};
use crate::ingest::{Admission, Ingest, JsonPayload};
use crate::trace::{TraceError, gunzip, is_gzip, json_value};
use axum::body::{Body, Bytes};
use axum::extract::{FromRef, FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use http_body_util::BodyExt;
use serde_json::Value;
use std::sync::Arc;
use uuid::Uuid;

/// Limits for one request body.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Bytes on the wire.
    pub max_bytes: usize,
    /// Bytes after gzip decompression.
    pub max_decompressed: usize,
}

/// A step batch's body (gzip still compressed: it is inflated as it is parsed) and its turn at
/// ingesting: the body is read only once a turn is free, and the turn is held until the
/// ingest service has stored the batch.
#[derive(Debug)]
pub struct IngestBody {
    pub payload: JsonPayload,
    pub admission: Admission,
}

impl<S> FromRequest<S> for IngestBody
where
    BodyLimits: FromRef<S>,
    Arc<Ingest>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let limits = BodyLimits::from_ref(state);
        let (parts, body) = req.into_parts();
        let (body, admission) = admit(&Arc::<Ingest>::from_ref(state), body, limits).await?;
        let payload = read_json_payload(&parts.headers, body, limits).await?;
        Ok(IngestBody { payload, admission })
    }
}

/// A turn at ingesting for a request; when none comes in time, the request's body is read and
/// dropped first (up to the wire limit), for the reason [`discard_body`] gives.
pub(crate) async fn admit(
    ingest: &Ingest,
    body: Body,
    limits: BodyLimits,
) -> ApiResult<(Body, Admission)> {
    match ingest.admit().await {
        Ok(admission) => Ok((body, admission)),
        Err(busy) => {
            discard_body(body, limits.max_bytes).await;
            Err(busy.into())
        }
    }
}

/// Reads a refused request's body to its end (at most `limit` bytes), keeping none of it.
///
/// A client still sending a large batch when the 503 comes back would otherwise have its
/// connection closed under it, and most clients (reqwest, Python's requests) then report a broken
/// pipe instead of the 503 and its `Retry-After` (bench/hostile.sh's concurrent batches hit it).
async fn discard_body(mut body: Body, limit: usize) {
    let mut read = 0usize;
    while read <= limit {
        match body.frame().await {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
            _ => return,
        }
    }
}

/// The `{run_id}` path segment. A segment that is not a UUID names no run, so it is a 404 like
/// any unknown id rather than a 400.
#[derive(Debug, Clone, Copy)]
pub struct RunId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for RunId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        raw.parse()
            .map(RunId)
            .map_err(|_| ApiError::NotFound(format!("no run {raw:?}: run ids are UUIDs")))
    }
}

/// The window of a read: its `from` and `to` query parameters, each Unix seconds or RFC 3339
/// (see [`crate::window`]); neither is the whole run. Other parameters are left to others.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowQuery(pub crate::window::Window);

impl<S: Send + Sync> FromRequestParts<S> for WindowQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let (mut from, mut to) = (None, None);
        let query = parts.uri.query().unwrap_or("");
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            match &*name {
                "from" => from = Some(value),
                "to" => to = Some(value),
                _ => {}
            }
        }
        crate::window::Window::parse(from.as_deref(), to.as_deref())
            .map(WindowQuery)
            .map_err(|(name, e)| ApiError::invalid_query(name, e.to_string()))
    }
}

/// An `Idempotency-Key` header (IETF httpapi draft): a Structured Field string (`"..."`) or,
/// leniently, the bare text; 1 to 255 printable ASCII characters. Absent is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKeyHeader(pub Option<String>);

/// The longest key accepted: UUIDs and the like are far shorter.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKeyHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(IdempotencyKeyHeader(None));
        };
        let bad = |why: &str| {
            ApiError::BadRequest(format!(
                "Idempotency-Key {why}: send a string of 1 to {MAX_IDEMPOTENCY_KEY} printable \
                 ASCII characters, e.g. \"8e03978e-40d5-43e8-bc93-6894a57f9324\" (a UUID)"
            ))
        };
        let text = value.to_str().map_err(|_| bad("is not ASCII"))?.trim();
        let key = text
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .unwrap_or(text);
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
            return Err(bad("has the wrong length"));
        }
        if !key.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(bad("holds a control character"));
        }
        Ok(IdempotencyKeyHeader(Some(key.to_owned())))
    }
}

/// A JSON request body, inflated when gzip, still as text: for handlers that parse it their own
/// way (step batches).
#[derive(Debug, Clone)]
pub struct JsonBytes(pub Bytes);

impl<S> FromRequest<S> for JsonBytes
where
    BodyLimits: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        read_json_bytes(&parts.headers, body, BodyLimits::from_ref(state))
            .await
            .map(JsonBytes)
    }
}

/// A JSON request body parsed into a value (off the async executor: bodies can be large).
#[derive(Debug, Clone)]
pub struct JsonBody(pub Value);

impl<S> FromRequest<S> for JsonBody
where
    BodyLimits: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let JsonBytes(bytes) = JsonBytes::from_request(req, state).await?;
        super::blocking(move || parse_json(&bytes))
            .await
            .map(JsonBody)
    }
}

/// Accepts `application/json` and any `application/*+json`; anything else is a 415 that says
/// what to send.
pub fn require_json_media_type(headers: &HeaderMap) -> ApiResult<()> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Err(ApiError::UnsupportedMediaType(
            "missing Content-Type: send the body as application/json".to_owned(),
        ));
    };
    let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "unsupported Content-Type {essence:?}: send the body as application/json \
             (gzip it with Content-Encoding: gzip if you like)"
        )))
    }
}

/// Whether the body is gzip: by `Content-Encoding`, or, when that header is missing, by the
/// gzip magic number (a `.json.gz` file posted as it is). Other encodings are a 415.
pub(crate) fn is_gzip_body(headers: &HeaderMap, bytes: &[u8]) -> ApiResult<bool> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("") => Ok(is_gzip(bytes)),
        Some("identity") => Ok(false),
        Some("gzip") | Some("x-gzip") => Ok(true),
        Some(other) => Err(ApiError::UnsupportedMediaType(format!(
            "unsupported Content-Encoding {other:?}: use gzip or none"
        ))),
    }
}

/// Reads the whole body within the limits, inflating it when it is gzip.
pub async fn read_json_bytes(
    headers: &HeaderMap,
    body: Body,
    limits: BodyLimits,
) -> ApiResult<Bytes> {
    match read_json_payload(headers, body, limits).await? {
        JsonPayload::Text(bytes) => Ok(bytes),
        JsonPayload::Gzip { compressed, limit } => {
            super::blocking(move || {
                gunzip(&compressed, Some(limit))
                    .map(Bytes::from)
                    .map_err(|e| ApiError::from_trace(e, ""))
            })
            .await
        }
    }
}

/// Reads the whole body within the wire limit, checking its media type and encoding; a gzip body
/// stays compressed.
pub async fn read_json_payload(
    headers: &HeaderMap,
    body: Body,
    limits: BodyLimits,
) -> ApiResult<JsonPayload> {
    require_json_media_type(headers)?;
    let bytes = read_limited(headers, body, limits).await?;
    if is_gzip_body(headers, &bytes)? {
        Ok(JsonPayload::Gzip {
            compressed: bytes,
            limit: limits.max_decompressed as u64,
        })
    } else {
        Ok(JsonPayload::Text(bytes))
    }
}

/// The body as it arrived, refused as soon as it passes the wire limit.
pub async fn read_limited(headers: &HeaderMap, body: Body, limits: BodyLimits) -> ApiResult<Bytes> {
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limits.max_bytes as u64
    {
        return Err(ApiError::TooLarge {
            limit: limits.max_bytes,
        });
    }
    let limited = http_body_util::Limited::new(body, limits.max_bytes);
    let bytes = match limited.collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(ApiError::TooLarge {
                limit: limits.max_bytes,
            });
        }
        Err(e) => {
            return Err(ApiError::BadRequest(format!(
                "could not read the request body: {e}"
            )));
        }
    };
    Ok(bytes)
}

/// Parses JSON text; syntax errors (and nesting beyond serde_json's depth limit) are a 400 that
/// says what the body started with.
pub fn parse_json(bytes: &[u8]) -> ApiResult<Value> {
    json_value(bytes).map_err(|e: TraceError| ApiError::from_trace(e, ""))
}
