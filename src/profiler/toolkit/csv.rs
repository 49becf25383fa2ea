//! `standardized_data_all.csv` (docs/toolkit-semantics.md#standardized_data_allcsv) as pandas' `to_csv(index=False)`
//! writes it: Python's csv module quoting, floats as `repr`, null as an empty cell.

use crate::profiler::core::config::ProfilerConfig;
use crate::profiler::core::frame::{Frame, Row};
use crate::profiler::toolkit::llm_metrics::{self, NovaColumns};
use crate::py::repr::write_float_repr;
use std::io::{self, Write};

const BASE_COLUMNS: [&str; 17] = [
    "event_type",
    "event_timestamp",
    "example_number",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "llm_text_input",
    "llm_text_output",
    "llm_new_token",
    "llm_name",
    "tool_name",
    "function_name",
    "function_id",
    "parent_function_name",
    "parent_function_id",
    "UUID",
    "framework",
];

const NOVA_COLUMNS: [&str; 6] = [
    "NOVA-Event-ID",
    "NOVA-Requests-Remaining-In-Event",
    "NOVA-Time-To-Next-Event",
    "NOVA-Time-To-Event-End",
    "NOVA-Predicted-OSL",
    "NOVA-Time-To-Session-End",
];

const TEXT_COLUMNS: [&str; 3] = ["llm_text_input", "llm_text_output", "llm_new_token"];

/// Writes the CSV. An empty frame is the single line `"\n"`, as pandas writes it.
pub fn write<W: Write>(w: &mut W, frame: &Frame, config: &ProfilerConfig) -> io::Result<()> {
    if frame.is_empty() {
        return w.write_all(b"\n");
    }
    let nova = config
        .compute_llm_metrics
        .then(|| llm_metrics::compute(frame));
    let exclude_text = config.csv_exclude_io_text;
    let header = column_names(config);
    let mut line = String::with_capacity(4096);
    for (i, name) in header.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        push_field(&mut line, name);
    }
    line.push('\n');
    w.write_all(line.as_bytes())?;
    for (i, row) in frame.rows().iter().enumerate() {
        line.clear();
        write_row(&mut line, row, exclude_text);
        if let Some(nova) = &nova {
            write_nova(&mut line, row, nova, i);
        }
        line.push('\n');
        w.write_all(line.as_bytes())?;
    }
    Ok(())
}

/// The whole CSV in memory.
pub fn to_string(frame: &Frame, config: &ProfilerConfig) -> String {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = write(&mut out, frame, config);
    String::from_utf8(out).expect("the CSV is built from UTF-8 strings")
}

fn write_row(line: &mut String, r: Row<'_>, exclude_text: bool) {
    push_field(line, r.event_type().as_str());
    line.push(',');
    write_float_repr(line, r.event_timestamp());
    for n in [
        r.example_number(),
        r.prompt_tokens(),
        r.completion_tokens(),
        r.total_tokens(),
    ] {
        line.push(',');
        line.push_str(itoa::Buffer::new().format(n));
    }
    if !exclude_text {
        for t in [r.llm_text_input(), r.llm_text_output(), r.llm_new_token()] {
            line.push(',');
            push_field(line, t.as_deref().unwrap_or(""));
        }
    }
    line.push(',');
    push_field(line, r.llm_name());
    line.push(',');
    push_field(line, r.tool_name());
    let a = r.ancestry();
    for v in [
        a.map(|a| a.function_name.as_str()),
        a.map(|a| a.function_id.as_str()),
        a.and_then(|a| a.parent_name.as_deref()),
        a.and_then(|a| a.parent_id.as_deref()),
    ] {
        line.push(',');
        push_field(line, v.unwrap_or(""));
    }
    line.push(',');
    push_field(line, r.uuid());
    line.push(',');
    push_field(line, r.framework().map_or("", |f| f.as_str()));
}

fn write_nova(line: &mut String, r: Row<'_>, nova: &NovaColumns, i: usize) {
    let n = &nova.rows[i];
    line.push(',');
    push_field(line, r.function_name().unwrap_or(""));
    line.push(',');
    if nova.requests_remaining_is_float {
        write_float_repr(line, n.requests_remaining);
    } else {
        line.push_str(itoa::Buffer::new().format(n.requests_remaining as i64));
    }
    for v in [n.time_to_next_event, n.time_to_event_end] {
        line.push(',');
        write_float_repr(line, v);
    }
    line.push(',');
    if let Some(osl) = n.predicted_osl {
        write_float_repr(line, osl);
    }
    line.push(',');
    write_float_repr(line, n.time_to_session_end);
}

/// Python's csv `QUOTE_MINIMAL` with `lineterminator="\n"`: quote a field holding the
/// delimiter, the quote character or `\n` (not `\r`), doubling inner quotes.
fn push_field(line: &mut String, field: &str) {
    if field.contains([',', '"', '\n']) {
        line.push('"');
        for c in field.chars() {
            if c == '"' {
                line.push('"');
            }
            line.push(c);
        }
        line.push('"');
    } else {
        line.push_str(field);
    }
}

pub fn column_names(config: &ProfilerConfig) -> Vec<&'static str> {
    let mut cols: Vec<&str> = BASE_COLUMNS
        .iter()
        .copied()
        .filter(|c| !(config.csv_exclude_io_text && TEXT_COLUMNS.contains(c)))
        .collect();
    if config.compute_llm_metrics {
        cols.extend(NOVA_COLUMNS);
    }
    cols
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_matches_python_csv() {
        let mut s = String::new();
        for f in ["a\rb", "c\nd", "e,f", "g\"h", "", " x"] {
            push_field(&mut s, f);
            s.push('|');
        }
        assert_eq!(s, "a\rb|\"c\nd\"|\"e,f\"|\"g\"\"h\"|| x|");
    }
}
