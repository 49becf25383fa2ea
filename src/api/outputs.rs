//! `GET /v1/runs/{run_id}/<output>`: one route per entry of [`crate::outputs::OUTPUTS`], with its
//! OpenAPI operation made from the same entry. Outputs are computed on demand and cached per (run
//! version, profiler config); each carries a strong ETag, and `If-None-Match` answers 304 without
//! computing. The combined requests file is streamed from the database instead.

use super::AppState;
use super::body::{RunId, WindowQuery};
use super::error::{AnalysisProblems, ApiResult, QueryProblems, ReadProblems, RunProblems};
use crate::compute::etag;
use crate::outputs::{OUTPUTS, Output, Source};
use crate::window::Window;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa::IntoResponses;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, KnownFormat, Required, ResponseBuilder, ResponsesBuilder,
    SchemaFormat,
};
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

/// Whether an `If-None-Match` header matches `tag` (weak comparison, `*` matches anything).
pub fn if_none_match(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == tag)
}

/// The route of every output, and its operation in the OpenAPI document.
pub(super) fn routes(mut router: OpenApiRouter<AppState>) -> OpenApiRouter<AppState> {
    for output in &OUTPUTS {
        let path = format!("/v1/runs/{{run_id}}/{}", output.path);
        router = router.route(
            &path,
            get(
                move |State(st): State<AppState>,
                      RunId(id): RunId,
                      WindowQuery(window): WindowQuery,
                      headers: HeaderMap| {
                    serve(st, id, window, headers, output)
                },
            ),
        );
        router.get_openapi_mut().paths.add_path_operation(
            &path,
            vec![HttpMethod::Get],
            operation(output),
        );
        let (_, schemas) = (output.schema)();
        let components = router
            .get_openapi_mut()
            .components
            .get_or_insert_with(Default::default);
        for (name, schema) in schemas {
            components.schemas.entry(name).or_insert(schema);
        }
    }
    router
}

async fn serve(
    st: AppState,
    id: Uuid,
    window: Window,
    headers: HeaderMap,
    output: &'static Output,
) -> ApiResult<Response> {
    let run = st.cache.snapshot(id).await?;
    // Before If-None-Match: `*` must not turn a missing output into a 304.
    run.offers(output)?;
    if let Source::Steps { streamed: true, .. } = output.source {
        let stream = st
            .store
            .stream_requests(id, run.record.rewrite_steps(), &window)
            .await?;
        let body = Body::from_stream(futures::TryStreamExt::map_err(stream, |e| {
            tracing::error!(error = %e, "streaming requests failed mid-response");
            std::io::Error::other("stream aborted")
        }));
        return Ok(([(header::CONTENT_TYPE, output.content_type)], body).into_response());
    }
    let current = etag(
        id,
        run.record.version,
        &run.fingerprint(output),
        output,
        &window,
    );
    let cache_headers = |tag: &str| {
        [
            (
                header::ETAG,
                HeaderValue::from_str(tag).unwrap_or(HeaderValue::from_static("\"\"")),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-cache"),
            ),
        ]
    };
    if if_none_match(&headers, &current) {
        return Ok((StatusCode::NOT_MODIFIED, cache_headers(&current)).into_response());
    }
    let rendered = st.cache.render(&run, output, window).await?;
    Ok((
        StatusCode::OK,
        cache_headers(&rendered.etag),
        [(header::CONTENT_TYPE, output.content_type)],
        rendered.bytes.clone(),
    )
        .into_response())
}

/// An output's operation: its run id, its validator (when it is cached), its body, and the
/// problems every read may answer.
fn operation(output: &Output) -> utoipa::openapi::path::Operation {
    let cached = !matches!(output.source, Source::Steps { streamed: true, .. });
    let string = || ObjectBuilder::new().schema_type(Type::String);
    let media = output.content_type.split(';').next().unwrap_or("").trim();
    let (body, _) = (output.schema)();
    let mut ok = ResponseBuilder::new()
        .description(output.what)
        .content(media, ContentBuilder::new().schema(Some(body)).build());
    let mut parameters = vec![
        ParameterBuilder::new()
            .name("run_id")
            .parameter_in(ParameterIn::Path)
            .description(Some("Run id"))
            .required(Required::True)
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
            ))
            .build(),
    ];
    parameters.extend(window_parameters());
    let mut responses = ResponsesBuilder::new();
    if cached {
        ok = ok.header(
            "ETag",
            HeaderBuilder::new()
                .schema(Some(string()))
                .description(Some("Changes with the run's data and config"))
                .build(),
        );
        parameters.push(
            ParameterBuilder::new()
                .name("If-None-Match")
                .parameter_in(ParameterIn::Header)
                .description(Some("ETag of a copy you hold"))
                .required(Required::False)
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(SchemaType::from_iter([Type::String, Type::Null])),
                ))
                .build(),
        );
    }
    responses = responses.response("200", ok.build());
    if cached {
        responses = responses.response(
            "304",
            ResponseBuilder::new().description("Not modified").build(),
        );
    }
    let responses = responses
        .responses_from_iter(ReadProblems::responses())
        .responses_from_iter(RunProblems::responses());
    let responses = if cached {
        responses.responses_from_iter(AnalysisProblems::responses())
    } else {
        responses.responses_from_iter(QueryProblems::responses())
    }
    .build();
    OperationBuilder::new()
        .tag("outputs")
        .summary(Some(output.summary))
        .description(Some(output.description))
        .operation_id(Some(output.operation))
        .parameters(Some(parameters))
        .responses(responses)
        .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
        .build()
}

/// The `from` and `to` query parameters of every read of a run's analysis.
pub(super) fn window_parameters() -> [utoipa::openapi::path::Parameter; 2] {
    let bound = |name: &str, what: &str, example: &str| {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Query)
            .description(Some(format!(
                "Only the requests that started {what} (a request starts at its earliest \
                 step): Unix seconds or RFC 3339. The output is that of a run holding just \
                 those requests."
            )))
            .required(Required::False)
            .schema(Some(
                <super::schema::TimeBound as utoipa::PartialSchema>::schema(),
            ))
            .example(Some(example.into()))
            .build()
    };
    [
        bound("from", "at or after this time", "2026-12-06T10:00:00Z"),
        bound("to", "before this time", "2026-12-06T11:00:00Z"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_forms() {
        let mut h = HeaderMap::new();
        assert!(!if_none_match(&h, "\"a\""));
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"x\", W/\"a\""),
        );
        assert!(if_none_match(&h, "\"a\""));
        assert!(!if_none_match(&h, "\"b\""));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(if_none_match(&h, "\"b\""));
    }
}
