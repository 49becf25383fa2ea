//! JSON text as CPython's `json.dump(obj, f, indent=2)` writes it: two-space indent, `", "`-free
//! item separators with newlines, `": "` after keys, floats as `repr(float)`, and (by default,
//! `ensure_ascii=True`) every non-ASCII character as a `\uXXXX` escape.
//!
//! Writing the reference's exact bytes lets users diff our files against the toolkit's.

use crate::py::repr::{PyNumber, write_float_repr};
use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter, PrettyFormatter};
use std::io::{self, Write};

/// A `serde_json` formatter producing CPython's `json.dump(..., indent=2)` output.
pub struct PyFormatter {
    pretty: PrettyFormatter<'static>,
    ensure_ascii: bool,
}

impl PyFormatter {
    pub fn new(ensure_ascii: bool) -> Self {
        PyFormatter {
            pretty: PrettyFormatter::with_indent(b"  "),
            ensure_ascii,
        }
    }

    /// Starts at a given nesting depth, for writing a fragment that sits inside a larger
    /// document (the service streams steps into the combined requests file this way).
    pub fn at_depth(ensure_ascii: bool, depth: usize) -> Self {
        let mut f = PyFormatter::new(ensure_ascii);
        let mut sink = io::sink();
        for _ in 0..depth {
            // Only the formatter's indent counter changes; nothing is written to `sink`.
            let _ = f.pretty.begin_array(&mut sink);
            let _ = f.pretty.begin_array_value(&mut sink, true);
        }
        f
    }
}

impl Formatter for PyFormatter {
    fn write_f64<W: ?Sized + Write>(&mut self, w: &mut W, value: f64) -> io::Result<()> {
        let mut s = String::with_capacity(24);
        if value.is_nan() {
            s.push_str("NaN");
        } else if value.is_infinite() {
            s.push_str(if value > 0.0 { "Infinity" } else { "-Infinity" });
        } else {
            write_float_repr(&mut s, value);
        }
        w.write_all(s.as_bytes())
    }

    fn write_f32<W: ?Sized + Write>(&mut self, w: &mut W, value: f32) -> io::Result<()> {
        self.write_f64(w, f64::from(value))
    }

    /// A JSON number as it was sent: Python reads an integer literal as an `int` of any size
    /// and writes it back digit for digit, and reads anything else as a `float`.
    fn write_number_str<W: ?Sized + Write>(&mut self, w: &mut W, value: &str) -> io::Result<()> {
        match PyNumber::of_literal(value) {
            PyNumber::Int(digits) => w.write_all(digits.as_bytes()),
            PyNumber::Float(f) => self.write_f64(w, f),
        }
    }

    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        if !self.ensure_ascii || fragment.is_ascii() && !fragment.contains('\u{7f}') {
            return w.write_all(fragment.as_bytes());
        }
        let mut buf = [0u16; 2];
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if c.is_ascii() && c != '\u{7f}' {
                continue;
            }
            w.write_all(&fragment.as_bytes()[start..i])?;
            for unit in c.encode_utf16(&mut buf) {
                write!(w, "\\u{unit:04x}")?;
            }
            start = i + c.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }

    fn write_char_escape<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        escape: CharEscape,
    ) -> io::Result<()> {
        // serde_json already escapes like CPython (`\"`, `\\`, `\n`, `\u001f`), except that
        // CPython never escapes `/`, which serde_json does not either.
        serde_json::ser::CompactFormatter.write_char_escape(w, escape)
    }

    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.begin_array(w)
    }
    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.end_array(w)
    }
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.pretty.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.end_array_value(w)
    }
    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.begin_object(w)
    }
    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.end_object(w)
    }
    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.pretty.begin_object_key(w, first)
    }
    fn end_object_key<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.end_object_key(w)
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.end_object_value(w)
    }
}

/// Writes `value` as `json.dump(value, f, indent=2)` would.
pub fn write<W: Write, T: Serialize + ?Sized>(
    w: W,
    value: &T,
    ensure_ascii: bool,
) -> serde_json::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(w, PyFormatter::new(ensure_ascii));
    value.serialize(&mut ser)
}

/// `json.dumps(value, indent=2)` as bytes.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail, and our types serialise infallibly.
    let _ = write(&mut out, value, true);
    out
}

/// Writes `value` as it appears nested `depth` levels deep in an `indent=2` document.
pub fn write_at_depth<W: Write, T: Serialize + ?Sized>(
    w: W,
    value: &T,
    depth: usize,
) -> serde_json::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(w, PyFormatter::at_depth(true, depth));
    value.serialize(&mut ser)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_cpython_indent_2() {
        let v = json!({"a": [1, 2.0, 1e16, "é\u{1F600}\u{7f}\n\"/"], "b": {}, "c": [], "d": null, "e": true});
        let got = String::from_utf8(to_vec(&v)).unwrap();
        // python3 -c 'import json; print(json.dumps({...}, indent=2))'
        let want = "{\n  \"a\": [\n    1,\n    2.0,\n    1e+16,\n    \"\\u00e9\\ud83d\\ude00\\u007f\\n\\\"/\"\n  ],\n  \"b\": {},\n  \"c\": [],\n  \"d\": null,\n  \"e\": true\n}";
        assert_eq!(got, want);
    }

    #[test]
    fn nested_fragment_indents_like_the_whole() {
        let whole = String::from_utf8(to_vec(&json!([[{"k": [1]}]]))).unwrap();
        let mut frag = Vec::new();
        write_at_depth(&mut frag, &json!({"k": [1]}), 2).unwrap();
        let frag = String::from_utf8(frag).unwrap();
        assert!(whole.contains(&frag), "{whole}\n---\n{frag}");
    }
}
