//! The loader benchmark behind `flipstream bench loader` (driven by `scripts/bench-loader.sh`).
//!
//! [`import_webdataset_tars`] turns the benchmark's WebDataset tars into a flipstream dataset,
//! byte for byte the same JPEGs, so both pipelines decode identical files. [`measure_loader`]
//! then streams it for a few epochs with the benchmark's augmentation (224 px RandomResizedCrop,
//! scale (0.5, 1), bilinear like torchvision's default, flip p = 0.5, batch 64) and reports
//! images per second of wall time and per CPU-second of the whole process.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use flipstream_schemas::{
    DatasetManifest, RejectReason, UnitSpec, WorkerInfo, layout, shard_schema,
};
use serde::Serialize;

use super::config::{Interpolation, LoaderConfig, Mode, Rank};
use super::error::LoaderResult;
use super::pipeline::{Loader, Start};
use flipstream_shard::commit::{DatasetWriter, Rejection};
use flipstream_shard::error::{Result, ShardError};
use flipstream_shard::rows::{ShardBatchBuilder, ShardRow};
use flipstream_shard::store::StoreRoot;
use flipstream_shard::writer::WriterSettings;

/// What [`import_webdataset_tars`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// Tars written as units in this call.
    pub units_written: usize,
    /// Tars already committed by an earlier call (skipped).
    pub units_skipped: usize,
    /// Samples accepted in this call.
    pub accepted: u64,
    /// Samples rejected in this call (no image, no caption, not an image).
    pub rejected: u64,
}

/// One WebDataset sample: its members by extension.
struct TarSample {
    key: String,
    members: BTreeMap<String, Vec<u8>>,
}

fn io_error(path: &Path, e: std::io::Error) -> ShardError {
    ShardError::BadRecord {
        path: path.display().to_string(),
        detail: e.to_string(),
    }
}

/// Reads a tar's samples: members grouped by key (the path up to the first dot of the file
/// name), in archive order, as WebDataset does.
fn read_tar(path: &Path) -> Result<Vec<TarSample>> {
    let file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let mut archive = tar::Archive::new(file);
    let mut samples: Vec<TarSample> = Vec::new();
    for entry in archive.entries().map_err(|e| io_error(path, e))? {
        let mut entry = entry.map_err(|e| io_error(path, e))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map_err(|e| io_error(path, e))?
            .to_string_lossy()
            .into_owned();
        let (dir, file) = name
            .rsplit_once('/')
            .map_or(("", name.as_str()), |(d, f)| (d, f));
        let Some((stem, ext)) = file.split_once('.') else {
            continue;
        };
        let key = if dir.is_empty() {
            stem.to_string()
        } else {
            format!("{dir}/{stem}")
        };
        let mut data = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut data)
            .map_err(|e| io_error(path, e))?;
        match samples.last_mut() {
            Some(s) if s.key == key => {
                s.members.insert(ext.to_ascii_lowercase(), data);
            }
            _ => samples.push(TarSample {
                key,
                members: BTreeMap::from([(ext.to_ascii_lowercase(), data)]),
            }),
        }
    }
    Ok(samples)
}

/// Writes the samples of WebDataset `tars` (`<key>.jpg|jpeg|png|webp` + `<key>.txt`) as a
/// flipstream dataset at `out`, one unit per tar, keeping the encoded images as they are.
/// Already committed tars are skipped, so re-running is cheap. This is a benchmark fixture, not
/// an ingest: images are not filtered, resized or deduplicated, and `phash` is stored as 0.
pub async fn import_webdataset_tars(
    tars: &[PathBuf],
    out: &str,
    settings: WriterSettings,
) -> Result<ImportReport> {
    let root = StoreRoot::parse(out)?;
    let names: Vec<String> = tars.iter().map(|p| p.display().to_string()).collect();
    let fingerprint = blake3::hash(names.join("\n").as_bytes()).to_hex()[..32].to_string();
    let manifest = DatasetManifest::new(
        fingerprint,
        serde_json::json!({ "bench": "loader", "tars": names }),
    );
    let writer = DatasetWriter::open(root, manifest, settings).await?;
    let mut report = ImportReport::default();
    for tar_path in tars {
        let stem = tar_path
            .file_stem()
            .map_or_else(|| "tar".into(), |s| s.to_string_lossy().into_owned());
        let id = layout::sanitize_unit_id(&stem);
        if writer.is_committed(&id).await?.is_some() {
            report.units_skipped += 1;
            continue;
        }
        let samples = read_tar(tar_path)?;
        let spec = UnitSpec {
            id: id.clone(),
            source: format!("file://{}", tar_path.display()),
            kind: "webdataset".into(),
            start: None,
            end: None,
        };
        let mut unit = writer
            .begin_unit(spec, shard_schema(), WorkerInfo::default())
            .await?;
        let mut rows = ShardBatchBuilder::new(shard_schema());
        let (mut read, mut input_bytes) = (0u64, 0u64);
        for mut s in samples {
            read += 1;
            let image = ["jpg", "jpeg", "png", "webp"]
                .iter()
                .find_map(|e| s.members.remove(*e).map(|b| (*e, b)));
            let caption = s
                .members
                .remove("txt")
                .map(|b| String::from_utf8_lossy(&b).trim().to_string());
            let reject = |reason: RejectReason, detail: &str| Rejection {
                key: s.key.clone(),
                source: tar_path.display().to_string(),
                url: None,
                reason,
                detail: detail.to_string(),
            };
            let Some((ext, bytes)) = image else {
                unit.reject(&reject(
                    RejectReason::MissingImage,
                    "no jpg/jpeg/png/webp member",
                ));
                continue;
            };
            input_bytes += bytes.len() as u64;
            let Some(caption) = caption else {
                unit.reject(&reject(RejectReason::CaptionMissing, "no txt member"));
                continue;
            };
            let dims = image::ImageReader::new(std::io::Cursor::new(&bytes))
                .with_guessed_format()
                .map_err(|e| e.to_string())
                .and_then(|r| r.into_dimensions().map_err(|e| e.to_string()));
            let (width, height) = match dims {
                Ok(d) => d,
                Err(e) => {
                    unit.reject(&reject(RejectReason::NotAnImage, &e));
                    continue;
                }
            };
            rows.push(ShardRow {
                key: s.key.clone(),
                content_hash: *blake3::hash(&bytes).as_bytes(),
                image: bytes,
                image_format: match ext {
                    "png" => "png",
                    "webp" => "webp",
                    _ => "jpeg",
                },
                width,
                height,
                orig_width: width,
                orig_height: height,
                caption,
                url: None,
                source: tar_path.display().to_string(),
                phash: 0,
                extras: Vec::new(),
            })?;
        }
        let batch = rows.finish()?;
        report.accepted += batch.num_rows() as u64;
        unit.write(&batch).await?;
        let record = unit.commit(read, input_bytes).await?;
        report.rejected += record.counts.rejected;
        report.units_written += 1;
    }
    Ok(report)
}

/// Settings of one benchmark measurement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoaderBenchOptions {
    /// Decode threads (the "workers" of the comparison).
    pub threads: usize,
    /// Epochs streamed in the measurement.
    pub epochs: u64,
    /// Global batch size.
    pub batch_size: usize,
    /// Output side in pixels.
    pub image_size: u32,
    /// RandomResizedCrop area scale.
    pub crop_scale: (f64, f64),
    /// Seed.
    pub seed: u64,
}

impl Default for LoaderBenchOptions {
    fn default() -> Self {
        Self {
            threads: 1,
            epochs: 3,
            batch_size: 64,
            image_size: 224,
            crop_scale: (0.5, 1.0),
            seed: 0,
        }
    }
}

/// One measurement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoaderMeasurement {
    /// Always `flipstream`.
    pub pipeline: &'static str,
    /// Decode threads.
    pub threads: usize,
    /// Images delivered.
    pub images: u64,
    /// Batches delivered.
    pub batches: u64,
    /// Slots substituted (0 on a healthy corpus).
    pub substituted: u64,
    /// Wall time from opening the dataset to the last batch.
    pub seconds: f64,
    /// CPU time of the whole process over the same span (Linux `/proc`; absent elsewhere).
    pub cpu_seconds: Option<f64>,
    /// `images / seconds`.
    pub images_per_s: f64,
    /// `images / cpu_seconds`.
    pub images_per_cpu_s: Option<f64>,
    /// The loader configuration used.
    pub config: LoaderConfig,
}

/// CPU seconds used by this process so far (user + system), from `/proc/self/stat`, whose times
/// are in USER_HZ = 100 ticks per second on Linux.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // fields after the parenthesised command name; utime and stime are fields 14 and 15
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// Streams the dataset at `url` for `options.epochs` epochs on one rank and measures it.
pub fn measure_loader(url: &str, options: &LoaderBenchOptions) -> LoaderResult<LoaderMeasurement> {
    let config = LoaderConfig {
        mode: Mode::Train,
        batch_size: options.batch_size,
        lanes: 16,
        seed: options.seed,
        epochs: Some(options.epochs),
        image_size: options.image_size,
        crop_scale: options.crop_scale,
        interpolation: Interpolation::Bilinear,
        decode_threads: options.threads,
        io_threads: 1,
        ..Default::default()
    };
    let cpu0 = process_cpu_seconds();
    let t0 = Instant::now();
    let loader = Loader::open(url, config.clone(), Rank::SINGLE, Start::Epoch(0))?;
    let (mut images, mut batches, mut substituted) = (0u64, 0u64, 0u64);
    for batch in loader {
        let batch = batch?;
        images += batch.len() as u64;
        batches += 1;
        substituted += u64::from(batch.substituted);
    }
    let seconds = t0.elapsed().as_secs_f64();
    let cpu_seconds = match (cpu0, process_cpu_seconds()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    Ok(LoaderMeasurement {
        pipeline: "flipstream",
        threads: options.threads,
        images,
        batches,
        substituted,
        seconds,
        cpu_seconds,
        images_per_s: images as f64 / seconds.max(1e-9),
        images_per_cpu_s: cpu_seconds.filter(|&c| c > 0.0).map(|c| images as f64 / c),
        config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flipstream_shard::dataset::Dataset;

    /// A tar member set: key, image bytes, caption.
    type Sample<'a> = (&'a str, Option<Vec<u8>>, Option<&'a str>);

    fn tar_with(samples: &[Sample<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (key, img, txt) in samples {
            let mut add = |name: String, data: &[u8]| {
                let mut h = tar::Header::new_gnu();
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                b.append_data(&mut h, name, data).unwrap();
            };
            if let Some(img) = img {
                add(format!("{key}.jpg"), img);
            }
            if let Some(t) = txt {
                add(format!("{key}.txt"), t.as_bytes());
            }
        }
        b.into_inner().unwrap()
    }

    #[tokio::test]
    async fn tars_become_units_and_bad_samples_rejections() {
        let dir = tempfile::tempdir().unwrap();
        let mut jpeg = Vec::new();
        jpeg_encoder::Encoder::new(&mut jpeg, 90)
            .encode(&[9u8; 8 * 6 * 3], 8, 6, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        let tar = tar_with(&[
            ("a/000", Some(jpeg.clone()), Some("one")),
            ("a/001", None, Some("no image")),
            ("a/002", Some(b"junk".to_vec()), Some("junk")),
            ("a/003", Some(jpeg.clone()), None),
            ("a/004", Some(jpeg), Some("two")),
        ]);
        let tar_path = dir.path().join("part-0.tar");
        std::fs::write(&tar_path, tar).unwrap();
        let out = dir.path().join("ds");
        let out = out.to_str().unwrap();
        let r = import_webdataset_tars(
            std::slice::from_ref(&tar_path),
            out,
            WriterSettings::default(),
        )
        .await
        .unwrap();
        assert_eq!((r.units_written, r.accepted, r.rejected), (1, 2, 3));
        let again = import_webdataset_tars(&[tar_path], out, WriterSettings::default())
            .await
            .unwrap();
        assert_eq!(again.units_skipped, 1);
        let ds = Dataset::open(out).await.unwrap();
        assert_eq!(ds.rows(), 2);
        assert_eq!(ds.totals().rejected_by_reason.len(), 3);
    }

    #[test]
    fn cpu_time_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(process_cpu_seconds().is_some());
        }
    }
}
