//! Evaluation on the held-out (validation) side of a dataset's split view, with every patch
//! (mask 0):
//!
//! - **zero-shot classification**: each class ([`LabelSet`], e.g. colour × shape) is embedded as
//!   the normalised mean of its prompts' text embeddings; an image is assigned the class with the
//!   highest cosine similarity. Top-1, top-5, and per label column the accuracy of the predicted
//!   class's value (colour right, shape right), each with its chance level;
//! - **retrieval**: image→text and text→image recall@1/5/10 between the samples' images and their
//!   own captions.
//!
//! Samples are read in the loader's evaluation order (canonical, centre crops), the first
//! `max_samples` of them.

use std::path::Path;
use std::time::Instant;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use flipstream_shard::loader::{Loader, LoaderConfig, Mode, Rank, SplitSelection, Start};
use flipstream_shard::{Dataset, ShardReader, TextTokenizer};

use crate::error::{Result, TorchContext, TrainError};
use crate::run::prompts::{LabelSet, fill_template};
use crate::run::spec::EvalOptions;
use crate::step::TrainStep;

/// Recall at 1, 5 and 10.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Recall {
    /// Fraction of queries whose match ranks first.
    pub r1: f64,
    /// … among the first 5.
    pub r5: f64,
    /// … among the first 10.
    pub r10: f64,
}

/// Image↔text retrieval between the samples and their captions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrievalReport {
    /// Samples (queries per direction).
    pub samples: u64,
    /// Image → its caption among all captions.
    pub image_to_text: Recall,
    /// Caption → its image among all images.
    pub text_to_image: Recall,
    /// Recall@1 of a random ranking (1 / samples).
    pub chance_r1: f64,
}

/// Accuracy on one label column, read off the predicted class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnAccuracy {
    /// The label column.
    pub column: String,
    /// Distinct values of the column.
    pub values: usize,
    /// Fraction of samples whose predicted class has the right value in this column.
    pub accuracy: f64,
    /// 1 / values.
    pub chance: f64,
}

/// Zero-shot classification results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZeroShotReport {
    /// The label columns forming the class.
    pub label_columns: Vec<String>,
    /// Number of classes.
    pub classes: usize,
    /// Samples with every label present.
    pub samples: u64,
    /// Top-1 accuracy.
    pub top1: f64,
    /// Top-5 accuracy.
    pub top5: f64,
    /// 1 / classes.
    pub chance_top1: f64,
    /// Per label column.
    pub columns: Vec<ColumnAccuracy>,
    /// Prompt templates used.
    pub templates: usize,
}

/// One evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Optimizer steps of the evaluated weights.
    pub step: u64,
    /// Validation samples evaluated.
    pub samples: u64,
    /// Wall time.
    pub seconds: f64,
    /// Zero-shot classification (absent without label columns).
    pub zero_shot: Option<ZeroShotReport>,
    /// Retrieval.
    pub retrieval: RetrievalReport,
}

/// What to evaluate on.
#[derive(Debug, Clone)]
pub struct EvalData<'a> {
    /// The dataset (path or URL); it must have a split view with validation rows.
    pub dataset: &'a str,
    /// The run's `tokenizer.json`.
    pub tokenizer: &'a Path,
    /// Label columns, templates, sample limit, batch size.
    pub options: &'a EvalOptions,
    /// Decode threads of the loader (0: one per core).
    pub decode_threads: usize,
}

/// Checks before a run starts that `dataset` can be evaluated: it has a split view with
/// validation rows and, when `label_columns` are given, those columns. Returns the label columns
/// to use: all of them, or none when `required` is false and the dataset lacks some (a dataset
/// without labels still gets retrieval).
pub fn check_eval_data(
    dataset: &str,
    label_columns: &[String],
    required: bool,
) -> Result<(Vec<String>, Option<String>)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| TrainError::Request(format!("starting the I/O runtime: {e}")))?;
    runtime.block_on(async {
        let ds_err = |context: String| {
            move |source| TrainError::Dataset {
                context,
                source: Box::new(source),
            }
        };
        let ds = Dataset::open(dataset)
            .await
            .map_err(ds_err(format!("opening {dataset}")))?;
        let split = ds
            .split_manifest()
            .await
            .map_err(ds_err(format!("reading the split view of {dataset}")))?;
        match split {
            None => {
                return Err(TrainError::Request(format!(
                    "{dataset} has no validation split to evaluate on: create one with \
                     `flipstream shard split {dataset} --val-fraction 0.05`"
                )));
            }
            Some(s) if s.val_rows == 0 => {
                return Err(TrainError::Request(format!(
                    "the split view of {dataset} has no validation rows (val fraction {}): re-run \
                     `flipstream shard split {dataset} --val-fraction 0.05`",
                    s.val_fraction
                )));
            }
            Some(_) => {}
        }
        if label_columns.is_empty() {
            return Ok((Vec::new(), None));
        }
        let Some(shard) = ds.shards().next() else {
            return Ok((Vec::new(), None));
        };
        let reader = ShardReader::open(ds.root(), &shard.path, Some(shard.bytes))
            .await
            .map_err(ds_err(format!("reading the schema of {dataset}")))?;
        let schema = reader.schema();
        let missing: Vec<&String> = label_columns
            .iter()
            .filter(|c| schema.field_with_name(c).is_err())
            .collect();
        if missing.is_empty() {
            return Ok((label_columns.to_vec(), None));
        }
        let names: Vec<String> = missing.iter().map(|c| format!("`{c}`")).collect();
        let passthrough: Vec<&str> = schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .filter(|n| !flipstream_schemas::columns::SHARD_COLUMNS.contains(n))
            .collect();
        let message = format!(
            "{dataset} has no label column {} (its passthrough columns: {}); name its label \
             columns with --label-columns",
            names.join(", "),
            if passthrough.is_empty() {
                "none".to_string()
            } else {
                passthrough.join(", ")
            }
        );
        if required {
            Err(TrainError::Request(message))
        } else {
            Ok((
                Vec::new(),
                Some(format!("{message}; zero-shot skipped, retrieval only")),
            ))
        }
    })
}

/// Label values of `extras` (the label columns, in order) as strings; `None` for nulls.
fn label_rows(extras: &RecordBatch, n: usize) -> Result<Vec<Option<Vec<String>>>> {
    let mut columns = Vec::with_capacity(extras.num_columns());
    for (i, col) in extras.columns().iter().enumerate() {
        let text = arrow::compute::cast(col, &DataType::Utf8).map_err(|e| {
            TrainError::Request(format!(
                "label column `{}` cannot be read as text: {e}",
                extras.schema().field(i).name()
            ))
        })?;
        columns.push(text);
    }
    Ok((0..n)
        .map(|row| {
            columns
                .iter()
                .map(|c| {
                    let s = c.as_string::<i32>();
                    (!s.is_null(row)).then(|| s.value(row).to_string())
                })
                .collect()
        })
        .collect())
}

/// Embeddings and labels of the evaluation samples.
struct Collected {
    images: Tensor,
    texts: Tensor,
    labels: Vec<Option<Vec<String>>>,
}

fn collect(trainer: &TrainStep, data: &EvalData<'_>, labels: &[String]) -> Result<Collected> {
    let model = &trainer.config().model;
    let opts = data.options;
    let config = LoaderConfig {
        mode: Mode::Eval,
        split: SplitSelection::Val,
        batch_size: opts.batch_size,
        image_size: model.image_size as u32,
        tokenizer: Some(data.tokenizer.to_path_buf()),
        context_length: model.context_length,
        extra_columns: labels.to_vec(),
        decode_threads: data.decode_threads,
        io_threads: 1,
        ..LoaderConfig::default()
    };
    let loader =
        Loader::open(data.dataset, config, Rank::SINGLE, Start::Epoch(0)).map_err(|source| {
            TrainError::Loader {
                context: format!("validation data of {}", data.dataset),
                source: Box::new(source),
            }
        })?;
    let limit = if opts.max_samples == 0 {
        usize::MAX
    } else {
        opts.max_samples
    };
    let (mut images, mut texts, mut all_labels) = (Vec::new(), Vec::new(), Vec::new());
    let mut seen = 0usize;
    for batch in loader {
        let batch = batch.map_err(|source| TrainError::Loader {
            context: format!("validation data of {}", data.dataset),
            source: Box::new(source),
        })?;
        let n = batch.len().min(limit - seen);
        if n == 0 {
            break;
        }
        let (h, w) = (i64::from(batch.height), i64::from(batch.width));
        let ctx = batch.context_length as i64;
        let tokens = batch.tokens.as_deref().ok_or_else(|| {
            TrainError::Request("the evaluation loader returned no tokens".into())
        })?;
        let img = Tensor::from_slice(&batch.images[..n * (h * w * 3) as usize])
            .f_view([n as i64, h, w, 3])
            .context(|| "evaluation images".into())?;
        let tok = Tensor::from_slice(&tokens[..n * ctx as usize])
            .f_view([n as i64, ctx])
            .context(|| "evaluation tokens".into())?;
        images.push(to_cpu(trainer.encode_images(&img)?)?);
        texts.push(to_cpu(trainer.encode_texts(&tok)?)?);
        match &batch.extras {
            Some(extras) if !labels.is_empty() => {
                all_labels.extend(label_rows(extras, n)?);
            }
            _ => all_labels.extend(std::iter::repeat_n(None, n)),
        }
        seen += n;
        if seen >= limit {
            break;
        }
    }
    if seen == 0 {
        return Err(TrainError::Request(format!(
            "{} has no validation samples to evaluate",
            data.dataset
        )));
    }
    let cat = |parts: &[Tensor]| Tensor::f_cat(parts, 0).context(|| "joining embeddings".into());
    Ok(Collected {
        images: cat(&images)?,
        texts: cat(&texts)?,
        labels: all_labels,
    })
}

fn to_cpu(t: Tensor) -> Result<Tensor> {
    t.f_to_device(Device::Cpu)
        .and_then(|t| t.f_to_kind(Kind::Float))
        .context(|| "moving embeddings to the CPU".into())
}

/// Recall@1/5/10 of queries `q` against candidates `c` whose match is the same row.
fn recall(q: &Tensor, c: &Tensor) -> Result<Recall> {
    let run = || -> std::result::Result<Vec<f64>, tch::TchError> {
        let sims = q.f_matmul(&c.f_transpose(0, 1)?)?;
        let diag = sims.f_diagonal(0, 0, 1)?.f_unsqueeze(1)?;
        let rank = sims
            .f_gt_tensor(&diag)?
            .f_sum_dim_intlist(1, false, Kind::Int64)?;
        let mut out = Vec::new();
        for k in [1i64, 5, 10] {
            let hit = rank
                .f_lt(k)?
                .f_to_kind(Kind::Double)?
                .f_mean(Kind::Double)?;
            out.push(hit.f_double_value(&[])?);
        }
        Ok(out)
    };
    let v = run().context(|| "retrieval ranks".into())?;
    match v[..] {
        [r1, r5, r10] => Ok(Recall { r1, r5, r10 }),
        _ => Err(TrainError::Request("retrieval ranks: wrong shape".into())),
    }
}

/// Class embeddings `[classes, D]`: the normalised mean of each class's prompt embeddings.
fn class_embeddings(
    trainer: &TrainStep,
    tokenizer: &TextTokenizer,
    set: &LabelSet,
    opts: &EvalOptions,
) -> Result<Tensor> {
    let ctx = trainer.config().model.context_length as i64;
    let t = opts.templates.len() as i64;
    let mut prompts = Vec::with_capacity(set.len() * opts.templates.len());
    for c in 0..set.len() {
        let name = set.class_name(c);
        prompts.extend(opts.templates.iter().map(|tpl| fill_template(tpl, &name)));
    }
    let ids = tokenizer
        .encode_batch(&prompts)
        .map_err(|source| TrainError::Tokenizer {
            context: "encoding zero-shot prompts".into(),
            source: Box::new(source),
        })?;
    let tokens = Tensor::from_slice(&ids)
        .f_view([prompts.len() as i64, ctx])
        .context(|| "prompt tokens".into())?;
    let chunk = opts.batch_size.max(1) as i64;
    let mut parts = Vec::new();
    let n = prompts.len() as i64;
    let mut start = 0;
    while start < n {
        let len = chunk.min(n - start);
        let part = tokens
            .f_narrow(0, start, len)
            .context(|| "prompt chunk".into())?;
        parts.push(to_cpu(trainer.encode_texts(&part)?)?);
        start += len;
    }
    let run = || -> std::result::Result<Tensor, tch::TchError> {
        let all = Tensor::f_cat(&parts, 0)?;
        let d = all.size().last().copied().unwrap_or(0);
        let mean = all
            .f_view([set.len() as i64, t, d])?
            .f_mean_dim(1, false, Kind::Float)?;
        let norm = mean.f_norm_scalaropt_dim(2, 1, true)?.f_clamp_min(1e-12)?;
        mean.f_div(&norm)
    };
    run().context(|| "class embeddings".into())
}

fn zero_shot(
    trainer: &TrainStep,
    data: &EvalData<'_>,
    columns: &[String],
    collected: &Collected,
) -> Result<Option<ZeroShotReport>> {
    let rows: Vec<(usize, &Vec<String>)> = collected
        .labels
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.as_ref().map(|l| (i, l)))
        .collect();
    if rows.is_empty() {
        return Ok(None);
    }
    let samples: Vec<Vec<String>> = rows.iter().map(|(_, l)| (*l).clone()).collect();
    let set = LabelSet::from_samples(columns, &samples, data.options.class_format.as_deref())?;
    if set.is_empty() {
        return Ok(None);
    }
    let tokenizer = TextTokenizer::from_file(data.tokenizer, trainer.config().model.context_length)
        .map_err(|source| TrainError::Tokenizer {
            context: format!("loading {}", data.tokenizer.display()),
            source: Box::new(source),
        })?;
    let classes = class_embeddings(trainer, &tokenizer, &set, data.options)?;
    let index: Vec<i64> = rows.iter().map(|(i, _)| *i as i64).collect();
    let truth: Vec<Option<usize>> = samples.iter().map(|l| set.class_of(l)).collect();
    let k = 5.min(set.len()) as i64;
    let run = || -> std::result::Result<Vec<i64>, tch::TchError> {
        let img = collected
            .images
            .f_index_select(0, &Tensor::from_slice(&index))?;
        let logits = img.f_matmul(&classes.f_transpose(0, 1)?)?;
        let (_, top) = logits.f_topk(k, 1, true, true)?;
        Vec::<i64>::try_from(&top.f_contiguous()?.f_view([-1])?)
    };
    let top = run().context(|| "zero-shot predictions".into())?;
    let (mut top1, mut top5) = (0u64, 0u64);
    let mut col_hits = vec![0u64; columns.len()];
    for (i, t) in truth.iter().enumerate() {
        let preds = &top[i * k as usize..(i + 1) * k as usize];
        let Some(&first) = preds.first() else {
            continue;
        };
        let first = first as usize;
        if let Some(t) = t {
            top1 += u64::from(first == *t);
            top5 += u64::from(preds.iter().any(|&p| p as usize == *t));
        }
        for (c, hits) in col_hits.iter_mut().enumerate() {
            let want = set.values(c).binary_search(&samples[i][c]).ok();
            *hits += u64::from(want.is_some() && set.value_of(first, c) == want);
        }
    }
    let n = samples.len() as f64;
    Ok(Some(ZeroShotReport {
        label_columns: columns.to_vec(),
        classes: set.len(),
        samples: samples.len() as u64,
        top1: top1 as f64 / n,
        top5: top5 as f64 / n,
        chance_top1: 1.0 / set.len() as f64,
        columns: columns
            .iter()
            .enumerate()
            .map(|(c, name)| {
                let values = set.values(c).len();
                ColumnAccuracy {
                    column: name.clone(),
                    values,
                    accuracy: col_hits[c] as f64 / n,
                    chance: 1.0 / values.max(1) as f64,
                }
            })
            .collect(),
        templates: data.options.templates.len(),
    }))
}

/// Evaluates the trainer's current weights on the validation side of `data.dataset`, with
/// zero-shot classification over `label_columns` (none: retrieval only).
pub fn evaluate(
    trainer: &TrainStep,
    data: &EvalData<'_>,
    label_columns: &[String],
) -> Result<EvalReport> {
    let started = Instant::now();
    let collected = collect(trainer, data, label_columns)?;
    let samples = collected.images.size().first().copied().unwrap_or(0) as u64;
    let zero_shot = if label_columns.is_empty() {
        None
    } else {
        zero_shot(trainer, data, label_columns, &collected)?
    };
    let retrieval = RetrievalReport {
        samples,
        image_to_text: recall(&collected.images, &collected.texts)?,
        text_to_image: recall(&collected.texts, &collected.images)?,
        chance_r1: 1.0 / samples.max(1) as f64,
    };
    Ok(EvalReport {
        step: trainer.global_step(),
        samples,
        seconds: started.elapsed().as_secs_f64(),
        zero_shot,
        retrieval,
    })
}
