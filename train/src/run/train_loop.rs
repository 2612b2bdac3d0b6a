//! The training loop behind `flipstream train`: streaming loader → [`TrainStep`] → metrics,
//! periodic evaluation and checkpoints in a [`RunDir`].
//!
//! A new run resolves its tokenizer (given, or a BPE trained on the training captions), sets the
//! model's vocabulary and pad id from it, writes `config.toml` and `tokenizer.json`, and starts
//! at step 0. A resumed run reads the run directory's config and tokenizer, loads the latest
//! checkpoint (weights, AdamW moments, step) and restarts the loader from the state saved in it,
//! so the loss sequence continues exactly as without the interruption (bit for bit on the CPU).
//!
//! Each step records the time spent waiting for the loader and computing; the share of waiting
//! shows whether data loading keeps up.
//!
//! With several ranks ([`Session::dist`]), every rank runs this loop on its share of each global
//! batch. First the ranks check that they were started with the same settings; rank 0 alone
//! prepares the run directory (tokenizer, config) and the others then read it as a resumed run
//! would; the trainer takes rank 0's weights. Rank 0 alone writes metrics and checkpoints, and the
//! ranks agree after each of these, so a failure on rank 0 stops every rank with a message
//! instead of a hang. Evaluation is sharded: each rank encodes its share, rank 0 scores.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use flipstream_loader::TextTokenizer;
use flipstream_loader::tokenize::save_tokenizer;
use flipstream_loader::{
    Batch, Loader, LoaderConfig, LoaderError, LoaderState, Mode, Rank, SplitSelection, Start,
};

use crate::checkpoint::TrainProgress;
use crate::dist::{DistSetup, World};
use crate::error::{Result, TorchContext, TrainError};
use crate::interop::import_open_clip;
use crate::objective::ObjectiveConfig;
use crate::run::captions::{no_split, train_tokenizer};
use crate::run::eval::{EvalData, EvalReport, EvalTargets, check_eval_data, evaluate};
use crate::run::metrics::{MetricsLog, MetricsRecord, StepRecord};
use crate::run::rundir::{CONFIG_FILE, RunDir, TOKENIZER_FILE};
use crate::run::saver::{BackgroundSaver, Saved};
use crate::run::spec::{ALL_DATA_EVAL_REFUSAL, DataSplit, Overrides, RunSpec};
use crate::step::TrainStep;

/// How a run starts.
#[derive(Debug, Clone)]
pub enum RunStart {
    /// A new run in an empty (or absent) run directory.
    New {
        /// The resolved spec; `spec.run.dataset` names the dataset. The model's vocabulary size
        /// and pad id are replaced by the tokenizer's.
        spec: Box<RunSpec>,
        /// A `tokenizer.json` to use; `None`: the `init` folder's, or a BPE trained on the
        /// training captions.
        tokenizer: Option<PathBuf>,
        /// An open_clip folder whose architecture and weights the run starts from
        /// ([`crate::interop::import`]); `None`: a fresh model from the config and seed.
        init: Option<PathBuf>,
    },
    /// Continue the run in the run directory from its latest checkpoint.
    Resume {
        /// Settings given again; only the evaluation and checkpoint cadence may differ from the
        /// run's.
        overrides: Overrides,
        /// The dataset, when given again (it must be the run's).
        dataset: Option<String>,
    },
}

/// Settings of this process that do not change what is trained.
#[derive(Debug, Clone)]
pub struct Session {
    /// Where tensors live.
    pub device: Device,
    /// Loader decode threads (0: one per core).
    pub decode_threads: usize,
    /// Stop after this many optimizer steps in this session (a checkpoint is saved), to continue
    /// later with `--resume`. `None`: run to the end of the schedule.
    pub stop_after: Option<u64>,
    /// This process's place in a data-parallel run ([`DistSetup::single`] for one process).
    pub dist: DistSetup,
    /// Keep only the newest N checkpoints, deleting older ones after each save (never the one
    /// `latest.json` names); `None` keeps all.
    pub keep_checkpoints: Option<usize>,
}

/// What a run tells its caller as it goes (progress bars, logs). Every method has an empty
/// default.
pub trait TrainObserver {
    /// An informational message.
    fn message(&mut self, _text: &str) {}
    /// Training starts at `first_step` of `total_steps`.
    fn started(&mut self, _first_step: u64, _total_steps: u64) {}
    /// A step finished.
    fn step(&mut self, _record: &StepRecord) {}
    /// An evaluation starts.
    fn eval_started(&mut self, _step: u64) {}
    /// An evaluation finished.
    fn eval(&mut self, _report: &EvalReport) {}
    /// A checkpoint was saved.
    fn checkpoint(&mut self, _step: u64, _path: &str) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default)]
pub struct Silent;

impl TrainObserver for Silent {}

/// What a finished (or stopped) session reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSummary {
    /// The run directory.
    pub run_dir: String,
    /// The dataset.
    pub dataset: String,
    /// The device.
    pub device: String,
    /// Step this session started at (0 for a new run).
    pub first_step: u64,
    /// Optimizer steps completed in total.
    pub steps: u64,
    /// Steps of the whole schedule.
    pub total_steps: u64,
    /// True when the schedule is complete.
    pub finished: bool,
    /// Samples consumed in total.
    pub samples_seen: u64,
    /// Loss of the last step.
    pub final_loss: Option<f64>,
    /// Mean loss of the last (up to) 10 steps.
    pub final_loss_avg10: Option<f64>,
    /// Images per second over this session's steps.
    pub images_per_s: f64,
    /// Share of this session's step time spent waiting for data.
    pub data_wait_share: f64,
    /// Samples of this session that were substitutes for samples the loader could not read.
    #[serde(default)]
    pub samples_substituted: u64,
    /// Wall time of this session's steps.
    pub seconds: f64,
    /// The last checkpoint (path or URL).
    pub checkpoint: Option<String>,
    /// The metrics file (path or URL).
    pub metrics: String,
    /// The config file (path or URL).
    pub config: String,
    /// The last evaluation of this session.
    pub last_eval: Option<EvalReport>,
}

/// A resolved run: spec, tokenizer path, trainer, where to start.
struct Prepared {
    spec: RunSpec,
    tokenizer: PathBuf,
    trainer: TrainStep,
    progress: TrainProgress,
    loader_start: Start,
}

fn request(msg: String) -> TrainError {
    TrainError::Request(msg)
}

/// Runs (or continues) a training run in `run_dir`; see the module docs.
pub fn train(
    run_dir: &str,
    start: RunStart,
    session: &Session,
    observer: &mut dyn TrainObserver,
) -> Result<TrainSummary> {
    let dir = Arc::new(RunDir::open(run_dir)?);
    let resuming = matches!(start, RunStart::Resume { .. });
    if let RunStart::New { spec, .. } = &start {
        spec.check_world_size(session.dist.world_size)?;
    }
    let world = World::connect(&session.dist, session.device)?;
    world.check_same(
        "settings",
        blake3::hash(format!("{run_dir} {start:?} {:?}", session.stop_after).as_bytes()).as_bytes(),
    )?;
    let Prepared {
        spec,
        tokenizer,
        mut trainer,
        progress,
        loader_start,
    } = prepare(&dir, start, &world, session.device, observer)?;
    spec.check_world_size(world.size())?;
    trainer.join(world)?;
    let targets = eval_targets(&spec, observer)?;
    let resume_at = resuming.then_some(trainer.global_step());
    let log = RunLog::open(Arc::clone(&dir), trainer.world().is_main(), resume_at)?;
    let (loader, rows) = open_loader(&spec, &tokenizer, session, trainer.world(), loader_start)?;
    let info = loader.info();
    observer.message(&format!(
        "{}: {} training rows, {} batches of {} per epoch",
        spec.run.dataset, info.total_rows, info.batches_per_epoch, spec.config.train.batch_size
    ));

    let total = trainer.schedule().total_steps();
    let first_step = trainer.global_step();
    let stop_at = session
        .stop_after
        .map_or(total, |n| first_step.saturating_add(n).min(total));
    observer.started(first_step, total);
    let mut steps = Steps {
        spec: &spec,
        eval: targets.as_ref().map(|targets| EvalData {
            dataset: &spec.run.dataset,
            tokenizer: &tokenizer,
            options: &spec.run.eval,
            targets,
            decode_threads: session.decode_threads,
        }),
        trainer,
        progress,
        loader,
        rows,
        log,
        saver: BackgroundSaver::new(dir, session.keep_checkpoints),
        substitutes: Substitutes::new(spec.run.max_substitute_share, &spec.run.dataset),
        tally: Tally::default(),
        last_eval: None,
        stop_at,
        total,
    };
    while steps.trainer.global_step() < stop_at {
        steps.step(observer)?;
    }
    steps.finish(run_dir, first_step, observer)
}

/// The evaluation's targets (label columns, class names), checked before training starts; `None`
/// when the run does not evaluate.
fn eval_targets(spec: &RunSpec, observer: &mut dyn TrainObserver) -> Result<Option<EvalTargets>> {
    if spec.run.eval_every == 0 {
        return Ok(None);
    }
    let eval = &spec.run.eval;
    let targets = check_eval_data(
        &spec.run.dataset,
        &eval.label_columns,
        eval.class_format.as_deref(),
        false,
    )?;
    if let Some(note) = &targets.note {
        observer.message(note);
    }
    Ok(Some(targets))
}

/// The loader settings of a run's training data.
fn loader_config(spec: &RunSpec, tokenizer: &Path, decode_threads: usize) -> LoaderConfig {
    let run = &spec.run;
    LoaderConfig {
        mode: Mode::Train,
        split: match run.split {
            DataSplit::Train => SplitSelection::Train,
            DataSplit::All => SplitSelection::All,
        },
        batch_size: spec.config.train.batch_size,
        lanes: spec.lanes(),
        seed: spec.config.train.seed,
        shuffle_block: run.shuffle_block,
        epochs: None,
        image_size: spec.config.model.image_size as u32,
        tokenizer: Some(tokenizer.to_path_buf()),
        context_length: spec.config.model.context_length,
        prefetch_row_groups: run.prefetch_row_groups,
        crop_scale: (run.crop_scale[0], run.crop_scale[1]),
        crop_ratio: (run.crop_ratio[0], run.crop_ratio[1]),
        hflip_prob: run.hflip_prob,
        decode_threads,
        io_threads: 1,
        ..LoaderConfig::default()
    }
}

/// This rank's training loader from `start`, and the rows of each global batch it reads.
fn open_loader(
    spec: &RunSpec,
    tokenizer: &Path,
    session: &Session,
    world: &World,
    start: Start,
) -> Result<(Loader, Vec<usize>)> {
    let dataset = &spec.run.dataset;
    let config = loader_config(spec, tokenizer, session.decode_threads);
    let rank = Rank {
        rank: world.rank(),
        world_size: world.size(),
    };
    let rows = rank.global_rows(config.batch_size, config.lanes);
    let loader = Loader::open(dataset, config, rank, start).map_err(|e| match e {
        LoaderError::NoSplit { .. } => no_split(dataset),
        LoaderError::Settings(msg) if rank.world_size > 1 => {
            TrainError::DistSetup(format!("{} ranks: {msg}", rank.world_size))
        }
        other => loader_error(dataset, other),
    })?;
    Ok((loader, rows))
}

fn loader_error(dataset: &str, source: LoaderError) -> TrainError {
    TrainError::Loader {
        context: format!("training data of {dataset}"),
        source: Box::new(source),
    }
}

/// A loader batch as images (N, H, W, 3) and tokens (N, L).
fn batch_tensors(batch: &Batch) -> Result<(Tensor, Tensor)> {
    let n = batch.len() as i64;
    let tokens = batch
        .tokens
        .as_deref()
        .ok_or_else(|| request("the training loader returned no tokens".into()))?;
    let (h, w) = (i64::from(batch.height), i64::from(batch.width));
    let images = Tensor::from_slice(&batch.images)
        .f_view([n, h, w, 3])
        .context(|| "training images".into())?;
    let tokens = Tensor::from_slice(tokens)
        .f_view([n, batch.context_length as i64])
        .context(|| "training tokens".into())?;
    Ok((images, tokens))
}

/// The training session under way: one [`Steps::step`] per optimizer step, then
/// [`Steps::finish`].
struct Steps<'a> {
    spec: &'a RunSpec,
    /// `None` when the run does not evaluate.
    eval: Option<EvalData<'a>>,
    trainer: TrainStep,
    progress: TrainProgress,
    loader: Loader,
    /// The rows of each global batch this rank reads.
    rows: Vec<usize>,
    log: RunLog,
    saver: BackgroundSaver,
    substitutes: Substitutes,
    tally: Tally,
    last_eval: Option<EvalReport>,
    /// This session stops after this step.
    stop_at: u64,
    /// Steps of the whole schedule.
    total: u64,
}

impl Steps<'_> {
    /// One optimizer step on the next global batch, logged; then a checkpoint and an evaluation
    /// when they are due.
    fn step(&mut self, observer: &mut dyn TrainObserver) -> Result<()> {
        let t0 = Instant::now();
        let batch = match self.loader.next() {
            Some(b) => b.map_err(|e| loader_error(&self.spec.run.dataset, e))?,
            None => return Err(request("the training loader ended unexpectedly".into())),
        };
        let wait = t0.elapsed().as_secs_f64();
        for notice in self.loader.take_notices() {
            observer.message(&format!("training data: {notice}"));
        }
        let (images, tokens) = batch_tensors(&batch)?;
        let m = self.trainer.step_rows(&images, &tokens, Some(&self.rows))?;
        let world = self.trainer.world();
        let substituted = match world.size() {
            1 => u64::from(batch.substituted),
            _ => world.sum_values(&[f64::from(batch.substituted)])?[0] as u64,
        };
        let step_time = t0.elapsed().as_secs_f64();
        let n = (batch.len() * world.size()) as u64;
        self.progress.samples_seen += n;
        self.progress.epoch = batch.state_after.epoch;
        self.tally.add(step_time, wait, n, m.loss);
        let record = StepRecord {
            step: m.step,
            epoch: batch.epoch,
            samples_seen: self.progress.samples_seen,
            loss: m.loss,
            terms: m.terms,
            accuracy: m.accuracy,
            lr: m.lr,
            logit_scale: m.logit_scale,
            grad_norm: m.grad_norm,
            mask_ratio: m.mask_ratio,
            phase: m.phase,
            step_time_s: step_time,
            data_wait_s: wait,
            data_wait_share: wait / step_time.max(1e-12),
            images_per_s: n as f64 / step_time.max(1e-12),
            substituted,
        };
        self.log.step(&record)?;
        observer.step(&record);
        let done = self.trainer.global_step();
        let last = done == self.stop_at;
        self.substitutes.add(n, substituted, done, last)?;
        let every = self.spec.run.checkpoint_every;
        if last || (every > 0 && done.is_multiple_of(every)) {
            self.progress.loader_state = serde_json::to_value(&batch.state_after)
                .map_err(|e| request(format!("serialising the loader state: {e}")))?;
            self.checkpoint(observer)?;
        }
        if self.trainer.world().is_main() {
            let finished = self.saver.poll()?;
            self.log.saved(finished, observer)?;
        }
        let every = self.spec.run.eval_every;
        if done.is_multiple_of(every) || (last && done == self.total) {
            self.run_eval(done, observer)?;
        }
        Ok(())
    }

    /// Starts saving a checkpoint in the background, on rank 0.
    fn checkpoint(&mut self, observer: &mut dyn TrainObserver) -> Result<()> {
        // The save in flight is waited for and logged (metrics uploaded) before the next one
        // starts: a process killed during the next save resumes with the metrics up to now.
        let previous = on_main(
            self.trainer.world(),
            "finishing the previous checkpoint",
            || self.saver.finish(),
        )?;
        self.log.saved(previous.flatten(), observer)?;
        on_main(self.trainer.world(), "saving the checkpoint", || {
            let started = Instant::now();
            let snapshot = self.trainer.snapshot(&self.progress)?;
            // nothing in flight any more: the previous save was logged above
            self.saver
                .start(snapshot, started.elapsed().as_secs_f64())
                .map(drop)
        })?;
        Ok(())
    }

    /// Evaluates after step `step`: every rank encodes its share; rank 0 scores and logs.
    fn run_eval(&mut self, step: u64, observer: &mut dyn TrainObserver) -> Result<()> {
        let Some(eval) = &self.eval else {
            return Ok(());
        };
        observer.eval_started(step);
        let report = evaluate(&self.trainer, eval)?;
        on_main(self.trainer.world(), "logging the evaluation", || {
            self.log.eval(&report)
        })?;
        for notice in &report.loader_notices {
            observer.message(&format!("evaluation: {notice}"));
        }
        observer.eval(&report);
        self.last_eval = Some(report);
        Ok(())
    }

    /// Waits for the last save, syncs the metrics, and sums the session up.
    fn finish(
        mut self,
        run_dir: &str,
        first_step: u64,
        observer: &mut dyn TrainObserver,
    ) -> Result<TrainSummary> {
        let finished = self.saver.finish()?;
        self.log.saved(finished, observer)?;
        self.log.sync()?;
        let (tally, dir) = (&self.tally, &self.log.dir);
        let checkpoint = self.log.last_checkpoint.take().or_else(|| {
            dir.latest_checkpoint()
                .ok()
                .flatten()
                .map(|l| dir.display(&l.dir))
        });
        Ok(TrainSummary {
            run_dir: run_dir.to_string(),
            dataset: self.spec.run.dataset.clone(),
            device: format!("{:?}", self.trainer.device()).to_lowercase(),
            first_step,
            steps: self.trainer.global_step(),
            total_steps: self.total,
            finished: self.trainer.global_step() >= self.total,
            samples_seen: self.progress.samples_seen,
            final_loss: tally.recent_losses.last().copied(),
            final_loss_avg10: tally.mean_recent_loss(),
            images_per_s: tally.images as f64 / tally.busy.max(1e-12),
            data_wait_share: tally.waited / tally.busy.max(1e-12),
            samples_substituted: self.substitutes.substituted,
            seconds: tally.busy,
            checkpoint,
            metrics: dir.display(crate::run::rundir::METRICS_FILE),
            config: dir.display(CONFIG_FILE),
            last_eval: self.last_eval,
        })
    }
}

/// Time, images and the latest losses of this session's steps, for its summary.
#[derive(Debug, Default)]
struct Tally {
    /// Seconds of the steps, data waits included.
    busy: f64,
    /// Seconds spent waiting for data.
    waited: f64,
    images: u64,
    /// The losses of the last [`Tally::RECENT`] steps.
    recent_losses: Vec<f64>,
}

impl Tally {
    const RECENT: usize = 10;

    fn add(&mut self, step_s: f64, wait_s: f64, images: u64, loss: f64) {
        self.busy += step_s;
        self.waited += wait_s;
        self.images += images;
        self.recent_losses.push(loss);
        if self.recent_losses.len() > Self::RECENT {
            self.recent_losses.remove(0);
        }
    }

    fn mean_recent_loss(&self) -> Option<f64> {
        let losses = &self.recent_losses;
        (!losses.is_empty()).then(|| losses.iter().sum::<f64>() / losses.len() as f64)
    }
}

/// The run's `metrics.jsonl`, written by rank 0 alone, and the checkpoints logged in it.
struct RunLog {
    dir: Arc<RunDir>,
    /// `None` on the other ranks.
    metrics: Option<MetricsLog>,
    /// The last checkpoint saved in this session.
    last_checkpoint: Option<String>,
}

impl RunLog {
    /// Opens the log on rank 0 (`main`), cut back to `resume_at` when resuming.
    fn open(dir: Arc<RunDir>, main: bool, resume_at: Option<u64>) -> Result<Self> {
        let mut metrics = match main {
            true => Some(MetricsLog::open(&dir, resume_at)?),
            false => None,
        };
        if let Some(m) = &mut metrics {
            m.sync(&dir)?;
        }
        Ok(Self {
            dir,
            metrics,
            last_checkpoint: None,
        })
    }

    fn step(&mut self, record: &StepRecord) -> Result<()> {
        if let Some(m) = &mut self.metrics {
            m.append(&MetricsRecord::Step(record.clone()))?;
            m.flush()?;
        }
        Ok(())
    }

    fn eval(&mut self, report: &EvalReport) -> Result<()> {
        if let Some(m) = &mut self.metrics {
            m.append(&MetricsRecord::Eval(Box::new(report.clone())))?;
            m.sync(&self.dir)?;
        }
        Ok(())
    }

    /// Logs a finished checkpoint save (and uploads the metrics); nothing for `None`.
    fn saved(&mut self, saved: Option<Saved>, observer: &mut dyn TrainObserver) -> Result<()> {
        let Some(saved) = saved else {
            return Ok(());
        };
        if let Some(m) = &mut self.metrics {
            m.append(&MetricsRecord::Checkpoint {
                step: saved.step,
                path: saved.path.clone(),
                stall_s: saved.stall_s,
                write_s: saved.write_s,
            })?;
            m.sync(&self.dir)?;
        }
        observer.checkpoint(saved.step, &saved.path);
        self.last_checkpoint = Some(saved.path);
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        match &mut self.metrics {
            Some(m) => m.sync(&self.dir),
            None => Ok(()),
        }
    }
}

/// The session's count of substitute samples, and the limit on their share.
struct Substitutes {
    samples: u64,
    substituted: u64,
    max_share: f64,
    dataset: String,
}

impl Substitutes {
    /// Judged from this many samples on (and at the last step).
    const MIN_SAMPLES: u64 = 512;

    fn new(max_share: f64, dataset: &str) -> Self {
        Substitutes {
            samples: 0,
            substituted: 0,
            max_share,
            dataset: dataset.to_string(),
        }
    }

    /// Counts a batch of `samples` of which `substituted` were substitutes; fails once their
    /// share exceeds the limit (`step` steps done, `last`: the session's last step).
    fn add(&mut self, samples: u64, substituted: u64, step: u64, last: bool) -> Result<()> {
        self.samples += samples;
        self.substituted += substituted;
        let share = self.substituted as f64 / self.samples.max(1) as f64;
        if (self.samples >= Self::MIN_SAMPLES || last) && share > self.max_share {
            return Err(TrainError::Request(format!(
                "{} of the {} samples of this session ({:.1} %) were substitutes for samples the \
                 loader could not read — damaged or missing shards of {}: check it with `flipstream \
                 shard verify {}`. Training stopped after step {step}; run.max_substitute_share = {} \
                 allows {:.1} %",
                self.substituted,
                self.samples,
                share * 100.0,
                self.dataset,
                self.dataset,
                self.max_share,
                self.max_share * 100.0
            )));
        }
        Ok(())
    }
}

/// The newest checkpoint at or before `latest` that loads: a damaged one (a checksum that does
/// not match, an unreadable file) is skipped with a message, never loaded.
fn load_intact_checkpoint(
    dir: &RunDir,
    spec: &RunSpec,
    latest: u64,
    device: Device,
    observer: &mut dyn TrainObserver,
) -> Result<(PathBuf, TrainStep, crate::checkpoint::CheckpointMeta)> {
    let mut candidates = vec![latest];
    candidates.extend(dir.checkpoint_steps()?.into_iter().filter(|&s| s < latest));
    for step in candidates {
        let name = crate::run::rundir::checkpoint_name(step);
        let attempt = dir.fetch_checkpoint(Some(&name)).and_then(|local| {
            let mut trainer = TrainStep::new(spec.config.clone(), device)?;
            let meta = trainer.load_checkpoint(&local)?;
            Ok((local, trainer, meta))
        });
        match attempt {
            Ok(found) => return Ok(found),
            Err(e @ (TrainError::Checkpoint { .. } | TrainError::Io { .. })) => {
                observer.message(&format!("skipping checkpoint {name}: {e}"));
            }
            Err(e) => return Err(e),
        }
    }
    Err(TrainError::RunDir {
        url: dir.url().to_string(),
        detail: "holds no intact checkpoint (each one is damaged or incomplete, see the messages \
                 above); start a new run"
            .into(),
    })
}

/// Runs `work` on rank 0 only; then every rank learns whether it succeeded (the others fail with a
/// message pointing at rank 0 when it did not). `None` on the other ranks.
fn on_main<T>(world: &World, what: &str, work: impl FnOnce() -> Result<T>) -> Result<Option<T>> {
    let result = world.is_main().then(work);
    let failed = matches!(result, Some(Err(_)));
    let failures = world.sum_values(&[f64::from(u8::from(failed))])?;
    match result {
        Some(r) => r.map(Some),
        None if failures[0] > 0.0 => Err(TrainError::Distributed {
            context: what.to_string(),
            detail: "rank 0 failed (its own message says why)".into(),
        }),
        None => Ok(None),
    }
}

/// Resolves the run on every rank: rank 0 creates or resumes it; then the others read what rank
/// 0 wrote, as a resumed run (config, tokenizer, latest checkpoint).
fn prepare(
    dir: &RunDir,
    start: RunStart,
    world: &World,
    device: Device,
    observer: &mut dyn TrainObserver,
) -> Result<Prepared> {
    let main = on_main(world, "preparing the run", || match &start {
        RunStart::New {
            spec,
            tokenizer,
            init,
        } => prepare_new(
            dir,
            (**spec).clone(),
            NewRunStart {
                tokenizer: tokenizer.as_deref(),
                init: init.as_deref(),
            },
            device,
            observer,
        ),
        RunStart::Resume { overrides, dataset } => {
            prepare_resume(dir, overrides, dataset.as_deref(), device, observer)
        }
    })?;
    match main {
        Some(prepared) => Ok(prepared),
        None => {
            let overrides = match start {
                RunStart::Resume { overrides, .. } => overrides,
                RunStart::New { .. } => Overrides::default(),
            };
            prepare_resume(dir, &overrides, None, device, &mut Silent)
        }
    }
}

fn load_tokenizer(path: &Path, context_length: usize) -> Result<TextTokenizer> {
    TextTokenizer::from_file(path, context_length.max(2)).map_err(|source| TrainError::Tokenizer {
        context: format!("loading {}", path.display()),
        source: Box::new(source),
    })
}

/// Sets the model's vocabulary, pad id and end-of-text id from the tokenizer at `path`.
fn adopt_tokenizer(spec: &mut RunSpec, path: &Path) -> Result<()> {
    let tok = load_tokenizer(path, spec.config.model.context_length)?;
    spec.config.model.vocab_size = tok.vocab_size();
    spec.config.model.pad_id = tok.pad_id() as usize;
    spec.config.model.eot_id = Some(tok.end_id() as usize);
    Ok(())
}

/// Where a new run's tokenizer and initial weights come from.
#[derive(Debug, Clone, Copy)]
struct NewRunStart<'a> {
    tokenizer: Option<&'a Path>,
    init: Option<&'a Path>,
}

fn prepare_new(
    dir: &RunDir,
    mut spec: RunSpec,
    start: NewRunStart<'_>,
    device: Device,
    observer: &mut dyn TrainObserver,
) -> Result<Prepared> {
    if spec.run.dataset.is_empty() {
        return Err(request("no dataset given".into()));
    }
    let mut imported = start.init.map(import_open_clip).transpose()?;
    let tokenizer = match &imported {
        Some(m) => {
            spec.config.model = m.config.clone();
            spec.run.init = Some(format!("open_clip:{}", m.dir.display()));
            let path = start.tokenizer.or(m.tokenizer.as_deref()).ok_or_else(|| {
                request(format!(
                    "{} has no tokenizer.json (a model that uses open_clip's built-in CLIP                      tokenizer): pass --tokenizer with the tokenizer.json of its vocabulary",
                    m.dir.display()
                ))
            })?;
            Some(path)
        }
        None => start.tokenizer,
    };
    spec.validate()?;
    if dir.has_run()? {
        return Err(TrainError::RunDir {
            url: dir.url().to_string(),
            detail: format!(
                "already holds a run ({CONFIG_FILE}): pass --resume to continue it, or choose another --run"
            ),
        });
    }
    let dataset = spec.run.dataset.clone();
    if spec.run.split == DataSplit::All && spec.run.eval_every > 0 {
        return Err(request(format!(
            "{ALL_DATA_EVAL_REFUSAL}: pass --eval-every 0, or train on the train side of the split \
             (leave out --all-data)"
        )));
    }
    if spec.run.eval_every > 0 {
        // Fail before the tokenizer is trained when evaluation cannot work.
        check_eval_data(&dataset, &[], None, false)?;
    }
    if let ObjectiveConfig::CaeV2(s) = &spec.config.objective {
        // Likewise when the teacher cannot serve this model.
        crate::objective::cae_v2::teacher_source(&s.teacher, &spec.config.model)?;
    }
    dir.create()?;
    match tokenizer {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|source| TrainError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            // Load before copying, so that a bad file is refused with its own name.
            adopt_tokenizer(&mut spec, path)?;
            dir.write(TOKENIZER_FILE, &bytes)?;
        }
        None => {
            observer.message(&format!(
                "training a BPE tokenizer (vocabulary up to {}) on the training captions of {dataset}",
                spec.run.tokenizer_vocab_size
            ));
            let (tok, n) =
                train_tokenizer(&dataset, spec.run.split, spec.run.tokenizer_vocab_size)?;
            let local = dir.local_path(TOKENIZER_FILE);
            save_tokenizer(&tok, &local).map_err(|source| TrainError::Tokenizer {
                context: "saving the trained tokenizer".into(),
                source: Box::new(source),
            })?;
            dir.upload(TOKENIZER_FILE)?;
            observer.message(&format!(
                "tokenizer: {} tokens from {n} captions → {}",
                tok.get_vocab_size(true),
                dir.display(TOKENIZER_FILE)
            ));
        }
    }
    let local_tokenizer = dir.local_path(TOKENIZER_FILE);
    match &mut imported {
        Some(m) => {
            let tok = load_tokenizer(&local_tokenizer, spec.config.model.context_length)?;
            m.adopt_tokenizer(&tok, &local_tokenizer.display().to_string())?;
            spec.config.model = m.config.clone();
        }
        None => adopt_tokenizer(&mut spec, &local_tokenizer)?,
    }
    spec.validate()?;
    dir.write(CONFIG_FILE, spec.to_toml_string()?.as_bytes())?;
    let mut trainer = TrainStep::new(spec.config.clone(), device)?;
    if let Some(m) = &imported {
        trainer.load_towers(&m.weights, &m.dir)?;
        observer.message(&format!(
            "initialised from open_clip:{} ({} tensors)",
            m.dir.display(),
            m.weights.len()
        ));
    }
    Ok(Prepared {
        spec,
        tokenizer: local_tokenizer,
        trainer,
        progress: TrainProgress::default(),
        loader_start: Start::Epoch(0),
    })
}

fn prepare_resume(
    dir: &RunDir,
    overrides: &Overrides,
    dataset: Option<&str>,
    device: Device,
    observer: &mut dyn TrainObserver,
) -> Result<Prepared> {
    let Some(text) = dir.read_opt(CONFIG_FILE)? else {
        return Err(TrainError::RunDir {
            url: dir.url().to_string(),
            detail: format!(
                "holds no run to resume ({CONFIG_FILE} is missing): leave out --resume to start one"
            ),
        });
    };
    let stored =
        RunSpec::from_toml_str(&String::from_utf8_lossy(&text), &dir.display(CONFIG_FILE))?;
    let mut spec = stored.clone();
    spec.apply(overrides);
    if let Some(d) = dataset {
        spec.run.dataset = d.to_string();
    }
    let differences = stored.resume_differences(&spec)?;
    if !differences.is_empty() {
        return Err(request(format!(
            "cannot resume {} with other settings ({}); --resume continues with the run's own config: \
             remove those flags, or start a new run with another --run",
            dir.url(),
            differences.join("; ")
        )));
    }
    spec.validate()?;
    if spec != stored {
        dir.write(CONFIG_FILE, spec.to_toml_string()?.as_bytes())?;
    }
    let tokenizer = dir.fetch(TOKENIZER_FILE)?;
    let check = {
        let mut s = spec.clone();
        adopt_tokenizer(&mut s, &tokenizer)?;
        // A run written before the end token was recorded pools at its last non-pad token.
        if spec.config.model.eot_id.is_none() {
            s.config.model.eot_id = None;
        }
        s.config.model == spec.config.model
    };
    if !check {
        return Err(TrainError::RunDir {
            url: dir.url().to_string(),
            detail: format!(
                "{TOKENIZER_FILE} does not match model.vocab_size / model.pad_id / model.eot_id of {CONFIG_FILE}"
            ),
        });
    }
    std::fs::create_dir_all(dir.local_path(crate::run::rundir::CHECKPOINTS_DIR)).map_err(
        |source| TrainError::Io {
            path: dir.local_path(crate::run::rundir::CHECKPOINTS_DIR),
            source,
        },
    )?;
    match dir.latest_checkpoint()? {
        None => {
            observer.message("no checkpoint yet: starting the run from step 0");
            let trainer = TrainStep::new(spec.config.clone(), device)?;
            Ok(Prepared {
                spec,
                tokenizer,
                trainer,
                progress: TrainProgress::default(),
                loader_start: Start::Epoch(0),
            })
        }
        Some(latest) => {
            let (local, trainer, meta) =
                load_intact_checkpoint(dir, &spec, latest.step, device, observer)?;
            if meta.config != spec.config {
                return Err(TrainError::CheckpointMismatch {
                    path: local,
                    differences: vec![format!(
                        "its training config differs from {CONFIG_FILE} of the run"
                    )],
                });
            }
            let state: LoaderState = serde_json::from_value(meta.progress.loader_state.clone())
                .map_err(|e| TrainError::Checkpoint {
                    path: local.clone(),
                    detail: format!("no usable loader state: {e}"),
                })?;
            observer.message(&format!(
                "resuming at step {} (epoch {}, {} samples seen) from {}",
                meta.step,
                meta.progress.epoch,
                meta.progress.samples_seen,
                dir.display(&latest.dir)
            ));
            Ok(Prepared {
                spec,
                tokenizer,
                trainer,
                progress: meta.progress,
                loader_start: Start::State(state),
            })
        }
    }
}
