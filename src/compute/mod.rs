//! Outputs computed on demand from stored steps, cached per (run, version, profiler config).
//!
//! Two caches share one memory budget: loaded frames (per run version), so that asking for the
//! CSV after the metrics does not read the database again, and rendered outputs (per run
//! version, config and kind). Concurrent requests for the same missing entry wait for one
//! computation instead of starting their own, and the CPU work runs on the blocking pool so it
//! never stalls the async executor.

mod stamps;

use crate::outputs::{Analysis, Output, Source};
use crate::profiler::core::config::OutputLimits;
use crate::profiler::{self, Dialect, Frame, ProfilerConfig};
use crate::store::{LoadedRun, RunRecord, RunStamp, Store, StoreError};
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

/// A comparison's cache key: each run's id, version and scores fingerprint.
type CompareKey = ((Uuid, i64, [u8; 16]), (Uuid, i64, [u8; 16]));

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

type OutputKey = (Uuid, i64, [u8; 16], &'static str);

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

    /// The config's fingerprint combined with that of the eval's scores in the metadata.
    pub fn scores_fingerprint(&self) -> [u8; 16] {
        match crate::profiler::statistics::scores::fingerprint_source(&self.record.metadata) {
            Some(scores) => {
                let mut h = Sha256::new();
                h.update(self.config_fp);
                h.update(scores.as_bytes());
                let mut fp = [0u8; 16];
                fp.copy_from_slice(&h.finalize()[..16]);
                fp
            }
            None => self.config_fp,
        }
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
    frames: Cache<(Uuid, i64), Arc<LoadedRun>>,
    outputs: Cache<OutputKey, Arc<Rendered>>,
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

/// The strong ETag of an output: it changes with the run's data, its config and the output kind.
pub fn etag(run: Uuid, version: i64, config_fp: &[u8; 16], output: &Output) -> String {
    let mut h = Sha256::new();
    h.update(run.as_bytes());
    h.update(version.to_le_bytes());
    h.update(config_fp);
    h.update(output.name.as_bytes());
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    let d = h.finalize();
    let hex: String = d[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

impl RunCache {
    pub fn new(store: Arc<dyn Store>, cache_bytes: u64, limits: OutputLimits) -> RunCache {
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
        RunCache {
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

    /// An output of a run at the snapshot's version, computed once per version. An output the
    /// same computation also gives (its sibling) is cached with it.
    pub async fn render(
        &self,
        run: &RunSnapshot,
        output: &'static Output,
    ) -> Result<Arc<Rendered>, ComputeError> {
        let (id, version, fp) = (run.record.id, run.record.version, run.fingerprint(output));
        run.offers(output)?;
        let key = (id, version, fp, output.name);
        if let Some(hit) = self.outputs.get(&key).await {
            metrics::counter!("agentprof_output_cache_hits_total", "output" => output.name)
                .increment(1);
            return Ok(hit);
        }
        let (config, dialect) = (run.config.clone(), run.dialect);
        let metadata = if output.reads_metadata {
            run.record.metadata.clone()
        } else {
            crate::jsontext::ObjectJson::empty()
        };
        self.outputs
            .try_get_with(key, async move {
                let crashed =
                    |e| ComputeError::internal(format!("computing {} of run {id}", output.name), e);
                let started = Instant::now();
                let (version, bytes, sibling) = match output.source {
                    Source::Steps { write, .. } => {
                        let loaded = self.store.load_steps(id).await?;
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
                        let frame = self.frame(id, version).await?;
                        tokio::task::spawn_blocking(move || {
                            let scores = profiler::statistics::scores::from_metadata(
                                &metadata,
                                &frame.frame,
                            );
                            let analysis =
                                Analysis::new(&frame.frame, &config, dialect).with_scores(scores);
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
                        etag: etag(id, version, &fp, other),
                        version,
                    };
                    let sibling_key = (key.0, key.1, key.2, other.name);
                    self.outputs.insert(sibling_key, Arc::new(rendered)).await;
                }
                Ok::<_, ComputeError>(Arc::new(Rendered {
                    bytes: bytes.into(),
                    etag: etag(id, version, &fp, output),
                    version,
                }))
            })
            .await
            .map_err(|e: Arc<ComputeError>| (*e).clone())
    }

    /// Two runs compared metric by metric (with their evaluator scores), once per pair of
    /// versions and scores.
    pub async fn compare(
        &self,
        baseline: &RunSnapshot,
        candidate: &RunSnapshot,
    ) -> Result<Arc<Compared>, ComputeError> {
        let side = |r: &RunSnapshot| (r.record.id, r.record.version, r.scores_fingerprint());
        let key = (side(baseline), side(candidate));
        let (a, b) = (baseline.clone(), candidate.clone());
        self.comparisons
            .try_get_with(key, async move {
                let (fa, fb) = tokio::try_join!(
                    self.frame(a.record.id, a.record.version),
                    self.frame(b.record.id, b.record.version),
                )?;
                let crashed = |e| ComputeError::internal("comparing two runs", e);
                tokio::task::spawn_blocking(move || {
                    use profiler::statistics::{compare, scores};
                    let sa = scores::from_metadata(&a.record.metadata, &fa.frame);
                    let sb = scores::from_metadata(&b.record.metadata, &fb.frame);
                    Arc::new(Compared {
                        comparison: compare::compare_with_scores(&fa.frame, &fb.frame, &sa, &sb),
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

    /// The frame of a run's version, loaded once. The loaded version can be newer than asked for
    /// when a batch lands in between; the caller's ETag then follows the loaded one.
    pub async fn frame(&self, id: Uuid, version: i64) -> Result<Arc<LoadedRun>, ComputeError> {
        let store = self.store.clone();
        let frame = self
            .frames
            .try_get_with((id, version), async move {
                let started = Instant::now();
                let loaded = store.load(id).await?;
                metrics::histogram!("agentprof_frame_load_seconds")
                    .record(started.elapsed().as_secs_f64());
                Ok::<_, ComputeError>(Arc::new(loaded))
            })
            .await
            .map_err(|e: Arc<ComputeError>| (*e).clone())?;
        if frame.version != version {
            // Newer than asked for: the next reader of that version need not load it again.
            self.frames.insert((id, frame.version), frame.clone()).await;
        }
        Ok(frame)
    }
}

/// What a cached snapshot costs: its metadata (which may be megabytes) and the rest, small.
fn snapshot_weight<K>(_: &K, r: &Arc<RunSnapshot>) -> u32 {
    u32::try_from(r.record.metadata.len() + 1024).unwrap_or(u32::MAX)
}

/// What a frame holds, for the cache's memory budget.
fn frame_weight(frame: &Frame) -> u32 {
    u32::try_from(frame.heap_bytes()).unwrap_or(u32::MAX)
}
