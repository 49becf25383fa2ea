//! The upkeep of live runs, run in the background by the server: building the rollups of runs
//! stored before rollups existed, and deleting what retention lets go.
//!
//! Each step of either is one short transaction (one run's rollup build, one chunk of a run's
//! expired requests), so ingest waits for at most one of them; several replicas may run both at
//! once (the store makes a second builder find the run built, and a second sweeper skip the
//! requests the first holds).

use crate::store::{Store, Swept};
use time::OffsetDateTime;

/// Requests one retention transaction deletes: small enough that a batch into the same run
/// waits a few milliseconds for it, large enough that a day of traffic goes in minutes.
pub const SWEEP_CHUNK: i64 = 200;

/// Builds the rollups of every run that does not have them yet; returns how many it built.
pub async fn build_pending_rollups(store: &dyn Store) -> usize {
    let pending = match store.rollups_pending().await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the runs whose rollups are to be built");
            return 0;
        }
    };
    let mut built = 0;
    for run in pending {
        match store.rebuild_rollups(run).await {
            Ok(()) => {
                built += 1;
                tracing::info!(%run, "built the run's rollups from its steps");
            }
            Err(e) => tracing::warn!(%run, error = %e, "cannot build the run's rollups"),
        }
    }
    built
}

/// Deletes, run by run, the requests whose last step is older than the run's retention at
/// `now`; returns what it deleted in all.
pub async fn sweep_expired(store: &dyn Store, now: OffsetDateTime) -> Swept {
    let mut total = Swept::default();
    let runs = match store.retained_runs().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the runs with a retention");
            return total;
        }
    };
    let now = now.unix_timestamp_nanos() as f64 / 1e9;
    for (run, retention) in runs {
        let cutoff = now - retention as f64;
        let mut of_run = Swept::default();
        loop {
            match store.sweep(run, cutoff, SWEEP_CHUNK).await {
                Ok(s) if s.requests == 0 => break,
                Ok(s) => {
                    of_run.requests += s.requests;
                    of_run.steps += s.steps;
                    // Let waiting batches have the database between chunks.
                    tokio::task::yield_now().await;
                }
                Err(e) => {
                    tracing::warn!(%run, error = %e, "retention sweep failed; retrying next time");
                    break;
                }
            }
        }
        if of_run.requests > 0 {
            tracing::info!(%run, requests = of_run.requests, steps = of_run.steps, "retention deleted expired requests");
        }
        total.requests += of_run.requests;
        total.steps += of_run.steps;
    }
    total
}
