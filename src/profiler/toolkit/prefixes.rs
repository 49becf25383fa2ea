//! Common prompt prefixes per model (docs/toolkit-semantics.md#common-prompt-prefixes), quirks included:
//! the denominator counts LLM_END rows too (B3), non-LLM rows form the `""` group, and a prefix
//! is dropped when it is a *substring* of a kept one (B4).
//!
//! The reference materialises a character trie of every prompt and lists every node. We only
//! visit the nodes that can pass the `min_frequency` threshold (a node's count never exceeds its
//! parent's, so those nodes form a subtree), walking a sorted copy of the prompts: a node is a
//! range of sorted prompts, and a chain of single-child nodes costs O(1) per character. The
//! visiting order replays the reference's stack walk (children in insertion order, popped last
//! first), because ties in the final sort keep that order.

use crate::profiler::core::frame::Frame;
use serde::Serialize;
use std::borrow::Cow;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PrefixInfo {
    pub prefix: String,
    pub prefix_length: usize,
    pub calls_count: usize,
    pub calls_percentage: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PrefixGroup {
    pub total_calls: usize,
    pub prefix_info: Vec<PrefixInfo>,
}

/// Keyed by `llm_name` in sorted order (pandas' groupby order).
pub type CommonPrefixes = BTreeMap<String, PrefixGroup>;

pub fn compute(frame: &Frame, min_frequency: f64) -> CommonPrefixes {
    let mut groups: BTreeMap<&str, Vec<Cow<'_, str>>> = BTreeMap::new();
    if !frame.is_standardized() {
        return CommonPrefixes::new();
    }
    for row in frame.rows().iter() {
        groups
            .entry(row.llm_name())
            .or_default()
            .push(row.text_input_as_str());
    }
    groups
        .into_iter()
        .map(|(name, texts)| {
            let texts: Vec<&str> = texts.iter().map(AsRef::as_ref).collect();
            let group = PrefixGroup {
                total_calls: texts.len(),
                prefix_info: common_prefixes(&texts, min_frequency),
            };
            (name.to_owned(), group)
        })
        .collect()
}

/// A trie node that passed the threshold: the prefix is `texts[text][..bytes]`.
struct Candidate {
    text: usize,
    bytes: usize,
    chars: usize,
    count: usize,
}

/// The reference's per-group computation: every prefix shared by at least `min_frequency` of the
/// texts, longest first, minus those contained in a longer one already kept.
pub fn common_prefixes(texts: &[&str], min_frequency: f64) -> Vec<PrefixInfo> {
    let total = texts.len();
    let Some(min_count) = min_count(total, min_frequency) else {
        return Vec::new();
    };
    let candidates = heavy_nodes(texts, min_count);
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    // Stable: ties keep the walk order.
    order.sort_by(|a, b| {
        let (a, b) = (&candidates[*a], &candidates[*b]);
        (b.chars, b.count).cmp(&(a.chars, a.count))
    });
    let mut kept: Vec<&Candidate> = Vec::new();
    for i in order {
        let c = &candidates[i];
        let prefix = &texts[c.text][..c.bytes];
        let contained = kept
            .iter()
            .any(|k| texts[k.text][..k.bytes].contains(prefix));
        if !contained {
            kept.push(c);
        }
    }
    kept.into_iter()
        .map(|c| PrefixInfo {
            prefix: texts[c.text][..c.bytes].to_owned(),
            prefix_length: c.chars,
            calls_count: c.count,
            calls_percentage: c.count as f64 / total as f64,
        })
        .collect()
}

/// The smallest count `c` with `c / total >= min_frequency` in floating point, if any.
fn min_count(total: usize, min_frequency: f64) -> Option<usize> {
    if total == 0 {
        return None;
    }
    let passes = |c: usize| c as f64 / total as f64 >= min_frequency;
    let guess = (min_frequency * total as f64).ceil();
    let mut c = if guess.is_nan() || guess < 1.0 {
        1
    } else if guess > total as f64 {
        total
    } else {
        guess as usize
    };
    while c > 1 && passes(c - 1) {
        c -= 1;
    }
    while c <= total && !passes(c) {
        c += 1;
    }
    (c <= total).then_some(c)
}

/// A trie node as a range of the sorted texts that share its prefix.
struct Node {
    lo: usize,
    hi: usize,
    bytes: usize,
    chars: usize,
}

/// Visits, in the reference's stack order, every non-root trie node whose count is at least
/// `min_count`.
fn heavy_nodes(texts: &[&str], min_count: usize) -> Vec<Candidate> {
    // Byte order of UTF-8 is code point order, and ties keep input order, so equal prefixes
    // group into contiguous ranges.
    let mut sorted: Vec<usize> = (0..texts.len()).collect();
    sorted.sort_by(|a, b| texts[*a].as_bytes().cmp(texts[*b].as_bytes()));
    let text = |i: usize| texts[sorted[i]];

    let mut out = Vec::new();
    let mut stack = vec![Node {
        lo: 0,
        hi: sorted.len(),
        bytes: 0,
        chars: 0,
    }];
    let mut children: Vec<(usize, Node)> = Vec::new();
    while let Some(node) = stack.pop() {
        if node.bytes > 0 {
            out.push(Candidate {
                text: sorted[node.lo],
                bytes: node.bytes,
                chars: node.chars,
                count: node.hi - node.lo,
            });
        }
        // Texts that end at this node sort first in its range; the rest continue.
        let mut lo = node.lo;
        while lo < node.hi && text(lo).len() == node.bytes {
            lo += 1;
        }
        if node.hi - lo < min_count {
            continue;
        }
        let next_char = |i: usize| text(i)[node.bytes..].chars().next().unwrap_or('\0');
        let first = next_char(lo);
        if next_char(node.hi - 1) == first {
            // One child: no order to decide, no scan needed.
            stack.push(Node {
                lo,
                hi: node.hi,
                bytes: node.bytes + first.len_utf8(),
                chars: node.chars + 1,
            });
            continue;
        }
        children.clear();
        let mut start = lo;
        while start < node.hi {
            let c = next_char(start);
            let mut end = start + 1;
            let mut first_seen = sorted[start];
            while end < node.hi && next_char(end) == c {
                first_seen = first_seen.min(sorted[end]);
                end += 1;
            }
            if end - start >= min_count {
                children.push((
                    first_seen,
                    Node {
                        lo: start,
                        hi: end,
                        bytes: node.bytes + c.len_utf8(),
                        chars: node.chars + 1,
                    },
                ));
            }
            start = end;
        }
        // Children were inserted in the order the texts first reached them; pushing them in
        // that order makes the last-inserted one pop first, as in the reference.
        children.sort_by_key(|(first_seen, _)| *first_seen);
        stack.extend(children.drain(..).map(|(_, n)| n));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference algorithm, transcribed literally: a full trie of every prefix.
    fn brute_force(texts: &[&str], min_frequency: f64) -> Vec<PrefixInfo> {
        struct TrieNode {
            count: usize,
            children: Vec<(char, usize)>,
        }
        let mut nodes = vec![TrieNode {
            count: 0,
            children: vec![],
        }];
        for t in texts {
            let mut cur = 0;
            nodes[cur].count += 1;
            for ch in t.chars() {
                let next = match nodes[cur].children.iter().find(|(c, _)| *c == ch) {
                    Some((_, n)) => *n,
                    None => {
                        nodes.push(TrieNode {
                            count: 0,
                            children: vec![],
                        });
                        let n = nodes.len() - 1;
                        nodes[cur].children.push((ch, n));
                        n
                    }
                };
                cur = next;
                nodes[cur].count += 1;
            }
        }
        let total = texts.len();
        let mut results = Vec::new();
        let mut stack = vec![(0usize, String::new())];
        while let Some((n, prefix)) = stack.pop() {
            if !prefix.is_empty() {
                results.push(PrefixInfo {
                    prefix: prefix.clone(),
                    prefix_length: prefix.chars().count(),
                    calls_count: nodes[n].count,
                    calls_percentage: nodes[n].count as f64 / total as f64,
                });
            }
            for (ch, child) in &nodes[n].children {
                let mut p = prefix.clone();
                p.push(*ch);
                stack.push((*child, p));
            }
        }
        let mut filtered: Vec<PrefixInfo> = results
            .into_iter()
            .filter(|r| r.calls_percentage >= min_frequency)
            .collect();
        filtered.sort_by(|a, b| {
            (b.prefix_length, b.calls_count).cmp(&(a.prefix_length, a.calls_count))
        });
        let mut kept: Vec<PrefixInfo> = Vec::new();
        for r in filtered {
            if !kept.iter().any(|k| k.prefix.contains(&r.prefix)) {
                kept.push(r);
            }
        }
        kept
    }

    #[test]
    fn denominator_counts_end_rows() {
        // Two prompts and two LLM_END rows ("") -> a prefix shared by both prompts is at 0.5.
        let texts = ["Hello world", "", "Hello there", ""];
        let got = common_prefixes(&texts, 0.5);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].prefix, "Hello ");
        assert_eq!(got[0].calls_percentage, 0.5);
    }

    #[test]
    fn substring_dedup_not_prefix_dedup() {
        // "b" is not a prefix of "ab" but is a substring of it, so it is dropped (B4).
        let texts = ["ab", "ab", "b", "b"];
        let got = common_prefixes(&texts, 0.5);
        let prefixes: Vec<&str> = got.iter().map(|p| p.prefix.as_str()).collect();
        assert_eq!(prefixes, ["ab"]);
        assert_eq!(got, brute_force(&texts, 0.5));
    }

    #[test]
    fn ties_keep_walk_order() {
        let texts = ["xa", "ya", "za"];
        assert_eq!(common_prefixes(&texts, 0.0), brute_force(&texts, 0.0));
    }

    #[test]
    fn min_count_matches_float_comparison() {
        assert_eq!(min_count(26, 0.5), Some(13));
        assert_eq!(min_count(3, 0.5), Some(2));
        assert_eq!(min_count(10, 0.0), Some(1));
        assert_eq!(min_count(10, 1.5), None);
        assert_eq!(min_count(0, 0.5), None);
        for total in 1..200 {
            for f in [0.1, 0.3, 1.0 / 3.0, 0.7, 0.99] {
                let c = min_count(total, f).unwrap();
                assert!(c as f64 / total as f64 >= f);
                assert!(c == 1 || ((c - 1) as f64 / total as f64) < f);
            }
        }
    }

    proptest! {
        #[test]
        fn equals_literal_trie(
            texts in proptest::collection::vec("[ab\u{e9}c]{0,6}", 0..12),
            min_frequency in prop_oneof![Just(0.0), Just(0.25), Just(0.5), 0.0f64..1.0],
        ) {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            prop_assert_eq!(common_prefixes(&refs, min_frequency), brute_force(&refs, min_frequency));
        }
    }

    #[test]
    fn frame_groups_include_non_llm_rows() {
        use crate::profiler::testutil::frame_of;
        let f = frame_of(&[vec![("TOOL_START", 1.0, "t"), ("TOOL_END", 2.0, "t")]]);
        let out = compute(&f, 0.5);
        assert_eq!(out.keys().collect::<Vec<_>>(), [""]);
        assert_eq!(out[""].total_calls, 2);
        assert!(out[""].prefix_info.is_empty());
    }
}
