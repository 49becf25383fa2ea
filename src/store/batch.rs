//! A batch of steps between validation and the database: prepared once (rendered, its profiler
//! columns derived) outside any transaction, then planned inside it, where the run's existing
//! requests decide the numbers of new eval items.

use super::StoreError;
use crate::profiler::toolkit::traces::render_step;
use crate::profiler::warnings::is_default_filter_type;
use crate::profiler::{Dialect, StepColumns};
use crate::trace::{Batch, InputForm, StepSchema};

/// How an incoming request is matched to a stored one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RequestKey {
    /// The profiler form's `request_number`, or the position of a bare step list.
    Number(i64),
    /// The eval form's `id`: an existing request with this id is appended to, otherwise a new
    /// request gets the next free number.
    External(String),
}

/// A step ready to insert: its profiler columns and its rendered JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedStep {
    pub columns: StepColumns,
    /// The step as the combined requests file shows it (see `profiler::toolkit::traces::render_step`).
    pub body: String,
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

impl PreparedBatch {
    /// Derives everything the store needs from a parsed document. CPU-bound: run it off the
    /// async executor for large batches.
    pub fn prepare(batch: Batch) -> PreparedBatch {
        let form = batch.form;
        let nat_schema = batch.steps().any(Dialect::is_nat_step);
        let non_end_steps = batch
            .steps()
            .any(|s| !is_default_filter_type(s.payload.event_type));
        let aiq_rewrite = batch.steps().any(|s| s.rewritten_by(StepSchema::Aiq));
        let nat_rewrite = batch.steps().any(|s| s.rewritten_by(StepSchema::Nat));
        let requests = batch
            .requests
            .into_iter()
            .map(|r| {
                let key = match (form, r.request_number, r.external_id) {
                    (_, Some(n), _) => RequestKey::Number(n),
                    (InputForm::Eval, None, Some(id)) => RequestKey::External(id),
                    _ => RequestKey::Number(r.position as i64),
                };
                let steps = r
                    .steps
                    .iter()
                    .map(|s| PreparedStep {
                        columns: StepColumns::from_step(s),
                        body: String::from_utf8(render_step(s))
                            .expect("render_step writes JSON text, which is UTF-8"),
                    })
                    .collect();
                let eval = r.eval.as_ref().map(|e| {
                    serde_json::to_string(e).expect("an eval item is JSON values, which serialise")
                });
                PreparedRequest { key, eval, steps }
            })
            .collect();
        PreparedBatch {
            form,
            requests,
            nat_schema,
            non_end_steps,
            aiq_rewrite,
            nat_rewrite,
        }
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
    /// Every step with its request number and sequence number, in batch order.
    pub steps: Vec<(i32, i64, &'a PreparedStep)>,
    pub requests_received: i64,
    pub steps_received: i64,
}

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
    /// up from `first_seq`.
    pub(crate) fn plan<'a>(
        &'a self,
        known_external: &std::collections::HashMap<String, i64>,
        max_number: i64,
        first_seq: i64,
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
                steps.push((number, seq, step));
                seq += 1;
            }
        }
        Ok(BatchPlan {
            requests: requests.into_values().collect(),
            steps,
            requests_received: self.requests.len() as i64,
            steps_received: self.step_count() as i64,
        })
    }

    /// Whether the batch names eval ids, which may need new request numbers (and so the run's
    /// exclusive lock, to hand them out once).
    pub(crate) fn has_external_ids(&self) -> bool {
        self.requests
            .iter()
            .any(|r| matches!(r.key, RequestKey::External(_)))
    }
}
