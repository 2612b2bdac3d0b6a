//! `report.md`: the report as Markdown tables, for terminals, pull requests and notebooks.

use std::fmt::Write;

use super::format::{
    bytes, count, opt_value, percent, rate, retried, score_gaps, seconds, significant,
    summary_cells,
};
use super::histogram::DistributionSummary;
use super::metrics::Metric;
use super::report::{ShardSummary, StatsReport};

/// The per-shard table lists every shard up to this many shards, else only the outliers.
pub const SHARD_TABLE_LIMIT: usize = 200;

/// Makes a cell safe for a Markdown table (no pipes, no line breaks).
pub fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// Shards the per-shard tables show: all of them, or only the outliers of a large dataset.
pub fn shards_to_show(report: &StatsReport) -> (Vec<&ShardSummary>, bool) {
    if report.shards.len() <= SHARD_TABLE_LIMIT {
        (report.shards.iter().collect(), true)
    } else {
        (
            report
                .shards
                .iter()
                .filter(|s| !s.outlier.is_empty())
                .take(SHARD_TABLE_LIMIT)
                .collect(),
            false,
        )
    }
}

/// A numeric column's min / p5 / median / mean / p95 / max as a one-row table.
fn numeric_table(o: &mut String, s: &DistributionSummary) {
    let cells = summary_cells(s);
    let row =
        |f: fn(&(&str, String)) -> String| cells.iter().map(f).collect::<Vec<_>>().join(" | ");
    let _ = writeln!(
        o,
        "| {} |\n|{}\n| {} |\n",
        row(|(head, _)| head.to_string()),
        "---:|".repeat(cells.len()),
        row(|(_, value)| value.clone())
    );
}

/// Renders the report as Markdown.
pub fn render_markdown(r: &StatsReport) -> String {
    let mut o = String::new();
    let t = &r.totals;
    let _ = writeln!(o, "# Dataset statistics: {}\n", cell(&r.dataset.name));
    let _ = writeln!(
        o,
        "`{}` · created {} by {} · report v{} generated {} by {}\n",
        r.dataset.url,
        r.dataset.created_at,
        r.dataset.created_by,
        r.report_version,
        r.generated_at,
        r.generated_by
    );
    for w in &r.warnings {
        let _ = writeln!(o, "> **Warning:** {}\n", cell(w));
    }

    let _ = writeln!(o, "## Summary\n\n| | |\n|---|---:|");
    let _ = writeln!(o, "| items read | {} |", count(t.read));
    let _ = writeln!(
        o,
        "| accepted | {} ({}) |",
        count(t.accepted),
        percent(t.accepted_share)
    );
    let _ = writeln!(
        o,
        "| rejected | {} ({}) |",
        count(t.rejected),
        percent(t.rejected_share)
    );
    let _ = writeln!(
        o,
        "| units / shards / row groups | {} / {} / {} |",
        count(r.dataset.units),
        count(r.dataset.shards),
        count(r.dataset.row_groups)
    );
    let _ = writeln!(
        o,
        "| stored (shards + rejections) | {} |",
        bytes(t.stored_bytes as f64)
    );
    let _ = writeln!(o, "| encoded images | {} |", bytes(t.image_bytes as f64));
    let _ = writeln!(
        o,
        "| mean bytes per image | {} |",
        t.mean_image_bytes.map_or("–".into(), bytes)
    );
    let _ = writeln!(
        o,
        "| source bytes read by ingest | {} |",
        bytes(t.input_bytes as f64)
    );
    match &r.ingest {
        Some(i) => {
            let _ = writeln!(
                o,
                "| ingest throughput | {} items per worker ({} of worker time, {} worker(s)) |",
                rate(i.items_per_worker_second),
                seconds(i.worker_seconds),
                count(i.workers)
            );
            if let (Some(w), Some(ips)) = (i.wall_seconds, i.items_per_second) {
                let _ = writeln!(
                    o,
                    "| ingest wall clock | {} ({} items overall) |",
                    seconds(w),
                    rate(ips)
                );
            }
        }
        None => {
            let _ = writeln!(
                o,
                "| ingest throughput | unknown (no timings in the commit records) |"
            );
        }
    }
    if let Some(s) = &r.dataset.split {
        let _ = writeln!(
            o,
            "| split (val fraction {}, seed {}) | train {} / val {} |",
            significant(s.val_fraction, 3),
            s.seed,
            count(s.train_rows),
            count(s.val_rows)
        );
    }

    let _ = writeln!(o, "\n## Rejections\n");
    if r.rejections.is_empty() {
        let _ = writeln!(o, "No item was rejected.");
    } else {
        let _ = writeln!(
            o,
            "| reason | count | share of read | units | meaning | examples |\n|---|---:|---:|---:|---|---|"
        );
        for x in &r.rejections {
            let ex: Vec<String> = x
                .examples
                .iter()
                .map(|e| format!("`{}`: {}", cell(&e.key), cell(&e.detail)))
                .collect();
            let _ = writeln!(
                o,
                "| `{}` | {} | {} | {} | {} | {} |",
                x.reason,
                count(x.count),
                percent(x.share_of_read),
                count(x.units),
                cell(&x.description),
                ex.join("<br>")
            );
        }
    }

    let d = &r.duplicates;
    let _ = writeln!(o, "\n## Duplicates\n\n| | |\n|---|---:|");
    let _ = writeln!(
        o,
        "| rejected as exact duplicates | {} |",
        count(d.rejected_exact)
    );
    let _ = writeln!(
        o,
        "| rejected as near duplicates | {} |",
        count(d.rejected_near)
    );
    let _ = writeln!(
        o,
        "| distinct content hashes among accepted (estimate) | {} |",
        count(d.distinct_content_hashes)
    );
    let _ = writeln!(
        o,
        "| distinct perceptual hashes among accepted (estimate) | {} |",
        count(d.distinct_phashes)
    );
    let _ = writeln!(
        o,
        "| accepted rows repeating another's bytes (estimate) | {} |",
        count(d.residual_exact_estimate)
    );
    let _ = writeln!(
        o,
        "| accepted rows repeating another's perceptual hash (estimate) | {} |",
        count(d.residual_near_estimate)
    );
    let _ = writeln!(
        o,
        "\nEstimates are HyperLogLog counts (relative standard error {}).",
        percent(d.estimate_standard_error)
    );

    let _ = writeln!(o, "\n## Images and captions\n");
    if !r.image_formats.is_empty() {
        let formats: Vec<String> = r
            .image_formats
            .iter()
            .map(|f| format!("{} {}", f.value, count(f.count)))
            .collect();
        let _ = writeln!(o, "Stored formats: {}.\n", formats.join(", "));
    }
    let _ = writeln!(
        o,
        "| measure | rows | min | p5 | p25 | median | mean | p75 | p95 | max |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for m in Metric::ALL {
        let s = r.distributions.get(m);
        let u = m.unit();
        let q =
            |f: fn(&super::histogram::Quantiles) -> f64| opt_value(s.quantiles.as_ref().map(f), u);
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            m.title(),
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
    let _ = writeln!(
        o,
        "\nPercentiles are within 1 % of an observed value; histograms are in `report.html`."
    );

    let w = &r.caption_words;
    let _ = writeln!(o, "\n## Most frequent caption words\n");
    if w.top.is_empty() {
        let _ = writeln!(o, "No caption words.");
    } else {
        let _ = writeln!(
            o,
            "{} of {} word occurrences counted ({}; common English function words, numbers and single letters left out).\n",
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
        let _ = writeln!(o, "| word | count |\n|---|---:|");
        for c in &w.top {
            let _ = writeln!(o, "| {} | {} |", cell(&c.item), count(c.count));
        }
    }

    if !r.passthrough.is_empty() {
        let _ = writeln!(o, "\n## Passthrough columns\n");
        for p in &r.passthrough {
            let _ = writeln!(
                o,
                "### `{}` ({}, {})\n\n{} rows, {} null.\n",
                cell(&p.column),
                p.kind,
                p.data_type,
                count(p.rows),
                count(p.nulls)
            );
            if let Some(s) = &p.numeric {
                numeric_table(&mut o, s);
            }
            if let Some(tx) = &p.text {
                let _ = writeln!(
                    o,
                    "{}\n\n| value | count |\n|---|---:|",
                    match tx.distinct {
                        Some(n) => format!("{} distinct values.", count(n)),
                        None => "Many distinct values; the most frequent (upper-bound counts):"
                            .to_string(),
                    }
                );
                for c in &tx.top {
                    let _ = writeln!(o, "| {} | {} |", cell(&c.item), count(c.count));
                }
                let _ = writeln!(o);
            }
            if let Some(b) = &p.boolean {
                let _ = writeln!(
                    o,
                    "true {} · false {}\n",
                    count(b.true_count),
                    count(b.false_count)
                );
            }
        }
    }

    if !r.scores.is_empty() {
        let _ = writeln!(o, "\n## CLIP scores\n");
        for sc in &r.scores {
            let _ = writeln!(
                o,
                "### `scores/{}`\n\n{} of {} rows: cosine similarity of image and caption under {} {} (step {}).{}\n",
                cell(&sc.name),
                sc.column,
                count(sc.distribution.count),
                cell(&sc.run),
                cell(&sc.checkpoint),
                sc.step,
                score_gaps(sc)
            );
            numeric_table(&mut o, &sc.distribution);
        }
    }

    let _ = writeln!(o, "\n## Shards\n");
    let _ = writeln!(
        o,
        "{} of {} shards are outliers (|modified z| > {} on mean bytes per image over shards, or on rejection share over units).\n",
        count(r.outliers.flagged_shards),
        count(r.shards.len() as u64),
        r.outliers.threshold
    );
    let _ = writeln!(
        o,
        "| measure | values | median | MAD | spread used | flagged shards |\n|---|---:|---:|---:|---|---:|"
    );
    for m in &r.outliers.metrics {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} |",
            m.metric,
            count(m.values),
            significant(m.median, 4),
            significant(m.mad, 4),
            m.spread,
            count(m.flagged_shards)
        );
    }
    let (shown, all) = shards_to_show(r);
    let _ = writeln!(
        o,
        "\n{}\n",
        if all {
            "Every shard:"
        } else {
            "Outlier shards (the full table is in report.json):"
        }
    );
    let _ = writeln!(
        o,
        "| shard | unit | rows | bytes | mean bytes/image | unit rejected | outlier |\n|---|---|---:|---:|---:|---:|---|"
    );
    for s in shown {
        let _ = writeln!(
            o,
            "| `{}` | {} | {} | {} | {} | {} | {} |",
            cell(&s.path),
            cell(&s.unit),
            count(s.rows),
            bytes(s.bytes as f64),
            bytes(s.mean_image_bytes),
            percent(s.unit_rejection_share),
            if s.outlier.is_empty() {
                String::new()
            } else {
                format!("**{}**", s.outlier.join(", "))
            }
        );
    }

    if !r.samples.is_empty() {
        let _ = writeln!(o, "\n## Sampled images\n");
        for s in &r.samples {
            match &s.thumbnail {
                Some(t) => {
                    let _ = writeln!(
                        o,
                        "![{}]({}) `{}` {}×{}: {}\n",
                        cell(&s.key),
                        t,
                        cell(&s.key),
                        s.width,
                        s.height,
                        cell(&s.caption)
                    );
                }
                None => {
                    let _ = writeln!(
                        o,
                        "`{}` (no thumbnail: {}): {}\n",
                        cell(&s.key),
                        cell(s.error.as_deref().unwrap_or("")),
                        cell(&s.caption)
                    );
                }
            }
        }
    }

    let sc = &r.scan;
    let _ = writeln!(o, "\n## Cost of this report\n");
    let _ = writeln!(
        o,
        "Read {} rows in {} row groups of {} shards in {} ({}), {} at a time. Fetched {} of {} stored ({}): \
         shards {}, rejection files {}, sampled images {}. Columns read: {}.{}",
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
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", "),
        retried(sc.store_retries),
    );
    o
}
