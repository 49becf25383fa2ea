//! Python's text forms of values: `repr(float)`, `str()` of JSON-decoded values, and `{:.Nf}`.
//!
//! The reference profiler turns step inputs into text with `str(data.input)`, writes floats with
//! `repr`, and formats report numbers with `format(x, ".2f")`. Prefix mining, token uniqueness and
//! the CSV are computed over those texts, so matching the reference means matching CPython's
//! formatting byte for byte, including its choice of quotes and escapes in `repr(str)`.

use serde_json::{Number, Value};
use std::fmt::Write;
use unicode_general_category::{GeneralCategory, get_general_category};

/// `repr(x)` for a Python float: the shortest digits that round-trip, in fixed notation when the
/// decimal exponent is in `[-4, 16)`, otherwise in scientific notation with a signed, two-digit
/// minimum exponent (`1e+16`, `1.5e-05`).
pub fn float_repr(x: f64) -> String {
    let mut out = String::with_capacity(24);
    write_float_repr(&mut out, x);
    out
}

/// Appends `repr(x)` to `out`; see [`float_repr`].
pub fn write_float_repr(out: &mut String, x: f64) {
    if x.is_nan() {
        out.push_str("nan");
        return;
    }
    if x.is_infinite() {
        out.push_str(if x > 0.0 { "inf" } else { "-inf" });
        return;
    }
    if x == 0.0 {
        out.push_str(if x.is_sign_negative() { "-0.0" } else { "0.0" });
        return;
    }
    // Shortest round-trip digits. Ryu breaks ties between equally short candidates towards the
    // even digit, as CPython's dtoa does (Rust's own `{:e}` rounds those ties up).
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(x);
    let (negative, text) = match text.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, text),
    };
    let (mantissa, exp) = text.split_once('e').unwrap_or((text, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all: String = [int_part, frac_part].concat();
    let leading = all.len() - all.trim_start_matches('0').len();
    let digits = all.trim_start_matches('0').trim_end_matches('0');
    // Python's `decpt`: value = 0.d1d2... * 10^decpt.
    let decpt = int_part.len() as i32 - leading as i32 + exp;
    if negative {
        out.push('-');
    }
    if (-4 < decpt) && (decpt <= 16) {
        if decpt <= 0 {
            out.push_str("0.");
            for _ in 0..(-decpt) {
                out.push('0');
            }
            out.push_str(digits);
        } else {
            let decpt = decpt as usize;
            if digits.len() <= decpt {
                out.push_str(digits);
                for _ in digits.len()..decpt {
                    out.push('0');
                }
                out.push_str(".0");
            } else {
                out.push_str(&digits[..decpt]);
                out.push('.');
                out.push_str(&digits[decpt..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = decpt - 1;
        let _ = write!(out, "e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
    }
}

/// `format(x, ".{precision}f")`. Rust's fixed formatting rounds the exact binary value half to
/// even, as CPython does, so only the non-finite spellings differ.
pub fn fixed(x: f64, precision: usize) -> String {
    if x.is_nan() {
        "nan".to_owned()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        format!("{x:.precision$}")
    }
}

/// What `json.loads` makes of a JSON number: a Python `int` of any size when the literal has no
/// fraction or exponent, a `float` otherwise.
#[derive(Debug, Clone, PartialEq)]
pub enum PyNumber<'a> {
    /// The integer's decimal digits, with a leading `-` when negative (never `-0`).
    Int(std::borrow::Cow<'a, str>),
    Float(f64),
}

impl PyNumber<'_> {
    /// Classifies a number by its JSON text (serde_json keeps the literal as it was sent).
    pub fn of_literal(text: &str) -> PyNumber<'_> {
        let digits = text.strip_prefix('-').unwrap_or(text);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            if digits.bytes().all(|b| b == b'0') {
                return PyNumber::Int("0".into());
            }
            return PyNumber::Int(text.into());
        }
        // JSON's grammar makes every other literal a valid float; out of range is infinite, as
        // in Python.
        PyNumber::Float(text.parse().unwrap_or(f64::NAN))
    }

    pub fn of(n: &Number) -> PyNumber<'static> {
        match PyNumber::of_literal(&n.to_string()) {
            PyNumber::Int(digits) => PyNumber::Int(digits.into_owned().into()),
            PyNumber::Float(f) => PyNumber::Float(f),
        }
    }
}

/// Python's `repr()` of a JSON number: integers digit for digit, floats as `repr(float)`.
pub fn write_number(out: &mut String, n: &Number) {
    match PyNumber::of(n) {
        PyNumber::Int(digits) => out.push_str(&digits),
        PyNumber::Float(f) => write_float_repr(out, f),
    }
}

/// Python's `str()` of a JSON-decoded value: a string is itself, anything else is its `repr`.
pub fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => py_repr(other),
    }
}

/// Python's `repr()` of a JSON-decoded value (`dict`, `list`, `str`, `int`, `float`, `bool`,
/// `None`), as `json.loads` would have built it.
pub fn py_repr(v: &Value) -> String {
    let mut out = String::new();
    write_repr(&mut out, v);
    out
}

fn write_repr(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str_repr(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_str_repr(out, k);
                out.push_str(": ");
                write_repr(out, item);
            }
            out.push('}');
        }
    }
}

/// `repr(s)` for a Python `str`: single quotes unless the text has a `'` and no `"`, backslash
/// escapes for the quote, `\\`, `\t`, `\n`, `\r`, and `\x..`/`\u....`/`\U........` for every
/// character that `str.isprintable()` rejects.
pub fn write_str_repr(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c == ' ' || (c.is_ascii() && !c.is_ascii_control()) => out.push(c),
            c if is_printable(c) => out.push(c),
            c => {
                let cp = c as u32;
                let _ = if cp < 0x100 {
                    write!(out, "\\x{cp:02x}")
                } else if cp < 0x10000 {
                    write!(out, "\\u{cp:04x}")
                } else {
                    write!(out, "\\U{cp:08x}")
                };
            }
        }
    }
    out.push(quote);
}

/// CPython's `Py_UNICODE_ISPRINTABLE`: everything but the categories Cc, Cf, Cs, Co, Cn, Zl, Zp
/// and Zs, with the ASCII space as the one printable separator.
fn is_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    !matches!(
        get_general_category(c),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::Surrogate
            | GeneralCategory::PrivateUse
            | GeneralCategory::Unassigned
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
            | GeneralCategory::SpaceSeparator
    )
}

/// Python's `str.isalnum()`: letters (L*) and numbers (N*). `re`'s `\w` is this or `_`.
pub fn is_word_char(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || c == '_';
    }
    matches!(
        get_general_category(c),
        GeneralCategory::UppercaseLetter
            | GeneralCategory::LowercaseLetter
            | GeneralCategory::TitlecaseLetter
            | GeneralCategory::ModifierLetter
            | GeneralCategory::OtherLetter
            | GeneralCategory::DecimalNumber
            | GeneralCategory::LetterNumber
            | GeneralCategory::OtherNumber
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn float_repr_matches_cpython() {
        let cases = [
            (1748779200.0307972, "1748779200.0307972"),
            (12.0, "12.0"),
            (0.0, "0.0"),
            (20.357131958007812, "20.357131958007812"),
            (-0.0, "-0.0"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1.5e16, "1.5e+16"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.234e-7, "1.234e-07"),
            (123456789012345680.0, "1.2345678901234568e+17"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1e300, "1e+300"),
            (5e-324, "5e-324"),
            (f64::NAN, "nan"),
            (f64::INFINITY, "inf"),
        ];
        for (x, want) in cases {
            assert_eq!(float_repr(x), want, "repr({x:e})");
        }
    }

    #[test]
    fn fixed_rounds_half_even_on_binary_value() {
        assert_eq!(fixed(0.125, 2), "0.12");
        assert_eq!(fixed(2.675, 2), "2.67");
        assert_eq!(fixed(0.25, 1), "0.2");
        assert_eq!(fixed(-0.001, 2), "-0.00");
        assert_eq!(fixed(3.0, 1), "3.0");
    }

    #[test]
    fn str_of_chat_messages_is_python_repr() {
        let v = json!([{"content": "It's \"quoted\"\n", "additional_kwargs": {}, "n": 1, "x": 1.5, "ok": true, "none": null}]);
        assert_eq!(
            py_str(&v),
            r#"[{'content': 'It\'s "quoted"\n', 'additional_kwargs': {}, 'n': 1, 'x': 1.5, 'ok': True, 'none': None}]"#
        );
        assert_eq!(py_str(&json!("plain")), "plain");
        assert_eq!(py_str(&json!(7)), "7");
        assert_eq!(py_str(&json!(["it's"])), r#"["it's"]"#);
    }

    #[test]
    fn repr_escapes_unprintable_characters() {
        let mut out = String::new();
        write_str_repr(&mut out, "a\u{7f}\u{a0}é\u{200b}\u{1F600}\u{e000}\\");
        assert_eq!(out, r"'a\x7f\xa0é\u200b😀\ue000\\'");
    }

    #[test]
    fn word_chars_follow_python_isalnum() {
        assert!(is_word_char('_'));
        assert!(is_word_char('é'));
        assert!(is_word_char('٣')); // ARABIC-INDIC DIGIT THREE (Nd)
        assert!(is_word_char('²')); // SUPERSCRIPT TWO (No)
        assert!(!is_word_char('-'));
        assert!(!is_word_char('\u{301}')); // combining acute accent (Mn) is not \w in Python
    }
}
