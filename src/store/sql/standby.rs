//! Reads from PostgreSQL streaming standbys, without losing read-after-write.
//!
//! A standby replays the primary's WAL a little behind it, so a read sent there naively can miss
//! a batch that another agentprof process acknowledged a moment ago. Every routed read therefore
//! first asks the primary where its next WAL record will go (`pg_current_wal_insert_lsn()`):
//! the commit record of every acknowledged write lies before it, even with
//! `synchronous_commit = off`, which acknowledges a commit before its WAL is written. The
//! standby serves the read once it has replayed that far (`pg_last_wal_replay_lsn()`); a
//! snapshot taken after that point sees every such commit, from any process. The read waits for
//! that up to [`ReadPolicy::wait`] and otherwise goes to the primary, as it does when no standby
//! is up or each is further behind than [`ReadPolicy::max_lag_bytes`].
//!
//! The position is the primary's, not the run's: a read may wait for replay of writes to other
//! runs too. That costs milliseconds on a healthy standby and needs nothing stored per write,
//! and it also covers reads that span runs (the run list). A monitor task checks every standby
//! once per [`ReadPolicy::check_every`]: reachability and lag, which `/readyz` and the
//! Prometheus text report, and which readmit a standby that had been set aside.
//!
//! The statements are PostgreSQL's; the type is generic only because the store is, and a store
//! on SQLite never has standbys (the configuration refuses them).

use super::Backend;
use super::backend::{Bind, Rec};
use crate::store::{StandbyStatus, StoreError};
use sqlx::Pool;
use sqlx::pool::PoolConnection;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Where the primary inserts its next WAL record, as text (what `pg_lsn` parses back).
const PRIMARY_POSITION: &str = "SELECT pg_current_wal_insert_lsn()::text";

/// Bytes of WAL the standby has still to replay to reach position `$1`: zero or less once it
/// has; [`NOT_A_STANDBY`] when the server is not in recovery (a promoted standby, or a primary
/// configured by mistake), which has no replay position and no relation to our primary's WAL.
const BEHIND_BY: &str = "SELECT COALESCE(pg_wal_lsn_diff($1::pg_lsn, pg_last_wal_replay_lsn())::bigint, \
     9223372036854775807)";
const NOT_A_STANDBY: i64 = i64::MAX;

/// How reads use the standbys.
#[derive(Debug, Clone, Copy)]
pub struct ReadPolicy {
    /// How long a read waits for its standby to replay the writes it must see before it goes
    /// to the primary instead.
    pub wait: Duration,
    /// A standby further behind the primary than this is set aside until it catches up.
    pub max_lag_bytes: u64,
    /// How often the monitor checks each standby.
    pub check_every: Duration,
}

impl Default for ReadPolicy {
    fn default() -> Self {
        ReadPolicy {
            wait: Duration::from_millis(200),
            max_lag_bytes: 64 * 1024 * 1024,
            check_every: Duration::from_secs(1),
        }
    }
}

/// One standby: its pool, and what the monitor last saw of it.
struct Standby<B: Backend> {
    /// host:port/database, never the password: for logs, `/readyz` and metric labels.
    name: String,
    pool: Pool<B>,
    up: AtomicBool,
    /// Bytes behind the primary at the last check; -1 when unknown.
    lag: AtomicI64,
}

/// The standbys that serve reads, in turn.
pub(crate) struct Standbys<B: Backend> {
    nodes: Vec<Standby<B>>,
    next: AtomicUsize,
    policy: ReadPolicy,
}

/// Where one read went, for the `agentprof_reads_total` counter.
fn count_read(target: &'static str, reason: &'static str) {
    metrics::counter!("agentprof_reads_total", "target" => target, "reason" => reason).increment(1);
}

impl<B: Backend> Standbys<B> {
    /// `nodes` are (name, pool) pairs; every standby starts as up, so reads try it at once and
    /// set it aside on the first failure rather than waiting for the monitor's first check.
    pub(crate) fn new(nodes: Vec<(String, Pool<B>)>, policy: ReadPolicy) -> Standbys<B> {
        Standbys {
            nodes: nodes
                .into_iter()
                .map(|(name, pool)| Standby {
                    name,
                    pool,
                    up: AtomicBool::new(true),
                    lag: AtomicI64::new(-1),
                })
                .collect(),
            next: AtomicUsize::new(0),
            policy,
        }
    }

    pub(crate) fn status(&self) -> Vec<StandbyStatus> {
        self.nodes
            .iter()
            .map(|n| {
                let lag = n.lag.load(Ordering::Relaxed);
                StandbyStatus {
                    name: n.name.clone(),
                    up: n.up.load(Ordering::Relaxed),
                    lag_bytes: (lag >= 0).then_some(lag),
                }
            })
            .collect()
    }

    /// A connection whose next snapshot holds every write acknowledged before this call: on a
    /// standby that has replayed at least to the primary's current position, else on the
    /// primary.
    pub(crate) async fn connection(
        &self,
        primary: &Pool<B>,
    ) -> Result<PoolConnection<B>, StoreError> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let candidates: Vec<&Standby<B>> = (0..self.nodes.len())
            .map(|i| &self.nodes[(start + i) % self.nodes.len()])
            .filter(|n| n.up.load(Ordering::Relaxed))
            .collect();
        if candidates.is_empty() {
            count_read("primary", "no_standby_up");
            return Ok(primary.acquire().await?);
        }
        let position = primary_position(primary).await?;
        // One deadline for the whole choice: a standby that hangs (no reset, no answer) costs a
        // read at most this long before it goes to the primary.
        let deadline = Instant::now() + self.policy.wait;
        let mut reason = "standby_behind";
        for node in candidates {
            match tokio::time::timeout_at(deadline, caught_up(node, &position, deadline)).await {
                Ok(Ok(Some(conn))) => {
                    count_read("standby", "caught_up");
                    return Ok(conn);
                }
                Ok(Ok(None)) | Err(_) => {}
                // Its pool is merely full: busy, not down.
                Ok(Err(sqlx::Error::PoolTimedOut)) => reason = "standby_busy",
                Ok(Err(e)) => {
                    tracing::warn!(standby = %node.name, error = %e, "standby set aside: reads go elsewhere until it answers");
                    node.up.store(false, Ordering::Relaxed);
                    reason = "standby_failed";
                }
            }
        }
        count_read("primary", reason);
        Ok(primary.acquire().await?)
    }

    /// Checks every standby now, and again every [`ReadPolicy::check_every`] while the
    /// standbys are in use.
    pub(crate) fn spawn_monitor(self: &Arc<Self>, primary: Pool<B>) {
        let standbys = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(s) = standbys.upgrade() {
                s.check(&primary).await;
                let every = s.policy.check_every;
                drop(s);
                tokio::time::sleep(every).await;
            }
        });
    }

    async fn check(&self, primary: &Pool<B>) {
        let position = match primary_position(primary).await {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::debug!(error = %e, "primary unreachable: standby lag not measured");
                None
            }
        };
        for node in &self.nodes {
            let probe = async {
                let mut conn = node.pool.acquire().await?;
                match &position {
                    Some(p) => behind_by(&mut conn, p).await,
                    None => Ok(-1),
                }
            };
            let seen = tokio::time::timeout(Duration::from_secs(2), probe).await;
            let (up, lag) = match seen {
                Ok(Ok(NOT_A_STANDBY)) => {
                    tracing::warn!(standby = %node.name, "not a standby (not in recovery): not used for reads");
                    (false, -1)
                }
                Ok(Ok(-1)) => (node.up.load(Ordering::Relaxed), -1),
                Ok(Ok(behind)) => {
                    let lag = behind.max(0);
                    (
                        u64::try_from(lag).unwrap_or(0) <= self.policy.max_lag_bytes,
                        lag,
                    )
                }
                Ok(Err(e)) => {
                    tracing::debug!(standby = %node.name, error = %e, "standby unreachable");
                    (false, -1)
                }
                Err(_) => (false, -1),
            };
            if up != node.up.swap(up, Ordering::Relaxed) {
                tracing::info!(standby = %node.name, up, lag_bytes = lag, "standby {}", if up { "serves reads again" } else { "set aside" });
            }
            node.lag.store(lag, Ordering::Relaxed);
            metrics::gauge!("agentprof_standby_up", "standby" => node.name.clone()).set(if up {
                1.0
            } else {
                0.0
            });
            if lag >= 0 {
                metrics::gauge!("agentprof_standby_lag_bytes", "standby" => node.name.clone())
                    .set(lag as f64);
            }
        }
    }
}

async fn primary_position<B: Backend>(primary: &Pool<B>) -> Result<String, StoreError> {
    let mut conn = primary.acquire().await?;
    let row = sqlx::query(PRIMARY_POSITION)
        .fetch_one(B::on(&mut *conn))
        .await?;
    Rec::<B>(&row).col(0)
}

async fn behind_by<B: Backend>(
    conn: &mut PoolConnection<B>,
    position: &str,
) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(BEHIND_BY)
        .arg(position)
        .fetch_one(B::on(&mut **conn))
        .await?;
    <B as super::backend::Decodes<i64>>::get(&row, 0)
}

/// A connection to `node` once it has replayed to `position`, polled until `deadline`; `None`
/// when it has not by then (or is not a standby at all).
async fn caught_up<B: Backend>(
    node: &Standby<B>,
    position: &str,
    deadline: Instant,
) -> Result<Option<PoolConnection<B>>, sqlx::Error> {
    let mut conn = node.pool.acquire().await?;
    let mut pause = Duration::from_millis(1);
    loop {
        let behind = behind_by(&mut conn, position).await?;
        if behind <= 0 {
            return Ok(Some(conn));
        }
        if behind == NOT_A_STANDBY || Instant::now() + pause > deadline {
            return Ok(None);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(16));
    }
}
