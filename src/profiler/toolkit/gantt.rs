//! The nested-call Gantt chart (docs/toolkit-semantics.md#gantt-chart; SVG by docs/deviations.md#d8) as a standalone SVG: one bar per call sorted
//! by start, x in seconds since the first start, LLM calls `tab:blue`, tools `tab:green`, the
//! reference's title. The toolkit draws a 20x15 inch PNG in which thousands of bars blur into one
//! another; here every call keeps a 14 px row with its label and a tooltip, so the chart grows
//! downwards and stays readable (and stays a few hundred bytes per call).

use crate::profiler::core::calltree::{CallForest, OpType};
use std::io::{self, Write};

pub const TITLE: &str = "Gantt Chart of Nested Calls (All Examples)";

const ROW: f64 = 14.0;
const BAR: f64 = ROW * 0.6;
const LABEL_WIDTH: f64 = 340.0;
const PLOT_WIDTH: f64 = 1200.0;
const TOP: f64 = 70.0;
const BOTTOM: f64 = 50.0;
const RIGHT: f64 = 30.0;

/// matplotlib's `tab:blue` (LLM), `tab:green` (TOOL) and, in nat 1.9, `tab:orange` (FUNCTION).
fn colour(op: OpType) -> &'static str {
    match op {
        OpType::Llm => "#1f77b4",
        OpType::Tool => "#2ca02c",
        OpType::Function => "#ff7f0e",
    }
}

/// Writes the chart; returns `false` (writing nothing) when there are no calls, as the
/// reference writes no chart then.
pub fn write_svg<W: Write>(w: &mut W, forest: &CallForest) -> io::Result<bool> {
    let mut nodes: Vec<usize> = forest.dfs_order();
    if nodes.is_empty() {
        return Ok(false);
    }
    nodes.sort_by(|a, b| forest.nodes[*a].start.total_cmp(&forest.nodes[*b].start));
    let t0 = forest.nodes[nodes[0]].start;
    let t_max = nodes
        .iter()
        .map(|n| forest.nodes[*n].end)
        .fold(f64::NEG_INFINITY, f64::max);
    let span = if t_max > t0 { t_max - t0 } else { 1.0 };
    let scale = PLOT_WIDTH / span;
    let height = TOP + ROW * nodes.len() as f64 + BOTTOM;
    let width = LABEL_WIDTH + PLOT_WIDTH + RIGHT;
    let plot_bottom = TOP + ROW * nodes.len() as f64;

    writeln!(
        w,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="DejaVu Sans, Arial, sans-serif" font-size="10">
<title>{TITLE}</title>
<rect x="0" y="0" width="{width:.0}" height="{height:.0}" fill="white"/>
<text x="{:.1}" y="24" font-size="16" text-anchor="middle">{TITLE}</text>"#,
        LABEL_WIDTH + PLOT_WIDTH / 2.0
    )?;
    // Legend.
    writeln!(
        w,
        r##"<g font-size="11"><rect x="{:.0}" y="34" width="12" height="10" fill="#1f77b4" stroke="black" stroke-width="0.5"/><text x="{:.0}" y="43">LLM</text><rect x="{:.0}" y="34" width="12" height="10" fill="#2ca02c" stroke="black" stroke-width="0.5"/><text x="{:.0}" y="43">TOOL</text></g>"##,
        LABEL_WIDTH,
        LABEL_WIDTH + 16.0,
        LABEL_WIDTH + 60.0,
        LABEL_WIDTH + 76.0
    )?;
    if nodes
        .iter()
        .any(|n| forest.nodes[*n].op_type == OpType::Function)
    {
        writeln!(
            w,
            r##"<g font-size="11"><rect x="{:.0}" y="34" width="12" height="10" fill="{}" stroke="black" stroke-width="0.5"/><text x="{:.0}" y="43">FUNCTION</text></g>"##,
            LABEL_WIDTH + 120.0,
            colour(OpType::Function),
            LABEL_WIDTH + 136.0
        )?;
    }
    // Axis ticks and grid lines, at a 1-2-5 step giving about ten ticks.
    let step = tick_step(span);
    writeln!(w, r##"<g stroke="#dddddd" stroke-width="1">"##)?;
    let ticks = (span / step).floor() as usize;
    for i in 0..=ticks {
        let x = LABEL_WIDTH + i as f64 * step * scale;
        writeln!(
            w,
            r#"<line x1="{x:.2}" y1="{TOP:.0}" x2="{x:.2}" y2="{plot_bottom:.2}"/>"#
        )?;
    }
    writeln!(w, "</g>\n<g text-anchor=\"middle\">")?;
    for i in 0..=ticks {
        let x = LABEL_WIDTH + i as f64 * step * scale;
        let label = trim_number(i as f64 * step);
        writeln!(
            w,
            r#"<text x="{x:.2}" y="{:.2}">{label}</text><text x="{x:.2}" y="{:.2}">{label}</text>"#,
            TOP - 6.0,
            plot_bottom + 14.0
        )?;
    }
    writeln!(
        w,
        r#"</g>
<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">Time (seconds since the first call)</text>
<g stroke="black" stroke-width="0.5">"#,
        LABEL_WIDTH + PLOT_WIDTH / 2.0,
        plot_bottom + 36.0
    )?;
    for (row, &n) in nodes.iter().enumerate() {
        let node = &forest.nodes[n];
        let y = TOP + row as f64 * ROW + (ROW - BAR) / 2.0;
        let x = LABEL_WIDTH + (node.start - t0) * scale;
        let bar = ((node.end - node.start) * scale).max(0.0);
        writeln!(
            w,
            r#"<rect x="{x:.2}" y="{y:.2}" width="{bar:.2}" height="{BAR:.2}" fill="{}"><title>{}:{} uuid={} start={:.3}s dur={:.3}s request={}</title></rect>"#,
            colour(node.op_type),
            node.op_type.as_str(),
            escape(node.op_name),
            escape(node.uuid),
            node.start - t0,
            node.end - node.start,
            node.example_number
        )?;
    }
    writeln!(w, "</g>\n<g text-anchor=\"end\">")?;
    for (row, &n) in nodes.iter().enumerate() {
        let node = &forest.nodes[n];
        let y = TOP + row as f64 * ROW + ROW * 0.75;
        writeln!(
            w,
            r#"<text x="{:.0}" y="{y:.2}">{}:{}</text>"#,
            LABEL_WIDTH - 6.0,
            node.op_type.as_str(),
            escape(&truncate(node.op_name, 48))
        )?;
    }
    writeln!(
        w,
        r#"</g>
<rect x="{LABEL_WIDTH:.0}" y="{TOP:.0}" width="{PLOT_WIDTH:.0}" height="{:.2}" fill="none" stroke="black" stroke-width="1"/>
</svg>"#,
        plot_bottom - TOP
    )?;
    Ok(true)
}

/// The chart as a string, or `None` when there are no calls.
pub fn to_svg(forest: &CallForest) -> Option<String> {
    let mut out = Vec::new();
    match write_svg(&mut out, forest) {
        Ok(true) => String::from_utf8(out).ok(),
        _ => None,
    }
}

/// The chart of a run without LLM or tool calls: the title and a note, so that the resource
/// always exists for a run and always renders.
pub fn empty_svg() -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="800" height="120" viewBox="0 0 800 120" font-family="DejaVu Sans, Arial, sans-serif">
<title>{TITLE}</title>
<rect x="0" y="0" width="800" height="120" fill="white"/>
<text x="400" y="30" font-size="16" text-anchor="middle">{TITLE}</text>
<text x="400" y="75" font-size="13" text-anchor="middle">No calls found.</text>
</svg>
"#
    )
}

fn tick_step(span: f64) -> f64 {
    let raw = span / 10.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(raw)
}

fn trim_number(x: f64) -> String {
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 forbids most control characters even when escaped.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiler::testutil::frame_of;

    #[test]
    fn one_bar_per_call_sorted_by_start() {
        let f = frame_of(&[
            vec![("TOOL_START", 2.0, "t"), ("TOOL_END", 3.0, "t")],
            vec![("LLM_START", 1.0, "a"), ("LLM_END", 4.0, "a")],
        ]);
        let forest = CallForest::build(&f, false);
        let svg = to_svg(&forest).unwrap();
        assert_eq!(
            svg.matches("<rect x=").count(),
            6,
            "two bars plus background, two legend keys and the frame"
        );
        let llm = svg.find("fill=\"#1f77b4\"><title>LLM").unwrap();
        let tool = svg.find("fill=\"#2ca02c\"><title>TOOL").unwrap();
        assert!(llm < tool, "the earlier call comes first");
        assert!(svg.contains(TITLE));
        assert!(to_svg(&CallForest::default()).is_none());
    }

    #[test]
    fn escapes_names() {
        assert_eq!(
            escape("a<b & \"c\"\u{1}"),
            "a&lt;b &amp; &quot;c&quot;\u{fffd}"
        );
        assert_eq!(tick_step(7.3), 1.0);
        assert_eq!(tick_step(0.05), 0.005);
        assert_eq!(trim_number(2.5), "2.5");
    }
}
