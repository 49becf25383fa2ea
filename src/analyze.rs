//! `agentprof analyze`: the profiler on a file, with no database, writing the files the toolkit
//! writes. It is the offline twin of the service and the quickest conformance check.

use crate::profiler::{
    self, Frame, ProfilerConfig, py, toolkit::gantt, toolkit::traces::TracesWriter,
};
use crate::trace::{self, ParseOptions, TraceError};
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

/// What an analysis read and wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub requests: usize,
    pub steps: usize,
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
    config: &ProfilerConfig,
) -> Result<Summary, AnalyzeError> {
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| AnalyzeError::Io { path, source }
    };
    let bytes = std::fs::read(input).map_err(io_err(input))?;
    let batch = trace::parse_document(&bytes, &ParseOptions::default()).map_err(|source| {
        AnalyzeError::Input {
            path: input.to_owned(),
            source,
        }
    })?;
    drop(bytes);
    let requests = batch.into_numbered();
    let frame = Frame::from_numbered(&requests);
    std::fs::create_dir_all(out_dir).map_err(io_err(out_dir))?;

    // The outputs are independent reads of the same data: write them from two threads.
    let out = |name: &str| out_dir.join(name);
    let traces_and_csv = || -> Result<Vec<PathBuf>, AnalyzeError> {
        let mut files = Vec::new();
        write_file(&out("all_requests_profiler_traces.json"), &mut files, |w| {
            let mut t = TracesWriter::new(w);
            for (number, steps) in &requests {
                t.begin_request(*number)?;
                for s in steps {
                    t.step(s)?;
                }
            }
            t.finish().map(|_| ())
        })?;
        write_file(&out("standardized_data_all.csv"), &mut files, |w| {
            profiler::toolkit::csv::write(w, &frame, config)
        })?;
        let stats = profiler::statistics::stats::compute(&frame);
        write_file(&out("stats.json"), &mut files, |w| {
            serde_json::to_writer_pretty(&mut *w, &stats).map_err(io::Error::other)
        })?;
        Ok(files)
    };
    let analyses = || -> Result<Vec<PathBuf>, AnalyzeError> {
        let mut files = Vec::new();
        let inference = profiler::inference_optimization(&frame, config);
        write_file(&out("inference_optimization.json"), &mut files, |w| {
            py::json::write(w, &inference, true).map_err(io::Error::other)
        })?;
        let forest = profiler::call_forest(&frame, config);
        let profiling = profiler::workflow_profiling_with(&frame, &forest, config);
        if !profiling.is_empty() {
            write_file(&out("workflow_profiling_report.txt"), &mut files, |w| {
                w.write_all(profiling.report.as_bytes())
            })?;
            write_file(&out("workflow_profiling_metrics.json"), &mut files, |w| {
                py::json::write(w, &profiling, true).map_err(io::Error::other)
            })?;
        }
        // The toolkit draws the chart with the nested-stack analysis, and only when there are calls.
        if config.bottleneck_analysis.enable_nested_stack && !forest.nodes.is_empty() {
            write_file(&out("gantt_chart.svg"), &mut files, |w| {
                gantt::write_svg(w, &forest).map(|_| ())
            })?;
        }
        if config.token_usage_forecast {
            let forecast = profiler::toolkit::forecast::fit(&frame);
            write_file(&out("forecast.json"), &mut files, |w| {
                py::json::write(w, &forecast, true).map_err(io::Error::other)
            })?;
        }
        Ok(files)
    };
    let (first, second) = std::thread::scope(|s| {
        let side = s.spawn(traces_and_csv);
        let main = analyses();
        (side.join(), main)
    });
    let mut files = first.map_err(|_| AnalyzeError::Io {
        path: out_dir.to_owned(),
        source: io::Error::other("writer thread panicked"),
    })??;
    files.extend(second?);

    Ok(Summary {
        requests: requests.len(),
        steps: frame.rows.len(),
        files,
    })
}
