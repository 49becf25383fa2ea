//! One error type for the HTTP layer, rendered as RFC 9457 `application/problem+json`.
//!
//! Internal error text never reaches the client: store and computation failures are logged with
//! the request's context and answered with a generic 500 (or a 503 with `Retry-After` when the
//! database is unreachable).

use crate::compute::ComputeError;
use crate::error_chain;
use crate::ingest::IngestError;
use crate::otlp::DecodeError;
use crate::store::StoreError;
use crate::trace::{FieldError, TraceError};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// Seconds a client should wait before retrying when the database is unavailable.
pub const RETRY_AFTER_SECS: u32 = 5;

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:agentprof:problem:validation-error",
    "title": "Request body failed validation",
    "status": 422,
    "detail": "/3/intermediate_steps/17/payload/event_timestamp: expected a number, got \"soon\"",
    "code": "validation-error",
    "errors": [{"path": "/3/intermediate_steps/17/payload/event_timestamp", "message": "expected a number, got \"soon\""}]
}))]
pub struct Problem {
    /// A URI naming the kind of problem (`urn:agentprof:problem:<code>`).
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code, the last segment of `type`.
    pub code: String,
    /// Each rejected value with the JSON pointer of its place in the request body (for a query
    /// parameter, `/` and its name).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemField>,
    /// On a `window-too-large` problem: what the analysis would take, what analyses may take,
    /// and the most recent window of the one asked for that fits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryAdvice>,
}

/// Why an analysis was refused, and which window would be analysed.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct MemoryAdvice {
    /// Bytes the analysis would take at its peak (an upper bound).
    pub estimated_bytes: u64,
    /// Bytes analyses may take in all (`--max-analysis-memory`).
    pub budget_bytes: u64,
    /// The most recent window that fits: ask again with its `from` (and the same `to`); null
    /// when not even the latest request alone fits.
    pub fits: Option<crate::window::Window>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProblemField {
    /// JSON pointer (RFC 6901) into the request body; `""` is the whole body.
    pub path: String,
    pub message: String,
}

impl From<FieldError> for ProblemField {
    fn from(e: FieldError) -> Self {
        ProblemField {
            path: e.path,
            message: e.message,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("run {0} not found")]
    RunNotFound(uuid::Uuid),
    #[error("{0}")]
    NotFound(String),
    /// An output of the other toolkit dialect.
    #[error("{0}")]
    NotInDialect(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("method not allowed on this endpoint; see /docs")]
    MethodNotAllowed,
    #[error("{detail}")]
    Invalid {
        detail: String,
        errors: Vec<ProblemField>,
    },
    /// A query parameter that cannot be read: 400, with the parameter's name as its pointer.
    #[error("{detail}")]
    InvalidQuery {
        detail: String,
        errors: Vec<ProblemField>,
    },
    /// An analysis that would take more memory than all analyses may.
    #[error("{detail}")]
    WindowTooLarge {
        detail: String,
        advice: MemoryAdvice,
    },
    #[error("request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// A batch whose steps would take more memory than one batch may: split it.
    #[error("{0}")]
    BatchTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("missing or unknown API key")]
    Unauthorized,
    #[error("this API key may only read")]
    Forbidden,
    #[error("the database is unavailable")]
    Unavailable,
    /// Every slot for the work is taken; retry shortly.
    #[error("{0}")]
    Busy(String),
    /// The request raced other writers and lost repeatedly.
    #[error("{0}")]
    Conflict(String),
    /// An Idempotency-Key reused with another body.
    #[error(
        "this Idempotency-Key was first sent with a different request body; use a new key for a new request"
    )]
    KeyReused,
    /// Logged with its whole source chain; the client sees a generic message.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::RunNotFound(_) | ApiError::NotFound(_) | ApiError::NotInDialect(_) => {
                StatusCode::NOT_FOUND
            }
            ApiError::BadRequest(_) | ApiError::InvalidQuery { .. } => StatusCode::BAD_REQUEST,
            ApiError::WindowTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Invalid { .. } | ApiError::KeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooLarge { .. } | ApiError::BatchTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::Unavailable | ApiError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code_and_title(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::RunNotFound(_) => ("run-not-found", "Run not found"),
            ApiError::NotFound(_) => ("not-found", "Not found"),
            ApiError::NotInDialect(_) => ("not-in-dialect", "Not an output of this run's toolkit"),
            ApiError::BadRequest(_) => ("malformed-request", "Malformed request"),
            ApiError::InvalidQuery { .. } => ("invalid-query", "Invalid query parameter"),
            ApiError::WindowTooLarge { .. } => (
                "window-too-large",
                "Analysis would exceed the memory analyses may take",
            ),
            ApiError::MethodNotAllowed => ("method-not-allowed", "Method not allowed"),
            ApiError::Invalid { .. } => ("validation-error", "Request body failed validation"),
            ApiError::TooLarge { .. } => ("body-too-large", "Request body too large"),
            ApiError::BatchTooLarge(_) => ("batch-too-large", "Batch too large; split it"),
            ApiError::UnsupportedMediaType(_) => {
                ("unsupported-media-type", "Unsupported media type")
            }
            ApiError::Unauthorized => ("unauthorized", "Authentication required"),
            ApiError::Forbidden => ("forbidden", "Not allowed with this API key"),
            ApiError::Unavailable => ("database-unavailable", "Service temporarily unavailable"),
            ApiError::Busy(_) => ("busy", "Service busy"),
            ApiError::Conflict(_) => ("conflict", "Concurrent modification"),
            ApiError::KeyReused => ("idempotency-key-reused", "Idempotency-Key reused"),
            ApiError::Internal(_) => ("internal-error", "Internal server error"),
        }
    }

    pub fn problem(&self) -> Problem {
        let (code, title) = self.code_and_title();
        let detail = match self {
            ApiError::Internal(_) => "An unexpected error occurred; it has been logged.".to_owned(),
            ApiError::Unavailable => format!(
                "The database cannot be reached right now; retry in {RETRY_AFTER_SECS} seconds."
            ),
            other => other.to_string(),
        };
        let errors = match self {
            ApiError::Invalid { errors, .. } | ApiError::InvalidQuery { errors, .. } => {
                errors.clone()
            }
            _ => Vec::new(),
        };
        let memory = match self {
            ApiError::WindowTooLarge { advice, .. } => Some(*advice),
            _ => None,
        };
        Problem {
            kind: format!("urn:agentprof:problem:{code}"),
            title: title.to_owned(),
            status: self.status().as_u16(),
            detail,
            code: code.to_owned(),
            errors,
            memory,
        }
    }

    /// A query parameter that cannot be read.
    pub fn invalid_query(name: &str, message: impl Into<String>) -> ApiError {
        let message = message.into();
        ApiError::InvalidQuery {
            detail: format!("query parameter {name}: {message}"),
            errors: vec![ProblemField {
                path: format!("/{name}"),
                message,
            }],
        }
    }

    /// An internal failure: a message, or an error whose source chain is kept for the log.
    pub fn internal(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> ApiError {
        ApiError::Internal(e.into())
    }

    /// A validation failure at one place in the body.
    pub fn invalid_at(path: impl Into<String>, message: impl Into<String>) -> ApiError {
        let (path, message) = (path.into(), message.into());
        let shown = if path.is_empty() {
            "(body)".to_owned()
        } else {
            path.clone()
        };
        ApiError::Invalid {
            detail: format!("{shown}: {message}"),
            errors: vec![ProblemField { path, message }],
        }
    }

    /// A trace error, with every pointer moved under `prefix` (e.g. `/requests`).
    pub fn from_trace(e: TraceError, prefix: &str) -> ApiError {
        match e {
            TraceError::Syntax(msg) => {
                ApiError::BadRequest(format!("request body is not valid JSON: {msg}"))
            }
            TraceError::Gzip(msg) => {
                ApiError::BadRequest(format!("request body is not valid gzip: {msg}"))
            }
            TraceError::TooLarge { limit } => ApiError::TooLarge {
                limit: limit as usize,
            },
            TraceError::Refused(why) => ApiError::BatchTooLarge(why),
            TraceError::Invalid { errors, omitted } => {
                let errors: Vec<ProblemField> = errors
                    .into_iter()
                    .map(|e| ProblemField {
                        path: format!("{prefix}{}", e.path),
                        message: e.message,
                    })
                    .collect();
                let total = errors.len() + omitted;
                let detail = match errors.first() {
                    Some(first) if total == 1 => {
                        format!("{}: {}", display_path(&first.path), first.message)
                    }
                    Some(first) => format!(
                        "{}: {} (and {} more)",
                        display_path(&first.path),
                        first.message,
                        total - 1
                    ),
                    None => "invalid request body".to_owned(),
                };
                ApiError::Invalid { detail, errors }
            }
        }
    }
}

fn display_path(p: &str) -> &str {
    if p.is_empty() { "(body)" } else { p }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::RunNotFound(id) => ApiError::RunNotFound(id),
            StoreError::Unavailable(_) => ApiError::Unavailable,
            StoreError::Rejected(msg) => ApiError::invalid_at("", msg),
            StoreError::Busy(msg) => ApiError::Busy(msg),
            StoreError::KeyReused => ApiError::KeyReused,
            StoreError::Stale => ApiError::Conflict(
                "the run changed while this request was applied; retry it".to_owned(),
            ),
            other => ApiError::internal(other),
        }
    }
}

impl From<ComputeError> for ApiError {
    fn from(e: ComputeError) -> Self {
        match e {
            ComputeError::RunNotFound(id) => ApiError::RunNotFound(id),
            e @ ComputeError::NotInDialect { .. } => ApiError::NotInDialect(format!(
                "{e}: set \"toolkit\": \"nat-1.9\" on the run (PATCH /v1/runs/{{id}}) to get it"
            )),
            ComputeError::Unavailable => ApiError::Unavailable,
            ComputeError::Busy => ApiError::Busy(ComputeError::Busy.to_string()),
            e @ ComputeError::WindowTooLarge {
                estimate,
                budget,
                fits,
                ..
            } => ApiError::WindowTooLarge {
                detail: e.to_string(),
                advice: MemoryAdvice {
                    estimated_bytes: estimate,
                    budget_bytes: budget,
                    fits,
                },
            },
            internal @ ComputeError::Internal { .. } => ApiError::internal(internal),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(e) => {
                tracing::error!(error = %error_chain(e.as_ref()), "request failed")
            }
            ApiError::Unavailable => tracing::warn!("database unavailable"),
            _ => {}
        }
        let problem = self.problem();
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut resp = (self.status(), body).into_response();
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        match self {
            ApiError::Unavailable | ApiError::Busy(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            ApiError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        resp
    }
}

/// `Result` for handlers.
pub type ApiResult<T> = Result<T, ApiError>;

// ----- documented problem responses, shared by the endpoints' OpenAPI descriptions ---------------

/// Problems any endpoint behind the API keys and the database can answer.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documentation only
pub enum ReadProblems {
    /// Missing or unknown API key
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// The database is unreachable; retry after `Retry-After` seconds
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(Problem),
}

/// The run named in the path does not exist.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum RunProblems {
    /// No such run
    #[response(status = 404, content_type = "application/problem+json")]
    RunNotFound(Problem),
}

/// A read of an analysis of a run or window.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum AnalysisProblems {
    /// `from` or `to` is not a time (`errors[].path` names it)
    #[response(status = 400, content_type = "application/problem+json")]
    InvalidQuery(Problem),
    /// `window-too-large`: the analysis would take more memory than analyses may take;
    /// `memory.fits` is the most recent window that fits
    #[response(status = 413, content_type = "application/problem+json")]
    WindowTooLarge(Problem),
}

/// A read that takes a window but analyses nothing (it streams).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum QueryProblems {
    /// `from` or `to` is not a time (`errors[].path` names it)
    #[response(status = 400, content_type = "application/problem+json")]
    InvalidQuery(Problem),
}

/// A change that kept losing races with other writers.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum ConflictProblems {
    /// The run kept changing concurrently; retry
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(Problem),
}

/// A read-only key on an endpoint that writes.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum WriteProblems {
    /// This API key may only read
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
}

/// A request body that cannot be taken.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum BodyProblems {
    /// Malformed JSON or gzip
    #[response(status = 400, content_type = "application/problem+json")]
    Malformed(Problem),
    /// Body too large (or it inflates beyond the limit)
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// Not `application/json`, or an unknown `Content-Encoding`
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Problem),
    /// A value failed validation; `errors[].path` holds its JSON pointer
    #[response(status = 422, content_type = "application/problem+json")]
    Invalid(Problem),
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Busy => ApiError::Busy(
                "every ingest slot is busy with other batches; retry after Retry-After seconds"
                    .to_owned(),
            ),
            IngestError::Input(e) => ApiError::from_trace(e, ""),
            IngestError::Field(f) => ApiError::invalid_at(f.path, f.message),
            IngestError::Otlp(DecodeError::Malformed(why)) => ApiError::BadRequest(why),
            IngestError::Otlp(DecodeError::TooMany(why)) => ApiError::BatchTooLarge(why),
            IngestError::Store(e) => e.into(),
            IngestError::Compute(e) => e.into(),
            e @ IngestError::Crashed(_) => ApiError::internal(e),
        }
    }
}
