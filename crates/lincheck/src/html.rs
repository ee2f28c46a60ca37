//! A self-contained HTML page (inline SVG, a little CSS and JS, nothing
//! fetched) that draws one key's operations on a timeline, one row per client,
//! so a person can see why no order of them explains what the clients saw.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::history::Operation;

/// Escapes text for HTML/SVG content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const ROW_HEIGHT: f64 = 54.0;
/// Unknown-outcome operations are drawn as a thin strip under the lane's
/// bars, so the open-ended ones do not hide the rest.
const STRIP_TOP: f64 = 38.0;
const STRIP_HEIGHT: f64 = 7.0;
const BAR_HEIGHT: f64 = 22.0;
const LEFT: f64 = 110.0;
const PLOT_WIDTH: f64 = 1100.0;
const RIGHT_PAD: f64 = 30.0;
const TOP: f64 = 34.0;

/// Renders `ops` (one key's operations) as a timeline page. `highlight`
/// holds indices into `ops` of the operations that form the minimal failing
/// sub-history; out-of-range indices are ignored.
///
/// Time is drawn on a rank scale (the order of call and return instants,
/// evenly spaced), so that overlaps stay visible whatever the durations; the
/// hover panel shows the real nanosecond times. Unknown-outcome operations
/// extend to the right edge and are dashed.
pub fn render_html(key: &str, ops: &[Operation], highlight: &[usize]) -> String {
    let mut clients: BTreeMap<u64, usize> = BTreeMap::new();
    for op in ops {
        let next = clients.len();
        clients.entry(op.client).or_insert(next);
    }
    for (row, slot) in clients.values_mut().enumerate() {
        *slot = row;
    }
    // Rank scale over every finite instant.
    let mut instants: Vec<u64> = ops
        .iter()
        .flat_map(|op| std::iter::once(op.call).chain(op.effective_ret()))
        .collect();
    instants.sort_unstable();
    instants.dedup();
    let slots = instants.len().max(1) as f64;
    let x_of = |t: u64| -> f64 {
        let rank = instants.partition_point(|&i| i < t) as f64;
        LEFT + PLOT_WIDTH * (rank + 0.5) / (slots + 0.5)
    };
    let right_edge = LEFT + PLOT_WIDTH + RIGHT_PAD - 4.0;
    let height = TOP + ROW_HEIGHT * clients.len().max(1) as f64 + 20.0;
    let width = LEFT + PLOT_WIDTH + RIGHT_PAD;
    let highlighted = |i: usize| highlight.contains(&i);

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">"#
    );
    let _ = write!(
        svg,
        r#"<text x="{LEFT}" y="18" class="axis">time (rank order of call/return instants) &#8594;</text>"#
    );
    for (client, row) in &clients {
        let y = TOP + ROW_HEIGHT * *row as f64;
        let _ = write!(
            svg,
            r#"<line x1="{LEFT}" y1="{y2}" x2="{right_edge}" y2="{y2}" class="lane"/><text x="8" y="{ty}" class="client">client {client}</text>"#,
            y2 = y + ROW_HEIGHT - 4.0,
            ty = y + BAR_HEIGHT * 0.75,
        );
    }
    // Unknown outcomes first, so known operations are drawn on top.
    let mut order: Vec<usize> = (0..ops.len()).collect();
    order.sort_by_key(|&i| (ops[i].effective_ret().is_some(), i));
    for i in order {
        let op = &ops[i];
        let row = clients[&op.client];
        let y = TOP + ROW_HEIGHT * row as f64;
        let x1 = x_of(op.call);
        let unknown = op.effective_ret().is_none();
        let x2 = match op.effective_ret() {
            Some(r) => x_of(r).max(x1 + 6.0),
            None => right_edge,
        };
        let mut class = String::from("op");
        if unknown {
            class.push_str(" unknown");
        }
        if highlighted(i) {
            class.push_str(" hl");
        }
        let label = op.label();
        let detail = format!(
            "#{i} client {} key {:?}\n{}\ncall {} ns\nreturn {}\n{}",
            op.client,
            op.key,
            label,
            op.call,
            match (op.ret, &op.output) {
                (Some(r), Some(_)) => format!("{r} ns"),
                (Some(r), None) => {
                    format!("{r} ns (gave up: outcome unknown, may take effect later)")
                }
                (None, _) => "never (outcome unknown)".to_string(),
            },
            if highlighted(i) {
                "part of the minimal failing sub-history"
            } else {
                "context"
            }
        );
        let (bar_y, bar_h) = if unknown {
            (y + STRIP_TOP, STRIP_HEIGHT)
        } else {
            (y, BAR_HEIGHT)
        };
        // Unknown-outcome labels only show on hover (they would pile up).
        let text = if unknown && !highlighted(i) {
            String::new()
        } else {
            format!(
                r#"<text x="{tx:.1}" y="{ly:.1}" class="label">{label}</text>"#,
                tx = x1 + 3.0,
                ly = y + BAR_HEIGHT + 12.0,
                label = esc(&label),
            )
        };
        let _ = write!(
            svg,
            r#"<g class="{class}" data-detail="{detail}"><title>{title}</title><rect x="{x1:.1}" y="{bar_y:.1}" width="{w:.1}" height="{bar_h}" rx="3"/>{text}</g>"#,
            detail = esc(&detail),
            title = esc(&detail),
            w = x2 - x1,
        );
    }
    svg.push_str("</svg>");

    let n_hl = highlight.iter().filter(|&&i| i < ops.len()).count();
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Linearizability violation on key {key_title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 16px; color: #222; }}
.explain {{ max-width: 70em; }}
.axis {{ font-size: 12px; fill: #666; }}
.client {{ font-size: 13px; font-weight: 600; fill: #333; }}
.lane {{ stroke: #eee; }}
.op rect {{ fill: #cfd8e3; stroke: #7a8ea8; stroke-width: 1; }}
.op.unknown rect {{ fill: #f4f4f4; stroke-dasharray: 5 3; }}
.op.hl rect {{ fill: #ffb3a7; stroke: #c0392b; stroke-width: 2; }}
.op.hl.unknown rect {{ fill: #ffe3de; }}
.op:hover rect {{ stroke: #000; stroke-width: 2; }}
.label {{ font-size: 11px; fill: #333; font-family: ui-monospace, monospace; }}
.op.hl .label {{ fill: #a01e10; font-weight: 600; }}
#detail {{ white-space: pre; font-family: ui-monospace, monospace; background: #fafafa; border: 1px solid #ddd; padding: 8px; min-height: 6em; max-width: 70em; }}
.legend span {{ display: inline-block; padding: 1px 8px; margin-right: 10px; border: 1px solid #7a8ea8; }}
</style></head><body>
<h1>Key <code>{key_title}</code>: not linearizable</h1>
<p class="explain"><strong>No order of these operations explains what the clients saw.</strong>
Each bar is one request, from the moment the client sent it to the moment it got the answer; the
store had to apply it at a single instant somewhere inside its bar. The {n_hl} red operations form
the smallest failing sub-history found: there is no way to pick those instants, one per red bar,
so that every answer (value and version) is what a single copy of the key would have returned.
Thin dashed strips are requests with an unknown outcome (timeout, lost connection): they may have
taken effect at any time after their start, or never, so they stretch to the right edge. Grey bars are nearby context.
Hover over a bar for details.</p>
<p class="legend"><span style="background:#ffb3a7">minimal failing</span><span style="background:#cfd8e3">context</span><span style="background:#f4f4f4;border-style:dashed">unknown outcome</span></p>
{svg}
<div id="detail">Hover over an operation.</div>
<script>
document.querySelectorAll('g.op').forEach(function (g) {{
  g.addEventListener('mouseenter', function () {{
    document.getElementById('detail').textContent = g.getAttribute('data-detail');
  }});
}});
</script>
</body></html>
"#,
        key_title = esc(key),
    )
}
