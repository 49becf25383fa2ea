//! The one way steps come in: creating a run with its first batch, appending a batch, and an
//! OTLP export all go through [`Ingest`], which admits the work (the ingest gate), reads and
//! prepares the steps within the batch memory budget, stores them, tells the read side, and
//! counts them. A fix to any of these lands once for every way in.
//!
//! It knows nothing of HTTP: the API (and any other front end) reads a body within its own
//! limits, takes an [`Admission`] first, and maps [`IngestError`] to its own answers.

pub mod request;

use crate::compute::{ComputeError, RunCache};
use crate::otlp::{self, Encoding, RunTarget, Walked};
use crate::profiler::statistics::cost::PriceTable;
use crate::store::packed::Dictionary;
use crate::store::{
    IdempotencyKey, IngestOutcome, NewRun, PreparedBatch, PreparedStep, Preparer, SEQ_BLOCK_BITS,
    Store, StoreError, Written,
};
use crate::trace::{
    DocRequest, Document, EvalItem, FieldError, InputForm, JsonSource, ParseOptions, StepSink,
    TraceError, from_text_at, read, read_wrapped,
};
use bytes::Bytes;
use indexmap::IndexMap;
use request::CreateRun;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

/// The most steps one batch may hold: what a block of sequence numbers can number.
pub const MAX_BATCH_STEPS: usize = (1 << SEQ_BLOCK_BITS) - 1;
/// The most runs one OTLP export may write to (one per service, typically a handful).
pub const MAX_RUNS_PER_EXPORT: usize = 64;

/// Why an ingest did not store what it was given.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Every ingest slot is taken; worth retrying shortly.
    #[error("every ingest slot is busy with other batches; retry after a few seconds")]
    Busy,
    /// The body or its steps could not be read; pointers are relative to the body.
    #[error(transparent)]
    Input(#[from] TraceError),
    /// A run field failed validation.
    #[error("{}: {}", .0.path, .0.message)]
    Field(FieldError),
    /// An OTLP export this server does not take.
    #[error(transparent)]
    Otlp(#[from] otlp::DecodeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored run could not be read back (a corrupt stored config).
    #[error(transparent)]
    Compute(#[from] ComputeError),
    /// The blocking task that read the body failed.
    #[error("reading the batch failed: {0}")]
    Crashed(String),
}

/// A body's JSON as it arrived: text, or gzip to inflate within `limit` bytes while it is read.
#[derive(Debug, Clone)]
pub enum JsonPayload {
    Text(Bytes),
    Gzip { compressed: Bytes, limit: u64 },
}

impl JsonPayload {
    pub fn source(&self) -> JsonSource<'_> {
        match self {
            JsonPayload::Text(bytes) => JsonSource::Text(bytes),
            JsonPayload::Gzip { compressed, limit } => JsonSource::Gzip {
                compressed,
                limit: *limit,
            },
        }
    }
}

/// An OTLP export as it arrived: its encoding, and gzip to inflate within `limit` bytes.
#[derive(Debug, Clone)]
pub struct OtlpPayload {
    pub encoding: Encoding,
    pub bytes: Bytes,
    pub gzip: bool,
    pub limit: u64,
}

/// A turn at ingesting, held from before the body is read until the batch is stored: the
/// bound on memory across requests is the number of turns times the bound on one.
#[derive(Debug)]
pub struct Admission(#[allow(dead_code)] OwnedSemaphorePermit);

/// What a stored export did.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpOutcome {
    /// The runs its spans went to, in the order they first appear.
    pub runs: Vec<Uuid>,
    pub stored_spans: u64,
    pub rejected_spans: u64,
    pub message: String,
}

/// The ingest service: what every way in shares.
pub struct Ingest {
    store: Arc<dyn Store>,
    cache: Arc<RunCache>,
    slots: Arc<Semaphore>,
    wait: Duration,
    /// Bytes one batch's prepared steps may take.
    batch_memory: usize,
    /// The retention of the runs OTLP exports create.
    otlp_retention: Option<i64>,
    /// What new runs are costed with unless they bring their own.
    prices: Arc<PriceTable>,
}

impl Ingest {
    /// `concurrent` ingests at once, each waiting up to `wait` for its turn.
    pub fn new(
        store: Arc<dyn Store>,
        cache: Arc<RunCache>,
        concurrent: usize,
        wait: Duration,
        batch_memory: usize,
    ) -> Ingest {
        Ingest {
            store,
            cache,
            slots: Arc::new(Semaphore::new(concurrent.max(1))),
            wait,
            batch_memory,
            otlp_retention: Some(DEFAULT_OTLP_RETENTION_SECONDS),
            prices: Arc::default(),
        }
    }

    /// New runs are costed with `prices` unless they bring their own.
    pub fn with_prices(mut self, prices: PriceTable) -> Ingest {
        self.prices = Arc::new(prices);
        self
    }

    /// The prices new runs get.
    pub fn prices(&self) -> &PriceTable {
        &self.prices
    }

    /// The runs OTLP exports create keep a request this long after its last step (`None`:
    /// everything).
    pub fn with_otlp_retention(mut self, seconds: Option<i64>) -> Ingest {
        self.otlp_retention = seconds;
        self
    }

    /// A turn at ingesting, or [`IngestError::Busy`] after waiting for one in vain.
    pub async fn admit(&self) -> Result<Admission, IngestError> {
        match tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Admission(permit)),
            _ => {
                metrics::counter!("agentprof_ingest_refused_busy_total").increment(1);
                Err(IngestError::Busy)
            }
        }
    }

    /// Creates a run from a create body (`{name?, toolkit?, profiler_config?, metadata?,
    /// requests?}`, or a bare step document), in one transaction with its first batch. `client`
    /// scopes an Idempotency-Key.
    pub async fn create(
        &self,
        admission: Admission,
        body: JsonPayload,
        key: Option<String>,
        client: &str,
    ) -> Result<Written, IngestError> {
        let budget = self.batch_memory;
        let (scope, client) = (format!("create {client}"), client.to_owned());
        let prices = self.prices.clone();
        let dictionary = self.store.step_dictionary();
        let (key, (run, batch)) = blocking(move || {
            let source = body.source();
            Ok((
                keyed(scope, client, key, source)?,
                read_create(source, Preparer::new(budget, dictionary), &prices)?,
            ))
        })
        .await?;
        let written = self.store.create_run(run, batch, key.as_ref()).await?;
        drop(admission);
        self.after(&written).await?;
        Ok(written)
    }

    /// Appends a batch (any input form) to run `id`.
    pub async fn append(
        &self,
        admission: Admission,
        id: Uuid,
        body: JsonPayload,
        key: Option<String>,
        client: &str,
    ) -> Result<Written, IngestError> {
        let budget = self.batch_memory;
        let (scope, client) = (format!("append {id} {client}"), client.to_owned());
        let dictionary = self.store.step_dictionary();
        let (key, batch) = blocking(move || {
            let source = body.source();
            Ok((
                keyed(scope, client, key, source)?,
                read_batch(source, Preparer::new(budget, dictionary))?,
            ))
        })
        .await?;
        let written = self.store.append(id, batch, key.as_ref()).await?;
        drop(admission);
        self.after(&written).await?;
        Ok(written)
    }

    /// Stores an OTLP export: each span as the toolkit's steps, each trace a request, each
    /// resource's spans in the run it names (`header`: one existing run for all of them).
    /// Spans that cannot be mapped are counted and named in the outcome, not stored.
    pub async fn otlp(
        &self,
        admission: Admission,
        body: OtlpPayload,
        header: Option<Uuid>,
    ) -> Result<OtlpOutcome, IngestError> {
        let budget = self.batch_memory;
        let dictionary = self.store.step_dictionary();
        let (batches, walked) =
            blocking(move || read_export(&body, header, budget, dictionary)).await?;
        let mut runs = Vec::with_capacity(batches.len());
        let mut stored_spans = 0u64;
        for (group, batch) in walked.groups.iter().zip(batches) {
            let Some(batch) = batch else { continue };
            let id = group.target.run_id();
            if !matches!(group.target, RunTarget::Header(_))
                && self
                    .store
                    .ensure_run(
                        id,
                        otlp_run(&group.service, self.otlp_retention, &self.prices),
                    )
                    .await?
            {
                tracing::info!(run = %id, service = %group.service, "OTLP: created a run on first sight");
            }
            let written = self.store.append(id, batch, None).await?;
            self.after(&written).await?;
            runs.push(id);
            stored_spans += group.spans as u64;
        }
        drop(admission);
        metrics::counter!("agentprof_otlp_spans_total", "outcome" => "stored")
            .increment(stored_spans);
        metrics::counter!("agentprof_otlp_spans_total", "outcome" => "rejected")
            .increment(walked.rejected);
        Ok(OtlpOutcome {
            runs,
            stored_spans,
            rejected_spans: walked.rejected,
            message: walked.message,
        })
    }

    /// After a write: the read side learns the run's new record, and the counters what was
    /// stored. A replayed Idempotency-Key wrote nothing, and counts nothing.
    async fn after(&self, written: &Written) -> Result<(), IngestError> {
        if written.replayed {
            return Ok(());
        }
        self.cache.remember(written.record.clone()).await?;
        if let Some(o) = &written.outcome {
            record(o);
        }
        Ok(())
    }
}

fn record(o: &IngestOutcome) {
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    metrics::counter!("agentprof_steps_received_total").increment(count(o.steps_received));
    metrics::counter!("agentprof_steps_stored_total").increment(count(o.steps_stored));
    metrics::counter!("agentprof_steps_duplicate_total")
        .increment(count(o.steps_skipped_duplicate));
}

/// Runs the CPU work of reading a batch off the async executor.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, IngestError> + Send + 'static,
) -> Result<T, IngestError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| IngestError::Crashed(e.to_string()))?
}

/// A request's Idempotency-Key in its scope, with the fingerprint of its body's JSON text.
fn keyed(
    scope: String,
    client: String,
    key: Option<String>,
    body: JsonSource<'_>,
) -> Result<Option<IdempotencyKey>, IngestError> {
    let Some(key) = key else { return Ok(None) };
    Ok(Some(IdempotencyKey {
        scope,
        client,
        key,
        fingerprint: body.fingerprint()?,
    }))
}

/// A step document as the whole body, read step by step by `preparer` (within its batch memory
/// budget).
fn read_batch(body: JsonSource<'_>, mut preparer: Preparer) -> Result<PreparedBatch, IngestError> {
    let doc = read(body, &ParseOptions::default(), &mut preparer)?;
    checked_size(preparer.finish(doc), "")
}

/// A create body: its run fields, typed, and its steps read as they come.
fn read_create(
    body: JsonSource<'_>,
    mut preparer: Preparer,
    prices: &PriceTable,
) -> Result<(NewRun, Option<PreparedBatch>), IngestError> {
    let wrapped = read_wrapped(body, "requests", &ParseOptions::default(), &mut preparer)?;
    if let Some(other) = wrapped.other {
        return Err(IngestError::Field(FieldError {
            path: String::new(),
            message: format!(
                "expected an object {{name, toolkit, profiler_config, metadata, requests}} or a list of requests, got {other}"
            ),
        }));
    }
    // The fields again as one object's text, for the typed reading that names each failure.
    let mut text = String::from("{");
    for (i, (key, value)) in wrapped.fields.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        // A key as JSON: a string, which cannot fail to write.
        text.push_str(&serde_json::to_string(key).unwrap_or_default());
        text.push(':');
        text.push_str(value.get());
    }
    text.push('}');
    let fields: CreateRun = match from_text_at(text.as_bytes(), "") {
        Ok(fields) => fields,
        Err(TraceError::Invalid { mut errors, .. }) if !errors.is_empty() => {
            return Err(IngestError::Field(errors.swap_remove(0)));
        }
        Err(other) => return Err(other.into()),
    };
    let run = fields.into_new_run(prices).map_err(IngestError::Field)?;
    let batch = wrapped
        .document
        .map(|doc| checked_size(preparer.finish(doc), "/requests"))
        .transpose()?;
    Ok((run, batch))
}

/// A batch the store can number.
fn checked_size(batch: PreparedBatch, at: &str) -> Result<PreparedBatch, IngestError> {
    if batch.step_count() > MAX_BATCH_STEPS {
        return Err(IngestError::Field(FieldError {
            path: at.to_owned(),
            message: format!("a batch holds at most {MAX_BATCH_STEPS} steps; split it"),
        }));
    }
    Ok(batch)
}

/// An export decoded within its limits and mapped into one prepared batch per run (`None` for a
/// run none of whose spans could be mapped). The prepared steps count against `budget` as they
/// are made.
fn read_export(
    body: &OtlpPayload,
    header: Option<Uuid>,
    budget: usize,
    dictionary: &'static Dictionary,
) -> Result<(Vec<Option<PreparedBatch>>, Walked), IngestError> {
    let inflated;
    let bytes: &[u8] = if body.gzip {
        inflated = crate::trace::gunzip(&body.bytes, Some(body.limit))?;
        &inflated
    } else if body.bytes.len() as u64 > body.limit {
        return Err(TraceError::TooLarge { limit: body.limit }.into());
    } else {
        &body.bytes
    };
    let request = otlp::decode(body.encoding, bytes)?;
    let mut groups: Vec<(Preparer, IndexMap<String, Vec<PreparedStep>>)> = Vec::new();
    let mut used = 0usize;
    let walked = otlp::walk(&request, header, MAX_RUNS_PER_EXPORT, |g, trace, step| {
        while groups.len() <= g {
            groups.push((Preparer::new(usize::MAX, dictionary), IndexMap::new()));
        }
        let (preparer, traces) = &mut groups[g];
        let prepared = preparer.keep(step).map_err(TraceError::Refused)?;
        used += prepared.memory();
        if used > budget {
            return Err(TraceError::Refused(format!(
                "the export's spans take more than {} MiB once mapped to steps: lower the \
                 exporter's batch size, or raise AGENTPROF_MAX_BATCH_MEMORY",
                budget >> 20
            )));
        }
        traces.entry(trace.to_owned()).or_default().push(prepared);
        Ok(())
    })?;
    drop(request);
    let mut batches = Vec::with_capacity(walked.groups.len());
    // `groups` has an entry for every run up to the last that got a step, in run order.
    let mut groups = groups.into_iter();
    for group in &walked.groups {
        let Some((preparer, traces)) = groups.next() else {
            batches.push(None);
            continue;
        };
        if group.spans == 0 {
            batches.push(None);
            continue;
        }
        let requests = traces
            .into_iter()
            .enumerate()
            .map(|(position, (trace, mut steps))| {
                // Time order within the export, as the toolkit records steps (stable: a START
                // and its END at one instant keep their order).
                steps.sort_by(|a, b| {
                    a.columns
                        .event_timestamp
                        .total_cmp(&b.columns.event_timestamp)
                });
                DocRequest {
                    request_number: None,
                    eval: Some(EvalItem {
                        id: Value::String(trace.clone()),
                        ..EvalItem::default()
                    }),
                    external_id: Some(trace),
                    position,
                    steps,
                }
            })
            .collect();
        let batch = preparer.finish(Document {
            form: InputForm::Eval,
            requests,
        });
        batches.push(Some(checked_size(batch, "")?));
    }
    Ok((batches, walked))
}

/// How long the runs OTLP creates keep their traffic unless configured otherwise: a week.
pub const DEFAULT_OTLP_RETENTION_SECONDS: i64 = 7 * 24 * 3600;

/// The run a resource's spans create on first sight: named after the service, marked as OTLP's,
/// keeping its traffic for `retention` seconds (a service's run grows as long as it runs).
fn otlp_run(service: &str, retention: Option<i64>, prices: &PriceTable) -> NewRun {
    NewRun {
        name: service.to_owned(),
        profiler_config: Value::Object(Default::default()),
        metadata: crate::jsontext::ObjectJson::from_map(&serde_json::Map::from_iter([
            ("source".to_owned(), Value::from("otlp")),
            ("service.name".to_owned(), Value::from(service)),
        ])),
        toolkit: None,
        retention_seconds: retention,
        prices: prices.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn create_body_validation_points_at_fields() {
        let create = |v: Value| {
            let text = v.to_string();
            read_create(
                JsonSource::Text(text.as_bytes()),
                Preparer::new(usize::MAX, Dictionary::builtin()),
                &PriceTable::default(),
            )
        };
        let path = |e: IngestError| match e {
            IngestError::Field(f) => f.path,
            IngestError::Input(TraceError::Invalid { errors, .. }) => errors[0].path.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(path(create(json!({"name": 5})).unwrap_err()), "/name");
        assert_eq!(
            path(create(json!({"name": "n".repeat(501)})).unwrap_err()),
            "/name"
        );
        assert_eq!(
            path(
                create(json!({"profiler_config": {"prefix_span_analysis": {"top_k": "x"}}}))
                    .unwrap_err()
            ),
            "/profiler_config/prefix_span_analysis/top_k"
        );
        assert_eq!(
            path(create(json!({"requests": [[{"payload": {"event_type": "NOPE"}}]]})).unwrap_err()),
            "/requests/0/0/payload/event_type"
        );
        assert_eq!(path(create(json!({"bogus": 1})).unwrap_err()), "/bogus");
        assert_eq!(
            path(create(json!({"metadata": [1]})).unwrap_err()),
            "/metadata"
        );
        assert_eq!(
            path(create(json!({"toolkit": "x"})).unwrap_err()),
            "/toolkit"
        );
        let (run, batch) = create(json!([[{"payload": {"event_type": "LLM_START"}}]])).unwrap();
        assert_eq!(run.name, "");
        assert_eq!(batch.unwrap().step_count(), 1);
        let (run, batch) = create(json!({"name": null, "metadata": null})).unwrap();
        assert_eq!((run.name.as_str(), run.metadata.as_str()), ("", "{}"));
        assert!(batch.is_none());
    }
}
