//! Objectives on the CPU: MAE+CLIP learns both terms, its masking and loss invariants, gradients
//! reach every parameter, exact resume, accumulation, the `[objective]` table and its errors, and
//! configs and checkpoints written before objectives existed.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use common::{colour_batch, micro_run, micro_run_mae, same_values};
use flipstream_train::model::decoder::{pixel_targets, reconstruction_loss};
use flipstream_train::objective::{
    self, CaeV2Settings, ContrastiveView, MaeClipSettings, MugSettings, Supervise,
};
use flipstream_train::run::RunSpec;
use flipstream_train::{
    Compute, Gradients, ObjectiveConfig, ObjectiveKind, PatchMask, RunConfig, TrainProgress,
    TrainStep, clip_loss,
};
use tch::{Device, Kind, Tensor};

fn mae_settings(run: &RunConfig) -> &MaeClipSettings {
    match &run.objective {
        ObjectiveConfig::MaeClip(s) => s,
        other => panic!("not mae_clip: {other:?}"),
    }
}

fn train(
    trainer: &mut TrainStep,
    steps: std::ops::Range<u64>,
) -> Vec<flipstream_train::StepMetrics> {
    let model = trainer.config().model.clone();
    steps
        .map(|s| {
            let (images, tokens) = colour_batch(&model, s);
            trainer.step(&images, &tokens).unwrap()
        })
        .collect()
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = values.collect();
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn mae_clip_learns_both_terms_and_reports_them_by_name() {
    let mut run = micro_run_mae();
    run.train.total_steps = 60;
    let mut trainer = TrainStep::new(run, Device::Cpu).unwrap();
    let m = train(&mut trainer, 0..60);
    for s in &m {
        let names: Vec<&str> = s.terms.keys().map(String::as_str).collect();
        assert_eq!(names, ["contrastive", "reconstruction"]);
        let weighted = s.terms["contrastive"] + s.terms["reconstruction"];
        assert!((s.loss - weighted).abs() < 1e-9 * s.loss.max(1.0));
    }
    let term = |name: &str, r: std::ops::Range<usize>| mean(m[r].iter().map(|s| s.terms[name]));
    for name in ["contrastive", "reconstruction"] {
        let (first, last) = (term(name, 0..5), term(name, 55..60));
        assert!(
            last < 0.5 * first,
            "{name} did not fall: {first:.3} → {last:.3}"
        );
    }
}

#[test]
fn clip_reports_its_single_term() {
    let mut trainer = TrainStep::new(micro_run(), Device::Cpu).unwrap();
    let m = &train(&mut trainer, 0..1)[0];
    assert_eq!(m.terms.len(), 1);
    assert_eq!(m.terms["contrastive"], m.loss);
}

#[test]
fn reconstruction_scores_only_the_removed_patches() {
    let noise = Tensor::rand([2, 16], (Kind::Float, Device::Cpu));
    let mask = PatchMask::from_noise(&noise, 0.75).unwrap();
    let target = Tensor::rand([2, 16, 12], (Kind::Float, Device::Cpu));
    let pred = Tensor::rand([2, 16, 12], (Kind::Float, Device::Cpu));
    let base = reconstruction_loss(&pred, &target, &mask)
        .unwrap()
        .double_value(&[]);
    // changing the prediction of a kept patch changes nothing …
    let kept = mask.ids_keep.int64_value(&[0, 0]);
    let moved = pred.copy();
    let _ = moved.get(0).get(kept).fill_(100.0);
    let same = reconstruction_loss(&moved, &target, &mask)
        .unwrap()
        .double_value(&[]);
    assert_eq!(base, same);
    // … while a removed one counts, as the mean over the 24 removed patches
    let removed = (0..16)
        .find(|&i| mask.mask.double_value(&[0, i]) == 1.0)
        .unwrap();
    let wrong = target.copy();
    let _ = wrong.get(0).get(removed).f_add_scalar_(1.0).unwrap();
    let per_patch = (&pred - &target).square().mean_dim(-1, false, Kind::Float);
    let expected = (per_patch * &mask.mask).sum(Kind::Float).double_value(&[]) / 24.0;
    assert!((base - expected).abs() < 1e-6);
    assert!(
        reconstruction_loss(&pred, &wrong, &mask)
            .unwrap()
            .double_value(&[])
            != base
    );
}

#[test]
fn normalised_pixel_targets_have_zero_mean_and_unit_variance_per_patch() {
    let patches = Tensor::randint(256, [2, 4, 48], (Kind::Uint8, Device::Cpu));
    let t = pixel_targets(&patches, true).unwrap();
    let m = t
        .mean_dim(-1, false, Kind::Float)
        .abs()
        .max()
        .double_value(&[]);
    let v = t.var_dim(-1, true, false);
    assert!(m < 1e-5, "mean {m}");
    assert!((v - 1.0).abs().max().double_value(&[]) < 1e-3);
    // raw targets are CLIP-normalised pixels: 0 → −mean/std of the red channel
    let zeros = Tensor::zeros([1, 1, 48], (Kind::Uint8, Device::Cpu));
    let raw = pixel_targets(&zeros, false).unwrap();
    assert!((raw.double_value(&[0, 0, 0]) + 0.48145466 / 0.26862954).abs() < 1e-5);
}

#[test]
fn gradients_reach_every_parameter_of_towers_and_decoder() {
    for view in [ContrastiveView::Masked, ContrastiveView::Full] {
        let mut run = micro_run_mae();
        if let ObjectiveConfig::MaeClip(s) = &mut run.objective {
            s.contrastive_view = view;
        }
        let (model, objective) = objective::build(&run, Device::Cpu).unwrap();
        assert!(
            model
                .params()
                .iter()
                .any(|p| p.name().starts_with("heads.pixel_decoder."))
        );
        let (images, tokens) = colour_batch(&run.model, 0);
        let mask = PatchMask::random(8, run.model.num_patches(), 0.5, 1, 0).unwrap();
        let batch = objective::Batch {
            images,
            tokens,
            mask: Some(mask),
        };
        let out = objective.forward(&model, &batch, Compute::FP32).unwrap();
        let e = out.embeddings.unwrap();
        let mut loss = clip_loss(&e.images, &e.texts, &model.logit_scale().unwrap())
            .unwrap()
            .loss;
        for t in &out.terms {
            loss += &t.value * t.weight;
        }
        let grads = Gradients::backward(&loss, model.params()).unwrap();
        for (p, g) in model.params().iter().zip(grads.as_slice()) {
            assert!(
                g.abs().sum(Kind::Float).double_value(&[]) > 0.0,
                "{view:?}: no gradient reaches {}",
                p.name()
            );
        }
    }
}

#[test]
fn mask_tokens_are_not_weight_decayed() {
    let (model, _) = objective::build(&micro_run_mae(), Device::Cpu).unwrap();
    let token = model
        .params()
        .get("heads.pixel_decoder.mask_token")
        .unwrap();
    assert!(!token.decays());
    assert!(
        model
            .params()
            .get("heads.pixel_decoder.pred.weight")
            .unwrap()
            .decays()
    );
}

#[test]
fn heads_leave_the_towers_initial_weights_unchanged() {
    let (clip, _) = objective::build(&micro_run(), Device::Cpu).unwrap();
    let (mae, _) = objective::build(&micro_run_mae(), Device::Cpu).unwrap();
    for p in clip.params().iter() {
        assert!(same_values(
            p.tensor(),
            mae.params().get(p.name()).unwrap().tensor()
        ));
    }
}

#[test]
fn accumulation_gives_the_full_batch_loss_and_gradient() {
    let run = micro_run_mae();
    let mut split_run = run.clone();
    split_run.train.accum_steps = 2;
    let (images, tokens) = colour_batch(&run.model, 0);
    let a = TrainStep::new(run, Device::Cpu)
        .unwrap()
        .step(&images, &tokens)
        .unwrap();
    let b = TrainStep::new(split_run, Device::Cpu)
        .unwrap()
        .step(&images, &tokens)
        .unwrap();
    for name in ["contrastive", "reconstruction"] {
        assert!(
            (a.terms[name] - b.terms[name]).abs() < 1e-5,
            "{name}: {a:?} vs {b:?}"
        );
    }
    assert!(
        (a.grad_norm - b.grad_norm).abs() < 1e-4 * a.grad_norm,
        "{a:?} vs {b:?}"
    );
}

#[test]
fn mae_clip_resumes_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = micro_run_mae();
    run.train.warmup_steps = 2;
    run.train.total_steps = 8;
    let mut straight = TrainStep::new(run, Device::Cpu).unwrap();
    train(&mut straight, 0..3);
    straight
        .save_checkpoint(dir.path(), &TrainProgress::default())
        .unwrap();
    let after = train(&mut straight, 3..6);
    let (mut resumed, meta) = TrainStep::resume(dir.path(), Device::Cpu).unwrap();
    assert_eq!(meta.config.objective.kind(), ObjectiveKind::MaeClip);
    let again = train(&mut resumed, 3..6);
    assert_eq!(after, again);
    for (a, b) in straight
        .model()
        .params()
        .iter()
        .zip(resumed.model().params().iter())
    {
        assert!(same_values(a.tensor(), b.tensor()), "{} differs", a.name());
    }
}

#[test]
fn a_checkpoint_of_another_objective_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut mae = TrainStep::new(micro_run_mae(), Device::Cpu).unwrap();
    train(&mut mae, 0..1);
    mae.save_checkpoint(dir.path(), &TrainProgress::default())
        .unwrap();
    let mut clip = TrainStep::new(micro_run(), Device::Cpu).unwrap();
    let err = clip.load_checkpoint(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("objective.kind is \"mae_clip\" in the checkpoint but \"clip\" here"),
        "{err}"
    );
}

#[test]
fn a_checkpoint_written_before_objectives_existed_still_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = micro_run();
    run.train.warmup_steps = 2;
    run.train.total_steps = 6;
    let mut trainer = TrainStep::new(run, Device::Cpu).unwrap();
    train(&mut trainer, 0..2);
    trainer
        .save_checkpoint(dir.path(), &TrainProgress::default())
        .unwrap();
    let after = train(&mut trainer, 2..4);
    // rewrite the sidecar as the code before objectives wrote it: no `objective`
    let sidecar = dir.path().join(flipstream_train::checkpoint::META_FILE);
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sidecar).unwrap()).unwrap();
    json["config"]
        .as_object_mut()
        .unwrap()
        .remove("objective")
        .unwrap();
    std::fs::write(&sidecar, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    let (mut resumed, meta) = TrainStep::resume(dir.path(), Device::Cpu).unwrap();
    assert!(meta.config.objective.is_clip());
    let again: Vec<f64> = train(&mut resumed, 2..4).iter().map(|m| m.loss).collect();
    let after: Vec<f64> = after.iter().map(|m| m.loss).collect();
    assert_eq!(after, again);
}

#[test]
fn a_run_config_written_before_objectives_loads_as_clip() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/config-before-objectives.toml"
    );
    let spec = RunSpec::from_file(std::path::Path::new(path)).unwrap();
    assert!(spec.config.objective.is_clip());
    assert_eq!(spec.config.train.batch_size, 128);
    let text = spec.to_toml_string().unwrap();
    assert!(text.contains("[objective]\nkind = \"clip\""), "{text}");
    assert_eq!(RunSpec::from_toml_str(&text, "again").unwrap(), spec);
    // and it resumes under today's code without reporting a difference
    assert!(
        spec.resume_differences(&RunSpec::from_toml_str(&text, "again").unwrap())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn the_objective_table_takes_defaults_per_kind_and_model() {
    let spec = RunSpec::from_toml_str(
        "preset = \"tiny\"\n[objective]\nkind = \"mae_clip\"\ndecoder_depth = 3\n",
        "t.toml",
    )
    .unwrap();
    let s = mae_settings(&spec.config);
    assert_eq!(
        (s.decoder_width, s.decoder_depth, s.decoder_heads),
        (128, 3, 4)
    );
    assert_eq!(s.reconstruction_weight, 1.0);
    assert!(s.norm_pix_loss);
    let b16 = RunSpec::from_toml_str("preset = \"b16\"\n[objective]\nkind = \"mae-clip\"\n", "t")
        .unwrap();
    assert_eq!(mae_settings(&b16.config).decoder_width, 512);
    assert_eq!(mae_settings(&b16.config).decoder_depth, 8);
    let text = spec.to_toml_string().unwrap();
    assert_eq!(RunSpec::from_toml_str(&text, "again").unwrap(), spec);
}

#[test]
fn objective_config_errors_name_what_to_change() {
    let err = |text: &str| {
        RunSpec::from_toml_str(text, "t.toml")
            .unwrap_err()
            .to_string()
    };
    let e = err("preset = \"tiny\"\n[objective]\ndecoder_depth = 2\n");
    assert!(
        e.contains("objective.decoder_depth is a setting of objective \"mae_clip\", but objective.kind is \"clip\""),
        "{e}"
    );
    let e = err("preset = \"tiny\"\n[objective]\nkind = \"mae_clip\"\ndecoder_dept = 2\n");
    assert!(
        e.contains("unknown key objective.decoder_dept") && e.contains("decoder_depth"),
        "{e}"
    );
    let e = err("[objective]\nkind = \"mug2\"\n");
    assert!(
        e.contains("unknown objective \"mug2\"") && e.contains("mae_clip"),
        "{e}"
    );
    let e = err("preset = \"tiny\"\n[train]\nmask_ratio = 0.0\n[objective]\nkind = \"mae_clip\"\n");
    assert!(e.contains("train.mask_ratio = 0 removes none"), "{e}");
    let e = err(
        "preset = \"tiny\"\n[objective]\nkind = \"mae_clip\"\ndecoder_width = 30\ndecoder_heads = 4\n",
    );
    assert!(
        e.contains("multiple of 4") && e.contains("does not divide"),
        "{e}"
    );
    let e = err("objective = 3\n");
    assert!(e.contains("must be a table"), "{e}");
}

/// A CLIP teacher: the micro model trained for 30 steps, saved into `dir`.
fn teacher(dir: &std::path::Path) -> String {
    let mut run = micro_run();
    run.train.total_steps = 30;
    let mut trainer = TrainStep::new(run, Device::Cpu).unwrap();
    train(&mut trainer, 0..30);
    trainer
        .save_checkpoint(dir, &TrainProgress::default())
        .unwrap();
    dir.to_str().unwrap().to_string()
}

fn cae_run(teacher: &str, supervise: Supervise) -> RunConfig {
    let mut run = micro_run();
    let mut s = CaeV2Settings::for_model(&run.model);
    s.teacher = teacher.to_string();
    s.supervise = supervise;
    run.objective = ObjectiveConfig::CaeV2(s);
    run.train.mask_ratio = 0.25;
    run
}

#[test]
fn cae_v2_learns_the_teachers_features_and_leaves_the_teacher_alone() {
    let dir = tempfile::tempdir().unwrap();
    let t = teacher(dir.path());
    for supervise in [Supervise::Visible, Supervise::Masked, Supervise::Both] {
        let mut run = cae_run(&t, supervise);
        run.train.total_steps = 40;
        let mut trainer = TrainStep::new(run, Device::Cpu).unwrap();
        let m = train(&mut trainer, 0..40);
        assert!(
            m.iter()
                .all(|s| s.terms.keys().eq(["feature"]) && s.loss == s.terms["feature"])
        );
        let (first, last) = (
            mean(m[..5].iter().map(|s| s.loss)),
            mean(m[35..].iter().map(|s| s.loss)),
        );
        assert!(last < 0.6 * first, "{supervise:?}: {first:.3} → {last:.3}");
        // the text tower, logit scale and output projection are frozen: no optimizer state
        let state: Vec<String> = trainer
            .optimizer()
            .state_tensors()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        for frozen in ["text.", "logit_scale", "visual.proj."] {
            assert!(
                !state.iter().any(|n| n.contains(&format!("/{frozen}"))),
                "{frozen} has state"
            );
        }
        assert_eq!(
            state.iter().any(|n| n.contains("heads.regressor")),
            supervise.masked()
        );
    }
}

#[test]
fn cae_v2_gradients_reach_every_trainable_parameter_and_never_the_teacher() {
    let dir = tempfile::tempdir().unwrap();
    let run = cae_run(&teacher(dir.path()), Supervise::Both);
    let (model, objective) = objective::build(&run, Device::Cpu).unwrap();
    let (images, tokens) = colour_batch(&run.model, 0);
    let mask = PatchMask::random(8, run.model.num_patches(), 0.25, 1, 0).unwrap();
    let batch = objective::Batch {
        images,
        tokens,
        mask: Some(mask),
    };
    let out = objective.forward(&model, &batch, Compute::FP32).unwrap();
    assert!(out.embeddings.is_none());
    let grads = Gradients::backward(&out.terms[0].value, model.params()).unwrap();
    let trainable: Vec<_> = model.params().trainable().collect();
    assert_eq!(trainable.len(), grads.as_slice().len());
    for (p, g) in trainable.iter().zip(grads.as_slice()) {
        assert!(
            g.abs().sum(Kind::Float).double_value(&[]) > 0.0,
            "no gradient reaches {}",
            p.name()
        );
    }
    for p in model.params().iter().filter(|p| !p.trainable()) {
        assert!(
            !p.tensor().requires_grad(),
            "{} is frozen but requires grad",
            p.name()
        );
    }
    // the teacher's weights are the checkpoint's, unchanged by a step of the student
    let teacher_weights = flipstream_train::checkpoint::read_safetensors(
        &dir.path().join(flipstream_train::checkpoint::MODEL_FILE),
        Device::Cpu,
    )
    .unwrap()
    .0;
    let mut trainer = TrainStep::new(run, Device::Cpu).unwrap();
    train(&mut trainer, 0..3);
    let again = objective::cae_v2::load_teacher(
        dir.path().to_str().unwrap(),
        &trainer.config().model,
        Device::Cpu,
    )
    .unwrap();
    for p in again.params().iter() {
        assert!(
            same_values(p.tensor(), &teacher_weights[p.name()]),
            "{}",
            p.name()
        );
        assert!(!p.trainable());
    }
}

#[test]
fn cae_v2_resumes_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = tempfile::tempdir().unwrap();
    let mut run = cae_run(&teacher(dir.path()), Supervise::Both);
    run.train.warmup_steps = 2;
    run.train.total_steps = 8;
    let mut straight = TrainStep::new(run, Device::Cpu).unwrap();
    train(&mut straight, 0..3);
    straight
        .save_checkpoint(ckpt.path(), &TrainProgress::default())
        .unwrap();
    let after = train(&mut straight, 3..6);
    let (mut resumed, _) = TrainStep::resume(ckpt.path(), Device::Cpu).unwrap();
    assert_eq!(after, train(&mut resumed, 3..6));
}

#[test]
fn cae_v2_teacher_errors_name_what_to_change() {
    let dir = tempfile::tempdir().unwrap();
    let t = teacher(dir.path());
    let err = |run: RunConfig| TrainStep::new(run, Device::Cpu).unwrap_err().to_string();
    let e = err(cae_run("", Supervise::Visible));
    assert!(
        e.contains("needs a teacher") && e.contains("--teacher"),
        "{e}"
    );
    let e = err(cae_run(
        dir.path().join("nothing").to_str().unwrap(),
        Supervise::Visible,
    ));
    assert!(
        e.contains("objective.teacher = ") && e.contains("not a checkpoint folder"),
        "{e}"
    );
    let mut other_grid = cae_run(&t, Supervise::Visible);
    other_grid.model.patch_size = 4;
    let e = err(other_grid);
    assert!(
        e.contains("the teacher reads 32 px images in 8 px patches, the student 32 px in 4 px"),
        "{e}"
    );
    // a CAE v2 model is no teacher: its image features are not CLIP's
    let student_dir = tempfile::tempdir().unwrap();
    let mut student = TrainStep::new(cae_run(&t, Supervise::Visible), Device::Cpu).unwrap();
    train(&mut student, 0..1);
    student
        .save_checkpoint(student_dir.path(), &TrainProgress::default())
        .unwrap();
    let e = err(cae_run(
        student_dir.path().to_str().unwrap(),
        Supervise::Visible,
    ));
    assert!(e.contains("trained with cae_v2"), "{e}");
    // masked supervision needs the regressor and a mask
    let mut no_regressor = cae_run(&t, Supervise::Masked);
    if let ObjectiveConfig::CaeV2(s) = &mut no_regressor.objective {
        s.regressor_depth = 0;
    }
    assert!(err(no_regressor).contains("objective.regressor_depth is 0"));
}

#[test]
fn cae_v2_takes_its_default_mask_ratio_by_model_size() {
    let tiny = RunSpec::from_toml_str(
        "preset = \"tiny\"\n[objective]\nkind = \"cae_v2\"\nteacher = \"t\"\n",
        "t",
    )
    .unwrap();
    assert_eq!(tiny.config.train.mask_ratio, 0.15);
    let b16 = RunSpec::from_toml_str(
        "preset = \"b16\"\n[objective]\nkind = \"cae_v2\"\nteacher = \"t\"\n",
        "t",
    )
    .unwrap();
    assert_eq!(b16.config.train.mask_ratio, 0.5);
    let given = RunSpec::from_toml_str(
        "preset = \"tiny\"\n[train]\nmask_ratio = 0.4\n[objective]\nkind = \"cae_v2\"\nteacher = \"t\"\n",
        "t",
    )
    .unwrap();
    assert_eq!(given.config.train.mask_ratio, 0.4);
}

fn mug_run() -> RunConfig {
    let mut run = micro_run();
    let mut s = MugSettings::for_model(&run.model);
    s.decoder_width = 32;
    s.decoder_depth = 1;
    s.decoder_heads = 2;
    s.caption_width = 32;
    s.caption_depth = 1;
    s.caption_heads = 2;
    s.norm_pix_loss = false;
    run.objective = ObjectiveConfig::Mug(s);
    run
}

/// The colour batch with captions `[14 (start), class + 1, 15 (end), pad…]`: the class token can
/// only be predicted from the image.
fn captioned_batch(run: &RunConfig, step: u64) -> (Tensor, Tensor) {
    let (images, tokens) = colour_batch(&run.model, step);
    let class = tokens.narrow(1, 0, 1);
    let with_start = Tensor::zeros_like(&tokens);
    let _ = with_start.narrow(1, 0, 1).fill_(14);
    with_start.narrow(1, 1, 1).copy_(&class);
    let _ = with_start.narrow(1, 2, 1).fill_(15);
    (images, with_start)
}

#[test]
fn mug_learns_to_caption_from_the_image_and_to_reconstruct() {
    let mut run = mug_run();
    run.train.total_steps = 60;
    let mut trainer = TrainStep::new(run.clone(), Device::Cpu).unwrap();
    let m: Vec<_> = (0..60)
        .map(|s| {
            let (images, tokens) = captioned_batch(&run, s);
            trainer.step(&images, &tokens).unwrap()
        })
        .collect();
    let term = |name: &str, r: std::ops::Range<usize>| mean(m[r].iter().map(|s| s.terms[name]));
    for name in ["caption", "reconstruction"] {
        let (first, last) = (term(name, 0..5), term(name, 55..60));
        assert!(last < 0.3 * first, "{name}: {first:.3} → {last:.3}");
    }
    // on whole images, the caption loss of new samples is low too: the class comes from the image
    let (images, tokens) = captioned_batch(&run, 999);
    let v = trainer.validation_terms(&images, &tokens).unwrap();
    assert_eq!(v[0].0, "caption");
    assert!(v[0].1 < 0.3 * term("caption", 0..5), "{v:?}");
    let state: Vec<String> = trainer
        .optimizer()
        .state_tensors()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(!state.iter().any(|n| n.contains("/text.")));
}

#[test]
fn mug_gradients_reach_every_trainable_parameter() {
    let run = mug_run();
    let (model, objective) = objective::build(&run, Device::Cpu).unwrap();
    let (images, tokens) = captioned_batch(&run, 0);
    let mask = PatchMask::random(8, run.model.num_patches(), 0.75, 1, 0).unwrap();
    let batch = objective::Batch {
        images,
        tokens,
        mask: Some(mask),
    };
    let out = objective.forward(&model, &batch, Compute::FP32).unwrap();
    let loss = out
        .terms
        .iter()
        .fold(Tensor::zeros([], (Kind::Float, Device::Cpu)), |a, t| {
            a + &t.value * t.weight
        });
    let grads = Gradients::backward(&loss, model.params()).unwrap();
    for (p, g) in model.params().trainable().zip(grads.as_slice()) {
        assert!(
            g.abs().sum(Kind::Float).double_value(&[]) > 0.0,
            "no gradient reaches {}",
            p.name()
        );
    }
}

#[test]
fn caption_padding_is_excluded_by_position() {
    let mut run = mug_run();
    run.model.pad_id = 15; // CLIP's BPE pads with its end token
    let (model, _) = objective::build(&run, Device::Cpu).unwrap();
    let mut init = flipstream_train::model::Initializer::new(0, Device::Cpu);
    let decoder = flipstream_train::model::caption::CaptionDecoder::new(
        &mut init,
        "c",
        flipstream_train::model::caption::CaptionShape {
            width: 32,
            depth: 1,
            heads: 2,
        },
        &run.model,
    )
    .unwrap();
    let tokens = Tensor::from_slice(&[
        14i64, 3, 4, 15, 15, 15, 15, 15, 14, 5, 15, 15, 15, 15, 15, 15,
    ])
    .view([2, 8]);
    let lengths = Vec::<i64>::try_from(&decoder.lengths(&tokens).unwrap()).unwrap();
    assert_eq!(lengths, [4, 3]);
    let images = colour_batch(&run.model, 0).0.narrow(0, 0, 2);
    let encoded = model.encode_image(&images, None, Compute::FP32).unwrap();
    let base = decoder
        .loss(&encoded.tokens, &tokens, Compute::FP32)
        .unwrap()
        .double_value(&[]);
    // what follows a caption's end does not count
    let after = tokens.copy();
    let _ = after.get(0).narrow(0, 5, 3).fill_(7);
    let same = decoder
        .loss(&encoded.tokens, &after, Compute::FP32)
        .unwrap()
        .double_value(&[]);
    assert!((base - same).abs() < 1e-6, "{base} vs {same}");
    // a word inside does
    let inside = tokens.copy();
    let _ = inside.get(0).narrow(0, 2, 1).fill_(9);
    let other = decoder
        .loss(&encoded.tokens, &inside, Compute::FP32)
        .unwrap()
        .double_value(&[]);
    assert!((base - other).abs() > 1e-4);
}

#[test]
fn mug_resumes_bit_for_bit_and_checks_its_settings() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = mug_run();
    run.train.warmup_steps = 2;
    run.train.total_steps = 8;
    let mut straight = TrainStep::new(run, Device::Cpu).unwrap();
    train(&mut straight, 0..3);
    straight
        .save_checkpoint(dir.path(), &TrainProgress::default())
        .unwrap();
    let after = train(&mut straight, 3..6);
    let (mut resumed, _) = TrainStep::resume(dir.path(), Device::Cpu).unwrap();
    assert_eq!(after, train(&mut resumed, 3..6));

    let tiny =
        RunSpec::from_toml_str("preset = \"tiny\"\n[objective]\nkind = \"mug\"\n", "t").unwrap();
    assert_eq!(tiny.config.train.mask_ratio, 0.75);
    let e = RunSpec::from_toml_str(
        "preset = \"tiny\"\n[train]\nmask_ratio = 0.0\n[objective]\nkind = \"mug\"\ncaption_heads = 3\n",
        "t",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("removes none") && e.contains("caption_heads = 3 does not divide"),
        "{e}"
    );
}
