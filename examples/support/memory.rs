//! What each computation of the service allocates at its peak, against the estimate the
//! service admits it by (`compute::Cost`): shared by `examples/analysis_memory.rs`, which prints
//! the figures, and `tests/analysis_memory.rs`, which holds every estimate above them.
//!
//! The computations are the service's own: a frame built from stored step columns, an output
//! rendered with its sibling, the ATIF export from parsed step bodies, the timeline's run-wide
//! parts and a page, a comparison. A counting allocator (the binary's global allocator) gives
//! the bytes live at the peak of each, above what was live before it started.

#![allow(dead_code)] // the example and the test use different parts

use agentprof::compute::Cost;
use agentprof::outputs::{Analysis, OUTPUTS, Source};
use agentprof::profiler::statistics::scores::RequestScores;
use agentprof::profiler::statistics::{compare, cost};
use agentprof::profiler::timeline;
use agentprof::profiler::{Dialect, Frame, FrameBuilder, ProfilerConfig};
use agentprof::store::packed::{Dictionaries, Dictionary, Unpacked};
use agentprof::store::{PreparedStep, WindowSize};
use agentprof::trace::{NumberedRequest, parse_step};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counting the bytes live now and at the peak.
pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Counted as the new block before the old one is freed, as a moving realloc holds both.
        grew(new_size);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Bytes allocated at the peak of `f` above what was live when it started, and its result.
pub fn peak_of<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    (PEAK.load(Ordering::Relaxed) - base, out)
}

/// A run as the store holds it: its steps prepared as ingest prepares them, and the figures
/// the estimates read.
pub struct StoredRun {
    pub requests: Vec<(i64, Vec<PreparedStep>)>,
    pub size: WindowSize,
}

impl StoredRun {
    pub fn of(requests: &[NumberedRequest]) -> StoredRun {
        let requests: Vec<(i64, Vec<PreparedStep>)> = requests
            .iter()
            .map(|r| {
                let steps = r.steps.iter();
                (
                    r.number,
                    steps
                        .map(|s| PreparedStep::of(s, Dictionary::builtin()))
                        .collect(),
                )
            })
            .collect();
        let steps = requests.iter().flat_map(|(_, s)| s);
        let size = WindowSize {
            requests: requests.len() as u64,
            steps: steps.clone().count() as u64,
            column_bytes: steps.clone().map(|s| s.column_bytes() as u64).sum(),
            body_bytes: steps.map(|s| s.body_len as u64).sum(),
        };
        StoredRun { requests, size }
    }

    /// The frame, built from the step columns one step at a time as the store loads it.
    pub fn frame(&self) -> Frame {
        let mut b = FrameBuilder::with_capacity(self.size.steps as usize, self.requests.len());
        for (number, steps) in &self.requests {
            b.begin_request(*number, None);
            for s in steps {
                b.push_step(*number, s.columns.clone());
            }
        }
        b.finish()
    }

    /// The requests parsed back from their stored bodies, as the ATIF export reads them.
    pub fn parsed(&self) -> Vec<NumberedRequest> {
        self.requests
            .iter()
            .map(|(number, steps)| NumberedRequest {
                number: *number,
                eval: None,
                steps: steps
                    .iter()
                    .map(|s| {
                        let stored = Unpacked::of(&s.packed, &Dictionaries::default())
                            .expect("a packed step unpacks");
                        parse_step(stored.body().expect("a body")).expect("a stored body parses")
                    })
                    .collect(),
            })
            .collect()
    }
}

/// One computation's peak and its estimate.
#[derive(Debug)]
pub struct Measured {
    pub what: String,
    pub peak: usize,
    pub estimate: u64,
}

/// Every computation the service admits by an estimate, measured on `run`.
pub fn measure(run: &StoredRun, config: &ProfilerConfig, dialect: Dialect) -> Vec<Measured> {
    let mut out = Vec::new();
    let (frame_peak, frame) = peak_of(|| run.frame());
    out.push(Measured {
        what: "frame".to_owned(),
        peak: frame_peak,
        estimate: Cost::FRAME.bytes(&run.size, false),
    });
    for output in OUTPUTS.iter().filter(|o| o.offered_in(dialect)) {
        let cost = Cost::of(output, &config.limits);
        let peak = match output.source {
            // The frame is already loaded here: its share of the estimate is counted apart.
            Source::Frame(_) => {
                peak_of(|| {
                    let analysis = Analysis::new(&frame, config, dialect)
                        .with_scores(RequestScores::default());
                    let sibling = output
                        .sibling
                        .and_then(agentprof::outputs::by_name)
                        .map(|s| s.render(&analysis));
                    (output.render(&analysis), sibling)
                })
                .0 + frame_peak
            }
            Source::Steps { write, streamed } => {
                if streamed {
                    continue;
                }
                peak_of(|| {
                    let parsed = run.parsed();
                    let mut bytes = Vec::new();
                    let _ = write(&parsed, dialect, &mut bytes);
                    bytes
                })
                .0
            }
        };
        out.push(Measured {
            what: output.name.to_owned(),
            peak,
            estimate: cost.bytes(&run.size, matches!(output.source, Source::Steps { .. })),
        });
    }
    let (wide_peak, wide) = peak_of(|| timeline::run_wide(&frame, dialect).rendered());
    out.push(Measured {
        what: "timeline".to_owned(),
        peak: frame_peak + wide_peak + wide.len(),
        estimate: Cost::frame_and(agentprof::compute::TIMELINE_MEMORY).bytes(&run.size, false),
    });
    let (page_peak, _) = peak_of(|| {
        let calls = timeline::page(&frame, dialect, wide.origin(), 0, timeline::MAX_WINDOW);
        wide.page_json(0, timeline::MAX_WINDOW, &calls)
    });
    out.push(Measured {
        what: "timeline page".to_owned(),
        peak: frame_peak + page_peak,
        estimate: agentprof::compute::timeline_page(&run.size),
    });
    // Every model priced, so that the cost is compared too.
    let price = cost::ModelPrice {
        input: 1.0,
        output: 2.0,
        cached_input: None,
    };
    let prices = cost::PriceTable::every_model(&frame, price);
    let (compare_peak, _) = peak_of(|| {
        let none = RequestScores::default();
        let side = compare::Side::of(&frame, &none).with_prices(&prices);
        compare::compare_sides(side, side, &Default::default())
    });
    out.push(Measured {
        what: "compare (a run with itself)".to_owned(),
        peak: 2 * frame_peak + compare_peak,
        estimate: 2 * Cost::frame_and(agentprof::compute::COMPARE_MEMORY).bytes(&run.size, false),
    });
    out
}
