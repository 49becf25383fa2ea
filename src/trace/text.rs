//! Raw text before it is JSON: gzip, JSON syntax with the toolkit's quirks (unpaired surrogate
//! escapes), and what a body that is not JSON starts with.

use super::types::TraceError;
use serde_json::Value;
use std::io::Read;

/// `true` when the bytes start with the gzip magic number.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Inflates a gzip body, refusing to go past `limit` bytes (gzip bombs).
pub fn gunzip(bytes: &[u8], limit: Option<u64>) -> Result<Vec<u8>, TraceError> {
    let decoder = flate2::read::MultiGzDecoder::new(bytes);
    let mut out = Vec::new();
    match limit {
        Some(limit) => {
            let mut limited = decoder.take(limit + 1);
            limited
                .read_to_end(&mut out)
                .map_err(|e| TraceError::Gzip(e.to_string()))?;
            if out.len() as u64 > limit {
                return Err(TraceError::TooLarge { limit });
            }
        }
        None => {
            let mut decoder = decoder;
            decoder
                .read_to_end(&mut out)
                .map_err(|e| TraceError::Gzip(e.to_string()))?;
        }
    }
    Ok(out)
}

/// Parses JSON text; a syntax error says what the text started with, so that a client that sent
/// something else (a zip file, form data, protobuf) learns what the server saw.
pub fn json_value(bytes: &[u8]) -> Result<Value, TraceError> {
    let bytes = without_lone_surrogates(bytes);
    serde_json::from_slice(&bytes)
        .map_err(|e| TraceError::Syntax(format!("{e}; {}", describe_start(&bytes))))
}

/// The text with every unpaired surrogate escape replaced (see [`replace_lone_surrogates`]),
/// borrowed when there is none.
pub(super) fn without_lone_surrogates(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    match replace_lone_surrogates(bytes) {
        Some(fixed) => std::borrow::Cow::Owned(fixed),
        None => std::borrow::Cow::Borrowed(bytes),
    }
}

/// Python's `json.dumps` writes a string holding an unpaired UTF-16 surrogate as `"\ud800"`, and
/// `json.loads` reads it back; a Rust string cannot hold one, so each unpaired surrogate escape
/// becomes `\ufffd`, the replacement character (docs/deviations.md). Escapes come in pairs or not
/// at all, and a text without unpaired ones is left alone (`None`).
fn replace_lone_surrogates(bytes: &[u8]) -> Option<Vec<u8>> {
    fn escape_at(b: &[u8], i: usize) -> Option<u16> {
        if b.get(i) != Some(&b'\\') || b.get(i + 1) != Some(&b'u') {
            return None;
        }
        let hex = std::str::from_utf8(b.get(i + 2..i + 6)?).ok()?;
        u16::from_str_radix(hex, 16).ok()
    }
    let is_high = |u: u16| (0xD800..=0xDBFF).contains(&u);
    let is_low = |u: u16| (0xDC00..=0xDFFF).contains(&u);
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    // Straight to the next `\u`: prompts hold a `\n` every line, and stopping at each of them
    // was most of this pass.
    let unicode_escape = memchr::memmem::Finder::new(b"\\u");
    while let Some(at) = unicode_escape.find(&bytes[i..]) {
        let at = i + at;
        // After an odd number of backslashes this one is escaped: a character, not an escape.
        let before = bytes[..at]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        if before % 2 == 1 {
            i = at + 2;
            continue;
        }
        match escape_at(bytes, at) {
            Some(u) if is_high(u) && escape_at(bytes, at + 6).is_some_and(is_low) => i = at + 12,
            Some(u) if is_high(u) || is_low(u) => {
                let fixed = out.get_or_insert_with(|| bytes.to_vec());
                fixed[at + 2..at + 6].copy_from_slice(b"fffd");
                i = at + 6;
            }
            _ => i = at + 2,
        }
        if i >= bytes.len() {
            break;
        }
    }
    out
}

/// What a body that failed to parse begins with: a short excerpt of text, or the first bytes in
/// hex with the file type their magic number suggests.
pub(super) fn describe_start(bytes: &[u8]) -> String {
    const MAGIC: [(&[u8], &str); 7] = [
        (&[0x1f, 0x8b], "gzip data"),
        (b"PK\x03\x04", "a zip archive"),
        (b"BZh", "bzip2 data"),
        (&[0x28, 0xb5, 0x2f, 0xfd], "zstd data"),
        (&[0xfd, b'7', b'z', b'X', b'Z', 0x00], "xz data"),
        (b"%PDF", "a PDF document"),
        (&[0xef, 0xbb, 0xbf], "a UTF-8 byte-order mark"),
    ];
    if bytes.is_empty() {
        return "the body is empty".to_owned();
    }
    if let Some((_, what)) = MAGIC.iter().find(|(m, _)| bytes.starts_with(m)) {
        return format!("the body starts with {} ({what})", hex_prefix(bytes));
    }
    let head = &bytes[..bytes.len().min(40)];
    match std::str::from_utf8(head) {
        Ok(text) if !text.chars().any(|c| c.is_control() && !c.is_whitespace()) => {
            let more = if bytes.len() > head.len() { "..." } else { "" };
            format!("the body starts with {text:?}{more}")
        }
        _ => format!("the body starts with bytes {}", hex_prefix(bytes)),
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod surrogate_tests {
    use super::*;

    #[test]
    fn escaped_backslashes_are_not_escapes() {
        // `\\ud800` is a backslash and the text "ud800"; `\\\ud800` a backslash and a surrogate.
        let v = json_value(br#"["\\ud800", "\\\ud800", "\\\\ud800\n\ud83d\ude00\u0041"]"#).unwrap();
        assert_eq!(
            v,
            serde_json::json!(["\\ud800", "\\\u{fffd}", "\\\\ud800\n\u{1f600}A"])
        );
        assert!(replace_lone_surrogates(br#"["\\\\ud800", "\ud83d\ude00"]"#).is_none());
    }

    #[test]
    fn unpaired_surrogates_become_the_replacement_character() {
        let v = json_value(br#"["a\ud800b", "\udc00", "\ud83d\ude00", "\\ud800"]"#).unwrap();
        assert_eq!(
            v,
            serde_json::json!(["a\u{fffd}b", "\u{fffd}", "\u{1f600}", "\\ud800"])
        );
    }
}
