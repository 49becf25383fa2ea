//! The frame's text columns: interned strings (UUIDs, names, parent ids) and the steps' texts.
//!
//! A row of the old frame held five `String`s of its own; most of them repeat. A step's UUID
//! appears on its START and END, a parent id is another step's UUID, and a run has a handful of
//! model and tool names. So each distinct string is kept once in an arena and a row holds its
//! 4-byte id. The texts (prompts above all) are most of a run's bytes and rarely repeat whole,
//! but an agent's prompts share long prefixes (the system prompt, then a scratchpad that only
//! grows), so a text that shares at least half of itself with the last whole text of its model
//! is kept as that prefix's length and its own tail. BENCHMARKS.md#a-smaller-frame has what
//! each saves.

use hashbrown::HashTable;
use std::borrow::Cow;
use std::hash::BuildHasher;

/// The id of the empty string in every [`Strings`] (so that a default column value is "").
pub(super) const EMPTY: u32 = 0;
/// "No value" in an id column.
pub(super) const NONE: u32 = u32::MAX;

/// Distinct strings, each kept once, addressed by id.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Strings {
    arena: String,
    /// Where each string ends in `arena`; string `i` starts where `i - 1` ends.
    ends: Vec<usize>,
}

impl Default for Strings {
    fn default() -> Strings {
        Strings {
            arena: String::new(),
            ends: vec![0],
        }
    }
}

impl Strings {
    pub(super) fn get(&self, id: u32) -> &str {
        let i = id as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.arena[start..self.ends[i]]
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.arena.capacity() + self.ends.capacity() * std::mem::size_of::<usize>()
    }

    fn shrink(&mut self) {
        self.arena.shrink_to_fit();
        self.ends.shrink_to_fit();
    }
}

/// Builds [`Strings`], finding an already kept string by its hash; the index is dropped with the
/// builder, so a finished frame does not pay for it.
#[derive(Default)]
pub(super) struct Interner {
    strings: Strings,
    index: HashTable<u32>,
    hasher: rustc_hash::FxBuildHasher,
}

impl Interner {
    pub(super) fn intern(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            return EMPTY;
        }
        let hash = self.hasher.hash_one(s);
        let Interner {
            strings,
            index,
            hasher,
        } = self;
        if let Some(&id) = index.find(hash, |&id| strings.get(id) == s) {
            return id;
        }
        let id = u32::try_from(strings.ends.len()).expect("fewer than 2^32 distinct strings");
        strings.arena.push_str(s);
        strings.ends.push(strings.arena.len());
        index.insert_unique(hash, id, |&id| hasher.hash_one(strings.get(id)));
        id
    }

    pub(super) fn finish(mut self) -> Strings {
        self.strings.shrink();
        self.strings
    }
}

/// A text is kept whole, or as a prefix of an anchor (a text kept whole) and a tail.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Text {
    /// Where the whole text, or the tail, is in the arena.
    start: usize,
    end: usize,
    /// The anchor whose first `prefix` bytes come first; [`NONE`] for a whole text.
    anchor: u32,
    prefix: u32,
}

/// The steps' texts, addressed by id.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Texts {
    arena: String,
    texts: Vec<Text>,
}

impl Texts {
    pub(super) fn get(&self, id: u32) -> Cow<'_, str> {
        let t = self.texts[id as usize];
        let tail = &self.arena[t.start..t.end];
        if t.anchor == NONE {
            return Cow::Borrowed(tail);
        }
        let a = self.texts[t.anchor as usize];
        let head = &self.arena[a.start..a.start + t.prefix as usize];
        let mut whole = String::with_capacity(head.len() + tail.len());
        whole.push_str(head);
        whole.push_str(tail);
        Cow::Owned(whole)
    }

    /// The length of text `id` in bytes, without assembling it.
    pub(super) fn len(&self, id: u32) -> usize {
        let t = self.texts[id as usize];
        t.prefix as usize + (t.end - t.start)
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.arena.capacity() + self.texts.capacity() * std::mem::size_of::<Text>()
    }
}

/// Shorter texts are kept whole: sharing a prefix would save little and they would make poor
/// anchors.
const MIN_SHARED: usize = 64;

/// Builds [`Texts`], keeping the last whole text per key (a model and a column) as the anchor
/// the next text of that key may share a prefix with.
#[derive(Default)]
pub(super) struct TextsBuilder {
    texts: Texts,
    anchors: rustc_hash::FxHashMap<(u32, u8), u32>,
}

impl TextsBuilder {
    pub(super) fn push(&mut self, key: (u32, u8), text: &str) -> u32 {
        let id = u32::try_from(self.texts.texts.len()).expect("fewer than 2^32 texts");
        let start = self.texts.arena.len();
        let shared = self
            .anchors
            .get(&key)
            .map(|&a| (a, self.shared_prefix(a, text)));
        let entry = match shared {
            Some((anchor, prefix)) if prefix >= MIN_SHARED && prefix * 2 >= text.len() => {
                match u32::try_from(prefix) {
                    Ok(prefix) => {
                        self.texts.arena.push_str(&text[prefix as usize..]);
                        Some(Text {
                            start,
                            end: self.texts.arena.len(),
                            anchor,
                            prefix,
                        })
                    }
                    Err(_) => None,
                }
            }
            _ => None,
        };
        let entry = entry.unwrap_or_else(|| {
            self.texts.arena.push_str(text);
            if text.len() >= MIN_SHARED {
                self.anchors.insert(key, id);
            }
            Text {
                start,
                end: self.texts.arena.len(),
                anchor: NONE,
                prefix: 0,
            }
        });
        self.texts.texts.push(entry);
        id
    }

    /// The bytes `text` shares at its start with the whole text `anchor`, ending on a character
    /// boundary of both.
    fn shared_prefix(&self, anchor: u32, text: &str) -> usize {
        let a = self.texts.texts[anchor as usize];
        let whole = &self.texts.arena[a.start..a.end];
        let mut n = whole
            .as_bytes()
            .iter()
            .zip(text.as_bytes())
            .take_while(|(x, y)| x == y)
            .count();
        while !text.is_char_boundary(n) {
            n -= 1;
        }
        n
    }

    pub(super) fn finish(mut self) -> Texts {
        self.texts.arena.shrink_to_fit();
        self.texts.texts.shrink_to_fit();
        self.texts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interned_strings_are_kept_once() {
        let mut i = Interner::default();
        let a = i.intern("alpha");
        let b = i.intern("beta");
        assert_eq!(i.intern("alpha"), a);
        assert_eq!(i.intern(""), EMPTY);
        assert_ne!(a, b);
        let s = i.finish();
        assert_eq!((s.get(a), s.get(b), s.get(EMPTY)), ("alpha", "beta", ""));
    }

    #[test]
    fn texts_share_prefixes_with_their_anchor_and_read_back_whole() {
        let system = "You are a helpful agent. ".repeat(8);
        let mut b = TextsBuilder::default();
        let key = (1, 0);
        let inputs = [
            format!("{system}Question: one"),
            format!("{system}Question: one\nThought: search"),
            format!("{system}Question: two"),
            "short".to_owned(),
            "entirely different text that is long enough to be an anchor of its own, surely"
                .to_owned(),
            format!("{system}Question: é"),
            // Shares the first byte of "é" with the anchor above: the prefix stops before it.
            format!("{system}Question: è"),
        ];
        let ids: Vec<u32> = inputs.iter().map(|t| b.push(key, t)).collect();
        let other = b.push((2, 0), &inputs[1]);
        let texts = b.finish();
        for (id, text) in ids.iter().zip(&inputs) {
            assert_eq!(texts.get(*id), text.as_str());
            assert_eq!(texts.len(*id), text.len());
        }
        assert_eq!(texts.get(other), inputs[1].as_str());
        assert!(matches!(texts.get(ids[0]), Cow::Borrowed(_)));
        assert!(
            matches!(texts.get(ids[1]), Cow::Owned(_)),
            "shares the anchor's prefix"
        );
        assert!(
            matches!(texts.get(other), Cow::Borrowed(_)),
            "anchors are per key"
        );
        // After the unrelated anchor, the last one shares nothing and is kept whole.
        assert!(matches!(texts.get(ids[5]), Cow::Borrowed(_)));
        assert!(matches!(texts.get(ids[6]), Cow::Owned(_)));
        // Kept whole: the first anchor, the short text, the unrelated anchor, the text after it
        // and the other key's; the rest as their tails only.
        let whole: usize = [0, 3, 4, 5, 1].iter().map(|i| inputs[*i].len()).sum();
        let tails = "\nThought: search".len() + "two".len() + "è".len();
        assert_eq!(texts.arena.len(), whole + tails);
    }
}
