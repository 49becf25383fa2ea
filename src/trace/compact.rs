//! Serialising JSON text that serde_json itself wrote, without parsing it into values first.
//!
//! A step's `metadata` is kept as its compact text ([`super::ObjectText`]) and written out once
//! per step in every file and row that restates steps, in whatever layout the serializer has
//! (the toolkit's indented files, the stored bodies). Parsed back into a `Map` for that, each
//! write built and dropped an insertion-ordered map per object and a string per key and value.
//! Here the text is walked as it stands and handed to the serializer piece by piece: keys and
//! strings are borrowed unless they hold an escape, and numbers keep their digits.
//!
//! The walker trusts its input to be what serde_json writes in compact form (no whitespace,
//! no duplicate keys); anything else is an error, never a panic.

use serde::ser::{Error as _, Serialize, SerializeMap, SerializeSeq, Serializer};
use std::borrow::Cow;
use std::cell::Cell;

/// Serialises the one JSON value `text` holds.
pub(crate) fn serialize<S: Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
    let cursor = Cursor {
        text,
        at: Cell::new(0),
    };
    let done = Next(&cursor).serialize(s)?;
    if cursor.at.get() != text.len() {
        return Err(cursor.malformed());
    }
    Ok(done)
}

/// A read position in the text, shared by the nested values being serialised.
struct Cursor<'a> {
    text: &'a str,
    at: Cell<usize>,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at.get()).copied()
    }

    fn bump(&self, n: usize) {
        self.at.set(self.at.get() + n);
    }

    fn eat<E: serde::ser::Error>(&self, expected: &[u8]) -> Result<(), E> {
        let rest = &self.text.as_bytes()[self.at.get().min(self.text.len())..];
        if rest.starts_with(expected) {
            self.bump(expected.len());
            Ok(())
        } else {
            Err(self.malformed())
        }
    }

    fn malformed<E: serde::ser::Error>(&self) -> E {
        E::custom(format!("not compact JSON at byte {}", self.at.get()))
    }

    /// The string starting here (at its opening quote), unescaped.
    fn string<E: serde::ser::Error>(&self) -> Result<Cow<'a, str>, E> {
        self.eat(b"\"")?;
        let start = self.at.get();
        let bytes = self.text.as_bytes();
        let Some(len) = memchr::memchr2(b'"', b'\\', &bytes[start..]) else {
            return Err(self.malformed());
        };
        if bytes[start + len] == b'"' {
            self.bump(len + 1);
            return Ok(Cow::Borrowed(&self.text[start..start + len]));
        }
        // An escape: decode the whole string as JSON does.
        let mut end = start + len;
        loop {
            let rest = bytes.get(end..).unwrap_or_default();
            match memchr::memchr2(b'"', b'\\', rest) {
                Some(i) if bytes[end + i] == b'\\' => end += i + 2,
                Some(i) => {
                    end += i;
                    break;
                }
                None => return Err(self.malformed()),
            }
        }
        let decoded: String =
            serde_json::from_str(&self.text[start - 1..=end]).map_err(|_| self.malformed::<E>())?;
        self.at.set(end + 1);
        Ok(Cow::Owned(decoded))
    }

    /// The number starting here, digits as written.
    fn number<E: serde::ser::Error>(&self) -> Result<serde_json::Number, E> {
        let start = self.at.get();
        let len = self.text.as_bytes()[start..]
            .iter()
            .take_while(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
            .count();
        self.bump(len);
        self.text[start..start + len]
            .parse()
            .map_err(|_| self.malformed())
    }
}

/// The next value of the text.
struct Next<'c, 'a>(&'c Cursor<'a>);

impl Serialize for Next<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = self.0;
        match c.peek() {
            Some(b'{') => {
                c.bump(1);
                let mut map = s.serialize_map(None)?;
                if c.peek() == Some(b'}') {
                    c.bump(1);
                    return map.end();
                }
                loop {
                    let key = c.string()?;
                    c.eat(b":")?;
                    map.serialize_entry(&*key, &Next(c))?;
                    match c.peek() {
                        Some(b',') => c.bump(1),
                        Some(b'}') => {
                            c.bump(1);
                            return map.end();
                        }
                        _ => return Err(c.malformed()),
                    }
                }
            }
            Some(b'[') => {
                c.bump(1);
                let mut seq = s.serialize_seq(None)?;
                if c.peek() == Some(b']') {
                    c.bump(1);
                    return seq.end();
                }
                loop {
                    seq.serialize_element(&Next(c))?;
                    match c.peek() {
                        Some(b',') => c.bump(1),
                        Some(b']') => {
                            c.bump(1);
                            return seq.end();
                        }
                        _ => return Err(c.malformed()),
                    }
                }
            }
            Some(b'"') => s.serialize_str(&c.string()?),
            Some(b't') => c.eat(b"true").and_then(|()| s.serialize_bool(true)),
            Some(b'f') => c.eat(b"false").and_then(|()| s.serialize_bool(false)),
            Some(b'n') => c.eat(b"null").and_then(|()| s.serialize_unit()),
            Some(_) => c.number()?.serialize(s),
            None => Err(S::Error::custom("unexpected end of compact JSON")),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    fn walked(text: &str) -> Walked<'_> {
        Walked(text)
    }

    struct Walked<'a>(&'a str);

    impl serde::Serialize for Walked<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            super::serialize(self.0, s)
        }
    }

    fn values() -> Vec<Value> {
        let texts = [
            r#"{}"#,
            r#"[]"#,
            r#"{"a":{},"b":[],"c":[{}],"d":[[]],"e":null,"f":true,"g":false}"#,
            r#"{"z":1,"a":[12345678901234567890123,1.50,-0,2.5e-3,1E+400,-7]}"#,
            r#"{"esc":"é\n\t\"\\\u0000\u001f\u007f/ \ud83d\ude00","k\"ey":"v","":""}"#,
            r#"{"nested":{"deeper":{"deepest":[1,[2,[3,{"x":"y"}]]]}}}"#,
            r#"[1,"two",{"three":3},[4],null]"#,
            r#""a lone string""#,
            r#"-12.75"#,
        ];
        texts
            .iter()
            .map(|t| serde_json::from_str(t).unwrap())
            .collect()
    }

    #[test]
    fn writes_what_the_parsed_value_writes_in_every_layout() {
        for value in values() {
            let text = value.to_string();
            assert_eq!(serde_json::to_string(&walked(&text)).unwrap(), text);
            assert_eq!(
                serde_json::to_string_pretty(&walked(&text)).unwrap(),
                serde_json::to_string_pretty(&value).unwrap()
            );
            assert_eq!(
                crate::py::json::to_vec(&walked(&text)),
                crate::py::json::to_vec(&value)
            );
            assert_eq!(serde_json::to_value(walked(&text)).unwrap(), value);
        }
    }

    #[test]
    fn every_fixture_metadata_writes_alike() {
        let mut seen = 0;
        for doc in crate::trace::testutil::fixture_documents() {
            let mut stack = vec![&doc];
            while let Some(v) = stack.pop() {
                match v {
                    Value::Object(map) => {
                        if let Some(Value::Object(meta)) = map.get("metadata") {
                            let text = Value::Object(meta.clone()).to_string();
                            assert_eq!(
                                crate::py::json::to_vec(&walked(&text)),
                                crate::py::json::to_vec(meta),
                            );
                            seen += 1;
                        }
                        stack.extend(map.values());
                    }
                    Value::Array(items) => stack.extend(items),
                    _ => {}
                }
            }
        }
        assert!(seen > 1000, "{seen} metadata objects");
    }

    #[test]
    fn malformed_text_is_an_error() {
        for text in [
            "",
            "{",
            "[1,",
            r#"{"a" 1}"#,
            r#"{"a":1 "#,
            "tru",
            r#""open"#,
            "[1 2]",
            "{1:2}",
            r#""ends in a backslash\"#,
            r#"{"a\"#,
            "{}x",
            "[1]]",
        ] {
            assert!(serde_json::to_string(&walked(text)).is_err(), "{text:?}");
        }
    }
}
