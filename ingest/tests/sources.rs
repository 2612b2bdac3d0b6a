//! Ingest sources end to end: inputs made in the test (tars, Parquet, folders, text lists, local
//! and `memory://`) → `plan_units` → `open_unit` → raw items.

// Fixture helpers outside `#[test]` functions: a failing fixture should fail the test loudly.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, DictionaryArray, Float32Array, Float64Array, Int32Array,
    Int64Array, RecordBatch, StringArray, StructArray,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, Fields, Int32Type};
use bytes::Bytes;
use flipstream_ingest::source::{
    ImageRef, Passthrough, RawItem, SourceError, SourceKind, SourceOptions, SourceStats, UnitPlan,
    open_unit, plan_units,
};
use flipstream_shard::StoreRoot;
use flipstream_shard::rows::Scalar;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use tokio::runtime::Runtime;

// ---------------------------------------------------------------------------------------------
// Fixtures

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn image_bytes(format: image::ImageFormat, seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(24, 16, |x, y| {
        image::Rgb([(x * 10) as u8, (y * 12) as u8, seed])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn jpeg(seed: u8) -> Vec<u8> {
    image_bytes(image::ImageFormat::Jpeg, seed)
}

fn png(seed: u8) -> Vec<u8> {
    image_bytes(image::ImageFormat::Png, seed)
}

fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn write(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

fn parquet_bytes(batch: &RecordBatch, row_group_rows: usize) -> Vec<u8> {
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(row_group_rows))
        .build();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
    out
}

fn batch(cols: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(cols.into_iter().map(|(n, a)| (n.to_string(), a))).unwrap()
}

fn strings(v: &[Option<&str>]) -> ArrayRef {
    Arc::new(StringArray::from(v.to_vec()))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).unwrap()
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// A whole unit, read.
struct Unit {
    plan: UnitPlan,
    fields: Vec<Field>,
    items: Vec<RawItem>,
    stats: SourceStats,
}

fn plan(
    rt: &Runtime,
    inputs: &[String],
    opts: &SourceOptions,
) -> Result<Vec<UnitPlan>, SourceError> {
    rt.block_on(plan_units(inputs, opts))
}

fn read_unit(rt: &Runtime, plan: &UnitPlan, opts: &SourceOptions) -> Unit {
    let mut src = open_unit(plan, opts, rt.handle().clone()).unwrap();
    let fields = src.extra_fields().to_vec();
    let mut items = Vec::new();
    while let Some(item) = src.next_item() {
        let item = item.unwrap();
        assert_eq!(
            item.extras.len(),
            fields.len(),
            "extras aligned with fields"
        );
        items.push(item);
    }
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item.index, i as u64, "indices are dense and in order");
    }
    Unit {
        plan: plan.clone(),
        fields,
        items,
        stats: src.stats(),
    }
}

fn read_all(rt: &Runtime, inputs: &[String], opts: &SourceOptions) -> Vec<Unit> {
    let plans = plan(rt, inputs, opts).unwrap();
    plans.iter().map(|p| read_unit(rt, p, opts)).collect()
}

fn items(units: &[Unit]) -> Vec<&RawItem> {
    units.iter().flat_map(|u| u.items.iter()).collect()
}

fn field_types(fields: &[Field]) -> Vec<(String, DataType)> {
    fields
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect()
}

fn bytes_of(item: &RawItem) -> &[u8] {
    match &item.image {
        ImageRef::Bytes(b) => b,
        other => panic!("{}: expected image bytes, got {other:?}", item.key),
    }
}

fn caption(item: &RawItem) -> Option<&[u8]> {
    item.caption.as_deref()
}

fn text(v: &str) -> Option<Scalar> {
    Some(Scalar::Str(v.to_string()))
}

// ---------------------------------------------------------------------------------------------
// WebDataset

/// The synth `webdataset` layout: `<key>.<ext>`, `<key>.txt`, `<key>.json` with labels.
fn synth_like_tar() -> (Vec<u8>, Vec<Vec<u8>>) {
    let imgs = vec![jpeg(1), png(2), jpeg(3)];
    let j0 = br#"{"label_shape": "circle", "label_color": "red", "num_objects": 2, "score": 0.5, "clean": true, "url": "http://example.com/0.jpg"}"#;
    let j1 = br#"{"label_shape": "star", "label_color": "blue", "num_objects": 1, "score": 1, "clean": false}"#;
    let j2 = br#"{"label_shape": "ring", "label_color": "cyan", "num_objects": "many", "score": 0.25, "clean": true, "extra": 1}"#;
    let tar = tar_of(&[
        ("000000000.jpg", &imgs[0]),
        ("000000000.txt", b"a red circle on stripes"),
        ("000000000.json", j0),
        ("000000001.png", &imgs[1]),
        ("000000001.txt", b"Photo: large blue star"),
        ("000000001.json", j1),
        ("000000002.jpg", &imgs[2]),
        ("000000002.txt", b"cyan ring"),
        ("000000002.json", j2),
    ]);
    (tar, imgs)
}

#[test]
fn webdataset_tars_give_samples_with_typed_passthrough() {
    let dir = tempfile::tempdir().unwrap();
    let (tar, imgs) = synth_like_tar();
    write(&dir.path().join("shard-00000.tar"), &tar);
    let rt = runtime();
    let opts = SourceOptions::default();
    let units = read_all(&rt, &[s(&dir.path().join("shard-00000.tar"))], &opts);
    assert_eq!(units.len(), 1);
    let u = &units[0];
    assert_eq!(u.plan.kind, SourceKind::WebDataset);
    assert_eq!(u.plan.spec.kind, "webdataset");
    assert!(
        u.plan.spec.id.starts_with("shard-00000-"),
        "{}",
        u.plan.spec.id
    );
    assert_eq!((u.plan.spec.start, u.plan.spec.end), (None, None));
    assert_eq!(
        field_types(&u.fields),
        [
            ("label_shape".to_string(), DataType::Utf8),
            ("label_color".to_string(), DataType::Utf8),
            ("num_objects".to_string(), DataType::Int64),
            ("score".to_string(), DataType::Float64),
            ("clean".to_string(), DataType::Boolean),
        ]
    );
    let keys: Vec<&str> = u.items.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["000000000", "000000001", "000000002"]);
    for (item, img) in u.items.iter().zip(&imgs) {
        assert_eq!(bytes_of(item), img.as_slice());
        assert_eq!(item.source, "shard-00000.tar");
        assert!(item.malformed.is_none());
    }
    assert_eq!(caption(&u.items[1]), Some(&b"Photo: large blue star"[..]));
    assert_eq!(u.items[0].url.as_deref(), Some("http://example.com/0.jpg"));
    assert_eq!(u.items[1].url, None);
    assert_eq!(
        u.items[0].extras,
        [
            text("circle"),
            text("red"),
            Some(Scalar::Int(2)),
            Some(Scalar::Float(0.5)),
            Some(Scalar::Bool(true))
        ]
    );
    // An integer fits the float column (as a float); "many" does not fit int64: null, counted.
    assert_eq!(u.items[1].extras[3], Some(Scalar::Float(1.0)));
    assert_eq!(u.items[2].extras[2], None);
    assert_eq!(u.stats.extras_nulled, 1);
    assert_eq!(
        u.stats.extras_unknown, 1,
        "`extra` was not in the first JSON"
    );
}

#[test]
fn webdataset_bad_members_become_items_not_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bad_utf8: &[u8] = &[0xff, 0xfe, b'c', b'a', b't'];
    let img = jpeg(9);
    let tar = tar_of(&[
        ("a.jpg", &img),
        ("a.txt", b"fine"),
        ("b.txt", b"caption without image"),
        ("c.jpg", &img),
        ("._c.jpg", b"AppleDouble junk"),
        ("d.jpg", &img),
        ("d.json", b"{\"caption\": \"x\", "),
        ("e.jpg", &img),
        ("e.txt", bad_utf8),
        ("f.JPG", &img),
        ("f.json", br#"{"caption": "from json"}"#),
        ("g.jpg", &img),
        ("g.jpg", &img),
    ]);
    write(&dir.path().join("mixed.tar"), &tar);
    let rt = runtime();
    let u = &read_all(
        &rt,
        &[s(&dir.path().join("mixed.tar"))],
        &SourceOptions::default(),
    )[0];
    let keys: Vec<&str> = u.items.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["a", "b", "c", "d", "e", "f", "g"]);
    let [a, b, c, d, e, f, g] = &u.items[..] else {
        panic!()
    };
    assert!(a.malformed.is_none() && caption(a) == Some(&b"fine"[..]));
    assert_eq!(b.image, ImageRef::Missing, "member without image");
    assert!(b.malformed.is_none());
    assert_eq!(bytes_of(c), img.as_slice());
    assert_eq!(c.caption, None, "image without caption");
    assert!(
        d.malformed
            .as_deref()
            .unwrap()
            .contains("d.json: JSON does not parse"),
        "{d:?}"
    );
    assert_eq!(
        caption(e),
        Some(bad_utf8),
        "invalid UTF-8 caption passed through untouched"
    );
    assert_eq!(
        caption(f),
        Some(&b"from json"[..]),
        "caption from the JSON field, upper-case extension"
    );
    assert!(g.malformed.as_deref().unwrap().contains("twice"), "{g:?}");
    assert_eq!(u.stats.skipped_members, 1);

    // gzip-compressed tars read the same.
    write(&dir.path().join("mixed.tar.gz"), &gzip(&tar));
    let gz = &read_all(
        &rt,
        &[s(&dir.path().join("mixed.tar.gz"))],
        &SourceOptions::default(),
    )[0];
    assert_eq!(
        gz.items.iter().map(|i| &i.key).collect::<Vec<_>>(),
        u.items.iter().map(|i| &i.key).collect::<Vec<_>>()
    );
}

#[test]
fn truncated_and_corrupt_tars_end_with_one_malformed_item() {
    let dir = tempfile::tempdir().unwrap();
    let (tar, _) = synth_like_tar();
    let rt = runtime();
    let opts = SourceOptions::default();
    // Offsets of each member's header, from the tar itself.
    let mut archive = tar::Archive::new(&tar[..]);
    let headers: Vec<(String, u64, u64)> = archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.path().unwrap().display().to_string(),
                e.raw_header_position(),
                e.raw_file_position(),
            )
        })
        .collect();
    let (_, _, png_data) = headers
        .iter()
        .find(|(p, _, _)| p == "000000001.png")
        .unwrap();
    let (_, json2_header, _) = headers
        .iter()
        .find(|(p, _, _)| p == "000000002.json")
        .unwrap();

    // Cut in the middle of 000000001.png: sample 0 is read, sample 1 is the malformed item.
    let cut = (*png_data + 100) as usize;
    write(&dir.path().join("cut-data.tar"), &tar[..cut]);
    let u = &read_all(&rt, &[s(&dir.path().join("cut-data.tar"))], &opts)[0];
    assert_eq!(u.items.len(), 2);
    assert!(u.items[0].malformed.is_none());
    assert_eq!(u.items[1].key, "000000001");
    let detail = u.items[1].malformed.as_deref().unwrap();
    assert!(
        detail.contains("000000001.png") && detail.contains("cut short"),
        "{detail}"
    );

    // Cut inside the header of 000000002.json: samples 0 and 1 are read, then the malformed
    // sample 2 (its image and caption were read, its JSON header is cut).
    let cut = (*json2_header + 100) as usize;
    write(&dir.path().join("cut-header.tar"), &tar[..cut]);
    let u = &read_all(&rt, &[s(&dir.path().join("cut-header.tar"))], &opts)[0];
    assert_eq!(u.items.len(), 3);
    assert!(u.items[..2].iter().all(|i| i.malformed.is_none()));
    assert_eq!(u.items[2].key, "000000002");
    let detail = u.items[2].malformed.as_deref().unwrap();
    assert!(
        detail.contains(&format!("after byte {json2_header}")),
        "{detail}"
    );

    // Not a tar at all: one malformed item with a generated key.
    write(&dir.path().join("garbage.tar"), &[7u8; 3000]);
    let u = &read_all(&rt, &[s(&dir.path().join("garbage.tar"))], &opts)[0];
    assert_eq!(u.items.len(), 1);
    assert_eq!(u.items[0].key, "garbage/000000000");
    assert!(u.items[0].malformed.is_some());
}

// ---------------------------------------------------------------------------------------------
// Parquet with images

/// The synth `parquet` layout: `key`, HF `image` struct, `caption`, `url` (null), labels.
fn hf_parquet(imgs: &[Vec<u8>]) -> RecordBatch {
    let n = imgs.len();
    let bytes: Vec<Option<&[u8]>> = imgs
        .iter()
        .enumerate()
        .map(|(i, b)| (i != 4).then_some(b.as_slice()))
        .collect();
    let paths: Vec<Option<String>> = (0..n).map(|i| Some(format!("{i:09}.jpg"))).collect();
    let image = StructArray::new(
        Fields::from(vec![
            Field::new("bytes", DataType::Binary, true),
            Field::new("path", DataType::Utf8, true),
        ]),
        vec![
            Arc::new(BinaryArray::from(bytes)) as ArrayRef,
            Arc::new(StringArray::from(paths)) as ArrayRef,
        ],
        Some(NullBuffer::from(
            (0..n).map(|i| i != 3).collect::<Vec<bool>>(),
        )),
    );
    let keys: Vec<Option<String>> = (0..n).map(|i| Some(format!("{i:09}"))).collect();
    let sizes: DictionaryArray<Int32Type> = (0..n)
        .map(|i| if i % 2 == 0 { "small" } else { "large" })
        .collect();
    batch(vec![
        ("key", Arc::new(StringArray::from(keys))),
        ("image", Arc::new(image)),
        (
            "caption",
            strings(&(0..n).map(|_| Some("a red circle")).collect::<Vec<_>>()),
        ),
        ("url", strings(&vec![None; n])),
        (
            "label_shape",
            strings(&(0..n).map(|_| Some("circle")).collect::<Vec<_>>()),
        ),
        ("label_size", Arc::new(sizes)),
        (
            "num_objects",
            Arc::new(Int32Array::from((0..n as i32).collect::<Vec<_>>())),
        ),
        ("score", Arc::new(Float32Array::from(vec![0.5f32; n]))),
        ("clean", Arc::new(BooleanArray::from(vec![true; n]))),
    ])
}

#[test]
fn hugging_face_parquet_images_with_typed_passthrough() {
    let dir = tempfile::tempdir().unwrap();
    let imgs: Vec<Vec<u8>> = (0..6).map(|i| jpeg(i as u8)).collect();
    write(
        &dir.path().join("part-00000.parquet"),
        &parquet_bytes(&hf_parquet(&imgs), 4),
    );
    let rt = runtime();
    let units = read_all(
        &rt,
        &[s(&dir.path().join("part-00000.parquet"))],
        &SourceOptions::default(),
    );
    assert_eq!(units.len(), 1);
    let u = &units[0];
    assert_eq!(u.plan.kind, SourceKind::Parquet);
    assert_eq!(
        (u.plan.spec.start, u.plan.spec.end, u.plan.estimated_items),
        (Some(0), Some(6), Some(6))
    );
    assert_eq!(
        field_types(&u.fields),
        [
            ("label_shape".to_string(), DataType::Utf8),
            ("label_size".to_string(), DataType::Utf8),
            ("num_objects".to_string(), DataType::Int32),
            ("score".to_string(), DataType::Float32),
            ("clean".to_string(), DataType::Boolean),
        ]
    );
    assert_eq!(u.items.len(), 6);
    for (i, item) in u.items.iter().enumerate() {
        assert_eq!(item.key, format!("{i:09}"));
        assert_eq!(item.source, "part-00000.parquet");
        assert_eq!(item.url, None);
        assert_eq!(caption(item), Some(&b"a red circle"[..]));
        assert!(item.malformed.is_none());
        match i {
            3 | 4 => assert_eq!(
                item.image,
                ImageRef::Missing,
                "null struct and null bytes are missing images"
            ),
            _ => assert_eq!(bytes_of(item), imgs[i].as_slice()),
        }
        let size = if i % 2 == 0 { "small" } else { "large" };
        assert_eq!(
            item.extras,
            [
                text("circle"),
                text(size),
                Some(Scalar::Int(i as i64)),
                Some(Scalar::Float(0.5)),
                Some(Scalar::Bool(true))
            ]
        );
    }
}

#[test]
fn img2dataset_binary_columns_overrides_and_passthrough_selection() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = [jpeg(1), jpeg(2)];
    let b = batch(vec![
        ("key", strings(&[Some("000010000"), Some("000010001")])),
        (
            "jpg",
            Arc::new(BinaryArray::from(vec![
                Some(imgs[0].as_slice()),
                Some(imgs[1].as_slice()),
            ])),
        ),
        ("caption", strings(&[Some("one"), Some("two")])),
        (
            "url",
            strings(&[Some("http://a/1.jpg"), Some("http://a/2.jpg")]),
        ),
        ("similarity", Arc::new(Float64Array::from(vec![0.3, 0.4]))),
        ("width", Arc::new(Int64Array::from(vec![640, 480]))),
        ("status", strings(&[Some("success"), Some("success")])),
    ]);
    write(&dir.path().join("00001.parquet"), &parquet_bytes(&b, 100));
    let rt = runtime();
    let input = [s(&dir.path().join("00001.parquet"))];
    let u = &read_all(&rt, &input, &SourceOptions::default())[0];
    assert_eq!(u.plan.kind, SourceKind::Parquet);
    let names: Vec<String> = u.fields.iter().map(|f| f.name().clone()).collect();
    assert_eq!(
        names,
        ["similarity", "src_width", "status"],
        "clashing names are prefixed"
    );
    assert_eq!(bytes_of(&u.items[1]), imgs[1].as_slice());
    assert_eq!(u.items[1].url.as_deref(), Some("http://a/2.jpg"));
    assert_eq!(u.items[1].key, "000010001");

    let only = SourceOptions {
        passthrough: Passthrough::Only(vec!["status".into(), "similarity".into()]),
        ..Default::default()
    };
    let u = &read_all(&rt, &input, &only)[0];
    assert_eq!(
        u.fields
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>(),
        ["status", "similarity"]
    );
    assert_eq!(
        u.items[0].extras,
        [text("success"), Some(Scalar::Float(0.3))]
    );
    let none = SourceOptions {
        passthrough: Passthrough::None,
        ..Default::default()
    };
    assert!(read_all(&rt, &input, &none)[0].fields.is_empty());

    // Columns with unusual names: nothing is found until the options name them.
    let odd = batch(vec![
        (
            "photo",
            Arc::new(BinaryArray::from(vec![Some(imgs[0].as_slice())])),
        ),
        ("words", strings(&[Some("hello")])),
    ]);
    write(&dir.path().join("odd.parquet"), &parquet_bytes(&odd, 100));
    let odd_input = [s(&dir.path().join("odd.parquet"))];
    let err = plan(&rt, &odd_input, &SourceOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("odd.parquet") && err.contains("[photo, words]"),
        "{err}"
    );
    let named = SourceOptions {
        image_column: Some("photo".into()),
        caption_column: Some("words".into()),
        ..Default::default()
    };
    let u = &read_all(&rt, &odd_input, &named)[0];
    assert_eq!(caption(&u.items[0]), Some(&b"hello"[..]));
    assert_eq!(
        u.items[0].key, "odd/000000000",
        "no key column: generated key"
    );
    let wrong = SourceOptions {
        image_column: Some("picture".into()),
        ..Default::default()
    };
    let err = plan(&rt, &odd_input, &wrong).unwrap_err().to_string();
    assert!(err.contains("\"picture\" not found"), "{err}");
}

#[test]
fn parquet_slices_cover_every_row_exactly_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let n = 25;
    let urls: Vec<Option<String>> = (0..n).map(|i| Some(format!("http://h/{i}.jpg"))).collect();
    let b = batch(vec![
        ("url", Arc::new(StringArray::from(urls))),
        ("caption", strings(&vec![Some("c"); n])),
        (
            "row",
            Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())),
        ),
    ]);
    write(&dir.path().join("list.parquet"), &parquet_bytes(&b, 7));
    let rt = runtime();
    let opts = SourceOptions {
        unit_rows: 10,
        ..Default::default()
    };
    let units = read_all(&rt, &[s(&dir.path().join("list.parquet"))], &opts);
    let ranges: Vec<(Option<u64>, Option<u64>, Option<u64>)> = units
        .iter()
        .map(|u| (u.plan.spec.start, u.plan.spec.end, u.plan.estimated_items))
        .collect();
    assert_eq!(
        ranges,
        [
            (Some(0), Some(10), Some(10)),
            (Some(10), Some(20), Some(10)),
            (Some(20), Some(25), Some(5))
        ]
    );
    for (i, u) in units.iter().enumerate() {
        assert!(
            u.plan.spec.id.starts_with("list-") && u.plan.spec.id.ends_with(&format!("-{i:05}")),
            "{}",
            u.plan.spec.id
        );
        assert_eq!(u.plan.kind, SourceKind::UrlList);
        assert_eq!(u.items.len() as u64, u.plan.estimated_items.unwrap());
    }
    let all = items(&units);
    let rows: Vec<Option<Scalar>> = all.iter().map(|i| i.extras[0].clone()).collect();
    assert_eq!(
        rows,
        (0..n as i64)
            .map(|r| Some(Scalar::Int(r)))
            .collect::<Vec<_>>()
    );
    let keys: Vec<&str> = all.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(
        keys[12], "list/000000012",
        "generated keys count rows of the whole input"
    );
    assert_eq!(all[24].image, ImageRef::Url("http://h/24.jpg".into()));

    // A single row per unit works too, and re-planning gives the same units.
    let tiny = SourceOptions {
        unit_rows: 1,
        ..Default::default()
    };
    let plans = plan(&rt, &[s(&dir.path().join("list.parquet"))], &tiny).unwrap();
    assert_eq!(plans.len(), n);
    assert_eq!(
        plans,
        plan(&rt, &[s(&dir.path().join("list.parquet"))], &tiny).unwrap()
    );
    let u = read_unit(&rt, &plans[13], &tiny);
    assert_eq!(u.items.len(), 1);
    assert_eq!(u.items[0].extras[0], Some(Scalar::Int(13)));
}

// ---------------------------------------------------------------------------------------------
// URL lists

#[test]
fn laion_and_datacomp_parquet_url_lists() {
    let dir = tempfile::tempdir().unwrap();
    let laion = batch(vec![
        ("SAMPLE_ID", Arc::new(Int64Array::from(vec![11, 12, 13]))),
        (
            "URL",
            strings(&[Some("http://a/1.jpg"), None, Some("http://a/3.jpg")]),
        ),
        ("TEXT", strings(&[Some("one"), Some("two"), None])),
        (
            "similarity",
            Arc::new(Float64Array::from(vec![0.31, 0.32, 0.33])),
        ),
        (
            "punsafe",
            Arc::new(Float32Array::from(vec![0.01, 0.02, 0.03])),
        ),
    ]);
    write(
        &dir.path().join("laion.parquet"),
        &parquet_bytes(&laion, 100),
    );
    let datacomp = batch(vec![
        ("uid", strings(&[Some("f00d"), Some("beef")])),
        ("url", strings(&[Some("http://d/1.jpg"), Some("")])),
        ("text", strings(&[Some("a dog"), Some("a cat")])),
        ("original_width", Arc::new(Int64Array::from(vec![800, 600]))),
    ]);
    write(
        &dir.path().join("datacomp.parquet"),
        &parquet_bytes(&datacomp, 100),
    );
    let rt = runtime();
    let units = read_all(
        &rt,
        &[
            s(&dir.path().join("laion.parquet")),
            s(&dir.path().join("datacomp.parquet")),
        ],
        &SourceOptions::default(),
    );
    assert_eq!(units.len(), 2);
    assert!(
        units[0].plan.spec.id.starts_with("datacomp-"),
        "sorted by id"
    );
    let dc = &units[0];
    let laion = &units[1];
    assert!(units.iter().all(|u| u.plan.kind == SourceKind::UrlList));

    assert_eq!(
        field_types(&laion.fields),
        [
            ("SAMPLE_ID".to_string(), DataType::Int64),
            ("similarity".to_string(), DataType::Float64),
            ("punsafe".to_string(), DataType::Float32),
        ]
    );
    let [l0, l1, l2] = &laion.items[..] else {
        panic!()
    };
    assert_eq!(l0.image, ImageRef::Url("http://a/1.jpg".into()));
    assert_eq!(l0.url.as_deref(), Some("http://a/1.jpg"));
    assert_eq!(l0.key, "laion/000000000");
    assert_eq!(caption(l0), Some(&b"one"[..]));
    assert_eq!(l1.malformed.as_deref(), Some("row has no URL"));
    assert_eq!(l1.key, "laion/000000001");
    assert!(l2.malformed.is_none() && l2.caption.is_none());
    assert_eq!(l2.extras[0], Some(Scalar::Int(13)));

    assert_eq!(
        field_types(&dc.fields),
        [
            ("uid".to_string(), DataType::Utf8),
            ("original_width".to_string(), DataType::Int64),
        ]
    );
    assert_eq!(
        dc.items[0].key, "f00d",
        "the uid is the key and is passed through"
    );
    assert_eq!(dc.items[0].extras, [text("f00d"), Some(Scalar::Int(800))]);
    assert_eq!(
        dc.items[1].malformed.as_deref(),
        Some("row has no URL"),
        "an empty URL is no URL"
    );
}

const CSV_ROWS: &str = "url,caption,uid,similarity\n\
    http://x/0.jpg,a dog,u0,1\n\
    http://x/1.jpg,\"a cat, sleeping\",u1,0.5\n\
    ,no url here,u2,0.25\n\
    http://x/3.jpg,\"multi\nline\",u3,\n";

#[test]
fn text_url_lists_in_every_format_and_compression() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("a.csv"), CSV_ROWS.as_bytes());
    let tsv = "url\tcaption\tuid\tsimilarity\nhttp://x/0.jpg\ta dog\tu0\t1\nhttp://x/1.jpg\ta cat, sleeping\tu1\t0.5\n\tno url here\tu2\t0.25\nhttp://x/3.jpg\t\"multi\nline\"\tu3\t\n";
    write(&dir.path().join("b.tsv.gz"), &gzip(tsv.as_bytes()));
    let jsonl = r#"{"url": "http://x/0.jpg", "caption": "a dog", "uid": "u0", "similarity": 1}
{"url": "http://x/1.jpg", "caption": "a cat, sleeping", "uid": "u1", "similarity": 0.5}

{"url": null, "caption": "no url here", "uid": "u2", "similarity": 0.25}
{"url": "http://x/3.jpg", "caption": "multi\nline", "uid": "u3"}
"#;
    write(&dir.path().join("c.jsonl.zst"), &zstd(jsonl.as_bytes()));
    let rows: Vec<&str> = jsonl.lines().filter(|l| !l.trim().is_empty()).collect();
    write(
        &dir.path().join("d.json"),
        format!("[\n  {}\n]\n", rows.join(",\n  ")).as_bytes(),
    );

    let rt = runtime();
    let inputs: Vec<String> = ["a.csv", "b.tsv.gz", "c.jsonl.zst", "d.json"]
        .iter()
        .map(|n| s(&dir.path().join(n)))
        .collect();
    let units = read_all(&rt, &inputs, &SourceOptions::default());
    assert_eq!(units.len(), 4);
    for u in &units {
        let name = &u.plan.spec.source;
        assert_eq!(u.plan.kind, SourceKind::UrlList, "{name}");
        assert_eq!(
            (u.plan.spec.start, u.plan.spec.end, u.plan.estimated_items),
            (None, None, None)
        );
        assert_eq!(
            field_types(&u.fields),
            [
                ("uid".to_string(), DataType::Utf8),
                ("similarity".to_string(), DataType::Float64)
            ],
            "{name}"
        );
        assert_eq!(u.items.len(), 4, "{name}");
        let urls: Vec<Option<&str>> = u.items.iter().map(|i| i.url.as_deref()).collect();
        assert_eq!(
            urls,
            [
                Some("http://x/0.jpg"),
                Some("http://x/1.jpg"),
                None,
                Some("http://x/3.jpg")
            ],
            "{name}"
        );
        assert_eq!(
            u.items[2].malformed.as_deref(),
            Some("row has no URL"),
            "{name}"
        );
        assert_eq!(
            caption(&u.items[1]),
            Some(&b"a cat, sleeping"[..]),
            "{name}"
        );
        assert_eq!(caption(&u.items[3]), Some(&b"multi\nline"[..]), "{name}");
        assert_eq!(u.items[0].key, "u0", "{name}");
        assert_eq!(
            u.items[0].extras,
            [text("u0"), Some(Scalar::Float(1.0))],
            "{name}"
        );
        assert_eq!(u.items[3].extras[1], None, "{name}");
        assert_eq!(u.items[1].image, ImageRef::Url("http://x/1.jpg".into()));
    }
}

#[test]
fn text_list_rows_that_are_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = b"URL,TEXT,n\nhttp://x/0.jpg,".to_vec();
    csv.extend_from_slice(&[0xff, 0xfe, b'!']);
    csv.extend_from_slice(b",1\nhttp://x/1.jpg,too,many,fields\nhttp://x/2.jpg,ok,2\n");
    write(&dir.path().join("bad.csv"), &csv);
    let jsonl = "{\"url\": \"http://x/0.jpg\"}\nnot json\n[1, 2]\n{\"url\": 5}\n{\"url\": \"http://x/4.jpg\", \"later\": 1}\n";
    write(&dir.path().join("bad.jsonl"), jsonl.as_bytes());
    let rt = runtime();
    let u = &read_all(
        &rt,
        &[s(&dir.path().join("bad.csv"))],
        &SourceOptions::default(),
    )[0];
    assert_eq!(u.items.len(), 3);
    assert_eq!(
        caption(&u.items[0]),
        Some(&[0xff, 0xfe, b'!'][..]),
        "raw caption bytes, not validated"
    );
    assert!(u.items[0].malformed.is_none());
    assert!(
        u.items[1]
            .malformed
            .as_deref()
            .unwrap()
            .contains("has 4 fields, the header has 3"),
        "{:?}",
        u.items[1]
    );
    assert_eq!(u.items[2].extras, [Some(Scalar::Int(2))]);

    let u = &read_all(
        &rt,
        &[s(&dir.path().join("bad.jsonl"))],
        &SourceOptions::default(),
    )[0];
    let details: Vec<Option<&str>> = u.items.iter().map(|i| i.malformed.as_deref()).collect();
    assert_eq!(details.len(), 5);
    assert!(details[0].is_none() && details[4].is_none());
    assert!(
        details[1].unwrap().contains("line 2 does not parse"),
        "{details:?}"
    );
    assert!(
        details[2].unwrap().contains("line 3 is not a JSON object"),
        "{details:?}"
    );
    assert_eq!(details[3], Some("url is not a string"));
    assert_eq!(u.items[1].key, "bad/000000001");

    // Types come from a window of rows; a later value that does not fit is null and counted.
    let mut long = String::from("url,score\n");
    for i in 0..1000 {
        long.push_str(&format!("http://x/{i}.jpg,{i}\n"));
    }
    long.push_str("http://x/late.jpg,not-a-number\n");
    write(&dir.path().join("long.csv"), long.as_bytes());
    let u = &read_all(
        &rt,
        &[s(&dir.path().join("long.csv"))],
        &SourceOptions::default(),
    )[0];
    assert_eq!(
        field_types(&u.fields),
        [("score".to_string(), DataType::Int64)]
    );
    assert_eq!(u.items.len(), 1001);
    assert_eq!(u.items[999].extras, [Some(Scalar::Int(999))]);
    assert_eq!(u.items[1000].extras, [None]);
    assert_eq!(u.stats.extras_nulled, 1);
}

#[test]
fn a_truncated_compressed_list_ends_with_a_malformed_item() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("url,caption\n");
    for i in 0..2000 {
        csv.push_str(&format!(
            "http://x/{i}.jpg,caption number {i} with some words\n"
        ));
    }
    let gz = gzip(csv.as_bytes());
    write(&dir.path().join("cut.csv.gz"), &gz[..gz.len() / 2]);
    let rt = runtime();
    let u = &read_all(
        &rt,
        &[s(&dir.path().join("cut.csv.gz"))],
        &SourceOptions::default(),
    )[0];
    let last = u.items.last().unwrap();
    assert!(
        u.items.len() > 10 && u.items.len() < 2000,
        "{}",
        u.items.len()
    );
    assert!(
        last.malformed
            .as_deref()
            .unwrap()
            .contains("reading stopped"),
        "{last:?}"
    );
    assert!(
        u.items[..u.items.len() - 2]
            .iter()
            .all(|i| i.malformed.is_none())
    );
}

// ---------------------------------------------------------------------------------------------
// Folders

/// The synth `folder` layout plus the cases a hand-made folder has.
fn make_folder(root: &Path) -> Vec<Vec<u8>> {
    let imgs = vec![jpeg(1), png(2), jpeg(3), jpeg(4)];
    let img_dir = root.join("images");
    write(&img_dir.join("000000000.jpg"), &imgs[0]);
    write(&img_dir.join("000000000.txt"), b"a red circle");
    write(
        &img_dir.join("000000000.json"),
        br#"{"label_shape": "circle", "num_objects": 1, "caption": "ignored"}"#,
    );
    write(&img_dir.join("000000001.png"), &imgs[1]);
    write(&img_dir.join("000000001.json"), br#"{"label_shape": "star", "num_objects": 2, "caption": "from json", "url": "http://s/1.png"}"#);
    write(&img_dir.join("000000002.jpg"), &imgs[2]);
    write(&img_dir.join("000000003.jpg"), &imgs[3]);
    write(&img_dir.join("000000003.json"), b"{oops");
    write(&img_dir.join("sub/000000004.jpg"), &imgs[0]);
    write(&img_dir.join(".hidden.jpg"), &imgs[0]);
    write(&img_dir.join("notes.md"), b"not an image");
    write(&root.join("synth.json"), b"{}");
    write(&root.join("synth.jsonl"), b"{}\n");
    imgs
}

#[test]
fn folders_of_images_with_sidecars_in_slices() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = make_folder(dir.path());
    let rt = runtime();
    let opts = SourceOptions {
        unit_rows: 2,
        ..Default::default()
    };
    let units = read_all(&rt, &[s(&dir.path().join("images"))], &opts);
    assert_eq!(units.len(), 3);
    assert!(
        units
            .iter()
            .all(|u| u.plan.kind == SourceKind::Folder && u.plan.spec.id.starts_with("images-"))
    );
    let ranges: Vec<(Option<u64>, Option<u64>)> = units
        .iter()
        .map(|u| (u.plan.spec.start, u.plan.spec.end))
        .collect();
    assert_eq!(
        ranges,
        [(Some(0), Some(2)), (Some(2), Some(4)), (Some(4), Some(5))]
    );
    let all = items(&units);
    let keys: Vec<&str> = all.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "000000000",
            "000000001",
            "000000002",
            "000000003",
            "sub/000000004"
        ]
    );
    assert!(all.iter().all(|i| i.source == "images"));
    assert_eq!(
        field_types(&units[0].fields),
        [
            ("label_shape".to_string(), DataType::Utf8),
            ("num_objects".to_string(), DataType::Int64)
        ]
    );
    assert_eq!(bytes_of(all[0]), imgs[0].as_slice());
    assert_eq!(
        caption(all[0]),
        Some(&b"a red circle"[..]),
        "the .txt wins over the JSON caption"
    );
    assert_eq!(all[0].extras, [text("circle"), Some(Scalar::Int(1))]);
    assert_eq!(bytes_of(all[1]), imgs[1].as_slice());
    assert_eq!(caption(all[1]), Some(&b"from json"[..]));
    assert_eq!(all[1].url.as_deref(), Some("http://s/1.png"));
    assert_eq!(all[2].caption, None, "image without caption");
    assert!(
        all[3]
            .malformed
            .as_deref()
            .unwrap()
            .contains("000000003.json: JSON does not parse"),
        "{:?}",
        all[3]
    );
    // Columns come from the first JSON of each slice that parses: the second slice has only
    // 000000003.json, which does not parse, the third none at all.
    assert!(units[1].fields.is_empty() && units[2].fields.is_empty());

    // The synth root: no tars or Parquet files, so a folder of images; keys keep the subfolder.
    let root = &read_all(&rt, &[s(dir.path())], &SourceOptions::default())[0];
    assert_eq!(root.items[0].key, "images/000000000");
    assert_eq!(root.items.len(), 5);
}

// ---------------------------------------------------------------------------------------------
// Inputs: detection, folders, globs, braces, ids

#[test]
fn kinds_are_detected_and_folders_expand() {
    let dir = tempfile::tempdir().unwrap();
    let (tar, _) = synth_like_tar();
    let rt = runtime();
    let opts = SourceOptions::default();
    // img2dataset output: tars next to per-shard metadata Parquet and stats: only the tars.
    let i2d = dir.path().join("i2d");
    write(&i2d.join("00000.tar"), &tar);
    write(&i2d.join("00001.tar"), &tar);
    let meta = batch(vec![
        ("url", strings(&[Some("http://x")])),
        ("caption", strings(&[Some("c")])),
    ]);
    write(&i2d.join("00000.parquet"), &parquet_bytes(&meta, 10));
    write(&i2d.join("00000_stats.json"), b"{}");
    write(&i2d.join("_SUCCESS"), b"");
    let plans = plan(&rt, &[s(&i2d)], &opts).unwrap();
    assert_eq!(
        plans.iter().map(|p| p.kind).collect::<Vec<_>>(),
        [SourceKind::WebDataset; 2]
    );

    // A folder of Parquet files (and sidecars): the Parquet files, by their columns.
    let pq = dir.path().join("pq");
    write(
        &pq.join("part-00000.parquet"),
        &parquet_bytes(&hf_parquet(&[jpeg(0)]), 10),
    );
    write(&pq.join("urls.parquet"), &parquet_bytes(&meta, 10));
    write(&pq.join("synth.json"), b"{}");
    let plans = plan(&rt, &[s(&pq)], &opts).unwrap();
    assert_eq!(
        plans.iter().map(|p| p.kind).collect::<Vec<_>>(),
        [SourceKind::Parquet, SourceKind::UrlList]
    );

    // Unknown things are named.
    write(&dir.path().join("notes.txt"), b"hello");
    let err = plan(&rt, &[s(&dir.path().join("notes.txt"))], &opts).unwrap_err();
    assert!(matches!(err, SourceError::UnknownKind { .. }), "{err}");
    assert!(err.to_string().contains("notes.txt"), "{err}");
    let empty = dir.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    write(&empty.join("readme.md"), b"nothing to see");
    let err = plan(&rt, &[s(&empty)], &opts).unwrap_err();
    assert!(
        matches!(err, SourceError::UnknownKind { .. }) && err.to_string().contains("empty"),
        "{err}"
    );
    // A text list without a URL column fails at planning, naming it.
    write(&dir.path().join("nourl.csv"), b"a,b\n1,2\n");
    let err = plan(&rt, &[s(&dir.path().join("nourl.csv"))], &opts)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nourl.csv") && err.contains("no url column"),
        "{err}"
    );
}

#[test]
fn globs_and_brace_ranges_expand() {
    let dir = tempfile::tempdir().unwrap();
    let (tar, _) = synth_like_tar();
    for i in 0..4 {
        write(&dir.path().join(format!("shards/shard-{i:05}.tar")), &tar);
    }
    write(&dir.path().join("shards/nested/shard-00009.tar"), &tar);
    let rt = runtime();
    let opts = SourceOptions::default();
    let base = s(&dir.path().join("shards"));
    let names = |inputs: &[String]| -> Vec<String> {
        plan(&rt, inputs, &opts)
            .unwrap()
            .iter()
            .map(|p| p.spec.source.rsplit('/').next().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(&[format!("{base}/shard-{{00000..00002}}.tar")]),
        ["shard-00000.tar", "shard-00001.tar", "shard-00002.tar"]
    );
    assert_eq!(
        names(&[format!("{base}/*.tar")]).len(),
        4,
        "`*` stays in its folder"
    );
    assert_eq!(names(&[format!("{base}/**/*.tar")]).len(), 5);
    assert_eq!(
        names(&[format!("{base}/shard-0000[13].tar")]),
        ["shard-00001.tar", "shard-00003.tar"]
    );
    assert_eq!(
        names(&[
            format!("{base}/shard-{{00001,00003}}.tar"),
            format!("{base}/shard-00001.tar")
        ])
        .len(),
        2,
        "duplicates dropped"
    );
    assert_eq!(
        names(std::slice::from_ref(&base)).len(),
        5,
        "a folder holding tars gives its tars (recursively)"
    );

    let err = plan(&rt, &[format!("{base}/nothing-*.tar")], &opts).unwrap_err();
    assert!(
        matches!(&err, SourceError::NoMatch { input } if input.ends_with("nothing-*.tar")),
        "{err}"
    );
    let err = plan(&rt, &[format!("{base}/shard-{{00002..00005}}.tar")], &opts).unwrap_err();
    assert!(
        matches!(&err, SourceError::NotFound { input } if input.ends_with("shard-00004.tar")),
        "{err}"
    );
}

#[test]
fn unit_ids_are_stable_unique_sorted_and_path_safe() {
    let dir = tempfile::tempdir().unwrap();
    let (tar, _) = synth_like_tar();
    let list = batch(vec![("url", strings(&[Some("http://x"); 3]))]);
    for sub in ["a", "b c"] {
        write(&dir.path().join(sub).join("shard.tar"), &tar);
        write(
            &dir.path().join(sub).join("part.parquet"),
            &parquet_bytes(&list, 10),
        );
    }
    let rt = runtime();
    let opts = SourceOptions {
        unit_rows: 2,
        ..Default::default()
    };
    let inputs: Vec<String> = ["b c/*", "a/shard.tar", "a/part.parquet"]
        .iter()
        .map(|p| s(&dir.path().join(p)))
        .collect();
    let plans = plan(&rt, &inputs, &opts).unwrap();
    assert_eq!(
        plans.len(),
        6,
        "two tars, two Parquet files of two slices each"
    );
    let ids: Vec<&str> = plans.iter().map(|p| p.spec.id.as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    let unique: std::collections::BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(
        unique.len(),
        ids.len(),
        "same file names in two folders still give distinct ids: {ids:?}"
    );
    assert!(
        ids.iter().all(|id| id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))),
        "{ids:?}"
    );
    assert!(
        ids.iter()
            .all(|id| id.starts_with("part-") || id.starts_with("shard-")),
        "{ids:?}"
    );
    let reversed: Vec<String> = inputs.iter().rev().cloned().collect();
    assert_eq!(
        plan(&rt, &reversed, &opts).unwrap(),
        plans,
        "the same inputs in any order give the same plan"
    );
    assert!(
        plans
            .iter()
            .all(|p| SourceKind::parse(&p.spec.kind) == Some(p.kind))
    );
}

// ---------------------------------------------------------------------------------------------
// Object stores

#[test]
fn memory_store_inputs_read_like_local_ones() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let opts = SourceOptions {
        unit_rows: 3,
        ..Default::default()
    };
    // Local fixtures, and the same bytes in a memory store.
    let (tar, _) = synth_like_tar();
    write(&dir.path().join("tars/shard-00000.tar"), &tar);
    write(&dir.path().join("tars/shard-00001.tar"), &tar);
    let imgs: Vec<Vec<u8>> = (0..7).map(|i| jpeg(i as u8)).collect();
    write(
        &dir.path().join("pq/part-00000.parquet"),
        &parquet_bytes(&hf_parquet(&imgs), 2),
    );
    write(
        &dir.path().join("lists/urls.csv.gz"),
        &gzip(CSV_ROWS.as_bytes()),
    );
    make_folder(&dir.path().join("folder"));
    let store = StoreRoot::parse("memory://sources-test/data").unwrap();
    rt.block_on(async {
        for entry in walkdir::WalkDir::new(dir.path()) {
            let entry = entry.unwrap();
            if entry.file_type().is_file() {
                let rel = entry
                    .path()
                    .strip_prefix(dir.path())
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string();
                store
                    .put(&rel, Bytes::from(fs::read(entry.path()).unwrap()))
                    .await
                    .unwrap();
            }
        }
    });
    let cases = [
        ("tars", "memory://sources-test/data/tars"),
        (
            "tars/shard-00001.tar",
            "memory://sources-test/data/tars/shard-00001.tar",
        ),
        ("tars/*.tar", "memory://sources-test/data/tars/*.tar"),
        (
            "pq/part-00000.parquet",
            "memory://sources-test/data/pq/part-00000.parquet",
        ),
        (
            "lists/urls.csv.gz",
            "memory://sources-test/data/lists/urls.csv.gz",
        ),
        ("folder/images", "memory://sources-test/data/folder/images/"),
    ];
    for (local, remote) in cases {
        let want = read_all(&rt, &[s(&dir.path().join(local))], &opts);
        let got = read_all(&rt, &[remote.to_string()], &opts);
        assert_eq!(got.len(), want.len(), "{remote}");
        for (g, w) in got.iter().zip(&want) {
            assert!(
                g.plan
                    .spec
                    .source
                    .starts_with("memory://sources-test/data/"),
                "{}",
                g.plan.spec.source
            );
            assert_eq!(
                (g.plan.kind, g.plan.spec.start, g.plan.spec.end),
                (w.plan.kind, w.plan.spec.start, w.plan.spec.end)
            );
            assert_eq!(g.fields, w.fields, "{remote}");
            assert_eq!(g.items, w.items, "{remote}");
            assert_eq!(g.stats, w.stats, "{remote}");
        }
        assert!(
            !want.is_empty() && want.iter().map(|u| u.items.len()).sum::<usize>() > 0,
            "{local}"
        );
    }
    let err = plan(
        &rt,
        &["memory://sources-test/data/missing.tar".to_string()],
        &opts,
    )
    .unwrap_err();
    assert!(
        matches!(&err, SourceError::NotFound { input } if input.contains("missing.tar")),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Unreadable inputs and bad options

#[test]
fn unreadable_inputs_are_errors_that_name_them() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let opts = SourceOptions::default();
    let missing = s(&dir.path().join("nope.tar"));
    let err = plan(&rt, std::slice::from_ref(&missing), &opts).unwrap_err();
    assert!(
        matches!(&err, SourceError::NotFound { input } if *input == missing),
        "{err}"
    );
    assert_eq!(err.input(), Some(missing.as_str()));

    write(
        &dir.path().join("broken.parquet"),
        b"PAR1 this is not parquet at all",
    );
    let err = plan(&rt, &[s(&dir.path().join("broken.parquet"))], &opts).unwrap_err();
    assert!(
        matches!(err, SourceError::Parquet { .. }) && err.to_string().contains("broken.parquet"),
        "{err}"
    );

    // Planned, then deleted: opening the unit fails and names the file.
    let (tar, _) = synth_like_tar();
    write(&dir.path().join("gone.tar"), &tar);
    let plans = plan(&rt, &[s(&dir.path().join("gone.tar"))], &opts).unwrap();
    fs::remove_file(dir.path().join("gone.tar")).unwrap();
    let err = open_unit(&plans[0], &opts, rt.handle().clone())
        .err()
        .unwrap();
    assert!(
        matches!(&err, SourceError::NotFound { input } if input.ends_with("gone.tar")),
        "{err}"
    );

    // A Parquet file that shrank since planning.
    let list = |n: usize| batch(vec![("url", strings(&vec![Some("http://x"); n]))]);
    write(
        &dir.path().join("shrinks.parquet"),
        &parquet_bytes(&list(10), 10),
    );
    let plans = plan(&rt, &[s(&dir.path().join("shrinks.parquet"))], &opts).unwrap();
    write(
        &dir.path().join("shrinks.parquet"),
        &parquet_bytes(&list(5), 10),
    );
    let err = open_unit(&plans[0], &opts, rt.handle().clone())
        .err()
        .unwrap();
    assert!(
        matches!(err, SourceError::Unit { .. })
            && err.to_string().contains("changed since planning"),
        "{err}"
    );

    assert!(matches!(plan(&rt, &[], &opts), Err(SourceError::Option(_))));
    let zero = SourceOptions {
        unit_rows: 0,
        ..Default::default()
    };
    assert!(matches!(
        plan(&rt, &[missing], &zero),
        Err(SourceError::Option(_))
    ));
}
