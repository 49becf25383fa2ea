//! PrefixSpan sub-workflow mining (REFERENCE.md §4.12): frequent call sequences across requests,
//! enumerated exactly as the `prefixspan` 0.5.2 library does, then ranked by frequency, contiguous
//! coverage and average duration.
//!
//! Quirks kept: LLM tokens never carry prompt text (B7), frequency is gapped support while
//! coverage and duration count contiguous matches only (B9). One deliberate change (B10):
//! `min_support` below 1 is a fraction of the sequences, 1 or more an absolute count, whatever
//! its JSON type.

use super::config::PrefixSpanConfig;
use super::frame::Frame;
use super::npstats;
use super::pyfmt::fixed;
use crate::trace::EventType;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write;

/// The library's `maxlen`.
const MAX_PATTERN_LEN: usize = 1000;

/// Stop enumerating past this many frequent patterns: adversarial inputs (long alternating
/// sequences) have exponentially many, and the reference would never finish on them either.
pub const MAX_PATTERNS: usize = 2_000_000;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrequentPattern {
    pub pattern: Vec<String>,
    pub frequency: usize,
    pub coverage: f64,
    pub average_duration: f64,
    pub examples_containing: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
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
    let mut vocab: Vec<String> = Vec::new();
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut intern = |t: String| -> u32 {
        if let Some(&id) = ids.get(&t) {
            return id;
        }
        let id = vocab.len() as u32;
        ids.insert(t.clone(), id);
        vocab.push(t);
        id
    };
    // (example_number, calls) for every request with at least one row.
    let mut sequences: Vec<(i64, Vec<Call>)> = Vec::new();
    if frame.is_standardized() {
        for (req, rows) in frame.iter_requests() {
            if rows.is_empty() {
                continue;
            }
            let mut order: Vec<usize> = (0..rows.len()).collect();
            order.sort_by(|a, b| {
                rows[*a]
                    .event_timestamp
                    .total_cmp(&rows[*b].event_timestamp)
            });
            let mut open: HashMap<&str, (u32, f64)> = HashMap::new();
            let mut calls = Vec::new();
            for i in order {
                let r = &rows[i];
                let (op, name) = match r.event_type {
                    EventType::LlmStart | EventType::LlmEnd => (
                        "LLM",
                        if r.llm_name.is_empty() {
                            "unknown_llm"
                        } else {
                            &r.llm_name
                        },
                    ),
                    EventType::ToolStart | EventType::ToolEnd => (
                        "TOOL",
                        if r.tool_name.is_empty() {
                            "unknown_tool"
                        } else {
                            &r.tool_name
                        },
                    ),
                    _ => continue,
                };
                if matches!(r.event_type, EventType::LlmStart | EventType::ToolStart) {
                    // The END row's empty text always replaces the START's (B7), so the token
                    // is the bare operation.
                    open.insert(&r.uuid, (intern(format!("{op}:{name}")), r.event_timestamp));
                } else if let Some((token, start)) = open.remove(r.uuid.as_str()) {
                    calls.push(Call {
                        token,
                        start,
                        duration: (r.event_timestamp - start).max(0.0),
                    });
                }
            }
            calls.sort_by(|a, b| a.start.total_cmp(&b.start));
            sequences.push((req.number, calls));
        }
    }
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
        vocab_size: vocab.len(),
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

    // Contiguous occurrences of the found patterns, accumulated in the reference's order
    // (examples ascending, match starts ascending) so the float sums round the same way. A window
    // that is not a frequent pattern has no frequent extension (support is anti-monotone), so
    // each scan from a start position stops at the first miss.
    #[derive(Default)]
    struct Occurrences {
        examples: Vec<i64>,
        count: usize,
        total_duration: f64,
    }
    let index: HashMap<&[u32], usize> = found
        .iter()
        .enumerate()
        .map(|(i, (p, _))| (p.as_slice(), i))
        .collect();
    let mut occ: Vec<Occurrences> = found.iter().map(|_| Occurrences::default()).collect();
    let mut durations: Vec<f64> = Vec::new();
    for ((example, calls), tokens) in sequences.iter().zip(&db) {
        for start in 0..tokens.len() {
            for end in start + 1..=tokens.len() {
                let Some(&i) = index.get(&tokens[start..end]) else {
                    break;
                };
                durations.clear();
                durations.extend(calls[start..end].iter().map(|c| c.duration));
                let o = &mut occ[i];
                if o.examples.last() != Some(example) {
                    o.examples.push(*example);
                }
                o.count += 1;
                o.total_duration += npstats::sum(&durations);
            }
        }
    }
    let total_examples = db.len();
    let min_coverage = config.min_coverage.value;
    let mut patterns: Vec<FrequentPattern> = Vec::new();
    for ((pattern, frequency), o) in found.iter().zip(occ) {
        let coverage = if total_examples > 0 {
            o.examples.len() as f64 / total_examples as f64
        } else {
            0.0
        };
        if coverage < min_coverage {
            continue;
        }
        let average_duration = if o.count > 0 {
            o.total_duration / o.count as f64
        } else {
            0.0
        };
        patterns.push(FrequentPattern {
            pattern: pattern.iter().map(|t| vocab[*t as usize].clone()).collect(),
            frequency: *frequency,
            coverage,
            average_duration,
            examples_containing: o.examples,
        });
    }
    // Stable, descending by (frequency, coverage, average_duration).
    patterns.sort_by(|a, b| {
        b.frequency
            .cmp(&a.frequency)
            .then(b.coverage.total_cmp(&a.coverage))
            .then(b.average_duration.total_cmp(&a.average_duration))
    });
    patterns.truncate(usize::try_from(config.top_k).unwrap_or(0));
    if patterns.is_empty() {
        return no_patterns("No patterns passed coverage/duration thresholds.");
    }
    let textual_report = report(&patterns, total_examples, config);
    PrefixSpanAnalysis {
        patterns,
        truncated,
        textual_report,
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

/// The `prefixspan` library's depth-first enumeration over interned tokens.
struct Miner<'a> {
    db: &'a [Vec<u32>],
    min_support: f64,
    out: Vec<(Vec<u32>, usize)>,
    truncated: bool,
    vocab_size: usize,
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
        let mut order: Vec<u32> = Vec::new();
        let mut next: Vec<Vec<(usize, usize)>> = vec![Vec::new(); self.vocab_size];
        for &(seq, from) in matches {
            for (p, &item) in self.db[seq].iter().enumerate().skip(from) {
                let list = &mut next[item as usize];
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
            let new_matches = std::mem::take(&mut next[item as usize]);
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
        let vocab_size = db.iter().flatten().max().map_or(0, |m| *m as usize + 1);
        let mut m = Miner {
            db,
            min_support,
            out: Vec::new(),
            truncated: false,
            vocab_size,
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
