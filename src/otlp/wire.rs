//! Counting what an OTLP protobuf export holds before decoding it.
//!
//! prost materialises a whole message at once: a few kilobytes of gzip can inflate to millions
//! of empty spans, each a struct of a few hundred bytes once decoded. Walking the wire format
//! first costs no allocation and tells how many resources, scopes and spans the export holds,
//! so that an export over the limits is refused before it takes any memory.

use super::{Counts, DecodeError};

/// The wire types of the protobuf encoding.
const VARINT: u64 = 0;
const I64: u64 = 1;
const LEN: u64 = 2;
const I32: u64 = 5;

/// Counts the `ResourceSpans`, `ScopeSpans` and `Span`s of an `ExportTraceServiceRequest`
/// (fields 1, 2 and 2 on the way down), stopping as soon as `limits` is passed.
pub(super) fn count(body: &[u8], limits: &Counts) -> Result<Counts, DecodeError> {
    let mut counts = Counts::default();
    for_each_len_field(body, 1, |resource| {
        counts.containers += 1;
        for_each_len_field(resource, 2, |scope| {
            counts.containers += 1;
            for_each_len_field(scope, 2, |_span| {
                counts.spans += 1;
                counts.check(limits)
            })?;
            counts.check(limits)
        })?;
        counts.check(limits)
    })?;
    Ok(counts)
}

/// Calls `f` with the payload of every length-delimited field numbered `field` of a message,
/// skipping all other fields.
fn for_each_len_field(
    mut msg: &[u8],
    field: u64,
    mut f: impl FnMut(&[u8]) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    while !msg.is_empty() {
        let key = varint(&mut msg)?;
        let (number, wire) = (key >> 3, key & 7);
        match wire {
            VARINT => {
                varint(&mut msg)?;
            }
            I64 => msg = skip(msg, 8)?,
            I32 => msg = skip(msg, 4)?,
            LEN => {
                let len = usize::try_from(varint(&mut msg)?).map_err(|_| truncated())?;
                let payload = msg.get(..len).ok_or_else(truncated)?;
                msg = &msg[len..];
                if number == field {
                    f(payload)?;
                }
            }
            other => {
                return Err(DecodeError::malformed(
                    "protobuf",
                    format!("unsupported wire type {other}"),
                ));
            }
        }
    }
    Ok(())
}

fn varint(buf: &mut &[u8]) -> Result<u64, DecodeError> {
    let mut value = 0u64;
    for i in 0..10 {
        let (&byte, rest) = buf.split_first().ok_or_else(truncated)?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(DecodeError::malformed(
        "protobuf",
        "a varint longer than 10 bytes",
    ))
}

fn skip(buf: &[u8], n: usize) -> Result<&[u8], DecodeError> {
    buf.get(n..).ok_or_else(truncated)
}

fn truncated() -> DecodeError {
    DecodeError::malformed("protobuf", "the message ends inside a field")
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    fn export(resources: usize, scopes: usize, spans: usize) -> Vec<u8> {
        let scope = ScopeSpans {
            spans: vec![Span::default(); spans],
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    scope_spans: vec![scope; scopes],
                    ..Default::default()
                };
                resources
            ],
        }
        .encode_to_vec()
    }

    #[test]
    fn counts_what_prost_would_decode() {
        let big = Counts {
            containers: usize::MAX,
            spans: usize::MAX,
        };
        let c = count(&export(3, 2, 5), &big).unwrap();
        assert_eq!((c.containers, c.spans), (3 + 6, 30));
        // Empty resources count too: they are what escaped a span limit alone.
        let c = count(&export(1000, 0, 0), &big).unwrap();
        assert_eq!(c.containers, 1000);
    }

    #[test]
    fn stops_at_the_limit_and_refuses_garbage() {
        let small = Counts {
            containers: 10,
            spans: 100,
        };
        assert!(matches!(
            count(&export(1, 1, 101), &small),
            Err(DecodeError::TooMany(_))
        ));
        assert!(matches!(
            count(&export(11, 0, 0), &small),
            Err(DecodeError::TooMany(_))
        ));
        assert!(matches!(
            count(b"\x0a\xff\x01", &small),
            Err(DecodeError::Malformed(_))
        ));
    }
}
