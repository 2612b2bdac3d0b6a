//! Evaluation on the held-out (validation) side of a dataset's split view, with every patch
//! (mask 0) unless `run.eval.mask_ratio` asks for masked inference (FLIP Table 1d):
//!
//! - **zero-shot classification**: each class of the dataset's label vocabulary ([`EvalTargets`],
//!   e.g. colour × shape) is embedded as the normalised mean of its prompts' text embeddings; an
//!   image is assigned the class with the highest cosine similarity. Top-1, top-5, and per label
//!   column the accuracy of the predicted class's value (colour right, shape right), each with its
//!   chance level. When the split view holds label combinations out of training, the validation
//!   samples of those combinations are scored apart as **compositional** zero-shot: each of their
//!   values was trained on, the combination never was;
//! - **retrieval**: image→text and text→image recall@1/5/10 between the samples' images and their
//!   own captions.
//!
//! - **linear probe** (`run.eval.probe`): per label column, a softmax regression fitted on the
//!   frozen pooled image features of the train split, scored on the validation samples
//!   ([`probe`]); how methods without a text tower (CAE v2, MUG) are compared with CLIP.
//!
//! - **validation terms**: the objective's own terms on the validation samples, such as MUG's
//!   caption loss.
//!
//! Ties count as misses everywhere ([`scoring`]): a collapsed model scores 0, not 100 %.
//! Samples are read in the loader's evaluation order (canonical, centre crops), the first
//! `max_samples` of them.
//!
//! In a data-parallel run every rank calls [`evaluate`]: each encodes a contiguous share of the
//! samples (the loader's evaluation split by rank), rank 0 gathers the embeddings and labels,
//! scores them, and every rank returns rank 0's report. Without masked inference the report is
//! the one a single process gives (up to float summation order); with `run.eval.mask_ratio > 0`
//! the masks follow the per-rank batches, so masked figures vary slightly with the world size.

pub mod probe;
pub mod scoring;
pub mod targets;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use arrow::array::RecordBatch;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use flipstream_loader::TextTokenizer;
use flipstream_loader::{Loader, LoaderConfig, Mode, Rank, SplitSelection, Start};
use flipstream_shard::split::LabelColumns;

use crate::dist::World;
use crate::error::{Result, TorchContext, TrainError};
use crate::run::prompts::{LabelSet, fill_template};
use crate::run::spec::EvalOptions;
use crate::step::TrainStep;
pub use probe::{ProbeColumn, ProbeReport};
pub use scoring::{ClassScores, Recall, recall};
pub use targets::{EvalTargets, check_eval_data};

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

/// Zero-shot classification results on one group of samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZeroShotReport {
    /// The label columns forming the class.
    pub label_columns: Vec<String>,
    /// Number of classes (the whole vocabulary's combinations).
    pub classes: usize,
    /// Samples scored.
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
    /// Fraction of patches removed at inference (0: every patch, the default).
    #[serde(default)]
    pub mask_ratio: f64,
    /// Zero-shot classification of the validation samples whose label combination was trained on
    /// (all of them without a hold-out; absent without label columns).
    pub zero_shot: Option<ZeroShotReport>,
    /// Zero-shot classification of the samples whose label combination the split view held out
    /// of training (absent without a hold-out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compositional: Option<ZeroShotReport>,
    /// The objective's own loss terms on the validation samples with whole images (MUG: `caption`,
    /// the caption decoder's cross entropy per token; its perplexity is `exp` of it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub validation_terms: BTreeMap<String, f64>,
    /// Linear probes on the frozen pooled image features (`run.eval.probe`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeReport>,
    /// Retrieval among all evaluated samples (absent for objectives that do not train the text
    /// tower, such as CAE v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieval: Option<RetrievalReport>,
    /// What the evaluation's loaders reported (row groups lost, samples substituted), one line
    /// each; the caller shows them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loader_notices: Vec<String>,
}

/// What to evaluate on.
#[derive(Debug, Clone)]
pub struct EvalData<'a> {
    /// The dataset (path or URL); it must have a split view with validation rows.
    pub dataset: &'a str,
    /// The run's `tokenizer.json`.
    pub tokenizer: &'a Path,
    /// Templates, sample limit, batch size, inference mask ratio.
    pub options: &'a EvalOptions,
    /// Classes and held-out combinations ([`check_eval_data`]).
    pub targets: &'a EvalTargets,
    /// Decode threads of the loader (0: one per core).
    pub decode_threads: usize,
}

/// The values of every column of `extras` for its first `n` rows, as text (`None` for nulls).
fn extra_values(extras: &RecordBatch, n: usize) -> Result<Vec<Vec<Option<String>>>> {
    let names: Vec<String> = extras
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let labels =
        LabelColumns::from_batch(extras, &names).map_err(|e| TrainError::Request(e.to_string()))?;
    Ok((0..n)
        .map(|row| {
            (0..names.len())
                .map(|c| labels.value(c, row).map(str::to_string))
                .collect()
        })
        .collect())
}

/// What the evaluation knows of one sample's labels.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SampleLabels {
    /// The values of the label columns, when none is null.
    labels: Option<Vec<String>>,
    /// Its label combination is held out of training.
    held_out: bool,
}

impl SampleLabels {
    /// From the values of [`EvalTargets::loader_columns`], in that order.
    fn new(values: &[Option<String>], targets: &EvalTargets, holdout_index: &[usize]) -> Self {
        let k = targets.label_columns.len();
        let labels = (k > 0)
            .then(|| values.iter().take(k).cloned().collect::<Option<Vec<_>>>())
            .flatten();
        let held_out = targets.holdout.as_ref().is_some_and(|h| {
            let tuple: Option<Vec<&str>> = holdout_index
                .iter()
                .map(|&i| values.get(i)?.as_deref())
                .collect();
            tuple.is_some_and(|t| h.contains(&t))
        });
        Self { labels, held_out }
    }
}

/// Where each hold-out column is among [`EvalTargets::loader_columns`].
fn holdout_index(targets: &EvalTargets) -> Vec<usize> {
    let columns = targets.loader_columns();
    targets.holdout.as_ref().map_or_else(Vec::new, |h| {
        h.columns
            .iter()
            .filter_map(|c| columns.iter().position(|x| x == c))
            .collect()
    })
}

/// Embeddings and labels of the evaluation samples.
struct Collected {
    /// L2-normalised image embeddings `[N, E]`.
    images: Tensor,
    /// Pooled image-tower features `[N, width]` (what a linear probe reads).
    pooled: Tensor,
    /// L2-normalised caption embeddings `[N, E]` (empty `[0]` when not asked for).
    texts: Tensor,
    labels: Vec<SampleLabels>,
    /// The objective's validation terms (validation split only): the sum over the samples and
    /// their number.
    terms: BTreeMap<String, (f64, usize)>,
    /// What the loaders reported (row groups lost, samples substituted).
    notices: Vec<String>,
}

impl Collected {
    /// No samples (a rank whose share lies beyond `max_samples`).
    fn empty() -> Self {
        let none = || Tensor::zeros([0], (Kind::Float, Device::Cpu));
        Collected {
            images: none(),
            pooled: none(),
            texts: none(),
            labels: Vec::new(),
            terms: BTreeMap::new(),
            notices: Vec::new(),
        }
    }

    /// The validation terms' means.
    fn term_means(&self) -> BTreeMap<String, f64> {
        self.terms
            .iter()
            .map(|(k, (sum, n))| (k.clone(), sum / (*n).max(1) as f64))
            .collect()
    }
}

fn open_loader(trainer: &TrainStep, data: &EvalData<'_>, split: SplitSelection) -> Result<Loader> {
    let world = trainer.world();
    let model = &trainer.config().model;
    let config = LoaderConfig {
        mode: Mode::Eval,
        split,
        batch_size: data.options.batch_size,
        image_size: model.image_size as u32,
        tokenizer: Some(data.tokenizer.to_path_buf()),
        context_length: model.context_length,
        extra_columns: data.targets.loader_columns(),
        decode_threads: data.decode_threads,
        io_threads: 1,
        ..LoaderConfig::default()
    };
    let rank = Rank {
        rank: world.rank(),
        world_size: world.size(),
    };
    Loader::open(data.dataset, config, rank, Start::Epoch(0)).map_err(|source| TrainError::Loader {
        context: format!("{} data of {}", split.as_str(), data.dataset),
        source: Box::new(source),
    })
}

/// The first `limit` samples (0: all) of `split` in the loader's evaluation order, encoded; the
/// captions too when `with_texts`. Every rank encodes its share; rank 0 gets them all (`Some`),
/// the other ranks `None`.
fn collect(
    trainer: &TrainStep,
    data: &EvalData<'_>,
    split: SplitSelection,
    limit: usize,
    with_texts: bool,
) -> Result<Option<Collected>> {
    let limit = if limit == 0 { usize::MAX } else { limit };
    let mut loader = open_loader(trainer, data, split)?;
    // This rank reads positions [N·r/W, N·(r+1)/W) of the evaluation order; of the first `limit`
    // positions overall, it keeps those.
    let world = trainer.world();
    let total = loader.info().total_rows as usize;
    let start = total * world.rank() / world.size();
    let limit = limit.saturating_sub(start);
    let local = collect_share(trainer, data, split, &mut loader, limit, with_texts)?;
    gather_collected(world, local)
}

/// The first `limit` samples of this rank's share, encoded (see [`collect`]).
fn collect_share(
    trainer: &TrainStep,
    data: &EvalData<'_>,
    split: SplitSelection,
    loader: &mut Loader,
    limit: usize,
    with_texts: bool,
) -> Result<Collected> {
    let holdout_index = holdout_index(data.targets);
    let context = || format!("{} data of {}", split.as_str(), data.dataset);
    let (mut images, mut pooled, mut texts, mut labels) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut terms: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    if limit == 0 {
        return Ok(Collected::empty());
    }
    for (index, batch) in loader.enumerate() {
        let batch = batch.map_err(|source| TrainError::Loader {
            context: context(),
            source: Box::new(source),
        })?;
        let n = batch.len().min(limit - labels.len());
        if n == 0 {
            break;
        }
        let (h, w) = (i64::from(batch.height), i64::from(batch.width));
        let img = Tensor::from_slice(&batch.images[..n * (h * w * 3) as usize])
            .f_view([n as i64, h, w, 3])
            .context(|| "evaluation images".into())?;
        let out = trainer.image_outputs(&img, data.options.mask_ratio, index as u64)?;
        images.push(to_cpu(out.embeds)?);
        pooled.push(to_cpu(out.pooled)?);
        let ctx = batch.context_length as i64;
        let tokens = batch.tokens.as_deref().ok_or_else(|| {
            TrainError::Request("the evaluation loader returned no tokens".into())
        })?;
        let tok = Tensor::from_slice(&tokens[..n * ctx as usize])
            .f_view([n as i64, ctx])
            .context(|| "evaluation tokens".into())?;
        if with_texts {
            texts.push(to_cpu(trainer.encode_texts(&tok)?)?);
        }
        if split == SplitSelection::Val {
            for (name, value) in trainer.validation_terms(&img, &tok)? {
                let entry = terms.entry(name).or_insert((0.0, 0));
                *entry = (entry.0 + value * n as f64, entry.1 + n);
            }
        }
        match &batch.extras {
            Some(extras) if extras.num_columns() > 0 => labels.extend(
                extra_values(extras, n)?
                    .iter()
                    .map(|v| SampleLabels::new(v, data.targets, &holdout_index)),
            ),
            _ => labels.extend(std::iter::repeat_n(SampleLabels::default(), n)),
        }
        if labels.len() >= limit {
            break;
        }
    }
    let cat = |parts: &[Tensor]| {
        if parts.is_empty() {
            return Ok(Tensor::zeros([0], (Kind::Float, Device::Cpu)));
        }
        Tensor::f_cat(parts, 0).context(|| "joining embeddings".into())
    };
    Ok(Collected {
        images: cat(&images)?,
        pooled: cat(&pooled)?,
        texts: cat(&texts)?,
        labels,
        terms,
        notices: loader
            .take_notices()
            .into_iter()
            .map(|n| format!("{} data: {n}", split.as_str()))
            .collect(),
    })
}

/// Rank 0's view of every rank's [`Collected`] (`None` on the other ranks), refusing an empty
/// evaluation.
fn gather_collected(world: &World, local: Collected) -> Result<Option<Collected>> {
    let labels = serde_json::to_vec(&(&local.labels, &local.terms, &local.notices))
        .map_err(|e| TrainError::Request(format!("serialising evaluation labels: {e}")))?;
    let rows = |t: &Tensor| world.all_gather_rows(t).map(|(rows, _)| rows);
    let (images, pooled, texts) = (
        rows(&local.images)?,
        rows(&local.pooled)?,
        rows(&local.texts)?,
    );
    let gathered = world.all_gather_bytes(&labels)?;
    if !world.is_main() {
        return Ok(None);
    }
    let mut all = Collected {
        images,
        pooled,
        texts,
        labels: Vec::new(),
        terms: BTreeMap::new(),
        notices: Vec::new(),
    };
    for bytes in gathered {
        type Gathered = (
            Vec<SampleLabels>,
            BTreeMap<String, (f64, usize)>,
            Vec<String>,
        );
        let (labels, terms, notices): Gathered = serde_json::from_slice(&bytes)
            .map_err(|e| TrainError::Request(format!("reading gathered evaluation labels: {e}")))?;
        all.labels.extend(labels);
        all.notices.extend(notices);
        for (name, (sum, n)) in terms {
            let entry = all.terms.entry(name).or_insert((0.0, 0));
            *entry = (entry.0 + sum, entry.1 + n);
        }
    }
    Ok(Some(all))
}

fn to_cpu(t: Tensor) -> Result<Tensor> {
    t.f_to_device(Device::Cpu)
        .and_then(|t| t.f_to_kind(Kind::Float))
        .context(|| "moving embeddings to the CPU".into())
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
    let mut parts = Vec::new();
    for part in tokens
        .f_split(opts.batch_size.max(1) as i64, 0)
        .context(|| "prompt chunks".into())?
    {
        parts.push(to_cpu(trainer.encode_texts(&part)?)?);
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

/// Zero-shot scores of the samples `rows` (indices into the scores, each with its labels).
fn score_group(
    scores: &ClassScores,
    set: &LabelSet,
    rows: &[(usize, &Vec<String>)],
    templates: usize,
) -> Option<ZeroShotReport> {
    if rows.is_empty() || set.is_empty() {
        return None;
    }
    let columns = set.columns();
    let (mut top1, mut top5) = (0u64, 0u64);
    let mut col_hits = vec![0u64; columns.len()];
    for &(i, labels) in rows {
        if let Some(truth) = set.class_of(labels) {
            let rank = scores.rank(i, truth);
            top1 += u64::from(rank == 0);
            top5 += u64::from(rank < 5);
        }
        let Some(predicted) = scores.predicted(i) else {
            continue;
        };
        for (c, hits) in col_hits.iter_mut().enumerate() {
            let want = set.values(c).binary_search(&labels[c]).ok();
            *hits += u64::from(want.is_some() && set.value_of(predicted, c) == want);
        }
    }
    let n = rows.len() as f64;
    Some(ZeroShotReport {
        label_columns: columns.to_vec(),
        classes: set.len(),
        samples: rows.len() as u64,
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
        templates,
    })
}

/// Zero-shot reports of the trained-on combinations and of the held-out ones.
fn zero_shot(
    trainer: &TrainStep,
    data: &EvalData<'_>,
    set: &LabelSet,
    collected: &Collected,
) -> Result<(Option<ZeroShotReport>, Option<ZeroShotReport>)> {
    let labelled: Vec<(usize, &Vec<String>, bool)> = collected
        .labels
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.labels.as_ref().map(|l| (i, l, s.held_out)))
        .collect();
    if labelled.is_empty() || set.is_empty() {
        return Ok((None, None));
    }
    let tokenizer = TextTokenizer::from_file(data.tokenizer, trainer.config().model.context_length)
        .map_err(|source| TrainError::Tokenizer {
            context: format!("loading {}", data.tokenizer.display()),
            source: Box::new(source),
        })?;
    let classes = class_embeddings(trainer, &tokenizer, set, data.options)?;
    let scores = ClassScores::new(&collected.images, &classes)?;
    let group = |held_out: bool| -> Vec<(usize, &Vec<String>)> {
        labelled
            .iter()
            .filter(|&&(_, _, h)| h == held_out)
            .map(|&(i, l, _)| (i, l))
            .collect()
    };
    let templates = data.options.templates.len();
    Ok((
        score_group(&scores, set, &group(false), templates),
        score_group(&scores, set, &group(true), templates),
    ))
}

/// Evaluates the trainer's current weights on the validation side of `data.dataset`: zero-shot
/// over `data.targets` (none: retrieval only) and retrieval. With several ranks, every rank calls
/// it and gets rank 0's report (see the module docs).
pub fn evaluate(trainer: &TrainStep, data: &EvalData<'_>) -> Result<EvalReport> {
    let started = Instant::now();
    // Without a text tower trained into the image space, zero-shot and retrieval mean nothing:
    // such objectives are judged by the probe alone.
    let aligned = trainer.config().objective.kind().aligns_text();
    let val = collect(
        trainer,
        data,
        SplitSelection::Val,
        data.options.max_samples,
        aligned,
    )?;
    let fit_on = if data.options.probe || !aligned {
        let n = data.options.probe_train_samples;
        collect(trainer, data, SplitSelection::Train, n, false)?
    } else {
        None
    };
    let report = val.map(|val| score(trainer, data, &val, fit_on.as_ref(), started));
    share_report(trainer.world(), report)
}

/// Rank 0's evaluation `report` (or its failure) on every rank.
fn share_report(world: &World, report: Option<Result<EvalReport>>) -> Result<EvalReport> {
    if world.size() == 1 {
        return report.unwrap_or_else(|| Err(TrainError::Request("nothing was evaluated".into())));
    }
    let sent = match &report {
        Some(r) => serde_json::to_vec(&r.as_ref().map_err(ToString::to_string))
            .map_err(|e| TrainError::Request(format!("serialising the evaluation: {e}")))?,
        None => Vec::new(),
    };
    let received = world.all_gather_bytes(&sent)?;
    if let Some(report) = report {
        return report;
    }
    let main: std::result::Result<EvalReport, String> =
        serde_json::from_slice(received.first().map_or(&[][..], Vec::as_slice))
            .map_err(|e| TrainError::Request(format!("reading rank 0's evaluation: {e}")))?;
    main.map_err(|detail| TrainError::Distributed {
        context: "evaluating on rank 0".into(),
        detail,
    })
}

/// The report of the gathered validation samples `val` (and the probe's fitting samples).
fn score(
    trainer: &TrainStep,
    data: &EvalData<'_>,
    val: &Collected,
    fit_on: Option<&Collected>,
    started: Instant,
) -> Result<EvalReport> {
    if val.labels.is_empty() {
        return Err(TrainError::Request(format!(
            "{} has no validation samples to evaluate",
            data.dataset
        )));
    }
    let aligned = trainer.config().objective.kind().aligns_text();
    let samples = val.images.size().first().copied().unwrap_or(0) as u64;
    let (zero_shot, compositional) = match &data.targets.classes {
        Some(set) if aligned => zero_shot(trainer, data, set, val)?,
        _ => (None, None),
    };
    let probe = match fit_on {
        Some(fit_on) => Some(probe_report(data, fit_on, val)?),
        None => None,
    };
    let retrieval = if aligned {
        Some(RetrievalReport {
            samples,
            image_to_text: recall(&val.images, &val.texts)?,
            text_to_image: recall(&val.texts, &val.images)?,
            chance_r1: 1.0 / samples.max(1) as f64,
        })
    } else {
        None
    };
    Ok(EvalReport {
        step: trainer.global_step(),
        samples,
        seconds: started.elapsed().as_secs_f64(),
        mask_ratio: data.options.mask_ratio,
        zero_shot,
        compositional,
        validation_terms: val.term_means(),
        probe,
        retrieval,
        loader_notices: val
            .notices
            .iter()
            .chain(fit_on.map_or(&[][..], |f| f.notices.as_slice()))
            .cloned()
            .collect(),
    })
}

/// The linear probe of the validation samples `val`, fitted on `fit_on` (train split samples).
fn probe_report(data: &EvalData<'_>, fit_on: &Collected, val: &Collected) -> Result<ProbeReport> {
    if fit_on.labels.is_empty() {
        return Err(TrainError::Request(format!(
            "{} has no train samples to fit the linear probe on",
            data.dataset
        )));
    }
    probe::linear_probe(
        probe::Split {
            features: &fit_on.pooled,
            labels: &label_lists(fit_on),
        },
        probe::Split {
            features: &val.pooled,
            labels: &label_lists(val),
        },
        &data.targets.label_columns,
        data.options.probe_steps,
    )
}

/// Each sample's label values (`None` when one is null).
fn label_lists(c: &Collected) -> Vec<Option<Vec<String>>> {
    c.labels.iter().map(|s| s.labels.clone()).collect()
}
