//! The `agentprof` binary: argument parsing and dispatch; the work lives in the library.

use agentprof::analyze::{analyze_file, read_config};
use agentprof::profiler::ProfilerConfig;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "agentprof",
    version,
    about = "Profiles agent workflow runs (AgentIQ / NeMo Agent Toolkit steps)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Profile a trace file offline and write the toolkit profiler's output files.
    Analyze {
        /// all_requests_profiler_traces.json, workflow_output.json or a list of step lists (.gz ok)
        input: PathBuf,
        /// Directory to write the outputs into (created if missing)
        #[arg(long)]
        out: PathBuf,
        /// JSON object with the toolkit's ProfilerConfig field names, merged over the defaults
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Analyze { input, out, config } => {
            let result = config
                .as_deref()
                .map(read_config)
                .unwrap_or_else(|| Ok(ProfilerConfig::default()))
                .and_then(|cfg| analyze_file(&input, &out, &cfg));
            match result {
                Ok(summary) => {
                    eprintln!(
                        "analyzed {} requests, {} steps -> {}",
                        summary.requests,
                        summary.steps,
                        out.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
