//! `agentprof analyze`: the profiler on a file, with no database, writing the files the toolkit
//! writes. It is the offline twin of the service and the quickest conformance check.

use crate::profiler::toolkit::{atif, gantt, prediction_trie, traces::TracesWriter};
use crate::profiler::{self, Dialect, Frame, ProfilerConfig, py};
use crate::trace::{self, NumberedRequest, ParseOptions, TraceError};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: {source}", path.display())]
    Input { path: PathBuf, source: TraceError },
    #[error("{}: {source}", path.display())]
    Config {
        path: PathBuf,
        source: profiler::core::config::ConfigError,
    },
    #[error("{}: not valid JSON: {source}", path.display())]
    ConfigSyntax {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// How to analyse: the profiler settings, and which toolkit's outputs to write (detected from
/// the steps when not given).
#[derive(Debug, Clone, Default)]
pub struct AnalyzeOptions {
    pub config: ProfilerConfig,
    pub dialect: Option<Dialect>,
}

/// What an analysis read and wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub requests: usize,
    pub steps: usize,
    pub dialect: Dialect,
    /// Whether the dialect was read off the steps rather than given.
    pub dialect_detected: bool,
    /// What the user should know about how the outputs relate to the toolkit's.
    pub warnings: Vec<String>,
    pub files: Vec<PathBuf>,
}

/// Reads a `--config` file: a JSON object with the toolkit's `ProfilerConfig` field names.
pub fn read_config(path: &Path) -> Result<ProfilerConfig, AnalyzeError> {
    let bytes = std::fs::read(path).map_err(|source| AnalyzeError::Io {
        path: path.to_owned(),
        source,
    })?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|source| AnalyzeError::ConfigSyntax {
            path: path.to_owned(),
            source,
        })?;
    ProfilerConfig::from_json(value).map_err(|source| AnalyzeError::Config {
        path: path.to_owned(),
        source,
    })
}

/// Creates `path` and fills it through a buffered writer; records it in `files`.
fn write_file(
    path: &Path,
    files: &mut Vec<PathBuf>,
    fill: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> Result<(), AnalyzeError> {
    let io_err = |source| AnalyzeError::Io {
        path: path.to_owned(),
        source,
    };
    let mut w = BufWriter::new(File::create(path).map_err(io_err)?);
    fill(&mut w).and_then(|_| w.flush()).map_err(io_err)?;
    files.push(path.to_owned());
    Ok(())
}

/// Analyses `input` (any input form, gzip or not) and writes the outputs into `out_dir`.
pub fn analyze_file(
    input: &Path,
    out_dir: &Path,
    options: &AnalyzeOptions,
) -> Result<Summary, AnalyzeError> {
    let batch = read_input(input)?;
    let detected = Dialect::detect(batch.steps());
    let dialect = options.dialect.unwrap_or(detected);
    let requests = batch.into_numbered();
    std::fs::create_dir_all(out_dir).map_err(|source| AnalyzeError::Io {
        path: out_dir.to_owned(),
        source,
    })?;
    let panicked = || AnalyzeError::Io {
        path: out_dir.to_owned(),
        source: io::Error::other("writer thread panicked"),
    };
    // The outputs are independent reads of the same data, written from three threads: the files
    // that restate the steps need no frame, so they start while the frame is built; then the CSV
    // and the analyses share it.
    let (frame, steps_files, csv_file, analyses) = std::thread::scope(|s| {
        let steps_files = s.spawn(|| write_step_files(out_dir, &requests, dialect));
        let frame = Frame::from_numbered(&requests);
        let run = Run {
            out_dir,
            frame: &frame,
            config: &options.config,
            dialect,
        };
        let (csv_file, analyses) = std::thread::scope(|s| {
            let csv_file = s.spawn(|| run.write_csv());
            let analyses = run.write_analyses();
            (csv_file.join(), analyses)
        });
        (frame, steps_files.join(), csv_file, analyses)
    });
    let mut files = steps_files.map_err(|_| panicked())??;
    files.extend(csv_file.map_err(|_| panicked())??);
    files.extend(analyses?);
    Ok(Summary {
        requests: requests.len(),
        steps: frame.rows.len(),
        dialect,
        dialect_detected: options.dialect.is_none(),
        warnings: profiler::warnings::of_run(
            &profiler::warnings::StepFacts::of_frame(&frame),
            &options.config,
            dialect,
        ),
        files,
    })
}

fn read_input(input: &Path) -> Result<trace::Batch, AnalyzeError> {
    let io_err = |source| AnalyzeError::Io {
        path: input.to_owned(),
        source,
    };
    let opts = ParseOptions::default();
    // Reading is the largest single cost of a large input, and its requests parse independently:
    // a large list is streamed from the file to several threads, never held whole.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads > 1 {
        let mut file = io::BufReader::with_capacity(1 << 20, File::open(input).map_err(io_err)?);
        let gzip = trace::is_gzip(io::BufRead::fill_buf(&mut file).map_err(io_err)?);
        let read = if gzip {
            trace::read_json_parallel(flate2::read::MultiGzDecoder::new(file), &opts, threads)
        } else {
            trace::read_json_parallel(file, &opts, threads)
        };
        if let Some(batch) = read {
            return Ok(batch);
        }
    }
    // The usual reading, which also reports whatever the parallel one could not vouch for.
    let bytes = std::fs::read(input).map_err(io_err)?;
    trace::parse_document(&bytes, &opts).map_err(|source| AnalyzeError::Input {
        path: input.to_owned(),
        source,
    })
}

/// The files written from the steps themselves: the combined requests and, in nat 1.9, the ATIF
/// trajectories.
fn write_step_files(
    out_dir: &Path,
    requests: &[NumberedRequest],
    dialect: Dialect,
) -> Result<Vec<PathBuf>, AnalyzeError> {
    let mut files = Vec::new();
    write_file(
        &out_dir.join("all_requests_profiler_traces.json"),
        &mut files,
        |w| {
            let mut t = TracesWriter::new(w);
            for r in requests {
                t.begin_request(r.number)?;
                for s in &r.steps {
                    t.step(s, dialect.step_schema())?;
                }
            }
            t.finish().map(|_| ())
        },
    )?;
    if dialect == Dialect::Nat19 {
        let items: Vec<atif::AtifItem> = requests.iter().map(atif_item).collect();
        write_file(
            &out_dir.join("workflow_output_atif.json"),
            &mut files,
            |w| py::json::write(w, &atif::samples(&items), true).map_err(io::Error::other),
        )?;
    }
    Ok(files)
}

/// One analysis' inputs and where its files go.
struct Run<'a> {
    out_dir: &'a Path,
    frame: &'a Frame,
    config: &'a ProfilerConfig,
    dialect: Dialect,
}

impl Run<'_> {
    fn out(&self, name: &str) -> PathBuf {
        self.out_dir.join(name)
    }

    /// The frame restated as the toolkit's CSV.
    fn write_csv(&self) -> Result<Vec<PathBuf>, AnalyzeError> {
        let mut files = Vec::new();
        write_file(&self.out("standardized_data_all.csv"), &mut files, |w| {
            profiler::toolkit::csv::write(w, self.frame, self.config)
        })?;
        Ok(files)
    }

    /// The profiler's analyses, each written only when the config asks for it, as the toolkit
    /// does, and our statistics.
    fn write_analyses(&self) -> Result<Vec<PathBuf>, AnalyzeError> {
        let (frame, config, dialect) = (self.frame, self.config, self.dialect);
        let mut files = Vec::new();
        let inference = profiler::inference_optimization(frame, config, dialect);
        write_file(&self.out("inference_optimization.json"), &mut files, |w| {
            py::json::write(w, &inference, true).map_err(io::Error::other)
        })?;
        let trees = profiler::call_trees(frame, config, dialect);
        let profiling = profiler::workflow_profiling_with(frame, &trees, config);
        if !profiling.is_empty() {
            write_file(
                &self.out("workflow_profiling_report.txt"),
                &mut files,
                |w| w.write_all(profiling.report.as_bytes()),
            )?;
            write_file(
                &self.out("workflow_profiling_metrics.json"),
                &mut files,
                |w| py::json::write(w, &profiling, true).map_err(io::Error::other),
            )?;
        }
        // The toolkit draws the chart with the nested-stack analysis, and only when there are calls.
        if config.bottleneck_analysis.enable_nested_stack && !trees.nested.nodes.is_empty() {
            write_file(&self.out("gantt_chart.svg"), &mut files, |w| {
                gantt::write_svg(w, &trees.nested).map(|_| ())
            })?;
        }
        if dialect == Dialect::Nat19 {
            if config.prediction_trie.enable {
                let trie = prediction_trie::build(frame, &config.prediction_trie);
                write_file(
                    &self.out(&config.prediction_trie.output_filename),
                    &mut files,
                    |w| py::json::write(w, &trie, true).map_err(io::Error::other),
                )?;
            }
            let results = profiler::profiler_results(frame, config, &inference);
            write_file(&self.out("profiler_results.json"), &mut files, |w| {
                py::json::write(w, &results, true).map_err(io::Error::other)
            })?;
        }
        if config.token_usage_forecast {
            let forecast = profiler::toolkit::forecast::fit(frame);
            write_file(&self.out("forecast.json"), &mut files, |w| {
                py::json::write(w, &forecast, true).map_err(io::Error::other)
            })?;
        }
        // Our statistics, on this thread, which finishes first (BENCHMARKS.md section 8).
        let stats = profiler::statistics::stats::compute(frame);
        write_file(&self.out("stats.json"), &mut files, |w| {
            serde_json::to_writer_pretty(&mut *w, &stats).map_err(io::Error::other)
        })?;
        Ok(files)
    }
}

/// A request as an ATIF item: its eval fields, or its number when it came without them.
pub fn atif_item(r: &NumberedRequest) -> atif::AtifItem<'_> {
    let eval = r.eval.clone().unwrap_or_default();
    atif::AtifItem {
        item_id: if eval.id.is_null() {
            serde_json::Value::from(r.number)
        } else {
            eval.id
        },
        expected_output: eval.answer,
        output: eval.generated_answer,
        steps: &r.steps,
    }
}
