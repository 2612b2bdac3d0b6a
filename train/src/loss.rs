//! The contrastive objective: symmetric InfoNCE over the batch (CLIP / FLIP), and in-batch
//! retrieval accuracy for metrics.
//!
//! With unit-norm embeddings `I`, `T` and scale `s`, `logits = s · I Tᵀ`; pair `i` is the positive
//! of row and column `i`. The loss is the mean of the image→text and text→image cross entropies.

use tch::{Kind, Reduction, TchError, Tensor};

/// Loss and accuracy of one batch.
#[derive(Debug)]
pub struct ContrastiveLoss {
    /// Scalar float32, differentiable.
    pub loss: Tensor,
    /// Scalar float32 in [0, 1], no gradient: the mean of image→text and text→image top-1
    /// retrieval accuracy within the batch.
    pub accuracy: Tensor,
}

/// Symmetric InfoNCE of L2-normalised `image_embeds` and `text_embeds` (`[B, E]` each) at
/// `logit_scale` (the multiplier, not its log).
pub fn clip_loss(
    image_embeds: &Tensor,
    text_embeds: &Tensor,
    logit_scale: &Tensor,
) -> Result<ContrastiveLoss, TchError> {
    let logits = image_embeds
        .f_matmul(&text_embeds.f_tr()?)?
        .f_mul(logit_scale)?;
    let b = logits.size().first().copied().unwrap_or(0);
    let labels = Tensor::f_arange(b, (Kind::Int64, logits.device()))?;
    let ce =
        |l: &Tensor| l.f_cross_entropy_loss::<Tensor>(&labels, None, Reduction::Mean, -100, 0.0);
    let logits_t = logits.f_tr()?;
    let loss = ce(&logits)?.f_add(&ce(&logits_t)?)?.f_div_scalar(2.0)?;
    let accuracy = tch::no_grad(|| -> Result<Tensor, TchError> {
        let hits = |l: &Tensor| {
            l.f_argmax(1, false)?
                .f_eq_tensor(&labels)?
                .f_to_kind(Kind::Float)?
                .f_mean(Kind::Float)
        };
        hits(&logits)?.f_add(&hits(&logits_t)?)?.f_div_scalar(2.0)
    })?;
    Ok(ContrastiveLoss { loss, accuracy })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_pairs_score_full_accuracy_and_low_loss() {
        let e = Tensor::eye(4, (Kind::Float, tch::Device::Cpu));
        let out = clip_loss(&e, &e, &Tensor::from(100.0f32)).unwrap();
        assert!(out.loss.double_value(&[]) < 1e-6);
        assert_eq!(out.accuracy.double_value(&[]), 1.0);
        // uniform similarities: loss = ln(B), both directions
        let u = Tensor::ones([4, 4], (Kind::Float, tch::Device::Cpu)) / 2.0;
        let out = clip_loss(&u, &u, &Tensor::from(1.0f32)).unwrap();
        assert!((out.loss.double_value(&[]) - 4f64.ln()).abs() < 1e-6);
    }
}
