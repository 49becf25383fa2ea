//! Inter-query token uniqueness (docs/toolkit-semantics.md#token-uniqueness): how many new words each LLM prompt adds over
//! the previous prompt to the same model in the same request, as p90/p95/p99 per model.

use crate::profiler::core::frame::Frame;
use crate::py::percentile::p90_p95_p99;
use crate::py::repr::is_word_char;
use crate::trace::EventType;
use rustc_hash::FxHashSet;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Percentiles {
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
}

impl Percentiles {
    pub const ZERO: Percentiles = Percentiles {
        p90: 0.0,
        p95: 0.0,
        p99: 0.0,
    };

    pub fn of(data: &[f64]) -> Option<Percentiles> {
        p90_p95_p99(data).map(|[p90, p95, p99]| Percentiles { p90, p95, p99 })
    }
}

/// Keyed by `llm_name`, sorted; a model with no consecutive prompts is absent.
pub type TokenUniqueness = BTreeMap<String, Percentiles>;

pub fn compute(frame: &Frame) -> TokenUniqueness {
    if !frame.is_standardized() {
        return TokenUniqueness::new();
    }
    // Group LLM_START rows by (llm_name, example_number), in sorted group order.
    let mut groups: BTreeMap<(&str, i64), Vec<usize>> = BTreeMap::new();
    for (i, row) in frame.rows().iter().enumerate() {
        if row.event_type() == EventType::LlmStart {
            groups
                .entry((row.llm_name(), row.example_number()))
                .or_default()
                .push(i);
        }
    }
    let mut counts: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut lowered: Vec<Option<String>> = Vec::new();
    for ((llm, _), mut idx) in groups {
        // Stable by timestamp (docs/deviations.md#d5).
        idx.sort_by(|a, b| {
            frame
                .row(*a)
                .event_timestamp()
                .total_cmp(&frame.row(*b).event_timestamp())
        });
        // Each prompt is lowercased and split once; its word set serves as "current" for one
        // pair and "previous" for the next.
        lowered.clear();
        lowered.extend(
            idx.iter()
                .map(|i| frame.row(*i).llm_text_input().map(|t| t.to_lowercase())),
        );
        let sets: Vec<Option<FxHashSet<&str>>> = lowered
            .iter()
            .map(|t| t.as_deref().map(word_slices))
            .collect();
        let mut new_words = Vec::new();
        for pair in sets.windows(2) {
            // A null previous input drops the row (pandas' dropna on the shifted column).
            let Some(prev) = &pair[0] else { continue };
            let fresh = pair[1]
                .as_ref()
                .map_or(0, |cur| cur.iter().filter(|w| !prev.contains(*w)).count());
            new_words.push(fresh as f64);
        }
        if !new_words.is_empty() {
            counts.entry(llm).or_default().extend(new_words);
        }
    }
    counts
        .into_iter()
        .filter_map(|(llm, c)| Percentiles::of(&c).map(|p| (llm.to_owned(), p)))
        .collect()
}

/// The distinct `\w+` runs of an already lowercased text, borrowed from it.
fn word_slices(lower: &str) -> FxHashSet<&str> {
    lower
        .split(|c: char| !is_word_char(c))
        .filter(|w| !w.is_empty())
        .collect()
}

/// `set(re.findall(r"\w+", text.lower()))` with Python's Unicode `\w`.
pub fn words(text: &str) -> HashSet<String> {
    word_slices(&text.to_lowercase())
        .into_iter()
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_lowercased_unicode_runs() {
        let w = words("Hello, HELLO wörld_2 -- x");
        let mut v: Vec<&str> = w.iter().map(String::as_str).collect();
        v.sort();
        assert_eq!(v, ["hello", "wörld_2", "x"]);
        // Python: 'İ'.lower() is 'i' + U+0307 (a mark, not \w), which splits the word.
        let w = words("İx");
        assert!(w.contains("i") && w.contains("x"), "{w:?}");
    }
}
