//! OTLP/gRPC: `opentelemetry.proto.collector.trace.v1.TraceService/Export`, served on its own
//! port (`--otlp-grpc-bind`, 4317 by convention) because gRPC needs HTTP/2 and the REST port's
//! connection handling is HTTP/1's.
//!
//! tonic does HTTP/2, the gRPC framing, gzip and deadlines; it never decodes the message. A codec
//! of raw bytes hands the export, inflated within the same bound as OTLP/HTTP's, to the one ingest
//! path OTLP/HTTP uses, so the same spans give the same run over either: run selection (the
//! `x-agentprof-run-id` metadata, then the resource attribute, then `service.name`), limits,
//! partial success, API keys (`authorization` metadata) and the ingest gate are theirs. Failures
//! are gRPC statuses. A busy gate or an unreachable database is UNAVAILABLE with a
//! `google.rpc.RetryInfo`, which the OTLP exporters wait out before retrying; a refusal for size is
//! RESOURCE_EXHAUSTED without one, which they do not retry.

use super::AppState;
use super::error::{ApiError, RETRY_AFTER_SECS};
use super::otlp::{RUN_HEADER, grpc_code, max_export_bytes, named_run};
use crate::config::Access;
use crate::ingest::{Admission, OtlpPayload};
use crate::otlp::{self, Encoding};
use bytes::{Buf, BufMut, Bytes};
use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::codec::{
    Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings, EncodeBuf, Encoder,
};
use tonic::codegen::{Body, BoxFuture, Service, StdError, http};
use tonic::metadata::MetadataValue;
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};
use uuid::Uuid;

/// The one method this service answers.
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// The trace service over the application's state (its ingest, cache, limits and keys).
#[derive(Clone)]
pub struct TraceService {
    state: AppState,
}

impl TraceService {
    pub fn new(state: AppState) -> TraceService {
        TraceService { state }
    }
}

impl NamedService for TraceService {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

impl<B> Service<http::Request<B>> for TraceService
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let limit = max_export_bytes(&self.state);
        let state = self.state.clone();
        Box::pin(async move {
            if req.uri().path() != EXPORT_PATH {
                let status = Status::unimplemented(format!(
                    "{} is not served on this port: it takes OTLP trace exports ({EXPORT_PATH})",
                    req.uri().path()
                ));
                return Ok(status.into_http());
            }
            // The key, the named run and a turn at ingesting come first, from the headers, as
            // on the REST port: a client without a key, or one the gate turns away, never gets
            // an export read and inflated.
            let admitted = match admit(&state, req.headers()).await {
                Ok(admitted) => admitted,
                Err(e) => return Ok(status_of(e).into_http()),
            };
            let mut accept = EnabledCompressionEncodings::default();
            accept.enable(CompressionEncoding::Gzip);
            let mut grpc = Grpc::new(RawCodec)
                .apply_compression_config(accept, EnabledCompressionEncodings::default())
                .apply_max_message_size_config(Some(limit), None);
            let export = Export {
                state,
                admitted: Some(admitted),
            };
            let mut response = grpc.unary(export, req).await;
            // tonic refuses an uncompressed message over the limit as OUT_OF_RANGE, which OTLP
            // exporters retry; it is RESOURCE_EXHAUSTED without RetryInfo, which they do not.
            let headers = response.headers_mut();
            if headers
                .get(Status::GRPC_STATUS)
                .is_some_and(|v| v.as_bytes() == b"11")
            {
                headers.insert(
                    Status::GRPC_STATUS,
                    http::HeaderValue::from(Code::ResourceExhausted as i32),
                );
            }
            Ok(response)
        })
    }
}

/// What an export may proceed with once its headers are checked.
struct Admitted {
    admission: Admission,
    header_run: Option<Uuid>,
}

async fn admit(st: &AppState, headers: &http::HeaderMap) -> Result<Admitted, ApiError> {
    authorize(st, headers)?;
    let header_run = named_run(st, headers).await?;
    let admission = st.ingest.admit().await?;
    Ok(Admitted {
        admission,
        header_run,
    })
}

/// One export: the request's bytes in, an `ExportTraceServiceResponse`'s bytes out.
struct Export {
    state: AppState,
    /// Taken by the one call tonic makes.
    admitted: Option<Admitted>,
}

impl UnaryService<Bytes> for Export {
    type Response = Vec<u8>;
    type Future = BoxFuture<Response<Vec<u8>>, Status>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let state = self.state.clone();
        let admitted = self.admitted.take();
        Box::pin(async move {
            let admitted =
                admitted.ok_or_else(|| Status::internal("an export was called twice"))?;
            export(&state, admitted, request.into_inner())
                .await
                .map_err(status_of)
        })
    }
}

async fn export(
    st: &AppState,
    admitted: Admitted,
    bytes: Bytes,
) -> Result<Response<Vec<u8>>, ApiError> {
    let limit = max_export_bytes(st) as u64;
    let payload = OtlpPayload {
        encoding: Encoding::Protobuf,
        gzip: false,
        bytes,
        limit,
    };
    let outcome = st
        .ingest
        .otlp(admitted.admission, payload, admitted.header_run)
        .await?;
    let body = otlp::ExportResponse::new(outcome.rejected_spans, &outcome.message)
        .encode(Encoding::Protobuf);
    let mut response = Response::new(body);
    let runs: Vec<String> = outcome.runs.iter().map(Uuid::to_string).collect();
    if let Ok(value) = MetadataValue::try_from(runs.join(", "))
        && !runs.is_empty()
    {
        response.metadata_mut().insert(RUN_HEADER, value);
    }
    Ok(response)
}

/// A write key in `authorization: Bearer KEY`, when the server has keys; as on the REST port.
fn authorize(st: &AppState, headers: &http::HeaderMap) -> Result<(), ApiError> {
    let Some(keys) = &st.keys else {
        return Ok(());
    };
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(super::auth::bearer_token)
        .ok_or(ApiError::Unauthorized)?;
    match super::auth::lookup(keys, presented) {
        Some(Access::Write) => Ok(()),
        Some(Access::Read) => Err(ApiError::Forbidden),
        None => Err(ApiError::Unauthorized),
    }
}

/// The gRPC status for one of our errors, with the problem's detail as its message; a refusal
/// worth retrying carries when to retry.
fn status_of(err: ApiError) -> Status {
    let problem = err.problem();
    let code = Code::from_i32(grpc_code(err.status()));
    if code == Code::Unavailable {
        let details =
            ErrorDetails::with_retry_info(Some(Duration::from_secs(RETRY_AFTER_SECS.into())));
        Status::with_error_details(code, problem.detail, details)
    } else {
        Status::new(code, problem.detail)
    }
}

/// Messages as bytes: the export is decoded by the OTLP reader, within its bounds, not by tonic.
/// Public for clients that send export bodies as they are (the tests, `loadtest otlp --grpc`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
