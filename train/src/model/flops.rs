//! Matmul FLOP estimates for model-FLOPs-utilisation (MFU) reporting.
//!
//! Counts 2 FLOPs per multiply-add of every matmul (patch embedding on kept patches, qkv, attention
//! scores and weighted sum, output projection, MLP, final projections); norms, activations, softmax
//! and the loss are left out. Causal attention is counted in full (as most MFU reports do). Training
//! costs ≈ 3× the forward pass (backward computes gradients for inputs and weights).

use super::stem::ConvStem;
use crate::config::{ModelConfig, PatchEmbed, kept_patches};

/// Forward-pass matmul FLOPs of one Transformer over `tokens` tokens.
fn transformer_flops(tokens: f64, width: f64, mlp_width: f64, depth: f64) -> f64 {
    let qkv = 2.0 * tokens * width * 3.0 * width;
    let scores_and_mix = 2.0 * 2.0 * tokens * tokens * width; // QKᵀ and A·V
    let out_proj = 2.0 * tokens * width * width;
    let mlp = 2.0 * 2.0 * tokens * width * mlp_width; // fc1 and fc2
    (qkv + scores_and_mix + out_proj + mlp) * depth
}

/// Forward-pass matmul FLOPs of the image tower for one image at `mask_ratio`.
pub fn vision_forward_flops(cfg: &ModelConfig, mask_ratio: f64) -> f64 {
    let kept = kept_patches(cfg.num_patches(), mask_ratio) as f64;
    let tokens = kept
        + if cfg.vision_pool.has_cls_token() {
            1.0
        } else {
            0.0
        };
    let width = cfg.vision_width as f64;
    let embedding = match cfg.patch_embed {
        // Only kept patches are projected.
        PatchEmbed::Linear => 2.0 * kept * cfg.patch_dim() as f64 * width,
        // The stem sees the whole image whatever the mask.
        PatchEmbed::Conv => {
            2.0 * ConvStem::macs(
                cfg.vision_width,
                cfg.patch_size,
                cfg.stem_depth,
                cfg.image_size,
            )
        }
    };
    embedding
        + transformer_flops(
            tokens,
            width,
            cfg.vision_mlp_width() as f64,
            cfg.vision_depth as f64,
        )
        + 2.0 * width * cfg.embed_dim as f64
}

/// Forward-pass matmul FLOPs of the text tower for one caption of `context_length` tokens.
pub fn text_forward_flops(cfg: &ModelConfig) -> f64 {
    let width = cfg.text_width as f64;
    transformer_flops(
        cfg.context_length as f64,
        width,
        cfg.text_mlp_width() as f64,
        cfg.text_depth as f64,
    ) + 2.0 * width * cfg.embed_dim as f64
}

/// Training FLOPs (forward + backward ≈ 3× forward) per image-text pair at `mask_ratio`.
pub fn flops_per_sample(cfg: &ModelConfig, mask_ratio: f64) -> f64 {
    3.0 * (vision_forward_flops(cfg, mask_ratio) + text_forward_flops(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Preset;

    #[test]
    fn masking_scales_the_image_tower() {
        let cfg = Preset::Small.model();
        let full = vision_forward_flops(&cfg, 0.0);
        let quarter = vision_forward_flops(&cfg, 0.75);
        // 49 of 196 tokens: linear terms scale by 1/4, attention by less than that.
        assert!(
            quarter < full / 3.9 && quarter > full / 4.5,
            "{full} {quarter}"
        );
        // ViT-S-ish at 224: a few GFLOPs forward.
        assert!(full > 4.0e9 && full < 5.0e9, "{full}");
        assert!(flops_per_sample(&cfg, 0.5) < flops_per_sample(&cfg, 0.0));
    }
}
