//! The statistics report against datasets whose composition is known exactly: totals, rejections
//! with examples, histograms, frequent words, passthrough columns, per-shard outliers, bytes
//! fetched, determinism, the three output formats, and bad input.

// Helpers outside #[test] functions unwrap too: in tests a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use arrow::datatypes::{DataType, Field, SchemaRef};
use bytes::Bytes;
use flipstream_schemas::{
    DatasetManifest, RejectReason, UnitSpec, WorkerInfo, layout, shard_schema_with_extras,
};
use flipstream_shard::rows::{Scalar, ShardBatchBuilder, ShardRow};
use flipstream_shard::{Dataset, DatasetWriter, Rejection, ShardError, StoreRoot, WriterSettings};
use flipstream_stats::format;
use flipstream_stats::histogram::BinCount;
use flipstream_stats::metrics::Metric;
use flipstream_stats::{
    StatsError, StatsOptions, StatsReport, compute_stats, dataset_stats, write_report,
};
use flipstream_testkit::synthetic::{SyntheticSpec, write_synthetic};

const UNITS: usize = 6;
const ROWS: usize = 20;

fn schema() -> SchemaRef {
    shard_schema_with_extras(&[
        Field::new("similarity", DataType::Float32, true),
        Field::new("label_shape", DataType::Utf8, true),
    ])
}

/// Captions cycle through four texts: topic words cat ×3, red ×3, dog ×2, grass ×1 per cycle.
const CAPTIONS: [&str; 4] = [
    "a red cat",
    "the red dog on grass",
    "red cat and dog",
    "cat",
];

/// Rejections per unit: (reason, how many).
fn rejections(unit: usize) -> Vec<(RejectReason, usize)> {
    use RejectReason::*;
    match unit {
        0 => vec![(TooSmall, 2)],
        1 => vec![(DecodeError, 2)],
        2 => vec![(TooSmall, 1), (CaptionTooShort, 1)],
        3 => vec![(DuplicateExact, 2)],
        4 => vec![(DuplicateNear, 2)],
        _ => vec![(TooSmall, 10), (DecodeError, 10)],
    }
}

fn row(unit: usize, i: usize) -> ShardRow {
    // unit 3 stores ten times larger images: its shards are the byte outliers
    let size = if unit == 3 { 10_000 } else { 1_000 } + (i % 5) * 10;
    // unit 1 repeats unit 0's content hashes: 20 exact duplicates left among accepted rows
    let hash_unit = if unit == 1 { 0 } else { unit };
    let mut content_hash = [0u8; 32];
    content_hash[0] = hash_unit as u8;
    content_hash[1] = i as u8;
    ShardRow {
        key: format!("u{unit}/{i:03}"),
        image: vec![(unit * 31 + i) as u8; size],
        image_format: if unit == 2 { "webp" } else { "jpeg" },
        width: 256,
        height: 256 + 64 * (i % 3) as u32,
        orig_width: 512,
        orig_height: 512 + 128 * (i % 3) as u32,
        caption: CAPTIONS[i % 4].to_string(),
        url: Some(format!("https://example.com/{unit}/{i}.jpg")),
        source: format!("u{unit}.tar"),
        content_hash,
        phash: (unit * 1000 + i) as u64,
        extras: vec![
            (i % 10 != 9).then_some(Scalar::Float(0.25 + (i % 5) as f64 * 0.05)),
            Some(Scalar::Str(
                if i.is_multiple_of(2) {
                    "circle"
                } else {
                    "square"
                }
                .into(),
            )),
        ],
    }
}

/// Six units of 20 rows (shards of 12 + 8 rows, row groups of 8), rejections as above.
async fn write_controlled(root: &StoreRoot) {
    let manifest = DatasetManifest::new("controlled".into(), serde_json::json!({}));
    let settings = WriterSettings {
        row_group_rows: 8,
        shard_rows: 12,
        ..Default::default()
    };
    let w = DatasetWriter::open(root.clone(), manifest, settings)
        .await
        .unwrap();
    for u in 0..UNITS {
        let spec = UnitSpec {
            id: format!("u{u}"),
            source: format!("file:///in/u{u}.tar"),
            kind: "webdataset".into(),
            start: None,
            end: None,
        };
        let mut unit = w
            .begin_unit(spec, schema(), WorkerInfo::default())
            .await
            .unwrap();
        let mut b = ShardBatchBuilder::new(schema());
        for i in 0..ROWS {
            b.push(row(u, i)).unwrap();
        }
        unit.write(&b.finish().unwrap()).await.unwrap();
        let mut n = 0;
        for (reason, count) in rejections(u) {
            for _ in 0..count {
                unit.reject(&Rejection {
                    key: format!("u{u}/r{n}"),
                    source: format!("u{u}.tar"),
                    url: None,
                    reason,
                    detail: format!("{} detail {n}", reason.code()),
                });
                n += 1;
            }
        }
        unit.commit((ROWS + n) as u64, 0).await.unwrap();
    }
}

async fn controlled(name: &str) -> (StoreRoot, StatsReport) {
    let root = StoreRoot::parse(&format!("memory://{name}/ds")).unwrap();
    write_controlled(&root).await;
    let out = dataset_stats(
        root.url(),
        &StatsOptions {
            concurrency: 4,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    (root, out.report)
}

fn bins(b: &[BinCount]) -> Vec<(f64, u64)> {
    b.iter().map(|b| (b.lo, b.count)).collect()
}

#[tokio::test]
async fn totals_rejections_and_examples_match_the_composition() {
    let (_, r) = controlled("stats-totals").await;
    assert_eq!(
        (r.totals.read, r.totals.accepted, r.totals.rejected),
        (150, 120, 30)
    );
    assert_eq!(
        (r.dataset.units, r.dataset.shards, r.dataset.row_groups),
        (6, 12, 18)
    );
    let reasons: Vec<(&str, u64, u64)> = r
        .rejections
        .iter()
        .map(|x| (x.reason.as_str(), x.count, x.units))
        .collect();
    assert_eq!(
        reasons,
        [
            ("too_small", 13, 3),
            ("decode_error", 12, 2),
            ("duplicate_exact", 2, 1),
            ("duplicate_near", 2, 1),
            ("caption_too_short", 1, 1)
        ]
    );
    let too_small = &r.rejections[0];
    let keys: Vec<&str> = too_small.examples.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        ["u0/r0", "u0/r1", "u2/r0"],
        "first units in canonical order"
    );
    assert_eq!(too_small.examples[2].detail, "too_small detail 0");
    assert_eq!(too_small.examples[2].unit, "u2");
    assert_eq!(
        r.rejections[4].examples.len(),
        1,
        "only one caption_too_short exists"
    );
    assert!((too_small.share_of_read - 13.0 / 150.0).abs() < 1e-12);
    assert_eq!(r.duplicates.rejected_exact, 2);
    assert_eq!(r.duplicates.rejected_near, 2);
    assert!(
        (99..=101).contains(&r.duplicates.distinct_content_hashes),
        "{:?}",
        r.duplicates
    );
    assert!(
        (119..=121).contains(&r.duplicates.distinct_phashes),
        "{:?}",
        r.duplicates
    );
    let formats: Vec<(&str, u64)> = r
        .image_formats
        .iter()
        .map(|f| (f.value.as_str(), f.count))
        .collect();
    assert_eq!(formats, [("jpeg", 100), ("webp", 20)]);
    let image_bytes: u64 = (0..UNITS)
        .flat_map(|u| {
            (0..ROWS).map(move |i| (if u == 3 { 10_000 } else { 1_000 } + (i % 5) * 10) as u64)
        })
        .sum();
    assert_eq!(r.totals.image_bytes, image_bytes);
    assert_eq!(
        r.distributions.image_bytes.sum, image_bytes as f64,
        "the column agrees with the commit records"
    );
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[tokio::test]
async fn histograms_words_and_passthrough_columns_are_exact() {
    let (_, r) = controlled("stats-hist").await;
    let d = &r.distributions;
    assert_eq!(d.width.count, 120);
    assert_eq!(bins(&d.width.histogram.bins), [(256.0, 120)]);
    // heights 256, 320, 384 (i % 3 over 20 rows: 7, 7, 6 per unit) fall in log bins 40, 42 and
    // 44 (8 per octave from 8 px)
    let h = bins(&d.height.histogram.bins);
    assert_eq!(
        h.iter().map(|b| b.1).collect::<Vec<_>>(),
        [42, 0, 42, 0, 36]
    );
    assert_eq!(h[0].0, 256.0);
    assert!((h[2].0 - 8.0 * 2f64.powf(42.0 / 8.0)).abs() < 1e-9);
    assert_eq!(d.height.min, Some(256.0));
    assert_eq!(d.height.max, Some(384.0));
    assert_eq!(
        d.height.mean,
        Some((42.0 * 256.0 + 42.0 * 320.0 + 36.0 * 384.0) / 120.0)
    );
    // caption words: 1, 3, 4, 5 words, 30 captions each
    assert_eq!(
        bins(&d.caption_words.histogram.bins),
        [(1.0, 30), (2.0, 0), (3.0, 30), (4.0, 30), (5.0, 30)]
    );
    assert_eq!(d.caption_words.mean, Some(3.25));
    assert_eq!(
        d.caption_words.histogram.below + d.caption_words.histogram.above,
        0
    );
    let p50 = d.orig_height.quantiles.as_ref().unwrap().p50;
    assert!((p50 - 640.0).abs() <= 6.4, "median within 1 %: {p50}");
    // aspect 1.0 for a third of the rows, megapixels exact at the extremes
    assert_eq!(d.aspect_ratio.max, Some(1.0));
    assert_eq!(d.megapixels.min, Some(256.0 * 256.0 / 1e6));
    for m in Metric::ALL {
        let s = d.get(m);
        let in_bins: u64 = s.histogram.bins.iter().map(|b| b.count).sum();
        assert_eq!(
            in_bins + s.histogram.below + s.histogram.above,
            s.count,
            "{}",
            m.name()
        );
    }

    let w = &r.caption_words;
    assert!(w.exact);
    let top: Vec<(&str, u64)> = w.top.iter().map(|c| (c.item.as_str(), c.count)).collect();
    assert_eq!(top, [("cat", 90), ("red", 90), ("dog", 60), ("grass", 30)]);
    assert_eq!(w.words_counted, 270);

    let cols: BTreeMap<&str, _> = r
        .passthrough
        .iter()
        .map(|p| (p.column.as_str(), p))
        .collect();
    let shape = cols["label_shape"];
    assert_eq!(
        (shape.kind.as_str(), shape.rows, shape.nulls),
        ("text", 120, 0)
    );
    let text = shape.text.as_ref().unwrap();
    assert_eq!(text.distinct, Some(2));
    let values: Vec<(&str, u64)> = text
        .top
        .iter()
        .map(|c| (c.item.as_str(), c.count))
        .collect();
    assert_eq!(values, [("circle", 60), ("square", 60)]);
    let sim = cols["similarity"];
    assert_eq!(
        (sim.kind.as_str(), sim.rows, sim.nulls),
        ("numeric", 120, 12)
    );
    let s = sim.numeric.as_ref().unwrap();
    assert_eq!(s.count, 108);
    assert!(
        (s.min.unwrap() - 0.25).abs() < 1e-6 && (s.max.unwrap() - 0.45).abs() < 1e-6,
        "{s:?}"
    );
    assert_eq!(s.histogram.bins.iter().map(|b| b.count).sum::<u64>(), 108);
}

#[tokio::test]
async fn per_shard_table_flags_the_outliers() {
    let (_, r) = controlled("stats-shards").await;
    let rows: Vec<(&str, u64, u64)> = r
        .shards
        .iter()
        .map(|s| (s.path.as_str(), s.rows, s.row_groups))
        .collect();
    assert_eq!(rows.len(), 12);
    assert_eq!(rows[0], ("shards/u0-00000.parquet", 12, 2));
    assert_eq!(rows[1], ("shards/u0-00001.parquet", 8, 1));
    let flagged: Vec<(&str, &[String])> = r
        .shards
        .iter()
        .filter(|s| !s.outlier.is_empty())
        .map(|s| (s.unit.as_str(), s.outlier.as_slice()))
        .collect();
    assert_eq!(
        flagged,
        [
            ("u3", &["mean_image_bytes".to_string()][..]),
            ("u3", &["mean_image_bytes".to_string()][..]),
            ("u5", &["unit_rejection_share".to_string()][..]),
            ("u5", &["unit_rejection_share".to_string()][..]),
        ]
    );
    assert_eq!(r.outliers.flagged_shards, 4);
    let share = r
        .shards
        .iter()
        .find(|s| s.unit == "u5")
        .unwrap()
        .unit_rejection_share;
    assert!((share - 0.5).abs() < 1e-12);
}

#[tokio::test]
async fn images_are_never_read_and_fetched_bytes_are_a_small_share() {
    let root = StoreRoot::parse("memory://stats-bytes/ds").unwrap();
    let spec = SyntheticSpec {
        units: 2,
        rows_per_unit: 120,
        rejections_per_unit: 6,
        mean_image_bytes: 30_000,
        settings: WriterSettings {
            row_group_rows: 32,
            ..Default::default()
        },
        ..Default::default()
    };
    write_synthetic(&root, &spec).await.unwrap();
    let r = dataset_stats(root.url(), &StatsOptions::default())
        .await
        .unwrap()
        .report;
    assert_eq!(r.scan.rows, 240);
    assert!(
        !r.scan.columns.iter().any(|c| c == "image"),
        "{:?}",
        r.scan.columns
    );
    assert!(r.scan.sample_bytes_fetched == 0);
    assert!(r.scan.shard_bytes_fetched > 0 && r.scan.rejection_bytes_fetched > 0);
    assert!(
        r.scan.fetched_share < 0.05,
        "fetched {} of {} ({})",
        r.scan.bytes_fetched,
        r.scan.dataset_bytes,
        r.scan.fetched_share
    );
    // image sizes are measured from the `image_bytes` column all the same
    assert_eq!(r.distributions.image_bytes.count, 240);
    assert!(r.distributions.image_bytes.min.unwrap() >= 7_500.0);
}

fn without_timings(mut r: StatsReport) -> StatsReport {
    r.generated_at.clear();
    r.scan.elapsed_s = 0.0;
    r.scan.rows_per_s = 0.0;
    r.scan.concurrency = 0;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn reports_do_not_depend_on_concurrency() {
    let root = StoreRoot::parse("memory://stats-determinism/ds").unwrap();
    let spec = SyntheticSpec {
        units: 3,
        rows_per_unit: 400,
        rejections_per_unit: 10,
        mean_image_bytes: 500,
        settings: WriterSettings {
            row_group_rows: 16,
            shard_rows: 150,
            ..Default::default()
        },
        ..Default::default()
    };
    write_synthetic(&root, &spec).await.unwrap();
    let ds = Dataset::open_root(root).await.unwrap();
    let one = compute_stats(
        &ds,
        &StatsOptions {
            concurrency: 1,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .report;
    let many = compute_stats(
        &ds,
        &StatsOptions {
            concurrency: 9,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .report;
    assert_eq!(
        one.scan.row_groups,
        3 * (10 + 10 + 7),
        "shards of 150, 150, 100 rows in row groups of 16"
    );
    assert_eq!(
        serde_json::to_value(without_timings(one)).unwrap(),
        serde_json::to_value(without_timings(many)).unwrap()
    );
}

#[tokio::test]
async fn json_markdown_and_html_carry_the_same_numbers() {
    let (root, _) = controlled("stats-formats").await;
    let out = dataset_stats(root.url(), &StatsOptions::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = write_report(dir.path(), &out).unwrap();
    let written = std::fs::read(&files.json).unwrap();
    assert_eq!(
        written,
        serde_json::to_vec_pretty(&out.report).unwrap(),
        "report.json is the report"
    );
    let parsed: StatsReport = serde_json::from_slice(&written).unwrap();
    assert_eq!(parsed.shards.len(), out.report.shards.len());
    let json = &out.report;
    let md = std::fs::read_to_string(&files.markdown).unwrap();
    let html = std::fs::read_to_string(&files.html).unwrap();
    assert!(
        html.starts_with("<!DOCTYPE html>") && html.contains("<svg"),
        "self-contained page with SVG charts"
    );
    for fetch in ["<script", "src=\"http", "href=", "@import", "url("] {
        assert!(
            !html.contains(fetch),
            "the page must not load anything: found {fetch:?}"
        );
    }
    let mut expected = vec![
        format!("| items read | {} |", format::count(json.totals.read)),
        format!(
            "| accepted | {} ({}) |",
            format::count(json.totals.accepted),
            format::percent(json.totals.accepted_share)
        ),
    ];
    for x in &json.rejections {
        expected.push(format!(
            "| `{}` | {} | {} |",
            x.reason,
            format::count(x.count),
            format::percent(x.share_of_read)
        ));
    }
    for e in expected {
        assert!(md.contains(&e), "report.md lacks {e:?}");
    }
    // the same numbers, formatted the same way, in the HTML
    let mut numbers = vec![
        format::count(json.totals.read),
        format::count(json.totals.rejected),
        format::percent(json.totals.accepted_share),
    ];
    for x in &json.rejections {
        numbers.push(format!(
            r#"<code>{}</code></td><td class="n">{}</td>"#,
            x.reason,
            format::count(x.count)
        ));
    }
    for m in Metric::ALL {
        let s = json.distributions.get(m);
        let p50 = format::value(s.quantiles.as_ref().unwrap().p50, m.unit());
        let row = format!(
            "| {} | {} | {} |",
            m.title(),
            format::count(s.count),
            format::opt_value(s.min, m.unit())
        );
        assert!(md.contains(&row), "report.md lacks {row:?}");
        assert!(
            md.contains(&format!("| {p50} |")),
            "report.md lacks the median of {}",
            m.name()
        );
        numbers.push(format!(
            r#"<td>{}</td><td class="n">{}</td>"#,
            m.title(),
            format::count(s.count)
        ));
        numbers.push(format!(r#"<td class="n">{p50}</td>"#));
    }
    for c in &json.caption_words.top {
        assert!(md.contains(&format!("| {} | {} |", c.item, format::count(c.count))));
        numbers.push(format!(
            r#"<td>{}</td><td class="n">{}</td>"#,
            c.item,
            format::count(c.count)
        ));
    }
    for s in &json.shards {
        numbers.push(format!("<code>{}</code>", s.path));
        assert!(md.contains(&format!(
            "| `{}` | {} | {} |",
            s.path,
            s.unit,
            format::count(s.rows)
        )));
    }
    for n in numbers {
        assert!(html.contains(&n), "report.html lacks {n:?}");
    }
}

#[tokio::test]
async fn sampled_rows_get_thumbnails_and_only_they_read_images() {
    let root = StoreRoot::parse("memory://stats-samples/ds").unwrap();
    let spec = SyntheticSpec {
        units: 2,
        rows_per_unit: 30,
        rejections_per_unit: 0,
        real_images: true,
        settings: WriterSettings {
            row_group_rows: 10,
            ..Default::default()
        },
        ..Default::default()
    };
    write_synthetic(&root, &spec).await.unwrap();
    let out = dataset_stats(
        root.url(),
        &StatsOptions {
            sample_images: 4,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let keys: Vec<&str> = out.report.samples.iter().map(|s| s.key.as_str()).collect();
    // 60 rows, 4 samples: rows 7, 22, 37, 52
    assert_eq!(
        keys,
        [
            "unit-0000/000007",
            "unit-0000/000022",
            "unit-0001/000007",
            "unit-0001/000022"
        ]
    );
    assert_eq!(out.thumbnails.len(), 4);
    for (s, t) in out.report.samples.iter().zip(&out.thumbnails) {
        assert_eq!(s.thumbnail.as_deref(), Some(t.file_name.as_str()));
        let img = image::load_from_memory(&t.jpeg).unwrap();
        assert!(img.width() <= 160 && img.height() <= 160);
        assert!(s.caption.contains("photo number"));
    }
    assert!(out.report.scan.sample_bytes_fetched > 0);
    assert!(out.report.rejections.is_empty());
}

#[tokio::test]
async fn bad_input_is_a_clear_error_naming_the_object() {
    // not a dataset
    let err = dataset_stats("memory://stats-bad-none/ds", &StatsOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StatsError::Shard(ShardError::NotADataset { .. })),
        "{err}"
    );
    assert!(
        err.to_string().contains("memory://stats-bad-none/ds"),
        "{err}"
    );

    // a manifest and nothing committed
    let root = StoreRoot::parse("memory://stats-bad-empty/ds").unwrap();
    DatasetWriter::open(
        root.clone(),
        DatasetManifest::new("x".into(), serde_json::json!({})),
        WriterSettings::default(),
    )
    .await
    .unwrap();
    let err = dataset_stats(root.url(), &StatsOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StatsError::Empty { .. }), "{err}");

    let fresh = |name: &str| {
        let name = name.to_string();
        async move {
            let root = StoreRoot::parse(&format!("memory://{name}/ds")).unwrap();
            write_controlled(&root).await;
            root
        }
    };

    // a corrupt commit record
    let root = fresh("stats-bad-record").await;
    root.put(
        &layout::commit_path("u2"),
        Bytes::from_static(b"{\"format\": "),
    )
    .await
    .unwrap();
    let err = dataset_stats(root.url(), &StatsOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("_flipstream/commits/u2.json"),
        "{err}"
    );

    // a missing shard
    let root = fresh("stats-bad-missing").await;
    root.delete("shards/u4-00001.parquet").await.unwrap();
    let err = dataset_stats(root.url(), &StatsOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("shards/u4-00001.parquet"), "{err}");

    // a truncated shard
    let root = fresh("stats-bad-truncated").await;
    let body = root.get("shards/u1-00000.parquet").await.unwrap();
    root.put("shards/u1-00000.parquet", body.slice(0..body.len() / 2))
        .await
        .unwrap();
    let err = dataset_stats(root.url(), &StatsOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("shards/u1-00000.parquet"), "{err}");

    // a shard with the wrong schema: a rejection file where a shard should be
    let root = fresh("stats-bad-schema").await;
    let rejections = root.get("rejections/u0.parquet").await.unwrap();
    root.put("shards/u5-00000.parquet", rejections.clone())
        .await
        .unwrap();
    let record_path = layout::commit_path("u5");
    let mut record: serde_json::Value =
        serde_json::from_slice(&root.get(&record_path).await.unwrap()).unwrap();
    record["shards"][0]["bytes"] = serde_json::json!(rejections.len());
    root.put(
        &record_path,
        Bytes::from(serde_json::to_vec(&record).unwrap()),
    )
    .await
    .unwrap();
    let err = dataset_stats(root.url(), &StatsOptions::default())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("shards/u5-00000.parquet") && text.contains("expected shard"),
        "{text}"
    );
}
