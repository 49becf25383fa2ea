//! A batch of steps between validation and the database: prepared once (rendered, its profiler
//! columns derived) outside any transaction, then planned inside it, where the run's existing
//! requests decide the numbers of new eval items.

use super::StoreError;
use super::packed::Dictionary;
use crate::profiler::{Dialect, StepColumns};
use crate::trace::render_step;
use crate::trace::{
    Batch, DocRequest, Document, InputForm, IntermediateStep, StepSchema, StepSink,
};
use sha2::{Digest, Sha256};

/// How an incoming request is matched to a stored one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RequestKey {
    /// The profiler form's `request_number`, or the position of a bare step list.
    Number(i64),
    /// The eval form's `id`: an existing request with this id is appended to, otherwise a new
    /// request gets the next free number.
    External(String),
}

/// A step ready to insert: its profiler columns, its rendered JSON packed for storage, and what
/// identifies it.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedStep {
    pub columns: StepColumns,
    /// The step's profiler columns and its body, the step as the combined requests file shows it
    /// (see `trace::render_step`), compressed together (see [`super::packed`]).
    pub packed: Vec<u8>,
    /// The body's length in bytes: what an export parsing the step reads.
    pub body_len: usize,
    /// The step's identity: two steps are the same step when their bodies are (see
    /// [`content_hash`]).
    pub content_hash: ContentHash,
}

/// The first 16 bytes of the SHA-256 of a step's stored body.
pub type ContentHash = [u8; 16];

/// What identifies a step's content; the migration that introduced it computes the same in SQL.
pub fn content_hash(body: &str) -> ContentHash {
    let digest = Sha256::digest(body.as_bytes());
    let mut h = [0u8; 16];
    h.copy_from_slice(&digest[..16]);
    h
}

#[derive(Debug, Clone, PartialEq)]
pub struct PreparedRequest {
    pub key: RequestKey,
    /// The eval item's fields as JSON, kept with a request the batch creates.
    pub eval: Option<String>,
    pub steps: Vec<PreparedStep>,
}

/// A validated batch, ready for one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedBatch {
    pub form: InputForm,
    pub requests: Vec<PreparedRequest>,
    /// Some step is in nvidia-nat 1.9's schema (see `Dialect::is_nat_step`).
    pub nat_schema: bool,
    /// Some step is neither an LLM_END nor a TOOL_END.
    pub non_end_steps: bool,
    /// Some step's JSON changes when written in aiq 1.1's schema.
    pub aiq_rewrite: bool,
    /// Some step's JSON changes when written in nat 1.9's schema.
    pub nat_rewrite: bool,
}

/// Prepares each step as a document is read (see `trace::StepSink`), within a memory budget,
/// and notes what the batch's steps hold.
pub struct Preparer {
    /// Bytes the prepared steps may take in all.
    budget: usize,
    /// What the steps are packed with (see [`super::packed`]).
    dictionary: &'static Dictionary,
    used: usize,
    steps: usize,
    nat_schema: bool,
    non_end_steps: bool,
    aiq_rewrite: bool,
    nat_rewrite: bool,
}

impl Preparer {
    pub fn new(budget: usize, dictionary: &'static Dictionary) -> Preparer {
        Preparer {
            budget,
            dictionary,
            used: 0,
            steps: 0,
            nat_schema: false,
            non_end_steps: false,
            aiq_rewrite: false,
            nat_rewrite: false,
        }
    }

    /// The prepared batch of a document this preparer read.
    pub fn finish(self, doc: Document<PreparedStep>) -> PreparedBatch {
        let form = doc.form;
        let requests = doc
            .requests
            .into_iter()
            .map(|r| {
                let key = match (form, r.request_number, r.external_id) {
                    (_, Some(n), _) => RequestKey::Number(n),
                    (InputForm::Eval, None, Some(id)) => RequestKey::External(id),
                    _ => RequestKey::Number(r.position as i64),
                };
                let eval = r.eval.as_ref().map(|e| {
                    serde_json::to_string(e).expect("an eval item is JSON values, which serialise")
                });
                PreparedRequest {
                    key,
                    eval,
                    steps: r.steps,
                }
            })
            .collect();
        PreparedBatch {
            form,
            requests,
            nat_schema: self.nat_schema,
            non_end_steps: self.non_end_steps,
            aiq_rewrite: self.aiq_rewrite,
            nat_rewrite: self.nat_rewrite,
        }
    }
}

impl StepSink for Preparer {
    type Kept = PreparedStep;

    fn keep(&mut self, step: IntermediateStep) -> Result<PreparedStep, String> {
        self.nat_schema |= Dialect::is_nat_step(&step);
        self.non_end_steps |= !step.payload.event_type.kept_by_default_eval_filter();
        self.aiq_rewrite |= step.rewritten_by(StepSchema::Aiq);
        self.nat_rewrite |= step.rewritten_by(StepSchema::Nat);
        let prepared = PreparedStep::of(&step, self.dictionary);
        self.used += prepared.memory();
        self.steps += 1;
        if self.used > self.budget {
            let each = self.used / self.steps;
            return Err(format!(
                "the batch's steps take more than {} MiB once read (about {each} bytes each after \
                 {} steps): split it into batches of at most {} steps, or raise \
                 AGENTPROF_MAX_BATCH_MEMORY",
                self.budget >> 20,
                self.steps,
                (self.budget / each.max(1)).max(1)
            ));
        }
        Ok(prepared)
    }

    fn restart(&mut self) {
        *self = Preparer::new(self.budget, self.dictionary);
    }
}

impl PreparedStep {
    pub fn of(step: &IntermediateStep, dictionary: &'static Dictionary) -> PreparedStep {
        let body = String::from_utf8(render_step(step))
            .expect("render_step writes JSON text, which is UTF-8");
        let columns = StepColumns::from_step(step);
        PreparedStep {
            packed: super::packed::pack(&columns, &body, dictionary),
            content_hash: content_hash(&body),
            body_len: body.len(),
            columns,
        }
    }

    /// What the step adds to the run's rollups.
    pub fn rollup_facts(&self) -> crate::rollup::StepFacts<'_> {
        let c = &self.columns;
        crate::rollup::StepFacts {
            event_type: c.event_type,
            event_timestamp: c.event_timestamp,
            span_event_timestamp: c.span_event_timestamp,
            name: c.name.as_deref(),
            prompt_tokens: c.prompt_tokens,
            completion_tokens: c.completion_tokens,
            cached_tokens: c.cached_tokens,
        }
    }

    /// The bytes of the columns a loaded frame keeps of this step (UUID, name, text, parent
    /// id): what the memory estimate of a window sums. The migration `request_windows` computes
    /// the same from stored columns.
    pub fn column_bytes(&self) -> usize {
        let c = &self.columns;
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        c.uuid.len() + opt(&c.name) + opt(&c.text) + opt(&c.parent_id)
    }

    /// What the step takes in memory: its fixed-size part twice (the vector holding it may have
    /// as much spare room), and each text's allocation. Counting capacities rather than lengths
    /// keeps the batch budget honest (the hostile-load check measures it).
    pub fn memory(&self) -> usize {
        let c = &self.columns;
        let text = |s: &String| s.capacity();
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
        let ancestry = c.ancestry.as_ref().map_or(0, |a| {
            text(&a.function_id) + text(&a.function_name) + opt(&a.parent_id) + opt(&a.parent_name)
        });
        2 * std::mem::size_of::<PreparedStep>()
            + self.packed.capacity()
            + text(&c.uuid)
            + opt(&c.name)
            + opt(&c.text)
            + opt(&c.parent_id)
            + ancestry
    }
}

impl PreparedBatch {
    /// Derives everything the store needs from a parsed document (for callers that hold one
    /// already; the service reads bodies through a [`Preparer`] instead), packing its steps
    /// with the built-in dictionary.
    pub fn prepare(batch: Batch) -> PreparedBatch {
        let mut preparer = Preparer::new(usize::MAX, Dictionary::builtin());
        let requests = batch
            .requests
            .into_iter()
            .map(|r| DocRequest {
                request_number: r.request_number,
                external_id: r.external_id,
                position: r.position,
                eval: r.eval,
                steps: r
                    .steps
                    .into_iter()
                    .map(|s| preparer.keep(s).expect("an unbounded budget"))
                    .collect(),
            })
            .collect();
        preparer.finish(Document {
            form: batch.form,
            requests,
        })
    }

    pub fn step_count(&self) -> usize {
        self.requests.iter().map(|r| r.steps.len()).sum()
    }
}

/// Steps per batch that a sequence-number block can hold (see `postgres::append_in`).
pub const SEQ_BLOCK_BITS: u32 = 24;

/// Where a batch's requests and steps land in a run, decided before any row is written.
pub(crate) struct BatchPlan<'a> {
    /// Each distinct request of the batch, sorted by number (so concurrent batches take row
    /// locks in the same order).
    pub requests: Vec<PlannedRequest<'a>>,
    /// Every step, in batch order.
    pub steps: Vec<PlannedStep<'a>>,
    pub requests_received: i64,
    pub steps_received: i64,
}

impl BatchPlan<'_> {
    /// What the stored steps (those of sequence numbers `stored`) add to the run's summary
    /// figures.
    pub fn added_summary(&self, stored: &[i64]) -> StepSummary {
        let mut sum = StepSummary::default();
        for planned in self.stored(stored) {
            let c = &planned.step.columns;
            let t = c.event_timestamp;
            if t.is_finite() {
                sum.first_event_at = Some(sum.first_event_at.map_or(t, |f| f.min(t)));
                sum.last_event_at = Some(sum.last_event_at.map_or(t, |l| l.max(t)));
            }
            if c.event_type == crate::trace::EventType::LlmEnd {
                sum.llm_calls += 1;
                sum.llm_tokens = sum.llm_tokens.saturating_add(c.total_tokens);
            }
        }
        sum
    }

    /// What the stored steps (those of sequence numbers `stored`) add to each of their
    /// requests, in request order.
    pub fn request_figures(&self, stored: &[i64]) -> Vec<RequestFigures> {
        let mut by_number: std::collections::BTreeMap<i32, RequestFigures> = Default::default();
        for planned in self.stored(stored) {
            let step = planned.step;
            let f = by_number
                .entry(planned.number)
                .or_insert_with(|| RequestFigures {
                    number: planned.number,
                    started_at: step.columns.event_timestamp,
                    ended_at: step.columns.event_timestamp,
                    steps: 0,
                    column_bytes: 0,
                    body_bytes: 0,
                });
            f.started_at = f.started_at.min(step.columns.event_timestamp);
            f.ended_at = f.ended_at.max(step.columns.event_timestamp);
            f.steps += 1;
            f.column_bytes += step.column_bytes() as i64;
            f.body_bytes += step.body_len as i64;
        }
        by_number.into_values().collect()
    }

    /// What the stored steps (those of sequence numbers `stored`) add to the run's rollups,
    /// requests aside (see [`crate::rollup::Delta::request_moved`]).
    pub fn rollup_delta(&self, stored: &[i64]) -> crate::rollup::Delta {
        let mut delta = crate::rollup::Delta::default();
        for planned in self.stored(stored) {
            delta.step(&planned.step.rollup_facts());
        }
        delta
    }

    /// The planned steps of sequence numbers `stored` (what the insert returned): all of them
    /// unless some were stored already, by a retry or a concurrent replica.
    fn stored<'s>(&'s self, stored: &[i64]) -> impl Iterator<Item = &'s PlannedStep<'s>> {
        let all = stored.len() == self.steps.len();
        let stored: std::collections::HashSet<i64> = if all {
            Default::default()
        } else {
            stored.iter().copied().collect()
        };
        self.steps
            .iter()
            .filter(move |planned| all || stored.contains(&planned.seq))
    }

    /// The distinct requests the planned steps belong to, ascending.
    pub fn touched_requests(&self) -> Vec<i32> {
        let mut numbers: Vec<i32> = self.steps.iter().map(|s| s.number).collect();
        numbers.sort_unstable();
        numbers.dedup();
        numbers
    }
}

/// What a batch adds to one request's figures (the columns the migration
/// `request_windows` added, and `ended_at` of `rollups_and_retention`): its earliest and
/// latest step times, and its steps' count and bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RequestFigures {
    pub number: i32,
    pub started_at: f64,
    pub ended_at: f64,
    pub steps: i32,
    pub column_bytes: i64,
    pub body_bytes: i64,
}

/// What the run list shows of a run's steps, kept on the run row as batches land: the span of
/// its step timestamps, its LLM_END steps and their total tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepSummary {
    pub first_event_at: Option<f64>,
    pub last_event_at: Option<f64>,
    pub llm_calls: i64,
    pub llm_tokens: i64,
}

/// Where a step goes: its request, its place in the run's order, and which occurrence of its
/// content in the request it is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlannedStep<'a> {
    pub number: i32,
    pub seq: i64,
    /// 1 for the first step with this content in the request, 2 for the second, and so on. The
    /// k-th identical step of a batch is the k-th of the request unless the batch is known to be
    /// new (see `plan`), so a retried batch meets its own steps at the unique index.
    pub occurrence: i32,
    pub step: &'a PreparedStep,
}

/// How many steps of each content a request already holds, keyed by (request, content).
pub(crate) type StoredOccurrences = std::collections::HashMap<(i32, ContentHash), i32>;

/// A request of the batch as it will be inserted (when the run does not have it yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PlannedRequest<'a> {
    pub number: i32,
    /// The eval id, when this batch creates the request for it.
    pub external_id: Option<&'a str>,
    /// The eval item's fields (JSON).
    pub eval: Option<&'a str>,
}

impl PreparedBatch {
    /// The eval ids the batch refers to, to look up in the run.
    pub(crate) fn external_ids(&self) -> Vec<&str> {
        self.requests
            .iter()
            .filter_map(|r| match &r.key {
                RequestKey::External(e) => Some(e.as_str()),
                RequestKey::Number(_) => None,
            })
            .collect()
    }

    /// Numbers the batch's requests: explicit numbers as given, known eval ids as stored, new
    /// eval ids after the highest number in the run or the batch; step sequence numbers count
    /// up from `first_seq`. Identical steps count their occurrences from `stored` (empty
    /// unless the batch carries an Idempotency-Key and so cannot be a retry: then its steps
    /// come after the ones already stored).
    pub(crate) fn plan<'a>(
        &'a self,
        known_external: &std::collections::HashMap<String, i64>,
        max_number: i64,
        first_seq: i64,
        stored: &StoredOccurrences,
    ) -> Result<BatchPlan<'a>, StoreError> {
        let explicit_max = self
            .requests
            .iter()
            .filter_map(|r| match r.key {
                RequestKey::Number(n) => Some(n),
                RequestKey::External(_) => None,
            })
            .max()
            .unwrap_or(-1);
        let mut next_number = max_number.max(explicit_max) + 1;
        let mut assigned: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
        let mut requests: std::collections::BTreeMap<i32, PlannedRequest> =
            std::collections::BTreeMap::new();
        let mut steps = Vec::with_capacity(self.step_count());
        let mut occurrences: StoredOccurrences = StoredOccurrences::new();
        let mut seq = first_seq;
        for r in &self.requests {
            let (number, external) = match &r.key {
                RequestKey::Number(n) => (*n, None),
                RequestKey::External(e) => match known_external
                    .get(e)
                    .copied()
                    .or_else(|| assigned.get(e.as_str()).copied())
                {
                    Some(n) => (n, None),
                    None => {
                        let n = next_number;
                        next_number += 1;
                        assigned.insert(e, n);
                        (n, Some(e.as_str()))
                    }
                },
            };
            let number = i32::try_from(number).map_err(|_| {
                StoreError::Rejected(format!(
                    "no request number is left for a new eval item: the run already holds \
                     request number {}",
                    i32::MAX
                ))
            })?;
            requests.entry(number).or_insert(PlannedRequest {
                number,
                external_id: external,
                eval: r.eval.as_deref(),
            });
            for step in &r.steps {
                let key = (number, step.content_hash);
                let occurrence = occurrences
                    .entry(key)
                    .or_insert_with(|| stored.get(&key).copied().unwrap_or(0));
                *occurrence += 1;
                steps.push(PlannedStep {
                    number,
                    seq,
                    occurrence: *occurrence,
                    step,
                });
                seq += 1;
            }
        }
        // In the primary key's order, so each insert lands right of the one before: with
        // time-ordered run ids (`SqlStore::create_run`) the index's pages fill before they
        // split. Arrival order left them a few percent emptier (BENCHMARKS.md, "Compact steps").
        steps.sort_unstable_by_key(|s| (s.number, s.step.content_hash, s.occurrence));
        Ok(BatchPlan {
            requests: requests.into_values().collect(),
            steps,
            requests_received: self.requests.len() as i64,
            steps_received: self.step_count() as i64,
        })
    }

    /// Every distinct step content of the batch, to look up how often the run already has it.
    pub(crate) fn content_hashes(&self) -> Vec<ContentHash> {
        let mut hashes: Vec<ContentHash> = self
            .requests
            .iter()
            .flat_map(|r| r.steps.iter().map(|s| s.content_hash))
            .collect();
        hashes.sort_unstable();
        hashes.dedup();
        hashes
    }

    /// Whether the batch names eval ids, which may need new request numbers (and so the run's
    /// exclusive lock, to hand them out once).
    pub(crate) fn has_external_ids(&self) -> bool {
        self.requests
            .iter()
            .any(|r| matches!(r.key, RequestKey::External(_)))
    }
}
