//! CAE's latent contextual regressor: queries for the removed patches (a learned mask token plus
//! each removed patch's position embedding) attend, through pre-norm cross-attention blocks, to
//! the encoder's visible tokens (with their positions) and to themselves, and come out as
//! predicted latent tokens of the removed patches.

use tch::{TchError, Tensor};

use super::layers::{Compute, LayerNorm, Linear};
use super::params::Initializer;

/// One block: `q + attn(norm_q(q), norm_kv([visible; q]))`, then `q + mlp(norm2(q))`.
#[derive(Debug)]
struct CrossBlock {
    norm_q: LayerNorm,
    norm_kv: LayerNorm,
    q: Linear,
    kv: Linear,
    proj: Linear,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    heads: i64,
}

impl CrossBlock {
    fn new(init: &mut Initializer, name: &str, width: i64, heads: i64) -> Result<Self, TchError> {
        let std = (width as f64).powf(-0.5);
        let n = |part: &str| format!("{name}.{part}");
        Ok(CrossBlock {
            norm_q: LayerNorm::new(init, &n("norm_q"), width)?,
            norm_kv: LayerNorm::new(init, &n("norm_kv"), width)?,
            q: Linear::normal(init, &n("attn.q"), width, width, std, true)?,
            kv: Linear::normal(init, &n("attn.kv"), width, 2 * width, std, true)?,
            proj: Linear::normal(init, &n("attn.proj"), width, width, std, true)?,
            norm2: LayerNorm::new(init, &n("norm2"), width)?,
            fc1: Linear::normal(init, &n("mlp.fc1"), width, 4 * width, std, true)?,
            fc2: Linear::normal(init, &n("mlp.fc2"), 4 * width, width, std * 0.5, true)?,
            heads,
        })
    }

    fn forward(&self, q: &Tensor, context: &Tensor, compute: Compute) -> Result<Tensor, TchError> {
        let (b, tq, w) = q.size3()?;
        let kv_in = Tensor::f_cat(&[context.shallow_clone(), q.shallow_clone()], 1)?;
        let tk = kv_in.size()[1];
        let d = w / self.heads;
        let query = self
            .q
            .forward(&self.norm_q.forward(q)?, compute)?
            .f_view([b, tq, self.heads, d])?
            .f_transpose(1, 2)?;
        let kv = self
            .kv
            .forward(&self.norm_kv.forward(&kv_in)?, compute)?
            .f_view([b, tk, 2, self.heads, d])?
            .f_permute([2, 0, 3, 1, 4])?;
        let o = Tensor::f_scaled_dot_product_attention(
            &query,
            &kv.f_select(0, 0)?,
            &kv.f_select(0, 1)?,
            None::<&Tensor>,
            0.0,
            false,
            None::<f64>,
            false,
        )?
        .f_transpose(1, 2)?
        .f_reshape([b, tq, w])?;
        let x = q.f_add(&Compute::to_float(&self.proj.forward(&o, compute)?)?)?;
        let h = self
            .fc1
            .forward(&self.norm2.forward(&x)?, compute)?
            .f_gelu("none")?;
        x.f_add(&Compute::to_float(&self.fc2.forward(&h, compute)?)?)
    }
}

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
            .map(|i| CrossBlock::new(init, &format!("{name}.blocks.{i}"), width, heads))
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
