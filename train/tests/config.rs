//! Configuration, weight-decay groups and the schedule.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use common::{micro_run, micro_run_cls};
use flipstream_train::config::{ModelConfig, Preset};
use flipstream_train::{Phase, RunConfig, Schedule, TrainError, TrainStep, UnmaskedTune};
use tch::Device;

fn problems_of(edit: impl FnOnce(&mut RunConfig)) -> String {
    let mut run = micro_run();
    edit(&mut run);
    match run.validate() {
        Err(TrainError::InvalidConfig { problems }) => problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
        other => panic!("expected an invalid config, got {other:?}"),
    }
}

#[test]
fn presets_are_valid_and_sized_as_documented() {
    for name in Preset::NAMES {
        let preset: Preset = name.parse().unwrap();
        preset
            .config()
            .validate()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let small = Preset::Small.model();
    assert_eq!(
        (
            small.vision_width,
            small.vision_depth,
            small.vision_heads,
            small.patch_size,
            small.image_size
        ),
        (384, 6, 6, 16, 224)
    );
    assert_eq!(
        (
            small.text_width,
            small.text_depth,
            small.context_length,
            small.embed_dim
        ),
        (256, 4, 32, 256)
    );
    let b16 = Preset::B16.model();
    assert_eq!(
        (
            b16.vision_width,
            b16.vision_depth,
            b16.text_width,
            b16.text_depth,
            b16.text_heads,
            b16.context_length
        ),
        (768, 12, 512, 12, 8, 77)
    );
    let l16 = Preset::L16.model();
    assert_eq!(
        (
            l16.vision_width,
            l16.vision_depth,
            l16.text_width,
            l16.embed_dim
        ),
        (1024, 24, 768, 768)
    );
    assert!((small.logit_scale_init - (1.0f64 / 0.07).ln()).abs() < 1e-12);
    assert!(matches!(
        "huge".parse::<Preset>(),
        Err(TrainError::UnknownPreset { .. })
    ));
}

#[test]
fn validation_says_what_to_change() {
    let p = problems_of(|r| r.model.image_size = 100);
    assert!(
        p.contains("model.patch_size = 8 does not divide model.image_size = 100")
            && p.contains("96 or 104"),
        "{p}"
    );
    let p = problems_of(|r| r.model.vision_heads = 5);
    assert!(
        p.contains("model.vision_heads = 5 does not divide model.vision_width = 64")
            && p.contains("e.g."),
        "{p}"
    );
    let p = problems_of(|r| r.model.text_heads = 3);
    assert!(p.contains("model.text_heads = 3"), "{p}");
    let p = problems_of(|r| r.train.mask_ratio = 1.0);
    assert!(p.contains("train.mask_ratio = 1 is outside [0, 1)"), "{p}");
    let p = problems_of(|r| r.train.mask_ratio = -0.1);
    assert!(p.contains("train.mask_ratio"), "{p}");
    let p = problems_of(|r| r.train.mask_ratio = 0.99);
    assert!(p.contains("keeps no patch of the 16"), "{p}");
    let p = problems_of(|r| {
        r.model.vision_depth = 0;
        r.model.embed_dim = 0;
        r.train.batch_size = 0;
    });
    assert!(
        p.contains("model.vision_depth is 0")
            && p.contains("model.embed_dim is 0")
            && p.contains("train.batch_size is 0"),
        "{p}"
    );
    let p = problems_of(|r| r.train.accum_steps = 3);
    assert!(
        p.contains("train.accum_steps = 3 does not divide train.batch_size = 8"),
        "{p}"
    );
    let p = problems_of(|r| r.train.warmup_steps = 1000);
    assert!(
        p.contains("train.warmup_steps = 1000 exceeds train.total_steps = 200"),
        "{p}"
    );
    let p = problems_of(|r| r.model.vision_width = 62);
    assert!(p.contains("multiple of 4"), "{p}");
    let p = problems_of(|r| r.model.pad_id = 16);
    assert!(p.contains("model.pad_id = 16"), "{p}");
    let p = problems_of(|r| r.train.betas = [0.9, 1.0]);
    assert!(p.contains("train.betas[1]"), "{p}");
    // and TrainStep refuses an invalid config
    let mut bad = micro_run();
    bad.train.mask_ratio = 1.5;
    assert!(matches!(
        TrainStep::new(bad, Device::Cpu),
        Err(TrainError::InvalidConfig { .. })
    ));
}

#[test]
fn toml_preset_with_overrides_and_unknown_keys() {
    let run = RunConfig::from_toml_str(
        "preset = \"tiny\"\n[model]\nvision_depth = 2\nvision_pool = \"cls\"\n[train]\nbatch_size = 16\nmask_ratio = 0.75\n\
         [train.unmasked_tune]\nsteps = 10\nbase_lr = 1e-4\n",
        "test.toml",
    )
    .unwrap();
    assert_eq!(run.model.vision_depth, 2);
    assert_eq!(run.model.vision_width, Preset::Tiny.model().vision_width);
    assert_eq!(run.train.batch_size, 16);
    assert_eq!(
        run.train.unmasked_tune,
        Some(UnmaskedTune {
            accum_steps: None,
            steps: 10,
            base_lr: 1e-4,
            warmup_steps: 0
        })
    );

    // the resolved config written to a run directory loads back to the same config
    let text = run.to_toml_string().unwrap();
    assert!(!text.contains("preset"));
    assert_eq!(
        RunConfig::from_toml_str(&text, "resolved.toml").unwrap(),
        run
    );

    let err = RunConfig::from_toml_str("[model]\nvision_widht = 3\n", "typo.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("typo.toml") && err.contains("vision_widht"),
        "{err}"
    );
    let err = RunConfig::from_toml_str("[optimizer]\nlr = 1\n", "x.toml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown top-level key `optimizer`"), "{err}");
    let err = RunConfig::from_toml_str(
        "[train.unmasked_tune]\nsteps = 3\nbase_lr = 1e-3\nlr = 2\n",
        "x.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("`lr`"), "{err}");
    let err = RunConfig::from_toml_str("preset = \"xl\"\n", "x.toml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown preset \"xl\""), "{err}");
    let err = RunConfig::from_toml_str("[train]\nmask_ratio = 1.0\n", "x.toml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("train.mask_ratio"), "{err}");
    let err = RunConfig::from_toml_str("[model]\nimage_size = \"big\"\n", "x.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("image_size") || err.contains("invalid type"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.toml");
    std::fs::write(&path, "preset = \"small\"\n").unwrap();
    assert_eq!(RunConfig::from_file(&path).unwrap(), Preset::Small.config());
    assert!(
        RunConfig::from_file(&dir.path().join("absent.toml"))
            .unwrap_err()
            .to_string()
            .contains("absent.toml")
    );
}

#[test]
fn fingerprint_follows_the_architecture_only() {
    let a = micro_run();
    let mut b = a.clone();
    b.train.batch_size = 64;
    assert_eq!(a.model_fingerprint(), b.model_fingerprint());
    let mut c = a.model.clone();
    c.vision_depth += 1;
    assert_ne!(a.model.fingerprint(), c.fingerprint());
    assert_eq!(a.model.fingerprint().len(), 16);
    let _: &ModelConfig = &a.model;
}

#[test]
fn weight_decay_groups() {
    let trainer = TrainStep::new(micro_run_cls(), Device::Cpu).unwrap();
    let optim = trainer.optimizer();
    let decayed = optim.decayed();
    let plain = optim.not_decayed();
    assert_eq!(decayed.len() + plain.len(), trainer.model().params().len());
    for name in [
        "visual.patch_embed.weight",
        "visual.blocks.0.attn.qkv.weight",
        "visual.blocks.1.mlp.fc2.weight",
        "visual.proj.weight",
        "text.token_embed.weight",
        "text.blocks.0.attn.proj.weight",
        "text.proj.weight",
    ] {
        assert!(
            decayed.contains(&name),
            "{name} should be decayed: {decayed:?}"
        );
    }
    for name in [
        "visual.cls_token",
        "text.pos_embed",
        "logit_scale",
        "visual.patch_embed.bias",
        "visual.blocks.0.norm1.weight",
        "visual.blocks.0.attn.qkv.bias",
        "visual.norm.weight",
        "text.norm.bias",
    ] {
        assert!(
            plain.contains(&name),
            "{name} should not be decayed: {plain:?}"
        );
    }
    // every decayed tensor is a matrix or more; no bias or norm is decayed
    assert!(
        decayed
            .iter()
            .all(|n| !n.ends_with(".bias") && !n.contains("norm"))
    );
}

#[test]
fn schedule_values_at_key_steps() {
    let mut train = micro_run().train;
    train.batch_size = 512;
    train.base_lr = 1e-3; // peak 2e-3
    train.warmup_steps = 10;
    train.total_steps = 110;
    train.min_lr_ratio = 0.1;
    train.mask_ratio = 0.75;
    train.unmasked_tune = Some(UnmaskedTune {
        accum_steps: None,
        steps: 20,
        base_lr: 5e-5,
        warmup_steps: 0,
    });
    let s = Schedule::new(&train);
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
    let peak = 2e-3;
    assert_eq!(s.total_steps(), 130);
    assert!(close(s.at(0).lr, peak / 10.0) && s.at(0).phase == Phase::Warmup);
    assert!(close(s.at(4).lr, peak / 2.0));
    assert!(close(s.at(9).lr, peak));
    assert!(close(s.at(10).lr, peak) && s.at(10).phase == Phase::Cosine);
    assert!(
        close(s.at(60).lr, (peak + 0.1 * peak) / 2.0),
        "{}",
        s.at(60).lr
    );
    assert!(s.at(109).lr > 0.1 * peak && s.at(109).lr < 0.11 * peak);
    assert_eq!(s.at(109).mask_ratio, 0.75);
    // the unmasked tuning phase: mask 0, its own peak (5e-5 × 2 = 1e-4), cosine to 0
    let tune = s.at(110);
    assert!(close(tune.lr, 1e-4) && tune.mask_ratio == 0.0 && tune.phase == Phase::UnmaskedTune);
    assert!(close(s.at(120).lr, 0.5e-4));
    assert!(s.at(129).lr < 1e-6);
    assert_eq!(s.at(130).phase, Phase::Finished);
    assert_eq!(s.at(130).lr, 0.0);
    // lr is monotone in the cosine phase
    assert!((10..109).all(|i| s.at(i + 1).lr <= s.at(i).lr));
}
