//! `ast.literal_eval` for the literals a tool's input text can hold: dicts, lists, tuples,
//! strings (with their prefixes, escapes and implicit concatenation), numbers, `True`, `False`
//! and `None`, read into JSON values. nat 1.9's ATIF converter falls back to it when a tool's
//! input is a string that is not JSON, which is how Python's `str()` of a dict looks.
//!
//! What `literal_eval` accepts beyond that (sets, bytes, complex numbers) is read as "not a
//! literal", so such an input is kept as text, as it is for anything else that fails to parse.

use serde_json::{Map, Number, Value};

/// The value of `text` as a Python literal, or `None` when it is not one we read.
pub fn literal_eval(text: &str) -> Option<Value> {
    let mut p = Parser {
        s: text.as_bytes(),
        src: text,
        i: 0,
        depth: 0,
    };
    p.skip_space();
    let v = p.value()?;
    p.skip_space();
    (p.i == p.s.len()).then_some(v)
}

struct Parser<'a> {
    s: &'a [u8],
    src: &'a str,
    i: usize,
    depth: usize,
}

/// Nesting beyond this is not read (serde_json's own limit is 128).
const MAX_DEPTH: usize = 100;

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_space(&mut self) {
        while let Some(c) = self.peek() {
            if c == b' ' || c == b'\t' || c == b'\n' || c == b'\r' || c == b'\x0c' {
                self.i += 1;
            } else if c == b'\\' && self.s.get(self.i + 1) == Some(&b'\n') {
                self.i += 2;
            } else {
                break;
            }
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_space();
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Option<Value> {
        self.skip_space();
        match self.peek()? {
            b'{' => self.nested(|p| p.dict()),
            b'[' => self.nested(|p| p.sequence(b']')),
            b'(' => self.nested(|p| p.sequence(b')')),
            b'\'' | b'"' => self.strings(),
            b'-' | b'+' => {
                let negative = self.peek() == Some(b'-');
                self.i += 1;
                self.skip_space();
                let v = self.number()?;
                if !negative {
                    return Some(v);
                }
                match v {
                    Value::Number(n) if n.as_i64().is_some() => n
                        .as_i64()
                        .and_then(i64::checked_neg)
                        .map(Value::from)
                        .or_else(|| n.as_f64().map(|f| Value::from(-f))),
                    Value::Number(n) if n.as_u64() == Some(1 << 63) => Some(Value::from(i64::MIN)),
                    Value::Number(n) => n.as_f64().map(|f| Value::from(-f)),
                    _ => None,
                }
            }
            c if c.is_ascii_digit() || c == b'.' => self.number(),
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = self.i;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
                {
                    self.i += 1;
                }
                match &self.src[start..self.i] {
                    "True" => Some(Value::Bool(true)),
                    "False" => Some(Value::Bool(false)),
                    "None" => Some(Value::Null),
                    // String prefixes: raw and unicode strings read as strings; bytes do not.
                    p if matches!(self.peek(), Some(b'\'' | b'"'))
                        && matches!(p.to_ascii_lowercase().as_str(), "r" | "u") =>
                    {
                        self.i = start;
                        self.strings()
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    fn nested(&mut self, f: impl FnOnce(&mut Self) -> Option<Value>) -> Option<Value> {
        if self.depth >= MAX_DEPTH {
            return None;
        }
        self.depth += 1;
        let v = f(self);
        self.depth -= 1;
        v
    }

    fn dict(&mut self) -> Option<Value> {
        self.i += 1;
        let mut map = Map::new();
        loop {
            if self.eat(b'}') {
                return Some(Value::Object(map));
            }
            let key = match self.value()? {
                Value::String(s) => s,
                // JSON keys are text; Python's would be the number itself.
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            if !self.eat(b':') {
                return None;
            }
            let v = self.value()?;
            map.insert(key, v);
            if !self.eat(b',') {
                return self.eat(b'}').then_some(Value::Object(map));
            }
        }
    }

    fn sequence(&mut self, close: u8) -> Option<Value> {
        self.i += 1;
        let mut items = Vec::new();
        let mut saw_comma = false;
        loop {
            if self.eat(close) {
                // `(x)` is x itself, not a tuple.
                if close == b')' && items.len() == 1 && !saw_comma {
                    return items.pop();
                }
                return Some(Value::Array(items));
            }
            items.push(self.value()?);
            saw_comma = self.eat(b',');
            if !saw_comma {
                if !self.eat(close) {
                    return None;
                }
                if close == b')' && items.len() == 1 {
                    return items.pop();
                }
                return Some(Value::Array(items));
            }
        }
    }

    /// One or more adjacent string literals, concatenated.
    fn strings(&mut self) -> Option<Value> {
        let mut out = String::new();
        loop {
            self.skip_space();
            let raw = match self.peek()? {
                b'r' | b'R' => {
                    self.i += 1;
                    true
                }
                b'u' | b'U' => {
                    self.i += 1;
                    false
                }
                b'\'' | b'"' => false,
                _ => break,
            };
            self.string(raw, &mut out)?;
            self.skip_space();
            if !matches!(self.peek(), Some(b'\'' | b'"' | b'r' | b'R' | b'u' | b'U')) {
                break;
            }
        }
        Some(Value::String(out))
    }

    fn string(&mut self, raw: bool, out: &mut String) -> Option<()> {
        let quote = self.peek()?;
        if quote != b'\'' && quote != b'"' {
            return None;
        }
        let triple = self.s[self.i..].starts_with(&[quote; 3]);
        self.i += if triple { 3 } else { 1 };
        loop {
            let rest = &self.src[self.i..];
            let c = rest.chars().next()?;
            if c as u32 == quote as u32 {
                if !triple {
                    self.i += 1;
                    return Some(());
                }
                if rest.as_bytes().starts_with(&[quote; 3]) {
                    self.i += 3;
                    return Some(());
                }
            }
            if c == '\n' && !triple {
                return None;
            }
            self.i += c.len_utf8();
            if c != '\\' {
                out.push(c);
                continue;
            }
            let e = self.src[self.i..].chars().next()?;
            self.i += e.len_utf8();
            if raw {
                out.push('\\');
                out.push(e);
                continue;
            }
            match e {
                '\n' => {}
                '\\' | '\'' | '"' => out.push(e),
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'a' => out.push('\x07'),
                'b' => out.push('\x08'),
                'f' => out.push('\x0c'),
                'v' => out.push('\x0b'),
                'x' => out.push(self.hex(2)?),
                'u' => out.push(self.hex(4)?),
                'U' => out.push(self.hex(8)?),
                '0'..='7' => {
                    let mut code = e.to_digit(8)?;
                    for _ in 0..2 {
                        match self.peek() {
                            Some(d @ b'0'..=b'7') => {
                                code = code * 8 + u32::from(d - b'0');
                                self.i += 1;
                            }
                            _ => break,
                        }
                    }
                    out.push(char::from_u32(code)?);
                }
                // Python keeps unknown escapes as they are.
                other => {
                    out.push('\\');
                    out.push(other);
                }
            }
        }
    }

    fn hex(&mut self, digits: usize) -> Option<char> {
        let text = self.src.get(self.i..self.i + digits)?;
        let code = u32::from_str_radix(text, 16).ok()?;
        self.i += digits;
        char::from_u32(code)
    }

    fn number(&mut self) -> Option<Value> {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.')
            || (matches!(self.peek(), Some(b'+' | b'-'))
                && matches!(self.s.get(self.i - 1), Some(b'e' | b'E'))
                && !self.src[start..self.i].starts_with("0x"))
        {
            self.i += 1;
        }
        let raw = &self.src[start..self.i];
        if !underscores_between_digits(raw) {
            return None;
        }
        let text: String = raw.chars().filter(|c| *c != '_').collect();
        let lower = text.to_ascii_lowercase();
        let radix = |prefix: &str, radix: u32| {
            lower
                .strip_prefix(prefix)
                .and_then(|d| u64::from_str_radix(d, radix).ok())
        };
        if let Some(n) = radix("0x", 16)
            .or_else(|| radix("0o", 8))
            .or_else(|| radix("0b", 2))
        {
            return Some(Value::from(n));
        }
        if lower.bytes().all(|c| c.is_ascii_digit()) {
            // Python reads `012` as an error; a JSON-sized integer otherwise.
            if lower.len() > 1 && lower.starts_with('0') && lower.bytes().any(|c| c != b'0') {
                return None;
            }
            return match lower.parse::<u64>() {
                Ok(n) => Some(Value::from(n)),
                Err(_) => lower.parse::<f64>().ok().map(Value::from),
            };
        }
        if lower.ends_with('j') {
            return None;
        }
        let f: f64 = lower.parse().ok()?;
        Number::from_f64(f).map(Value::Number)
    }
}

/// Python allows `_` in a number only between two digits (`1_000`, `0x_ff`), never doubled,
/// leading or trailing, nor next to `.` or an exponent.
fn underscores_between_digits(raw: &str) -> bool {
    let b = raw.as_bytes();
    let radix = b.len() > 2 && b[0] == b'0' && matches!(b[1] | 0x20, b'x' | b'o' | b'b');
    let digit = |c: u8| {
        if radix {
            c.is_ascii_hexdigit()
        } else {
            c.is_ascii_digit()
        }
    };
    b.iter()
        .enumerate()
        .filter(|(_, c)| **c == b'_')
        .all(|(i, _)| {
            let before = i > 0 && (digit(b[i - 1]) || (radix && i == 2));
            let after = b.get(i + 1).is_some_and(|&c| digit(c));
            before && after
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_python_reprs() {
        assert_eq!(
            literal_eval("{'a': 1, \"b\": [1.5, None, True], 'c': ('x',)}"),
            Some(json!({"a": 1, "b": [1.5, null, true], "c": ["x"]}))
        );
        assert_eq!(literal_eval("'it\\'s' \"fine\""), Some(json!("it'sfine")));
        assert_eq!(literal_eval("-3"), Some(json!(-3)));
        assert_eq!(literal_eval("(1)"), Some(json!(1)));
        assert_eq!(literal_eval("r'\\n'"), Some(json!("\\n")));
        assert_eq!(literal_eval("'\\x41\\u00e9'"), Some(json!("Aé")));
        assert_eq!(literal_eval("1e3"), Some(json!(1000.0)));
        assert_eq!(literal_eval("1_000"), Some(json!(1000)));
        assert_eq!(literal_eval("0x_ff"), Some(json!(255)));
        assert_eq!(literal_eval("1_000.5_5"), Some(json!(1000.55)));
        for bad in ["1__0", "1_", "1_.5", "1._5", "1e_3", "0x__f"] {
            assert_eq!(literal_eval(bad), None, "{bad}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_literal() {
        for text in [
            "", "abc", "{'a': }", "[1, 2", "b'x'", "1j", "{1, 2}", "01", "f(x)",
        ] {
            assert_eq!(literal_eval(text), None, "{text:?}");
        }
    }
}
