//! The `agentprof` binary: argument parsing and dispatch; the work lives in the library.

use agentprof::analyze::{AnalyzeOptions, analyze_file, read_config};
use agentprof::config::{Prices, ServeConfig};
use agentprof::profiler::ProfilerConfig;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

/// mimalloc returns freed pages to the OS within milliseconds; glibc's malloc kept the peak of a
/// burst of large batches resident for good (docs/limits.md has the figures).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "agentprof",
    version,
    about = "Profiles agent workflow runs (AgentIQ / NeMo Agent Toolkit steps)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service (the default command).
    Serve(ServeConfig),
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
        /// Whose outputs to write: aiq-1.1 or nat-1.9 (default: nat-1.9 when the steps are in
        /// nat 1.9's schema, aiq-1.1 otherwise)
        #[arg(long)]
        toolkit: Option<agentprof::profiler::Dialect>,
        /// Bytes of JSON the concurrency spikes' UUID lists may take in all (cut past it, counts
        /// kept exact)
        #[arg(long, default_value_t = agentprof::profiler::core::config::DEFAULT_SPIKE_UUID_BYTES)]
        max_spike_uuid_bytes: usize,
        /// Only the requests that started at or after this time (a request starts at its
        /// earliest step): Unix seconds or RFC 3339
        #[arg(long, value_parser = agentprof::window::parse_time)]
        from: Option<f64>,
        /// Only the requests that started before this time: Unix seconds or RFC 3339
        #[arg(long, value_parser = agentprof::window::parse_time)]
        to: Option<f64>,
        /// A price table (JSON or YAML, USD per million tokens by model): stats.json gets the
        /// run's cost
        #[arg(long, value_parser = agentprof::config::parse_prices_file)]
        prices: Option<Prices>,
    },
    /// Compare two runs' files as a CI gate: exit 0 when no metric is significantly worse, 1 when
    /// at least one is, 2 on any error. Latency, tokens and cost are worse higher.
    Compare {
        /// The baseline: a file in any input form (.gz ok), or with --url a run id or name
        baseline: String,
        /// The candidate: a file, or with --url a run id or name (the newest run of that name)
        candidate: String,
        /// Compare runs on this agentprof server instead of files
        #[arg(long, env = "AGENTPROF_URL")]
        url: Option<String>,
        /// The API key to read the server with
        #[arg(long, env = "AGENTPROF_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
        /// An evaluator whose scores are better lower, e.g. an error rate (repeatable); scores are
        /// better higher otherwise
        #[arg(long = "lower-is-better")]
        lower_is_better: Vec<String>,
        /// text, markdown (a pull-request comment or $GITHUB_STEP_SUMMARY) or json
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
        /// The level of the tests, Holm-corrected over the compared metrics
        #[arg(long, default_value_t = 0.05, value_parser = agentprof::gate::parse_alpha)]
        alpha: f64,
        /// Compare only this metric (repeatable): llm_latency, workflow_run_time, total_tokens,
        /// prompt_tokens, completion_tokens, tool_latency, cost
        #[arg(long = "metric")]
        metrics: Vec<String>,
        /// Files only: a price table (JSON or YAML) to compare their cost (USD per request)
        /// with; runs on a server are costed with their own prices
        #[arg(long, value_parser = agentprof::config::parse_prices_file, conflicts_with = "url")]
        prices: Option<Prices>,
        /// METRIC=PERCENT: a significant worsening counts only past this share of the baseline's
        /// mean (repeatable)
        #[arg(long = "max-regression", value_parser = agentprof::gate::parse_threshold)]
        max_regression: Vec<(String, f64)>,
        /// Only the baseline's requests that started at or after this time
        #[arg(long, value_parser = agentprof::window::parse_time)]
        baseline_from: Option<f64>,
        /// Only the baseline's requests that started before this time
        #[arg(long, value_parser = agentprof::window::parse_time)]
        baseline_to: Option<f64>,
        /// Only the candidate's requests that started at or after this time
        #[arg(long, value_parser = agentprof::window::parse_time)]
        candidate_from: Option<f64>,
        /// Only the candidate's requests that started before this time
        #[arg(long, value_parser = agentprof::window::parse_time)]
        candidate_to: Option<f64>,
    },
    /// Print the OpenAPI document (what openapi/openapi.json holds).
    Openapi,
    /// Print the outputs of a run as JSON (name, URL segment, file, content type, nat-only):
    /// what the Python client ships as its list of outputs.
    Outputs,
    /// Exit 0 when the local server answers GET /healthz with 200 (for container health checks).
    Probe {
        /// The server's address; by default AGENTPROF_BIND with 0.0.0.0 read as 127.0.0.1.
        #[arg(long, env = "AGENTPROF_BIND", default_value = "127.0.0.1:8080")]
        bind: std::net::SocketAddr,
    },
}

/// How `agentprof compare` prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ReportFormat {
    Text,
    Markdown,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Compare {
            baseline,
            candidate,
            url,
            api_key,
            lower_is_better,
            format,
            alpha,
            metrics,
            prices,
            max_regression,
            baseline_from,
            baseline_to,
            candidate_from,
            candidate_to,
        }) => {
            use agentprof::analyze::{CompareSide, compare_files};
            use agentprof::remote::{Remote, RemoteSide};
            use agentprof::window::Window;
            let options = agentprof::profiler::statistics::compare::CompareOptions {
                alpha,
                only: (!metrics.is_empty()).then_some(metrics),
            };
            let gate = agentprof::gate::GateOptions {
                max_regression: max_regression.into_iter().collect(),
                lower_is_better,
            };
            let report = match url {
                Some(url) => {
                    let side = |run, from, to| RemoteSide { run, from, to };
                    let (a, b) = (
                        side(baseline, baseline_from, baseline_to),
                        side(candidate, candidate_from, candidate_to),
                    );
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())
                        .and_then(|rt| {
                            rt.block_on(async {
                                Remote::new(&url, api_key)?.compare(&a, &b, &options).await
                            })
                            .map_err(|e| e.to_string())
                        })
                        .and_then(|compared| {
                            match compared.missing(options.only.as_deref(), &gate) {
                                Some(missing) => Err(missing.why),
                                None => Ok(agentprof::gate::decide(&compared, &gate)),
                            }
                        })
                }
                None => {
                    let side = |input: String, from, to| CompareSide {
                        input: PathBuf::from(input),
                        window: Window { from, to },
                    };
                    compare_files(
                        &side(baseline, baseline_from, baseline_to),
                        &side(candidate, candidate_from, candidate_to),
                        &options,
                        &gate,
                        prices.as_ref().map(|p| &p.0),
                    )
                    .map_err(|e| e.to_string())
                }
            };
            match report {
                Ok(report) => {
                    let out = match format {
                        ReportFormat::Text => report.text(),
                        ReportFormat::Markdown => report.markdown(),
                        // Plain numbers, strings and enums: serialising cannot fail.
                        ReportFormat::Json => {
                            serde_json::to_string_pretty(&report).unwrap_or_default() + "\n"
                        }
                    };
                    print!("{out}");
                    ExitCode::from(report.exit_code())
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Some(Command::Analyze {
            input,
            out,
            config,
            toolkit,
            max_spike_uuid_bytes,
            from,
            to,
            prices,
        }) => {
            let result = config
                .as_deref()
                .map(read_config)
                .unwrap_or_else(|| Ok(ProfilerConfig::default()))
                .and_then(|mut config| {
                    config.limits.spike_uuid_bytes = max_spike_uuid_bytes;
                    let options = AnalyzeOptions {
                        config,
                        dialect: toolkit,
                        window: agentprof::window::Window { from, to },
                        prices: prices.map(|p| p.0).unwrap_or_default(),
                    };
                    analyze_file(&input, &out, &options)
                });
            match result {
                Ok(summary) => {
                    eprintln!(
                        "analyzed {} requests, {} steps as {} ({}) -> {}",
                        summary.requests,
                        summary.steps,
                        summary.dialect,
                        if summary.dialect_detected {
                            "detected from the steps"
                        } else {
                            "given"
                        },
                        out.display()
                    );
                    for w in &summary.warnings {
                        eprintln!("warning: {w}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Openapi) => {
            print!(
                "{}",
                agentprof::api::docs::to_json(&agentprof::api::openapi())
            );
            ExitCode::SUCCESS
        }
        Some(Command::Outputs) => {
            // A list of plain strings and booleans: serialising it cannot fail.
            let listing =
                serde_json::to_string_pretty(&agentprof::outputs::listing()).unwrap_or_default();
            println!("{listing}");
            ExitCode::SUCCESS
        }
        Some(Command::Serve(config)) => serve(config),
        Some(Command::Probe { bind }) => {
            match agentprof::server::probe(bind, std::time::Duration::from_secs(2)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("unhealthy: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        None => serve(ServeConfig::parse_from_env()),
    }
}

fn serve(config: ServeConfig) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(agentprof::server::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
