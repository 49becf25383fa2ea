//! Compact steps: the part of a stored step that only Rust reads, in one compressed value.
//!
//! A step's rendered body (its JSON as the combined requests file shows it) is most of what a
//! step weighs, and the profiler's columns (UUIDs, names, ancestry, the LLM text, times, tokens)
//! repeat pieces of it. Stored as separate columns they cost a step about 1,750 bytes of
//! PostgreSQL (BENCHMARKS.md, "Past one machine"). Packed together, the columns first and the
//! body after them, one zstd frame holds both: the body's copies of the column values become
//! short back-references, and a dictionary trained on real steps supplies the JSON keys and the
//! shape every step shares, so even a lone step compresses well. A row keeps in plain columns
//! only its key, its event type (which the rollups filter on) and its identity.
//!
//! The value is one format byte, then (for a trained dictionary) the dictionary's id as a
//! postcard varint, then a zstd frame whose content is the postcard encoding of [`Head`]
//! followed by the body's UTF-8 bytes.
//!
//! # Dictionaries
//!
//! A dictionary built into the binary serves a new database: it was trained on the conformance
//! cases and knows the toolkit's step shape. What it cannot know is a deployment's own texts:
//! its agents' system prompts, prompt templates and tool descriptions, which every LLM step of
//! every request repeats (serialised LangChain templates alone are kilobytes). So a server trains
//! a dictionary on the database's own steps once it holds enough of them, and again each time
//! they have grown eightfold ([`Schedule`]). Dictionaries are stored in `step_dictionaries`,
//! numbered from 1, and never change: a packed step names its dictionary, and new steps use the
//! newest one a server knows. Several replicas may train at once: the first to store its
//! dictionary under the next number wins, and the others take it.

use crate::profiler::StepColumns;
use crate::store::StoreError;
use crate::trace::{Framework, InvocationNode};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, RwLock};
use zstd::bulk::{Compressor, Decompressor};
use zstd::dict::{DecoderDictionary, EncoderDictionary};

/// Format 1: zstd with the built-in dictionary.
const FORMAT_BUILTIN: u8 = 1;

/// Format 2: zstd with a trained dictionary, whose id follows.
const FORMAT_TRAINED: u8 = 2;

/// Trained on real steps of the conformance cases by `examples/train_step_dictionary.rs`
/// (docs/storage.md says how, and which case it leaves out).
const BUILTIN: &[u8] = include_bytes!("steps-v1.dict");

/// zstd's level 3 (its default): measured against other levels on real steps in
/// BENCHMARKS.md ("Compact steps").
const LEVEL: i32 = 3;

/// The largest trained dictionary: room for a deployment's prompt templates and tool
/// descriptions, which are kilobytes each.
pub const MAX_DICTIONARY: usize = 64 * 1024;

/// The largest decompressed step believed: a value claiming more is corrupt, not allocated.
/// Far above any body ingest accepts (a batch is bounded well below this).
const MAX_UNPACKED: usize = 1 << 30;

/// A zstd dictionary prepared for both directions.
pub struct Dictionary {
    /// 0 for the built-in one; otherwise its number in `step_dictionaries`.
    id: u32,
    encoder: EncoderDictionary<'static>,
    decoder: DecoderDictionary<'static>,
}

static BUILTIN_DICTIONARY: LazyLock<Dictionary> = LazyLock::new(|| {
    Dictionary::new(0, BUILTIN).expect("the built-in dictionary was made by zstd's trainer")
});

impl Dictionary {
    /// A dictionary from its stored bytes; `None` when zstd cannot load them.
    fn new(id: u32, bytes: &[u8]) -> Option<Dictionary> {
        Some(Dictionary {
            id,
            encoder: EncoderDictionary::try_copy(bytes, LEVEL).ok()?,
            decoder: DecoderDictionary::try_copy(bytes).ok()?,
        })
    }

    /// The dictionary built into the binary.
    pub fn builtin() -> &'static Dictionary {
        &BUILTIN_DICTIONARY
    }

    pub fn id(&self) -> u32 {
        self.id
    }
}

/// The dictionaries one store has read, by id. They are kept for the life of the process (the
/// compression contexts of each thread refer to them): a database has a few dozen at most, one
/// per eightfold growth of its steps.
pub struct Dictionaries {
    known: RwLock<BTreeMap<u32, &'static Dictionary>>,
    /// The stored steps before which this process does not try training again, after an
    /// attempt that failed (0: none failed).
    retry_at: AtomicU64,
}

impl Default for Dictionaries {
    fn default() -> Self {
        Dictionaries {
            known: RwLock::new(BTreeMap::from([(0, Dictionary::builtin())])),
            retry_at: AtomicU64::new(0),
        }
    }
}

impl Dictionaries {
    /// The newest dictionary: the one new steps are packed with.
    pub fn newest(&self) -> &'static Dictionary {
        let known = self.known.read().unwrap_or_else(|e| e.into_inner());
        known
            .last_key_value()
            .map_or(Dictionary::builtin(), |(_, d)| d)
    }

    fn get(&self, id: u32) -> Option<&'static Dictionary> {
        let known = self.known.read().unwrap_or_else(|e| e.into_inner());
        known.get(&id).copied()
    }

    pub(crate) fn retry_at(&self) -> u64 {
        self.retry_at.load(Ordering::Relaxed)
    }

    pub(crate) fn retry_from(&self, steps: u64) {
        self.retry_at.store(steps, Ordering::Relaxed);
    }

    /// Adds dictionary `id` as stored; one already known is left as it is.
    pub fn add(&self, id: u32, bytes: &[u8]) -> Result<(), StoreError> {
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        if let std::collections::btree_map::Entry::Vacant(slot) = known.entry(id) {
            let dictionary = Dictionary::new(id, bytes).ok_or_else(|| {
                StoreError::Corrupt(format!("stored step dictionary {id} does not load"))
            })?;
            slot.insert(Box::leak(Box::new(dictionary)));
        }
        Ok(())
    }

    /// Forgets the trained dictionaries above `id`: the database no longer has them (it was
    /// restored, or failed over to a standby that had not received them), so new steps must not
    /// name them. Values packed with them meanwhile are unreadable, which is why this is logged.
    pub(crate) fn forget_above(&self, id: u32) {
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        let Some(above) = id.checked_add(1) else {
            return;
        };
        let lost = known.split_off(&above);
        if !lost.is_empty() {
            tracing::error!(
                lost = ?lost.keys().collect::<Vec<_>>(),
                "step dictionaries this server used are no longer stored; new steps use older ones"
            );
        }
    }
}

/// When a database's next dictionary is due: at [`Schedule::first`] stored steps, then each
/// time the steps have grown eightfold since the newest dictionary was trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// The stored steps before the first trained dictionary; 0 trains none.
    pub first: u64,
}

impl Schedule {
    const GROWTH: u64 = 8;

    /// Whether a dictionary is due with `steps` stored and the newest trained on `last` steps
    /// (`None`: none trained yet).
    pub fn due(&self, steps: u64, last: Option<u64>) -> bool {
        match last {
            _ if self.first == 0 => false,
            None => steps >= self.first,
            Some(last) => steps >= last.max(self.first).saturating_mul(Self::GROWTH),
        }
    }
}

/// A dictionary trained on `samples` (unpacked contents, see [`Unpacked::content`]). Its size
/// follows the samples' (a 64th of them, from 16 to 64 KiB): on 2 MB of real steps a 64 KiB
/// dictionary packed the held-out case worse than a 32 KiB one (BENCHMARKS.md, "Compact
/// steps").
pub fn train(samples: &[Vec<u8>]) -> Result<Vec<u8>, String> {
    let total: usize = samples.iter().map(Vec::len).sum();
    let size = (total / 64).clamp(16 * 1024, MAX_DICTIONARY);
    zstd::dict::from_samples(samples, size).map_err(|e| e.to_string())
}

thread_local! {
    // A context per thread, for the dictionary it last used: creating one allocates its
    // tables, which would cost more than compressing a typical step.
    static COMPRESSOR: RefCell<Option<(&'static Dictionary, Compressor<'static>)>> =
        const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<(&'static Dictionary, Decompressor<'static>)>> =
        const { RefCell::new(None) };
}

/// A step's profiler columns, as they come before its body in the packed value.
#[derive(Serialize, Deserialize)]
struct Head<'a> {
    event_type: i16,
    event_timestamp: f64,
    span_event_timestamp: Option<f64>,
    prompt_tokens: i64,
    completion_tokens: i64,
    total_tokens: i64,
    cached_tokens: i64,
    uuid: &'a str,
    #[serde(borrow)]
    name: Option<&'a str>,
    framework: Option<i16>,
    #[serde(borrow)]
    ancestry: Option<Ancestry<'a>>,
    seconds_between_calls: i64,
    #[serde(borrow)]
    text: Option<&'a str>,
    #[serde(borrow)]
    parent_id: Option<&'a str>,
}

#[derive(Serialize, Deserialize)]
struct Ancestry<'a> {
    function_name: &'a str,
    function_id: &'a str,
    #[serde(borrow)]
    parent_name: Option<&'a str>,
    #[serde(borrow)]
    parent_id: Option<&'a str>,
}

/// The uncompressed content of a packed step: its head and body, as the dictionary trainer
/// sees them.
pub fn raw(columns: &StepColumns, body: &str) -> Vec<u8> {
    let a = columns.ancestry.as_ref();
    let head = Head {
        event_type: columns.event_type.code(),
        event_timestamp: columns.event_timestamp,
        span_event_timestamp: columns.span_event_timestamp,
        prompt_tokens: columns.prompt_tokens,
        completion_tokens: columns.completion_tokens,
        total_tokens: columns.total_tokens,
        cached_tokens: columns.cached_tokens,
        uuid: &columns.uuid,
        name: columns.name.as_deref(),
        framework: columns.framework.map(Framework::code),
        ancestry: a.map(|a| Ancestry {
            function_name: &a.function_name,
            function_id: &a.function_id,
            parent_name: a.parent_name.as_deref(),
            parent_id: a.parent_id.as_deref(),
        }),
        seconds_between_calls: columns.seconds_between_calls,
        text: columns.text.as_deref(),
        parent_id: columns.parent_id.as_deref(),
    };
    let mut out = postcard::to_allocvec(&head).expect("postcard encodes strings and integers");
    out.extend_from_slice(body.as_bytes());
    out
}

/// A step's profiler columns and body, compressed for storage with `dictionary`.
pub fn pack(columns: &StepColumns, body: &str, dictionary: &'static Dictionary) -> Vec<u8> {
    let content = raw(columns, body);
    let frame = COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if !matches!(&*slot, Some((d, _)) if std::ptr::eq(*d, dictionary)) {
            let mut c = Compressor::with_prepared_dictionary(&dictionary.encoder)
                .expect("a compression context can be made");
            // The value's own header names the dictionary: the frame's id would repeat it.
            c.include_dictid(false)
                .expect("a compression parameter can be set");
            *slot = Some((dictionary, c));
        }
        let (_, compressor) = slot.as_mut().expect("set just above");
        compressor
            .compress(&content)
            .expect("compressing into a growable buffer cannot fail")
    });
    let mut out = Vec::with_capacity(6 + frame.len());
    if dictionary.id == 0 {
        out.push(FORMAT_BUILTIN);
    } else {
        out.push(FORMAT_TRAINED);
        let mut id = [0u8; 5];
        let id = postcard::to_slice(&dictionary.id, &mut id).expect("a u32 varint fits 5 bytes");
        out.extend_from_slice(id);
    }
    out.extend_from_slice(&frame);
    out
}

/// A packed step read back: decompressed once, read as columns or as body.
pub struct Unpacked {
    content: Vec<u8>,
}

impl Unpacked {
    /// Unpacks a stored value with the dictionaries a store has read.
    pub fn of(packed: &[u8], dictionaries: &Dictionaries) -> Result<Unpacked, StoreError> {
        let corrupt = |why: String| StoreError::Corrupt(format!("a packed step {why}"));
        let (&format, rest) = packed
            .split_first()
            .ok_or_else(|| corrupt("is empty".into()))?;
        let (id, frame) = match format {
            FORMAT_BUILTIN => (0, rest),
            FORMAT_TRAINED => postcard::take_from_bytes::<u32>(rest)
                .map_err(|e| corrupt(format!("names no dictionary: {e}")))?,
            other => return Err(corrupt(format!("has unknown format {other}"))),
        };
        let dictionary = dictionaries
            .get(id)
            .ok_or_else(|| corrupt(format!("names dictionary {id}, which is not stored")))?;
        let size = zstd::zstd_safe::get_frame_content_size(frame)
            .ok()
            .flatten()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n <= MAX_UNPACKED)
            .ok_or_else(|| corrupt("has no believable size".into()))?;
        let content = DECOMPRESSOR.with(|cell| {
            let mut slot = cell.borrow_mut();
            if !matches!(&*slot, Some((d, _)) if std::ptr::eq(*d, dictionary)) {
                let d = Decompressor::with_prepared_dictionary(&dictionary.decoder)
                    .map_err(|e| corrupt(format!("cannot be read: {e}")))?;
                *slot = Some((dictionary, d));
            }
            let (_, decompressor) = slot.as_mut().expect("set just above");
            decompressor
                .decompress(frame, size)
                .map_err(|e| corrupt(format!("does not decompress: {e}")))
        })?;
        Ok(Unpacked { content })
    }

    /// What was compressed: the sample a dictionary is trained on.
    pub fn content(&self) -> &[u8] {
        &self.content
    }

    fn head(&self) -> Result<(Head<'_>, &[u8]), StoreError> {
        postcard::take_from_bytes(&self.content)
            .map_err(|e| StoreError::Corrupt(format!("a packed step's columns do not read: {e}")))
    }

    /// The step's profiler columns.
    pub fn columns(&self) -> Result<StepColumns, StoreError> {
        let (h, _) = self.head()?;
        let owned = |s: Option<&str>| s.map(str::to_owned);
        Ok(StepColumns {
            event_type: super::sql::columns::event_type_from_code(h.event_type)?,
            event_timestamp: h.event_timestamp,
            uuid: h.uuid.to_owned(),
            name: owned(h.name),
            framework: h
                .framework
                .map(super::sql::columns::framework_from_code)
                .transpose()?,
            ancestry: h.ancestry.map(|a| InvocationNode {
                function_name: a.function_name.to_owned(),
                function_id: a.function_id.to_owned(),
                parent_name: owned(a.parent_name),
                parent_id: owned(a.parent_id),
            }),
            prompt_tokens: h.prompt_tokens,
            completion_tokens: h.completion_tokens,
            total_tokens: h.total_tokens,
            cached_tokens: h.cached_tokens,
            seconds_between_calls: h.seconds_between_calls,
            text: owned(h.text),
            span_event_timestamp: h.span_event_timestamp,
            parent_id: owned(h.parent_id),
        })
    }

    /// The step's rendered body.
    pub fn body(&self) -> Result<&str, StoreError> {
        let (_, body) = self.head()?;
        std::str::from_utf8(body)
            .map_err(|e| StoreError::Corrupt(format!("a packed step's body is not UTF-8: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::EventType;

    fn columns() -> StepColumns {
        StepColumns {
            event_type: EventType::LlmEnd,
            event_timestamp: 1.5,
            uuid: "6c5e8f0a-0000-4000-8000-000000000001".into(),
            name: Some("meta/llama-3.1-70b-instruct".into()),
            framework: Some(Framework::Langchain),
            ancestry: Some(InvocationNode {
                function_name: "react_agent".into(),
                function_id: "f-1".into(),
                parent_name: Some("root".into()),
                parent_id: None,
            }),
            prompt_tokens: 10,
            completion_tokens: 5,
            total_tokens: 15,
            cached_tokens: 3,
            seconds_between_calls: 7,
            text: Some("the answer\u{0} is 42".into()),
            span_event_timestamp: Some(1.0),
            parent_id: Some("root".into()),
        }
    }

    #[test]
    fn a_packed_step_reads_back_as_it_was() {
        let c = columns();
        let body =
            "{\n  \"payload\": {\"event_type\": \"LLM_END\", \"text\": \"the answer is 42\"}\n}";
        let packed = pack(&c, body, Dictionary::builtin());
        assert!(packed.len() < raw(&c, body).len());
        let back = Unpacked::of(&packed, &Dictionaries::default()).unwrap();
        assert_eq!(back.columns().unwrap(), c);
        assert_eq!(back.body().unwrap(), body);
    }

    #[test]
    fn absent_values_stay_absent() {
        let c = StepColumns {
            name: None,
            framework: None,
            ancestry: None,
            text: None,
            parent_id: None,
            ..columns()
        };
        let back = Unpacked::of(
            &pack(&c, "", Dictionary::builtin()),
            &Dictionaries::default(),
        )
        .unwrap();
        assert_eq!(back.columns().unwrap(), c);
        assert_eq!(back.body().unwrap(), "");
    }

    #[test]
    fn damaged_values_are_corrupt_data_not_panics() {
        let packed = pack(&columns(), "{}", Dictionary::builtin());
        let mut wrong_format = packed.clone();
        wrong_format[0] = 9;
        let mut truncated = packed.clone();
        truncated.truncate(packed.len() / 2);
        let mut flipped = packed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        for bad in [
            &[][..],
            &wrong_format,
            &truncated,
            &flipped,
            &[FORMAT_BUILTIN, 0, 1, 2],
            &[FORMAT_TRAINED, 7, 1, 2],
        ] {
            match Unpacked::of(bad, &Dictionaries::default()) {
                Err(StoreError::Corrupt(_)) => {}
                Ok(u) => assert!(matches!(
                    u.columns().and(u.body().map(drop)),
                    Err(StoreError::Corrupt(_)) | Ok(())
                )),
                Err(e) => panic!("not corrupt data: {e}"),
            }
        }
    }

    #[test]
    fn a_trained_dictionary_is_named_by_the_value_and_needed_to_read_it() {
        let c = columns();
        let samples: Vec<Vec<u8>> = (0..400)
            .map(|i| {
                raw(
                    &c,
                    &format!(
                        "{{\"prompt\": \"a long system prompt {}\", \"n\": {i}}}",
                        "x".repeat(i % 50)
                    ),
                )
            })
            .collect();
        let trained = train(&samples).unwrap();
        let mine = Dictionaries::default();
        mine.add(3, &trained).unwrap();
        assert_eq!(mine.newest().id(), 3);
        let body = "{\"prompt\": \"a long system prompt xx\", \"n\": 7}";
        let packed = pack(&c, body, mine.newest());
        assert_eq!(packed[..2], [FORMAT_TRAINED, 3]);
        assert_eq!(Unpacked::of(&packed, &mine).unwrap().body().unwrap(), body);
        // A database that lost dictionary 3 (restored, failed over) has new steps packed with
        // the newest it still has.
        let restored = Dictionaries::default();
        restored.add(3, &trained).unwrap();
        restored.forget_above(2);
        assert_eq!(restored.newest().id(), 0);
        assert!(
            restored.add(4, b"not a dictionary at all").is_err() || restored.newest().id() == 4
        );
        // A store that has not read dictionary 3 cannot read the value, and says why.
        match Unpacked::of(&packed, &Dictionaries::default()) {
            Err(StoreError::Corrupt(why)) => assert!(why.contains("dictionary 3"), "{why}"),
            other => panic!("{:?}", other.map(|u| u.content().len())),
        }
    }

    #[test]
    fn dictionaries_are_due_at_the_first_count_then_at_each_eightfold_growth() {
        let s = Schedule { first: 1000 };
        assert!(!s.due(999, None));
        assert!(s.due(1000, None));
        assert!(!s.due(7999, Some(1000)));
        assert!(s.due(8000, Some(1000)));
        // A dictionary trained early (a lower `first` before) counts from `first` on.
        assert!(!s.due(7999, Some(10)));
        assert!(!Schedule { first: 0 }.due(u64::MAX, None));
    }
}
