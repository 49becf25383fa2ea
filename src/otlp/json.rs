//! OTLP/JSON, read into the protobuf types the mapping works on.
//!
//! The JSON encoding is protobuf's JSON mapping: lowerCamelCase names, ids in hex, and 64-bit
//! integers as decimal strings *or* numbers (protobuf's JSON parsers accept both, and some
//! exporters send numbers). opentelemetry-proto's own serde refuses the numbers, so these
//! mirror types read what an exporter may send and convert it. Like the protobuf path, an export
//! is counted before it is decoded (lazily, without building anything), and attribute values
//! nested deeper than protobuf decoding allows are refused, so that both encodings accept the
//! same exports.

use super::{Counts, DecodeError, MAX_ATTRIBUTE_DEPTH};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use serde::Deserialize;

/// Counts resources, scopes and spans without decoding them, stopping past `limits`.
pub(super) fn count(body: &[u8], limits: &Counts) -> Result<Counts, DecodeError> {
    let mut counts = Counts::default();
    each(
        body,
        &["resourceSpans", "resource_spans"],
        &mut |resource| {
            counts.containers += 1;
            each(resource, &["scopeSpans", "scope_spans"], &mut |scope| {
                counts.containers += 1;
                each(scope, &["spans"], &mut |_| {
                    counts.spans += 1;
                    counts.check(limits)
                })?;
                counts.check(limits)
            })?;
            counts.check(limits)
        },
    )?;
    Ok(counts)
}

/// Calls `f` with the raw text of each item of the list under the first of `keys` an object
/// has (none when it has none, or null).
fn each(
    object: &[u8],
    keys: &[&str],
    f: &mut dyn FnMut(&[u8]) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let bad = |e: sonic_rs::Error| DecodeError::malformed("JSON", e.to_string());
    for key in keys {
        match sonic_rs::get(object, [*key]) {
            Ok(value) => {
                let raw = value.as_raw_str();
                if raw == "null" {
                    return Ok(());
                }
                for item in sonic_rs::to_array_iter(raw) {
                    f(item.map_err(bad)?.as_raw_str().as_bytes())?;
                }
                return Ok(());
            }
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(bad(e)),
        }
    }
    Ok(())
}

/// The deepest the JSON text of an export may nest objects and arrays: room for attribute values
/// [`MAX_ATTRIBUTE_DEPTH`] deep (four levels of text each, in a map) below the export's own ten.
/// The reader recurses once per level, so this also bounds its stack.
const MAX_TEXT_DEPTH: usize = 10 + 4 * MAX_ATTRIBUTE_DEPTH + 8;

/// Decodes an export (already counted).
pub(super) fn decode(body: &[u8]) -> Result<ExportTraceServiceRequest, DecodeError> {
    if nesting(body) > MAX_TEXT_DEPTH {
        return Err(DecodeError::too_deep());
    }
    let export: Export =
        sonic_rs::from_slice(body).map_err(|e| DecodeError::malformed("JSON", e.to_string()))?;
    Ok(ExportTraceServiceRequest {
        resource_spans: export
            .resource_spans
            .into_iter()
            .map(ResourceSpansJson::into_proto)
            .collect::<Result<_, _>>()?,
    })
}

/// How deep objects and arrays nest in JSON text (strings skipped), without parsing it.
fn nesting(text: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in text {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[derive(Deserialize)]
struct Export {
    #[serde(default, alias = "resource_spans", rename = "resourceSpans")]
    resource_spans: Vec<ResourceSpansJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceSpansJson {
    #[serde(default)]
    resource: Option<ResourceJson>,
    #[serde(default, alias = "scope_spans")]
    scope_spans: Vec<ScopeSpansJson>,
    #[serde(default, alias = "schema_url")]
    schema_url: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceJson {
    #[serde(default)]
    attributes: Vec<KeyValueJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScopeSpansJson {
    #[serde(default)]
    scope: Option<ScopeJson>,
    #[serde(default)]
    spans: Vec<SpanJson>,
    #[serde(default, alias = "schema_url")]
    schema_url: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScopeJson {
    #[serde(default)]
    name: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    attributes: Vec<KeyValueJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpanJson {
    #[serde(default, alias = "trace_id")]
    trace_id: String,
    #[serde(default, alias = "span_id")]
    span_id: String,
    #[serde(default, alias = "parent_span_id")]
    parent_span_id: String,
    #[serde(default)]
    name: String,
    #[serde(default, alias = "start_time_unix_nano", deserialize_with = "u64_text")]
    start_time_unix_nano: u64,
    #[serde(default, alias = "end_time_unix_nano", deserialize_with = "u64_text")]
    end_time_unix_nano: u64,
    #[serde(default)]
    attributes: Vec<KeyValueJson>,
    #[serde(default)]
    events: Vec<EventJson>,
    #[serde(default)]
    status: Option<StatusJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventJson {
    #[serde(default, alias = "time_unix_nano", deserialize_with = "u64_text")]
    time_unix_nano: u64,
    #[serde(default)]
    name: String,
    #[serde(default)]
    attributes: Vec<KeyValueJson>,
}

#[derive(Deserialize)]
struct StatusJson {
    #[serde(default)]
    message: String,
    #[serde(default)]
    code: Option<sonic_rs::Value>,
}

#[derive(Deserialize)]
struct KeyValueJson {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: Option<AnyValueJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnyValueJson {
    #[serde(default, alias = "string_value")]
    string_value: Option<String>,
    #[serde(default, alias = "bool_value")]
    bool_value: Option<bool>,
    #[serde(default, alias = "int_value", deserialize_with = "i64_text")]
    int_value: Option<i64>,
    #[serde(default, alias = "double_value", deserialize_with = "f64_text")]
    double_value: Option<f64>,
    #[serde(default, alias = "array_value")]
    array_value: Option<ValuesJson<AnyValueJson>>,
    #[serde(default, alias = "kvlist_value")]
    kvlist_value: Option<ValuesJson<KeyValueJson>>,
}

#[derive(Deserialize)]
struct ValuesJson<T> {
    #[serde(default = "Vec::new")]
    values: Vec<T>,
}

/// A protobuf JSON integer: a decimal string or a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum IntText {
    Unsigned(u64),
    Signed(i64),
    Text(String),
}

impl IntText {
    fn parse<T: TryFrom<u64> + TryFrom<i64> + std::str::FromStr>(self) -> Option<T> {
        match self {
            IntText::Unsigned(n) => T::try_from(n).ok(),
            IntText::Signed(n) => T::try_from(n).ok(),
            IntText::Text(s) => s.trim().parse().ok(),
        }
    }
}

fn u64_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let text = Option::<IntText>::deserialize(d)?;
    text.map_or(Ok(0), |t| {
        t.parse()
            .ok_or_else(|| serde::de::Error::custom("expected an unsigned 64-bit integer"))
    })
}

fn i64_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<IntText>::deserialize(d)? {
        None => Ok(None),
        Some(t) => t
            .parse()
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom("expected a 64-bit integer")),
    }
}

/// A double: a number, or one of protobuf's JSON names for the values a number cannot spell.
fn f64_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum FloatText {
        Number(f64),
        Text(String),
    }
    match Option::<FloatText>::deserialize(d)? {
        None => Ok(None),
        Some(FloatText::Number(x)) => Ok(Some(x)),
        Some(FloatText::Text(s)) => match s.as_str() {
            "NaN" => Ok(Some(f64::NAN)),
            "Infinity" => Ok(Some(f64::INFINITY)),
            "-Infinity" => Ok(Some(f64::NEG_INFINITY)),
            other => other
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| serde::de::Error::custom("expected a number")),
        },
    }
}

/// Hex as the OTLP JSON encoding writes ids; anything else is no id (which the mapping refuses
/// for the span ids it needs).
fn hex(text: &str) -> Vec<u8> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return Vec::new();
    }
    let nibble = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    digits
        .chunks(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect::<Option<Vec<u8>>>()
        .unwrap_or_default()
}

impl ResourceSpansJson {
    fn into_proto(self) -> Result<ResourceSpans, DecodeError> {
        Ok(ResourceSpans {
            resource: self
                .resource
                .map(|r| {
                    Ok::<_, DecodeError>(Resource {
                        attributes: attributes(r.attributes)?,
                        ..Default::default()
                    })
                })
                .transpose()?,
            scope_spans: self
                .scope_spans
                .into_iter()
                .map(ScopeSpansJson::into_proto)
                .collect::<Result<_, _>>()?,
            schema_url: self.schema_url,
        })
    }
}

impl ScopeSpansJson {
    fn into_proto(self) -> Result<ScopeSpans, DecodeError> {
        Ok(ScopeSpans {
            scope: self
                .scope
                .map(|s| {
                    Ok::<_, DecodeError>(InstrumentationScope {
                        name: s.name,
                        version: s.version,
                        attributes: attributes(s.attributes)?,
                        dropped_attributes_count: 0,
                    })
                })
                .transpose()?,
            spans: self
                .spans
                .into_iter()
                .map(SpanJson::into_proto)
                .collect::<Result<_, _>>()?,
            schema_url: self.schema_url,
        })
    }
}

impl SpanJson {
    fn into_proto(self) -> Result<Span, DecodeError> {
        Ok(Span {
            trace_id: hex(&self.trace_id),
            span_id: hex(&self.span_id),
            parent_span_id: hex(&self.parent_span_id),
            name: self.name,
            start_time_unix_nano: self.start_time_unix_nano,
            end_time_unix_nano: self.end_time_unix_nano,
            attributes: attributes(self.attributes)?,
            events: self
                .events
                .into_iter()
                .map(|e| {
                    Ok::<_, DecodeError>(span::Event {
                        time_unix_nano: e.time_unix_nano,
                        name: e.name,
                        attributes: attributes(e.attributes)?,
                        dropped_attributes_count: 0,
                    })
                })
                .collect::<Result<_, _>>()?,
            status: self.status.map(|s| Status {
                message: s.message,
                code: status_code(s.code.as_ref()),
            }),
            ..Default::default()
        })
    }
}

/// A status code as a number, or by its enum name (which protobuf JSON parsers accept too).
fn status_code(code: Option<&sonic_rs::Value>) -> i32 {
    use sonic_rs::JsonValueTrait;
    match code {
        Some(v) if v.is_number() => v.as_i64().and_then(|n| i32::try_from(n).ok()).unwrap_or(0),
        Some(v) => match v.as_str() {
            Some("STATUS_CODE_OK") => 1,
            Some("STATUS_CODE_ERROR") => 2,
            _ => 0,
        },
        None => 0,
    }
}

fn attributes(list: Vec<KeyValueJson>) -> Result<Vec<KeyValue>, DecodeError> {
    list.into_iter().map(|kv| key_value(kv, 1)).collect()
}

fn key_value(kv: KeyValueJson, depth: usize) -> Result<KeyValue, DecodeError> {
    Ok(KeyValue {
        key: kv.key,
        value: kv.value.map(|v| any_value(v, depth)).transpose()?,
    })
}

/// An attribute value, refused past [`MAX_ATTRIBUTE_DEPTH`] levels of lists and maps, where the
/// protobuf decoder stops.
fn any_value(v: AnyValueJson, depth: usize) -> Result<AnyValue, DecodeError> {
    if depth > MAX_ATTRIBUTE_DEPTH {
        return Err(DecodeError::too_deep());
    }
    use any_value::Value as V;
    let value = if let Some(s) = v.string_value {
        Some(V::StringValue(s))
    } else if let Some(b) = v.bool_value {
        Some(V::BoolValue(b))
    } else if let Some(n) = v.int_value {
        Some(V::IntValue(n))
    } else if let Some(x) = v.double_value {
        Some(V::DoubleValue(x))
    } else if let Some(list) = v.array_value {
        Some(V::ArrayValue(ArrayValue {
            values: list
                .values
                .into_iter()
                .map(|x| any_value(x, depth + 1))
                .collect::<Result<_, _>>()?,
        }))
    } else if let Some(map) = v.kvlist_value {
        Some(V::KvlistValue(KeyValueList {
            values: map
                .values
                .into_iter()
                .map(|kv| key_value(kv, depth + 1))
                .collect::<Result<_, _>>()?,
        }))
    } else {
        None
    };
    Ok(AnyValue { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixty_four_bit_integers_as_strings_or_numbers() {
        let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c",
            "spanId":"eee19b7ec3c1b174","name":"x","startTimeUnixNano":1700000000000000000,
            "endTimeUnixNano":"1700000001000000000","attributes":[
              {"key":"a","value":{"intValue":12}},{"key":"b","value":{"intValue":"-3"}},
              {"key":"c","value":{"doubleValue":"NaN"}}]}]}]}]}"#;
        let req = decode(body).unwrap();
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.start_time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(span.end_time_unix_nano, 1_700_000_001_000_000_000);
        assert_eq!(span.trace_id.len(), 16);
        let ints: Vec<_> = span.attributes[..2]
            .iter()
            .map(|kv| kv.value.as_ref().unwrap().value.clone())
            .collect();
        assert_eq!(
            ints,
            [
                Some(any_value::Value::IntValue(12)),
                Some(any_value::Value::IntValue(-3))
            ]
        );
    }

    #[test]
    fn nesting_skips_strings() {
        assert_eq!(nesting(br#"{"a": [[1], "]]]{{{", {"b": "\\\"["}]}"#), 3);
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(matches!(
            decode(deep.as_bytes()),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn counts_lazily() {
        let body = br#"{"resourceSpans":[{},{"scopeSpans":[{"spans":[{},{},{}]},{}]}]}"#;
        let big = Counts {
            containers: 100,
            spans: 100,
        };
        let c = count(body, &big).unwrap();
        assert_eq!((c.containers, c.spans), (4, 3));
        let small = Counts {
            containers: 100,
            spans: 2,
        };
        assert!(matches!(count(body, &small), Err(DecodeError::TooMany(_))));
        assert!(count(b"[1,2]", &big).is_err());
    }
}
