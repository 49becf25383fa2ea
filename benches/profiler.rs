//! Criterion benchmarks of the profiler: parsing, each analysis, and the whole, on seeded
//! synthetic runs of 100, 1,000 and 10,000 requests (about 20 steps each).
//!
//! `cargo bench --bench profiler` runs them all; under `cargo test` (no `--bench` flag) only the
//! 100-request size runs, once, as a smoke test. Results and the machine are in BENCHMARKS.md.

use agentprof::profiler::core::calltree::CallForest;
use agentprof::profiler::statistics::{cost, stats};
use agentprof::profiler::toolkit::{
    confidence, csv, forecast, nested_stack, prefix_span, prefixes, runtimes, simple_stack, spikes,
    uniqueness,
};
use agentprof::profiler::{self, Dialect, Frame, ProfilerConfig};
use agentprof::synth::profiler_document;
use agentprof::trace::{ParseOptions, parse};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;

fn sizes() -> Vec<usize> {
    if std::env::args().any(|a| a == "--bench") {
        vec![100, 1_000, 10_000]
    } else {
        vec![100]
    }
}

struct Input {
    requests: usize,
    bytes: Vec<u8>,
    frame: Frame,
}

fn inputs() -> Vec<Input> {
    sizes()
        .into_iter()
        .map(|requests| {
            let doc = profiler_document(requests, 42);
            let bytes = serde_json::to_vec(&doc).expect("serialise");
            let batch = parse(&bytes, &ParseOptions::default()).expect("valid");
            let frame = Frame::from_batch(batch);
            Input {
                requests,
                bytes,
                frame,
            }
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let inputs = inputs();
    let config = ProfilerConfig::default();
    let mut g = c.benchmark_group("profiler");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for input in &inputs {
        let n = input.requests;
        let f = &input.frame;
        g.throughput(Throughput::Elements(f.rows().len() as u64));
        g.bench_with_input(BenchmarkId::new("parse", n), &input.bytes, |b, bytes| {
            b.iter(|| parse(black_box(bytes), &ParseOptions::default()).map(|b| b.step_count()))
        });
        g.bench_with_input(BenchmarkId::new("frame", n), &input.bytes, |b, bytes| {
            let numbered = parse(bytes, &ParseOptions::default())
                .expect("valid")
                .into_numbered();
            b.iter(|| Frame::from_numbered(&numbered).rows().len())
        });
        g.bench_with_input(BenchmarkId::new("confidence", n), f, |b, f| {
            b.iter(|| confidence::compute(black_box(f), Dialect::Nat19))
        });
        g.bench_with_input(BenchmarkId::new("prefixes", n), f, |b, f| {
            b.iter(|| prefixes::compute(black_box(f), 0.5))
        });
        g.bench_with_input(BenchmarkId::new("uniqueness", n), f, |b, f| {
            b.iter(|| uniqueness::compute(black_box(f)))
        });
        g.bench_with_input(BenchmarkId::new("runtimes", n), f, |b, f| {
            b.iter(|| runtimes::compute(black_box(f)))
        });
        g.bench_with_input(BenchmarkId::new("simple_stack", n), f, |b, f| {
            b.iter(|| simple_stack::analyze(black_box(f)))
        });
        g.bench_with_input(BenchmarkId::new("nested_stack", n), f, |b, f| {
            b.iter(|| nested_stack::analyze(&CallForest::build(black_box(f), true)))
        });
        g.bench_with_input(BenchmarkId::new("spikes", n), f, |b, f| {
            b.iter(|| spikes::analyze(&CallForest::build(black_box(f), false), 1, usize::MAX))
        });
        g.bench_with_input(BenchmarkId::new("prefix_span", n), f, |b, f| {
            b.iter(|| prefix_span::analyze(black_box(f), &config.prefix_span_analysis))
        });
        g.bench_with_input(BenchmarkId::new("csv", n), f, |b, f| {
            b.iter(|| csv::to_string(black_box(f), &config).len())
        });
        g.bench_with_input(BenchmarkId::new("forecast", n), f, |b, f| {
            b.iter(|| forecast::fit(black_box(f)))
        });
        // /stats without prices, and with every model priced (its cost computed too).
        let none = agentprof::profiler::statistics::scores::RequestScores::new();
        let price = cost::ModelPrice {
            input: 2.5,
            output: 10.0,
            cached_input: Some(1.25),
        };
        let prices = cost::PriceTable::every_model(f, price);
        g.bench_with_input(BenchmarkId::new("stats", n), f, |b, f| {
            b.iter(|| stats::compute(black_box(f)).llm_latency.overall.n)
        });
        g.bench_with_input(BenchmarkId::new("stats_priced", n), f, |b, f| {
            b.iter(|| stats::compute_with(black_box(f), &none, &prices).cost.total)
        });
        g.bench_with_input(BenchmarkId::new("metrics_json", n), f, |b, f| {
            b.iter(|| {
                agentprof::py::json::to_vec(&profiler::inference_optimization(
                    black_box(f),
                    &config,
                    Dialect::Nat19,
                ))
                .len()
            })
        });
        g.bench_with_input(BenchmarkId::new("profiling_json", n), f, |b, f| {
            b.iter(|| {
                agentprof::py::json::to_vec(&profiler::workflow_profiling(
                    black_box(f),
                    &config,
                    Dialect::Nat19,
                ))
                .len()
            })
        });
    }
    g.finish();
}

criterion_group!(profiler_benches, benches);
criterion_main!(profiler_benches);
