//! [`RunSpec`]: everything a training run is made of — the model and optimization
//! ([`RunConfig`]) plus the `[run]` table ([`RunOptions`]: dataset, data split, loader, tokenizer,
//! evaluation and checkpoint cadence). It is what a run directory's `config.toml` holds and what
//! `--config FILE` files contain:
//!
//! ```toml
//! preset = "tiny"
//!
//! [train]
//! total_steps = 300
//!
//! [run]
//! eval_every = 100
//! checkpoint_every = 100
//!
//! [run.eval]
//! label_columns = ["label_color", "label_shape"]
//! ```
//!
//! Unknown keys are errors naming the key; [`RunSpec::problems`] adds what only the whole run can
//! check (lanes dividing the batch, …) to [`RunConfig::problems`].

use std::collections::BTreeMap;
use std::path::Path;

use flipstream_shard::problems::Problem;
use serde::{Deserialize, Serialize};

use crate::config::{Precision, Preset, RunConfig};
use crate::error::{Result, TrainError};
use crate::objective::{ObjectiveConfig, ObjectiveKind};

/// Which rows train the model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataSplit {
    /// The train side of the dataset's split view (`flipstream shard split`).
    #[default]
    Train,
    /// Every row, ignoring any split. The validation rows are then trained on, so the run cannot
    /// be evaluated on its own dataset (`eval_every` must be 0; `flipstream eval` needs another
    /// dataset).
    All,
}

/// Why a run that trains on every row (`run.split = "all"`) is not evaluated on its own dataset.
pub const ALL_DATA_EVAL_REFUSAL: &str = "run.split = \"all\" (--all-data) trains on the validation \
     rows too, so evaluating on them would measure recall of training data, not generalisation";

/// Zero-shot and retrieval evaluation settings (`[run.eval]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalOptions {
    /// Passthrough columns whose values name a sample's class (joined by `class_format`). Empty:
    /// no zero-shot classification, retrieval only.
    pub label_columns: Vec<String>,
    /// How a class is named from its label values: `{column}` is replaced by the value of that
    /// column. Absent: the values in `label_columns` order, separated by spaces ("red circle").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_format: Option<String>,
    /// Prompt templates; `{}` is replaced by the class name. The class embedding is the
    /// normalised mean of its prompts' embeddings (CLIP's prompt ensembling).
    pub templates: Vec<String>,
    /// Evaluate on at most this many validation samples (0: all of them).
    pub max_samples: usize,
    /// Images per forward pass.
    pub batch_size: usize,
    /// Fraction of image patches removed at inference: 0 encodes every patch (FLIP's and this
    /// project's default); above 0 measures masked inference (FLIP Table 1d).
    pub mask_ratio: f64,
    /// Also fit a linear probe per label column on the frozen pooled image features of the train
    /// split and score it on the validation samples (how CAE v2 and MUG are judged).
    pub probe: bool,
    /// Train-split samples the probe is fitted on (0: all of them).
    pub probe_train_samples: usize,
    /// Full-batch AdamW steps of the probe's fit.
    pub probe_steps: usize,
}

/// The default prompt templates (a few of CLIP's ImageNet prompts).
pub const DEFAULT_TEMPLATES: [&str; 5] = [
    "a photo of a {}.",
    "a {}.",
    "an image of a {}.",
    "a picture of a {}.",
    "a rendering of a {}.",
];

/// The label columns of synthetic data (`flipstream synth`): zero-shot class = colour × shape.
pub const DEFAULT_LABEL_COLUMNS: [&str; 2] = ["label_color", "label_shape"];

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            label_columns: DEFAULT_LABEL_COLUMNS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            class_format: None,
            templates: DEFAULT_TEMPLATES.iter().map(|s| s.to_string()).collect(),
            max_samples: 2000,
            batch_size: 128,
            mask_ratio: 0.0,
            probe: false,
            probe_train_samples: 5000,
            probe_steps: 300,
        }
    }
}

/// The `[run]` table: data, loader, tokenizer, evaluation and checkpoint cadence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunOptions {
    /// The dataset (path or URL) the run trains on; filled in from the command line.
    pub dataset: String,
    /// `train` (the train side of the split view) or `all` (every row).
    pub split: DataSplit,
    /// Evaluate every this many optimizer steps, and at the end (0: never).
    pub eval_every: u64,
    /// Save a checkpoint every this many optimizer steps; one is always saved at the end
    /// (0: only at the end).
    pub checkpoint_every: u64,
    /// Vocabulary size of the BPE trained on the training captions when no tokenizer is given.
    pub tokenizer_vocab_size: usize,
    /// The weights the run started from (`open_clip:DIR`, set by `train --init`); absent: a
    /// fresh initialisation from `train.seed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<String>,
    /// Loader lanes (independent shuffle streams); must divide `train.batch_size`. Absent: the
    /// largest divisor of the batch size up to 16.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lanes: Option<usize>,
    /// Positions per shuffle block in a lane (the loader's bounded shuffle buffer).
    pub shuffle_block: usize,
    /// Row groups the loader fetches ahead per lane.
    pub prefetch_row_groups: usize,
    /// RandomResizedCrop's range of the crop's area as a fraction of the image's (FLIP: 0.5–1).
    pub crop_scale: [f64; 2],
    /// RandomResizedCrop's range of the crop's aspect ratio, width / height (FLIP and torchvision:
    /// 3/4–4/3; `[1.0, 1.0]` keeps shapes undistorted).
    pub crop_ratio: [f64; 2],
    /// Probability of a horizontal flip of a training image (FLIP: 0.5).
    pub hflip_prob: f64,
    /// The largest share of a session's samples that may be substitutes for samples the loader
    /// could not read (a damaged or missing shard) before training stops with an error: judged
    /// once 512 samples have been seen, and at the session's last step. 1 never stops.
    pub max_substitute_share: f64,
    /// Evaluation settings.
    pub eval: EvalOptions,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            dataset: String::new(),
            split: DataSplit::Train,
            eval_every: 0,
            checkpoint_every: 0,
            tokenizer_vocab_size: 4096,
            init: None,
            lanes: None,
            shuffle_block: 4096,
            prefetch_row_groups: 8,
            crop_scale: [0.5, 1.0],
            crop_ratio: [3.0 / 4.0, 4.0 / 3.0],
            hflip_prob: 0.5,
            max_substitute_share: 0.02,
            eval: EvalOptions::default(),
        }
    }
}

/// A whole training run: model, optimization and the `[run]` table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunSpec {
    /// Model and optimization.
    pub config: RunConfig,
    /// Data, loader, tokenizer, evaluation, checkpoints.
    pub run: RunOptions,
}

/// How `config.toml` is written: the three tables.
#[derive(Serialize)]
struct SpecFile<'a> {
    model: &'a crate::config::ModelConfig,
    train: &'a crate::config::TrainConfig,
    objective: &'a crate::objective::ObjectiveConfig,
    run: &'a RunOptions,
}

/// Command-line overrides of single settings (`None`: keep the config's value).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// `train.total_steps`.
    pub steps: Option<u64>,
    /// `train.batch_size`.
    pub batch_size: Option<usize>,
    /// Peak learning rate; sets `train.base_lr = lr × 256 / batch_size`.
    pub lr: Option<f64>,
    /// `train.mask_ratio`.
    pub mask_ratio: Option<f64>,
    /// `objective.kind`; another kind than the config's takes that kind's default settings (and
    /// its default mask ratio, if it has one and `mask_ratio` is not given).
    pub objective: Option<ObjectiveKind>,
    /// `objective.teacher` of CAE v2 (ignored by other objectives; the CLI refuses it there).
    pub teacher: Option<String>,
    /// `train.warmup_steps`.
    pub warmup: Option<u64>,
    /// `train.precision`.
    pub precision: Option<Precision>,
    /// `train.seed` (weights, masks and the data order).
    pub seed: Option<u64>,
    /// `run.eval_every`.
    pub eval_every: Option<u64>,
    /// `run.checkpoint_every`.
    pub checkpoint_every: Option<u64>,
    /// `run.split`.
    pub split: Option<DataSplit>,
    /// `run.eval.label_columns`.
    pub label_columns: Option<Vec<String>>,
}

impl Overrides {
    /// True when no override is set.
    pub fn is_empty(&self) -> bool {
        *self == Overrides::default()
    }
}

/// `[run]` keys a resumed run may change: they do not affect what is trained.
const RESUMABLE_KEYS: [&str; 3] = ["run.eval_every", "run.checkpoint_every", "run.eval."];

impl RunSpec {
    /// The preset's spec with default `[run]` options.
    pub fn preset(preset: Preset) -> Self {
        Self {
            config: preset.config(),
            run: RunOptions::default(),
        }
    }

    /// Parses a config file's text: `preset`, `[model]`, `[train]` (see [`RunConfig`]) and
    /// `[run]`. Unknown keys are errors that name them; the result is validated.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self> {
        let parse_err = |message: String| TrainError::ConfigParse {
            origin: origin.to_string(),
            message,
        };
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| parse_err(e.to_string()))?;
        let run = match table.remove("run") {
            None => RunOptions::default(),
            Some(value @ toml::Value::Table(_)) => value
                .try_into::<RunOptions>()
                .map_err(|e| parse_err(format!("[run]: {}", e.message())))?,
            Some(other) => {
                return Err(parse_err(format!(
                    "`run` must be a table ([run]), not {other}"
                )));
            }
        };
        for key in table.keys() {
            if !matches!(key.as_str(), "preset" | "model" | "train" | "objective") {
                return Err(parse_err(format!(
                    "unknown top-level key `{key}`: expected `preset`, or a [model], [train], \
                     [objective] or [run] table"
                )));
            }
        }
        let rest = toml::to_string(&table).map_err(|e| parse_err(e.to_string()))?;
        let config = RunConfig::from_toml_str(&rest, origin)?;
        let spec = RunSpec { config, run };
        spec.validate()?;
        Ok(spec)
    }

    /// Reads and parses a config file (see [`RunSpec::from_toml_str`]).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// The spec as TOML with every key spelled out; loads back to an equal spec.
    pub fn to_toml_string(&self) -> Result<String> {
        toml::to_string(&SpecFile {
            model: &self.config.model,
            train: &self.config.train,
            objective: &self.config.objective,
            run: &self.run,
        })
        .map_err(|e| TrainError::ConfigParse {
            origin: "<resolved config>".into(),
            message: e.to_string(),
        })
    }

    /// Applies command-line overrides (the learning rate after the batch size).
    pub fn apply(&mut self, o: &Overrides) {
        if let Some(kind) = o.objective
            && kind != self.config.objective.kind()
        {
            let model = &self.config.model;
            self.config.objective = ObjectiveConfig::for_kind(kind, model);
            if let Some(r) = kind.default_mask_ratio(model) {
                self.config.train.mask_ratio = r;
            }
        }
        if let (Some(teacher), ObjectiveConfig::CaeV2(s)) = (&o.teacher, &mut self.config.objective)
        {
            s.teacher = teacher.clone();
        }
        let t = &mut self.config.train;
        if let Some(v) = o.steps {
            t.total_steps = v;
        }
        if let Some(v) = o.batch_size {
            t.batch_size = v;
        }
        if let Some(v) = o.lr {
            t.base_lr = v * 256.0 / t.batch_size.max(1) as f64;
        }
        if let Some(v) = o.mask_ratio {
            t.mask_ratio = v;
        }
        if let Some(v) = o.warmup {
            t.warmup_steps = v;
        }
        if let Some(v) = o.precision {
            t.precision = v;
        }
        if let Some(v) = o.seed {
            t.seed = v;
        }
        let r = &mut self.run;
        if let Some(v) = o.eval_every {
            r.eval_every = v;
        }
        if let Some(v) = o.checkpoint_every {
            r.checkpoint_every = v;
        }
        if let Some(v) = o.split {
            r.split = v;
        }
        if let Some(v) = &o.label_columns {
            r.eval.label_columns = v.clone();
        }
    }

    /// The loader lanes: `run.lanes`, or the largest divisor of the batch size up to 16.
    pub fn lanes(&self) -> usize {
        self.run.lanes.unwrap_or_else(|| {
            let b = self.config.train.batch_size.max(1);
            (1..=16).rev().find(|l| b.is_multiple_of(*l)).unwrap_or(1)
        })
    }

    /// Every problem of the spec, each naming the key and what to change.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = self.config.problems();
        self.batch_problems(&mut p);
        self.loader_problems(&mut p);
        self.eval_problems(&mut p);
        p
    }

    /// The global batch a contrastive loss and the loader's lanes need.
    fn batch_problems(&self, p: &mut Vec<Problem>) {
        let b = self.config.train.batch_size;
        if b == 1 {
            p.push(Problem::new(
                "train.batch_size",
                "= 1: a contrastive loss needs at least 2 pairs per batch",
            ));
        }
        if let Some(l) = self.run.lanes {
            if l == 0 {
                p.push(Problem::new("run.lanes", "is 0: it must be at least 1"));
            } else if b > 0 && !b.is_multiple_of(l) {
                p.push(Problem::new(
                    "run.lanes",
                    format!(
                        "= {l} does not divide train.batch_size = {b}: use a divisor of the batch \
                     size or leave run.lanes out"
                    ),
                ));
            }
        }
    }

    /// The loader's order, augmentation and prefetch, and the tokenizer it trains.
    fn loader_problems(&self, p: &mut Vec<Problem>) {
        if self.run.shuffle_block == 0 {
            p.push(Problem::new(
                "run.shuffle_block",
                "is 0: it must be at least 1",
            ));
        }
        let [lo, hi] = self.run.crop_scale;
        if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
            p.push(Problem::new(
                "run.crop_scale",
                format!(
                    "= [{lo}, {hi}] must satisfy 0 < low ≤ high ≤ 1 (FLIP: [0.5, 1.0]; \
                 [1.0, 1.0] keeps the whole image)"
                ),
            ));
        }
        let [lo, hi] = self.run.crop_ratio;
        if !(lo > 0.0 && lo <= hi && hi.is_finite()) {
            p.push(Problem::new(
                "run.crop_ratio",
                format!(
                    "= [{lo}, {hi}] must satisfy 0 < low ≤ high (FLIP: [0.75, 1.333]; \
                 [1.0, 1.0] keeps the aspect ratio)"
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.run.max_substitute_share) {
            p.push(Problem::new(
                "run.max_substitute_share",
                format!(
                    "= {} must be a share in [0, 1] (1: never stop)",
                    self.run.max_substitute_share
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.run.hflip_prob) {
            p.push(Problem::new(
                "run.hflip_prob",
                format!("= {} must be a probability in [0, 1]", self.run.hflip_prob),
            ));
        }
        if self.run.prefetch_row_groups == 0 {
            p.push(Problem::new(
                "run.prefetch_row_groups",
                "is 0: it must be at least 1",
            ));
        }
        if self.run.tokenizer_vocab_size < 259 {
            p.push(Problem::new(
                "run.tokenizer_vocab_size",
                format!(
                    "= {} is below the 256 byte symbols plus 3 special tokens: \
                 use at least 259",
                    self.run.tokenizer_vocab_size
                ),
            ));
        }
    }

    /// Periodic evaluation: its batches, prompts, masking and linear probe.
    fn eval_problems(&self, p: &mut Vec<Problem>) {
        let e = &self.run.eval;
        if e.batch_size == 0 {
            p.push(Problem::new(
                "run.eval.batch_size",
                "is 0: it must be at least 1",
            ));
        }
        if e.templates.is_empty() {
            p.push(Problem::new(
                "run.eval.templates",
                "is empty: give at least one template such as \"a photo of a {}.\"",
            ));
        }
        for t in &e.templates {
            if !t.contains("{}") {
                p.push(Problem::new(
                    "run.eval.templates",
                    format!("{t:?} has no `{{}}` where the class name goes"),
                ));
            }
        }
        if !(0.0..1.0).contains(&e.mask_ratio) {
            p.push(Problem::new(
                "run.eval.mask_ratio",
                format!(
                    "= {} is outside [0, 1): use 0 to encode every patch",
                    e.mask_ratio
                ),
            ));
        } else {
            let patches = self.config.model.num_patches();
            if patches > 0 && crate::config::kept_patches(patches, e.mask_ratio) == 0 {
                p.push(Problem::new(
                    "run.eval.mask_ratio",
                    format!(
                        "= {} keeps no patch of the {patches} per image: lower it",
                        e.mask_ratio
                    ),
                ));
            }
        }
        if e.probe && e.label_columns.is_empty() {
            p.push(Problem::new(
                "run.eval.probe",
                "needs label columns (run.eval.label_columns or --label-columns): \
                 the probe predicts their values",
            ));
        }
        if e.probe && e.probe_steps == 0 {
            p.push(Problem::new(
                "run.eval.probe_steps",
                "is 0: the probe needs at least 1 step",
            ));
        }
        if let Some(f) = &e.class_format {
            for c in &e.label_columns {
                if !f.contains(&format!("{{{c}}}")) {
                    p.push(Problem::new(
                        "run.eval.class_format",
                        format!("{f:?} does not use label column `{{{c}}}`"),
                    ));
                }
            }
        }
    }

    /// Checks the whole spec; the error lists every problem with what to change.
    pub fn validate(&self) -> Result<()> {
        crate::config::into_result(self.problems())
    }

    /// Refuses a data-parallel world size that cannot share this run's batches: it must divide
    /// the global batch and the loader's lanes, and each rank's share must split into
    /// `train.accum_steps` micro-batches (and `train.unmasked_tune.accum_steps`).
    pub fn check_world_size(&self, world_size: usize) -> Result<()> {
        let (batch, lanes) = (self.config.train.batch_size, self.lanes());
        let accums = self.config.train.accum_steps_of_phases();
        let works = |w: usize| {
            batch.is_multiple_of(w)
                && lanes.is_multiple_of(w)
                && accums.iter().all(|&k| (batch / w).is_multiple_of(k))
        };
        if works(world_size) {
            return Ok(());
        }
        let sizes: Vec<String> = (1..=lanes)
            .filter(|&w| works(w))
            .map(|w| w.to_string())
            .collect();
        Err(TrainError::DistSetup(format!(
            "{world_size} ranks cannot share train.batch_size {batch} over run.lanes {lanes}: each \
             rank takes whole lanes of every batch, and its share must split into {accums:?} \
             micro-batches (the accumulation steps of the phases); world sizes that work: {} — or \
             change the batch size or run.lanes",
            sizes.join(", ")
        )))
    }

    /// The settings in which `other` differs from this spec, as `key: this → other` lines, leaving
    /// out the `[run]` keys a resumed run may change (evaluation and checkpoint cadence).
    pub fn resume_differences(&self, other: &RunSpec) -> Result<Vec<String>> {
        let a = flatten_spec(self)?;
        let b = flatten_spec(other)?;
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        let none = "(absent)".to_string();
        Ok(keys
            .into_iter()
            .filter(|k| !RESUMABLE_KEYS.iter().any(|r| k.starts_with(r)))
            .filter_map(|k| {
                let (x, y) = (a.get(k).unwrap_or(&none), b.get(k).unwrap_or(&none));
                (x != y).then(|| format!("{k} is {x} in the run but {y} here"))
            })
            .collect())
    }
}

/// `key.path → value` for every leaf of the spec's TOML form.
fn flatten_spec(spec: &RunSpec) -> Result<BTreeMap<String, String>> {
    let text = spec.to_toml_string()?;
    let table: toml::Table =
        text.parse()
            .map_err(|e: toml::de::Error| TrainError::ConfigParse {
                origin: "<resolved config>".into(),
                message: e.to_string(),
            })?;
    let mut out = BTreeMap::new();
    flatten("", &toml::Value::Table(table), &mut out);
    Ok(out)
}

fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_toml() {
        let mut spec = RunSpec::preset(Preset::Tiny);
        spec.run.dataset = "/data/x".into();
        spec.run.eval_every = 10;
        spec.run.lanes = Some(8);
        let text = spec.to_toml_string().unwrap();
        assert_eq!(RunSpec::from_toml_str(&text, "t").unwrap(), spec);
    }

    #[test]
    fn augmentation_settings_are_checked() {
        let mut spec = RunSpec::preset(Preset::Tiny);
        spec.run.dataset = "data/ds".into();
        spec.validate().unwrap();
        for (scale, ratio, flip, key) in [
            ([0.0, 1.0], [0.75, 1.0], 0.5, "run.crop_scale"),
            ([0.9, 1.1], [0.75, 1.0], 0.5, "run.crop_scale"),
            ([0.5, 1.0], [1.5, 1.0], 0.5, "run.crop_ratio"),
            ([0.5, 1.0], [0.0, 1.0], 0.5, "run.crop_ratio"),
            ([0.5, 1.0], [1.0, 1.0], 1.5, "run.hflip_prob"),
        ] {
            let mut bad = spec.clone();
            bad.run.crop_scale = scale;
            bad.run.crop_ratio = ratio;
            bad.run.hflip_prob = flip;
            let e = bad.validate().unwrap_err().to_string();
            assert!(e.contains(key), "{key}: {e}");
        }
    }

    #[test]
    fn unknown_run_keys_are_named() {
        let e = RunSpec::from_toml_str("[run]\nevel_every = 3\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("evel_every"), "{e}");
        let e = RunSpec::from_toml_str("[runn]\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("runn"), "{e}");
    }

    #[test]
    fn overrides_and_lanes() {
        let mut spec = RunSpec::preset(Preset::Tiny);
        spec.apply(&Overrides {
            batch_size: Some(24),
            lr: Some(1e-3),
            ..Default::default()
        });
        assert_eq!(spec.config.train.batch_size, 24);
        assert!((spec.config.train.peak_lr() - 1e-3).abs() < 1e-12);
        assert_eq!(spec.lanes(), 12);
        spec.run.lanes = Some(5);
        let e = spec.validate().unwrap_err().to_string();
        assert!(e.contains("run.lanes = 5"), "{e}");
    }

    #[test]
    fn resume_differences_skip_cadence() {
        let a = RunSpec::preset(Preset::Tiny);
        let mut b = a.clone();
        b.run.eval_every = 7;
        assert!(a.resume_differences(&b).unwrap().is_empty());
        b.config.train.total_steps = 9;
        let d = a.resume_differences(&b).unwrap();
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(
            d[0].contains("train.total_steps is 500 in the run but 9 here"),
            "{d:?}"
        );
    }
}
