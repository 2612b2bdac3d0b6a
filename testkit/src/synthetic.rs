//! Generated datasets of known composition, written through the real commit protocol: for
//! `flipstream bench stats`, the end-to-end tests and the interop example.
//!
//! Every unit gets `rows_per_unit` accepted rows and `rejections_per_unit` rejections cycling
//! through [`REJECT_CYCLE`]. Images are incompressible random bytes of a seeded random size
//! (uniform in ±75 % around `mean_image_bytes`), or, with `real_images`, small real JPEGs (a
//! coloured shape on a background). Captions name the shape and colour; passthrough columns are
//! `similarity` (f32, uniform in [0.2, 0.45)) and `label_shape` (utf8). Same spec, same dataset.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, SchemaRef};
use flipstream_schemas::{
    CommitRecord, DatasetManifest, RejectReason, UnitSpec, WorkerInfo, shard_schema_with_extras,
};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use flipstream_shard::commit::{DatasetWriter, Rejection};
use flipstream_shard::error::{Result, ShardError};
use flipstream_shard::rows::{Scalar, ShardBatchBuilder, ShardRow};
use flipstream_shard::store::StoreRoot;
use flipstream_shard::writer::WriterSettings;

/// Shapes drawn (and named in captions and `label_shape`).
pub const SHAPES: [&str; 4] = ["circle", "square", "triangle", "stripe"];
/// Colours drawn (and named in captions).
pub const COLORS: [(&str, [u8; 3]); 5] = [
    ("red", [200, 40, 40]),
    ("green", [40, 160, 60]),
    ("blue", [40, 80, 200]),
    ("yellow", [230, 200, 40]),
    ("purple", [130, 50, 160]),
];
/// Reasons given to rejections, in turn.
pub const REJECT_CYCLE: [RejectReason; 4] = [
    RejectReason::TooSmall,
    RejectReason::DecodeError,
    RejectReason::CaptionTooShort,
    RejectReason::DuplicateExact,
];

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticSpec {
    /// Units (`unit-0000`, `unit-0001`, …).
    pub units: usize,
    /// Accepted rows per unit.
    pub rows_per_unit: usize,
    /// Rejections per unit.
    pub rejections_per_unit: usize,
    /// Mean size of the random image bytes (ignored with `real_images`).
    pub mean_image_bytes: usize,
    /// Real JPEG images instead of random bytes.
    pub real_images: bool,
    /// Seed of everything random.
    pub seed: u64,
    /// Shard layout.
    pub settings: WriterSettings,
}

impl Default for SyntheticSpec {
    fn default() -> Self {
        Self {
            units: 4,
            rows_per_unit: 1000,
            rejections_per_unit: 40,
            mean_image_bytes: 20_000,
            real_images: false,
            seed: 0,
            settings: WriterSettings::default(),
        }
    }
}

/// The shard schema of generated datasets.
pub fn schema() -> SchemaRef {
    shard_schema_with_extras(&[
        Field::new("similarity", DataType::Float32, true),
        Field::new("label_shape", DataType::Utf8, true),
    ])
}

/// A small real JPEG: a `color` `shape` on a light background.
pub fn draw_jpeg(
    width: u32,
    height: u32,
    shape: usize,
    color: [u8; 3],
    quality: u8,
) -> Result<Vec<u8>> {
    let (cx, cy) = (width as f32 / 2.0, height as f32 / 2.0);
    let r = width.min(height) as f32 * 0.35;
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        let (dx, dy) = (x as f32 - cx, y as f32 - cy);
        let inside = match shape % SHAPES.len() {
            0 => dx * dx + dy * dy < r * r,
            1 => dx.abs() < r && dy.abs() < r,
            2 => dy > -r && dy < r && dx.abs() < (dy + r) / 2.0,
            _ => ((x / 12) % 2) == 0,
        };
        if inside {
            image::Rgb(color)
        } else {
            image::Rgb([235, 235 - (y % 40) as u8, 225])
        }
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(&img)
        .map_err(|e| ShardError::BadRecord {
            path: "synthetic image".into(),
            detail: e.to_string(),
        })?;
    Ok(out)
}

fn row(spec: &SyntheticSpec, unit: &str, i: usize, rng: &mut ChaCha8Rng) -> Result<ShardRow> {
    let shape = rng.random_range(0..SHAPES.len());
    let (color_name, color) = COLORS[rng.random_range(0..COLORS.len())];
    let orig_width = rng.random_range(300..1600u32);
    let orig_height = rng.random_range(300..1600u32);
    let (width, height) = if orig_width < orig_height {
        (256, (256 * orig_height / orig_width).max(256))
    } else {
        ((256 * orig_width / orig_height).max(256), 256)
    };
    let image = if spec.real_images {
        draw_jpeg(width / 2, height / 2, shape, color, 85)?
    } else {
        let m = spec.mean_image_bytes.max(4);
        let mut b = vec![0u8; rng.random_range(m / 4..m * 7 / 4)];
        rng.fill_bytes(&mut b);
        b
    };
    let (width, height) = if spec.real_images {
        (width / 2, height / 2)
    } else {
        (width, height)
    };
    let shape_name = SHAPES[shape];
    Ok(ShardRow {
        key: format!("{unit}/{i:06}"),
        content_hash: *blake3::hash(&image).as_bytes(),
        image,
        image_format: "jpeg",
        width,
        height,
        orig_width,
        orig_height,
        caption: format!("a {color_name} {shape_name} on a light background, photo number {i}"),
        url: Some(format!("https://example.com/{unit}/{i}.jpg")),
        source: format!("{unit}.parquet"),
        phash: rng.random(),
        extras: vec![
            Some(Scalar::Float(rng.random_range(0.2..0.45))),
            Some(Scalar::Str(shape_name.to_string())),
        ],
    })
}

/// Writes the dataset described by `spec` to `root` (a new or matching dataset) and returns the
/// commit records.
pub async fn write_synthetic(root: &StoreRoot, spec: &SyntheticSpec) -> Result<Vec<CommitRecord>> {
    let manifest = DatasetManifest::new(
        format!("synthetic-{:016x}", spec.seed),
        serde_json::json!({ "generator": "flipstream_testkit::synthetic", "seed": spec.seed }),
    );
    let writer = DatasetWriter::open(root.clone(), manifest, spec.settings.clone()).await?;
    let schema = schema();
    let batch_rows = spec.settings.row_group_rows.clamp(1, 4096);
    let mut records = Vec::with_capacity(spec.units);
    for u in 0..spec.units {
        let unit = format!("unit-{u:04}");
        let mut rng =
            ChaCha8Rng::seed_from_u64(spec.seed ^ (u as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let spec_unit = UnitSpec {
            id: unit.clone(),
            source: format!("synthetic://{unit}"),
            kind: "synthetic".into(),
            start: None,
            end: None,
        };
        let mut w = writer
            .begin_unit(spec_unit, schema.clone(), WorkerInfo::default())
            .await?;
        let mut builder = ShardBatchBuilder::new(Arc::clone(&schema));
        let mut input_bytes = 0u64;
        for i in 0..spec.rows_per_unit {
            let r = row(spec, &unit, i, &mut rng)?;
            input_bytes += r.image.len() as u64;
            builder.push(r)?;
            if builder.len() >= batch_rows {
                w.write(&builder.finish()?).await?;
            }
        }
        if !builder.is_empty() {
            w.write(&builder.finish()?).await?;
        }
        for j in 0..spec.rejections_per_unit {
            let reason = REJECT_CYCLE[j % REJECT_CYCLE.len()];
            w.reject(&Rejection {
                key: format!("{unit}/r{j:06}"),
                source: format!("{unit}.parquet"),
                url: Some(format!("https://example.com/{unit}/r{j}.jpg")),
                reason,
                detail: format!("synthetic {} #{j}", reason.code()),
            });
        }
        let read = (spec.rows_per_unit + spec.rejections_per_unit) as u64;
        records.push(w.commit(read, input_bytes).await?);
    }
    Ok(records)
}
