//! Reading request bodies: size limits (413), content types (415), gzip (`Content-Encoding`),
//! and JSON syntax (400), each as problem+json. Handlers get bytes or a JSON value, never a
//! half-read stream.

use super::error::{ApiError, ApiResult};
use crate::trace::gunzip;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use http_body_util::BodyExt;
use serde_json::Value;

/// Limits for one request body.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Bytes on the wire.
    pub max_bytes: usize,
    /// Bytes after gzip decompression.
    pub max_decompressed: usize,
}

/// Which media types a route takes.
pub fn is_json_media_type(headers: &HeaderMap) -> Result<(), String> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Err("missing Content-Type: send the body as application/json".to_owned());
    };
    let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Ok(())
    } else {
        Err(format!(
            "unsupported Content-Type {essence:?}: send the body as application/json \
             (gzip it with Content-Encoding: gzip if you like)"
        ))
    }
}

/// Reads the whole body within the limits, inflating it when `Content-Encoding: gzip`.
pub async fn read_json_bytes(
    headers: &HeaderMap,
    body: Body,
    limits: BodyLimits,
) -> ApiResult<Bytes> {
    is_json_media_type(headers).map_err(ApiError::UnsupportedMediaType)?;
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    let gzip = match encoding.as_deref() {
        None | Some("identity") | Some("") => false,
        Some("gzip") | Some("x-gzip") => true,
        Some(other) => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "unsupported Content-Encoding {other:?}: use gzip or none"
            )));
        }
    };
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
    if !gzip {
        return Ok(bytes);
    }
    let max = limits.max_decompressed;
    super::blocking(move || {
        gunzip(&bytes, Some(max as u64))
            .map(Bytes::from)
            .map_err(|e| ApiError::from_trace(e, ""))
    })
    .await
}

/// Parses JSON text, mapping syntax errors (and nesting beyond serde_json's depth limit) to 400.
pub fn parse_json(bytes: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("request body is not valid JSON: {e}")))
}
