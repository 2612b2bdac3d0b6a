//! `report.html`: one self-contained page (inline CSS, inline SVG charts, thumbnails as data URLs;
//! no scripts, no network) with the same numbers as `report.md`.

use std::fmt::Write;

use base64::Engine;

use super::StatsError;
use super::charts::{bars_svg, histogram_svg, scatter_svg};
use super::format::{
    bytes, count, opt_value, percent, rate, retried, score_gaps, seconds, significant,
    summary_cells,
};
use super::histogram::DistributionSummary;
use super::markdown::shards_to_show;
use super::metrics::{Metric, ValueUnit};
use super::report::StatsReport;
use super::samples::Thumbnail;

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
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

fn card(o: &mut String, label: &str, value: &str, sub: &str) {
    let _ = write!(
        o,
        r#"<div class="card"><div class="label">{}</div><div class="value">{}</div><div class="sub">{}</div></div>"#,
        escape(label),
        escape(value),
        escape(sub)
    );
}

/// A numeric column's histogram beside its min / p5 / median / mean / p95 / max.
fn numeric_block(o: &mut String, title: &str, s: &DistributionSummary) -> Result<(), StatsError> {
    o.push_str(r#"<div class="charts">"#);
    chart(o, &histogram_svg(title, &s.histogram, ValueUnit::Decimal)?);
    let cells = summary_cells(s);
    o.push_str(r#"<div class="chart"><table class="plain"><tr>"#);
    for (head, _) in &cells {
        let _ = write!(o, r#"<th class="n">{head}</th>"#);
    }
    o.push_str("</tr><tr>");
    for (_, value) in &cells {
        let _ = write!(o, r#"<td class="n">{value}</td>"#);
    }
    o.push_str("</tr></table></div></div>");
    Ok(())
}

fn chart(o: &mut String, svg: &str) {
    let _ = write!(o, r#"<div class="chart">{svg}</div>"#);
}

/// Renders the report as a self-contained HTML page.
pub fn render_html(r: &StatsReport, thumbnails: &[Thumbnail]) -> Result<String, StatsError> {
    let mut o = String::new();
    let t = &r.totals;
    let title = format!("Dataset statistics: {}", r.dataset.name);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body><main>",
        escape(&title)
    );
    let _ = write!(o, "<h1>{}</h1>", escape(&title));
    let _ = write!(
        o,
        r#"<div class="meta"><code>{}</code> · created {} by {} · report v{} generated {} by {}</div>"#,
        escape(&r.dataset.url),
        escape(&r.dataset.created_at),
        escape(&r.dataset.created_by),
        r.report_version,
        escape(&r.generated_at),
        escape(&r.generated_by)
    );
    for w in &r.warnings {
        let _ = write!(
            o,
            r#"<div class="warn"><b>Warning:</b> {}</div>"#,
            escape(w)
        );
    }

    // summary cards
    o.push_str(r#"<div class="cards">"#);
    card(
        &mut o,
        "items read",
        &count(t.read),
        &format!("{} units", count(r.dataset.units)),
    );
    card(
        &mut o,
        "accepted",
        &count(t.accepted),
        &percent(t.accepted_share),
    );
    card(
        &mut o,
        "rejected",
        &count(t.rejected),
        &percent(t.rejected_share),
    );
    card(
        &mut o,
        "shards",
        &count(r.dataset.shards),
        &format!("{} row groups", count(r.dataset.row_groups)),
    );
    card(
        &mut o,
        "stored",
        &bytes(t.stored_bytes as f64),
        "shards + rejection files",
    );
    card(
        &mut o,
        "mean bytes per image",
        &t.mean_image_bytes.map_or("–".into(), bytes),
        &format!("{} of images", bytes(t.image_bytes as f64)),
    );
    match &r.ingest {
        Some(i) => card(
            &mut o,
            "ingest throughput",
            &rate(i.items_per_worker_second),
            &format!(
                "items per second per worker · {} worker(s)",
                count(i.workers)
            ),
        ),
        None => card(
            &mut o,
            "ingest throughput",
            "unknown",
            "no timings in the commit records",
        ),
    }
    if let Some(s) = &r.dataset.split {
        card(
            &mut o,
            "split",
            &format!("{} / {}", count(s.train_rows), count(s.val_rows)),
            &format!(
                "train / val, val fraction {}",
                significant(s.val_fraction, 3)
            ),
        );
    }
    o.push_str("</div>");

    // rejections
    o.push_str("<h2>Rejections</h2>");
    if r.rejections.is_empty() {
        o.push_str("<p>No item was rejected.</p>");
    } else {
        let items: Vec<(String, u64)> = r
            .rejections
            .iter()
            .map(|x| (x.reason.clone(), x.count))
            .collect();
        o.push_str(r#"<div class="charts">"#);
        chart(
            &mut o,
            &bars_svg(
                "Rejected items by reason (share of items read)",
                &items,
                Some(t.read),
            )?,
        );
        o.push_str("</div>");
        o.push_str(r#"<table><tr><th>reason</th><th class="n">count</th><th class="n">share of read</th><th class="n">units</th><th>meaning</th><th>examples</th></tr>"#);
        for x in &r.rejections {
            let ex: Vec<String> = x
                .examples
                .iter()
                .map(|e| format!("<code>{}</code> {}", escape(&e.key), escape(&e.detail)))
                .collect();
            let _ = write!(
                o,
                r#"<tr><td><code>{}</code></td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td>{}</td><td class="examples">{}</td></tr>"#,
                escape(&x.reason),
                count(x.count),
                percent(x.share_of_read),
                count(x.units),
                escape(&x.description),
                ex.join("<br>")
            );
        }
        o.push_str("</table>");
    }

    // duplicates
    let d = &r.duplicates;
    o.push_str("<h2>Duplicates</h2><table>");
    for (label, v) in [
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
        let _ = write!(
            o,
            r#"<tr><td>{label}</td><td class="n">{}</td></tr>"#,
            count(v)
        );
    }
    let _ = write!(
        o,
        r#"</table><p class="note">Estimates are HyperLogLog counts (relative standard error {}).</p>"#,
        percent(d.estimate_standard_error)
    );

    // distributions
    o.push_str("<h2>Images and captions</h2>");
    if !r.image_formats.is_empty() {
        let formats: Vec<String> = r
            .image_formats
            .iter()
            .map(|f| format!("{} {}", escape(&f.value), count(f.count)))
            .collect();
        let _ = write!(o, "<p>Stored formats: {}.</p>", formats.join(", "));
    }
    o.push_str(r#"<table><tr><th>measure</th><th class="n">rows</th><th class="n">min</th><th class="n">p5</th><th class="n">p25</th><th class="n">median</th><th class="n">mean</th><th class="n">p75</th><th class="n">p95</th><th class="n">max</th></tr>"#);
    for m in Metric::ALL {
        let s = r.distributions.get(m);
        let u = m.unit();
        let q =
            |f: fn(&super::histogram::Quantiles) -> f64| opt_value(s.quantiles.as_ref().map(f), u);
        let _ = write!(
            o,
            r#"<tr><td>{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td></tr>"#,
            escape(m.title()),
            count(s.count),
            opt_value(s.min, u),
            q(|q| q.p05),
            q(|q| q.p25),
            q(|q| q.p50),
            opt_value(s.mean, u),
            q(|q| q.p75),
            q(|q| q.p95),
            opt_value(s.max, u)
        );
    }
    o.push_str(r#"</table><p class="note">Percentiles are within 1 % of an observed value. Histograms of sizes use log-spaced bins (8 per doubling; megapixels 4).</p><div class="charts">"#);
    for m in Metric::ALL {
        let s = r.distributions.get(m);
        chart(&mut o, &histogram_svg(m.title(), &s.histogram, m.unit())?);
    }
    o.push_str("</div>");

    // words
    let w = &r.caption_words;
    o.push_str("<h2>Most frequent caption words</h2>");
    if w.top.is_empty() {
        o.push_str("<p>No caption words.</p>");
    } else {
        let _ = write!(
            o,
            r#"<p class="note">{} of {} word occurrences counted ({}; common English function words, numbers and single letters left out).</p>"#,
            if w.exact {
                "Exact counts"
            } else {
                "Upper-bound counts"
            },
            count(w.words_counted),
            if w.exact {
                "every word fits the summary".to_string()
            } else {
                format!("words not listed occur at most {} times", count(w.floor))
            }
        );
        let items: Vec<(String, u64)> = w
            .top
            .iter()
            .take(30)
            .map(|c| (c.item.clone(), c.count))
            .collect();
        o.push_str(r#"<div class="charts">"#);
        chart(&mut o, &bars_svg("Top caption words", &items, None)?);
        // every listed word, three word/count pairs per row
        o.push_str(r#"<div class="chart"><table class="plain"><tr>"#);
        for _ in 0..3 {
            o.push_str(r#"<th>word</th><th class="n">count</th>"#);
        }
        o.push_str("</tr>");
        for row in w.top.chunks(3) {
            o.push_str("<tr>");
            for c in row {
                let _ = write!(
                    o,
                    r#"<td>{}</td><td class="n">{}</td>"#,
                    escape(&c.item),
                    count(c.count)
                );
            }
            o.push_str("</tr>");
        }
        o.push_str("</table></div></div>");
    }

    // passthrough
    if !r.passthrough.is_empty() {
        o.push_str("<h2>Passthrough columns</h2>");
        for p in &r.passthrough {
            let _ = write!(
                o,
                "<h3><code>{}</code> ({}, {})</h3><p>{} rows, {} null.</p>",
                escape(&p.column),
                escape(&p.kind),
                escape(&p.data_type),
                count(p.rows),
                count(p.nulls)
            );
            if let Some(s) = &p.numeric {
                numeric_block(&mut o, &p.column, s)?;
            }
            if let Some(tx) = &p.text {
                let _ = write!(
                    o,
                    "<p>{}</p>",
                    match tx.distinct {
                        Some(n) => format!("{} distinct values.", count(n)),
                        None => "Many distinct values; the most frequent (upper-bound counts):"
                            .to_string(),
                    }
                );
                let items: Vec<(String, u64)> =
                    tx.top.iter().map(|c| (c.item.clone(), c.count)).collect();
                o.push_str(r#"<div class="charts">"#);
                chart(
                    &mut o,
                    &bars_svg(
                        &format!("{}: most frequent values", p.column),
                        &items,
                        Some(p.rows),
                    )?,
                );
                o.push_str(r#"<div class="chart"><table class="plain"><tr><th>value</th><th class="n">count</th></tr>"#);
                for c in &tx.top {
                    let _ = write!(
                        o,
                        r#"<tr><td>{}</td><td class="n">{}</td></tr>"#,
                        escape(&c.item),
                        count(c.count)
                    );
                }
                o.push_str("</table></div></div>");
            }
            if let Some(b) = &p.boolean {
                let _ = write!(
                    o,
                    "<p>true {} · false {}</p>",
                    count(b.true_count),
                    count(b.false_count)
                );
            }
        }
    }

    // score sidecars
    if !r.scores.is_empty() {
        o.push_str("<h2>CLIP scores</h2>");
        for sc in &r.scores {
            let _ = write!(
                o,
                "<h3><code>scores/{}</code></h3><p>{} of {} rows: cosine similarity of image and caption under {} {} (step {}).{}</p>",
                escape(&sc.name),
                escape(&sc.column),
                count(sc.distribution.count),
                escape(&sc.run),
                escape(&sc.checkpoint),
                sc.step,
                escape(&score_gaps(sc))
            );
            numeric_block(&mut o, &sc.column, &sc.distribution)?;
        }
    }

    // shards
    o.push_str("<h2>Shards</h2>");
    let _ = write!(
        o,
        r#"<p>{} of {} shards are outliers (|modified z| &gt; {} on mean bytes per image over shards, or on rejection share over units).</p>"#,
        count(r.outliers.flagged_shards),
        count(r.shards.len() as u64),
        r.outliers.threshold
    );
    o.push_str(r#"<table><tr><th>measure</th><th class="n">values</th><th class="n">median</th><th class="n">MAD</th><th>spread used</th><th class="n">flagged shards</th></tr>"#);
    for m in &r.outliers.metrics {
        let _ = write!(
            o,
            r#"<tr><td>{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td>{}</td><td class="n">{}</td></tr>"#,
            escape(&m.metric),
            count(m.values),
            significant(m.median, 4),
            significant(m.mad, 4),
            escape(&m.spread),
            count(m.flagged_shards)
        );
    }
    o.push_str("</table>");
    let bytes_points: Vec<(f64, bool)> = r
        .shards
        .iter()
        .map(|s| {
            (
                s.mean_image_bytes,
                s.outlier.iter().any(|m| m == "mean_image_bytes"),
            )
        })
        .collect();
    let share_points: Vec<(f64, bool)> = r
        .shards
        .iter()
        .map(|s| {
            (
                s.unit_rejection_share,
                s.outlier.iter().any(|m| m == "unit_rejection_share"),
            )
        })
        .collect();
    o.push_str(r#"<div class="charts">"#);
    chart(
        &mut o,
        &scatter_svg(
            "Mean bytes per image, per shard (outliers red)",
            "bytes per image",
            &bytes_points,
            ValueUnit::Bytes,
        )?,
    );
    chart(
        &mut o,
        &scatter_svg(
            "Rejection share of the shard's unit (outliers red)",
            "rejected / read",
            &share_points,
            ValueUnit::Ratio,
        )?,
    );
    o.push_str("</div>");
    let (shown, all) = shards_to_show(r);
    let _ = write!(
        o,
        "<p>{}</p>",
        if all {
            "Every shard:"
        } else {
            "Outlier shards (the full table is in report.json):"
        }
    );
    o.push_str(r#"<table><tr><th>shard</th><th>unit</th><th class="n">rows</th><th class="n">bytes</th><th class="n">mean bytes/image</th><th class="n">unit rejected</th><th>outlier</th></tr>"#);
    for s in shown {
        let _ = write!(
            o,
            r#"<tr{}><td><code>{}</code></td><td>{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td>{}</td></tr>"#,
            if s.outlier.is_empty() {
                ""
            } else {
                r#" class="outlier""#
            },
            escape(&s.path),
            escape(&s.unit),
            count(s.rows),
            bytes(s.bytes as f64),
            bytes(s.mean_image_bytes),
            percent(s.unit_rejection_share),
            escape(&s.outlier.join(", "))
        );
    }
    o.push_str("</table>");

    // samples
    if !r.samples.is_empty() {
        o.push_str(r#"<h2>Sampled images</h2><div class="grid">"#);
        for s in &r.samples {
            let img = s
                .thumbnail
                .as_ref()
                .and_then(|name| thumbnails.iter().find(|t| &t.file_name == name))
                .map(|t| {
                    format!(
                        r#"<img alt="{}" src="data:image/jpeg;base64,{}">"#,
                        escape(&s.key),
                        base64::engine::general_purpose::STANDARD.encode(&t.jpeg)
                    )
                })
                .unwrap_or_else(|| {
                    format!(
                        "<p>no thumbnail: {}</p>",
                        escape(s.error.as_deref().unwrap_or("missing"))
                    )
                });
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

    // cost
    let sc = &r.scan;
    let _ = write!(
        o,
        "<h2>Cost of this report</h2><p>Read {} rows in {} row groups of {} shards in {} ({}), {} at a time. \
         Fetched <b>{}</b> of {} stored (<b>{}</b>): shards {}, rejection files {}, sampled images {}. Columns read: {}.{}</p>",
        count(sc.rows),
        count(sc.row_groups),
        count(sc.shards),
        seconds(sc.elapsed_s),
        rate(sc.rows_per_s),
        count(sc.concurrency),
        bytes(sc.bytes_fetched as f64),
        bytes(sc.dataset_bytes as f64),
        percent(sc.fetched_share),
        bytes(sc.shard_bytes_fetched as f64),
        bytes(sc.rejection_bytes_fetched as f64),
        bytes(sc.sample_bytes_fetched as f64),
        sc.columns
            .iter()
            .map(|c| format!("<code>{}</code>", escape(c)))
            .collect::<Vec<_>>()
            .join(", "),
        retried(sc.store_retries),
    );
    o.push_str("</main></body></html>\n");
    Ok(o)
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
