//! The model: masking, position embeddings, the eval path, gradients, precision, input checks.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::collections::HashSet;

use common::{
    colour_batch, max_abs_diff, micro_model, micro_run, micro_run_avg_cls, micro_run_cls,
    micro_run_conv, micro_run_flip_text, micro_run_mean_text, micro_variants, same_values,
};
use flipstream_train::config::kept_patches;
use flipstream_train::model::Compute;
use flipstream_train::model::masking::mask_noise;
use flipstream_train::{
    ClipModel, Gradients, PatchMask, Precision, TrainError, TrainStep, clip_loss,
};
use tch::{Device, Kind, Tensor};

fn rows(t: &Tensor) -> Vec<Vec<i64>> {
    Vec::<Vec<i64>>::try_from(t).unwrap()
}

#[test]
fn masking_keeps_floor_of_unmasked_fraction() {
    for (patches, ratio, expected) in [
        (196, 0.75, 49),
        (196, 0.5, 98),
        (196, 0.6, 78),
        (16, 0.5, 8),
        (16, 0.0, 16),
        (10, 0.95, 0),
    ] {
        assert_eq!(
            kept_patches(patches, ratio),
            expected,
            "L={patches} r={ratio}"
        );
    }
    let m = PatchMask::random(6, 196, 0.75, 3, 11).unwrap();
    assert_eq!(m.ids_keep.size(), [6, 49]);
    assert_eq!(m.ids_restore.size(), [6, 196]);
    for row in rows(&m.ids_keep) {
        let unique: HashSet<i64> = row.iter().copied().collect();
        assert_eq!(unique.len(), 49, "kept indices repeat");
        assert!(row.iter().all(|&i| (0..196).contains(&i)));
    }
    // the binary mask marks exactly the removed patches
    let removed = m
        .mask
        .sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
    assert_eq!(Vec::<f32>::try_from(&removed).unwrap(), vec![147.0; 6]);
    let at_kept = m.mask.gather(1, &m.ids_keep, false);
    assert_eq!(at_kept.sum(Kind::Float).double_value(&[]), 0.0);
    // ids_restore inverts the shuffle: unshuffling [kept | removed] gives the mask back
    let noise = mask_noise(6, 196, 3, 11).unwrap();
    let shuffle = noise.argsort_stable(true, 1, false);
    assert!(same_values(
        &shuffle.gather(1, &m.ids_restore, false),
        &Tensor::arange(196, (Kind::Int64, Device::Cpu)).expand([6, 196], false)
    ));
}

#[test]
fn masks_differ_between_samples_and_repeat_for_same_seed_and_step() {
    let a = PatchMask::random(8, 64, 0.5, 42, 5).unwrap();
    let kept: Vec<Vec<i64>> = rows(&a.ids_keep)
        .into_iter()
        .map(|mut r| {
            r.sort_unstable();
            r
        })
        .collect();
    let distinct: HashSet<&Vec<i64>> = kept.iter().collect();
    assert_eq!(
        distinct.len(),
        8,
        "every sample should keep its own set of patches"
    );

    let again = PatchMask::random(8, 64, 0.5, 42, 5).unwrap();
    assert!(same_values(&a.ids_keep, &again.ids_keep) && same_values(&a.mask, &again.mask));
    let next_step = PatchMask::random(8, 64, 0.5, 42, 6).unwrap();
    let other_seed = PatchMask::random(8, 64, 0.5, 43, 5).unwrap();
    assert!(!same_values(&a.ids_keep, &next_step.ids_keep));
    assert!(!same_values(&a.ids_keep, &other_seed.ids_keep));
}

#[test]
fn position_embeddings_are_fixed_sincos_values() {
    let cfg = micro_model(); // 4×4 grid, width 64
    let model = ClipModel::new(&cfg, 0, Device::Cpu).unwrap();
    let pos = model.position_embedding();
    assert_eq!(pos.size(), [16, 64]);
    assert!(!pos.requires_grad(), "the table is fixed");
    assert!(
        model
            .params()
            .iter()
            .all(|p| !p.name().contains("visual.pos")),
        "not a parameter"
    );
    let quarter = 16;
    let table: Vec<Vec<f32>> = Vec::try_from(pos).unwrap();
    for (index, row) in table.iter().enumerate() {
        let (r, c) = ((index / 4) as f64, (index % 4) as f64);
        for k in 0..quarter {
            let omega = 1.0 / 10000f64.powf(k as f64 / quarter as f64);
            let expect = [
                (c * omega).sin(),
                (c * omega).cos(),
                (r * omega).sin(),
                (r * omega).cos(),
            ];
            for (part, e) in expect.iter().enumerate() {
                let got = row[part * quarter + k] as f64;
                assert!(
                    (got - e).abs() < 1e-6,
                    "patch {index} part {part} k {k}: {got} vs {e}"
                );
            }
        }
    }
}

#[test]
fn eval_path_encodes_every_patch() {
    for run in [micro_run(), micro_run_conv()] {
        eval_path_encodes_every_patch_of(run);
    }
}

fn eval_path_encodes_every_patch_of(run: flipstream_train::RunConfig) {
    let trainer = TrainStep::new(run.clone(), Device::Cpu).unwrap();
    let (images, _) = colour_batch(&run.model, 0);
    let model = trainer.model();
    let eval = trainer.encode_images(&images).unwrap();
    let unmasked = tch::no_grad(|| model.image_features(&images, None, Compute::FP32)).unwrap();
    assert!(
        same_values(&eval, &unmasked),
        "encode_images must be the unmasked forward"
    );
    assert!(!eval.requires_grad());
    // a ratio-0 mask keeps all 16 patches (shuffled): average pooling gives the same embedding
    let all = PatchMask::random(8, 16, 0.0, 1, 0).unwrap();
    assert_eq!(all.kept(), 16);
    let shuffled =
        tch::no_grad(|| model.image_features(&images, Some(&all), Compute::FP32)).unwrap();
    assert!(max_abs_diff(&eval, &shuffled) < 1e-5);
    // while a real mask changes it
    let half = PatchMask::random(8, 16, 0.5, 1, 0).unwrap();
    let masked =
        tch::no_grad(|| model.image_features(&images, Some(&half), Compute::FP32)).unwrap();
    assert!(max_abs_diff(&eval, &masked) > 1e-3);
    // embeddings are unit vectors
    let norms = eval.norm_scalaropt_dim(2.0, [1i64].as_slice(), false);
    assert!(max_abs_diff(&norms, &Tensor::ones([8], (Kind::Float, Device::Cpu))) < 1e-5);
}

fn gradients_of_one_batch(trainer: &TrainStep, mask_ratio: f64) -> Gradients {
    let cfg = &trainer.config().model;
    let (images, tokens) = colour_batch(cfg, 0);
    let mask = PatchMask::random(8, cfg.num_patches(), mask_ratio, 0, 0).unwrap();
    let out = trainer
        .model()
        .forward(&images, &tokens, Some(&mask), Compute::FP32)
        .unwrap();
    let loss = clip_loss(&out.image_embeds, &out.text_embeds, &out.logit_scale).unwrap();
    Gradients::backward(&loss.loss, trainer.model().params()).unwrap()
}

fn assert_every_parameter_has_a_gradient(trainer: &TrainStep, when: &str) {
    let grads = gradients_of_one_batch(trainer, 0.5);
    for (p, g) in trainer.model().params().iter().zip(grads.as_slice()) {
        assert_eq!(p.tensor().size(), g.size(), "{}", p.name());
        let magnitude = g.abs().sum(Kind::Float).double_value(&[]);
        assert!(
            magnitude > 0.0 && magnitude.is_finite(),
            "no gradient reaches {} {when}",
            p.name()
        );
    }
}

#[test]
fn gradients_reach_every_parameter() {
    for run in micro_variants() {
        let mut trainer = TrainStep::new(run.clone(), Device::Cpu).unwrap();
        assert_every_parameter_has_a_gradient(&trainer, "in a fresh model");
        // In-place updates (the optimizer's tensor ops, loading a checkpoint) bump the version of
        // every parameter; a view of a parameter kept from before would stop passing gradients.
        tch::no_grad(|| {
            for p in trainer.model().params().iter() {
                let _ = p.tensor().shallow_clone().f_mul_scalar_(1.0).unwrap();
            }
        });
        assert_every_parameter_has_a_gradient(&trainer, "after an in-place update");
        for step in 0..2 {
            let (images, tokens) = colour_batch(&run.model, step);
            trainer.step(&images, &tokens).unwrap();
        }
        assert_every_parameter_has_a_gradient(&trainer, "after two training steps");
    }
}

#[test]
fn cls_pooling_adds_the_token_after_masking() {
    let run = micro_run_cls();
    let trainer = TrainStep::new(run.clone(), Device::Cpu).unwrap();
    assert!(trainer.model().params().get("visual.cls_token").is_some());
    let avg = TrainStep::new(micro_run(), Device::Cpu).unwrap();
    assert!(
        avg.model().params().get("visual.cls_token").is_none(),
        "avg pooling creates no CLS token"
    );
}

#[test]
fn avg_cls_pooling_averages_the_cls_token_with_the_patches() {
    let run = micro_run_avg_cls();
    let trainer = TrainStep::new(run.clone(), Device::Cpu).unwrap();
    let cls = trainer.model().params().get("visual.cls_token").unwrap();
    let (images, _) = colour_batch(&run.model, 0);
    let before = trainer.encode_images(&images).unwrap();
    // (A constant shift would vanish in the LayerNorms: perturb each channel differently.)
    let noise = Tensor::randn(cls.tensor().size(), (Kind::Float, Device::Cpu));
    tch::no_grad(|| {
        let _ = cls.tensor().shallow_clone().f_add_(&noise).unwrap();
    });
    let after = trainer.encode_images(&images).unwrap();
    assert!(
        max_abs_diff(&before, &after) > 1e-4,
        "the CLS token is part of the pooled embedding"
    );
}

#[test]
fn text_pools_at_the_end_token_even_when_it_is_also_the_padding() {
    // CLIP's tokenizer has no pad token of its own and pads with its end token (15 here).
    let mut run = micro_run();
    run.model.pad_id = 15;
    let trainer = TrainStep::new(run, Device::Cpu).unwrap();
    let text = trainer.model().text();
    let tokens = Tensor::from_slice(&[
        1i64, 3, 4, 15, 15, 15, 15, 15, // start, two words, end, padding (= end)
        2, 15, 15, 15, 15, 15, 15, 15, // start, end
        1, 3, 4, 5, 6, 7, 8, 9, // no end token (hand-made input): its last non-pad token
    ])
    .view([3, 8]);
    let pos = Vec::<i64>::try_from(&text.pool_positions(&tokens).unwrap()).unwrap();
    assert_eq!(pos, [3, 1, 7]);
    // With a pad token of its own (0) the end token's position too, not the last word's.
    let padded = Tensor::from_slice(&[1i64, 3, 4, 15, 0, 0, 0, 0]).view([1, 8]);
    let other = TrainStep::new(micro_run(), Device::Cpu).unwrap();
    let pos = Vec::<i64>::try_from(&other.model().text().pool_positions(&padded).unwrap()).unwrap();
    assert_eq!(pos, [3]);
}

#[test]
fn mean_text_pooling_ignores_padding_and_hears_every_word() {
    let trainer = TrainStep::new(micro_run_mean_text(), Device::Cpu).unwrap();
    let embed = |ids: &[i64]| {
        let n = ids.len() as i64;
        trainer
            .encode_texts(&Tensor::from_slice(ids).view([1, n]))
            .unwrap()
    };
    let short = embed(&[1, 3, 4, 15]);
    let padded = embed(&[1, 3, 4, 15, 0, 0, 0, 0]);
    assert!(
        max_abs_diff(&short, &padded) < 1e-5,
        "pads change the embedding"
    );
    // A different first word changes the mean even under causal attention (where the end token
    // would also see it, but the mean does not depend on attention to get there).
    assert!(max_abs_diff(&short, &embed(&[1, 5, 4, 15])) > 1e-4);
}

#[test]
fn flip_text_tower_gives_each_caption_its_own_embedding() {
    let run = micro_run_flip_text();
    run.validate().unwrap();
    let trainer = TrainStep::new(run.clone(), Device::Cpu).unwrap();
    // Every caption starts with the same start token (1), as real ones do.
    let ids: Vec<i64> = (0..8i64)
        .flat_map(|c| [1, c + 2, 15, 0, 0, 0, 0, 0])
        .collect();
    let tokens = Tensor::from_slice(&ids).view([8, 8]);
    let t = trainer.encode_texts(&tokens).unwrap();
    let sims = t.matmul(&t.transpose(0, 1));
    let off_diagonal = (sims - Tensor::eye(8, (Kind::Float, Device::Cpu)) * 2.0).max();
    assert!(
        off_diagonal.double_value(&[]) < 0.9999,
        "captions differing after the first token still get distinct embeddings"
    );
    // Pooling the first token under causal attention would make them all equal: refused.
    let mut causal = run;
    causal.model.text_causal = true;
    let e = causal.validate().unwrap_err().to_string();
    assert!(e.contains("text_causal = false"), "{e}");
}

#[test]
fn bf16_matmuls_track_fp32() {
    let run = micro_run();
    let mut bf16_run = run.clone();
    bf16_run.train.precision = Precision::Bf16;
    let (images, tokens) = colour_batch(&run.model, 0);
    let mut fp32 = TrainStep::new(run, Device::Cpu).unwrap();
    let mut bf16 = TrainStep::new(bf16_run, Device::Cpu).unwrap();
    let a = fp32.step(&images, &tokens).unwrap();
    let b = bf16.step(&images, &tokens).unwrap();
    assert!(
        b.loss.is_finite() && (a.loss - b.loss).abs() < 0.05,
        "fp32 {} vs bf16 {}",
        a.loss,
        b.loss
    );
    // master weights stay float32
    assert!(
        bf16.model()
            .params()
            .iter()
            .all(|p| p.tensor().kind() == Kind::Float)
    );
    assert_eq!(bf16.encode_texts(&tokens).unwrap().kind(), Kind::Float);
}

#[test]
fn bad_inputs_are_errors_not_crashes() {
    let run = micro_run();
    let mut trainer = TrainStep::new(run.clone(), Device::Cpu).unwrap();
    let (images, tokens) = colour_batch(&run.model, 0);
    let wrong_size = Tensor::zeros([8, 16, 16, 3], (Kind::Uint8, Device::Cpu));
    let float_images = images.to_kind(Kind::Float);
    let too_long = Tensor::zeros([8, 9], (Kind::Int64, Device::Cpu));
    let bad_id = tokens.fill(16);
    let fewer_tokens = tokens.narrow(0, 0, 4);
    for (images, tokens, what) in [
        (&wrong_size, &tokens, "images"),
        (&float_images, &tokens, "images"),
        (&images, &too_long, "tokens"),
        (&images, &bad_id, "tokens"),
        (&images, &fewer_tokens, "batch"),
    ] {
        match trainer.step(images, tokens) {
            Err(TrainError::Input { what: w, detail }) => assert_eq!(w, what, "{detail}"),
            other => panic!("expected an input error about {what}, got {other:?}"),
        }
    }
    assert_eq!(trainer.global_step(), 0, "a refused batch is not a step");
}

#[test]
fn non_finite_loss_is_an_error_naming_step_and_lr() {
    let run = micro_run();
    let mut trainer = TrainStep::new(run.clone(), Device::Cpu).unwrap();
    let (images, tokens) = colour_batch(&run.model, 0);
    trainer.step(&images, &tokens).unwrap();
    let proj = trainer
        .model()
        .params()
        .get("text.proj.weight")
        .unwrap()
        .tensor()
        .shallow_clone();
    tch::no_grad(|| {
        let _ = proj.narrow(0, 0, 1).fill_(f64::NAN);
    });
    let before: Vec<Tensor> = trainer
        .model()
        .params()
        .iter()
        .map(|p| p.tensor().detach().copy())
        .collect();
    let err = trainer.step(&images, &tokens).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(
            err,
            TrainError::NonFinite {
                what: "loss",
                step: 1,
                ..
            }
        ),
        "{message}"
    );
    assert!(
        message.contains("step 1") && message.contains("lr"),
        "{message}"
    );
    for (p, b) in trainer.model().params().iter().zip(&before) {
        assert!(
            p.tensor().allclose(b, 0.0, 0.0, true),
            "{} changed by a refused step",
            p.name()
        );
    }
    assert_eq!(trainer.global_step(), 1);
}
