//! Finding where each item of a top-level JSON list begins and ends, as the text streams in.
//!
//! `agentprof analyze` reads a large file by handing runs of the list's items to several threads
//! (see [`super::source::read_parallel`]) without ever holding the whole text. Only the
//! list's own punctuation is interpreted here: strings are skipped with `memchr`, nesting is
//! counted, and nothing is decoded. Every item's text is parsed in full by serde_json afterwards,
//! so an item this splitter accepts but that is not JSON is still refused there.

/// Where the splitter is in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the list's `[`.
    Start,
    /// Just after `[`: an item, or `]` for an empty list.
    First,
    /// After a `,`: an item.
    Next,
    /// Inside an item: its nesting depth, and whether inside a string (and just after a
    /// backslash in it, which may be the last byte of one piece of text).
    Item {
        depth: u32,
        string: bool,
        escaped: bool,
    },
    /// After an item: `,` or `]`.
    After,
    /// After the list's `]`: whitespace only.
    End,
}

/// The text is not one JSON list, as far as the splitter can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAList;

/// Splits a JSON list into its items' texts, fed one piece of text at a time.
#[derive(Debug)]
pub struct ListSplitter {
    state: State,
    /// The part of the current item read in earlier pieces.
    partial: Vec<u8>,
}

impl Default for ListSplitter {
    fn default() -> Self {
        ListSplitter {
            state: State::Start,
            partial: Vec::new(),
        }
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl ListSplitter {
    /// Reads the next piece of text, calling `item` with the text of every item it completes,
    /// in order. Refuses as soon as the text cannot be a list.
    pub fn feed(&mut self, text: &[u8], mut item: impl FnMut(&[u8])) -> Result<(), NotAList> {
        let mut i = 0;
        while i < text.len() {
            let outside_items = !matches!(self.state, State::Item { .. });
            let punctuation = match (self.state, text[i]) {
                (State::Start, b'[') => Some(State::First),
                (State::First | State::After, b']') => Some(State::End),
                (State::After, b',') => Some(State::Next),
                _ => None,
            };
            if outside_items && is_space(text[i]) {
                i += 1;
                continue;
            }
            if let Some(next) = punctuation {
                self.state = next;
                i += 1;
                continue;
            }
            match self.state {
                State::First | State::Next => {
                    self.state = State::Item {
                        depth: 0,
                        string: false,
                        escaped: false,
                    };
                }
                State::Item { .. } => {
                    let start = i;
                    match self.scan_item(text, &mut i) {
                        Some(end) => {
                            if self.partial.is_empty() {
                                item(&text[start..end]);
                            } else {
                                self.partial.extend_from_slice(&text[start..end]);
                                item(&self.partial);
                                self.partial.clear();
                            }
                        }
                        None => self.partial.extend_from_slice(&text[start..]),
                    }
                }
                State::Start | State::After | State::End => return Err(NotAList),
            }
        }
        Ok(())
    }

    /// Advances `i` through the current item; `Some(end)` when the item ends in this piece (at
    /// the `,` or `]` that follows it, which is left for the caller's state).
    fn scan_item(&mut self, text: &[u8], i: &mut usize) -> Option<usize> {
        let State::Item {
            mut depth,
            mut string,
            mut escaped,
        } = self.state
        else {
            return None;
        };
        let ended = loop {
            if *i >= text.len() {
                break None;
            }
            if escaped {
                escaped = false;
                *i += 1;
                continue;
            }
            if string {
                match memchr::memchr2(b'"', b'\\', &text[*i..]) {
                    None => *i = text.len(),
                    Some(at) => {
                        *i += at + 1;
                        if text[*i - 1] == b'"' {
                            string = false;
                        } else {
                            escaped = true;
                        }
                    }
                }
                continue;
            }
            match text[*i] {
                b'"' => string = true,
                b'[' | b'{' => depth += 1,
                b']' | b'}' if depth > 0 => depth -= 1,
                b',' | b']' if depth == 0 => break Some(*i),
                _ => {}
            }
            *i += 1;
        };
        self.state = match ended {
            Some(_) => State::After,
            None => State::Item {
                depth,
                string,
                escaped,
            },
        };
        ended
    }

    /// Says whether the text read was one whole list.
    pub fn finish(&self) -> Result<(), NotAList> {
        match self.state {
            State::End => Ok(()),
            _ => Err(NotAList),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The items' texts, fed in pieces of `piece` bytes.
    fn split(text: &str, piece: usize) -> Result<Vec<String>, NotAList> {
        let mut s = ListSplitter::default();
        let mut items = Vec::new();
        for chunk in text.as_bytes().chunks(piece) {
            s.feed(chunk, |t| {
                items.push(String::from_utf8(t.to_vec()).expect("utf-8 is cut at items only"))
            })?;
        }
        s.finish()?;
        Ok(items)
    }

    #[test]
    fn items_are_those_serde_json_reads_whatever_the_pieces() {
        let text = r#" [ {"a": [1, {"b": "x,]}\"\\"}], "c": "é"} , [[], {}] ,"s\"]" , 12.5e3, null,true
          , {"k": "\\"} ] "#;
        let expected: Vec<Value> = serde_json::from_str(text).unwrap();
        for piece in [1, 2, 3, 7, 64, text.len()] {
            let items = split(text, piece).unwrap();
            let parsed: Vec<Value> = items
                .iter()
                .map(|t| serde_json::from_str(t).unwrap())
                .collect();
            assert_eq!(parsed, expected, "pieces of {piece}");
        }
        assert_eq!(split("[]", 1).unwrap(), Vec::<String>::new());
        assert_eq!(split(" [\n] \n", 1).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn what_is_not_a_list_is_refused() {
        for text in [
            "",
            "{\"eval_input_items\": []}",
            "[1, 2",
            "[1, 2] x",
            "[1] [2]",
            "\"[1]\"",
            "[\"open]",
        ] {
            assert_eq!(split(text, 3), Err(NotAList), "{text:?}");
        }
    }

    #[test]
    fn malformed_items_are_left_to_the_parser() {
        // The splitter cuts at the list's commas; each cut is then parsed and refused there.
        for text in ["[1 2]", "[,1]", "[1,,2]", "[1,]", "[}]"] {
            let items = split(text, 2).unwrap_or_default();
            let all_parse = !items.is_empty()
                && items
                    .iter()
                    .all(|t| serde_json::from_str::<Value>(t).is_ok());
            assert!(!all_parse, "{text:?} split into {items:?}");
        }
    }
}
