//! The convolutional stem (`model.patch_embed = "conv"`): a hybrid ViT's patch embedding.
//!
//! ViT's linear patchify has no notion of a pixel shift: the same edge one pixel to the right of a
//! patch border is a different input, so the model must learn every edge at every phase of the
//! 8- or 16-pixel grid from data. Xiao et al. ("Early Convolutions Help Transformers See Better",
//! NeurIPS 2021; the original ViT paper's "hybrid" is the same idea) replace it with a few
//! stride-2 3×3 convolutions and a 1×1 projection: the model then converges several times faster
//! on small data and is far less sensitive to the optimizer settings. This project measured it on
//! the synthetic demo data (docs/training.md).
//!
//! Shape: `log2(patch)` stages, each a block of conv 3×3 / stride 2 / padding 1 (no bias) →
//! GroupNorm → ReLU with `width · 2^i / patch` channels in stage `i` (24, 48, 96 for width 192 at
//! patch 8), followed by `depth − 1` blocks of the same with stride 1 (`model.stem_depth`; 1 is
//! Xiao et al.'s stem, more makes it a small CNN: more receptive field and nonlinearity before the
//! tokens), then a 1×1 convolution with bias to the Transformer width. Blocks are numbered in
//! order (`visual.stem.{k}`), so a depth-1 stem has the names it always had. GroupNorm (8 groups) instead of the paper's
//! BatchNorm: no running statistics, no dependence on the other samples of a (contrastive) batch,
//! the same computation in training and evaluation.
//!
//! Masking: the stem runs on the whole image and the patch mask then selects tokens, as FLIP does
//! after its patch embedding. A token's receptive field reaches a few pixels past its patch, so a
//! kept token sees the border of a removed neighbour; the Transformer's cost still falls with the
//! mask ratio, the stem's (a few percent of the tower) does not.

use tch::{Kind, TchError, Tensor};

use super::params::Initializer;

/// GroupNorm ε (PyTorch's default).
const GROUP_NORM_EPS: f64 = 1e-5;
/// Groups of every GroupNorm of the stem (fewer when a block has fewer channels).
const GROUPS: i64 = 8;

/// One block: conv 3×3 (stride 2 or 1) → GroupNorm → ReLU.
#[derive(Debug)]
struct StemBlock {
    conv: Tensor,
    stride: i64,
    norm_weight: Tensor,
    norm_bias: Tensor,
    groups: i64,
}

/// The convolutional stem: normalised float images `[B, 3, H, W]` → tokens `[B, L, width]`.
#[derive(Debug)]
pub struct ConvStem {
    blocks: Vec<StemBlock>,
    proj_weight: Tensor,
    proj_bias: Tensor,
}

/// Channels of each stride-2 block for a Transformer `width` and a `patch` (a power of two ≥ 2).
pub fn stem_channels(width: usize, patch: usize) -> Vec<usize> {
    let blocks = patch.max(2).ilog2() as usize;
    (0..blocks).map(|i| (width << i) / patch).collect()
}

impl ConvStem {
    /// Creates the stem's parameters under `visual.stem.` (convolutions: He-normal, fan-out, as
    /// torchvision initialises ReLU networks; the 1×1 projection: Xavier-uniform like ViT's patch
    /// embedding; norms 1 and 0); `depth` convolutions per stage.
    pub fn new(
        init: &mut Initializer,
        width: i64,
        patch: i64,
        depth: usize,
    ) -> Result<Self, TchError> {
        let mut blocks = Vec::new();
        let mut c_in = 3i64;
        for (k, (c, stride)) in stem_layers(width as usize, patch as usize, depth)
            .into_iter()
            .enumerate()
        {
            let c = c as i64;
            let name = format!("visual.stem.{k}");
            let std = (2.0 / (c * 9) as f64).sqrt();
            blocks.push(StemBlock {
                conv: init.normal(&format!("{name}.conv.weight"), &[c, c_in, 3, 3], std)?,
                stride: stride as i64,
                norm_weight: init.constant(&format!("{name}.norm.weight"), &[c], 1.0)?,
                norm_bias: init.constant(&format!("{name}.norm.bias"), &[c], 0.0)?,
                groups: largest_divisor_up_to(c, GROUPS),
            });
            c_in = c;
        }
        let proj_weight = init.xavier_uniform("visual.stem.proj.weight", &[width, c_in, 1, 1])?;
        let proj_bias = init.constant("visual.stem.proj.bias", &[width], 0.0)?;
        Ok(ConvStem {
            blocks,
            proj_weight,
            proj_bias,
        })
    }

    /// Tokens `[B, L, width]` (float32, patches row-major) of normalised images `[B, 3, H, W]`.
    pub fn forward(&self, images: &Tensor) -> Result<Tensor, TchError> {
        let mut x = images.shallow_clone();
        for b in &self.blocks {
            x = x
                .f_conv2d(
                    &b.conv,
                    None::<&Tensor>,
                    [b.stride, b.stride],
                    [1, 1],
                    [1, 1],
                    1,
                )?
                .f_group_norm(
                    b.groups,
                    Some(&b.norm_weight),
                    Some(&b.norm_bias),
                    GROUP_NORM_EPS,
                    true,
                )?
                .f_relu()?;
        }
        let x = x.f_conv2d(
            &self.proj_weight,
            Some(&self.proj_bias),
            [1, 1],
            [0, 0],
            [1, 1],
            1,
        )?;
        let (b, w, _, _) = x.size4()?;
        x.f_view([b, w, -1])?
            .f_transpose(1, 2)?
            .f_to_kind(Kind::Float)
    }

    /// Forward multiply-adds per image of `side × side` pixels.
    pub fn macs(width: usize, patch: usize, depth: usize, side: usize) -> f64 {
        let mut macs = 0.0;
        let (mut c_in, mut s) = (3usize, side);
        for (c, stride) in stem_layers(width, patch, depth) {
            s /= stride;
            macs += (s * s * c * c_in * 9) as f64;
            c_in = c;
        }
        macs + (s * s * width * c_in) as f64
    }
}

/// `(channels, stride)` of every 3×3 convolution of a stem with `depth` convolutions per stage.
fn stem_layers(width: usize, patch: usize, depth: usize) -> Vec<(usize, usize)> {
    stem_channels(width, patch)
        .into_iter()
        .flat_map(|c| std::iter::once((c, 2)).chain(std::iter::repeat_n((c, 1), depth.max(1) - 1)))
        .collect()
}

fn largest_divisor_up_to(n: i64, max: i64) -> i64 {
    (1..=max.min(n)).rev().find(|d| n % d == 0).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn channels_double_up_to_half_the_width() {
        assert_eq!(stem_channels(192, 8), [24, 48, 96]);
        assert_eq!(stem_channels(768, 16), [48, 96, 192, 384]);
        assert_eq!(stem_channels(64, 2), [32]);
    }

    #[test]
    fn a_deeper_stem_adds_stride_one_convolutions_per_stage() {
        assert_eq!(stem_layers(64, 4, 1), [(16, 2), (32, 2)]);
        assert_eq!(stem_layers(64, 4, 2), [(16, 2), (16, 1), (32, 2), (32, 1)]);
        let mut init = Initializer::new(0, Device::Cpu);
        let stem = ConvStem::new(&mut init, 32, 8, 3).unwrap();
        assert_eq!(stem.blocks.len(), 9);
        let img = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        assert_eq!(stem.forward(&img).unwrap().size(), [2, 16, 32]);
        // a 3×3 stride-1 convolution at s × s costs s² · c² · 9 more
        let extra = ConvStem::macs(192, 8, 2, 64) - ConvStem::macs(192, 8, 1, 64);
        let want = (32 * 32 * 24 * 24 + 16 * 16 * 48 * 48 + 8 * 8 * 96 * 96) * 9;
        assert_eq!(extra, want as f64);
    }

    #[test]
    fn tokens_are_the_patch_grid_in_row_major_order() {
        let mut init = Initializer::new(0, Device::Cpu);
        let stem = ConvStem::new(&mut init, 32, 8, 1).unwrap();
        let img = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        let tokens = stem.forward(&img).unwrap();
        assert_eq!(tokens.size(), [2, 16, 32]);
        // A change in the bottom-left corner moves token 12 (row 3, column 0) most; GroupNorm
        // spreads a little of it everywhere, so locality is a ranking, not an exact zero.
        let moved = img.copy();
        let _ = moved
            .narrow(0, 0, 1)
            .narrow(2, 30, 2)
            .narrow(3, 0, 2)
            .fill_(5.0);
        let after = stem.forward(&moved).unwrap();
        let delta = (after - &tokens)
            .abs()
            .sum_dim_intlist(2, false, Kind::Float);
        assert_eq!(delta.get(0).argmax(0, false).int64_value(&[]), 12);
        assert_eq!(delta.double_value(&[1, 0]), 0.0, "samples are independent");
    }
}
