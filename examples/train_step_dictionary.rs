//! Trains the zstd dictionary that compact steps are compressed with (`src/store/steps-v1.dict`,
//! see `store::packed`), from the steps of the conformance cases as the store packs them.
//!
//! `cargo run --release --example train_step_dictionary -- OUT CASE_DIR...`
//!
//! docs/storage.md lists the cases the shipped dictionary was trained on and the one held out
//! to measure it. Changing the dictionary means a new format byte in `store::packed`: values
//! written with the old one must stay readable.

use agentprof::profiler::StepColumns;
use agentprof::store::packed;
use agentprof::trace::{ParseOptions, parse, render_step};
use std::path::Path;

/// BENCHMARKS.md ("Compact steps") compares sizes: larger ones keep more of the long texts
/// (system prompts, tool descriptions) that real steps repeat.
const SIZE: usize = 64 * 1024;

/// Steps sampled per case at most, evenly through it: a case of many small steps would
/// otherwise fill the dictionary with its own texts alone.
const PER_CASE: usize = 400;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((out, cases)) = args.split_first() else {
        return Err("usage: train_step_dictionary OUT CASE_DIR...".into());
    };
    let mut samples = Vec::new();
    for case in cases {
        let dir = Path::new(case);
        let input = ["input.json", "input.json.gz"]
            .iter()
            .find_map(|name| std::fs::read(dir.join(name)).ok())
            .ok_or_else(|| format!("{case} has no input.json[.gz]"))?;
        let batch = parse(&input, &ParseOptions::default())?;
        let steps: Vec<_> = batch.steps().collect();
        let every = steps.len().div_ceil(PER_CASE).max(1);
        for step in steps.into_iter().step_by(every) {
            let body = String::from_utf8(render_step(step))?;
            samples.push(packed::raw(&StepColumns::from_step(step), &body));
        }
    }
    let size = std::env::var("DICT_SIZE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SIZE);
    let dictionary = zstd::dict::from_samples(&samples, size)?;
    std::fs::write(out, &dictionary)?;
    eprintln!(
        "{} bytes trained on {} steps of {} cases",
        dictionary.len(),
        samples.len(),
        cases.len()
    );
    Ok(())
}
