//! Where a document's JSON text comes from: bytes in memory, or a gzip body inflated as it is
//! read. A gzip body is never inflated whole: a 780 KB body can inflate to 255 MiB, and holding
//! that next to the steps read from it doubled what one ingest could take (docs/limits.md).

use super::document::{
    Document, KeepSteps, ReadError, StepSink, Wrapped, read_document_from, read_wrapped_from,
};
use super::parse::Validator;
use super::text::{describe_start, gunzip, without_lone_surrogates};
use super::types::{InputForm, ParseOptions, TraceError};
use serde::Deserializer;
use std::io::Read;

/// A request body's JSON text.
#[derive(Debug, Clone, Copy)]
pub enum JsonSource<'a> {
    Text(&'a [u8]),
    /// gzip data that may inflate to at most `limit` bytes.
    Gzip {
        compressed: &'a [u8],
        limit: u64,
    },
}

impl JsonSource<'_> {
    /// SHA-256 of the JSON text (inflated, for gzip), which identifies a request body whatever
    /// its compression: a client that compresses its retry again (Python's gzip stamps the time
    /// into the header) sends the same text.
    pub fn fingerprint(&self) -> Result<[u8; 32], TraceError> {
        use sha2::{Digest, Sha256};
        match *self {
            JsonSource::Text(bytes) => Ok(Sha256::digest(bytes).into()),
            JsonSource::Gzip { compressed, limit } => {
                let mut hasher = Sha256::new();
                let mut inflating = Inflating::new(compressed, limit);
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match inflating.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => hasher.update(&buf[..n]),
                        Err(_) => return Err(inflating.error()),
                    }
                }
                Ok(hasher.finalize().into())
            }
        }
    }
}

/// A gzip body inflated as it is read, stopping at its limit. Its errors are kept, because
/// serde_json reports a reader's error only as text.
struct Inflating<'a> {
    decoder: flate2::read::MultiGzDecoder<&'a [u8]>,
    limit: u64,
    read: u64,
    failure: Option<TraceError>,
}

impl<'a> Inflating<'a> {
    fn new(compressed: &'a [u8], limit: u64) -> Self {
        Inflating {
            decoder: flate2::read::MultiGzDecoder::new(compressed),
            limit,
            read: 0,
            failure: None,
        }
    }

    /// What stopped the reading (after a read returned an error).
    fn error(&mut self) -> TraceError {
        self.failure
            .take()
            .unwrap_or_else(|| TraceError::Gzip("the gzip stream ended unexpectedly".to_owned()))
    }
}

impl Read for Inflating<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.decoder.read(buf) {
            Ok(n) => {
                self.read += n as u64;
                if self.read > self.limit {
                    self.failure = Some(TraceError::TooLarge { limit: self.limit });
                    return Err(std::io::Error::other("inflated limit"));
                }
                Ok(n)
            }
            Err(e) => {
                self.failure = Some(TraceError::Gzip(e.to_string()));
                Err(e)
            }
        }
    }
}

/// One of the two ways to read a document (the whole body, or a field of a request object).
trait Reading<K: StepSink> {
    type Out;
    fn read<'de, D: Deserializer<'de>>(
        &self,
        de: D,
        v: &mut Validator,
        sink: &mut K,
    ) -> Result<Self::Out, ReadError>;
}

/// A whole document, or a run of a document's items whose first is at `first_position` in it.
struct WholeDocument {
    first_position: usize,
}

impl<K: StepSink> Reading<K> for WholeDocument {
    type Out = Document<K::Kept>;
    fn read<'de, D: Deserializer<'de>>(
        &self,
        de: D,
        v: &mut Validator,
        sink: &mut K,
    ) -> Result<Self::Out, ReadError> {
        read_document_from(de, v, sink, self.first_position)
    }
}

struct Field(&'static str);

impl<K: StepSink> Reading<K> for Field {
    type Out = Wrapped<K::Kept>;
    fn read<'de, D: Deserializer<'de>>(
        &self,
        de: D,
        v: &mut Validator,
        sink: &mut K,
    ) -> Result<Self::Out, ReadError> {
        read_wrapped_from(de, self.0, v, sink)
    }
}

/// Reads a document in any form as it is parsed, handing each valid step to `sink` (see
/// [`super::document`]): nothing but what the sink keeps stays in memory.
pub fn read<K: StepSink>(
    source: JsonSource<'_>,
    opts: &ParseOptions,
    sink: &mut K,
) -> Result<Document<K::Kept>, TraceError> {
    read_source(source, opts, sink, &WholeDocument { first_position: 0 })
}

/// How much list text one thread reads at a time: large enough that handing it over costs
/// nothing next to parsing it, small enough that the text in flight stays a few megabytes.
const PARALLEL_GROUP_BYTES: usize = 2 << 20;

/// Reads a document that is a top-level list from `reader`, its items parsed on `threads`
/// threads, keeping every step; `None` when it must be read the usual way
/// ([`read`]) instead.
///
/// Building the steps' values is most of the cost of reading a large document
/// (BENCHMARKS.md#earlier-in-the-day-second-session-2026-11-30), and the list's items are
/// independent. So this thread splits the text into runs of whole items as it reads (see
/// `split.rs`), never holding more than a few runs, and the workers parse each run as a list of
/// its own, numbering and pointing into its items by their places in the whole document. The
/// result is the one-thread reading's, whatever the split.
/// Anything this path cannot vouch for gives `None`: a text that is not a list (the EvalInput
/// dump is an object), a read error, a step that fails validation (the one-thread reading
/// reports errors in document order), or runs that disagree on the document's form (a
/// profiler-form run beside an eval-form one: the form is decided over all items).
pub fn read_parallel<R: std::io::Read>(
    reader: R,
    opts: &ParseOptions,
    threads: usize,
) -> Option<Document<crate::trace::IntermediateStep>> {
    read_json_in_runs(reader, opts, threads, PARALLEL_GROUP_BYTES)
}

/// [`read_parallel`] with runs of at least `run_bytes` of text.
fn read_json_in_runs<R: std::io::Read>(
    mut reader: R,
    opts: &ParseOptions,
    threads: usize,
    run_bytes: usize,
) -> Option<Document<crate::trace::IntermediateStep>> {
    use std::sync::{Arc, Mutex, mpsc};
    /// A run of items: the place of its first item, and its text as a list.
    type Run = (usize, Vec<u8>);
    type Part = (usize, Option<Document<crate::trace::IntermediateStep>>);
    let (runs, queue) = mpsc::sync_channel::<Run>(threads.max(1) * 2);
    // Each worker holds the queue, so that it closes (and the reader stops) should every worker
    // stop early.
    let queue = Arc::new(Mutex::new(queue));
    let parse_runs = |queue: Arc<Mutex<mpsc::Receiver<Run>>>| {
        let mut parts: Vec<Part> = Vec::new();
        loop {
            let next = match queue.lock() {
                Ok(q) => q.recv(),
                Err(_) => return parts,
            };
            let Ok((first, text)) = next else {
                return parts;
            };
            let run = WholeDocument {
                first_position: first,
            };
            parts.push((first, read_text(&text, opts, &mut KeepSteps, &run).ok()));
        }
    };
    let (split, parts) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                let queue = Arc::clone(&queue);
                s.spawn(move || parse_runs(queue))
            })
            .collect();
        drop(queue);
        let split = split_into_runs(&mut reader, &runs, run_bytes);
        drop(runs);
        let parts: Option<Vec<Part>> = workers
            .into_iter()
            .map(|w| w.join().ok())
            .collect::<Option<Vec<_>>>()
            .map(|p| p.into_iter().flatten().collect());
        (split, parts)
    });
    split.ok()?;
    let mut parts = parts?;
    parts.sort_by_key(|(first, _)| *first);
    let docs: Vec<_> = parts.into_iter().map(|(_, d)| d).collect::<Option<_>>()?;
    let form = docs.first().map_or(InputForm::Empty, |d| d.form);
    if docs.iter().any(|d| d.form != form) {
        return None;
    }
    Some(Document {
        form,
        requests: docs.into_iter().flat_map(|d| d.requests).collect(),
    })
}

/// Reads `reader` through the list splitter, sending runs of whole items, each wrapped as a
/// list of its own, with the place of its first item.
fn split_into_runs<R: std::io::Read>(
    reader: &mut R,
    runs: &std::sync::mpsc::SyncSender<(usize, Vec<u8>)>,
    run_bytes: usize,
) -> Result<(), ()> {
    let mut splitter = super::split::ListSplitter::default();
    let mut buf = vec![0u8; 1 << 20];
    let mut run = Vec::with_capacity(run_bytes + (1 << 20));
    let (mut first, mut count) = (0usize, 0usize);
    let mut sent_all = true;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(()),
        };
        splitter
            .feed(&buf[..n], |item| {
                run.push(if count == 0 { b'[' } else { b',' });
                run.extend_from_slice(item);
                count += 1;
                if run.len() >= run_bytes {
                    run.push(b']');
                    let capacity = run.capacity();
                    let full = std::mem::replace(&mut run, Vec::with_capacity(capacity));
                    sent_all &= runs.send((first, full)).is_ok();
                    first += count;
                    count = 0;
                }
            })
            .map_err(|_| ())?;
        if !sent_all {
            return Err(());
        }
    }
    splitter.finish().map_err(|_| ())?;
    if count > 0 {
        run.push(b']');
        runs.send((first, run)).map_err(|_| ())?;
    }
    Ok(())
}

/// Reads a request body whose `field` holds a step document (or that is one, as a bare list)
/// as it is parsed, handing each valid step to `sink`.
pub fn read_wrapped<K: StepSink>(
    source: JsonSource<'_>,
    field: &'static str,
    opts: &ParseOptions,
    sink: &mut K,
) -> Result<Wrapped<K::Kept>, TraceError> {
    read_source(source, opts, sink, &Field(field))
}

fn read_source<K: StepSink, R: Reading<K>>(
    source: JsonSource<'_>,
    opts: &ParseOptions,
    sink: &mut K,
    reading: &R,
) -> Result<R::Out, TraceError> {
    match source {
        JsonSource::Text(bytes) => read_text(bytes, opts, sink, reading),
        JsonSource::Gzip { compressed, limit } => read_gzip(compressed, limit, opts, sink, reading),
    }
}

fn read_text<K: StepSink, R: Reading<K>>(
    bytes: &[u8],
    opts: &ParseOptions,
    sink: &mut K,
    reading: &R,
) -> Result<R::Out, TraceError> {
    let bytes = without_lone_surrogates(bytes);
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let mut v = Validator::new(opts.now);
    let read = reading
        .read(&mut de, &mut v, sink)
        .and_then(|out| de.end().map(|()| out).map_err(syntax_error));
    let syntax = |e: String| TraceError::Syntax(format!("{e}; {}", describe_start(&bytes)));
    read.map_err(|e| into_trace_error(e, v, syntax))
}

fn read_gzip<K: StepSink, R: Reading<K>>(
    compressed: &[u8],
    limit: u64,
    opts: &ParseOptions,
    sink: &mut K,
    reading: &R,
) -> Result<R::Out, TraceError> {
    let mut inflating = Inflating::new(compressed, limit);
    let mut v = Validator::new(opts.now);
    let read = {
        let text = std::io::BufReader::with_capacity(64 * 1024, &mut inflating);
        let mut de = serde_json::Deserializer::from_reader(text);
        reading
            .read(&mut de, &mut v, sink)
            .and_then(|out| de.end().map(|()| out).map_err(syntax_error))
    };
    match read {
        Ok(out) => Ok(out),
        Err(ReadError::Syntax(_)) if inflating.failure.is_some() => Err(inflating.error()),
        Err(ReadError::Syntax(message))
            if message.contains("surrogate") || message.contains("hex escape") =>
        {
            // An unpaired surrogate escape, which Python writes: replacing it needs the text
            // whole, so read it again from memory (rare: only such bodies pay for it).
            let text = gunzip(compressed, Some(limit))?;
            sink.restart();
            read_text(&text, opts, sink, reading)
        }
        Err(e) => {
            let syntax = |message: String| {
                let mut start = Vec::new();
                let _ = Inflating::new(compressed, limit)
                    .take(64)
                    .read_to_end(&mut start);
                TraceError::Syntax(format!("{message}; {}", describe_start(&start)))
            };
            Err(into_trace_error(e, v, syntax))
        }
    }
}

fn syntax_error(e: serde_json::Error) -> ReadError {
    ReadError::Syntax(e.to_string())
}

fn into_trace_error(
    e: ReadError,
    v: Validator,
    syntax: impl FnOnce(String) -> TraceError,
) -> TraceError {
    match e {
        ReadError::Syntax(msg) => syntax(msg),
        ReadError::Refused(why) => TraceError::Refused(why),
        ReadError::Invalid => TraceError::Invalid {
            errors: v.errors,
            omitted: v.omitted,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::KeepSteps;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gzip_at(text: &[u8], level: u32) -> Vec<u8> {
        let mut gz = GzEncoder::new(Vec::new(), Compression::new(level));
        gz.write_all(text).unwrap();
        gz.finish().unwrap()
    }

    const DOC: &str = r#"[{"request_number": 0, "intermediate_steps": [
        {"payload": {"event_type": "LLM_START", "event_timestamp": 1.5, "UUID": "a", "name": "m",
                     "data": {"input": "caf\u00e9 \ud83d\ude00"}}},
        {"payload": {"event_type": "LLM_END", "event_timestamp": 2.5, "UUID": "a", "name": "m"}}]}]"#;

    fn read_kept(
        source: JsonSource<'_>,
    ) -> Result<Document<crate::trace::IntermediateStep>, TraceError> {
        read(source, &ParseOptions::default(), &mut KeepSteps)
    }

    fn gz(compressed: &[u8]) -> JsonSource<'_> {
        JsonSource::Gzip {
            compressed,
            limit: 1 << 20,
        }
    }

    #[test]
    fn gzip_is_read_as_it_inflates_with_the_same_result_as_text() {
        let compressed = gzip_at(DOC.as_bytes(), 6);
        let from_text = read_kept(JsonSource::Text(DOC.as_bytes())).unwrap();
        let from_gzip = read_kept(gz(&compressed)).unwrap();
        assert_eq!(from_text, from_gzip);
        assert_eq!(from_gzip.requests[0].steps.len(), 2);
    }

    #[test]
    fn unpaired_surrogates_in_gzip_become_the_replacement_character() {
        let doc = DOC.replace(r"\ud83d\ude00", r"\ud800");
        let compressed = gzip_at(doc.as_bytes(), 6);
        let from_gzip = read_kept(gz(&compressed)).unwrap();
        assert_eq!(
            from_gzip,
            read_kept(JsonSource::Text(doc.as_bytes())).unwrap()
        );
        let input = &from_gzip.requests[0].steps[0].payload.data;
        assert!(format!("{input:?}").contains('\u{fffd}'), "{input:?}");
    }

    #[test]
    fn gzip_errors_say_what_went_wrong() {
        let compressed = gzip_at(DOC.as_bytes(), 6);
        let small = JsonSource::Gzip {
            compressed: &compressed,
            limit: 100,
        };
        assert!(matches!(
            read_kept(small),
            Err(TraceError::TooLarge { limit: 100 })
        ));
        assert!(matches!(
            small.fingerprint(),
            Err(TraceError::TooLarge { .. })
        ));

        let cut = &compressed[..compressed.len() / 2];
        assert!(matches!(read_kept(gz(cut)), Err(TraceError::Gzip(_))));

        let broken = gzip_at(b"[[{\"payload\": nope}]]", 6);
        match read_kept(gz(&broken)) {
            Err(TraceError::Syntax(m)) => {
                assert!(
                    m.contains(r#"the body starts with "[[{\"payload\": nope}]]""#),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_refusing_sink_stops_a_gzip_read() {
        struct Refuse;
        impl StepSink for Refuse {
            type Kept = ();
            fn keep(&mut self, _: crate::trace::IntermediateStep) -> Result<(), String> {
                Err("full".to_owned())
            }
        }
        let compressed = gzip_at(DOC.as_bytes(), 6);
        let refused = read(gz(&compressed), &ParseOptions::default(), &mut Refuse);
        assert!(matches!(refused, Err(TraceError::Refused(m)) if m == "full"));
    }

    /// Every fixture case's input, inflated.
    fn case_inputs() -> Vec<(String, Vec<u8>)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cases");
        let mut inputs = Vec::new();
        for case in std::fs::read_dir(dir).unwrap() {
            let case = case.unwrap().path();
            let name = case.file_name().unwrap().to_string_lossy().into_owned();
            if let Ok(text) = std::fs::read(case.join("input.json")) {
                inputs.push((name, text));
            } else if let Ok(gz) = std::fs::read(case.join("input.json.gz")) {
                inputs.push((name, crate::trace::gunzip(&gz, None).unwrap()));
            }
        }
        assert!(inputs.len() >= 15, "the fixture cases are there");
        inputs
    }

    #[test]
    fn reading_in_parallel_runs_gives_the_one_thread_reading() {
        let opts = ParseOptions::default();
        let mut parallel = 0;
        for (case, text) in case_inputs() {
            let serial = read(JsonSource::Text(&text), &opts, &mut KeepSteps);
            // Runs of one item each, and of a few: the split must not show in the result.
            for run_bytes in [1, 64 << 10] {
                let read = read_json_in_runs(&text[..], &opts, 2, run_bytes);
                match (&serial, read) {
                    (Ok(serial), Some(read)) => {
                        assert_eq!(&read, serial, "{case}, runs of {run_bytes} bytes");
                        parallel += 1;
                    }
                    // The EvalInput dump is an object: only the one-thread reading takes it.
                    (Ok(serial), None) => assert!(
                        !text.trim_ascii_start().starts_with(b"["),
                        "{case} ({:?}) was not read in parallel",
                        serial.form
                    ),
                    (Err(e), read) => assert!(read.is_none(), "{case}: {e}"),
                }
            }
        }
        assert!(parallel >= 28, "{parallel} cases were read in parallel");
    }

    #[test]
    fn what_the_parallel_reading_cannot_vouch_for_is_left_to_the_usual_one() {
        let opts = ParseOptions::default();
        let step = |uuid: &str| {
            format!(
                r#"{{"payload": {{"event_type": "LLM_START", "event_timestamp": 1.5, "UUID": "{uuid}"}}}}"#
            )
        };
        let profiler = format!(
            r#"{{"request_number": 4, "intermediate_steps": [{}]}}"#,
            step("a")
        );
        let eval = format!(r#"{{"id": "x", "intermediate_steps": [{}]}}"#, step("b"));
        let read = |text: String| read_json_in_runs(text.as_bytes(), &opts, 2, 1);
        // Each run alone would be a profiler-form or an eval-form document; together they are one
        // eval-form document, which only a reading of all items can tell.
        assert!(read(format!("[{profiler}, {eval}]")).is_none());
        assert!(read(format!("[{eval}, {profiler}]")).is_none());
        // Errors, a text that is not a list, a list cut short.
        let bad = r#"{"request_number": 1, "intermediate_steps": [{"payload": {}}]}"#;
        assert!(read(format!("[{profiler}, {bad}]")).is_none());
        assert!(read(format!(r#"{{"eval_input_items": [{eval}]}}"#)).is_none());
        assert!(read(format!("[{profiler}, {profiler}")).is_none());
        assert!(read(format!("[{profiler}] {profiler}")).is_none());
        // Steps without a UUID get the one the whole document would give them (it depends on
        // the request's place), and requests without a number are numbered by place.
        let no_uuid = r#"[{"payload": {"event_type": "LLM_START", "event_timestamp": 1.5}}]"#;
        let text = format!("[{no_uuid}, {no_uuid}, {no_uuid}]");
        let whole = super::read(JsonSource::Text(text.as_bytes()), &opts, &mut KeepSteps);
        let runs = read(text).unwrap();
        assert_eq!(runs, whole.unwrap());
        assert_eq!(runs.requests[2].number_in_document(), 2);
        assert_ne!(
            runs.requests[1].steps[0].payload.uuid,
            runs.requests[2].steps[0].payload.uuid
        );
    }

    #[test]
    fn the_fingerprint_is_of_the_text_whatever_the_compression() {
        let text = JsonSource::Text(DOC.as_bytes()).fingerprint().unwrap();
        let fast = gzip_at(DOC.as_bytes(), 1);
        let best = gzip_at(DOC.as_bytes(), 9);
        assert_ne!(fast, best, "the premise: two different encodings");
        assert_eq!(gz(&fast).fingerprint().unwrap(), text);
        assert_eq!(gz(&best).fingerprint().unwrap(), text);
        let other = JsonSource::Text(b"[]").fingerprint().unwrap();
        assert_ne!(other, text);
    }
}
