//! Reading a run back in `(request_number, seq)` order: the same walk over requests and steps
//! builds a frame ([`FrameAssembler`]) or streams the combined requests file
//! ([`TracesAssembler`]) in both backends, and [`StreamSlots`] bounds how many streams may hold a
//! connection at once.

use super::StoreError;
use crate::profiler::{Frame, StepColumns};
use crate::trace::{EvalItem, NumberedRequest, StepSchema};
use bytes::Bytes;

/// Bounds the combined-requests streams that may hold a pooled connection at once. A stream
/// keeps its connection (and snapshot) until the client has read the last byte, so without a
/// bound a few slow readers could take every connection and starve all other requests.
#[derive(Debug, Clone)]
pub(crate) struct StreamSlots(std::sync::Arc<tokio::sync::Semaphore>);

/// How long a new stream waits for a slot before the client is told to retry.
const STREAM_SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

impl StreamSlots {
    /// Half the pool, at least one.
    pub(crate) fn for_pool(max_connections: u32) -> StreamSlots {
        let slots = (max_connections as usize / 2).max(1);
        StreamSlots(std::sync::Arc::new(tokio::sync::Semaphore::new(slots)))
    }

    /// A slot, held for as long as the returned permit lives (move it into the stream).
    pub(crate) async fn acquire(&self) -> Result<tokio::sync::OwnedSemaphorePermit, StoreError> {
        let busy = || {
            StoreError::Busy(
                "every slot for streaming combined requests is in use; retry shortly".to_owned(),
            )
        };
        tokio::time::timeout(STREAM_SLOT_WAIT, self.0.clone().acquire_owned())
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())
    }
}

/// Walks a run's request numbers alongside its steps (both ascending), so that requests without
/// steps still appear, in order, in frames and in the combined requests file.
struct RequestWalker {
    numbers: std::iter::Peekable<std::vec::IntoIter<i64>>,
    current: Option<i64>,
}

impl RequestWalker {
    pub(crate) fn new(numbers: Vec<i64>) -> RequestWalker {
        RequestWalker {
            numbers: numbers.into_iter().peekable(),
            current: None,
        }
    }

    /// The requests to open before a step of request `n`: the empty ones that sort before it,
    /// then `n` itself; nothing when `n` is already open.
    pub(crate) fn open(&mut self, n: i64) -> Vec<i64> {
        if self.current == Some(n) {
            return Vec::new();
        }
        let mut out = Vec::new();
        while let Some(&m) = self.numbers.peek() {
            if m > n {
                break;
            }
            self.numbers.next();
            if m != n {
                out.push(m);
            }
        }
        out.push(n);
        self.current = Some(n);
        out
    }

    /// Requests after the last step (all without steps).
    pub(crate) fn remaining(self) -> impl Iterator<Item = i64> {
        self.numbers
    }
}

/// Builds a run's frame from its requests and its steps, both read in `(request_number, seq)`
/// order, so both backends load a run the same way.
pub(crate) struct FrameAssembler {
    walker: RequestWalker,
    external: std::collections::HashMap<i64, String>,
    builder: crate::profiler::FrameBuilder,
}

impl FrameAssembler {
    /// `requests`: every request number of the run, ascending, with its eval id if any; `steps`:
    /// how many steps they hold, as far as the store knows (room is made for them).
    pub(crate) fn new(requests: Vec<(i64, Option<String>)>, steps: usize) -> FrameAssembler {
        let numbers: Vec<i64> = requests.iter().map(|(n, _)| *n).collect();
        let numbers_len = numbers.len();
        let external = requests
            .into_iter()
            .filter_map(|(n, e)| e.map(|e| (n, e)))
            .collect();
        FrameAssembler {
            walker: RequestWalker::new(numbers),
            external,
            builder: crate::profiler::FrameBuilder::with_capacity(steps, numbers_len),
        }
    }

    pub(crate) fn step(&mut self, request_number: i64, step: StepColumns) {
        for m in self.walker.open(request_number) {
            self.builder.begin_request(m, self.external.remove(&m));
        }
        self.builder.push_step(request_number, step);
    }

    pub(crate) fn finish(mut self) -> Frame {
        for m in self.walker.remaining() {
            self.builder.begin_request(m, self.external.remove(&m));
        }
        self.builder.finish()
    }
}

/// Bytes per streamed chunk of the combined requests file.
const CHUNK: usize = 64 * 1024;

/// Writes the combined requests file from stored step bodies in `(request_number, seq)` order,
/// handing out a chunk whenever [`CHUNK`] bytes are buffered so memory stays flat.
pub(crate) struct TracesAssembler {
    walker: RequestWalker,
    out: crate::trace::TracesWriter<Vec<u8>>,
    /// Rewrite each stored step into this schema rather than copying it.
    schema: Option<StepSchema>,
}

impl TracesAssembler {
    /// `numbers`: every request number of the run, ascending.
    pub(crate) fn new(numbers: Vec<i64>, schema: Option<StepSchema>) -> TracesAssembler {
        TracesAssembler {
            walker: RequestWalker::new(numbers),
            out: crate::trace::TracesWriter::new(Vec::with_capacity(CHUNK * 2)),
            schema,
        }
    }

    /// Adds one stored step body; returns a chunk to send when enough is buffered.
    pub(crate) fn step(
        &mut self,
        request_number: i64,
        body: &str,
    ) -> Result<Option<Bytes>, StoreError> {
        for m in self.walker.open(request_number) {
            self.out.begin_request(m).map_err(io_err)?;
        }
        match self.schema {
            None => self.out.rendered_step(body.as_bytes()),
            Some(schema) => self.out.step(&super::step_from_body(body)?, schema),
        }
        .map_err(io_err)?;
        Ok((self.out.buffered() >= CHUNK).then(|| Bytes::from(self.out.take())))
    }

    /// The rest of the file, closing the requests without steps after the last step.
    pub(crate) fn finish(mut self) -> Result<Bytes, StoreError> {
        for m in self.walker.remaining() {
            self.out.begin_request(m).map_err(io_err)?;
        }
        self.out.finish().map(Bytes::from).map_err(io_err)
    }
}

fn io_err(e: std::io::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// Builds a run's requests as parsed steps with their eval fields, for exports that need the
/// whole steps (ATIF), from rows read in `(request_number, seq)` order.
pub(crate) struct StepsAssembler {
    requests: Vec<NumberedRequest>,
    index: std::collections::HashMap<i64, usize>,
}

impl StepsAssembler {
    /// `requests`: every request of the run, ascending: number, eval id, eval fields (JSON).
    pub(crate) fn new(
        requests: Vec<(i64, Option<String>, Option<String>)>,
    ) -> Result<StepsAssembler, StoreError> {
        let mut out = Vec::with_capacity(requests.len());
        let mut index = std::collections::HashMap::with_capacity(requests.len());
        for (number, external_id, eval) in requests {
            let eval = match (eval, external_id) {
                (Some(json), _) => Some(serde_json::from_str(&json).map_err(|e| {
                    StoreError::Corrupt(format!("stored eval item is not JSON: {e}"))
                })?),
                // Stored before eval fields were kept: the id's text is all there is.
                (None, Some(id)) => Some(EvalItem {
                    id: serde_json::Value::String(id),
                    ..EvalItem::default()
                }),
                (None, None) => None,
            };
            index.insert(number, out.len());
            out.push(NumberedRequest {
                number,
                eval,
                steps: Vec::new(),
            });
        }
        Ok(StepsAssembler {
            requests: out,
            index,
        })
    }

    pub(crate) fn step(&mut self, request_number: i64, body: &str) -> Result<(), StoreError> {
        let i = *self.index.get(&request_number).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "a step of request {request_number}, which is not stored"
            ))
        })?;
        self.requests[i].steps.push(super::step_from_body(body)?);
        Ok(())
    }

    pub(crate) fn finish(self) -> Vec<NumberedRequest> {
        self.requests
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walker_interleaves_empty_requests() {
        let mut w = RequestWalker::new(vec![0, 1, 3, 4, 6]);
        assert_eq!(w.open(1), [0, 1]);
        assert_eq!(w.open(1), Vec::<i64>::new());
        assert_eq!(w.open(4), [3, 4]);
        assert_eq!(w.remaining().collect::<Vec<_>>(), [6]);
    }
}
