//! The run's caption tokenizer when none is given: a byte-level BPE
//! ([`flipstream_loader::tokenize::train_bpe`]) trained on the captions of the rows the run trains
//! on — the train side of the split view (rows whose key [`split_of`] puts in train and whose
//! label values are not a held-out combination, [`SplitManifest::side_of`]), or every row. Only
//! the `key` and `caption` columns (and the split's holdout columns) are read, row group by row
//! group.
//!
//! [`split_of`]: flipstream_schemas::split_of

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use flipstream_loader::tokenize::{BpeOptions, train_bpe};
use flipstream_schemas::{Split, SplitManifest, columns};
use flipstream_shard::split::LabelColumns;
use flipstream_shard::{Dataset, ShardReader};
use tokenizers::Tokenizer;

use crate::error::{Result, TrainError};
use crate::run::spec::DataSplit;

/// Reads the captions of `split` of the dataset at `url`.
pub fn training_captions(url: &str, split: DataSplit) -> Result<Vec<String>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| TrainError::Request(format!("starting the I/O runtime: {e}")))?;
    let ds_err = |context: String| {
        move |source| TrainError::Dataset {
            context,
            source: Box::new(source),
        }
    };
    runtime.block_on(async {
        let ds = Dataset::open(url)
            .await
            .map_err(ds_err(format!("opening {url}")))?;
        let manifest = match split {
            DataSplit::All => None,
            DataSplit::Train => Some(
                ds.split_manifest()
                    .await
                    .map_err(ds_err(format!("reading the split view of {url}")))?
                    .ok_or_else(|| no_split(url))?,
            ),
        };
        let label_columns = manifest.as_ref().map_or(&[][..], |m| m.holdout_columns());
        let mut names = vec![columns::KEY, columns::CAPTION];
        for c in label_columns {
            if !names.contains(&c.as_str()) {
                names.push(c);
            }
        }
        let mut captions = Vec::new();
        for shard in ds.shards() {
            let reader = ShardReader::open(ds.root(), &shard.path, Some(shard.bytes))
                .await
                .map_err(ds_err(format!("reading captions of {url}")))?;
            for rg in 0..reader.num_row_groups() {
                let batch = reader
                    .read_row_group(rg, Some(&names))
                    .await
                    .map_err(ds_err(format!("reading captions of {url}")))?;
                train_side_captions(&batch, manifest.as_ref(), &shard.path, &mut captions)?;
            }
        }
        Ok(captions)
    })
}

/// Appends the non-null captions of `batch` on the train side of `manifest` (every row's
/// without one) to `out`.
fn train_side_captions(
    batch: &RecordBatch,
    manifest: Option<&SplitManifest>,
    shard: &str,
    out: &mut Vec<String>,
) -> Result<()> {
    let text = |name: &str| -> Result<ArrayRef> {
        let col = batch
            .column_by_name(name)
            .ok_or_else(|| TrainError::Request(format!("{shard} has no `{name}` column")))?;
        arrow::compute::cast(col, &DataType::Utf8)
            .map_err(|e| TrainError::Request(format!("{shard} column `{name}`: {e}")))
    };
    let (keys, caps) = (text(columns::KEY)?, text(columns::CAPTION)?);
    let (keys, caps) = (keys.as_string::<i32>(), caps.as_string::<i32>());
    let labels = match manifest.map(SplitManifest::holdout_columns) {
        Some(names) if !names.is_empty() => Some(
            LabelColumns::from_batch(batch, names)
                .map_err(|e| TrainError::Request(format!("{shard}: {e}")))?,
        ),
        _ => None,
    };
    for i in 0..caps.len() {
        if caps.is_null(i) {
            continue;
        }
        let keep = match manifest {
            None => true,
            Some(m) => {
                let values = labels.as_ref().and_then(|l| l.values(i));
                !keys.is_null(i) && m.side_of(keys.value(i), values.as_deref()) == Split::Train
            }
        };
        if keep {
            out.push(caps.value(i).to_string());
        }
    }
    Ok(())
}

/// The error for a dataset without a split view when the train side is asked for.
pub fn no_split(url: &str) -> TrainError {
    TrainError::Request(format!(
        "{url} has no train/validation split: create one with `flipstream shard split {url} \
         --val-fraction 0.05`, or train on every row with --all-data (then nothing is held out \
         for evaluation)"
    ))
}

/// Trains a byte-level BPE of at most `vocab_size` tokens on the captions of `split`.
pub fn train_tokenizer(
    url: &str,
    split: DataSplit,
    vocab_size: usize,
) -> Result<(Tokenizer, usize)> {
    let captions = training_captions(url, split)?;
    if captions.is_empty() {
        return Err(TrainError::Request(format!(
            "{url} has no training captions to learn a tokenizer from"
        )));
    }
    let n = captions.len();
    let options = BpeOptions {
        vocab_size,
        ..BpeOptions::default()
    };
    let tok =
        train_bpe(captions.into_iter(), &options).map_err(|source| TrainError::Tokenizer {
            context: format!("training a tokenizer on the captions of {url}"),
            source: Box::new(source),
        })?;
    Ok((tok, n))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use flipstream_schemas::records::SPLIT_FORMAT;
    use flipstream_schemas::{Holdout, SCHEMA_VERSION};

    use super::*;

    /// 40 rows: colour red/blue alternating (null at row 2), shape 0/1 every two rows.
    fn batch() -> RecordBatch {
        let n = 40usize;
        let text = |f: &dyn Fn(usize) -> Option<String>| -> ArrayRef {
            Arc::new((0..n).map(f).collect::<StringArray>())
        };
        RecordBatch::try_from_iter([
            (columns::KEY, text(&|i| Some(format!("k{i}")))),
            (columns::CAPTION, text(&|i| Some(format!("caption {i}")))),
            (
                "label_color",
                text(&|i| (i != 2).then(|| ["red", "blue"][i % 2].to_string())),
            ),
            (
                "label_shape",
                Arc::new(Int64Array::from_iter_values(
                    (0..n).map(|i| (i / 2 % 2) as i64),
                )),
            ),
        ])
        .unwrap()
    }

    #[test]
    fn held_out_combinations_are_not_training_captions() {
        let manifest = SplitManifest {
            format: SPLIT_FORMAT.into(),
            schema_version: SCHEMA_VERSION,
            val_fraction: 0.0,
            seed: 0,
            created_at: String::new(),
            train_rows: 0,
            val_rows: 0,
            row_groups: vec![],
            holdout: Some(Holdout {
                columns: vec!["label_color".into(), "label_shape".into()],
                fraction: 0.25,
                distinct_combos: 4,
                combos: vec![vec!["red".into(), "1".into()]],
                rows: 9,
            }),
        };
        let mut out = Vec::new();
        train_side_captions(&batch(), Some(&manifest), "s", &mut out).unwrap();
        // rows 6, 10, 14, … are red × 1; row 2 would be, but its colour is null
        let want: Vec<String> = (0..40)
            .filter(|i| i % 4 != 2 || *i == 2)
            .map(|i| format!("caption {i}"))
            .collect();
        assert_eq!(out, want);
        let mut all = Vec::new();
        train_side_captions(&batch(), None, "s", &mut all).unwrap();
        assert_eq!(all.len(), 40);
    }
}
