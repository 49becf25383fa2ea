//! The dashboard: three pages (`/ui`, `/ui/runs/{id}`, `/ui/compare`) and their assets, compiled
//! into the binary so that it works offline and behind any firewall.
//!
//! The pages are static shells; their scripts read the same JSON API that everyone else uses,
//! so what the dashboard shows is what the API says (the browser test checks exactly that). The
//! charts are drawn by Observable Plot (vendored with d3 under `ui/assets/vendor`, see
//! docs/dashboard.md for why), and every chart has a table with its data beside it.
//!
//! Keys: when the server has API keys, a page whose data request gets a 401 shows a form that
//! posts the key to `/ui/login`, which checks it and keeps its digest in an `HttpOnly`,
//! `SameSite=Strict` cookie (never in a URL or in script-readable storage). The API accepts that
//! cookie for reading only (see `api::auth`), so a write key typed into the dashboard cannot be
//! used to change anything through it, and a leaked cookie reveals no key.

use crate::api::AppState;
use crate::api::auth::{self, KEY_COOKIE};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use cookie::{Cookie, SameSite};
use std::sync::LazyLock;

/// A compiled-in file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $ct:expr) => {
        Asset {
            name: $name,
            content_type: $ct,
            bytes: include_bytes!(concat!("../../ui/assets/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("common.js", JS),
    asset!("runs.js", JS),
    asset!("run.js", JS),
    asset!("compare.js", JS),
    asset!("vendor/d3.min.js", JS),
    asset!("vendor/plot.umd.min.js", JS),
    asset!("vendor/LICENSE-d3.txt", "text/plain; charset=utf-8"),
    asset!("vendor/LICENSE-plot.txt", "text/plain; charset=utf-8"),
];

/// A page: the shared layout (`ui/layout.html`: head, site header, the key form of
/// `ui/login.html`) around its own main content (`ui/<page>.html`).
struct Page {
    title: &'static str,
    /// The page's module in `ui/assets`.
    module: &'static str,
    /// Whether it draws charts (and so loads the charting library).
    charts: bool,
    /// Whether it is the runs list (marked as the current page in the navigation).
    runs_list: bool,
    main: &'static str,
}

const LAYOUT: &str = include_str!("../../ui/layout.html");
const LOGIN: &str = include_str!("../../ui/login.html");

impl Page {
    fn render(&self) -> String {
        let mut scripts = String::new();
        if self.charts {
            scripts.push_str(
                "<script src=\"/ui/assets/vendor/d3.min.js\" defer></script>\n\
                 <script src=\"/ui/assets/vendor/plot.umd.min.js\" defer></script>\n",
            );
        }
        scripts.push_str(&format!(
            "<script type=\"module\" src=\"/ui/assets/{}\"></script>",
            self.module
        ));
        LAYOUT
            .replace("{{title}}", self.title)
            .replace("{{scripts}}", &scripts)
            .replace(
                "{{runs-current}}",
                if self.runs_list {
                    " aria-current=\"page\""
                } else {
                    ""
                },
            )
            .replace("{{main}}", &self.main.replace("{{login}}\n", LOGIN))
    }
}

static RUNS_PAGE: LazyLock<String> = LazyLock::new(|| {
    Page {
        title: "Runs",
        module: "runs.js",
        charts: false,
        runs_list: true,
        main: include_str!("../../ui/runs.html"),
    }
    .render()
});
static RUN_PAGE: LazyLock<String> = LazyLock::new(|| {
    Page {
        title: "Run",
        module: "run.js",
        charts: true,
        runs_list: false,
        main: include_str!("../../ui/run.html"),
    }
    .render()
    .replace("{{files}}", &output_files())
});

/// The run page's list of output files: one item per output of the registry, which the page's
/// script points at its run (and removes when the run's toolkit lacks it).
fn output_files() -> String {
    crate::outputs::OUTPUTS
        .iter()
        .map(|o| {
            format!(
                "      <li data-path=\"{}\" data-nat-only=\"{}\"><a>{}</a></li>",
                o.path,
                o.nat_only,
                (o.file)(&crate::profiler::ProfilerConfig::default())
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
static COMPARE_PAGE: LazyLock<String> = LazyLock::new(|| {
    Page {
        title: "Compare runs",
        module: "compare.js",
        charts: true,
        runs_list: false,
        main: include_str!("../../ui/compare.html"),
    }
    .render()
});

/// Pages may load scripts, styles and data from this server only: nothing leaves it, even if a
/// run's text (shown in the details) tried to. Plot styles its SVGs inline, hence
/// `'unsafe-inline'` for styles (never for scripts).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; form-action 'self'; \
                   base-uri 'none'; frame-ancestors 'none'";

/// The dashboard's routes; they answer without a key (the pages hold no data).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| page(&RUNS_PAGE)))
        .route("/ui/", get(|| async { Redirect::permanent("/ui") }))
        .route("/ui/runs/{run_id}", get(|| page(&RUN_PAGE)))
        .route("/ui/compare", get(|| page(&COMPARE_PAGE)))
        .route("/ui/assets/{*path}", get(asset))
        .route("/ui/login", post(login))
        .route("/ui/logout", post(logout))
}

async fn page(html: &'static LazyLock<String>) -> Response {
    (
        [
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("same-origin"),
            ),
        ],
        Html(html.as_str()),
    )
        .into_response()
}

async fn asset(Path(path): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == path) {
        Some(a) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(a.content_type),
                ),
                // Revalidated hourly: the names carry no version, and a new binary may serve
                // new files under them.
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=3600"),
                ),
            ],
            a.bytes,
        )
            .into_response(),
        None => crate::api::error::ApiError::NotFound(format!("no asset {path}")).into_response(),
    }
}

#[derive(Debug, serde::Deserialize)]
struct LoginForm {
    key: String,
    /// Where to go back to: a dashboard path, nothing else (no open redirect).
    #[serde(default)]
    next: String,
}

fn back_to(next: &str) -> &str {
    let safe = next.is_ascii()
        && next.starts_with("/ui")
        && !next.starts_with("//")
        && !next.contains('\\')
        && next.chars().all(|c| !c.is_control());
    if safe { next } else { "/ui" }
}

/// Checks the key and keeps it in the cookie. A wrong key gets a 401 page, not a cookie.
async fn login(
    State(st): State<AppState>,
    headers: HeaderMap,
    form: axum::Form<LoginForm>,
) -> Response {
    if cross_site(&headers) {
        return StatusCode::FORBIDDEN.into_response();
    }
    let next = back_to(&form.next).to_owned();
    let valid = match st.keys.as_deref() {
        Some(keys) => auth::lookup(keys, form.key.trim()).is_some(),
        // Without keys there is nothing to log in to.
        None => true,
    };
    if !valid {
        let body = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Key not accepted · agentprof</title>\
             <link rel=\"stylesheet\" href=\"/ui/assets/app.css\"></head><body><main><h1>Key not accepted</h1>\
             <p role=\"alert\">That is not one of this server's API keys.</p><p><a href=\"{}\">Try again</a></p></main></body></html>",
            html_escape(&next)
        );
        let mut resp = (StatusCode::UNAUTHORIZED, Html(body)).into_response();
        resp.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        return resp;
    }
    let cookie = Cookie::build((KEY_COOKIE, auth::cookie_token(form.key.trim())))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(over_https(&headers))
        .build();
    with_cookie(Redirect::to(&next).into_response(), &cookie)
}

async fn logout(headers: HeaderMap) -> Response {
    if cross_site(&headers) {
        return StatusCode::FORBIDDEN.into_response();
    }
    let cookie = Cookie::build((KEY_COOKIE, ""))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(over_https(&headers))
        .max_age(cookie::time::Duration::ZERO)
        .build();
    with_cookie(Redirect::to("/ui").into_response(), &cookie)
}

/// Whether a form was posted from another site's page (login CSRF: planting a key of the
/// attacker's, or logging someone out). Browsers send `Sec-Fetch-Site`; older ones `Origin`.
fn cross_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return !matches!(site, "same-origin" | "none");
    }
    match (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) {
        (Some(origin), Some(host)) => origin.split_once("://").map(|(_, h)| h) != Some(host),
        _ => false,
    }
}

/// Whether the browser reached us over HTTPS (directly or through a proxy that says so); the
/// cookie is then `Secure`.
fn over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

fn with_cookie(mut resp: Response, cookie: &Cookie<'_>) -> Response {
    match HeaderValue::from_str(&cookie.encoded().to_string()) {
        Ok(v) => {
            resp.headers_mut().append(header::SET_COOKIE, v);
            resp
        }
        // A key with characters a header cannot carry cannot be one of ours either.
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_only_returns_to_the_dashboard() {
        assert_eq!(back_to("/ui/runs/x?a=1"), "/ui/runs/x?a=1");
        assert_eq!(back_to("https://evil.example/ui"), "/ui");
        assert_eq!(back_to("//evil.example/ui"), "/ui");
        assert_eq!(back_to("/ui\\..\\x"), "/ui");
        assert_eq!(back_to(""), "/ui");
        assert_eq!(back_to("/ui/é"), "/ui");
    }

    #[test]
    fn pages_are_whole_documents() {
        for page in [&*RUNS_PAGE, &*RUN_PAGE, &*COMPARE_PAGE] {
            assert!(page.starts_with("<!doctype html>") && page.trim_end().ends_with("</html>"));
            assert!(!page.contains("{{"), "a placeholder was left: {page}");
            assert_eq!(page.matches("id=\"login\"").count(), 1);
            assert_eq!(page.matches("<h1").count(), 1);
        }
        assert!(RUNS_PAGE.contains("aria-current") && !RUN_PAGE.contains("aria-current"));
        assert!(RUN_PAGE.contains("plot.umd.min.js") && !RUNS_PAGE.contains("plot.umd.min.js"));
    }

    #[test]
    fn every_asset_is_compiled_in() {
        for a in ASSETS {
            assert!(!a.bytes.is_empty(), "{} is empty", a.name);
        }
    }
}
