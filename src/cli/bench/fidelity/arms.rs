//! The arms of the fidelity benchmark and how one is run.
//!
//! Per seed, in this order (later arms need the times of earlier ones):
//! 1. `clip`: mask 0, `steps` steps of batch `B` — the reference.
//! 2. `flip50`, `flip75`: the same steps and batch (equal epochs), then `tune_steps` unmasked
//!    steps (FLIP's unmasked tuning). Evaluated at the end of the masked phase (full images, and
//!    with the training mask ratio at inference: FLIP Table 1d) and after tuning (Table 1e).
//! 3. `flip50-wall`, `flip75-wall`: as many masked steps as fit in the `clip` arm's training
//!    time of the same seed (equal wall-clock budget; FLIP Fig. 3).
//! 4. `flip50-2b`: mask 0.5 at batch 2B for `steps / 2` steps (equal epochs; the bigger batch
//!    that masking makes affordable is where FLIP puts its gain, Table 1b).
//!
//! The objectives suite ([`objective_arms`]) runs `clip` and `flip50` as above and MAE+CLIP and
//! CAE v2 (taught by the `clip` arm of its seed) and MUG beside them, every evaluation with the
//! linear probe.
//!
//! A finished arm leaves `result.json` in its run directory; running the benchmark again reuses
//! it when the arm's settings are unchanged, so an interrupted benchmark continues where it was.

use std::path::{Path, PathBuf};

use anyhow::Context;
use flipstream_train::objective::{
    CaeV2Settings, ContrastiveView, MaeClipSettings, MugSettings, Supervise,
};
use flipstream_train::run::{
    EvalData, EvalReport, MetricsRecord, RunSpec, RunStart, Session, StepRecord, TrainObserver,
    check_eval_data, evaluate, parse_metrics, train,
};
use flipstream_train::{ModelConfig, ObjectiveConfig, ObjectiveKind, TrainStep, UnmaskedTune};
use serde::{Deserialize, Serialize};

use crate::cli::train::train_error;

/// What an arm trains: its name, mask ratio, batch, masked steps and unmasked tuning steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct ArmSpec {
    /// `clip`, `flip50`, `flip75-wall`, …
    pub name: String,
    /// Seed of weights, masks and data order.
    pub seed: u64,
    /// Training mask ratio.
    pub mask_ratio: f64,
    /// Samples per step.
    pub batch: usize,
    /// Steps of the masked phase.
    pub steps: u64,
    /// Unmasked tuning steps after it (0: none).
    pub tune_steps: u64,
    /// The objective (absent: CLIP/FLIP, the base config's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Option<ObjectiveConfig>,
}

impl ArmSpec {
    /// The run directory's name inside the benchmark's output folder.
    pub(super) fn dir_name(&self) -> String {
        format!("{}-seed{}", self.name, self.seed)
    }
}

/// What one arm measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ArmResult {
    /// The arm.
    pub spec: ArmSpec,
    /// Training time of the masked phase (sum of step times; evaluation excluded).
    pub train_seconds: f64,
    /// Training time of the unmasked tuning phase.
    pub tune_seconds: f64,
    /// Images per second of the masked phase.
    pub images_per_s: f64,
    /// Evaluation on full images at the end of the masked phase.
    pub eval: EvalReport,
    /// Evaluation at the end of the masked phase with the training mask ratio at inference.
    pub masked_inference: Option<EvalReport>,
    /// Evaluation after unmasked tuning.
    pub tuned: Option<EvalReport>,
}

/// The arms of one seed that need no earlier result: CLIP, FLIP 50 % and 75 % (with tuning).
pub(super) fn first_arms(seed: u64, batch: usize, steps: u64, tune_steps: u64) -> Vec<ArmSpec> {
    let arm = |name: &str, mask_ratio: f64, tune_steps: u64| ArmSpec {
        name: name.into(),
        seed,
        mask_ratio,
        batch,
        steps,
        tune_steps,
        objective: None,
    };
    vec![
        arm("clip", 0.0, 0),
        arm("flip50", 0.5, tune_steps),
        arm("flip75", 0.75, tune_steps),
    ]
}

/// The arms of the objectives suite for one seed: CLIP and FLIP 50 % (as in [`first_arms`], so
/// their runs are shared), MAE+CLIP at mask 0.5 with one masked pass (FLIP Table 1f) and with the
/// contrastive term on the full image (Weers et al.'s two views), tuned like FLIP; and CAE v2 at
/// its default mask ratio for the model, supervising the visible or the removed tokens, with the
/// `clip` arm's run in `teacher` as its teacher; and MUG at its mask ratio (75 %).
pub(super) fn objective_arms(
    seed: u64,
    batch: usize,
    steps: u64,
    tune_steps: u64,
    model: &ModelConfig,
    teacher: &Path,
) -> Vec<ArmSpec> {
    let mut arms: Vec<ArmSpec> = first_arms(seed, batch, steps, tune_steps)
        .into_iter()
        .take(2)
        .collect();
    for (name, view) in [
        ("mae_clip50", ContrastiveView::Masked),
        ("mae_clip50-full", ContrastiveView::Full),
    ] {
        let mut settings = MaeClipSettings::for_model(model);
        settings.contrastive_view = view;
        arms.push(ArmSpec {
            name: name.into(),
            objective: Some(ObjectiveConfig::MaeClip(settings)),
            ..arms[1].clone()
        });
    }
    let mask_ratio = ObjectiveKind::CaeV2
        .default_mask_ratio(model)
        .unwrap_or(0.25);
    for (name, supervise) in [
        ("cae_v2", Supervise::Visible),
        ("cae_v2-masked", Supervise::Masked),
    ] {
        let mut settings = CaeV2Settings::for_model(model);
        settings.teacher = teacher.display().to_string();
        settings.supervise = supervise;
        arms.push(ArmSpec {
            name: name.into(),
            mask_ratio,
            tune_steps: 0,
            objective: Some(ObjectiveConfig::CaeV2(settings)),
            ..arms[0].clone()
        });
    }
    arms.push(ArmSpec {
        name: "mug".into(),
        mask_ratio: ObjectiveKind::Mug.default_mask_ratio(model).unwrap_or(0.75),
        tune_steps: 0,
        objective: Some(ObjectiveConfig::Mug(MugSettings::for_model(model))),
        ..arms[0].clone()
    });
    arms
}

/// The arms that depend on the first ones: equal wall-clock (masked steps that fit in the
/// CLIP arm's time) and the bigger batch at equal epochs.
pub(super) fn later_arms(clip: &ArmResult, flips: &[&ArmResult]) -> Vec<ArmSpec> {
    let mut arms: Vec<ArmSpec> = flips
        .iter()
        .map(|f| {
            let per_step = f.train_seconds / f.spec.steps.max(1) as f64;
            let steps = (clip.train_seconds / per_step.max(1e-9)).round() as u64;
            ArmSpec {
                name: format!("{}-wall", f.spec.name),
                tune_steps: 0,
                steps: steps.max(1),
                ..f.spec.clone()
            }
        })
        .collect();
    arms.push(ArmSpec {
        name: "flip50-2b".into(),
        seed: clip.spec.seed,
        mask_ratio: 0.5,
        batch: clip.spec.batch * 2,
        steps: (clip.spec.steps / 2).max(1),
        tune_steps: 0,
        objective: None,
    });
    arms
}

/// The run settings of an arm: the base spec with the arm's recipe, evaluation at the end of
/// each phase and a checkpoint at the end of the masked phase.
fn arm_run_spec(base: &RunSpec, arm: &ArmSpec) -> RunSpec {
    let mut spec = base.clone();
    if let Some(objective) = &arm.objective {
        spec.config.objective = objective.clone();
    }
    let t = &mut spec.config.train;
    t.seed = arm.seed;
    t.mask_ratio = arm.mask_ratio;
    t.batch_size = arm.batch;
    t.total_steps = arm.steps;
    t.warmup_steps = t.warmup_steps.min(arm.steps / 2);
    t.unmasked_tune = (arm.tune_steps > 0).then(|| UnmaskedTune {
        accum_steps: None,
        steps: arm.tune_steps,
        // FLIP tunes at a lower learning rate than pre-training (4e-8 vs 4e-6 per 256): a tenth
        // here, for the short schedules of this benchmark.
        base_lr: t.base_lr / 10.0,
        warmup_steps: (arm.tune_steps / 10).min(20),
    });
    spec.run.eval_every = arm.steps;
    spec.run.checkpoint_every = arm.steps;
    spec
}

/// Runs one arm into `dir` (or reuses its stored result) and returns what it measured.
pub(super) fn run_arm(
    base: &RunSpec,
    arm: &ArmSpec,
    dir: &Path,
    tokenizer: Option<PathBuf>,
    session: &Session,
    observer: &mut dyn TrainObserver,
) -> anyhow::Result<ArmResult> {
    let result_file = dir.join("result.json");
    if let Ok(text) = std::fs::read_to_string(&result_file)
        && let Ok(mut stored) = serde_json::from_str::<ArmResult>(&text)
        && stored.spec == *arm
    {
        // A run finished before the probe was asked for, or probed before its penalty was tuned:
        // probe its checkpoint (again), keep the rest.
        let stale =
            |p: &flipstream_train::run::ProbeReport| p.columns.iter().any(|c| c.l2.is_none());
        if base.run.eval.probe && stored.eval.probe.as_ref().is_none_or(stale) {
            stored.eval =
                evaluate_checkpoint(&arm_run_spec(base, arm), dir, arm.steps, 0.0, session)?;
            std::fs::write(&result_file, serde_json::to_string_pretty(&stored)?)
                .with_context(|| format!("writing {}", result_file.display()))?;
        }
        return Ok(stored);
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("removing the unfinished run {}", dir.display()))?;
    }
    let spec = arm_run_spec(base, arm);
    let start = RunStart::New {
        spec: Box::new(spec.clone()),
        tokenizer,
        init: None,
    };
    let url = dir.display().to_string();
    train(&url, start, session, observer).map_err(train_error)?;
    let result = measure(&spec, arm, dir, session)?;
    std::fs::write(&result_file, serde_json::to_string_pretty(&result)?)
        .with_context(|| format!("writing {}", result_file.display()))?;
    Ok(result)
}

/// Reads the run's metrics and adds the masked-inference evaluation.
fn measure(
    spec: &RunSpec,
    arm: &ArmSpec,
    dir: &Path,
    session: &Session,
) -> anyhow::Result<ArmResult> {
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl"))
        .with_context(|| format!("reading the metrics of {}", dir.display()))?;
    let records = parse_metrics(&metrics).map_err(train_error)?;
    let steps: Vec<&StepRecord> = records
        .iter()
        .filter_map(|r| match r {
            MetricsRecord::Step(s) => Some(s),
            _ => None,
        })
        .collect();
    let (masked, tuned): (Vec<&StepRecord>, Vec<&StepRecord>) =
        steps.iter().partition(|s| s.step < arm.steps);
    let seconds = |s: &[&StepRecord]| s.iter().map(|r| r.step_time_s).sum::<f64>();
    let eval_at = |step: u64| {
        records.iter().find_map(|r| match r {
            MetricsRecord::Eval(e) if e.step == step => Some(e.as_ref().clone()),
            _ => None,
        })
    };
    let eval = eval_at(arm.steps)
        .with_context(|| format!("{}: no evaluation at step {}", dir.display(), arm.steps))?;
    let train_seconds = seconds(&masked);
    // Masked inference is a FLIP question (Table 1d), asked of the flip suite's arms only.
    let masked_inference = if arm.mask_ratio > 0.0 && arm.objective.is_none() {
        Some(evaluate_checkpoint(
            spec,
            dir,
            arm.steps,
            arm.mask_ratio,
            session,
        )?)
    } else {
        None
    };
    Ok(ArmResult {
        spec: arm.clone(),
        train_seconds,
        tune_seconds: seconds(&tuned),
        images_per_s: (masked.len() * arm.batch) as f64 / train_seconds.max(1e-9),
        eval,
        masked_inference,
        tuned: (arm.tune_steps > 0)
            .then(|| eval_at(arm.steps + arm.tune_steps))
            .flatten(),
    })
}

/// Evaluates the checkpoint after `step` steps of the run in `dir` with `mask_ratio` of the
/// patches removed at inference.
fn evaluate_checkpoint(
    spec: &RunSpec,
    dir: &Path,
    step: u64,
    mask_ratio: f64,
    session: &Session,
) -> anyhow::Result<EvalReport> {
    let stored = RunSpec::from_file(&dir.join("config.toml")).map_err(train_error)?;
    let mut options = spec.run.eval.clone();
    options.mask_ratio = mask_ratio;
    let targets = check_eval_data(
        &spec.run.dataset,
        &options.label_columns,
        options.class_format.as_deref(),
        false,
    )
    .map_err(train_error)?;
    let checkpoint = dir
        .join("checkpoints")
        .join(flipstream_train::run::rundir::checkpoint_name(step));
    let mut trainer = TrainStep::new(stored.config, session.device).map_err(train_error)?;
    trainer.load_checkpoint(&checkpoint).map_err(train_error)?;
    let data = EvalData {
        dataset: &spec.run.dataset,
        tokenizer: &dir.join("tokenizer.json"),
        options: &options,
        targets: &targets,
        decode_threads: session.decode_threads,
    };
    evaluate(&trainer, &data).map_err(train_error)
}
