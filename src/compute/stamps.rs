//! Run stamps, looked up once for many readers.
//!
//! Every read asks the database for its run's stamp, so that a write acknowledged by any replica is
//! seen by the next read on every other. Under many readers of one run that is one query per read;
//! this coalesces them without giving up the guarantee. A lookup that *started* after a reader
//! arrived reflects every write acknowledged before it arrived, so a reader may share any lookup
//! that has not started yet, never one already on its way. Per run there is therefore at most one
//! lookup running and one queued behind it: a reader joins the queued one (creating it if need
//! be), which starts when the running one ends. With 32 clients on one run, one query serves
//! everyone who arrived while the previous one ran.
//!
//! Each lookup runs as its own task. Were it driven only by its readers, a reader dropped mid-query
//! (a client that went away, or `/v1/compare` failing fast on its other run) would leave a lookup
//! that nobody polls, parked in the map while it holds a pooled database connection; enough of
//! them and every request waits on the pool.

use super::ComputeError;
use crate::store::{RunStamp, Store};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

type Lookup = Shared<BoxFuture<'static, Result<RunStamp, ComputeError>>>;

/// The lookups of one run: the one running, and the one that starts after it.
#[derive(Default)]
struct Flights {
    running: Option<Lookup>,
    queued: Option<Lookup>,
}

/// Asks the database for a run's stamp.
type Query = Arc<dyn Fn(Uuid) -> BoxFuture<'static, Result<RunStamp, ComputeError>> + Send + Sync>;

pub(super) struct Stamps {
    query: Query,
    runs: Arc<Mutex<HashMap<Uuid, Flights>>>,
}

impl Stamps {
    pub(super) fn new(store: Arc<dyn Store>) -> Stamps {
        Stamps::with_query(Arc::new(move |id| {
            let store = store.clone();
            async move { store.run_stamp(id).await.map_err(ComputeError::from) }.boxed()
        }))
    }

    fn with_query(query: Query) -> Stamps {
        Stamps {
            query,
            runs: Arc::default(),
        }
    }

    /// The run's stamp as of some moment after this call began.
    pub(super) async fn get(&self, id: Uuid) -> Result<RunStamp, ComputeError> {
        let lookup = {
            let mut runs = lock(&self.runs);
            let flights = runs.entry(id).or_default();
            match (&flights.running, &flights.queued) {
                // Not yet polled, so not started: it will start after this reader arrived.
                (None, _) => {
                    let lookup = self.lookup(id, None);
                    flights.running = Some(lookup.clone());
                    lookup
                }
                (Some(_), Some(queued)) => queued.clone(),
                (Some(running), None) => {
                    let lookup = self.lookup(id, Some(running.clone()));
                    flights.queued = Some(lookup.clone());
                    lookup
                }
            }
        };
        lookup.await
    }

    /// A lookup that first waits for `after` (the running one), then queries the store, then
    /// hands the run's slot to the lookup queued behind it.
    fn lookup(&self, id: Uuid, after: Option<Lookup>) -> Lookup {
        let (query, runs) = (self.query.clone(), self.runs.clone());
        let task = tokio::spawn(async move {
            if let Some(previous) = after {
                let _ = previous.await;
            }
            let stamp = query(id).await;
            let mut runs = lock(&runs);
            if let Some(flights) = runs.get_mut(&id) {
                flights.running = flights.queued.take();
                if flights.running.is_none() {
                    runs.remove(&id);
                }
            }
            stamp
        });
        async move {
            task.await.unwrap_or_else(|crashed| {
                Err(ComputeError::internal(
                    format!("looking up the stamp of run {id}"),
                    crashed,
                ))
            })
        }
        .boxed()
        .shared()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each critical section is a few assignments, so a panic cannot leave the map half-updated.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
    use std::time::Duration;

    /// A store whose stamp is a counter, with a slow query that counts its calls.
    fn counting() -> (Stamps, Arc<AtomicI64>, Arc<AtomicUsize>) {
        let version = Arc::new(AtomicI64::new(1));
        let queries = Arc::new(AtomicUsize::new(0));
        let (v, q) = (version.clone(), queries.clone());
        let stamps = Stamps::with_query(Arc::new(move |_| {
            let (v, q) = (v.clone(), q.clone());
            async move {
                q.fetch_add(1, Ordering::SeqCst);
                // The stamp is read when the query starts, as a database snapshot would be.
                let seen = v.load(Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(RunStamp {
                    version: seen,
                    updated_at: time::OffsetDateTime::UNIX_EPOCH,
                })
            }
            .boxed()
        }));
        (stamps, version, queries)
    }

    #[tokio::test]
    async fn concurrent_readers_share_lookups() {
        let (stamps, _, queries) = counting();
        let stamps = Arc::new(stamps);
        let id = Uuid::new_v4();
        let readers: Vec<_> = (0..50)
            .map(|_| {
                let stamps = stamps.clone();
                tokio::spawn(async move { stamps.get(id).await.map(|s| s.version) })
            })
            .collect();
        for r in readers {
            assert_eq!(r.await.unwrap().unwrap(), 1);
        }
        let n = queries.load(Ordering::SeqCst);
        assert!(n <= 2, "50 readers made {n} queries");
        assert!(lock(&stamps.runs).is_empty(), "idle runs are forgotten");
    }

    #[tokio::test]
    async fn a_lookup_whose_readers_left_still_finishes() {
        let (stamps, _, queries) = counting();
        let id = Uuid::new_v4();
        // The reader gives up mid-query, as a cancelled request does.
        let abandoned = tokio::time::timeout(Duration::from_millis(5), stamps.get(id)).await;
        assert!(abandoned.is_err(), "the premise: the reader left mid-query");
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(queries.load(Ordering::SeqCst), 1);
        assert!(
            lock(&stamps.runs).is_empty(),
            "the lookup ran to its end without a reader, so nothing holds its connection"
        );
    }

    #[tokio::test]
    async fn a_reader_sees_every_write_made_before_it_arrived() {
        let (stamps, version, _) = counting();
        let stamps = Arc::new(stamps);
        let id = Uuid::new_v4();
        // A lookup is on its way with the old stamp...
        let early = {
            let stamps = stamps.clone();
            tokio::spawn(async move { stamps.get(id).await.map(|s| s.version) })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        // ...when a write lands; a reader arriving after it must not share that lookup.
        version.store(2, Ordering::SeqCst);
        let late = stamps.get(id).await.unwrap().version;
        assert_eq!(late, 2);
        assert_eq!(
            early.await.unwrap().unwrap(),
            1,
            "the premise: the early one was stale"
        );
    }
}
