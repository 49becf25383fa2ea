//! A batch of steps between validation and the database: prepared once (rendered, its profiler
//! columns derived) outside any transaction, then planned inside it, where the run's existing
//! requests decide the numbers of new eval items.

use super::StoreError;
use crate::profiler::StepColumns;
use crate::profiler::toolkit::traces::render_step;
use crate::trace::{Batch, InputForm};

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
    pub steps: Vec<PreparedStep>,
}

/// A validated batch, ready for one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedBatch {
    pub form: InputForm,
    pub requests: Vec<PreparedRequest>,
}

impl PreparedBatch {
    /// Derives everything the store needs from a parsed document. CPU-bound: run it off the
    /// async executor for large batches.
    pub fn prepare(batch: Batch) -> PreparedBatch {
        let form = batch.form;
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
                PreparedRequest { key, steps }
            })
            .collect();
        PreparedBatch { form, requests }
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
    /// locks in the same order): its number, and its eval id when the request is new.
    pub requests: Vec<(i32, Option<&'a str>)>,
    /// Every step with its request number and sequence number, in batch order.
    pub steps: Vec<(i32, i64, &'a PreparedStep)>,
    pub requests_received: i64,
    pub steps_received: i64,
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
        let mut requests: std::collections::BTreeMap<i32, Option<&str>> =
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
            requests.entry(number).or_insert(external);
            for step in &r.steps {
                steps.push((number, seq, step));
                seq += 1;
            }
        }
        Ok(BatchPlan {
            requests: requests.into_iter().collect(),
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
