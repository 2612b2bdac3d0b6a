//! MAE's pixel decoder ([`PixelDecoder`]), a head of its own: it reads the image encoder's tokens
//! of the kept patches and predicts the pixels of every patch; [`reconstruction_loss`] scores the
//! removed ones.
//!
//! As in MAE's `forward_decoder`: the encoder tokens are embedded to the decoder's width, one
//! learned mask token is appended per removed patch, the sequence is put back into patch order
//! with the mask's `ids_restore`, fixed 2-D sin-cos position embeddings of the decoder's width are
//! added, then pre-norm blocks, a LayerNorm and a linear prediction of each patch's `3·p²` values
//! (in the (c, y, x) order of [`super::vision::VisionTower::patchify`]). The encoder's CLS token,
//! when it has one, is dropped before the decoder (MAE carries it through; it predicts nothing).

use tch::{Device, Kind, TchError, Tensor};

use super::layers::{AttnMask, BlockShape, Compute, LayerNorm, Linear, Transformer};
use super::masking::PatchMask;
use super::params::Initializer;
use super::posembed::sincos_2d;
use super::vision::{CLIP_MEAN, CLIP_STD};
use crate::config::{Activation, ModelConfig};
use crate::objective::DecoderShape;

/// The pixel decoder.
#[derive(Debug)]
pub struct PixelDecoder {
    embed: Linear,
    mask_token: Tensor,
    pos_embed: Tensor,
    blocks: Transformer,
    norm: LayerNorm,
    pred: Linear,
    width: i64,
    num_patches: i64,
    drops_cls: bool,
}

impl PixelDecoder {
    /// A decoder of `shape` for `model`'s image tower, its parameters under `name`.
    pub fn new(
        init: &mut Initializer,
        name: &str,
        shape: DecoderShape,
        model: &ModelConfig,
        device: Device,
    ) -> Result<Self, TchError> {
        let width = shape.decoder_width as i64;
        let num_patches = model.num_patches() as i64;
        let embed = Linear::xavier(
            init,
            &format!("{name}.embed"),
            model.vision_width as i64,
            width,
        )?;
        let mask_token = init.normal(&format!("{name}.mask_token"), &[1, 1, width], 0.02)?;
        let blocks = Transformer::new(
            init,
            &format!("{name}.blocks"),
            BlockShape {
                width,
                heads: shape.decoder_heads as i64,
                mlp_width: 4 * width,
                depth: shape.decoder_depth as i64,
                activation: Activation::Gelu,
            },
        )?;
        let norm = LayerNorm::new(init, &format!("{name}.norm"), width)?;
        let pred = Linear::xavier(
            init,
            &format!("{name}.pred"),
            width,
            model.patch_dim() as i64,
        )?;
        let pos_embed = Tensor::f_from_slice(&sincos_2d(model.grid_size(), shape.decoder_width))?
            .f_view([num_patches, width])?
            .f_to_device(device)?;
        Ok(PixelDecoder {
            embed,
            mask_token,
            pos_embed,
            blocks,
            norm,
            pred,
            width,
            num_patches,
            drops_cls: model.vision_pool.has_cls_token(),
        })
    }

    /// Predicted pixels `[B, L, 3·p²]` (float32) of every patch, from the encoder's `tokens`
    /// (`[B, T, vision_width]`, those of [`super::vision::VisionOutput`]) of the kept patches of
    /// `mask`.
    pub fn forward(
        &self,
        tokens: &Tensor,
        mask: &PatchMask,
        compute: Compute,
    ) -> Result<Tensor, TchError> {
        let (b, t, _) = tokens.size3()?;
        let kept = if self.drops_cls {
            tokens.f_narrow(1, 1, t - 1)?
        } else {
            tokens.shallow_clone()
        };
        let x = Compute::to_float(&self.embed.forward(&kept, compute)?)?;
        let k = x.size()[1];
        let fill = self
            .mask_token
            .f_expand([b, self.num_patches - k, self.width], false)?;
        let shuffled = Tensor::f_cat(&[x, fill], 1)?;
        let index = mask
            .ids_restore
            .f_unsqueeze(-1)?
            .f_expand([b, self.num_patches, self.width], false)?;
        let x = shuffled
            .f_gather(1, &index, false)?
            .f_add(&self.pos_embed.f_unsqueeze(0)?)?;
        let x = self
            .norm
            .forward(&self.blocks.forward(&x, &AttnMask::Full, compute)?)?;
        Compute::to_float(&self.pred.forward(&x, compute)?)
    }
}

/// The decoder's targets `[B, L, 3·p²]` (float32) from u8 `patches` (`patchify`'s output): pixels
/// normalised with CLIP's mean and std like the encoder's input, and with `norm_pix` each patch
/// normalised by its own mean and variance (MAE's `norm_pix_loss`, ε = 1e-6).
pub fn pixel_targets(patches: &Tensor, norm_pix: bool) -> Result<Tensor, TchError> {
    let (b, l, d) = patches.size3()?;
    let device = patches.device();
    let per_channel = |v: [f64; 3]| -> Result<Tensor, TchError> {
        let v: Vec<f32> = v.iter().map(|x| *x as f32).collect();
        Tensor::f_from_slice(&v)?
            .f_view([1, 1, 3, 1])?
            .f_to_device(device)
    };
    let x = patches
        .f_to_kind(Kind::Float)?
        .f_view([b, l, 3, d / 3])?
        .f_div_scalar(255.0)?
        .f_sub(&per_channel(CLIP_MEAN)?)?
        .f_div(&per_channel(CLIP_STD)?)?
        .f_view([b, l, d])?;
    if !norm_pix {
        return Ok(x);
    }
    let mean = x.f_mean_dim([-1i64].as_slice(), true, Kind::Float)?;
    let var = x.f_var_correction([-1i64].as_slice(), 1i64, true)?;
    x.f_sub(&mean)?.f_div(&var.f_add_scalar(1e-6)?.f_sqrt()?)
}

/// MAE's loss: the mean squared error of `pred` against `target` (both `[B, L, D]`) per patch,
/// averaged over the removed patches only (`mask` is 1 where removed).
pub fn reconstruction_loss(
    pred: &Tensor,
    target: &Tensor,
    mask: &PatchMask,
) -> Result<Tensor, TchError> {
    let per_patch =
        pred.f_sub(target)?
            .f_square()?
            .f_mean_dim([-1i64].as_slice(), false, Kind::Float)?;
    per_patch
        .f_mul(&mask.mask)?
        .f_sum(Kind::Float)?
        .f_div(&mask.mask.f_sum(Kind::Float)?.f_clamp_min(1.0)?)
}
