//! Writes a seeded synthetic run (the profiler form, see `agentprof::synth`) to stdout, for the
//! benchmarks that need a run of a given size in a file or a request body.
//!
//! `cargo run --release --example synth -- REQUESTS [SEED] [FIRST]`: FIRST numbers the requests
//! from there on, so that a big run can be posted in batches.

use std::io::Write;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let requests: usize = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: synth REQUESTS [SEED] [FIRST]"))?
        .parse()?;
    let seed: u64 = args.next().map_or(Ok(42), |s| s.parse())?;
    let first: usize = args.next().map_or(Ok(0), |s| s.parse())?;
    let doc = agentprof::synth::profiler_document_from(first, requests, seed);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    serde_json::to_writer(&mut out, &doc)?;
    out.flush()?;
    Ok(())
}
