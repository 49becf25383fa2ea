//! Accepting and serving connections with bounds that `axum::serve` does not set.
//!
//! Three things keep a flood of idle or slow connections from starving real clients:
//!
//! - **A header deadline.** hyper's HTTP/1 `header_read_timeout` runs from the moment the
//!   server starts waiting for a request head: when the connection opens and again after each
//!   response. So one deadline closes a connection that sends nothing, one that trickles its
//!   headers, and a keep-alive connection left idle.
//! - **A cap on open connections.** File descriptors are finite (often 1024); at the cap the
//!   listener would otherwise spin on `EMFILE` while `/healthz` waits behind it.
//! - **Eviction at the cap.** When a new connection arrives and the cap is reached, the oldest
//!   connection that is *not* inside a request is closed to make room. A connection that has
//!   not finished sending its headers is never inside a request, so slow-loris sockets go first
//!   and a probe gets through at once. Only when every connection is busy inside a request (each
//!   bounded by the request timeout) does accepting wait.
//!
//! Only HTTP/1.1 is served. Detecting HTTP/2's preface would read from the socket with no
//! deadline, which is the very hole this module closes; every client of this API speaks 1.1.

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::Request;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// The bounds applied to every connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Deadline for a request's headers, counted from the connection opening or the end of the
    /// previous response (so also the keep-alive idle timeout).
    pub header_read_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// How long shutdown waits for requests in flight before dropping them.
    pub drain_timeout: Duration,
}

/// One open connection, as the eviction policy sees it.
struct Tracked {
    /// Requests being handled on it right now (0 or 1 for HTTP/1).
    in_request: Arc<AtomicUsize>,
    /// Asks the connection to close once its current request (if any) is answered.
    evict: Arc<Notify>,
    evicted: bool,
}

/// The open connections, oldest first (ids only grow).
#[derive(Default)]
struct Registry {
    next_id: u64,
    open: BTreeMap<u64, Tracked>,
}

impl Registry {
    fn insert(&mut self, in_request: Arc<AtomicUsize>, evict: Arc<Notify>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.open.insert(
            id,
            Tracked {
                in_request,
                evict,
                evicted: false,
            },
        );
        id
    }

    /// Asks the oldest connection that is between requests to close; false if every connection
    /// is inside a request (or already asked).
    fn evict_oldest_idle(&mut self) -> bool {
        let idle = self
            .open
            .values_mut()
            .find(|c| !c.evicted && c.in_request.load(Ordering::Acquire) == 0);
        match idle {
            Some(c) => {
                c.evicted = true;
                c.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Counts a request as in flight on its connection until its response body has been sent (or
/// dropped), so a long streamed response is never mistaken for an idle connection.
struct InRequest(Arc<AtomicUsize>);

impl InRequest {
    fn enter(counter: &Arc<AtomicUsize>) -> InRequest {
        counter.fetch_add(1, Ordering::AcqRel);
        InRequest(counter.clone())
    }
}

impl Drop for InRequest {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets requests in flight finish
/// (up to `limits.drain_timeout`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let registry = Arc::new(Mutex::new(Registry::default()));
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                let evicted = lock(&registry).evict_oldest_idle();
                if !evicted {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "every connection is inside a request; new connections wait"
                    );
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let in_request = Arc::new(AtomicUsize::new(0));
        let evict = Arc::new(Notify::new());
        let id = lock(&registry).insert(in_request.clone(), evict.clone());
        let registry = registry.clone();
        let app = app.clone();
        let stop = stop.clone();
        tasks.spawn(async move {
            serve_one(stream, app, limits, in_request, evict, stop).await;
            lock(&registry).open.remove(&id);
            drop(slot);
        });
    }

    drop(listener);
    stop.cancel();
    tasks.close();
    if tokio::time::timeout(limits.drain_timeout, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = tasks.len(),
            "requests still in flight after the drain timeout; dropping them"
        );
    }
}

async fn serve_one(
    stream: TcpStream,
    app: Router,
    limits: ConnectionLimits,
    in_request: Arc<AtomicUsize>,
    evict: Arc<Notify>,
    stop: CancellationToken,
) {
    // Small JSON responses should not wait for Nagle's algorithm.
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let guard = InRequest::enter(&in_request);
        let response = app.clone().oneshot(request.map(axum::body::Body::new));
        async move {
            let response = match response.await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            Ok::<_, std::convert::Infallible>(response.map(|inner| Guarded {
                inner,
                _guard: guard,
            }))
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let mut connection = std::pin::pin!(connection);
    let closing = tokio::select! {
        result = connection.as_mut() => {
            log_connection_end(result);
            return;
        }
        () = evict.notified() => "evicted to make room for a new connection",
        () = stop.cancelled() => "shutting down",
    };
    tracing::debug!(reason = closing, "closing connection");
    // Closes at once when between requests; otherwise after the current response.
    connection.as_mut().graceful_shutdown();
    log_connection_end(connection.await);
}

/// A response body that holds its request's [`InRequest`] until it is dropped.
struct Guarded {
    inner: Body,
    _guard: InRequest,
}

impl HttpBody for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn log_connection_end(result: Result<(), hyper::Error>) {
    match result {
        Ok(()) => {}
        Err(e) if e.is_timeout() => {
            tracing::debug!("closed a connection that sent no request in time")
        }
        Err(e) => tracing::debug!(error = %e, "connection ended with an error"),
    }
}

/// Out of file descriptors or a peer that reset before accept: neither should stop the server,
/// and retrying at once would spin.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted) {
        return;
    }
    tracing::warn!(error = %e, "accept failed; retrying in 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

fn lock(registry: &Mutex<Registry>) -> std::sync::MutexGuard<'_, Registry> {
    // A panic while holding the lock cannot leave the map inconsistent (each operation is one
    // insert, remove or flag), so a poisoned lock is still usable.
    registry
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_skips_connections_inside_a_request_and_takes_the_oldest() {
        let mut registry = Registry::default();
        let busy = Arc::new(AtomicUsize::new(1));
        let (n0, n1, n2) = (
            Arc::new(Notify::new()),
            Arc::new(Notify::new()),
            Arc::new(Notify::new()),
        );
        registry.insert(busy.clone(), n0);
        registry.insert(Arc::new(AtomicUsize::new(0)), n1);
        registry.insert(Arc::new(AtomicUsize::new(0)), n2);
        assert!(registry.evict_oldest_idle());
        assert!(!registry.open[&0].evicted);
        assert!(registry.open[&1].evicted);
        assert!(registry.evict_oldest_idle());
        assert!(registry.open[&2].evicted);
        assert!(!registry.evict_oldest_idle(), "only the busy one is left");
        busy.store(0, Ordering::Release);
        assert!(registry.evict_oldest_idle());
    }
}
