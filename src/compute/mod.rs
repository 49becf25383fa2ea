//! Outputs computed on demand from stored steps, cached per (run, version, profiler config).
//!
//! Two caches share one memory budget: loaded frames (per run version), so that asking for the
//! CSV after the metrics does not read the database again, and rendered outputs (per run
//! version, config and kind). Concurrent requests for the same missing entry wait for one
//! computation instead of starting their own, and the CPU work runs on the blocking pool so it
//! never stalls the async executor.

mod budget;
mod stamps;

pub use budget::{
    AnalysisGate, COMPARE_MEMORY, Cost, Refusal, TIMELINE_MEMORY, TIMELINE_PAGE_MEMORY,
    timeline_page,
};

use crate::outputs::{Analysis, Output, Source};
use crate::profiler::core::config::OutputLimits;
use crate::profiler::timeline::{self, RenderedWide};
use crate::profiler::{self, Dialect, Frame, ProfilerConfig};
use crate::store::{LoadedRun, RunRecord, RunStamp, Store, StoreError, WindowSize};
use crate::window::Window;
use bytes::Bytes;
use moka::future::Cache;
use sha2::{Digest, Sha256};
use stamps::Stamps;
use std::sync::Arc;
use std::time::Instant;
use uuid::Uuid;

/// Two runs compared, at the versions of their frames that were read.
#[derive(Debug, Clone)]
pub struct Compared {
    pub comparison: profiler::statistics::compare::Comparison,
    pub baseline_version: i64,
    pub candidate_version: i64,
}

/// A window in a cache key: `None` for the whole run (see [`Window::key`]).
type WindowKey = Option<[u8; 16]>;

/// A comparison's cache key: each run's id, version, scores fingerprint and window, then the
/// level (its bits) and the metrics compared.
type CompareKey = (
    (Uuid, i64, [u8; 16], WindowKey),
    (Uuid, i64, [u8; 16], WindowKey),
    u64,
    Option<Vec<String>>,
);

/// A rendered output and the validator that identifies it.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub bytes: Bytes,
    pub etag: String,
    pub version: i64,
}

/// Why an output could not be produced; `Clone` because one failure is shared by every request
/// that waited on the same computation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ComputeError {
    #[error("run {0} not found")]
    RunNotFound(Uuid),
    #[error("database unavailable")]
    Unavailable,
    /// The output belongs to another toolkit version than the run follows.
    #[error("{output} is an output of nvidia-nat 1.9; run {run} follows {dialect}")]
    NotInDialect {
        run: Uuid,
        output: &'static str,
        dialect: Dialect,
    },
    /// The computation would take more memory than the whole analysis budget.
    #[error(
        "analysing this {what} would take about {} MiB, more than the {} MiB analyses may take \
         ({fits})",
        estimate >> 20,
        budget >> 20,
        fits = match fits {
            Some(w) => format!(
                "the most recent window that fits starts at {} (from={})",
                crate::window::rfc3339(w.from.unwrap_or(f64::NEG_INFINITY)),
                w.from.unwrap_or(f64::NEG_INFINITY)
            ),
            None => "no window of it fits: not even its latest request alone".to_owned(),
        }
    )]
    WindowTooLarge {
        what: &'static str,
        estimate: u64,
        budget: u64,
        /// The most recent window of the one asked for that fits, when one does.
        fits: Option<Window>,
    },
    /// Every byte of the analysis budget stayed taken for as long as a request waits.
    #[error("the memory analyses may take is in use by others; retry shortly")]
    Busy,
    /// Anything else: a corrupt stored config or row, a crashed computation. Logged with its
    /// source chain, never shown to clients.
    #[error("{context}")]
    Internal {
        context: String,
        #[source]
        source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },
}

impl ComputeError {
    fn internal(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> ComputeError {
        ComputeError::Internal {
            context: context.into(),
            source: Some(Arc::new(source)),
        }
    }
}

impl From<StoreError> for ComputeError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::RunNotFound(id) => ComputeError::RunNotFound(id),
            StoreError::Unavailable(_) => ComputeError::Unavailable,
            other => ComputeError::internal("reading the run failed", other),
        }
    }
}

type OutputKey = (Uuid, i64, [u8; 16], &'static str, WindowKey);

/// A run record as read from the store, with its parsed config, its dialect and their
/// fingerprint.
#[derive(Debug, Clone)]
pub struct RunSnapshot {
    pub record: RunRecord,
    pub config: ProfilerConfig,
    pub dialect: Dialect,
    /// Part of every cache key and ETag: it changes with the config and with the dialect.
    pub config_fp: [u8; 16],
}

impl RunSnapshot {
    /// The fingerprint in an output's cache key and ETag: the config's, and for an output that
    /// also reads the eval's scores from the metadata, theirs as well (a metadata change leaves
    /// the version as it is).
    pub fn fingerprint(&self, output: &Output) -> [u8; 16] {
        if output.reads_metadata {
            self.scores_fingerprint()
        } else {
            self.config_fp
        }
    }

    /// The config's fingerprint combined with those of the eval's scores in the metadata and
    /// of the run's prices.
    pub fn scores_fingerprint(&self) -> [u8; 16] {
        let scores = crate::profiler::statistics::scores::fingerprint_source(&self.record.metadata);
        if scores.is_none() && self.record.prices.is_empty() {
            return self.config_fp;
        }
        let mut h = Sha256::new();
        h.update(self.config_fp);
        h.update(scores.unwrap_or_default().as_bytes());
        h.update([0u8]);
        if !self.record.prices.is_empty() {
            // A map of strings to numbers always serializes; an empty fingerprint instead would
            // let two tables share cached outputs.
            h.update(serde_json::to_vec(&self.record.prices).expect("a price table serializes"));
        }
        let mut fp = [0u8; 16];
        fp.copy_from_slice(&h.finalize()[..16]);
        fp
    }

    /// Whether the run has output `kind` at all: nat 1.9's own files are not outputs of an
    /// aiqtoolkit 1.1 run (docs/deviations.md#d20).
    pub fn offers(&self, output: &Output) -> Result<(), ComputeError> {
        if !output.offered_in(self.dialect) {
            return Err(ComputeError::NotInDialect {
                run: self.record.id,
                output: output.name,
                dialect: self.dialect,
            });
        }
        Ok(())
    }
}

/// What the service keeps in memory about runs: their records (per version and last change),
/// their loaded frames and their rendered outputs, within one memory budget. Everything here can
/// be recomputed from the store, and nothing here can outlive a write: every read first asks the
/// store for the run's stamp (see [`RunCache::snapshot`]).
pub struct RunCache {
    store: Arc<dyn Store>,
    stamps: Stamps,
    /// The latest snapshot of each run read lately, weighed by its bytes (its metadata can be
    /// large): one per run, never one per version.
    latest: Cache<Uuid, Arc<RunSnapshot>>,
    /// Reads of a new stamp in flight, so that concurrent readers share one (kept seconds).
    loads: Cache<(Uuid, RunStamp), Arc<RunSnapshot>>,
    frames: Cache<(Uuid, i64, WindowKey), Arc<LoadedRun>>,
    outputs: Cache<OutputKey, Arc<Rendered>>,
    /// The timeline's run-wide parts, rendered, per run version, window and dialect.
    timelines: Cache<(Uuid, i64, WindowKey, Dialect), Arc<RenderedWide>>,
    /// What runs and windows hold (for estimates), per version.
    sizes: Cache<(Uuid, i64, WindowKey), WindowSize>,
    /// The memory analyses may take, and the gate that holds them within it.
    gate: AnalysisGate,
    /// Comparisons of two runs: a client asking again, or many asking at once, get one.
    comparisons: Cache<CompareKey, Arc<Compared>>,
    limits: OutputLimits,
}

/// A run's effective config, and the fingerprint of it and the run's dialect: part of every
/// cache key and ETag.
pub fn effective_config(
    run: &RunRecord,
    limits: OutputLimits,
) -> Result<(ProfilerConfig, [u8; 16]), ComputeError> {
    let mut config = ProfilerConfig::from_json(run.profiler_config.clone()).map_err(|e| {
        ComputeError::internal(
            format!("run {}: stored profiler config is invalid", run.id),
            e,
        )
    })?;
    // A plain struct of numbers, strings and maps: serialising it cannot fail, and an empty
    // fingerprint shared by every config would be far worse than a panic.
    config.limits = limits;
    let mut canonical = serde_json::to_vec(&config).expect("ProfilerConfig serialises");
    canonical.extend_from_slice(run.dialect().0.as_str().as_bytes());
    // The limits are the process's, not the run's: replicas set alike give the same ETags.
    canonical.extend_from_slice(&limits.spike_uuid_bytes.to_le_bytes());
    let digest = Sha256::digest(&canonical);
    let mut fp = [0u8; 16];
    fp.copy_from_slice(&digest[..16]);
    Ok((config, fp))
}

/// The strong ETag of an output: it changes with the run's data, its config, the output kind and
/// the window (the whole run's ETags are those it had before windows existed).
pub fn etag(
    run: Uuid,
    version: i64,
    config_fp: &[u8; 16],
    output: &Output,
    window: &Window,
) -> String {
    let mut h = Sha256::new();
    h.update(run.as_bytes());
    h.update(version.to_le_bytes());
    h.update(config_fp);
    h.update(output.name.as_bytes());
    if let Some(key) = window.key() {
        h.update(key);
    }
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    let d = h.finalize();
    let hex: String = d[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

impl RunCache {
    pub fn new(
        store: Arc<dyn Store>,
        cache_bytes: u64,
        limits: OutputLimits,
        gate: AnalysisGate,
    ) -> RunCache {
        let frames = Cache::builder()
            .max_capacity(cache_bytes / 2)
            .weigher(|_, f: &Arc<LoadedRun>| frame_weight(&f.frame))
            .build();
        let outputs = Cache::builder()
            .max_capacity(cache_bytes / 2)
            .weigher(|_, r: &Arc<Rendered>| u32::try_from(r.bytes.len()).unwrap_or(u32::MAX))
            .build();
        let latest = Cache::builder()
            .max_capacity(cache_bytes / 4)
            .weigher(snapshot_weight)
            .time_to_idle(std::time::Duration::from_secs(600))
            .build();
        let loads = Cache::builder()
            .max_capacity(cache_bytes / 8)
            .weigher(snapshot_weight)
            .time_to_live(std::time::Duration::from_secs(5))
            .build();
        let comparisons = Cache::builder()
            .max_capacity(1_000)
            .time_to_idle(std::time::Duration::from_secs(600))
            .build();
        let timelines = Cache::builder()
            .max_capacity(cache_bytes / 8)
            .weigher(|_, t: &Arc<RenderedWide>| u32::try_from(t.len()).unwrap_or(u32::MAX))
            .build();
        let sizes = Cache::builder()
            .max_capacity(10_000)
            .time_to_idle(std::time::Duration::from_secs(600))
            .build();
        RunCache {
            timelines,
            sizes,
            gate,
            comparisons,
            stamps: Stamps::new(store.clone()),
            store,
            latest,
            loads,
            frames,
            outputs,
            limits,
        }
    }

    /// The run's record and config as they are now. Each call gets the run's stamp (version and
    /// last change: one indexed lookup, shared with the readers that arrived meanwhile, see
    /// [`stamps`]), and reads the whole record only when the stamp is new, so a write
    /// acknowledged by any replica sharing the database is seen by the next read on every other,
    /// ETags included. Concurrent readers of a new stamp share one read.
    pub async fn snapshot(&self, id: Uuid) -> Result<Arc<RunSnapshot>, ComputeError> {
        let stamp = self.stamps.get(id).await?;
        if let Some(latest) = self.latest.get(&id).await
            && latest.record.stamp() == stamp
        {
            return Ok(latest);
        }
        let snapshot = self
            .loads
            .try_get_with((id, stamp), async move {
                let record = self.store.get_run(id).await?;
                self.snapshot_of(record).await.map(Arc::new)
            })
            .await
            .map_err(|e: Arc<ComputeError>| (*e).clone())?;
        self.latest.insert(id, snapshot.clone()).await;
        Ok(snapshot)
    }

    /// The snapshot of a record just written, so the next read needs no second look-up.
    pub async fn remember(&self, record: RunRecord) -> Result<(), ComputeError> {
        let snapshot = Arc::new(self.snapshot_of(record).await?);
        self.latest.insert(snapshot.record.id, snapshot).await;
        Ok(())
    }

    /// A record's snapshot, its metadata shared with the run's previous snapshot when it is the
    /// same (it changes far less often than the version): versions of a run with megabytes of
    /// metadata hold one copy of it.
    async fn snapshot_of(&self, mut record: RunRecord) -> Result<RunSnapshot, ComputeError> {
        if let Some(previous) = self.latest.get(&record.id).await
            && previous.record.metadata == record.metadata
        {
            record.metadata = previous.record.metadata.clone();
        }
        let (config, config_fp) = effective_config(&record, self.limits)?;
        Ok(RunSnapshot {
            dialect: record.dialect().0,
            record,
            config,
            config_fp,
        })
    }

    /// An output of a run (or of a window of it) at the snapshot's version, computed once per
    /// version. An output the same computation also gives (its sibling) is cached with it.
    pub async fn render(
        &self,
        run: &RunSnapshot,
        output: &'static Output,
        window: Window,
    ) -> Result<Arc<Rendered>, ComputeError> {
        let (id, version, fp) = (run.record.id, run.record.version, run.fingerprint(output));
        run.offers(output)?;
        let key = (id, version, fp, output.name, window.key());
        if let Some(hit) = self.outputs.get(&key).await {
            metrics::counter!("agentprof_output_cache_hits_total", "output" => output.name)
                .increment(1);
            return Ok(hit);
        }
        let (config, dialect) = (run.config.clone(), run.dialect);
        let (metadata, prices) = if output.reads_metadata {
            (run.record.metadata.clone(), run.record.prices.clone())
        } else {
            Default::default()
        };
        self.outputs
            .try_get_with(key, async move {
                let crashed =
                    |e| ComputeError::internal(format!("computing {} of run {id}", output.name), e);
                let bodies = matches!(output.source, Source::Steps { .. });
                let _permit = self
                    .admit(
                        id,
                        version,
                        &window,
                        Cost::of(output, &self.limits),
                        bodies,
                        "output",
                    )
                    .await?;
                let started = Instant::now();
                let (version, bytes, sibling) = match output.source {
                    Source::Steps { write, .. } => {
                        let loaded = self.store.load_steps(id, &window).await?;
                        tokio::task::spawn_blocking(move || {
                            let mut bytes = Vec::new();
                            // Writing to a Vec cannot fail.
                            let _ = write(&loaded.requests, dialect, &mut bytes);
                            (loaded.version, bytes, None)
                        })
                        .await
                        .map_err(crashed)?
                    }
                    Source::Frame(_) => {
                        let frame = self.frame(id, version, &window).await?;
                        tokio::task::spawn_blocking(move || {
                            let scores = profiler::statistics::scores::from_metadata(
                                &metadata,
                                &frame.frame,
                            );
                            let analysis = Analysis::new(&frame.frame, &config, dialect)
                                .with_scores(scores)
                                .with_prices(prices);
                            let sibling = output
                                .sibling
                                .and_then(crate::outputs::by_name)
                                .map(|s| (s, s.render(&analysis)));
                            (frame.version, output.render(&analysis), sibling)
                        })
                        .await
                        .map_err(crashed)?
                    }
                };
                metrics::counter!("agentprof_computations_total", "output" => output.name)
                    .increment(1);
                metrics::histogram!("agentprof_computation_seconds", "output" => output.name)
                    .record(started.elapsed().as_secs_f64());
                if let Some((other, bytes)) = sibling {
                    let rendered = Rendered {
                        bytes: bytes.into(),
                        etag: etag(id, version, &fp, other, &window),
                        version,
                    };
                    let sibling_key = (key.0, key.1, key.2, other.name, key.4);
                    self.outputs.insert(sibling_key, Arc::new(rendered)).await;
                }
                Ok::<_, ComputeError>(Arc::new(Rendered {
                    bytes: bytes.into(),
                    etag: etag(id, version, &fp, output, &window),
                    version,
                }))
            })
            .await
            .map_err(|e: Arc<ComputeError>| (*e).clone())
    }

    /// Two runs (or windows of them) compared metric by metric, with their evaluator scores,
    /// once per pair of versions, scores and windows.
    pub async fn compare(
        &self,
        baseline: (&RunSnapshot, Window),
        candidate: (&RunSnapshot, Window),
        options: profiler::statistics::compare::CompareOptions,
    ) -> Result<Arc<Compared>, ComputeError> {
        let side = |(r, w): (&RunSnapshot, Window)| {
            (
                r.record.id,
                r.record.version,
                r.scores_fingerprint(),
                w.key(),
            )
        };
        let key = (
            side(baseline),
            side(candidate),
            options.alpha.to_bits(),
            options.only.clone(),
        );
        let (a, wa) = (baseline.0.clone(), baseline.1);
        let (b, wb) = (candidate.0.clone(), candidate.1);
        self.comparisons
            .try_get_with(key, async move {
                let (sa, sb) = tokio::try_join!(
                    self.size(a.record.id, a.record.version, &wa),
                    self.size(b.record.id, b.record.version, &wb),
                )?;
                let estimate = Cost::frame_and(COMPARE_MEMORY).bytes(&sa, false)
                    + Cost::frame_and(COMPARE_MEMORY).bytes(&sb, false);
                let _permit = self.gate.admit(estimate).await.map_err(|r| match r {
                    Refusal::TooLarge => ComputeError::WindowTooLarge {
                        what: "comparison",
                        estimate,
                        budget: self.gate.budget(),
                        fits: None,
                    },
                    Refusal::Busy => ComputeError::Busy,
                })?;
                let (fa, fb) = tokio::try_join!(
                    self.frame(a.record.id, a.record.version, &wa),
                    self.frame(b.record.id, b.record.version, &wb),
                )?;
                let crashed = |e| ComputeError::internal("comparing two runs", e);
                tokio::task::spawn_blocking(move || {
                    use profiler::statistics::{compare, scores};
                    let ea = scores::of_eval(&a.record.metadata, &fa.frame);
                    let eb = scores::of_eval(&b.record.metadata, &fb.frame);
                    Arc::new(Compared {
                        comparison: compare::compare_sides(
                            compare::Side::of(&fa.frame, &ea.scores)
                                .with_prices(&a.record.prices)
                                .with_items(&ea.items),
                            compare::Side::of(&fb.frame, &eb.scores)
                                .with_prices(&b.record.prices)
                                .with_items(&eb.items),
                            &options,
                        ),
                        baseline_version: fa.version,
                        candidate_version: fb.version,
                    })
                })
                .await
                .map_err(crashed)
            })
            .await
            .map_err(|e: Arc<ComputeError>| (*e).clone())
    }

    /// A page of the timeline (its JSON): the run-wide parts are computed once per run version
    /// and window and kept rendered; a page computes only its own requests' calls.
    pub async fn timeline(
        &self,
        run: &RunSnapshot,
        window: Window,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<u8>, ComputeError> {
        let (id, version, dialect) = (run.record.id, run.record.version, run.dialect);
        let key = (id, version, window.key(), dialect);
        let cached = self.timelines.get(&key).await;
        let _permit = match cached {
            Some(_) => {
                let size = self.size(id, version, &window).await?;
                let estimate = budget::timeline_page(&size);
                self.gate.admit(estimate).await.map_err(|r| match r {
                    // The page is within the run-wide parts' estimate, which was admitted.
                    Refusal::TooLarge | Refusal::Busy => ComputeError::Busy,
                })?
            }
            None => {
                self.admit(
                    id,
                    version,
                    &window,
                    Cost::frame_and(TIMELINE_MEMORY),
                    false,
                    "timeline",
                )
                .await?
            }
        };
        let frame = self.frame(id, version, &window).await?;
        let crashed = |e| ComputeError::internal(format!("the timeline of run {id}"), e);
        let wide = match cached {
            Some(wide) => wide,
            None => {
                let f = frame.clone();
                let wide = tokio::task::spawn_blocking(move || {
                    Arc::new(timeline::run_wide(&f.frame, dialect).rendered())
                })
                .await
                .map_err(crashed)?;
                self.timelines
                    .insert((id, frame.version, window.key(), dialect), wide.clone())
                    .await;
                wide
            }
        };
        tokio::task::spawn_blocking(move || {
            let calls = timeline::page(&frame.frame, dialect, wide.origin(), offset, limit);
            wide.page_json(offset, limit, &calls)
        })
        .await
        .map_err(crashed)
    }

    /// What a run or window holds, looked up once per version.
    async fn size(
        &self,
        id: Uuid,
        version: i64,
        window: &Window,
    ) -> Result<WindowSize, ComputeError> {
        let store = self.store.clone();
        let w = *window;
        self.sizes
            .try_get_with((id, version, window.key()), async move {
                store.size(id, &w).await.map_err(ComputeError::from)
            })
            .await
            .map_err(|e: Arc<ComputeError>| (*e).clone())
    }

    /// Takes what a computation of `cost` over the run or window will hold from the analysis
    /// budget, or says why it cannot: too large for the whole budget (with the most recent
    /// window that fits), or the budget stayed taken.
    async fn admit(
        &self,
        id: Uuid,
        version: i64,
        window: &Window,
        cost: Cost,
        bodies: bool,
        what: &'static str,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, ComputeError> {
        let size = self.size(id, version, window).await?;
        let estimate = cost.bytes(&size, bodies);
        match self.gate.admit(estimate).await {
            Ok(permit) => Ok(permit),
            Err(Refusal::Busy) => Err(ComputeError::Busy),
            Err(Refusal::TooLarge) => {
                let budget = self.gate.budget();
                let per_byte = if bodies { 0.0 } else { cost.per_byte };
                let per_step = if bodies {
                    // Bodies are not in the per-request column figures: bound them per step
                    // by the window's own average.
                    cost.per_step
                        + cost.per_byte * size.body_bytes as f64 / size.steps.max(1) as f64
                } else {
                    cost.per_step
                };
                let from = self
                    .store
                    .fitting_start(
                        id,
                        window,
                        [per_step, per_byte, cost.per_request],
                        budget as f64 - cost.unscaled(&size),
                    )
                    .await?;
                Err(ComputeError::WindowTooLarge {
                    what,
                    estimate,
                    budget,
                    fits: from.map(|from| Window {
                        from: Some(from),
                        to: window.to,
                    }),
                })
            }
        }
    }

    /// The frame of a run's version (or of a window of it), loaded once. The loaded version can
    /// be newer than asked for when a batch lands in between; the caller's ETag then follows the
    /// loaded one.
    pub async fn frame(
        &self,
        id: Uuid,
        version: i64,
        window: &Window,
    ) -> Result<Arc<LoadedRun>, ComputeError> {
        let store = self.store.clone();
        let w = *window;
        let frame = self
            .frames
            .try_get_with((id, version, window.key()), async move {
                let started = Instant::now();
                let loaded = store.load(id, &w).await?;
                metrics::histogram!("agentprof_frame_load_seconds")
                    .record(started.elapsed().as_secs_f64());
                Ok::<_, ComputeError>(Arc::new(loaded))
            })
            .await
            .map_err(|e: Arc<ComputeError>| (*e).clone())?;
        if frame.version != version {
            // Newer than asked for: the next reader of that version need not load it again.
            self.frames
                .insert((id, frame.version, window.key()), frame.clone())
                .await;
        }
        Ok(frame)
    }
}

/// What a cached snapshot costs: its metadata (which may be megabytes), its price table (about
/// 100 bytes a model) and the rest, small.
fn snapshot_weight<K>(_: &K, r: &Arc<RunSnapshot>) -> u32 {
    let prices = 100 * r.record.prices.models.len();
    u32::try_from(r.record.metadata.len() + prices + 1024).unwrap_or(u32::MAX)
}

/// What a frame holds, for the cache's memory budget.
fn frame_weight(frame: &Frame) -> u32 {
    u32::try_from(frame.heap_bytes()).unwrap_or(u32::MAX)
}
