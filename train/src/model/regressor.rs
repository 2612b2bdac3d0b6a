//! CAE's latent contextual regressor: queries for the removed patches (a learned mask token plus
//! each removed patch's position embedding) attend, through pre-norm cross-attention blocks, to
//! the encoder's visible tokens (with their positions) and to themselves, and come out as
//! predicted latent tokens of the removed patches.

use tch::{TchError, Tensor};

use super::layers::{Compute, CrossBlock, LayerNorm};
use super::params::Initializer;

/// The regressor: a mask token and `depth` cross-attention blocks at the encoder's width.
#[derive(Debug)]
pub struct LatentRegressor {
    mask_token: Tensor,
    blocks: Vec<CrossBlock>,
    norm: LayerNorm,
}

impl LatentRegressor {
    /// Parameters under `name`.
    pub fn new(
        init: &mut Initializer,
        name: &str,
        width: i64,
        heads: i64,
        depth: usize,
    ) -> Result<Self, TchError> {
        let mask_token = init.normal(&format!("{name}.mask_token"), &[1, 1, width], 0.02)?;
        let blocks = (0..depth)
            .map(|i| CrossBlock::new(init, &format!("{name}.blocks.{i}"), width, heads, true))
            .collect::<Result<_, _>>()?;
        let norm = LayerNorm::new(init, &format!("{name}.norm"), width)?;
        Ok(LatentRegressor {
            mask_token,
            blocks,
            norm,
        })
    }

    /// Predicted tokens `[B, M, width]` of the removed patches whose position embeddings are
    /// `masked_pos` (`[B, M, width]`), from the `visible` tokens `[B, K, width]` (positions added).
    pub fn forward(
        &self,
        visible: &Tensor,
        masked_pos: &Tensor,
        compute: Compute,
    ) -> Result<Tensor, TchError> {
        let mut q = masked_pos.f_add(&self.mask_token)?;
        for block in &self.blocks {
            q = block.forward(&q, visible, compute)?;
        }
        self.norm.forward(&q)
    }
}
