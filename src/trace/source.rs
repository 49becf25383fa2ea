//! Where a document's JSON text comes from: bytes in memory, or a gzip body inflated as it is
//! read. A gzip body is never inflated whole: a 780 KB body can inflate to 255 MiB, and holding
//! that next to the steps read from it doubled what one ingest could take (docs/limits.md).

use super::document::{Document, ReadError, StepSink, Wrapped, read_document, read_wrapped};
use super::input::{ParseOptions, TraceError, describe_start, gunzip, replace_lone_surrogates};
use super::parse::Validator;
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

struct WholeDocument;

impl<K: StepSink> Reading<K> for WholeDocument {
    type Out = Document<K::Kept>;
    fn read<'de, D: Deserializer<'de>>(
        &self,
        de: D,
        v: &mut Validator,
        sink: &mut K,
    ) -> Result<Self::Out, ReadError> {
        read_document(de, v, sink)
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
        read_wrapped(de, self.0, v, sink)
    }
}

/// Reads a document in any form as it is parsed, handing each valid step to `sink` (see
/// [`super::document`]): nothing but what the sink keeps stays in memory.
pub fn read_json_document<K: StepSink>(
    source: JsonSource<'_>,
    opts: &ParseOptions,
    sink: &mut K,
) -> Result<Document<K::Kept>, TraceError> {
    read_source(source, opts, sink, &WholeDocument)
}

/// Reads a request body whose `field` holds a step document (or that is one, as a bare list)
/// as it is parsed, handing each valid step to `sink`.
pub fn read_json_wrapped<K: StepSink>(
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
    let replaced;
    let bytes = match replace_lone_surrogates(bytes) {
        Some(fixed) => {
            replaced = fixed;
            &replaced[..]
        }
        None => bytes,
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let mut v = Validator::new(opts.now);
    let read = reading
        .read(&mut de, &mut v, sink)
        .and_then(|out| de.end().map(|()| out).map_err(syntax_error));
    let syntax = |e: String| TraceError::Syntax(format!("{e}; {}", describe_start(bytes)));
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

    fn read(
        source: JsonSource<'_>,
    ) -> Result<Document<crate::trace::IntermediateStep>, TraceError> {
        read_json_document(source, &ParseOptions::default(), &mut KeepSteps)
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
        let from_text = read(JsonSource::Text(DOC.as_bytes())).unwrap();
        let from_gzip = read(gz(&compressed)).unwrap();
        assert_eq!(from_text, from_gzip);
        assert_eq!(from_gzip.requests[0].steps.len(), 2);
    }

    #[test]
    fn unpaired_surrogates_in_gzip_become_the_replacement_character() {
        let doc = DOC.replace(r"\ud83d\ude00", r"\ud800");
        let compressed = gzip_at(doc.as_bytes(), 6);
        let from_gzip = read(gz(&compressed)).unwrap();
        assert_eq!(from_gzip, read(JsonSource::Text(doc.as_bytes())).unwrap());
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
            read(small),
            Err(TraceError::TooLarge { limit: 100 })
        ));
        assert!(matches!(
            small.fingerprint(),
            Err(TraceError::TooLarge { .. })
        ));

        let cut = &compressed[..compressed.len() / 2];
        assert!(matches!(read(gz(cut)), Err(TraceError::Gzip(_))));

        let broken = gzip_at(b"[[{\"payload\": nope}]]", 6);
        match read(gz(&broken)) {
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
        let read = read_json_document(gz(&compressed), &ParseOptions::default(), &mut Refuse);
        assert!(matches!(read, Err(TraceError::Refused(m)) if m == "full"));
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
