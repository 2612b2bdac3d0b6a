//! `report.md`: the report's [`Document`] as Markdown, for terminals, pull requests and notebooks.
//!
//! Tables become pipe tables; chart panels keep their tables and name their charts, which are in
//! `report.html`.

use std::fmt::Write;

use super::document::{Block, ColumnKind, Document, Panel, Section, Span, Table, Text};
use super::report::{SampleSummary, StatsReport};
use super::sections;

/// Makes text safe for a Markdown table cell (no pipes, no line breaks).
pub(crate) fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// Renders the report as Markdown.
pub fn render_markdown(r: &StatsReport) -> String {
    write_document(&sections::build(r))
}

/// The document as Markdown.
pub(crate) fn write_document(doc: &Document) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# {}\n\n{}\n",
        cell(&doc.title),
        inline(&doc.meta, false)
    );
    for w in &doc.warnings {
        let _ = writeln!(o, "> **Warning:** {}\n", cell(w));
    }
    let _ = writeln!(o, "## Summary\n\n| | |\n|---|---:|");
    for f in &doc.facts {
        let value = match &f.detail {
            Some(detail) => format!("{} ({detail})", f.value),
            None => f.value.clone(),
        };
        let _ = writeln!(o, "| {} | {} |", cell(&f.label), cell(&value));
    }
    for section in &doc.sections {
        write_section(&mut o, section);
    }
    o
}

fn write_section(o: &mut String, section: &Section) {
    let _ = writeln!(o, "\n## {}", cell(&section.title));
    for block in &section.blocks {
        o.push('\n');
        match block {
            Block::Heading(t) => {
                let _ = writeln!(o, "### {}", inline(t, false));
            }
            Block::Paragraph(t) | Block::Note(t) => {
                let _ = writeln!(o, "{}", inline(t, false));
            }
            Block::Table(t) => write_table(o, t),
            Block::Panels(panels) => write_panels(o, panels),
            Block::Gallery(samples) => write_gallery(o, samples),
        }
    }
}

fn write_table(o: &mut String, table: &Table) {
    let heads: Vec<String> = table.columns.iter().map(|c| cell(&c.head)).collect();
    let rule: String = table
        .columns
        .iter()
        .map(|c| match c.kind {
            ColumnKind::Number => "---:|",
            ColumnKind::Text | ColumnKind::Detail => "---|",
        })
        .collect();
    let _ = writeln!(o, "| {} |\n|{rule}", heads.join(" | "));
    for row in &table.rows {
        let cells: Vec<String> = row.cells.iter().map(|c| inline(c, true)).collect();
        let _ = writeln!(o, "| {} |", cells.join(" | "));
    }
}

/// One line naming the charts, then the panels' tables, a blank line apart.
fn write_panels(o: &mut String, panels: &[Panel]) {
    let charts: Vec<String> = panels
        .iter()
        .filter_map(|p| match p {
            Panel::Chart(c) => Some(cell(c.title())),
            Panel::Table(_) => None,
        })
        .collect();
    let mut wrote = !charts.is_empty();
    if wrote {
        let _ = writeln!(o, "Charts in `report.html`: {}.", charts.join("; "));
    }
    for panel in panels {
        if let Panel::Table(t) = panel {
            if wrote {
                o.push('\n');
            }
            write_table(o, t);
            wrote = true;
        }
    }
}

fn write_gallery(o: &mut String, samples: &[SampleSummary]) {
    for (i, s) in samples.iter().enumerate() {
        if i > 0 {
            o.push('\n');
        }
        let _ = match &s.thumbnail {
            Some(t) => writeln!(
                o,
                "![{}]({t}) `{}` {}×{} {}: {}",
                cell(&s.key),
                cell(&s.key),
                s.width,
                s.height,
                s.image_format,
                cell(&s.caption)
            ),
            None => writeln!(
                o,
                "`{}` (no thumbnail: {}): {}",
                cell(&s.key),
                cell(s.error.as_deref().unwrap_or("missing")),
                cell(&s.caption)
            ),
        };
    }
}

/// Inline Markdown; `in_table` also keeps pipes from splitting a table cell.
fn inline(text: &Text, in_table: bool) -> String {
    let esc = |s: &str| match in_table {
        true => cell(s),
        false => s.replace(['\n', '\r'], " "),
    };
    text.0
        .iter()
        .map(|span| match span {
            Span::Plain(s) => esc(s),
            Span::Code(s) => format!("`{}`", esc(s)),
            Span::Strong(s) => format!("**{}**", esc(s)),
            Span::Break => "<br>".to_string(),
        })
        .collect()
}
