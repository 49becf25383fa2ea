//! API keys: `Authorization: Bearer KEY`. A write key may do everything, a read key only reads.
//!
//! Keys are compared in constant time (over fixed-length digests, so neither the content nor the
//! length of a key leaks through timing), and every configured key is checked on every request.
//! The key itself is never logged.

use super::AppState;
use super::error::ApiError;
use crate::config::{Access, ApiKeys};
use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

/// The cookie in which the dashboard keeps a key (see `ui`).
pub const KEY_COOKIE: &str = "agentprof_key";

/// Paths anyone may fetch even when keys are configured: probes, the API description and the
/// dashboard's pages and assets (which hold no data; their data requests need a key).
pub fn is_open_path(path: &str) -> bool {
    matches!(
        path,
        "/healthz" | "/readyz" | "/openapi.json" | "/docs" | "/ui" | "/ui/"
    ) || path.starts_with("/docs/")
        || path.starts_with("/ui/")
}

/// What a request needs: reads need any key, writes a write key. `POST /v1/compare` only reads.
pub fn required_access(method: &Method, path: &str) -> Access {
    match *method {
        Method::GET | Method::HEAD | Method::OPTIONS => Access::Read,
        Method::POST if path == "/v1/compare" => Access::Read,
        _ => Access::Write,
    }
}

/// Who sent a request, as far as the server can tell: a digest of the API key it presented, or
/// nobody in particular when the server has no keys. Idempotency-Keys are scoped by it, so two
/// clients cannot replay each other's responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client(pub String);

impl Client {
    pub const ANONYMOUS: &str = "anonymous";

    fn of_digest(digest: &[u8; 32]) -> Client {
        Client(hex(&digest[..8]))
    }
}

/// The access a presented key grants, if it is one of ours.
pub fn lookup(keys: &ApiKeys, presented: &str) -> Option<Access> {
    lookup_digest(keys, &ApiKeys::digest(presented))
}

/// What the dashboard's cookie holds for a key: its digest (hex), which the server can check
/// but which is not the key, so a leaked cookie reveals no key and, as the API takes it for
/// reads only, grants no write.
pub fn cookie_token(key: &str) -> String {
    hex(&ApiKeys::digest(key))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn token_digest(token: &str) -> Option<[u8; 32]> {
    if token.len() != 64 || !token.is_ascii() {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&token[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(digest)
}

fn lookup_digest(keys: &ApiKeys, digest: &[u8; 32]) -> Option<Access> {
    let mut found: Option<Access> = None;
    for (access, candidate) in &keys.digests {
        // No early exit: every key is compared.
        if bool::from(candidate.ct_eq(digest)) {
            found = Some(found.map_or(*access, |a| a.max(*access)));
        }
    }
    found
}

/// The credentials of an `Authorization: Bearer TOKEN` header; the scheme name is
/// case-insensitive (RFC 9110 §11.1).
pub(crate) fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The dashboard's cookie, if the request carries one.
fn cookie_value(req: &Request) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse_encoded)
        .filter_map(Result::ok)
        .find(|c| c.name() == KEY_COOKIE && !c.value().is_empty())
        .map(|c| c.value().to_owned())
}

pub async fn require_key(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(keys) = st.keys.as_deref() else {
        req.extensions_mut()
            .insert(Client(Client::ANONYMOUS.to_owned()));
        return next.run(req).await;
    };
    let path = req.uri().path();
    if is_open_path(path) {
        return next.run(req).await;
    }
    let needed = required_access(req.method(), path);
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .map(ApiKeys::digest);
    // The dashboard's cookie reads and never writes, whatever key it stands for: a page cannot
    // be tricked into changing data through it.
    let (presented, cap) = match bearer {
        Some(d) => (Some(d), Access::Write),
        None => (
            cookie_value(&req).as_deref().and_then(token_digest),
            Access::Read,
        ),
    };
    let granted = presented
        .and_then(|d| lookup_digest(keys, &d).map(|a| (a.min(cap), Client::of_digest(&d))));
    match granted {
        None => ApiError::Unauthorized.into_response(),
        Some((granted, _)) if granted < needed => ApiError::Forbidden.into_response(),
        Some((_, client)) => {
            req.extensions_mut().insert(client);
            next.run(req).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_grant_their_access() {
        let keys: ApiKeys = "read:reader-key-123,write:writer-key-456".parse().unwrap();
        assert_eq!(lookup(&keys, "reader-key-123"), Some(Access::Read));
        assert_eq!(lookup(&keys, "writer-key-456"), Some(Access::Write));
        assert_eq!(lookup(&keys, "writer-key-45"), None);
        assert_eq!(lookup(&keys, ""), None);
        assert_eq!(
            required_access(&Method::DELETE, "/v1/runs/x"),
            Access::Write
        );
        assert_eq!(required_access(&Method::POST, "/v1/compare"), Access::Read);
        assert!(is_open_path("/docs/index.html") && !is_open_path("/metrics"));
    }

    #[test]
    fn cookie_tokens_stand_for_keys() {
        let keys: ApiKeys = "read:reader-key-123".parse().unwrap();
        let token = cookie_token("reader-key-123");
        assert!(!token.contains("reader"));
        assert_eq!(
            token_digest(&token).and_then(|d| lookup_digest(&keys, &d)),
            Some(Access::Read)
        );
        assert_eq!(token_digest("reader-key-123"), None);
        assert_eq!(token_digest(&"zz".repeat(32)), None);
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER  abc "), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
    }
}
