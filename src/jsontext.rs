//! A run's metadata: a JSON object kept as its text.
//!
//! Metadata is whatever a client sends (an eval's whole config, every item's scores), and parsed
//! into `serde_json::Value`s it took many times its size in memory (docs/limits.md), and every
//! cached version of a run held its own copy. As text it costs its length, versions of a run
//! share it, it is written into responses as it is, and what reads it (the evaluator scores, a
//! merge patch) parses only the parts it needs.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use std::sync::Arc;

/// A JSON object, as its text.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ObjectJson(Arc<str>);

impl ObjectJson {
    /// `{}`.
    pub fn empty() -> ObjectJson {
        ObjectJson(Arc::from("{}"))
    }

    /// A JSON text already read (and so valid JSON), if it is an object: kept compact, as
    /// serde_json would write it, whatever white space it came with.
    pub fn from_raw(raw: &RawValue) -> Option<ObjectJson> {
        raw.get()
            .starts_with('{')
            .then(|| ObjectJson(Arc::from(compact(raw.get()))))
    }

    /// Text that must be a JSON object (as stored); anything else is refused.
    pub fn parse(text: &str) -> Result<ObjectJson, serde_json::Error> {
        let raw: &RawValue = serde_json::from_str(text)?;
        ObjectJson::from_raw(raw).ok_or_else(|| serde_json::Error::custom("expected a JSON object"))
    }

    /// An object built in code.
    pub fn from_map(map: &serde_json::Map<String, serde_json::Value>) -> ObjectJson {
        // A map of JSON values: writing it out cannot fail.
        ObjectJson(Arc::from(serde_json::to_string(map).unwrap_or_default()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Bytes of text: what it costs in memory.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.as_str().trim() == "{}"
    }

    /// This object with an RFC 7396 merge patch applied: keys of the patch replace this object's,
    /// `null` removes a key, and an object merges into an object key by key. Only the levels the
    /// patch reaches are parsed (as raw text per key), so memory stays near the texts' sizes
    /// whatever their contents.
    pub fn merge_patch(&self, patch: &RawValue) -> Result<ObjectJson, serde_json::Error> {
        merge(self.as_str(), patch).map(|text| ObjectJson(Arc::from(text)))
    }
}

/// Valid JSON text without the white space between its tokens (strings are copied as they are).
fn compact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

/// RFC 7396 on texts: `target` is any JSON text (an object or not), `patch` the patch.
fn merge(target: &str, patch: &RawValue) -> Result<String, serde_json::Error> {
    let Some(patch) = object(patch.get())? else {
        // A patch that is not an object replaces the target whole.
        return Ok(patch.get().to_owned());
    };
    let mut merged = object(target)?.unwrap_or_default();
    for (key, value) in patch {
        if value.get() == "null" {
            merged.shift_remove(&key);
            continue;
        }
        let text = match merged.get(&key) {
            Some(old) => merge(old.get(), &value)?,
            None => merge("null", &value)?,
        };
        merged.insert(key, RawValue::from_string(text)?);
    }
    serde_json::to_string(&merged)
}

/// The keys of a JSON object text with their values' raw texts, in order; `None` when the text
/// is not an object.
fn object(
    text: &str,
) -> Result<Option<indexmap::IndexMap<String, Box<RawValue>>>, serde_json::Error> {
    if !text.trim_start().starts_with('{') {
        return Ok(None);
    }
    serde_json::from_str(text).map(Some)
}

impl std::fmt::Debug for ObjectJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.as_str();
        let cut = text.char_indices().nth(80).map_or(text.len(), |(i, _)| i);
        write!(f, "ObjectJson({}", &text[..cut])?;
        if cut < text.len() {
            write!(f, "... {} bytes", text.len())?;
        }
        f.write_str(")")
    }
}

impl Default for ObjectJson {
    fn default() -> Self {
        ObjectJson::empty()
    }
}

impl Serialize for ObjectJson {
    /// Written as it is (a serialiser that is not serde_json's gets it through a `RawValue`,
    /// which serde_json's own types understand).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let raw: &RawValue =
            serde_json::from_str(self.as_str()).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ObjectJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ObjectJson, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        ObjectJson::from_raw(&raw).ok_or_else(|| D::Error::custom("expected a JSON object"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let target =
            ObjectJson::parse(r#"{"a": 1, "b": {"c": 2, "d": 3}, "keep": [1, 2]}"#).unwrap();
        let merged = target
            .merge_patch(&raw(
                r#"{"a": null, "b": {"c": 5, "x": {"y": null}}, "e": [1]}"#,
            ))
            .unwrap();
        let value: serde_json::Value = serde_json::from_str(merged.as_str()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"b": {"c": 5, "d": 3, "x": {}}, "keep": [1, 2], "e": [1]})
        );
        // The RFC's own examples.
        for (target, patch, result) in [
            (r#"{"a":"b"}"#, r#"{"a":"c"}"#, r#"{"a":"c"}"#),
            (r#"{"a":"b"}"#, r#"{"b":"c"}"#, r#"{"a":"b","b":"c"}"#),
            (r#"{"a":["b"]}"#, r#"{"a":"c"}"#, r#"{"a":"c"}"#),
            (
                r#"{"a":{"b":"c"}}"#,
                r#"{"a":{"b":"d","c":null}}"#,
                r#"{"a":{"b":"d"}}"#,
            ),
            (r#"{"e":null}"#, r#"{"a":1}"#, r#"{"e":null,"a":1}"#),
        ] {
            let merged = merge(target, &raw(patch)).unwrap();
            let (got, want): (serde_json::Value, serde_json::Value) = (
                serde_json::from_str(&merged).unwrap(),
                serde_json::from_str(result).unwrap(),
            );
            assert_eq!(got, want, "{target} + {patch}");
        }
    }

    #[test]
    fn kept_compact() {
        let o = ObjectJson::parse("{ \"a b\" : [1, 2],\n \"s\": \" x\\\" y \" }").unwrap();
        assert_eq!(o.as_str(), r#"{"a b":[1,2],"s":" x\" y "}"#);
    }

    #[test]
    fn only_objects_and_written_as_they_are() {
        assert!(ObjectJson::parse("[1]").is_err());
        assert!(ObjectJson::parse("{").is_err());
        let text = r#"{"big":123456789012345678901234567890,"s":"\u0000"}"#;
        let o = ObjectJson::parse(text).unwrap();
        assert_eq!(serde_json::to_string(&o).unwrap(), text);
        let back: ObjectJson = serde_json::from_str(text).unwrap();
        assert_eq!(back, o);
    }
}
