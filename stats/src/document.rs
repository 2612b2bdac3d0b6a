//! The report as a document: built once from a [`StatsReport`](super::StatsReport), written twice.
//!
//! [`super::sections::build`] turns the report into a [`Document`]: a title, the key facts, and
//! sections made of headings, paragraphs, tables, chart panels and a gallery of sampled images.
//! The Markdown writer ([`super::markdown`]) and the HTML writer ([`super::html`]) only lay the
//! document out, so both files show the same numbers in the same order by construction.
//!
//! Charts are described here, not drawn: the HTML writer draws them as inline SVG
//! ([`super::charts`]), the Markdown writer names them and points at `report.html`.

use super::histogram::HistogramSummary;
use super::metrics::ValueUnit;
use super::report::SampleSummary;

/// A run of inline text: plain words, code, emphasis and line breaks.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Text(pub(crate) Vec<Span>);

/// One piece of inline text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Span {
    /// Words, escaped by each writer.
    Plain(String),
    /// A key, path, column or reason: `code` in Markdown, `<code>` in HTML.
    Code(String),
    /// A figure the reader should not miss.
    Strong(String),
    /// A line break inside a table cell.
    Break,
}

impl Text {
    /// Plain words.
    pub(crate) fn plain(s: impl Into<String>) -> Self {
        Self(vec![Span::Plain(s.into())])
    }

    /// A code span.
    pub(crate) fn code(s: impl Into<String>) -> Self {
        Self(vec![Span::Code(s.into())])
    }

    /// An emphasised span.
    pub(crate) fn strong(s: impl Into<String>) -> Self {
        Self(vec![Span::Strong(s.into())])
    }

    /// This text followed by plain words.
    pub(crate) fn and_plain(mut self, s: impl Into<String>) -> Self {
        self.0.push(Span::Plain(s.into()));
        self
    }

    /// This text followed by a code span.
    pub(crate) fn and_code(mut self, s: impl Into<String>) -> Self {
        self.0.push(Span::Code(s.into()));
        self
    }

    /// This text followed by an emphasised span.
    pub(crate) fn and_strong(mut self, s: impl Into<String>) -> Self {
        self.0.push(Span::Strong(s.into()));
        self
    }

    /// This text followed by `other`, with a line break between them unless this text is empty.
    pub(crate) fn and_line(mut self, other: Text) -> Self {
        if !self.0.is_empty() {
            self.0.push(Span::Break);
        }
        self.0.extend(other.0);
        self
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Self::plain(s)
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Self::plain(s)
    }
}

/// The whole report.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Document {
    /// `Dataset statistics: <name>`.
    pub(crate) title: String,
    /// Where the dataset is, who made it and this report.
    pub(crate) meta: Text,
    /// Problems the reader must see before the numbers.
    pub(crate) warnings: Vec<String>,
    /// The key figures: a summary table in Markdown, cards in HTML.
    pub(crate) facts: Vec<Fact>,
    /// The sections, in reading order.
    pub(crate) sections: Vec<Section>,
}

/// One key figure: `label | value (detail)`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fact {
    /// What is counted.
    pub(crate) label: String,
    /// The figure.
    pub(crate) value: String,
    /// A share, a rate or a unit that qualifies the figure.
    pub(crate) detail: Option<String>,
}

impl Fact {
    /// A figure without qualification.
    pub(crate) fn new(label: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            value: value.into(),
            detail: None,
        }
    }

    /// The same figure, qualified.
    pub(crate) fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// A titled part of the report.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Section {
    /// Heading.
    pub(crate) title: String,
    /// Content, in order.
    pub(crate) blocks: Vec<Block>,
}

impl Section {
    /// An empty section.
    pub(crate) fn new(title: &str) -> Self {
        Self {
            title: title.to_string(),
            blocks: Vec::new(),
        }
    }

    /// Appends a block.
    pub(crate) fn push(&mut self, block: Block) {
        self.blocks.push(block);
    }
}

/// One element of a section.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Block {
    /// A sub-heading (one passthrough column, one score sidecar).
    Heading(Text),
    /// A paragraph.
    Paragraph(Text),
    /// A side remark (how a figure was estimated).
    Note(Text),
    /// A table.
    Table(Table),
    /// Charts and small tables side by side (HTML); Markdown writes the tables and names the
    /// charts.
    Panels(Vec<Panel>),
    /// Sampled images with their captions.
    Gallery(Vec<SampleSummary>),
}

/// One panel of a [`Block::Panels`] row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Panel {
    /// A chart.
    Chart(Chart),
    /// A compact table beside a chart.
    Table(Table),
}

/// A chart, described by its data.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Chart {
    /// A histogram on a real axis.
    Histogram {
        /// Title.
        title: String,
        /// The bins.
        histogram: HistogramSummary,
        /// How the axis is labelled.
        unit: ValueUnit,
    },
    /// Horizontal bars, largest first; with `total`, each bar's share of it.
    Bars {
        /// Title.
        title: String,
        /// Label and count per bar.
        items: Vec<(String, u64)>,
        /// What the shares are of.
        total: Option<u64>,
    },
    /// One point per shard, flagged ones highlighted.
    Scatter {
        /// Title.
        title: String,
        /// The y axis.
        axis: String,
        /// Value and flag per shard.
        points: Vec<(f64, bool)>,
        /// How the axis is labelled.
        unit: ValueUnit,
    },
}

impl Chart {
    /// The chart's title.
    pub(crate) fn title(&self) -> &str {
        match self {
            Self::Histogram { title, .. }
            | Self::Bars { title, .. }
            | Self::Scatter { title, .. } => title,
        }
    }
}

/// How a column's cells are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnKind {
    /// Words, left-aligned.
    Text,
    /// Figures, right-aligned.
    Number,
    /// Long supporting text (examples), set smaller in HTML.
    Detail,
}

/// A table column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Column {
    /// Header (empty for a two-column label/value table).
    pub(crate) head: String,
    /// Alignment and style.
    pub(crate) kind: ColumnKind,
}

/// A table row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    /// One cell per column.
    pub(crate) cells: Vec<Text>,
    /// Highlighted (an outlier shard).
    pub(crate) flagged: bool,
}

/// A table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Table {
    /// Columns.
    pub(crate) columns: Vec<Column>,
    /// Rows.
    pub(crate) rows: Vec<Row>,
    /// HTML sets this many rows side by side in one row (a long list of short pairs); 1 otherwise.
    pub(crate) side_by_side: usize,
}

impl Table {
    /// An empty table with these columns.
    pub(crate) fn new(columns: &[(&str, ColumnKind)]) -> Self {
        Self {
            columns: columns
                .iter()
                .map(|&(head, kind)| Column {
                    head: head.to_string(),
                    kind,
                })
                .collect(),
            rows: Vec::new(),
            side_by_side: 1,
        }
    }

    /// Appends a row.
    pub(crate) fn row(&mut self, cells: impl IntoIterator<Item = Text>) {
        self.push(cells, false);
    }

    /// Appends a row, highlighted when `flagged`.
    pub(crate) fn push(&mut self, cells: impl IntoIterator<Item = Text>, flagged: bool) {
        let cells: Vec<Text> = cells.into_iter().collect();
        debug_assert_eq!(cells.len(), self.columns.len(), "a cell per column");
        self.rows.push(Row { cells, flagged });
    }

    /// Whether every header is empty (a label/value table).
    pub(crate) fn headless(&self) -> bool {
        self.columns.iter().all(|c| c.head.is_empty())
    }
}
