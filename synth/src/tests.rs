//! End-to-end tests of [`generate`]: every layout, every dirt kind checked against the files,
//! determinism across thread counts, and the output-safety rules.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use image::{AnimationDecoder, ImageDecoder};

use super::encode::find_jpeg_segment;
use super::*;

fn config(count: u64, layout: Layout, shard_size: u64, dirt: &str) -> SynthConfig {
    SynthConfig {
        count,
        layout,
        shard_size,
        dirt: dirt.parse().unwrap(),
        seed: 17,
        ..SynthConfig::default()
    }
}

fn run(cfg: &SynthConfig, out: &Path) -> SynthSummary {
    generate(cfg, out, Overwrite::Refuse, &()).unwrap()
}

fn records(out: &Path) -> Vec<SidecarRecord<'static>> {
    std::fs::read_to_string(out.join(SIDECAR_FILE))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<SidecarRecord<'static>>(l).unwrap())
        .collect()
}

fn tar_members(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
    let mut out = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        assert!(out.insert(name, data).is_none(), "duplicate member");
    }
    out
}

/// Image bytes (if written), caption bytes and JSON of one WebDataset item.
type Item = (Option<Vec<u8>>, Vec<u8>, serde_json::Value);

/// Every item of a WebDataset output, by key.
fn webdataset_items(out: &Path, recs: &[SidecarRecord<'_>]) -> BTreeMap<String, Item> {
    let mut shards: BTreeMap<String, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
    let mut items = BTreeMap::new();
    for r in recs {
        let shard = r.location.shard.clone().unwrap();
        let members = shards
            .entry(shard.clone())
            .or_insert_with(|| tar_members(&out.join(&shard)));
        let image = members.get(r.location.member.as_ref().unwrap()).cloned();
        let caption = members[&format!("{}.txt", r.key)].clone();
        let json = serde_json::from_slice(&members[&format!("{}.json", r.key)]).unwrap();
        items.insert(r.key.to_string(), (image, caption, json));
    }
    items
}

fn decode(bytes: &[u8]) -> image::ImageResult<image::DynamicImage> {
    image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()?
        .decode()
}

fn declared_dims(bytes: &[u8]) -> (u32, u32) {
    image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .unwrap()
        .into_dimensions()
        .unwrap()
}

#[test]
fn every_dirt_kind_is_planted_as_the_sidecar_says() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("wds");
    let fractions: Vec<String> = DirtKind::ALL.iter().map(|k| format!("{k}=0.02")).collect();
    let cfg = config(150, Layout::Webdataset, 50, &fractions.join(","));
    let summary = run(&cfg, &out);
    let recs = records(&out);
    assert_eq!(recs.len(), 150);
    assert_eq!(summary.items, 150);
    assert_eq!(
        summary.data_files,
        ["shard-00000.tar", "shard-00001.tar", "shard-00002.tar"]
    );

    // Exact counts: ⌈0.02·150⌉ = 3 per kind; missing_file cannot be carried by WebDataset.
    let mut applied: BTreeMap<DirtKind, u64> = BTreeMap::new();
    for r in &recs {
        if let Some(k) = r.dirt {
            *applied.entry(k).or_default() += 1;
        }
    }
    for kind in DirtKind::ALL {
        let want = if kind == DirtKind::MissingFile { 0 } else { 3 };
        assert_eq!(applied.get(&kind).copied().unwrap_or(0), want, "{kind}");
    }
    assert_eq!(summary.dirt_skipped.get(&DirtKind::MissingFile), Some(&3));
    assert_eq!(summary.dirt, applied);
    let applicable = DirtKind::ALL.len() as u64 - 1; // all but missing_file
    assert_eq!(summary.clean, 150 - 3 * applicable);
    assert_eq!(recs.iter().filter(|r| r.dirt_skipped.is_some()).count(), 3);

    let items = webdataset_items(&out, &recs);
    let by_key: BTreeMap<&str, &SidecarRecord<'_>> =
        recs.iter().map(|r| (r.key.as_ref(), r)).collect();
    for r in &recs {
        let (image, caption, json) = &items[r.key.as_ref()];
        let image = image
            .as_ref()
            .expect("every WebDataset item has its image member");
        assert_eq!(image.len() as u64, r.bytes, "{}", r.key);
        assert_eq!(json["label_shape"], r.labels.shape.as_str());
        assert_eq!(json["num_objects"], r.labels.num_objects);
        assert_eq!(String::from_utf8_lossy(caption), r.caption, "{}", r.key);
        assert_eq!(std::str::from_utf8(caption).is_ok(), r.caption_utf8);
        let ctx = format!("{} ({:?})", r.key, r.dirt);
        match r.dirt {
            None => {
                let img = decode(image).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                assert_eq!((img.width(), img.height()), (r.width, r.height), "{ctx}");
                let text = std::str::from_utf8(caption).unwrap();
                assert!(text.split_whitespace().count() >= 3, "{ctx}: {text}");
                assert!(r.dup_of.is_none());
            }
            Some(kind) => match kind {
                DirtKind::Truncated => {
                    assert_eq!(&image[..2], &[0xFF, 0xD8]);
                    assert_ne!(
                        &image[image.len() - 2..],
                        &[0xFF, 0xD9],
                        "{ctx}: EOI still present"
                    );
                    assert!(
                        find_jpeg_segment(image, 0xDA).is_some(),
                        "{ctx}: cut before the scan"
                    );
                }
                DirtKind::Corrupt => assert!(decode(image).is_err(), "{ctx} decodes"),
                DirtKind::ZeroByte => assert!(image.is_empty()),
                DirtKind::NotImage => {
                    assert!(image.starts_with(b"<"), "{ctx}");
                    assert!(decode(image).is_err());
                }
                DirtKind::Tiny => {
                    let img = decode(image).unwrap();
                    assert!((8..=40).contains(&img.width().min(img.height())), "{ctx}");
                }
                DirtKind::ExtremeAspect => {
                    let img = decode(image).unwrap();
                    let (lo, hi) = (img.width().min(img.height()), img.width().max(img.height()));
                    assert!(hi >= 8 * lo && lo >= 64, "{ctx}: {lo}x{hi}");
                }
                DirtKind::DuplicateExact | DirtKind::NearDuplicate => {
                    let src_key = r.dup_of.as_deref().expect("dup_of");
                    let src = by_key[src_key];
                    assert!(
                        src.index < r.index && src.location.shard == r.location.shard,
                        "{ctx}"
                    );
                    assert_eq!(src.dirt, None, "{ctx}: copies a dirty item");
                    assert_eq!(src.labels, r.labels);
                    let src_image = items[src_key].0.as_ref().unwrap();
                    if kind == DirtKind::DuplicateExact {
                        assert_eq!(image, src_image, "{ctx}");
                    } else {
                        assert_ne!(image, src_image);
                        let (a, b) = (decode(image).unwrap(), decode(src_image).unwrap());
                        assert!(
                            a.width() < b.width() && a.width() * 100 >= b.width() * 85,
                            "{ctx}"
                        );
                    }
                }
                DirtKind::CaptionEmpty => {
                    assert!(std::str::from_utf8(caption).unwrap().trim().is_empty())
                }
                DirtKind::CaptionOneWord => {
                    assert_eq!(
                        std::str::from_utf8(caption)
                            .unwrap()
                            .split_whitespace()
                            .count(),
                        1
                    )
                }
                DirtKind::CaptionOverlong => assert!((10_000..=100_000).contains(&caption.len())),
                DirtKind::CaptionHtml => {
                    let text = std::str::from_utf8(caption).unwrap();
                    assert!(
                        text.starts_with('<') && text.contains("</"),
                        "{ctx}: {text}"
                    );
                }
                DirtKind::CaptionInvalidUtf8 => assert!(std::str::from_utf8(caption).is_err()),
                DirtKind::ExifRotated => {
                    let mut dec = image::ImageReader::new(Cursor::new(image))
                        .with_guessed_format()
                        .unwrap()
                        .into_decoder()
                        .unwrap();
                    let o = dec.orientation().unwrap();
                    assert!(
                        matches!(
                            o,
                            image::metadata::Orientation::Rotate90
                                | image::metadata::Orientation::Rotate270
                        ),
                        "{ctx}: {o:?}"
                    );
                    assert_eq!(
                        dec.dimensions(),
                        (r.height, r.width),
                        "{ctx}: stored pixels are not rotated"
                    );
                    let mut upright = decode(image).unwrap();
                    upright.apply_orientation(o);
                    assert_eq!((upright.width(), upright.height()), (r.width, r.height));
                }
                DirtKind::Cmyk => {
                    let sof = find_jpeg_segment(image, 0xC0).unwrap();
                    assert_eq!(image[sof + 9], 4, "{ctx}: components");
                    let img = decode(image).unwrap();
                    assert_eq!((img.width(), img.height()), (r.width, r.height));
                }
                DirtKind::Gray16 => {
                    assert_eq!(decode(image).unwrap().color(), image::ColorType::L16)
                }
                DirtKind::Grayscale => {
                    assert_eq!(decode(image).unwrap().color(), image::ColorType::L8)
                }
                DirtKind::PaletteAlpha => {
                    let reader = png::Decoder::new(Cursor::new(image.clone()))
                        .read_info()
                        .unwrap();
                    assert_eq!(reader.info().color_type, png::ColorType::Indexed);
                    assert!(reader.info().trns.is_some(), "{ctx}: no tRNS");
                }
                DirtKind::Animated => {
                    let frames = image::codecs::gif::GifDecoder::new(Cursor::new(image.clone()))
                        .unwrap()
                        .into_frames()
                        .collect_frames()
                        .unwrap();
                    assert!(frames.len() >= 3, "{ctx}: {} frames", frames.len());
                    assert_eq!(frames[0].buffer().dimensions(), (r.width, r.height));
                }
                DirtKind::DecompressionBomb => {
                    assert!(image.len() < 64 * 1024, "{ctx}: not small");
                    let (w, h) = declared_dims(image);
                    assert_eq!((w, h), (r.width, r.height));
                    assert!(w as u64 * h as u64 >= 900_000_000, "{ctx}: {w}x{h}");
                }
                DirtKind::MissingFile => unreachable!("not applicable to WebDataset"),
                DirtKind::CaptionMismatched | DirtKind::CaptionBoilerplate => {
                    // what they say is tested in caption.rs; here: fluent text, a clean image
                    let text = String::from_utf8(caption.clone()).unwrap();
                    assert!(text.split_whitespace().count() >= 3, "{ctx}: {text:?}");
                    assert!(decode(image).is_ok(), "{ctx}: the image is clean");
                }
            },
        }
    }
}

#[test]
fn clean_output_has_no_dirt_and_every_image_decodes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("clean");
    let summary = run(&config(60, Layout::Folder, 1000, "off"), &out);
    assert!(summary.dirt.is_empty() && summary.dirt_skipped.is_empty());
    assert_eq!(summary.clean, 60);
    for r in records(&out) {
        assert_eq!(r.dirt, None);
        let file = out.join(r.location.file.as_ref().unwrap());
        let bytes = std::fs::read(&file).unwrap();
        let img = decode(&bytes).unwrap();
        assert_eq!((img.width(), img.height()), (r.width, r.height));
        assert_eq!(
            std::fs::read(file.with_extension("txt")).unwrap(),
            r.caption.as_bytes()
        );
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(file.with_extension("json")).unwrap()).unwrap();
        assert_eq!(json["label_color"], r.labels.color.as_str());
    }
    assert!(summary.formats["jpeg"] >= 30, "{:?}", summary.formats);
    let total: u64 = walk(&out)
        .iter()
        .filter(|p| !p.ends_with(SUMMARY_FILE))
        .map(|p| p.metadata().unwrap().len())
        .sum();
    assert_eq!(summary.total_bytes, total);
}

#[test]
fn parquet_layout_is_hugging_face_style() {
    use arrow::array::{Array, AsArray};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pq");
    let summary = run(
        &config(
            30,
            Layout::Parquet,
            20,
            "caption_invalid_utf8=0.1,zero_byte=0.05",
        ),
        &out,
    );
    assert_eq!(
        summary.data_files,
        ["part-00000.parquet", "part-00001.parquet"]
    );
    assert_eq!(
        summary.dirt_skipped.get(&DirtKind::CaptionInvalidUtf8),
        Some(&3)
    );
    let recs = records(&out);
    let mut rows = 0;
    for name in &summary.data_files {
        let file = std::fs::File::open(out.join(name)).unwrap();
        let builder =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        let schema = builder.schema().clone();
        assert!(schema.metadata()["huggingface"].contains("\"Image\""));
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(&names[..4], ["key", "image", "caption", "url"]);
        assert!(names.contains(&"label_shape") && names.contains(&"background"));
        for batch in builder.build().unwrap() {
            let batch = batch.unwrap();
            let keys = batch.column_by_name("key").unwrap().as_string::<i32>();
            let image = batch.column_by_name("image").unwrap().as_struct();
            let bytes = image.column_by_name("bytes").unwrap().as_binary::<i32>();
            let paths = image.column_by_name("path").unwrap().as_string::<i32>();
            assert_eq!(
                batch.column_by_name("url").unwrap().null_count(),
                batch.num_rows()
            );
            for i in 0..batch.num_rows() {
                let r = recs.iter().find(|r| r.key == keys.value(i)).unwrap();
                assert_eq!(r.location.shard.as_deref(), Some(name.as_str()));
                assert_eq!(bytes.value(i).len() as u64, r.bytes);
                assert!(paths.value(i).starts_with(keys.value(i)));
                if r.dirt.is_none() {
                    let img = decode(bytes.value(i)).unwrap();
                    assert_eq!((img.width(), img.height()), (r.width, r.height));
                }
                rows += 1;
            }
        }
    }
    assert_eq!(rows, 30);
}

#[test]
fn urls_layout_points_at_files_except_missing_ones() {
    use arrow::array::AsArray;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("urls");
    let cfg = SynthConfig {
        url_base: "http://127.0.0.1:9999/".into(),
        ..config(40, Layout::Urls, 1000, "missing_file=0.1,not_image=0.05")
    };
    let summary = run(&cfg, &out);
    assert_eq!(summary.dirt.get(&DirtKind::MissingFile), Some(&4));
    let file = std::fs::File::open(out.join(URL_LIST_FILE)).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut urls = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let col = batch.column_by_name("url").unwrap().as_string::<i32>();
        let uid = batch.column_by_name("uid").unwrap().as_string::<i32>();
        for i in 0..batch.num_rows() {
            urls.push((uid.value(i).to_string(), col.value(i).to_string()));
        }
    }
    let recs = records(&out);
    assert_eq!(urls.len(), 40);
    for (r, (uid, url)) in recs.iter().zip(&urls) {
        assert_eq!(r.key, uid.as_str());
        assert_eq!(r.location.url.as_deref(), Some(url.as_str()));
        let rel = url.strip_prefix("http://127.0.0.1:9999/").unwrap();
        assert_eq!(
            out.join(rel).exists(),
            r.dirt != Some(DirtKind::MissingFile),
            "{url}"
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            out.push(entry.into_path());
        }
    }
    out
}

fn digest(dir: &Path) -> Vec<(String, String)> {
    walk(dir)
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            (
                rel,
                blake3::hash(&std::fs::read(&p).unwrap())
                    .to_hex()
                    .to_string(),
            )
        })
        .collect()
}

#[test]
fn output_is_identical_for_any_thread_count_and_differs_by_seed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(40, Layout::Webdataset, 16, "default,tiny=0.05");
    let in_pool = |threads: usize, cfg: &SynthConfig, name: &str| {
        let out = dir.path().join(name);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| run(cfg, &out));
        digest(&out)
    };
    let one = in_pool(1, &cfg, "one");
    let three = in_pool(3, &cfg, "three");
    assert_eq!(one.len(), 3 + 2, "three shards and two sidecars");
    assert_eq!(one, three);
    let other = in_pool(
        2,
        &SynthConfig {
            seed: 18,
            ..cfg.clone()
        },
        "other",
    );
    for ((name_a, a), (name_b, b)) in one.iter().zip(&other) {
        assert_eq!(name_a, name_b);
        assert_ne!(a, b, "{name_a} does not depend on the seed");
    }
    // The in-memory API gives the same item as the files.
    let pair = render_pair(&cfg, 5).unwrap();
    let recs = records(&dir.path().join("one"));
    assert_eq!(recs[5].bytes, pair.image.len() as u64);
    assert_eq!(recs[5].labels, pair.labels);
    assert_eq!(recs[5].caption, String::from_utf8_lossy(&pair.caption));
}

#[test]
fn output_folder_rules() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let cfg = config(5, Layout::Folder, 1000, "off");
    let siblings = || {
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };

    // An invalid configuration writes nothing.
    let bad = SynthConfig {
        dirt: "tiny=0.7,corrupt=0.7".parse().unwrap(),
        ..cfg.clone()
    };
    let err = generate(&bad, &out, Overwrite::Refuse, &()).unwrap_err();
    assert!(err.is_usage(), "{err}");
    assert!(siblings().is_empty());

    // An existing empty folder is fine.
    std::fs::create_dir(&out).unwrap();
    run(&cfg, &out);
    assert_eq!(siblings(), ["out"]);

    // A non-empty one is refused unless replacing; nothing else is left behind.
    std::fs::write(out.join("keep.txt"), "x").unwrap();
    let err = generate(&cfg, &out, Overwrite::Refuse, &()).unwrap_err();
    assert!(matches!(err, SynthError::OutputExists { .. }) && err.is_usage());
    assert!(out.join("keep.txt").exists());
    assert_eq!(siblings(), ["out"]);
    generate(&cfg, &out, Overwrite::Replace, &()).unwrap();
    assert!(!out.join("keep.txt").exists() && out.join(SUMMARY_FILE).exists());
    assert_eq!(siblings(), ["out"]);

    // A file in the way, or a parent that cannot hold folders, is a usage error.
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let err = generate(&cfg, &file, Overwrite::Replace, &()).unwrap_err();
    assert!(
        matches!(err, SynthError::OutputNotDirectory { .. }),
        "{err}"
    );
    let err = generate(&cfg, &file.join("sub"), Overwrite::Refuse, &()).unwrap_err();
    assert!(err.is_usage(), "{err}");
    assert_eq!(siblings(), ["file", "out"]);
}

/// Records the total and the position after every advance.
#[derive(Default)]
struct Positions {
    total: std::sync::Mutex<Option<u64>>,
    seen: std::sync::Mutex<Vec<u64>>,
}

impl flipstream_shard::progress::Progress for Positions {
    fn set_total(&self, total: u64) {
        *self.total.lock().unwrap() = Some(total);
    }
    fn advance(&self, n: u64) {
        let mut seen = self.seen.lock().unwrap();
        let at = seen.last().copied().unwrap_or(0) + n;
        seen.push(at);
    }
}

#[test]
fn progress_reports_every_item() {
    let dir = tempfile::tempdir().unwrap();
    let progress = Positions::default();
    generate(
        &config(7, Layout::Webdataset, 3, "off"),
        &dir.path().join("o"),
        Overwrite::Refuse,
        &progress,
    )
    .unwrap();
    assert_eq!(*progress.total.lock().unwrap(), Some(7));
    assert_eq!(
        *progress.seen.lock().unwrap(),
        (1..=7).collect::<Vec<u64>>()
    );
}

#[test]
fn object_sizes_choose_the_main_object_size_class() {
    use super::scene::SizeClass;
    let sizes = |spec: &str| {
        let cfg = SynthConfig {
            sizes: spec.parse().unwrap(),
            ..config(60, Layout::Webdataset, 1000, "off")
        };
        (0..60)
            .map(|i| render_pair(&cfg, i).unwrap().labels.size)
            .collect::<Vec<_>>()
    };
    assert!(sizes("large=1").iter().all(|s| *s == SizeClass::Large));
    let mixed = sizes("default");
    for class in SizeClass::ALL {
        assert!(
            mixed.contains(&class),
            "{class} missing from the default mix"
        );
    }
}
