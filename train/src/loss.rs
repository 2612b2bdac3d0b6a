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
    symmetric(&logits, &logits.f_tr()?, &labels)
}

/// The rows `offset .. offset + b` of the symmetric InfoNCE over a global batch (open_clip's
/// `local_loss`): `image_rows` / `text_rows` (`[b, E]`) are those rows' embeddings, `all_images`
/// / `all_texts` (`[N, E]`) every row's, the rows included. The loss is the mean over these `b`
/// rows of the image→text and text→image cross entropies against all `N` candidates, so the mean
/// of the ranks' values is the global [`clip_loss`]; the logits are `[b, N]`, linear in the local
/// batch.
pub fn clip_loss_rows(
    image_rows: &Tensor,
    text_rows: &Tensor,
    all_images: &Tensor,
    all_texts: &Tensor,
    logit_scale: &Tensor,
    offset: i64,
) -> Result<ContrastiveLoss, TchError> {
    let per_image = image_rows
        .f_matmul(&all_texts.f_tr()?)?
        .f_mul(logit_scale)?;
    let per_text = text_rows
        .f_matmul(&all_images.f_tr()?)?
        .f_mul(logit_scale)?;
    let b = per_image.size().first().copied().unwrap_or(0);
    let labels = Tensor::f_arange_start(offset, offset + b, (Kind::Int64, per_image.device()))?;
    symmetric(&per_image, &per_text, &labels)
}

/// The mean of both directions' cross entropies and top-1 accuracies, row `i` of each logits
/// matrix having its positive at column `labels[i]`.
fn symmetric(
    per_image: &Tensor,
    per_text: &Tensor,
    labels: &Tensor,
) -> Result<ContrastiveLoss, TchError> {
    let ce =
        |l: &Tensor| l.f_cross_entropy_loss::<Tensor>(labels, None, Reduction::Mean, -100, 0.0);
    let loss = ce(per_image)?.f_add(&ce(per_text)?)?.f_div_scalar(2.0)?;
    let accuracy = tch::no_grad(|| -> Result<Tensor, TchError> {
        let hits = |l: &Tensor| {
            l.f_argmax(1, false)?
                .f_eq_tensor(labels)?
                .f_to_kind(Kind::Float)?
                .f_mean(Kind::Float)
        };
        hits(per_image)?.f_add(&hits(per_text)?)?.f_div_scalar(2.0)
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

    #[test]
    fn the_mean_of_the_row_losses_is_the_batch_loss() {
        tch::manual_seed(3);
        let opts = (Kind::Float, tch::Device::Cpu);
        let norm = |t: Tensor| &t / t.norm_scalaropt_dim(2, [1], true);
        let (i, t) = (
            norm(Tensor::randn([6, 5], opts)),
            norm(Tensor::randn([6, 5], opts)),
        );
        let scale = Tensor::from(7.0f32);
        let whole = clip_loss(&i, &t, &scale).unwrap();
        let (mut loss, mut acc) = (0.0, 0.0);
        for r in 0..3 {
            let part = clip_loss_rows(
                &i.narrow(0, 2 * r, 2),
                &t.narrow(0, 2 * r, 2),
                &i,
                &t,
                &scale,
                2 * r,
            )
            .unwrap();
            loss += part.loss.double_value(&[]) / 3.0;
            acc += part.accuracy.double_value(&[]) / 3.0;
        }
        assert!((loss - whole.loss.double_value(&[])).abs() < 1e-5);
        assert!((acc - whole.accuracy.double_value(&[])).abs() < 1e-6);
    }
}
