//! Measures what a loaded frame holds in memory per step: the heap bytes it allocates (a
//! counting allocator) plus its own size, for a seeded synthetic run built the way the server
//! builds it (stored step columns in, one request at a time). The size of the texts the profiler
//! reads (prompts, outputs, streamed chunks) is printed beside it, for scale: they are most of
//! a run's bytes. BENCHMARKS.md#a-smaller-frame has the figures.
//!
//! `cargo run --release --example frame_memory -- [REQUESTS]` (default 2,000).

use agentprof::profiler::{Frame, FrameBuilder, StepColumns};
use agentprof::trace::{ParseOptions, parse};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counting the bytes currently allocated.
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() -> anyhow::Result<()> {
    let requests: usize = std::env::args().nth(1).map_or(Ok(2000), |s| s.parse())?;
    let doc = serde_json::to_vec(&agentprof::synth::profiler_document(requests, 42))?;
    let numbered = parse(&doc, &ParseOptions::default())?.into_numbered();
    drop(doc);
    let columns: Vec<(i64, Vec<StepColumns>)> = numbered
        .iter()
        .map(|r| {
            (
                r.number,
                r.steps.iter().map(StepColumns::from_step).collect(),
            )
        })
        .collect();
    drop(numbered);
    let steps: usize = columns.iter().map(|(_, s)| s.len()).sum();
    let text: usize = columns
        .iter()
        .flat_map(|(_, s)| s)
        .map(|c| c.text.as_ref().map_or(0, String::len))
        .sum();

    let before = ALLOCATED.load(Ordering::Relaxed);
    let mut builder = FrameBuilder::default();
    for (number, steps) in &columns {
        builder.begin_request(*number, None);
        for step in steps {
            builder.push_step(*number, step.clone());
        }
    }
    let frame: Frame = builder.finish();
    let heap = ALLOCATED.load(Ordering::Relaxed) - before;
    let total = heap + std::mem::size_of::<Frame>();
    std::hint::black_box(&frame);

    let per_step = |b: usize| b as f64 / steps as f64;
    println!("requests {requests}, steps {steps}");
    println!(
        "frame: {total} bytes, {:.1} bytes per step",
        per_step(total)
    );
    println!(
        "the steps' texts, whole, for scale: {:.1} bytes per step",
        per_step(text)
    );
    Ok(())
}
