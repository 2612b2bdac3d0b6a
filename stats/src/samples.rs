//! Sampled rows with thumbnails (`--sample-images N`): the only place the report reads images.
//!
//! The N rows are spread evenly over the dataset's canonical row order (row `⌊(2i + 1)·R / 2N⌋`
//! for i < N), so the same dataset always gives the same sample. Each row is read with a Parquet
//! row selection and the page index, which fetches only the pages holding the chosen rows, not
//! whole row groups. Images are decoded with size limits and shrunk to JPEG thumbnails; an image
//! that does not decode gives a sample without thumbnail and with the decoder's message.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};
use flipstream_schemas::columns;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, RowSelection, RowSelector,
};
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use parquet::file::metadata::PageIndexPolicy;

use super::StatsError;
use super::report::SampleSummary;
use flipstream_shard::dataset::RowGroupRef;
use flipstream_shard::error::ShardError;
use flipstream_shard::reader::StoreFile;
use flipstream_shard::store::StoreRoot;

/// A thumbnail to write next to the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumbnail {
    /// File name relative to the report folder (`samples/000.jpg`).
    pub file_name: String,
    /// JPEG bytes.
    pub jpeg: Vec<u8>,
}

/// Longest side of a thumbnail, pixels.
pub(crate) const THUMBNAIL_PX: u32 = 160;
/// Largest image side decoded for a thumbnail.
const MAX_SIDE: u32 = 16_384;
/// Largest decode allocation.
const MAX_ALLOC: u64 = 512 << 20;

const SAMPLE_COLUMNS: [&str; 7] = [
    columns::KEY,
    columns::CAPTION,
    columns::IMAGE,
    columns::IMAGE_FORMAT,
    columns::WIDTH,
    columns::HEIGHT,
    columns::IMAGE_BYTES,
];

/// Row groups and the rows to sample from each, in canonical order.
pub(crate) fn sample_positions(
    row_groups: &[RowGroupRef],
    n: usize,
) -> Vec<(RowGroupRef, Vec<u64>)> {
    let total: u64 = row_groups.iter().map(|r| r.rows).sum();
    if n == 0 || total == 0 {
        return Vec::new();
    }
    let n = (n as u64).min(total);
    let wanted: Vec<u64> = (0..n)
        .map(|i| ((2 * i + 1) as u128 * total as u128 / (2 * n) as u128) as u64)
        .collect();
    let mut out: Vec<(RowGroupRef, Vec<u64>)> = Vec::new();
    let mut start = 0u64;
    let mut next = wanted.iter().peekable();
    for rg in row_groups {
        let mut rows = Vec::new();
        while let Some(&&w) = next.peek() {
            if w >= start + rg.rows {
                break;
            }
            rows.push(w - start);
            next.next();
        }
        if !rows.is_empty() {
            out.push((rg.clone(), rows));
        }
        start += rg.rows;
    }
    out
}

/// The column `name` of `batch`, or an error naming it and where (`at`).
fn column<'a>(batch: &'a RecordBatch, name: &str, at: &str) -> Result<&'a ArrayRef, StatsError> {
    batch
        .column_by_name(name)
        .ok_or_else(|| StatsError::Column {
            path: at.to_string(),
            column: name.to_string(),
            detail: "missing".into(),
        })
}

fn text(batch: &RecordBatch, name: &str, at: &str) -> Result<ArrayRef, StatsError> {
    let col = column(batch, name, at)?;
    let to = if name == columns::IMAGE {
        DataType::Binary
    } else {
        DataType::Utf8
    };
    arrow::compute::cast(col, &to).map_err(|e| StatsError::Column {
        path: at.to_string(),
        column: name.to_string(),
        detail: format!("cannot read {}: {e}", col.data_type()),
    })
}

fn number(batch: &RecordBatch, name: &str, at: &str, i: usize) -> Result<u64, StatsError> {
    let col = column(batch, name, at)?;
    let f = arrow::compute::cast(col, &DataType::Float64).map_err(|e| StatsError::Column {
        path: at.to_string(),
        column: name.to_string(),
        detail: e.to_string(),
    })?;
    let f = f.as_primitive::<Float64Type>();
    Ok(if f.is_null(i) {
        0
    } else {
        f.value(i).max(0.0) as u64
    })
}

/// Decodes an image with limits and encodes a JPEG thumbnail.
pub(crate) fn thumbnail(bytes: &[u8], px: u32) -> Result<Vec<u8>, String> {
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| e.to_string())?;
    let thumb = image::DynamicImage::ImageRgb8(img.thumbnail(px, px).to_rgb8());
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 82)
        .encode_image(&thumb)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

async fn read_row_group_samples(
    root: &StoreRoot,
    rg: &RowGroupRef,
    rows: &[u64],
    fetched: Arc<AtomicU64>,
) -> Result<Vec<(SampleSummary, Option<Vec<u8>>)>, StatsError> {
    let location = root.location(&rg.shard);
    let at = format!("{location} row group {}", rg.index);
    let parquet_err = |e| StatsError::Shard(ShardError::parquet(&at, e));
    let mut reader = StoreFile::new(
        root.store().clone(),
        Path::from(rg.shard.as_str()),
        Some(rg.shard_bytes),
    )
    .counting_into(fetched);
    // the offset index, where there is one, lets the row selection skip whole pages
    let options = ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Optional);
    let meta = ArrowReaderMetadata::load_async(&mut reader, options)
        .await
        .map_err(parquet_err)?;
    let schema = meta.schema().clone();
    let mut roots = Vec::new();
    for name in SAMPLE_COLUMNS {
        roots.push(schema.index_of(name).map_err(|_| StatsError::Column {
            path: location.clone(),
            column: name.to_string(),
            detail: "missing".into(),
        })?);
    }
    let mask = ProjectionMask::roots(meta.metadata().file_metadata().schema_descr(), roots);
    let mut selectors = Vec::new();
    let mut pos = 0u64;
    for &r in rows {
        if r > pos {
            selectors.push(RowSelector::skip((r - pos) as usize));
        }
        selectors.push(RowSelector::select(1));
        pos = r + 1;
    }
    let stream = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, meta)
        .with_row_groups(vec![rg.index])
        .with_projection(mask)
        .with_row_selection(RowSelection::from(selectors))
        .build()
        .map_err(parquet_err)?;
    let batches: Vec<RecordBatch> = stream.try_collect().await.map_err(parquet_err)?;
    let mut out = Vec::new();
    let mut row_iter = rows.iter();
    for batch in &batches {
        let (keys, captions, images, formats) = (
            text(batch, columns::KEY, &at)?,
            text(batch, columns::CAPTION, &at)?,
            text(batch, columns::IMAGE, &at)?,
            text(batch, columns::IMAGE_FORMAT, &at)?,
        );
        let (keys, captions, images, formats) = (
            keys.as_string::<i32>(),
            captions.as_string::<i32>(),
            images.as_binary::<i32>(),
            formats.as_string::<i32>(),
        );
        for i in 0..batch.num_rows() {
            let row = row_iter.next().copied().unwrap_or_default();
            let value = |a: &arrow::array::StringArray| {
                if a.is_null(i) {
                    String::new()
                } else {
                    a.value(i).to_string()
                }
            };
            let (thumb, error) = if images.is_null(i) {
                (None, Some("image is null".to_string()))
            } else {
                match thumbnail(images.value(i), THUMBNAIL_PX) {
                    Ok(jpeg) => (Some(jpeg), None),
                    Err(e) => (None, Some(e)),
                }
            };
            let summary = SampleSummary {
                key: value(keys),
                caption: value(captions),
                shard: rg.shard.clone(),
                row_group: rg.index as u64,
                row,
                image_format: value(formats),
                width: number(batch, columns::WIDTH, &at, i)?,
                height: number(batch, columns::HEIGHT, &at, i)?,
                image_bytes: number(batch, columns::IMAGE_BYTES, &at, i)?,
                thumbnail: None,
                error,
            };
            out.push((summary, thumb));
        }
    }
    Ok(out)
}

/// Reads `n` evenly spread rows and makes their thumbnails. Returns the samples, the thumbnails
/// and the bytes fetched.
pub(crate) async fn read_samples(
    root: &StoreRoot,
    row_groups: &[RowGroupRef],
    n: usize,
    concurrency: usize,
) -> Result<(Vec<SampleSummary>, Vec<Thumbnail>, u64), StatsError> {
    let plan = sample_positions(row_groups, n);
    let fetched = Arc::new(AtomicU64::new(0));
    let results: Vec<Vec<(SampleSummary, Option<Vec<u8>>)>> = futures::stream::iter(plan.iter())
        .map(|(rg, rows)| read_row_group_samples(root, rg, rows, fetched.clone()))
        .buffered(concurrency.max(1))
        .try_collect()
        .await?;
    let mut samples = Vec::new();
    let mut thumbs = Vec::new();
    for (i, (mut s, jpeg)) in results.into_iter().flatten().enumerate() {
        if let Some(jpeg) = jpeg {
            let file_name = format!("samples/{i:03}.jpg");
            s.thumbnail = Some(file_name.clone());
            thumbs.push(Thumbnail { file_name, jpeg });
        }
        samples.push(s);
    }
    Ok((samples, thumbs, fetched.load(Ordering::Relaxed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rg(shard: &str, index: usize, rows: u64) -> RowGroupRef {
        RowGroupRef {
            shard: shard.into(),
            shard_bytes: 1,
            index,
            rows,
            image_checksum: None,
        }
    }

    #[test]
    fn positions_are_spread_evenly_and_capped_by_the_row_count() {
        let rgs = [rg("a", 0, 10), rg("a", 1, 10), rg("b", 0, 5)];
        let plan = sample_positions(&rgs, 5);
        // total 25, rows 2, 7, 12, 17, 22
        let flat: Vec<(String, usize, Vec<u64>)> = plan
            .into_iter()
            .map(|(r, rows)| (r.shard, r.index, rows))
            .collect();
        assert_eq!(
            flat,
            [
                ("a".to_string(), 0, vec![2, 7]),
                ("a".to_string(), 1, vec![2, 7]),
                ("b".to_string(), 0, vec![2])
            ]
        );
        let all: usize = sample_positions(&rgs, 100)
            .iter()
            .map(|(_, r)| r.len())
            .sum();
        assert_eq!(all, 25);
        assert!(sample_positions(&rgs, 0).is_empty());
    }

    #[test]
    fn undecodable_images_give_a_message() {
        assert!(thumbnail(b"not an image", 64).is_err());
        let img = image::RgbImage::from_fn(300, 200, |x, y| image::Rgb([x as u8, y as u8, 90]));
        let mut png = Vec::new();
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let jpeg = thumbnail(&png, 64).unwrap();
        let back = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((back.width(), back.height()), (64, 43));
    }
}
