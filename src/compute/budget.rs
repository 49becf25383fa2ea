//! The memory analyses may take, estimated before they start and held within a budget.
//!
//! An analysis loads a run (or a window of it) whole and computes on it; on a run streaming for
//! days that is more than a machine has. So each computation first estimates what it will hold
//! at its peak, from the per-request figures the store keeps (steps and their column bytes; no
//! step is read), and then takes that much from one budget shared by every analysis in flight:
//! more than the whole budget is refused outright (`window-too-large`, with the most recent
//! window that fits), less waits its turn. The estimates are upper bounds measured on real and
//! synthetic runs (`examples/analysis_memory.rs`; `tests/analysis_memory.rs` holds them above
//! what each computation allocates).

use crate::outputs::{Memory, Output, Source};
use crate::profiler::core::config::OutputLimits;
use crate::profiler::timeline::MAX_WINDOW;
use crate::store::WindowSize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What a loaded frame holds per step beyond the bytes of its step columns (fixed-size columns,
/// ids, the request index), and per request: measured at about 60 bytes of columns a step on
/// the synthetic runs and the conformance cases, with room for the interning tables.
const FRAME_PER_STEP: f64 = 96.0;
const FRAME_PER_REQUEST: f64 = 160.0;

/// What comparing two runs takes beyond their frames (per side): the per-request values of
/// each metric, and the calls paired by UUID.
pub const COMPARE_MEMORY: Memory = Memory {
    per_step: 120.0,
    per_byte: 0.1,
    spike_lists: 0.0,
};

/// What the timeline's run-wide parts take beyond the frame (the call forest, every LLM
/// latency, the rendered JSON, which is kept).
pub const TIMELINE_MEMORY: Memory = Memory {
    per_step: 200.0,
    per_byte: 0.5,
    spike_lists: 0.0,
};

/// What a page of the timeline takes beyond the frame once the run-wide parts are kept, per
/// step of the page's requests (at most [`MAX_WINDOW`] of them: see [`timeline_page`]).
pub const TIMELINE_PAGE_MEMORY: Memory = Memory {
    per_step: 600.0,
    per_byte: 0.5,
    spike_lists: 0.0,
};

/// What a page of the timeline takes with the frame, for a run or window of `size`: a page holds
/// at most [`MAX_WINDOW`] of its requests, counted at the run's average size (a page of the
/// largest requests would be more: the frame's share covers it many times over in a large run,
/// and in a run of fewer requests the page is the whole run).
pub fn timeline_page(size: &WindowSize) -> u64 {
    let share = (MAX_WINDOW as f64 / size.requests.max(1) as f64).min(1.0);
    let page = Cost {
        per_step: TIMELINE_PAGE_MEMORY.per_step * share,
        per_byte: TIMELINE_PAGE_MEMORY.per_byte * share,
        per_request: 0.0,
        fixed: 0.0,
        spike_lists: 0.0,
        spike_limit: 0.0,
    };
    Cost::FRAME.plus(page).bytes(size, false)
}

/// What any computation holds whatever its input (maps, buffers, a page of output): a
/// quarter MiB, measured at 100–170 KiB on the smallest conformance cases.
const FIXED: f64 = 256.0 * 1024.0;

/// How a computation's peak memory grows with what it reads: `per_step` bytes a step,
/// `per_byte` a byte of the steps' columns (bodies, for an output made from parsed steps),
/// `per_request` a request, `fixed` whatever the input, and `spike_lists` times the bytes the
/// concurrency spikes' UUID lists may take: at most `spike_limit`, and at most what a run of its
/// steps can list (every call in flight in every interval: see [`spike_list_bound`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    pub per_step: f64,
    pub per_byte: f64,
    pub per_request: f64,
    pub fixed: f64,
    pub spike_lists: f64,
    pub spike_limit: f64,
}

/// The most bytes of JSON the spike intervals' UUID lists of a run of `steps` steps can take:
/// fewer than `steps` intervals, each listing fewer than `steps / 2` calls in flight, at about
/// 40 bytes a UUID.
pub fn spike_list_bound(steps: u64) -> f64 {
    20.0 * (steps as f64) * (steps as f64)
}

impl Cost {
    /// A loaded frame alone.
    pub const FRAME: Cost = Cost {
        per_step: FRAME_PER_STEP,
        per_byte: 1.0,
        per_request: FRAME_PER_REQUEST,
        fixed: FIXED,
        spike_lists: 0.0,
        spike_limit: 0.0,
    };

    /// The frame and, on top of it, `work` (whose spike lists are not counted: see
    /// [`Cost::of`]).
    pub const fn frame_and(work: Memory) -> Cost {
        Cost {
            per_step: FRAME_PER_STEP + work.per_step,
            per_byte: 1.0 + work.per_byte,
            per_request: FRAME_PER_REQUEST,
            fixed: FIXED,
            spike_lists: 0.0,
            spike_limit: 0.0,
        }
    }

    /// What computing `output` takes: its input (the frame, or the parsed steps), its work,
    /// and the spike lists it may hold under `limits`.
    pub fn of(output: &Output, limits: &OutputLimits) -> Cost {
        let cost = match output.source {
            Source::Frame(_) => Cost::frame_and(output.memory),
            // Parsed steps are counted in the output's own figures, per body byte.
            Source::Steps { .. } => Cost {
                per_step: output.memory.per_step,
                per_byte: output.memory.per_byte,
                per_request: FRAME_PER_REQUEST,
                fixed: FIXED,
                spike_lists: 0.0,
                spike_limit: 0.0,
            },
        };
        Cost {
            spike_lists: output.memory.spike_lists,
            spike_limit: limits.spike_uuid_bytes as f64,
            ..cost
        }
    }

    /// The part of [`Cost::bytes`] that does not grow in proportion to a window: the fixed
    /// bytes and the spike lists (at most their limit).
    pub fn unscaled(&self, size: &WindowSize) -> f64 {
        self.fixed + self.spike_lists * self.spike_limit.min(spike_list_bound(size.steps))
    }

    /// The bytes of what an output of this cost reads, for a run or window of `size`.
    pub fn bytes(&self, size: &WindowSize, bodies: bool) -> u64 {
        let bytes = if bodies {
            size.body_bytes
        } else {
            size.column_bytes
        };
        let total = self.per_step * size.steps as f64
            + self.per_byte * bytes as f64
            + self.per_request * size.requests as f64
            + self.unscaled(size);
        // Saturating: a float beyond u64 is u64::MAX.
        total.ceil() as u64
    }

    /// Both costs, for one computation that reads two inputs.
    pub fn plus(self, other: Cost) -> Cost {
        Cost {
            per_step: self.per_step + other.per_step,
            per_byte: self.per_byte + other.per_byte,
            per_request: self.per_request + other.per_request,
            fixed: self.fixed + other.fixed,
            spike_lists: self.spike_lists + other.spike_lists,
            spike_limit: self.spike_limit.max(other.spike_limit),
        }
    }
}

/// Why the gate did not admit a computation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// It would take more than the whole budget.
    TooLarge,
    /// The budget stayed taken by others for longer than a request should wait.
    Busy,
}

/// The budget, in KiB-sized permits (a `Semaphore` counts in `u32`s).
pub struct AnalysisGate {
    budget: u64,
    permits: Arc<Semaphore>,
    wait: Duration,
}

const UNIT: u64 = 1024;

impl AnalysisGate {
    /// A gate over `budget` bytes; a computation waits at most `wait` for its share.
    pub fn new(budget: u64, wait: Duration) -> AnalysisGate {
        let units = (budget / UNIT).clamp(1, Semaphore::MAX_PERMITS as u64);
        AnalysisGate {
            budget,
            permits: Arc::new(Semaphore::new(units as usize)),
            wait,
        }
    }

    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Takes `estimate` bytes of the budget until the returned permit is dropped.
    pub async fn admit(&self, estimate: u64) -> Result<OwnedSemaphorePermit, Refusal> {
        if estimate > self.budget {
            return Err(Refusal::TooLarge);
        }
        let units = u32::try_from(estimate.div_ceil(UNIT).max(1)).map_err(|_| Refusal::TooLarge)?;
        tokio::time::timeout(self.wait, self.permits.clone().acquire_many_owned(units))
            .await
            .map_err(|_| Refusal::Busy)?
            .map_err(|_| Refusal::Busy)
    }

    /// Bytes of the budget not taken right now.
    pub fn available(&self) -> u64 {
        self.permits.available_permits() as u64 * UNIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_gate_admits_within_its_budget_and_refuses_beyond() {
        let gate = AnalysisGate::new(10 * UNIT, Duration::from_millis(50));
        assert_eq!(gate.admit(11 * UNIT).await.unwrap_err(), Refusal::TooLarge);
        let a = gate.admit(6 * UNIT).await.expect("fits");
        assert_eq!(gate.available(), 4 * UNIT);
        // Another 6 KiB waits for the first, and gives up when it does not end.
        assert_eq!(gate.admit(6 * UNIT).await.unwrap_err(), Refusal::Busy);
        drop(a);
        let b = gate.admit(6 * UNIT).await.expect("room again");
        let c = gate.admit(3 * UNIT + 1).await.expect("rounds up to 4 KiB");
        assert_eq!(gate.available(), 0);
        drop((b, c));
        assert_eq!(gate.available(), 10 * UNIT);
    }

    #[test]
    fn costs_grow_with_steps_bytes_and_requests() {
        let size = WindowSize {
            requests: 10,
            steps: 200,
            column_bytes: 50_000,
            body_bytes: 400_000,
        };
        let work = Memory {
            per_step: 100.0,
            per_byte: 2.0,
            spike_lists: 0.0,
        };
        let c = Cost::frame_and(work);
        let expected =
            (FRAME_PER_STEP + 100.0) * 200.0 + 3.0 * 50_000.0 + FRAME_PER_REQUEST * 10.0 + FIXED;
        assert_eq!(c.bytes(&size, false), expected as u64);
        assert!(c.plus(c).bytes(&size, false) == 2 * c.bytes(&size, false));
        assert!(Cost::FRAME.bytes(&size, true) > Cost::FRAME.bytes(&size, false));
    }
}
