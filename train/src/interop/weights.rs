//! The tensors both targets share, read from a [`ClipModel`] and renamed: [`Renamer`] collects
//! `(target name, tensor)` pairs, [`vision_embedding`] folds the patch embedding's bias and the
//! fixed sin-cos table into a learned position table with a CLS row, and [`token_embedding`]
//! applies a token id swap to the embedding table.

use tch::{Kind, Tensor};

use crate::error::{Result, TorchContext, TrainError};
use crate::model::ClipModel;

/// Target names and float32 CPU tensors, in the order they were added.
pub struct Renamer<'a> {
    model: &'a ClipModel,
    out: Vec<(String, Tensor)>,
}

impl<'a> Renamer<'a> {
    /// An empty list over `model`'s parameters.
    pub fn new(model: &'a ClipModel) -> Self {
        Self {
            model,
            out: Vec::new(),
        }
    }

    /// flipstream's parameter `name` as a detached float32 CPU tensor.
    pub fn get(&self, name: &str) -> Result<Tensor> {
        let param = self
            .model
            .params()
            .get(name)
            .ok_or_else(|| TrainError::Input {
                what: "model",
                detail: format!("no parameter {name} to export"),
            })?;
        param
            .tensor()
            .f_detach()
            .and_then(|t| t.f_to_device(tch::Device::Cpu))
            .and_then(|t| t.f_to_kind(Kind::Float))
            .context(|| format!("reading {name}"))
    }

    /// Adds `tensor` as `name`.
    pub fn put(&mut self, name: impl Into<String>, tensor: Tensor) {
        self.out.push((name.into(), tensor));
    }

    /// Adds flipstream's `ours` as `theirs`.
    pub fn copy(&mut self, ours: &str, theirs: &str) -> Result<()> {
        let t = self.get(ours)?;
        self.put(theirs, t);
        Ok(())
    }

    /// Adds `ours.weight` and `ours.bias` as `theirs.weight` and `theirs.bias`.
    pub fn copy_affine(&mut self, ours: &str, theirs: &str) -> Result<()> {
        for part in ["weight", "bias"] {
            self.copy(&format!("{ours}.{part}"), &format!("{theirs}.{part}"))?;
        }
        Ok(())
    }

    /// Adds flipstream's `[out, in]` linear weight `ours` transposed, as `theirs` (`x @ proj`).
    pub fn copy_transposed(&mut self, ours: &str, theirs: &str) -> Result<()> {
        let t = self
            .get(ours)?
            .f_tr()
            .and_then(|t| t.f_contiguous())
            .context(|| format!("transposing {ours}"))?;
        self.put(theirs, t);
        Ok(())
    }

    /// The model being read.
    pub fn model(&self) -> &ClipModel {
        self.model
    }

    /// The collected pairs.
    pub fn finish(self) -> Vec<(String, Tensor)> {
        self.out
    }
}

/// The image tower's embedding in the targets' form.
pub struct VisionEmbedding {
    /// `[width, 3, patch, patch]`: the patch convolution, without bias.
    pub patch_weight: Tensor,
    /// `[width]`: the CLS token.
    pub class: Tensor,
    /// `[1 + L, width]`: zero for the CLS token (flipstream's has no position embedding), then
    /// each patch's sin-cos row plus the patch embedding's bias (the targets' patch convolution
    /// has no bias; both are added to every patch token, so the sum is exact).
    pub positions: Tensor,
}

/// Reads the linear patch embedding, the CLS token and the position table (see
/// [`VisionEmbedding`]).
pub fn vision_embedding(r: &Renamer<'_>) -> Result<VisionEmbedding> {
    let width = r.model().config().vision_width as i64;
    let patch_weight = r.get("visual.patch_embed.weight")?;
    let bias = r.get("visual.patch_embed.bias")?;
    let class = r.get("visual.cls_token")?;
    let build = || -> std::result::Result<VisionEmbedding, tch::TchError> {
        let sincos = r
            .model()
            .position_embedding()
            .f_to_device(tch::Device::Cpu)?
            .f_to_kind(Kind::Float)?;
        let patches = sincos.f_add(&bias.f_unsqueeze(0)?)?;
        let cls_row = Tensor::f_zeros([1, width], (Kind::Float, tch::Device::Cpu))?;
        Ok(VisionEmbedding {
            patch_weight: patch_weight.shallow_clone(),
            class: class.f_reshape([width])?,
            positions: Tensor::f_cat(&[cls_row, patches], 0)?,
        })
    };
    build().context(|| "folding the patch bias into the position table".into())
}

/// The text tower's token embedding `[vocab, width]`, with rows `a` and `b` exchanged when `swap`
/// is `Some((a, b))`.
pub fn token_embedding(r: &Renamer<'_>, swap: Option<(u32, u32)>) -> Result<Tensor> {
    let table = r.get("text.token_embed.weight")?;
    let Some((a, b)) = swap else {
        return Ok(table);
    };
    let rows = table.size()[0];
    let mut order: Vec<i64> = (0..rows).collect();
    order.swap(a as usize, b as usize);
    Tensor::f_from_slice(&order)
        .and_then(|idx| table.f_index_select(0, &idx))
        .context(|| format!("swapping token rows {a} and {b}"))
}
