//! MUG's caption decoder, a head of its own: a causal Transformer over the caption's tokens whose
//! every layer also cross-attends to the image encoder's tokens, trained to predict each next
//! token (teacher forcing).
//!
//! Layer `i` is a causal self-attention block then a cross-attention block to the encoder tokens
//! (projected to the decoder's width); token embeddings and learned positions of its own; a final
//! LayerNorm and a linear layer to the vocabulary. The loss is the mean cross entropy over the
//! positions inside each caption: a caption's length runs to its first end token (`model.eot_id`)
//! inclusive, or to its last non-pad token — by position, so that a tokenizer that pads with its
//! end token (CLIP's) is scored right.

use tch::{Kind, Reduction, TchError, Tensor};

use super::layers::{AttnMask, Block, BlockShape, Compute, CrossBlock, LayerNorm, Linear};
use super::params::Initializer;
use super::text::end_positions;
use crate::config::{Activation, ModelConfig};

/// The caption decoder's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptionShape {
    /// Residual width.
    pub width: usize,
    /// Layers (each one self-attention and one cross-attention block).
    pub depth: usize,
    /// Attention heads.
    pub heads: usize,
}

/// The caption decoder.
#[derive(Debug)]
pub struct CaptionDecoder {
    token_embed: Tensor,
    pos_embed: Tensor,
    context: Linear,
    layers: Vec<(Block, CrossBlock)>,
    norm: LayerNorm,
    head: Linear,
    pad_id: i64,
    eot_id: Option<i64>,
}

impl CaptionDecoder {
    /// A decoder of `shape` for `model`'s vocabulary, context length and image tower width, its
    /// parameters under `name`.
    pub fn new(
        init: &mut Initializer,
        name: &str,
        shape: CaptionShape,
        model: &ModelConfig,
    ) -> Result<Self, TchError> {
        let w = shape.width as i64;
        let vocab = model.vocab_size as i64;
        let n = |part: &str| format!("{name}.{part}");
        let token_embed = init.normal(&n("token_embed.weight"), &[vocab, w], 0.02)?;
        let pos_embed = init.normal(&n("pos_embed"), &[model.context_length as i64, w], 0.01)?;
        let context = Linear::xavier(init, &n("context"), model.vision_width as i64, w)?;
        let block = BlockShape {
            width: w,
            heads: shape.heads as i64,
            mlp_width: 4 * w,
            depth: 2 * shape.depth as i64,
            activation: Activation::Gelu,
        };
        let layers = (0..shape.depth)
            .map(|i| {
                Ok((
                    Block::new(init, &n(&format!("layers.{i}.self")), block)?,
                    CrossBlock::new(
                        init,
                        &n(&format!("layers.{i}.cross")),
                        w,
                        shape.heads as i64,
                        false,
                    )?,
                ))
            })
            .collect::<Result<_, TchError>>()?;
        let norm = LayerNorm::new(init, &n("norm"), w)?;
        let head = Linear::xavier(init, &n("head"), w, vocab)?;
        Ok(CaptionDecoder {
            token_embed,
            pos_embed,
            context,
            layers,
            norm,
            head,
            pad_id: model.pad_id as i64,
            eot_id: model.eot_id.map(|id| id as i64),
        })
    }

    /// The mean next-token cross entropy of the captions `tokens` (`[B, n]`, right-padded) given
    /// the image encoder's `image_tokens` (`[B, T, vision_width]`); a scalar float32.
    pub fn loss(
        &self,
        image_tokens: &Tensor,
        tokens: &Tensor,
        compute: Compute,
    ) -> Result<Tensor, TchError> {
        let (b, n) = tokens.size2()?;
        let inputs = tokens.f_narrow(1, 0, n - 1)?;
        let targets = tokens.f_narrow(1, 1, n - 1)?;
        let context = Compute::to_float(&self.context.forward(image_tokens, compute)?)?;
        let mut x = Tensor::f_embedding(&self.token_embed, &inputs, -1, false, false)?
            .f_add(&self.pos_embed.f_narrow(0, 0, n - 1)?)?;
        for (self_block, cross) in &self.layers {
            x = self_block.forward(&x, &AttnMask::Causal, compute)?;
            x = cross.forward(&x, &context, compute)?;
        }
        let logits = Compute::to_float(&self.head.forward(&self.norm.forward(&x)?, compute)?)?;
        // Target position t + 1 counts when it lies inside the caption.
        let lengths = self.lengths(tokens)?;
        let positions = Tensor::f_arange_start(1, n, (Kind::Int64, tokens.device()))?;
        let inside = positions
            .f_unsqueeze(0)?
            .f_lt_tensor(&lengths.f_unsqueeze(1)?)?;
        let ignored = targets.f_where_self(&inside, &Tensor::f_full_like(&targets, -100)?)?;
        logits
            .f_reshape([b * (n - 1), -1])?
            .f_cross_entropy_loss::<Tensor>(
                &ignored.f_reshape([-1])?,
                None,
                Reduction::Mean,
                -100,
                0.0,
            )
    }

    /// Each caption's length `[B]`: up to its first end token inclusive, else to its last non-pad
    /// token inclusive.
    pub fn lengths(&self, tokens: &Tensor) -> Result<Tensor, TchError> {
        end_positions(tokens, self.pad_id, self.eot_id)?.f_add_scalar(1)
    }
}
