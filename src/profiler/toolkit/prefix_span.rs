//! PrefixSpan sub-workflow mining (docs/toolkit-semantics.md#prefixspan): frequent call sequences across requests,
//! enumerated exactly as the `prefixspan` 0.5.2 library does, then ranked by frequency, contiguous
//! coverage and average duration.
//!
//! Quirks kept: LLM tokens never carry prompt text (B7), frequency is gapped support while
//! coverage and duration count contiguous matches only (B9). One deliberate change (B10):
//! `min_support` below 1 is a fraction of the sequences, 1 or more an absolute count, whatever
//! its JSON type.

use crate::profiler::core::calltree::OpType;
use crate::profiler::core::config::PrefixSpanConfig;
use crate::profiler::core::frame::{Frame, time_order};
use crate::py::npstats;
use crate::py::repr::fixed;
use crate::trace::EventType;
use rustc_hash::FxHashMap;
use serde::Serialize;
use std::fmt::Write;

/// The library's `maxlen`.
const MAX_PATTERN_LEN: usize = 1000;

/// Stop enumerating past this many frequent patterns: adversarial inputs (long alternating
/// sequences) have exponentially many, and the reference would never finish on them either.
pub const MAX_PATTERNS: usize = 2_000_000;

/// Give up on the contiguous-occurrence scan once windows longer than 128 calls (summed afresh,
/// as numpy does) have cost this many additions: only long, highly repetitive requests get here,
/// and the reference would take hours on them.
pub const MAX_LONG_WINDOW_WORK: usize = 200_000_000;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FrequentPattern {
    pub pattern: Vec<String>,
    pub frequency: usize,
    pub coverage: f64,
    pub average_duration: f64,
    pub examples_containing: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PrefixSpanAnalysis {
    pub patterns: Vec<FrequentPattern>,
    /// Present (and true) only when enumeration hit [`MAX_PATTERNS`].
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    #[serde(skip)]
    pub textual_report: String,
}

/// One completed call of a request's sequence.
struct Call {
    token: u32,
    start: f64,
    duration: f64,
}

pub fn analyze(frame: &Frame, config: &PrefixSpanConfig) -> PrefixSpanAnalysis {
    analyze_within(frame, config, MAX_LONG_WINDOW_WORK)
}

/// [`analyze`] with the long-window budget as a parameter, so tests can reach it cheaply.
fn analyze_within(
    frame: &Frame,
    config: &PrefixSpanConfig,
    max_long_window_work: usize,
) -> PrefixSpanAnalysis {
    let mut vocab = Vocabulary::default();
    let sequences = call_sequences(frame, &mut vocab);
    let db: Vec<Vec<u32>> = sequences
        .iter()
        .map(|(_, c)| c.iter().map(|c| c.token).collect())
        .collect();
    let min_support = absolute_min_support(config.min_support.value, db.len());
    let mut miner = Miner {
        db: &db,
        min_support,
        out: Vec::new(),
        truncated: false,
    };
    miner.mine();
    let truncated = miner.truncated;
    let found = miner.out;
    let no_patterns = |report: &str| PrefixSpanAnalysis {
        patterns: Vec::new(),
        truncated,
        textual_report: report.to_owned(),
    };
    if found.is_empty() {
        return no_patterns("No frequent patterns found by PrefixSpan with the given min_support.");
    }
    let Some(occ) = occurrences(&found, &sequences, &db, max_long_window_work) else {
        return no_patterns(&format!(
            "PrefixSpan skipped: the contiguous occurrences of the {} frequent \
             patterns span more than {max_long_window_work} calls.",
            found.len()
        ));
    };
    let patterns = ranked(&found, occ, &vocab, config, db.len());
    if patterns.is_empty() {
        return no_patterns("No patterns passed coverage/duration thresholds.");
    }
    let textual_report = report(&patterns, db.len(), config);
    PrefixSpanAnalysis {
        patterns,
        truncated,
        textual_report,
    }
}

/// Each request's completed LLM and TOOL calls as tokens, in start order: `(example_number,
/// calls)` for every request with at least one row (none when the frame is not standardized).
fn call_sequences<'f>(frame: &'f Frame, vocab: &mut Vocabulary<'f>) -> Vec<(i64, Vec<Call>)> {
    let mut sequences = Vec::new();
    if !frame.is_standardized() {
        return sequences;
    }
    let mut order: Vec<usize> = Vec::new();
    for (req, rows) in frame.iter_requests() {
        if rows.is_empty() {
            continue;
        }
        time_order(rows, &mut order);
        let mut open: FxHashMap<&str, (u32, f64)> = FxHashMap::default();
        let mut calls = Vec::new();
        for &i in &order {
            let r = rows.get(i);
            // LLM_NEW_TOKEN rows are not part of a call's START/END pair here.
            if r.event_type() == EventType::LlmNewToken {
                continue;
            }
            let Some(op) = OpType::of(r.event_type()) else {
                continue;
            };
            let (op, name) = (op.as_str(), op.name_of(r));
            if matches!(r.event_type(), EventType::LlmStart | EventType::ToolStart) {
                // The END row's empty text always replaces the START's (B7), so the token
                // is the bare operation.
                open.insert(r.uuid(), (vocab.intern(op, name), r.event_timestamp()));
            } else if let Some((token, start)) = open.remove(r.uuid()) {
                calls.push(Call {
                    token,
                    start,
                    duration: (r.event_timestamp() - start).max(0.0),
                });
            }
        }
        calls.sort_by(|a, b| a.start.total_cmp(&b.start));
        sequences.push((req.number, calls));
    }
    sequences
}

/// Where a frequent pattern occurs contiguously.
#[derive(Default)]
struct Occurrences {
    examples: Vec<i64>,
    count: usize,
    total_duration: f64,
}

/// The contiguous occurrences of the found patterns, accumulated in the reference's order
/// (examples ascending, match starts ascending) so the float sums round the same way; `None` when
/// windows longer than the incremental sum would cost more than `max_long_window_work` additions.
///
/// A window that is not a frequent pattern has no frequent extension (support is anti-monotone),
/// so each scan from a start position walks the trie of found patterns and stops at the first
/// miss.
fn occurrences(
    found: &[(Vec<u32>, usize)],
    sequences: &[(i64, Vec<Call>)],
    db: &[Vec<u32>],
    max_long_window_work: usize,
) -> Option<Vec<Occurrences>> {
    let trie = PatternTrie::new(found);
    let mut occ: Vec<Occurrences> = found.iter().map(|_| Occurrences::default()).collect();
    let mut long_window_work = 0usize;
    for ((example, calls), tokens) in sequences.iter().zip(db) {
        let durations: Vec<f64> = calls.iter().map(|c| c.duration).collect();
        for start in 0..tokens.len() {
            let mut node = PatternTrie::ROOT;
            let mut window = WindowSum::new(&durations[start..]);
            for (len, token) in (1..).zip(&tokens[start..]) {
                let Some((next, i)) = trie.child(node, *token) else {
                    break;
                };
                node = next;
                if len > WindowSum::INCREMENTAL_MAX {
                    long_window_work += len;
                    if long_window_work > max_long_window_work {
                        return None;
                    }
                }
                let o = &mut occ[i];
                if o.examples.last() != Some(example) {
                    o.examples.push(*example);
                }
                o.count += 1;
                o.total_duration += window.extend();
            }
        }
    }
    Some(occ)
}

/// The patterns that pass `min_coverage`, best first (stable, descending by frequency, coverage
/// and average duration), at most `top_k` of them.
fn ranked(
    found: &[(Vec<u32>, usize)],
    occ: Vec<Occurrences>,
    vocab: &Vocabulary,
    config: &PrefixSpanConfig,
    total_examples: usize,
) -> Vec<FrequentPattern> {
    let mut patterns: Vec<FrequentPattern> = Vec::new();
    for ((pattern, frequency), o) in found.iter().zip(occ) {
        let coverage = if total_examples > 0 {
            o.examples.len() as f64 / total_examples as f64
        } else {
            0.0
        };
        if coverage < config.min_coverage.value {
            continue;
        }
        let average_duration = if o.count > 0 {
            o.total_duration / o.count as f64
        } else {
            0.0
        };
        patterns.push(FrequentPattern {
            pattern: pattern
                .iter()
                .map(|t| vocab.tokens[*t as usize].clone())
                .collect(),
            frequency: *frequency,
            coverage,
            average_duration,
            examples_containing: o.examples,
        });
    }
    patterns.sort_by(|a, b| {
        b.frequency
            .cmp(&a.frequency)
            .then(b.coverage.total_cmp(&a.coverage))
            .then(b.average_duration.total_cmp(&a.average_duration))
    });
    patterns.truncate(usize::try_from(config.top_k).unwrap_or(0));
    patterns
}

/// Tokens are `"OP:name"`, interned by their parts so that a known token costs no allocation.
#[derive(Default)]
struct Vocabulary<'f> {
    tokens: Vec<String>,
    ids: FxHashMap<(&'static str, &'f str), u32>,
}

impl<'f> Vocabulary<'f> {
    fn intern(&mut self, op: &'static str, name: &'f str) -> u32 {
        if let Some(&id) = self.ids.get(&(op, name)) {
            return id;
        }
        let id = self.tokens.len() as u32;
        self.ids.insert((op, name), id);
        self.tokens.push(format!("{op}:{name}"));
        id
    }
}

/// Support a pattern needs: `max(1, round(f * n))` for a fraction (Python rounds half to even),
/// the value itself otherwise.
fn absolute_min_support(min_support: f64, sequences: usize) -> f64 {
    if min_support < 1.0 {
        (min_support * sequences as f64).round_ties_even().max(1.0)
    } else {
        min_support
    }
}

/// The found patterns as a trie, so a scan extends a window by one token in O(1) instead of
/// hashing the whole window again.
struct PatternTrie {
    /// (node, token) -> (child node, index of the pattern the child spells).
    children: FxHashMap<(usize, u32), (usize, usize)>,
}

impl PatternTrie {
    const ROOT: usize = 0;

    /// Patterns come in depth-first order, so every pattern's prefix is already in the trie.
    fn new(found: &[(Vec<u32>, usize)]) -> PatternTrie {
        let mut children = FxHashMap::default();
        children.reserve(found.len());
        for (i, (pattern, _)) in found.iter().enumerate() {
            let Some((last, prefix)) = pattern.split_last() else {
                continue;
            };
            let parent = prefix.iter().try_fold(Self::ROOT, |node, t| {
                children.get(&(node, *t)).map(|(child, _)| *child)
            });
            if let Some(parent) = parent {
                children.insert((parent, *last), (i + 1, i));
            }
        }
        PatternTrie { children }
    }

    fn child(&self, node: usize, token: u32) -> Option<(usize, usize)> {
        self.children.get(&(node, token)).copied()
    }
}

/// `np.sum` of a growing window `values[..n]` for n = 1, 2, ...: numpy's 8-way accumulators are
/// carried along, so each step up to 128 values costs O(8) and rounds exactly as a fresh
/// `npstats::sum` would. Longer windows are summed afresh (numpy splits them recursively).
struct WindowSum<'a> {
    values: &'a [f64],
    n: usize,
    /// Left-to-right sum, numpy's path below eight values.
    running: f64,
    /// numpy's accumulators over the complete blocks of eight.
    blocks: [f64; 8],
}

impl<'a> WindowSum<'a> {
    const INCREMENTAL_MAX: usize = 128;

    fn new(values: &'a [f64]) -> WindowSum<'a> {
        WindowSum {
            values,
            n: 0,
            running: 0.0,
            blocks: [0.0; 8],
        }
    }

    /// Grows the window by one value and returns its sum.
    fn extend(&mut self) -> f64 {
        self.n += 1;
        let n = self.n;
        let v = &self.values[..n];
        if n < 8 {
            self.running += v[n - 1];
            return self.running;
        }
        if n > Self::INCREMENTAL_MAX {
            return npstats::sum(v);
        }
        if n == 8 {
            self.blocks.copy_from_slice(&v[..8]);
        } else if n.is_multiple_of(8) {
            for (r, x) in self.blocks.iter_mut().zip(&v[n - 8..]) {
                *r += x;
            }
        }
        let r = &self.blocks;
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for x in &v[n - n % 8..] {
            res += x;
        }
        res
    }
}

/// The `prefixspan` library's depth-first enumeration over interned tokens.
struct Miner<'a> {
    db: &'a [Vec<u32>],
    min_support: f64,
    out: Vec<(Vec<u32>, usize)>,
    truncated: bool,
}

impl Miner<'_> {
    fn mine(&mut self) {
        let matches: Vec<(usize, usize)> = (0..self.db.len()).map(|i| (i, 0)).collect();
        let mut pattern = Vec::new();
        self.rec(&mut pattern, &matches);
    }

    /// `matches` holds (sequence, next position to scan) for each sequence containing `pattern`.
    fn rec(&mut self, pattern: &mut Vec<u32>, matches: &[(usize, usize)]) {
        if !pattern.is_empty() {
            if self.out.len() >= MAX_PATTERNS {
                self.truncated = true;
                return;
            }
            self.out.push((pattern.clone(), matches.len()));
            if pattern.len() == MAX_PATTERN_LEN {
                return;
            }
        }
        // `nextentries`: for each item, the first position after the match in each sequence,
        // items ordered by first occurrence over the matches in order.
        // Keyed by the items met, not indexed by the vocabulary: a level costs what it scans, not
        // the vocabulary's size.
        let mut order: Vec<u32> = Vec::new();
        let mut next: FxHashMap<u32, Vec<(usize, usize)>> = FxHashMap::default();
        for &(seq, from) in matches {
            for (p, &item) in self.db[seq].iter().enumerate().skip(from) {
                let list = next.entry(item).or_default();
                if list.last().is_some_and(|(s, _)| *s == seq) {
                    continue;
                }
                if list.is_empty() {
                    order.push(item);
                }
                list.push((seq, p + 1));
            }
        }
        for item in order {
            let new_matches = next.remove(&item).unwrap_or_default();
            if (new_matches.len() as f64) < self.min_support {
                continue;
            }
            pattern.push(item);
            self.rec(pattern, &new_matches);
            pattern.pop();
            if self.truncated {
                return;
            }
        }
    }
}

fn report(
    patterns: &[FrequentPattern],
    total_examples: usize,
    config: &PrefixSpanConfig,
) -> String {
    let mut out = format!(
        "=== PrefixSpan Sub-Workflow Mining w/ LLM Text ===\nTotal examples: {total_examples}\n\
         min_support={}, top_k={}, min_coverage={}, max_text_len={}\nPatterns discovered: {}",
        config.min_support.python_repr(),
        config.top_k,
        config.min_coverage.python_repr(),
        config.max_text_len,
        patterns.len()
    );
    for (i, p) in patterns.iter().enumerate() {
        let examples: Vec<String> = p
            .examples_containing
            .iter()
            .map(|e| e.to_string())
            .collect();
        let _ = write!(
            out,
            "\n\n{}) Pattern: {}\n   Frequency: {}\n   Coverage: {}  (appears in {} examples)\n   \
             Avg Duration: {} seconds\n   Examples containing: [{}]",
            i + 1,
            p.pattern.join(" -> "),
            p.frequency,
            fixed(p.coverage, 2),
            p.examples_containing.len(),
            fixed(p.average_duration, 2),
            examples.join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiler::testutil::frame_of;

    fn mine(db: &[Vec<u32>], min_support: f64) -> Vec<(Vec<u32>, usize)> {
        let mut m = Miner {
            db,
            min_support,
            out: Vec::new(),
            truncated: false,
        };
        m.mine();
        m.out
    }

    #[test]
    fn enumeration_order_matches_library() {
        // prefixspan 0.5.2: PrefixSpan([[0,1,2],[1,0,2],[0,2]]).frequent(2) ->
        // [(3,[0]),(3,[0,2]),(2,[1]),(2,[1,2]),(3,[2])]
        let db = vec![vec![0, 1, 2], vec![1, 0, 2], vec![0, 2]];
        let got = mine(&db, 2.0);
        let want: Vec<(Vec<u32>, usize)> = vec![
            (vec![0], 3),
            (vec![0, 2], 3),
            (vec![1], 2),
            (vec![1, 2], 2),
            (vec![2], 3),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn window_sums_round_like_a_fresh_numpy_sum() {
        // Values of very different magnitudes, so any change in the order of additions shows.
        let values: Vec<f64> = (0..300)
            .map(|i| ((i * 7919) % 1000) as f64 * 10f64.powi(i % 9 - 4) / 3.0)
            .collect();
        for start in [0, 1, 5, 17] {
            let mut w = WindowSum::new(&values[start..]);
            for n in 1..=values.len() - start {
                assert_eq!(
                    w.extend().to_bits(),
                    npstats::sum(&values[start..start + n]).to_bits(),
                    "start {start}, n {n}"
                );
            }
        }
    }

    #[test]
    fn trie_finds_each_pattern_by_its_tokens() {
        let found = vec![(vec![0], 3), (vec![0, 2], 3), (vec![1], 2), (vec![1, 2], 2)];
        let trie = PatternTrie::new(&found);
        let (zero, i) = trie.child(PatternTrie::ROOT, 0).unwrap();
        assert_eq!(i, 0);
        assert_eq!(trie.child(zero, 2).map(|(_, i)| i), Some(1));
        assert_eq!(trie.child(zero, 1), None);
        let (one, _) = trie.child(PatternTrie::ROOT, 1).unwrap();
        assert_eq!(trie.child(one, 2).map(|(_, i)| i), Some(3));
        assert_eq!(trie.child(PatternTrie::ROOT, 2), None);
    }

    #[test]
    fn long_repetitive_requests_finish() {
        // Two requests of 1,200 calls to one model: every run of up to 1,000 calls is a frequent
        // pattern, and the long windows' sums overrun a (test-sized) budget.
        let mut rows = Vec::new();
        for i in 0..1200 {
            let uuid = format!("u{i}");
            rows.push(("LLM_START", i as f64, uuid.clone()));
            rows.push(("LLM_END", i as f64 + 0.5, uuid));
        }
        let req: Vec<(&str, f64, &str)> =
            rows.iter().map(|(e, t, u)| (*e, *t, u.as_str())).collect();
        let f = frame_of(&[req.clone(), req]);
        let a = analyze_within(&f, &PrefixSpanConfig::default(), 1_000_000);
        assert!(a.patterns.is_empty());
        assert!(
            a.textual_report.starts_with("PrefixSpan skipped"),
            "{}",
            a.textual_report
        );
    }

    #[test]
    fn fractional_support_rounds_half_to_even() {
        assert_eq!(absolute_min_support(0.5, 5), 2.0); // round(2.5) == 2
        assert_eq!(absolute_min_support(0.5, 7), 4.0); // round(3.5) == 4
        assert_eq!(absolute_min_support(0.01, 3), 1.0);
        assert_eq!(absolute_min_support(2.0, 3), 2.0);
    }

    #[test]
    fn frequency_is_gapped_coverage_contiguous() {
        // Both requests run LLM, TOOL, LLM: the pattern [LLM, LLM] has frequency 2 but never
        // occurs contiguously, so its coverage is 0 (B9).
        let req = vec![
            ("LLM_START", 0.0, "a"),
            ("LLM_END", 1.0, "a"),
            ("TOOL_START", 1.0, "t"),
            ("TOOL_END", 2.0, "t"),
            ("LLM_START", 2.0, "b"),
            ("LLM_END", 3.0, "b"),
        ];
        let f = frame_of(&[req.clone(), req]);
        let a = analyze(&f, &PrefixSpanConfig::default());
        let ll = a
            .patterns
            .iter()
            .find(|p| p.pattern == ["LLM:m", "LLM:m"])
            .expect("pattern found");
        assert_eq!((ll.frequency, ll.coverage), (2, 0.0));
        let first = &a.patterns[0];
        assert_eq!(first.frequency, 2);
        assert!(
            a.textual_report
                .contains("min_support=2, top_k=10, min_coverage=0, max_text_len=1000")
        );
    }
}
