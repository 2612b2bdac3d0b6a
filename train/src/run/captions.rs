//! The run's caption tokenizer when none is given: a byte-level BPE
//! ([`flipstream_shard::tokenize::train_bpe`]) trained on the captions of the rows the run trains
//! on — the train side of the split view (rows whose key [`split_of`] puts in train), or every
//! row. Only the `key` and `caption` columns are read, row group by row group.

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use flipstream_schemas::{Split, columns, split_of};
use flipstream_shard::tokenize::{BpeOptions, train_bpe};
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
        let filter = match split {
            DataSplit::All => None,
            DataSplit::Train => {
                let manifest = ds
                    .split_manifest()
                    .await
                    .map_err(ds_err(format!("reading the split view of {url}")))?
                    .ok_or_else(|| no_split(url))?;
                Some((manifest.seed, manifest.val_fraction))
            }
        };
        let mut captions = Vec::new();
        for shard in ds.shards() {
            let reader = ShardReader::open(ds.root(), &shard.path, Some(shard.bytes))
                .await
                .map_err(ds_err(format!("reading captions of {url}")))?;
            for rg in 0..reader.num_row_groups() {
                let batch = reader
                    .read_row_group(rg, Some(&[columns::KEY, columns::CAPTION]))
                    .await
                    .map_err(ds_err(format!("reading captions of {url}")))?;
                let text = |name: &str| -> Result<arrow::array::ArrayRef> {
                    let col = batch.column_by_name(name).ok_or_else(|| {
                        TrainError::Request(format!("{} has no `{name}` column", shard.path))
                    })?;
                    arrow::compute::cast(col, &DataType::Utf8).map_err(|e| {
                        TrainError::Request(format!("{} column `{name}`: {e}", shard.path))
                    })
                };
                let (keys, caps) = (text(columns::KEY)?, text(columns::CAPTION)?);
                let (keys, caps) = (keys.as_string::<i32>(), caps.as_string::<i32>());
                for i in 0..caps.len() {
                    if caps.is_null(i) {
                        continue;
                    }
                    let keep = match filter {
                        None => true,
                        Some((seed, fraction)) => {
                            !keys.is_null(i)
                                && split_of(keys.value(i), seed, fraction) == Split::Train
                        }
                    };
                    if keep {
                        captions.push(caps.value(i).to_string());
                    }
                }
            }
        }
        Ok(captions)
    })
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
