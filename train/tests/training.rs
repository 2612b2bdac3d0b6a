//! Training end to end on the CPU: learning, exact resume, checkpoints, gradient accumulation.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use common::{colour_batch, micro_run, same_values};
use flipstream_shard::problems::Problems;
use flipstream_train::checkpoint::{self, META_FILE, MODEL_FILE, OPTIMIZER_FILE};
use flipstream_train::{TrainError, TrainProgress, TrainStep};
use tch::{Device, Kind, Tensor};

#[test]
fn loss_falls_and_colours_are_retrieved_after_training() {
    let mut run = micro_run();
    run.train.total_steps = 60;
    let mut trainer = TrainStep::new(run.clone(), Device::Cpu).unwrap();
    let mut losses = Vec::new();
    for step in 0..60 {
        let (images, tokens) = colour_batch(&run.model, step);
        let m = trainer.step(&images, &tokens).unwrap();
        assert_eq!(m.step, step);
        losses.push(m.loss);
    }
    let first = losses[..5].iter().sum::<f64>() / 5.0;
    let last = losses[55..].iter().sum::<f64>() / 5.0;
    // chance level is ln(8) ≈ 2.08
    assert!(first > 1.5, "initial loss {first} should be near chance");
    assert!(
        last < 0.1 * first,
        "loss did not fall: {first:.3} → {last:.3} ({losses:?})"
    );

    // zero-shot style retrieval with the eval path: every colour finds its own token
    let (images, tokens) = colour_batch(&run.model, 999);
    let img = trainer.encode_images(&images).unwrap();
    let txt = trainer.encode_texts(&tokens).unwrap();
    let hits = img
        .matmul(&txt.tr())
        .argmax(1, false)
        .eq_tensor(&Tensor::arange(8, (Kind::Int64, Device::Cpu)));
    let accuracy = hits
        .to_kind(Kind::Float)
        .mean(Kind::Float)
        .double_value(&[]);
    assert!(accuracy >= 0.75, "eval retrieval accuracy {accuracy}");
}

fn train_steps(trainer: &mut TrainStep, steps: std::ops::Range<u64>) -> Vec<f64> {
    let model = trainer.config().model.clone();
    steps
        .map(|s| {
            let (images, tokens) = colour_batch(&model, s);
            trainer.step(&images, &tokens).unwrap().loss
        })
        .collect()
}

#[test]
fn resumed_run_repeats_the_uninterrupted_losses_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("step-4");
    let mut run = micro_run();
    run.train.warmup_steps = 2; // cross into the cosine phase after the checkpoint
    run.train.total_steps = 10;

    let mut straight = TrainStep::new(run.clone(), Device::Cpu).unwrap();
    let before = train_steps(&mut straight, 0..4);
    let progress = TrainProgress {
        epoch: 1,
        samples_seen: 32,
        loader_state: serde_json::json!({"cursor": [3, 17]}),
    };
    straight.save_checkpoint(&ckpt, &progress).unwrap();
    let after = train_steps(&mut straight, 4..8);

    let (mut resumed, meta) = TrainStep::resume(&ckpt, Device::Cpu).unwrap();
    assert_eq!(meta.step, 4);
    assert_eq!(meta.progress, progress);
    assert_eq!(resumed.global_step(), 4);
    let again = train_steps(&mut resumed, 4..8);
    assert_eq!(
        after, again,
        "losses after resuming differ (before: {before:?})"
    );
    for (a, b) in straight
        .model()
        .params()
        .iter()
        .zip(resumed.model().params().iter())
    {
        assert!(
            same_values(a.tensor(), b.tensor()),
            "{} differs after resuming",
            a.name()
        );
    }
}

#[test]
fn checkpoint_round_trip_restores_weights_moments_and_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    let run = micro_run();
    let mut trainer = TrainStep::new(run.clone(), Device::Cpu).unwrap();
    train_steps(&mut trainer, 0..3);
    let progress = TrainProgress {
        epoch: 0,
        samples_seen: 24,
        loader_state: serde_json::json!({"units": ["a", "b"], "pos": 5}),
    };
    let saved = trainer.save_checkpoint(dir.path(), &progress).unwrap();
    for f in [MODEL_FILE, OPTIMIZER_FILE, META_FILE] {
        assert!(dir.path().join(f).is_file(), "{f} missing");
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files left behind: {leftovers:?}"
    );
    assert_eq!(saved.step, 3);
    assert_eq!(saved.model_fingerprint, run.model.fingerprint());
    assert_eq!(checkpoint::read_meta(dir.path()).unwrap(), saved);

    // a trainer with other initial weights takes on everything
    let mut other_run = run.clone();
    other_run.train.seed = 99;
    let mut other = TrainStep::new(other_run, Device::Cpu).unwrap();
    let meta = other.load_checkpoint(dir.path()).unwrap();
    assert_eq!(meta, saved);
    assert_eq!(other.global_step(), 3);
    assert_eq!(other.optimizer().steps(), 3);
    for (a, b) in trainer
        .model()
        .params()
        .iter()
        .zip(other.model().params().iter())
    {
        assert!(same_values(a.tensor(), b.tensor()), "{}", a.name());
    }
    for ((name, a), (_, b)) in trainer
        .optimizer()
        .state_tensors()
        .into_iter()
        .zip(other.optimizer().state_tensors())
    {
        assert!(same_values(a, b), "{name}");
    }
    // the tensors are plain safetensors with the parameter names
    let (weights, info) =
        checkpoint::read_safetensors(&dir.path().join(MODEL_FILE), Device::Cpu).unwrap();
    assert_eq!(weights.len(), trainer.model().params().len());
    assert_eq!(info.get("step").map(String::as_str), Some("3"));
}

#[test]
fn checkpoint_of_another_model_is_refused_naming_the_differences() {
    let dir = tempfile::tempdir().unwrap();
    let run = micro_run();
    TrainStep::new(run.clone(), Device::Cpu)
        .unwrap()
        .save_checkpoint(dir.path(), &TrainProgress::default())
        .unwrap();

    let mut deeper = run.clone();
    deeper.model.text_depth = 2;
    deeper.model.embed_dim = 48;
    let mut other = TrainStep::new(deeper, Device::Cpu).unwrap();
    let before: Vec<Tensor> = other
        .model()
        .params()
        .iter()
        .map(|p| p.tensor().copy())
        .collect();
    let err = other.load_checkpoint(dir.path()).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, TrainError::CheckpointMismatch { .. }),
        "{message}"
    );
    assert!(
        message.contains("model.text_depth is 1 in the checkpoint but 2 here"),
        "{message}"
    );
    assert!(message.contains("model.embed_dim"), "{message}");
    assert_eq!(other.global_step(), 0);
    for (p, b) in other.model().params().iter().zip(&before) {
        assert!(
            same_values(p.tensor(), b),
            "{} was changed by a refused load",
            p.name()
        );
    }
}

#[test]
fn mixed_files_of_two_saves_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let run = micro_run();
    let mut trainer = TrainStep::new(run.clone(), Device::Cpu).unwrap();
    trainer
        .save_checkpoint(&a, &TrainProgress::default())
        .unwrap();
    train_steps(&mut trainer, 0..1);
    trainer
        .save_checkpoint(&b, &TrainProgress::default())
        .unwrap();
    std::fs::copy(b.join(MODEL_FILE), a.join(MODEL_FILE)).unwrap();
    // The sidecar's checksum no longer matches the weights file.
    let err = TrainStep::resume(&a, Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("damaged"), "{err}");
    // A sidecar without checksums (written before they were recorded): the files' steps differ.
    let sidecar = a.join(META_FILE);
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sidecar).unwrap()).unwrap();
    meta.as_object_mut().unwrap().remove("checksums");
    std::fs::write(&sidecar, serde_json::to_vec(&meta).unwrap()).unwrap();
    let err = TrainStep::resume(&a, Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("two different saves"), "{err}");
    let err = TrainStep::resume(&dir.path().join("missing"), Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("checkpoint.json"), "{err}");
}

#[test]
fn accumulation_gives_the_full_batch_gradient() {
    let run = micro_run();
    let mut accumulated_run = run.clone();
    accumulated_run.train.accum_steps = 4;
    let (images, tokens) = colour_batch(&run.model, 0);
    let mut full = TrainStep::new(run, Device::Cpu).unwrap();
    let mut split = TrainStep::new(accumulated_run, Device::Cpu).unwrap();
    let a = full.step(&images, &tokens).unwrap();
    let b = split.step(&images, &tokens).unwrap();
    assert!(
        (a.loss - b.loss).abs() < 1e-5,
        "loss {} vs {}",
        a.loss,
        b.loss
    );
    assert!((a.accuracy - b.accuracy).abs() < 1e-9);
    // per-micro-batch losses would give a different gradient (negatives only within 2 samples)
    assert!(
        (a.grad_norm - b.grad_norm).abs() < 1e-4 * a.grad_norm,
        "grad norm {} vs {}",
        a.grad_norm,
        b.grad_norm
    );
    let odd = colour_batch(&full.config().model, 1);
    let err = split
        .step(&odd.0.narrow(0, 0, 6), &odd.1.narrow(0, 0, 6))
        .unwrap_err()
        .to_string();
    assert!(err.contains("accum_steps = 4"), "{err}");
}

#[test]
fn the_unmasked_phase_may_accumulate_without_changing_the_step() {
    let mut run = micro_run();
    run.train.total_steps = 2;
    run.train.warmup_steps = 1;
    run.train.unmasked_tune = Some(flipstream_train::UnmaskedTune {
        steps: 2,
        base_lr: run.train.base_lr / 10.0,
        warmup_steps: 0,
        accum_steps: None,
    });
    let mut split_run = run.clone();
    if let Some(t) = &mut split_run.train.unmasked_tune {
        t.accum_steps = Some(4);
    }
    assert_eq!(split_run.train.accum_steps_of_phases(), vec![1, 4]);
    let mut whole = TrainStep::new(run, Device::Cpu).unwrap();
    let mut split = TrainStep::new(split_run.clone(), Device::Cpu).unwrap();
    for (a, b) in train_steps(&mut whole, 0..4)
        .iter()
        .zip(train_steps(&mut split, 0..4))
    {
        assert!((a - b).abs() < 1e-5, "loss {a} vs {b}");
    }
    // A phase's micro-batches must divide the batch.
    if let Some(t) = &mut split_run.train.unmasked_tune {
        t.accum_steps = Some(3);
    }
    let problems = Problems(split_run.problems()).to_string();
    assert!(
        problems
            .contains("train.unmasked_tune.accum_steps = 3 does not divide train.batch_size = 8"),
        "{problems}"
    );
}
