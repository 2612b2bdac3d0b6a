//! The text tower: token + learned position embeddings, a Transformer (causal by default), the
//! final LayerNorm, and one token's output (the end-of-text token, or the first) projected into
//! the joint space.

use tch::{Kind, TchError, Tensor};

use super::layers::{AttnMask, BlockShape, Compute, LayerNorm, Linear, Transformer};
use super::params::Initializer;
use crate::config::{ModelConfig, TextPool};

/// Position of each caption's end in `tokens` `[B, n]`: its first end-of-text token `eot_id`,
/// or its last non-pad token in a row without one (and in every row when there is no end token).
pub fn end_positions(
    tokens: &Tensor,
    pad_id: i64,
    eot_id: Option<i64>,
) -> Result<Tensor, TchError> {
    let n = tokens.size2()?.1;
    let positions = Tensor::f_arange(n, (Kind::Int64, tokens.device()))?;
    let last_non_pad = tokens
        .f_ne(pad_id)?
        .f_to_kind(Kind::Int64)?
        .f_mul(&positions)?
        .f_argmax(1, false)?;
    let Some(eot) = eot_id else {
        return Ok(last_non_pad);
    };
    let is_eot = tokens.f_eq(eot)?;
    // argmax returns the first of equal maxima: the first end token.
    let first_eot = is_eot.f_to_kind(Kind::Int64)?.f_argmax(1, false)?;
    first_eot.f_where_self(&is_eot.f_any_dim(1, false)?, &last_non_pad)
}

/// The Transformer text encoder.
#[derive(Debug)]
pub struct TextTower {
    token_embed: Tensor,
    pos_embed: Tensor,
    transformer: Transformer,
    norm: LayerNorm,
    proj: Linear,
    causal: bool,
    pool: TextPool,
    pad_id: i64,
    eot_id: Option<i64>,
    width: i64,
}

impl TextTower {
    /// Creates the tower's parameters under `text.` (CLIP's init: token std 0.02, position std 0.01).
    pub fn new(init: &mut Initializer, cfg: &ModelConfig) -> Result<Self, TchError> {
        let width = cfg.text_width as i64;
        let token_embed = init.normal(
            "text.token_embed.weight",
            &[cfg.vocab_size as i64, width],
            0.02,
        )?;
        let pos_embed = init.normal("text.pos_embed", &[cfg.context_length as i64, width], 0.01)?;
        let shape = BlockShape {
            width,
            heads: cfg.text_heads as i64,
            mlp_width: cfg.text_mlp_width() as i64,
            depth: cfg.text_depth as i64,
            activation: cfg.activation,
        };
        let transformer = Transformer::new(init, "text.blocks", shape)?;
        let norm = LayerNorm::new(init, "text.norm", width)?;
        let proj = Linear::normal(
            init,
            "text.proj",
            width,
            cfg.embed_dim as i64,
            (width as f64).powf(-0.5),
            false,
        )?;
        Ok(TextTower {
            token_embed,
            pos_embed,
            transformer,
            norm,
            proj,
            causal: cfg.text_causal,
            pool: cfg.text_pool,
            pad_id: cfg.pad_id as i64,
            eot_id: cfg.eot_id.map(|id| id as i64),
            width,
        })
    }

    /// Position of the pooled token for each row of `tokens` `[B, n]`. `eot` pooling: the first
    /// end-of-text token (`model.eot_id`), or the last non-pad token in a row without one (and in
    /// every row when the config names no end token); `first` pooling: 0 (`mean` pooling uses
    /// every non-pad position; this returns 0 for it).
    ///
    /// The end token's position is needed, not the last non-pad token's: a tokenizer without a pad
    /// token of its own (CLIP's) pads with its end token, so the last non-pad token is the last word.
    pub fn pool_positions(&self, tokens: &Tensor) -> Result<Tensor, TchError> {
        let b = tokens.size2()?.0;
        match self.pool {
            TextPool::Eot => end_positions(tokens, self.pad_id, self.eot_id),
            TextPool::First | TextPool::Mean => {
                Tensor::f_zeros([b], (Kind::Int64, tokens.device()))
            }
        }
    }

    /// The pooled (pre-norm) token outputs `[B, width]` of `x` `[B, n, width]`.
    fn pool(&self, x: &Tensor, tokens: &Tensor) -> Result<Tensor, TchError> {
        let (b, _) = tokens.size2()?;
        if self.pool == TextPool::Mean {
            let keep = tokens.f_ne(self.pad_id)?.f_to_kind(x.kind())?;
            // At least one token per row (an all-pad row pools to zero instead of NaN).
            let count = keep
                .f_sum_dim_intlist(1, true, x.kind())?
                .f_clamp_min(1.0)?;
            return x
                .f_mul(&keep.f_unsqueeze(2)?)?
                .f_sum_dim_intlist(1, false, x.kind())?
                .f_div(&count);
        }
        let index = self
            .pool_positions(tokens)?
            .f_view([b, 1, 1])?
            .f_expand([b, 1, self.width], false)?;
        x.f_gather(1, &index, false)?.f_squeeze_dim(1)
    }

    /// Unnormalised text embeddings `[B, embed_dim]` (float32) for int64 `tokens` `[B, n]`,
    /// `n ≤ context_length`, on the model's device.
    pub fn forward(&self, tokens: &Tensor, compute: Compute) -> Result<Tensor, TchError> {
        let (b, n) = tokens.size2()?;
        let x = Tensor::f_embedding(&self.token_embed, tokens, -1, false, false)?;
        let x = x.f_add(&self.pos_embed.f_narrow(0, 0, n)?)?;
        let mask = if self.causal {
            AttnMask::Causal
        } else {
            // Pads are not attended to; position 0 always is, so that no row is fully masked.
            let first = Tensor::f_arange(n, (Kind::Int64, tokens.device()))?.f_eq(0)?;
            AttnMask::Keys(
                tokens
                    .f_ne(self.pad_id)?
                    .f_logical_or(&first)?
                    .f_view([b, 1, 1, n])?,
            )
        };
        let x = self.transformer.forward(&x, &mask, compute)?;
        // The final LayerNorm on the pooled vector (for one pooled token the same as normalising
        // every token first).
        let pooled = self.norm.forward(&self.pool(&x, tokens)?)?;
        Compute::to_float(&self.proj.forward(&pooled, compute)?)
    }
}
