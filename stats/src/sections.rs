//! The report's sections: what `report.md` and `report.html` say, decided once.
//!
//! [`build`] turns a [`StatsReport`] into a [`Document`], one function per section. Adding a
//! section is one function here and one line in [`build`]; the writers change only when a section
//! needs a new kind of [`Block`].

use super::document::{
    Block, Chart,
    ColumnKind::{Detail, Number, Text as Words},
    Document, Fact, Panel, Section, Table, Text,
};
use super::format::{
    bytes, count, opt_value, percent, rate, retried, score_gaps, seconds, significant,
    summary_cells,
};
use super::histogram::{DistributionSummary, Quantiles};
use super::metrics::{Metric, ValueUnit};
use super::report::{IngestThroughput, ShardSummary, StatsReport};

/// The per-shard table lists every shard up to this many shards, else only the outliers.
pub(crate) const SHARD_TABLE_LIMIT: usize = 200;

/// The report as a document.
pub(crate) fn build(r: &StatsReport) -> Document {
    let d = &r.dataset;
    let mut sections = vec![
        rejections(r),
        duplicates(r),
        images_and_captions(r),
        caption_words(r),
    ];
    sections.extend(passthrough(r));
    sections.extend(scores(r));
    sections.push(shards(r));
    sections.extend(samples(r));
    sections.push(cost(r));
    Document {
        title: format!("Dataset statistics: {}", d.name),
        meta: Text::code(&d.url).and_plain(format!(
            " · created {} by {} · report v{} generated {} by {}",
            d.created_at, d.created_by, r.report_version, r.generated_at, r.generated_by
        )),
        warnings: r.warnings.clone(),
        facts: facts(r),
        sections,
    }
}

/// Shards the per-shard table shows: all of them, or only the outliers of a large dataset (the
/// flag says which).
pub(crate) fn shards_to_show(report: &StatsReport) -> (Vec<&ShardSummary>, bool) {
    if report.shards.len() <= SHARD_TABLE_LIMIT {
        (report.shards.iter().collect(), true)
    } else {
        let outliers = report.shards.iter().filter(|s| !s.outlier.is_empty());
        (outliers.take(SHARD_TABLE_LIMIT).collect(), false)
    }
}

/// The key figures of the dataset and of its ingest.
fn facts(r: &StatsReport) -> Vec<Fact> {
    let (t, d) = (&r.totals, &r.dataset);
    let mut facts = vec![
        Fact::new("items read", count(t.read)),
        Fact::new("accepted", count(t.accepted)).detail(percent(t.accepted_share)),
        Fact::new("rejected", count(t.rejected)).detail(percent(t.rejected_share)),
        Fact::new(
            "units / shards / row groups",
            format!(
                "{} / {} / {}",
                count(d.units),
                count(d.shards),
                count(d.row_groups)
            ),
        ),
        Fact::new("stored (shards + rejections)", bytes(t.stored_bytes as f64)),
        Fact::new("encoded images", bytes(t.image_bytes as f64)),
        Fact::new(
            "mean bytes per image",
            t.mean_image_bytes.map_or("–".into(), bytes),
        ),
        Fact::new("source bytes read by ingest", bytes(t.input_bytes as f64)),
    ];
    facts.extend(ingest_facts(r.ingest.as_ref()));
    if let Some(s) = &d.split {
        facts.push(Fact::new(
            format!(
                "split (val fraction {}, seed {})",
                significant(s.val_fraction, 3),
                s.seed
            ),
            format!("train {} / val {}", count(s.train_rows), count(s.val_rows)),
        ));
    }
    facts
}

/// Throughput per worker and, when known, the wall clock of the whole ingest.
fn ingest_facts(ingest: Option<&IngestThroughput>) -> Vec<Fact> {
    let Some(i) = ingest else {
        return vec![
            Fact::new("ingest throughput", "unknown").detail("no timings in the commit records"),
        ];
    };
    let mut facts = vec![
        Fact::new(
            "ingest throughput",
            format!("{} items per worker", rate(i.items_per_worker_second)),
        )
        .detail(format!(
            "{} of worker time, {} worker(s)",
            seconds(i.worker_seconds),
            count(i.workers)
        )),
    ];
    if let (Some(w), Some(ips)) = (i.wall_seconds, i.items_per_second) {
        facts.push(
            Fact::new("ingest wall clock", seconds(w))
                .detail(format!("{} items overall", rate(ips))),
        );
    }
    facts
}

/// Rejections by reason, with what each reason means and a few examples.
fn rejections(r: &StatsReport) -> Section {
    let mut section = Section::new("Rejections");
    if r.rejections.is_empty() {
        section.push(Block::Paragraph("No item was rejected.".into()));
        return section;
    }
    section.push(Block::Panels(vec![Panel::Chart(Chart::Bars {
        title: "Rejected items by reason (share of items read)".into(),
        items: r
            .rejections
            .iter()
            .map(|x| (x.reason.clone(), x.count))
            .collect(),
        total: Some(r.totals.read),
    })]));
    let mut table = Table::new(&[
        ("reason", Words),
        ("count", Number),
        ("share of read", Number),
        ("units", Number),
        ("meaning", Words),
        ("examples", Detail),
    ]);
    for x in &r.rejections {
        let examples = x.examples.iter().fold(Text::default(), |text, e| {
            text.and_line(Text::code(&e.key).and_plain(format!(": {}", e.detail)))
        });
        table.row([
            Text::code(&x.reason),
            count(x.count).into(),
            percent(x.share_of_read).into(),
            count(x.units).into(),
            x.description.as_str().into(),
            examples,
        ]);
    }
    section.push(Block::Table(table));
    section
}

/// Duplicates rejected at ingest, and the duplication left among accepted rows (estimates).
fn duplicates(r: &StatsReport) -> Section {
    let d = &r.duplicates;
    let mut table = Table::new(&[("", Words), ("", Number)]);
    for (label, n) in [
        ("rejected as exact duplicates", d.rejected_exact),
        ("rejected as near duplicates", d.rejected_near),
        (
            "distinct content hashes among accepted (estimate)",
            d.distinct_content_hashes,
        ),
        (
            "distinct perceptual hashes among accepted (estimate)",
            d.distinct_phashes,
        ),
        (
            "accepted rows repeating another's bytes (estimate)",
            d.residual_exact_estimate,
        ),
        (
            "accepted rows repeating another's perceptual hash (estimate)",
            d.residual_near_estimate,
        ),
    ] {
        table.row([label.into(), count(n).into()]);
    }
    let mut section = Section::new("Duplicates");
    section.push(Block::Table(table));
    section.push(Block::Note(
        format!(
            "Estimates are HyperLogLog counts (relative standard error {}).",
            percent(d.estimate_standard_error)
        )
        .into(),
    ));
    section
}

/// Stored formats, and the distribution of every image and caption measure.
fn images_and_captions(r: &StatsReport) -> Section {
    let mut section = Section::new("Images and captions");
    if !r.image_formats.is_empty() {
        let formats: Vec<String> = r
            .image_formats
            .iter()
            .map(|f| format!("{} {}", f.value, count(f.count)))
            .collect();
        section.push(Block::Paragraph(
            format!("Stored formats: {}.", formats.join(", ")).into(),
        ));
    }
    let mut table = Table::new(&[
        ("measure", Words),
        ("rows", Number),
        ("min", Number),
        ("p5", Number),
        ("p25", Number),
        ("median", Number),
        ("mean", Number),
        ("p75", Number),
        ("p95", Number),
        ("max", Number),
    ]);
    for m in Metric::ALL {
        let s = r.distributions.get(m);
        let u = m.unit();
        let q =
            |f: fn(&Quantiles) -> f64| -> Text { opt_value(s.quantiles.as_ref().map(f), u).into() };
        table.row([
            m.title().into(),
            count(s.count).into(),
            opt_value(s.min, u).into(),
            q(|q| q.p05),
            q(|q| q.p25),
            q(|q| q.p50),
            opt_value(s.mean, u).into(),
            q(|q| q.p75),
            q(|q| q.p95),
            opt_value(s.max, u).into(),
        ]);
    }
    section.push(Block::Table(table));
    section.push(Block::Note(
        "Percentiles are within 1 % of an observed value. Histograms of sizes use log-spaced \
         bins (8 per doubling; megapixels 4)."
            .into(),
    ));
    let histograms = Metric::ALL.into_iter().map(|m| {
        Panel::Chart(Chart::Histogram {
            title: m.title().to_string(),
            histogram: r.distributions.get(m).histogram.clone(),
            unit: m.unit(),
        })
    });
    section.push(Block::Panels(histograms.collect()));
    section
}

/// The most frequent caption words.
fn caption_words(r: &StatsReport) -> Section {
    let w = &r.caption_words;
    let mut section = Section::new("Most frequent caption words");
    if w.top.is_empty() {
        section.push(Block::Paragraph("No caption words.".into()));
        return section;
    }
    let (counts, bound) = if w.exact {
        ("Exact counts", "every word fits the summary".to_string())
    } else {
        (
            "Upper-bound counts",
            format!("words not listed occur at most {} times", count(w.floor)),
        )
    };
    section.push(Block::Note(
        format!(
            "{counts} of {} word occurrences counted ({bound}; common English function words, \
             numbers and single letters left out).",
            count(w.words_counted)
        )
        .into(),
    ));
    let mut table = value_counts("word", w.top.iter().map(|c| (&c.item, c.count)));
    table.side_by_side = 3;
    let top: Vec<(String, u64)> = w
        .top
        .iter()
        .take(30)
        .map(|c| (c.item.clone(), c.count))
        .collect();
    section.push(Block::Panels(vec![
        Panel::Chart(Chart::Bars {
            title: "Top caption words".into(),
            items: top,
            total: None,
        }),
        Panel::Table(table),
    ]));
    section
}

/// A `value | count` table.
fn value_counts<'a>(head: &str, items: impl Iterator<Item = (&'a String, u64)>) -> Table {
    let mut table = Table::new(&[(head, Words), ("count", Number)]);
    for (value, n) in items {
        table.row([value.as_str().into(), count(n).into()]);
    }
    table
}

/// A numeric column's histogram beside its min / p5 / median / mean / p95 / max.
fn numeric_panels(title: &str, s: &DistributionSummary) -> Block {
    let cells = summary_cells(s);
    let mut table = Table::new(&cells.each_ref().map(|(head, _)| (*head, Number)));
    table.row(cells.map(|(_, value)| value.into()));
    Block::Panels(vec![
        Panel::Chart(Chart::Histogram {
            title: title.to_string(),
            histogram: s.histogram.clone(),
            unit: ValueUnit::Decimal,
        }),
        Panel::Table(table),
    ])
}

/// Columns carried through from the source: numeric summaries, frequent values, true/false.
fn passthrough(r: &StatsReport) -> Option<Section> {
    if r.passthrough.is_empty() {
        return None;
    }
    let mut section = Section::new("Passthrough columns");
    for p in &r.passthrough {
        section.push(Block::Heading(
            Text::code(&p.column).and_plain(format!(" ({}, {})", p.kind, p.data_type)),
        ));
        section.push(Block::Paragraph(
            format!("{} rows, {} null.", count(p.rows), count(p.nulls)).into(),
        ));
        if let Some(s) = &p.numeric {
            section.push(numeric_panels(&p.column, s));
        }
        if let Some(tx) = &p.text {
            section.push(Block::Paragraph(
                match tx.distinct {
                    Some(n) => format!("{} distinct values.", count(n)),
                    None => "Many distinct values; the most frequent (upper-bound counts):".into(),
                }
                .into(),
            ));
            section.push(Block::Panels(vec![
                Panel::Chart(Chart::Bars {
                    title: format!("{}: most frequent values", p.column),
                    items: tx.top.iter().map(|c| (c.item.clone(), c.count)).collect(),
                    total: Some(p.rows),
                }),
                Panel::Table(value_counts(
                    "value",
                    tx.top.iter().map(|c| (&c.item, c.count)),
                )),
            ]));
        }
        if let Some(b) = &p.boolean {
            section.push(Block::Paragraph(
                format!(
                    "true {} · false {}",
                    count(b.true_count),
                    count(b.false_count)
                )
                .into(),
            ));
        }
    }
    Some(section)
}

/// The distribution of each CLIP-score sidecar.
fn scores(r: &StatsReport) -> Option<Section> {
    if r.scores.is_empty() {
        return None;
    }
    let mut section = Section::new("CLIP scores");
    for sc in &r.scores {
        section.push(Block::Heading(Text::code(format!("scores/{}", sc.name))));
        section.push(Block::Paragraph(
            format!(
                "{} of {} rows: cosine similarity of image and caption under {} {} (step {}).{}",
                sc.column,
                count(sc.distribution.count),
                sc.run,
                sc.checkpoint,
                sc.step,
                score_gaps(sc)
            )
            .into(),
        ));
        section.push(numeric_panels(&sc.column, &sc.distribution));
    }
    Some(section)
}

/// Outlier shards: the robust statistics, one scatter per measure, and the per-shard table.
fn shards(r: &StatsReport) -> Section {
    let o = &r.outliers;
    let mut section = Section::new("Shards");
    section.push(Block::Paragraph(
        format!(
            "{} of {} shards are outliers (|modified z| > {} on mean bytes per image over shards, \
             or on rejection share over units).",
            count(o.flagged_shards),
            count(r.shards.len() as u64),
            o.threshold
        )
        .into(),
    ));
    let mut measures = Table::new(&[
        ("measure", Words),
        ("values", Number),
        ("median", Number),
        ("MAD", Number),
        ("spread used", Words),
        ("flagged shards", Number),
    ]);
    for m in &o.metrics {
        measures.row([
            m.metric.as_str().into(),
            count(m.values).into(),
            significant(m.median, 4).into(),
            significant(m.mad, 4).into(),
            m.spread.as_str().into(),
            count(m.flagged_shards).into(),
        ]);
    }
    section.push(Block::Table(measures));
    section.push(Block::Panels(vec![
        shard_scatter(
            r,
            "Mean bytes per image, per shard (outliers red)",
            "bytes per image",
            ("mean_image_bytes", ValueUnit::Bytes),
            |s| s.mean_image_bytes,
        ),
        shard_scatter(
            r,
            "Rejection share of the shard's unit (outliers red)",
            "rejected / read",
            ("unit_rejection_share", ValueUnit::Ratio),
            |s| s.unit_rejection_share,
        ),
    ]));
    let (shown, all) = shards_to_show(r);
    section.push(Block::Paragraph(
        if all {
            "Every shard:"
        } else {
            "Outlier shards (the full table is in report.json):"
        }
        .into(),
    ));
    section.push(Block::Table(shard_table(&shown)));
    section
}

/// One point per shard of `value`, flagged where the shard is an outlier on `metric`.
fn shard_scatter(
    r: &StatsReport,
    title: &str,
    axis: &str,
    (metric, unit): (&str, ValueUnit),
    value: fn(&ShardSummary) -> f64,
) -> Panel {
    let points = r
        .shards
        .iter()
        .map(|s| (value(s), s.outlier.iter().any(|m| m == metric)))
        .collect();
    Panel::Chart(Chart::Scatter {
        title: title.into(),
        axis: axis.into(),
        points,
        unit,
    })
}

/// Shard, unit, size and outlier flags, one row per shard shown.
fn shard_table(shown: &[&ShardSummary]) -> Table {
    let mut table = Table::new(&[
        ("shard", Words),
        ("unit", Words),
        ("rows", Number),
        ("bytes", Number),
        ("mean bytes/image", Number),
        ("unit rejected", Number),
        ("outlier", Words),
    ]);
    for s in shown {
        let flagged = !s.outlier.is_empty();
        let outlier = match flagged {
            true => Text::strong(s.outlier.join(", ")),
            false => Text::default(),
        };
        let cells = [
            Text::code(&s.path),
            s.unit.as_str().into(),
            count(s.rows).into(),
            bytes(s.bytes as f64).into(),
            bytes(s.mean_image_bytes).into(),
            percent(s.unit_rejection_share).into(),
            outlier,
        ];
        table.push(cells, flagged);
    }
    table
}

/// Sampled rows with their thumbnails.
fn samples(r: &StatsReport) -> Option<Section> {
    if r.samples.is_empty() {
        return None;
    }
    let mut section = Section::new("Sampled images");
    section.push(Block::Gallery(r.samples.clone()));
    Some(section)
}

/// What making this report read, and how long it took.
fn cost(r: &StatsReport) -> Section {
    let sc = &r.scan;
    let mut text = Text::plain(format!(
        "Read {} rows in {} row groups of {} shards in {} ({}), {} at a time. Fetched ",
        count(sc.rows),
        count(sc.row_groups),
        count(sc.shards),
        seconds(sc.elapsed_s),
        rate(sc.rows_per_s),
        count(sc.concurrency)
    ))
    .and_strong(bytes(sc.bytes_fetched as f64))
    .and_plain(format!(" of {} stored (", bytes(sc.dataset_bytes as f64)))
    .and_strong(percent(sc.fetched_share))
    .and_plain(format!(
        "): shards {}, rejection files {}, sampled images {}. Columns read: ",
        bytes(sc.shard_bytes_fetched as f64),
        bytes(sc.rejection_bytes_fetched as f64),
        bytes(sc.sample_bytes_fetched as f64)
    ));
    for (i, column) in sc.columns.iter().enumerate() {
        if i > 0 {
            text = text.and_plain(", ");
        }
        text = text.and_code(column);
    }
    let mut section = Section::new("Cost of this report");
    section.push(Block::Paragraph(
        text.and_plain(format!(".{}", retried(sc.store_retries))),
    ));
    section
}
