//! `report.html`: the report's [`Document`] as one self-contained page (inline CSS, inline SVG
//! charts, thumbnails as data URLs; no scripts, no network), with the same numbers as `report.md`.

use std::fmt::Write;

use base64::Engine;

use super::StatsError;
use super::charts::{bars_svg, histogram_svg, scatter_svg};
use super::document::{
    Block, Chart, ColumnKind, Document, Fact, Panel, Section, Span, Table, Text,
};
use super::report::{SampleSummary, StatsReport};
use super::samples::Thumbnail;
use super::sections;

/// Escapes text for HTML content and attribute values.
pub(crate) fn escape(s: &str) -> String {
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

const STYLE: &str = r#"
:root { --ink: #282c34; --muted: #5c6370; --line: #e1e4ea; --accent: #4271c4; --alert: #d64541; --bg: #f6f7f9; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--ink); background: var(--bg); }
main { max-width: 1340px; margin: 0 auto; padding: 24px 28px 64px; }
h1 { font-size: 28px; margin: 8px 0 4px; }
h2 { font-size: 21px; margin: 36px 0 12px; padding-bottom: 6px; border-bottom: 2px solid var(--line); }
h3 { font-size: 16px; margin: 18px 0 8px; }
.meta { color: var(--muted); font-size: 13px; word-break: break-all; }
.warn { background: #fff4e5; border-left: 4px solid #f0a020; padding: 8px 12px; margin: 12px 0; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 12px; margin-top: 16px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 22px; font-weight: 600; margin-top: 2px; }
.card .sub { color: var(--muted); font-size: 12px; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(600px, 1fr)); gap: 14px; align-items: start; margin: 8px 0; }
.chart { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 6px; overflow: hidden; }
.chart svg { display: block; width: 100%; height: auto; }
table { border-collapse: collapse; background: #fff; border: 1px solid var(--line); margin: 8px 0 12px; font-size: 13.5px; }
th, td { padding: 5px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: #eef0f4; font-weight: 600; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.outlier td { background: #fdecea; }
.chart table.plain { border: none; margin: 8px; }
code { font: 12.5px/1.3 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #eef0f4; padding: 1px 4px; border-radius: 3px; }
.examples { font-size: 12.5px; color: var(--muted); }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); gap: 12px; }
figure { margin: 0; background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 8px; }
figure img { display: block; max-width: 100%; margin: 0 auto; }
figcaption { font-size: 12px; color: var(--muted); margin-top: 6px; overflow-wrap: anywhere; }
p.note { color: var(--muted); font-size: 13px; }
"#;

/// Renders the report as a self-contained HTML page; `thumbnails` are the sampled images'
/// JPEGs, embedded as data URLs.
pub fn render_html(r: &StatsReport, thumbnails: &[Thumbnail]) -> Result<String, StatsError> {
    write_document(&sections::build(r), thumbnails)
}

/// The document as a self-contained HTML page.
pub(crate) fn write_document(
    doc: &Document,
    thumbnails: &[Thumbnail],
) -> Result<String, StatsError> {
    let mut o = String::new();
    let title = escape(&doc.title);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body><main><h1>{title}</h1>"
    );
    write_header(&mut o, doc);
    for section in &doc.sections {
        write_section(&mut o, section, thumbnails)?;
    }
    o.push_str("</main></body></html>\n");
    Ok(o)
}

/// Who made the dataset and the report, the warnings, and the key facts as cards.
fn write_header(o: &mut String, doc: &Document) {
    let _ = write!(o, r#"<div class="meta">{}</div>"#, inline(&doc.meta));
    for w in &doc.warnings {
        let _ = write!(
            o,
            r#"<div class="warn"><b>Warning:</b> {}</div>"#,
            escape(w)
        );
    }
    o.push_str(r#"<div class="cards">"#);
    for Fact {
        label,
        value,
        detail,
    } in &doc.facts
    {
        let _ = write!(
            o,
            r#"<div class="card"><div class="label">{}</div><div class="value">{}</div><div class="sub">{}</div></div>"#,
            escape(label),
            escape(value),
            escape(detail.as_deref().unwrap_or(""))
        );
    }
    o.push_str("</div>");
}

fn write_section(
    o: &mut String,
    section: &Section,
    thumbnails: &[Thumbnail],
) -> Result<(), StatsError> {
    let _ = write!(o, "<h2>{}</h2>", escape(&section.title));
    for block in &section.blocks {
        match block {
            Block::Heading(t) => {
                let _ = write!(o, "<h3>{}</h3>", inline(t));
            }
            Block::Paragraph(t) => {
                let _ = write!(o, "<p>{}</p>", inline(t));
            }
            Block::Note(t) => {
                let _ = write!(o, r#"<p class="note">{}</p>"#, inline(t));
            }
            Block::Table(t) => write_table(o, t, ""),
            Block::Panels(panels) => write_panels(o, panels)?,
            Block::Gallery(samples) => write_gallery(o, samples, thumbnails),
        }
    }
    Ok(())
}

/// A table; `side_by_side` rows share one HTML row, and a table without headers gets no header
/// row.
fn write_table(o: &mut String, table: &Table, class: &str) {
    let per_row = table.side_by_side.max(1);
    match class {
        "" => o.push_str("<table>"),
        class => {
            let _ = write!(o, r#"<table class="{class}">"#);
        }
    }
    if !table.headless() {
        o.push_str("<tr>");
        for _ in 0..per_row {
            for c in &table.columns {
                let _ = write!(o, "<th{}>{}</th>", cell_class(c.kind), escape(&c.head));
            }
        }
        o.push_str("</tr>");
    }
    for rows in table.rows.chunks(per_row) {
        let flagged = rows.iter().any(|r| r.flagged);
        o.push_str(if flagged {
            r#"<tr class="outlier">"#
        } else {
            "<tr>"
        });
        for row in rows {
            for (c, text) in table.columns.iter().zip(&row.cells) {
                let _ = write!(o, "<td{}>{}</td>", cell_class(c.kind), inline(text));
            }
        }
        o.push_str("</tr>");
    }
    o.push_str("</table>");
}

fn cell_class(kind: ColumnKind) -> &'static str {
    match kind {
        ColumnKind::Text => "",
        ColumnKind::Number => r#" class="n""#,
        ColumnKind::Detail => r#" class="examples""#,
    }
}

/// Charts and compact tables in a grid of panels.
fn write_panels(o: &mut String, panels: &[Panel]) -> Result<(), StatsError> {
    o.push_str(r#"<div class="charts">"#);
    for panel in panels {
        o.push_str(r#"<div class="chart">"#);
        match panel {
            Panel::Chart(c) => o.push_str(&draw(c)?),
            Panel::Table(t) => write_table(o, t, "plain"),
        }
        o.push_str("</div>");
    }
    o.push_str("</div>");
    Ok(())
}

/// The chart as inline SVG.
fn draw(chart: &Chart) -> Result<String, StatsError> {
    match chart {
        Chart::Histogram {
            title,
            histogram,
            unit,
        } => histogram_svg(title, histogram, *unit),
        Chart::Bars {
            title,
            items,
            total,
        } => bars_svg(title, items, *total),
        Chart::Scatter {
            title,
            axis,
            points,
            unit,
        } => scatter_svg(title, axis, points, *unit),
    }
}

/// Sampled images as figures, each thumbnail embedded as a data URL.
fn write_gallery(o: &mut String, samples: &[SampleSummary], thumbnails: &[Thumbnail]) {
    o.push_str(r#"<div class="grid">"#);
    for s in samples {
        let jpeg = s
            .thumbnail
            .as_ref()
            .and_then(|name| thumbnails.iter().find(|t| &t.file_name == name));
        let img = match jpeg {
            Some(t) => format!(
                r#"<img alt="{}" src="data:image/jpeg;base64,{}">"#,
                escape(&s.key),
                base64::engine::general_purpose::STANDARD.encode(&t.jpeg)
            ),
            None => format!(
                "<p>no thumbnail: {}</p>",
                escape(s.error.as_deref().unwrap_or("missing"))
            ),
        };
        let _ = write!(
            o,
            "<figure>{img}<figcaption><code>{}</code> {}×{} {}<br>{}</figcaption></figure>",
            escape(&s.key),
            s.width,
            s.height,
            escape(&s.image_format),
            escape(&s.caption)
        );
    }
    o.push_str("</div>");
}

/// Inline HTML.
fn inline(text: &Text) -> String {
    text.0
        .iter()
        .map(|span| match span {
            Span::Plain(s) => escape(s),
            Span::Code(s) => format!("<code>{}</code>", escape(s)),
            Span::Strong(s) => format!("<b>{}</b>", escape(s)),
            Span::Break => "<br>".to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
