//! `agentprof analyze`: the profiler on a file, with no database, writing the files the toolkit
//! writes. It is the offline twin of the service and the quickest conformance check.

use crate::outputs::{Analysis, Lane, OUTPUTS, Source};
use crate::profiler::statistics::cost::PriceTable;
use crate::profiler::{self, Dialect, Frame, ProfilerConfig};
use crate::trace::{self, NumberedRequest, ParseOptions, TraceError};
use crate::window::{Window, request_start};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// `agentprof compare` was asked for something the two files do not hold.
    #[error("{0}")]
    Compare(String),
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
    /// Only the requests that started in this window (the whole input by default); the
    /// dialect is still detected from every step, as the service detects a run's.
    pub window: Window,
    /// What `stats.json` costs the LLM calls with (`--prices`; none by default).
    pub prices: PriceTable,
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
    let (requests, detected) = read_requests(input, &options.window)?;
    let dialect = options.dialect.unwrap_or(detected);
    std::fs::create_dir_all(out_dir).map_err(|source| AnalyzeError::Io {
        path: out_dir.to_owned(),
        source,
    })?;
    let panicked = || AnalyzeError::Io {
        path: out_dir.to_owned(),
        source: io::Error::other("writer thread panicked"),
    };
    let config = &options.config;
    let files = Files {
        out_dir,
        config,
        prices: &options.prices,
    };
    // The outputs are independent reads of the same data, written from three threads (their
    // lanes): the files that restate the steps need no frame, so they start while the frame is
    // built; then the table and the analyses share it.
    let (frame, steps_files, table_files, analysis_files) = std::thread::scope(|s| {
        let steps_files = s.spawn(|| files.steps(&requests, dialect));
        let frame = Frame::from_numbered(&requests);
        let (table_files, analysis_files) = std::thread::scope(|s| {
            let table = s.spawn(|| files.of_frame(Lane::Table, &frame, dialect));
            let analyses = files.of_frame(Lane::Analyses, &frame, dialect);
            (table.join(), analyses)
        });
        (frame, steps_files.join(), table_files, analysis_files)
    });
    let mut written = steps_files.map_err(|_| panicked())??;
    written.extend(table_files.map_err(|_| panicked())??);
    written.extend(analysis_files?);
    Ok(Summary {
        requests: requests.len(),
        steps: frame.rows().len(),
        dialect,
        dialect_detected: options.dialect.is_none(),
        warnings: profiler::warnings::of_run(
            &profiler::warnings::StepFacts::of_frame(&frame),
            config,
            dialect,
        ),
        files: written,
    })
}

/// The requests of `input` that started in `window`, and the dialect read off all its steps.
fn read_requests(
    input: &Path,
    window: &Window,
) -> Result<(Vec<NumberedRequest>, Dialect), AnalyzeError> {
    let batch = read_input(input)?;
    let detected = Dialect::detect(batch.steps());
    let mut requests = batch.into_numbered();
    requests.retain(|r| {
        window.holds(request_start(
            r.steps.iter().map(|s| s.payload.event_timestamp),
        ))
    });
    Ok((requests, detected))
}

/// One side of `agentprof compare`: a file in any input form, and a window of it.
#[derive(Debug, Clone)]
pub struct CompareSide {
    pub input: PathBuf,
    pub window: Window,
}

/// `agentprof compare` on two files: the service's comparison of their requests (paired when
/// they hold the same requests), decided by the gate; with `prices`, their cost too.
pub fn compare_files(
    baseline: &CompareSide,
    candidate: &CompareSide,
    options: &crate::profiler::statistics::compare::CompareOptions,
    gate: &crate::gate::GateOptions,
    prices: Option<&PriceTable>,
) -> Result<crate::gate::Report, AnalyzeError> {
    use crate::profiler::statistics::compare::{COST, METRICS, Side, compare_sides};
    use crate::profiler::statistics::scores::RequestScores;
    let mut known: Vec<&str> = METRICS.iter().map(|m| m.0).collect();
    if prices.is_some() {
        known.push(COST.0);
    }
    let unknown = |what: &str, name: &str| {
        AnalyzeError::Compare(format!(
            "{what} {name:?} is not a metric these files have; they have: {}",
            known.join(", ")
        ))
    };
    for name in options.only.iter().flatten() {
        if !known.contains(&name.as_str()) {
            return Err(unknown("--metric", name));
        }
    }
    for name in gate.max_regression.keys() {
        let compared = options.only.as_ref().is_none_or(|only| only.contains(name));
        if !known.contains(&name.as_str()) || !compared {
            return Err(unknown("--max-regression", name));
        }
    }
    // The two files are read one after the other: each is read on every core.
    let frame = |side: &CompareSide| -> Result<Frame, AnalyzeError> {
        let (requests, _) = read_requests(&side.input, &side.window)?;
        Ok(Frame::from_numbered(&requests))
    };
    let (a, b) = (frame(baseline)?, frame(candidate)?);
    let none = RequestScores::new();
    let side = |frame| {
        let side = Side::of(frame, &none);
        match prices {
            Some(p) => side.with_prices(p),
            None => side,
        }
    };
    let comparison = compare_sides(side(&a), side(&b), options);
    let read = crate::gate::ComparedRuns::of(&comparison)
        .map_err(|e| AnalyzeError::Compare(format!("the comparison could not be read: {e}")))?;
    if let Some(missing) = read.missing(options.only.as_deref(), gate) {
        return Err(AnalyzeError::Compare(missing.why));
    }
    Ok(crate::gate::decide(&read, gate))
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
            trace::read_parallel(flate2::read::MultiGzDecoder::new(file), &opts, threads)
        } else {
            trace::read_parallel(file, &opts, threads)
        };
        if let Some(batch) = read {
            return Ok(batch);
        }
    }
    // The usual reading, which also reports whatever the parallel one could not vouch for.
    let bytes = std::fs::read(input).map_err(io_err)?;
    trace::parse(&bytes, &opts).map_err(|source| AnalyzeError::Input {
        path: input.to_owned(),
        source,
    })
}

/// Where the files go, and the settings they are written with.
struct Files<'a> {
    out_dir: &'a Path,
    config: &'a ProfilerConfig,
    prices: &'a PriceTable,
}

impl Files<'_> {
    /// The outputs made from the steps themselves whose files the run has.
    fn steps(
        &self,
        requests: &[NumberedRequest],
        dialect: Dialect,
    ) -> Result<Vec<PathBuf>, AnalyzeError> {
        let mut files = Vec::new();
        for output in OUTPUTS.iter().filter(|o| o.lane == Lane::Steps) {
            if let Source::Steps { write, .. } = output.source
                && output.offered_in(dialect)
                && output.in_files.without_analysis(dialect)
            {
                let path = self.out_dir.join((output.file)(self.config));
                write_file(&path, &mut files, |w| write(requests, dialect, w))?;
            }
        }
        Ok(files)
    }

    /// The outputs of one lane made from the frame whose files the run has, as the toolkit
    /// decides (from the config and the data).
    fn of_frame(
        &self,
        lane: Lane,
        frame: &Frame,
        dialect: Dialect,
    ) -> Result<Vec<PathBuf>, AnalyzeError> {
        let analysis = Analysis::new(frame, self.config, dialect).with_prices(self.prices.clone());
        let mut files = Vec::new();
        for output in OUTPUTS.iter().filter(|o| o.lane == lane) {
            if let Source::Frame(write) = output.source
                && output.offered_in(dialect)
                && output.in_files.with(&analysis)
            {
                let path = self.out_dir.join((output.file)(self.config));
                write_file(&path, &mut files, |w| write(&analysis, w))?;
            }
        }
        Ok(files)
    }
}
