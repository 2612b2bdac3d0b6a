//! Building blocks shared by both towers and the heads: [`Linear`], [`LayerNorm`], multi-head
//! self-attention on `scaled_dot_product_attention`, the MLP, the pre-norm Transformer [`Block`]
//! and the cross-attention [`CrossBlock`] of the decoders.
//!
//! Mixed precision is explicit: the residual stream, norms and parameters stay float32, and each
//! matmul casts its input and weight to the [`Compute`] kind (bfloat16 under `bf16`). This is what
//! CUDA autocast does, made independent of the device (tch's `autocast` only knows float16).

use tch::{Kind, TchError, Tensor};

use super::params::Initializer;
use crate::config::Activation;

/// LayerNorm ε (PyTorch's default, as in CLIP).
pub const LAYER_NORM_EPS: f64 = 1e-5;

/// The kind matmuls and attention run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compute {
    /// `Kind::Float` or `Kind::BFloat16`.
    pub kind: Kind,
}

impl Compute {
    /// Everything in float32.
    pub const FP32: Compute = Compute { kind: Kind::Float };
    /// Matmuls in bfloat16.
    pub const BF16: Compute = Compute {
        kind: Kind::BFloat16,
    };

    /// `t` in the compute kind (no copy when it already is).
    pub fn cast(self, t: &Tensor) -> Result<Tensor, TchError> {
        if t.f_kind()? == self.kind {
            Ok(t.shallow_clone())
        } else {
            t.f_to_kind(self.kind)
        }
    }

    /// `t` in float32 (no copy when it already is).
    pub fn to_float(t: &Tensor) -> Result<Tensor, TchError> {
        if t.f_kind()? == Kind::Float {
            Ok(t.shallow_clone())
        } else {
            t.f_to_kind(Kind::Float)
        }
    }
}

/// `y = x Wᵀ + b`.
#[derive(Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// A linear layer `in_dim → out_dim` with Normal(0, std²) weights and zero bias (if any).
    pub fn normal(
        init: &mut Initializer,
        name: &str,
        in_dim: i64,
        out_dim: i64,
        std: f64,
        bias: bool,
    ) -> Result<Self, TchError> {
        let weight = init.normal(&format!("{name}.weight"), &[out_dim, in_dim], std)?;
        let bias = if bias {
            Some(init.constant(&format!("{name}.bias"), &[out_dim], 0.0)?)
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }

    /// A linear layer `in_dim → out_dim` with Xavier-uniform weights and zero bias (MAE's
    /// initialisation of its decoder's layers).
    pub fn xavier(
        init: &mut Initializer,
        name: &str,
        in_dim: i64,
        out_dim: i64,
    ) -> Result<Self, TchError> {
        let weight = init.xavier_uniform(&format!("{name}.weight"), &[out_dim, in_dim])?;
        let bias = init.constant(&format!("{name}.bias"), &[out_dim], 0.0)?;
        Ok(Linear {
            weight,
            bias: Some(bias),
        })
    }

    /// Wraps existing tensors (`weight` is `[out, in]`).
    pub fn from_parts(weight: Tensor, bias: Option<Tensor>) -> Self {
        Linear { weight, bias }
    }

    /// Applies the layer in the compute kind; the result is in the compute kind.
    pub fn forward(&self, x: &Tensor, compute: Compute) -> Result<Tensor, TchError> {
        let x = compute.cast(x)?;
        if compute.kind == Kind::Float {
            x.f_linear(&self.weight, self.bias.as_ref())
        } else {
            let w = self.weight.f_to_kind(compute.kind)?;
            let b = self
                .bias
                .as_ref()
                .map(|b| b.f_to_kind(compute.kind))
                .transpose()?;
            x.f_linear(&w, b.as_ref())
        }
    }
}

/// LayerNorm over the last dimension, always in float32.
#[derive(Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    dim: i64,
}

impl LayerNorm {
    /// Weight 1, bias 0.
    pub fn new(init: &mut Initializer, name: &str, dim: i64) -> Result<Self, TchError> {
        let weight = init.constant(&format!("{name}.weight"), &[dim], 1.0)?;
        let bias = init.constant(&format!("{name}.bias"), &[dim], 0.0)?;
        Ok(LayerNorm { weight, bias, dim })
    }

    /// Normalises `x` (cast to float32 first if needed).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        Compute::to_float(x)?.f_layer_norm(
            [self.dim],
            Some(&self.weight),
            Some(&self.bias),
            LAYER_NORM_EPS,
            true,
        )
    }
}

/// What each query may attend to.
#[derive(Debug)]
pub enum AttnMask {
    /// Every token sees every token.
    Full,
    /// Token i sees tokens 0..=i.
    Causal,
    /// Boolean `[B, 1, 1, T]`, true where the key may be attended.
    Keys(Tensor),
}

/// Sizes of one Transformer.
#[derive(Debug, Clone, Copy)]
pub struct BlockShape {
    /// Residual width.
    pub width: i64,
    /// Attention heads.
    pub heads: i64,
    /// MLP hidden width.
    pub mlp_width: i64,
    /// Number of blocks in the tower (scales the residual branch init, as in CLIP).
    pub depth: i64,
    /// The MLP nonlinearity.
    pub activation: Activation,
}

/// Multi-head self-attention with a fused qkv projection.
#[derive(Debug)]
pub struct Attention {
    qkv: Linear,
    proj: Linear,
    heads: i64,
}

/// The two-layer MLP (GELU, or OpenAI's quick GELU).
#[derive(Debug)]
pub struct Mlp {
    fc1: Linear,
    fc2: Linear,
    activation: Activation,
}

/// A pre-norm Transformer block: `x + attn(norm1(x))`, then `x + mlp(norm2(x))`.
#[derive(Debug)]
pub struct Block {
    norm1: LayerNorm,
    attn: Attention,
    norm2: LayerNorm,
    mlp: Mlp,
}

impl Block {
    /// A block named `name` with CLIP's initialisation (attention std width^-½, residual output
    /// projections scaled by (2·depth)^-½, MLP input std (2·width)^-½).
    pub fn new(init: &mut Initializer, name: &str, shape: BlockShape) -> Result<Self, TchError> {
        let w = shape.width;
        let attn_std = (w as f64).powf(-0.5);
        let proj_std = attn_std * ((2 * shape.depth.max(1)) as f64).powf(-0.5);
        let fc_std = ((2 * w) as f64).powf(-0.5);
        Ok(Block {
            norm1: LayerNorm::new(init, &format!("{name}.norm1"), w)?,
            attn: Attention {
                qkv: Linear::normal(init, &format!("{name}.attn.qkv"), w, 3 * w, attn_std, true)?,
                proj: Linear::normal(init, &format!("{name}.attn.proj"), w, w, proj_std, true)?,
                heads: shape.heads,
            },
            norm2: LayerNorm::new(init, &format!("{name}.norm2"), w)?,
            mlp: Mlp {
                fc1: Linear::normal(
                    init,
                    &format!("{name}.mlp.fc1"),
                    w,
                    shape.mlp_width,
                    fc_std,
                    true,
                )?,
                fc2: Linear::normal(
                    init,
                    &format!("{name}.mlp.fc2"),
                    shape.mlp_width,
                    w,
                    proj_std,
                    true,
                )?,
                activation: shape.activation,
            },
        })
    }

    /// `x`: float32 `[B, T, width]`; returns the same shape and kind.
    pub fn forward(
        &self,
        x: &Tensor,
        mask: &AttnMask,
        compute: Compute,
    ) -> Result<Tensor, TchError> {
        let h = self.attn.forward(&self.norm1.forward(x)?, mask, compute)?;
        let x = x.f_add(&Compute::to_float(&h)?)?;
        let h = self.mlp.forward(&self.norm2.forward(&x)?, compute)?;
        x.f_add(&Compute::to_float(&h)?)
    }
}

impl Attention {
    fn forward(&self, x: &Tensor, mask: &AttnMask, compute: Compute) -> Result<Tensor, TchError> {
        let (b, t, w) = x.size3()?;
        let head_dim = w / self.heads;
        // [B, T, 3W] -> [3, B, H, T, head_dim]: q, k and v are strided views, no copy.
        let qkv = self
            .qkv
            .forward(x, compute)?
            .f_view([b, t, 3, self.heads, head_dim])?
            .f_permute([2, 0, 3, 1, 4])?;
        let (q, k, v) = (
            qkv.f_select(0, 0)?,
            qkv.f_select(0, 1)?,
            qkv.f_select(0, 2)?,
        );
        let (attn_mask, causal) = match mask {
            AttnMask::Full => (None, false),
            AttnMask::Causal => (None, true),
            AttnMask::Keys(m) => (Some(m), false),
        };
        let o = Tensor::f_scaled_dot_product_attention(
            &q,
            &k,
            &v,
            attn_mask,
            0.0,
            causal,
            None::<f64>,
            false,
        )?;
        let o = o.f_transpose(1, 2)?.f_reshape([b, t, w])?;
        self.proj.forward(&o, compute)
    }
}

impl Mlp {
    fn forward(&self, x: &Tensor, compute: Compute) -> Result<Tensor, TchError> {
        let h = self.fc1.forward(x, compute)?;
        let h = match self.activation {
            Activation::Gelu => h.f_gelu("none")?,
            Activation::QuickGelu => h.f_mul(&h.f_mul_scalar(1.702)?.f_sigmoid()?)?,
        };
        self.fc2.forward(&h, compute)
    }
}

/// A stack of blocks.
#[derive(Debug)]
pub struct Transformer {
    blocks: Vec<Block>,
}

impl Transformer {
    /// `shape.depth` blocks named `{name}.{i}`.
    pub fn new(init: &mut Initializer, name: &str, shape: BlockShape) -> Result<Self, TchError> {
        let blocks = (0..shape.depth)
            .map(|i| Block::new(init, &format!("{name}.{i}"), shape))
            .collect::<Result<_, _>>()?;
        Ok(Transformer { blocks })
    }

    /// Runs every block.
    pub fn forward(
        &self,
        x: &Tensor,
        mask: &AttnMask,
        compute: Compute,
    ) -> Result<Tensor, TchError> {
        let mut x = x.shallow_clone();
        for block in &self.blocks {
            x = block.forward(&x, mask, compute)?;
        }
        Ok(x)
    }
}

/// A pre-norm cross-attention block: `q + attn(norm_q(q), norm_kv(kv))`, then
/// `q + mlp(norm2(q))`, where the keys and values `kv` are the context — followed by the queries
/// themselves when the block also attends to them (CAE's regressor).
#[derive(Debug)]
pub struct CrossBlock {
    norm_q: LayerNorm,
    norm_kv: LayerNorm,
    q: Linear,
    kv: Linear,
    proj: Linear,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    heads: i64,
    attend_self: bool,
}

impl CrossBlock {
    /// A block named `name` at `width` with `heads` heads.
    pub fn new(
        init: &mut Initializer,
        name: &str,
        width: i64,
        heads: i64,
        attend_self: bool,
    ) -> Result<Self, TchError> {
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
            attend_self,
        })
    }

    /// `q` `[B, Tq, width]` attending to `context` `[B, Tc, width]` (both float32).
    pub fn forward(
        &self,
        q: &Tensor,
        context: &Tensor,
        compute: Compute,
    ) -> Result<Tensor, TchError> {
        let (b, tq, w) = q.size3()?;
        let kv_in = if self.attend_self {
            Tensor::f_cat(&[context.shallow_clone(), q.shallow_clone()], 1)?
        } else {
            context.shallow_clone()
        };
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
