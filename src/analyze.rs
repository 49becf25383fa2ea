//! `agentprof analyze`: the profiler on a file, with no database, writing the files the toolkit
//! writes. It is the offline twin of the service and the quickest conformance check.

use crate::profiler::calltree::CallForest;
use crate::profiler::{self, Frame, ProfilerConfig, gantt, pyjson, traces::TracesWriter};
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
        source: profiler::config::ConfigError,
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
    let frame = Frame::from_requests(requests.iter().map(|(n, s)| (*n, s.as_slice())));
    std::fs::create_dir_all(out_dir).map_err(io_err(out_dir))?;

    let mut files = Vec::new();
    let mut write_file = |name: &str, f: &mut dyn FnMut(&mut BufWriter<File>) -> io::Result<()>| {
        let path = out_dir.join(name);
        let file = File::create(&path).map_err(io_err(&path))?;
        let mut w = BufWriter::new(file);
        f(&mut w).and_then(|_| w.flush()).map_err(io_err(&path))?;
        files.push(path);
        Ok::<(), AnalyzeError>(())
    };

    write_file("all_requests_profiler_traces.json", &mut |w| {
        let mut t = TracesWriter::new(w);
        for (number, steps) in &requests {
            t.begin_request(*number)?;
            for s in steps {
                t.step(s)?;
            }
        }
        t.finish().map(|_| ())
    })?;
    write_file("standardized_data_all.csv", &mut |w| {
        profiler::csv::write(w, &frame, config)
    })?;
    let inference = profiler::inference_optimization(&frame, config);
    write_file("inference_optimization.json", &mut |w| {
        pyjson::write(w, &inference, true).map_err(io::Error::other)
    })?;

    let profiling = profiler::workflow_profiling(&frame, config);
    if !profiling.is_empty() {
        write_file("workflow_profiling_report.txt", &mut |w| {
            w.write_all(profiling.report.as_bytes())
        })?;
        write_file("workflow_profiling_metrics.json", &mut |w| {
            pyjson::write(w, &profiling, true).map_err(io::Error::other)
        })?;
    }
    if config.bottleneck_analysis.enable_nested_stack && frame.is_standardized() {
        let forest = CallForest::build(&frame);
        if !forest.nodes.is_empty() {
            write_file("gantt_chart.svg", &mut |w| {
                gantt::write_svg(w, &forest).map(|_| ())
            })?;
        }
    }
    if config.token_usage_forecast {
        let forecast = profiler::forecast::fit(&frame);
        write_file("forecast.json", &mut |w| {
            pyjson::write(w, &forecast, true).map_err(io::Error::other)
        })?;
    }

    Ok(Summary {
        requests: requests.len(),
        steps: frame.rows.len(),
        files,
    })
}
