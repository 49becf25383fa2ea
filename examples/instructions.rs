//! Runs each analysis once on a synthetic run, each behind its own `measure_*` function, for
//! counting instructions with callgrind: unlike wall time, the counts do not depend on caches or
//! on the neighbours of a virtual machine, so the growth from one size to the next shows the
//! algorithm's cost. BENCHMARKS.md#analyses-criterion has the commands for both sizes and
//! the ratios they gave.
//!
//! ```text
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='instructions::measure_*' \
//!     target/profiling/examples/instructions 1000
//! ```

use agentprof::profiler::core::calltree::CallForest;
use agentprof::profiler::toolkit::{
    confidence, csv, forecast, nested_stack, prefix_span, prefixes, runtimes, simple_stack, spikes,
    uniqueness,
};
use agentprof::profiler::{self, Dialect, Frame, ProfilerConfig};
use agentprof::trace::{ParseOptions, parse};
use std::hint::black_box;

macro_rules! measured {
    ($($name:ident($f:ident, $config:ident) => $body:expr;)*) => {
        $(
            #[inline(never)]
            fn $name($f: &Frame, $config: &ProfilerConfig) -> usize {
                let _ = $config;
                black_box($body)
            }
        )*
        const ALL: &[(&str, fn(&Frame, &ProfilerConfig) -> usize)] = &[$((stringify!($name), $name)),*];
    };
}

measured! {
    measure_confidence(f, c) => { black_box(confidence::compute(f, Dialect::Nat19)); 0 };
    measure_prefixes(f, c) => prefixes::compute(f, 0.5).len();
    measure_uniqueness(f, c) => { black_box(uniqueness::compute(f)); 0 };
    measure_runtimes(f, c) => { black_box(runtimes::compute(f)); 0 };
    measure_simple_stack(f, c) => simple_stack::analyze(f).stats.len();
    measure_nested_stack(f, c) => { black_box(nested_stack::analyze(&CallForest::build(f, true))); 0 };
    measure_spikes(f, c) => { black_box(spikes::analyze(&CallForest::build(f, false), 1, usize::MAX)); 0 };
    measure_prefix_span(f, c) => prefix_span::analyze(f, &c.prefix_span_analysis).patterns.len();
    measure_csv(f, c) => csv::to_string(f, c).len();
    measure_forecast(f, c) => { black_box(forecast::fit(f)); 0 };
    measure_metrics_json(f, c) => agentprof::py::json::to_vec(&profiler::inference_optimization(f, c, Dialect::Nat19)).len();
    measure_profiling_json(f, c) => agentprof::py::json::to_vec(&profiler::workflow_profiling(f, c, Dialect::Nat19)).len();
}

#[inline(never)]
fn measure_parse(bytes: &[u8]) -> Frame {
    Frame::from_batch(parse(bytes, &ParseOptions::default()).expect("synthetic input is valid"))
}

fn main() {
    let requests: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let doc = agentprof::synth::profiler_document(requests, 42);
    let bytes = serde_json::to_vec(&doc).expect("serialise");
    drop(doc);
    let frame = measure_parse(&bytes);
    let config = ProfilerConfig::default();
    for (name, f) in ALL {
        let n = f(&frame, &config);
        eprintln!("{name}: {n}");
    }
    println!("{requests} requests, {} steps", frame.rows().len());
}
