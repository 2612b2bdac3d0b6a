//! CAE v2 (Zhang et al., "Context Autoencoder with CLIP Target"): a frozen CLIP teacher sees the
//! whole image; the student's image tower sees the masked image, and its tokens are trained to
//! point where the teacher's tokens point: loss `1 − cos` between L2-normalised features, on the
//! visible tokens (the paper's finding: enough on its own), on the removed ones through a latent
//! regressor, or both (`supervise`).
//!
//! The teacher is a flipstream CLIP/FLIP (or MAE+CLIP) checkpoint, or an open_clip model folder
//! (`open_clip:DIR`, e.g. real CLIP weights converted to safetensors), with the student's image and
//! patch size; its features are each patch token after its final LayerNorm and output projection
//! (CLS dropped), normalised, as the official code takes CLIP's. The student maps its tokens
//! through a LayerNorm and a linear head to the teacher's width. The student's text tower, logit
//! scale and output projection take no part, so they are frozen (no gradient, no optimizer state).
//! A step without a mask (mask ratio 0) supervises every token as visible.

use std::path::{Path, PathBuf};

use flipstream_shard::problems::Problem;
use tch::{Device, Kind, TchError, Tensor};

use super::{Batch, CaeV2Settings, Objective, ObjectiveKind, ObjectiveOutput, Term};
use crate::checkpoint::{self, CheckpointMeta, META_FILE};
use crate::config::ModelConfig;
use crate::error::{Result, TorchContext, TrainError};
use crate::interop::{OPEN_CLIP_PREFIX, import_open_clip, open_clip_config};
use crate::model::layers::{LayerNorm, Linear};
use crate::model::regressor::LatentRegressor;
use crate::model::{ClipModel, Compute, Initializer, PatchMask, l2_normalize};
use crate::run::RunDir;

/// What the student freezes: the parts CAE v2's loss never reaches.
pub const FROZEN: [&str; 3] = ["text.", "logit_scale", "visual.proj."];

/// CAE v2 with its frozen teacher and its heads.
#[derive(Debug)]
pub struct CaeV2 {
    settings: CaeV2Settings,
    teacher: ClipModel,
    norm: LayerNorm,
    head: Linear,
    regressor: Option<LatentRegressor>,
    drops_cls: bool,
}

/// Where a teacher comes from.
#[derive(Debug)]
pub enum TeacherSource {
    /// A flipstream checkpoint folder and its sidecar.
    Checkpoint(PathBuf, Box<CheckpointMeta>),
    /// An open_clip folder (`open_clip:DIR`, see [`crate::interop::import`]) and its architecture.
    OpenClip(PathBuf, Box<ModelConfig>),
}

/// The teacher named by `path` (a flipstream checkpoint folder or run directory, path or URL, or
/// `open_clip:DIR`), checked to serve a student of `student`'s architecture. Cheap: it reads the
/// sidecar or config only, so a run can check its teacher before creating anything.
pub fn teacher_source(path: &str, student: &ModelConfig) -> Result<TeacherSource> {
    let mismatch = |detail: String| TrainError::InvalidConfig {
        problems: vec![Problem::new(
            "objective.teacher",
            format!("= {path}: {detail}"),
        )],
    };
    let (source, model) = if let Some(dir) = path.strip_prefix(OPEN_CLIP_PREFIX) {
        let (config, _) = open_clip_config(Path::new(dir))?;
        let source = TeacherSource::OpenClip(dir.into(), Box::new(config.clone()));
        (source, config)
    } else {
        let dir = if Path::new(path).join(META_FILE).is_file() {
            Path::new(path).to_path_buf()
        } else {
            RunDir::open(path)
                .and_then(|d| d.fetch_checkpoint(None))
                .map_err(|e| mismatch(format!("not a checkpoint folder or a run with one ({e})")))?
        };
        let meta = checkpoint::read_meta(&dir)?;
        if !meta.config.objective.kind().aligns_text() {
            return Err(mismatch(format!(
                "it was trained with {}, whose image features are not CLIP's: give a CLIP/FLIP \
                 or MAE+CLIP run",
                meta.config.objective.kind()
            )));
        }
        let model = meta.config.model.clone();
        (TeacherSource::Checkpoint(dir, Box::new(meta)), model)
    };
    if (model.image_size, model.patch_size) != (student.image_size, student.patch_size) {
        return Err(mismatch(format!(
            "the teacher reads {} px images in {} px patches, the student {} px in {} px: train \
             the student at the teacher's model.image_size and model.patch_size",
            model.image_size, model.patch_size, student.image_size, student.patch_size
        )));
    }
    Ok(source)
}

/// Loads the teacher named by `path` (see [`teacher_source`]), every parameter frozen.
pub fn load_teacher(path: &str, student: &ModelConfig, device: Device) -> Result<ClipModel> {
    let mut teacher = match teacher_source(path, student)? {
        TeacherSource::Checkpoint(dir, meta) => {
            let (teacher, _) = super::build(&meta.config, device)?;
            checkpoint::load(&dir, &teacher, None)?;
            teacher
        }
        TeacherSource::OpenClip(dir, _) => {
            let imported = import_open_clip(&dir)?;
            let teacher = ClipModel::new(&imported.config, 0, device)?;
            checkpoint::load_towers(&teacher, &imported.weights, &dir)?;
            teacher
        }
    };
    teacher.freeze(&[""])?;
    Ok(teacher)
}

impl CaeV2 {
    /// The objective around a loaded `teacher`; its heads' parameters go under `heads.`.
    pub fn new(
        init: &mut Initializer,
        settings: &CaeV2Settings,
        model: &ModelConfig,
        teacher: ClipModel,
    ) -> std::result::Result<Self, TchError> {
        let width = model.vision_width as i64;
        let target = teacher.config().embed_dim as i64;
        let norm = LayerNorm::new(init, "heads.feature.norm", width)?;
        let head = Linear::xavier(init, "heads.feature.proj", width, target)?;
        let regressor = if settings.supervise.masked() {
            Some(LatentRegressor::new(
                init,
                "heads.regressor",
                width,
                model.vision_heads as i64,
                settings.regressor_depth,
            )?)
        } else {
            None
        };
        Ok(CaeV2 {
            settings: settings.clone(),
            teacher,
            norm,
            head,
            regressor,
            drops_cls: model.vision_pool.has_cls_token(),
        })
    }

    /// The teacher's normalised patch-token features `[B, L, E]`, whole image, no gradient.
    fn targets(&self, images: &Tensor, compute: Compute) -> Result<Tensor> {
        tch::no_grad(|| {
            let out = self.teacher.encode_image(images, None, compute)?;
            let run = || -> std::result::Result<Tensor, TchError> {
                let tokens = patch_tokens(&out.tokens, self.teacher.vision().has_cls_token())?;
                l2_normalize(&self.teacher.vision().project_tokens(&tokens, compute)?)
            };
            run().context(|| "teacher features".into())
        })
    }

    /// The student's tokens mapped to the teacher's space, normalised.
    fn predict(&self, tokens: &Tensor, compute: Compute) -> std::result::Result<Tensor, TchError> {
        l2_normalize(&Compute::to_float(
            &self.head.forward(&self.norm.forward(tokens)?, compute)?,
        )?)
    }

    /// Σ (1 − cos) over the removed patches, and their count, through the regressor.
    fn masked_loss(
        &self,
        model: &ClipModel,
        visible: &Tensor,
        mask: &PatchMask,
        targets: &Tensor,
        compute: Compute,
    ) -> std::result::Result<Option<(Tensor, i64)>, TchError> {
        let Some(regressor) = &self.regressor else {
            return Ok(None);
        };
        let (b, k, w) = visible.size3()?;
        let l = targets.size()[1];
        if l == k {
            return Ok(None);
        }
        let pos = model.position_embedding();
        let ids_masked = mask
            .ids_restore
            .f_argsort_stable(true, 1, false)?
            .f_narrow(1, k, l - k)?;
        let at = |ids: &Tensor| -> std::result::Result<Tensor, TchError> {
            pos.f_index_select(0, &ids.f_reshape([-1])?)?
                .f_view([b, ids.size()[1], w])
        };
        let context = visible.f_add(&at(&mask.ids_keep)?)?;
        let predicted = regressor.forward(&context, &at(&ids_masked)?, compute)?;
        let target = gather_tokens(targets, &ids_masked)?;
        let loss = cosine_loss_sum(&self.predict(&predicted, compute)?, &target)?;
        Ok(Some((loss, b * (l - k))))
    }
}

impl Objective for CaeV2 {
    fn kind(&self) -> ObjectiveKind {
        ObjectiveKind::CaeV2
    }

    fn contrastive_weight(&self) -> Option<f64> {
        None
    }

    fn forward(
        &self,
        model: &ClipModel,
        batch: &Batch,
        compute: Compute,
    ) -> Result<ObjectiveOutput> {
        let targets = self.targets(&batch.images, compute)?;
        let student = model.encode_image(&batch.images, batch.mask.as_ref(), compute)?;
        let run = || -> std::result::Result<Tensor, TchError> {
            let visible = patch_tokens(&student.tokens, self.drops_cls)?;
            let (b, k, _) = visible.size3()?;
            let mut sum: Option<Tensor> = None;
            let mut count = 0i64;
            let mut add = |loss: Tensor, n: i64| -> std::result::Result<(), TchError> {
                sum = Some(match sum.take() {
                    None => loss,
                    Some(s) => s.f_add(&loss)?,
                });
                count += n;
                Ok(())
            };
            let mask = batch.mask.as_ref();
            if self.settings.supervise.visible() || mask.is_none() {
                let target = match mask {
                    Some(m) => gather_tokens(&targets, &m.ids_keep)?,
                    None => targets.shallow_clone(),
                };
                add(
                    cosine_loss_sum(&self.predict(&visible, compute)?, &target)?,
                    b * k,
                )?;
            }
            if let Some(m) = mask
                && let Some((loss, n)) = self.masked_loss(model, &visible, m, &targets, compute)?
            {
                add(loss, n)?;
            }
            match sum {
                Some(s) => s.f_div_scalar(count.max(1) as f64),
                None => Err(TchError::Kind("no token was supervised".into())),
            }
        };
        Ok(ObjectiveOutput {
            embeddings: None,
            terms: vec![Term {
                name: "feature",
                weight: 1.0,
                value: run().context(|| "CAE v2 feature loss".into())?,
            }],
        })
    }
}

/// The patch tokens of encoder `tokens` (the CLS token dropped when there is one).
fn patch_tokens(tokens: &Tensor, has_cls: bool) -> std::result::Result<Tensor, TchError> {
    if has_cls {
        let t = tokens.size()[1];
        tokens.f_narrow(1, 1, t - 1)
    } else {
        Ok(tokens.shallow_clone())
    }
}

/// Rows `ids` (`[B, M]`) of `tokens` (`[B, L, E]`) per sample.
fn gather_tokens(tokens: &Tensor, ids: &Tensor) -> std::result::Result<Tensor, TchError> {
    let (b, _, e) = tokens.size3()?;
    let index = ids
        .f_unsqueeze(-1)?
        .f_expand([b, ids.size()[1], e], false)?;
    tokens.f_gather(1, &index, false)
}

/// Σ over tokens of `1 − cos(pred, target)` for unit-norm rows.
fn cosine_loss_sum(pred: &Tensor, target: &Tensor) -> std::result::Result<Tensor, TchError> {
    let cos = pred
        .f_mul(target)?
        .f_sum_dim_intlist(-1, false, Kind::Float)?;
    cos.f_neg()?.f_add_scalar(1.0)?.f_sum(Kind::Float)
}
