//! Pure scoring of embeddings: retrieval recall and zero-shot class ranks, with **ties counted
//! as misses**.
//!
//! A query's rank is the number of candidates scoring *at least* as high as its match, other than
//! the match itself. With that rule a model whose embeddings are all equal (a collapsed tower)
//! scores 0, not 100 %: counting only strictly higher candidates would rank every tied match
//! first.

use tch::{Kind, Tensor};

use crate::error::{Result, TorchContext, TrainError};

/// Recall at 1, 5 and 10.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Recall {
    /// Fraction of queries whose match ranks first (no other candidate scores as high).
    pub r1: f64,
    /// … among the first 5.
    pub r5: f64,
    /// … among the first 10.
    pub r10: f64,
}

/// Recall@1/5/10 of queries `q` `[N, D]` against candidates `c` `[N, D]` whose match is the same
/// row (cosine similarity of unit rows), ties counted as misses.
pub fn recall(q: &Tensor, c: &Tensor) -> Result<Recall> {
    let run = || -> std::result::Result<Vec<f64>, tch::TchError> {
        let sims = q.f_matmul(&c.f_transpose(0, 1)?)?;
        let diag = sims.f_diagonal(0, 0, 1)?.f_unsqueeze(1)?;
        // Candidates at least as similar as the match, the match itself excluded.
        let rank = sims
            .f_ge_tensor(&diag)?
            .f_sum_dim_intlist(1, false, Kind::Int64)?
            .f_sub_scalar(1)?;
        let mut out = Vec::new();
        for k in [1i64, 5, 10] {
            let hit = rank
                .f_lt(k)?
                .f_to_kind(Kind::Double)?
                .f_mean(Kind::Double)?;
            out.push(hit.f_double_value(&[])?);
        }
        Ok(out)
    };
    let v = run().context(|| "retrieval ranks".into())?;
    match v[..] {
        [r1, r5, r10] => Ok(Recall { r1, r5, r10 }),
        _ => Err(TrainError::Request("retrieval ranks: wrong shape".into())),
    }
}

/// Class scores of `n` samples over `classes` classes, row-major (`n × classes`).
#[derive(Debug, Clone)]
pub struct ClassScores {
    scores: Vec<f32>,
    classes: usize,
}

impl ClassScores {
    /// Cosine similarities of unit image rows `images` `[N, D]` with unit class rows `classes`
    /// `[C, D]`.
    pub fn new(images: &Tensor, classes: &Tensor) -> Result<Self> {
        let run = || -> std::result::Result<(Vec<f32>, usize), tch::TchError> {
            let logits = images.f_matmul(&classes.f_transpose(0, 1)?)?;
            let c = logits.size().last().copied().unwrap_or(0) as usize;
            let flat = logits
                .f_to_kind(Kind::Float)?
                .f_contiguous()?
                .f_view([-1])?;
            Ok((Vec::<f32>::try_from(&flat)?, c))
        };
        let (scores, classes) = run().context(|| "zero-shot scores".into())?;
        Ok(Self { scores, classes })
    }

    /// Scores of sample `i`.
    fn row(&self, i: usize) -> &[f32] {
        &self.scores[i * self.classes..(i + 1) * self.classes]
    }

    /// Classes other than `class` scoring at least as high for sample `i` (0: a clear first).
    pub fn rank(&self, i: usize, class: usize) -> usize {
        let row = self.row(i);
        let target = row[class];
        row.iter()
            .enumerate()
            .filter(|&(j, &s)| j != class && s >= target)
            .count()
    }

    /// The predicted class of sample `i`: the single best one, `None` when several tie for
    /// first (an undecided prediction counts as wrong in every column).
    pub fn predicted(&self, i: usize) -> Option<usize> {
        let row = self.row(i);
        let (best, &top) = row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1))?;
        (row.iter().filter(|&&s| s >= top).count() == 1).then_some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(rows: &[[f32; 2]]) -> Tensor {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let t = Tensor::from_slice(&flat).view([rows.len() as i64, 2]);
        let n = t.norm_scalaropt_dim(2, [1i64].as_slice(), true);
        t / n
    }

    #[test]
    fn collapsed_embeddings_retrieve_nothing() {
        let same = unit(&[[1.0, 0.0]; 20]);
        let r = recall(&same, &same).unwrap();
        assert_eq!((r.r1, r.r5, r.r10), (0.0, 0.0, 0.0));
    }

    #[test]
    fn distinct_embeddings_retrieve_themselves() {
        let a = unit(&[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]);
        let r = recall(&a, &a).unwrap();
        assert_eq!((r.r1, r.r5), (1.0, 1.0));
    }

    #[test]
    fn tied_classes_are_not_predicted() {
        let img = unit(&[[1.0, 0.0], [0.0, 1.0]]);
        let classes = unit(&[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]);
        let s = ClassScores::new(&img, &classes).unwrap();
        // sample 0 ties classes 0 and 1
        assert_eq!(s.predicted(0), None);
        assert_eq!((s.rank(0, 0), s.rank(0, 1)), (1, 1));
        assert_eq!(s.predicted(1), Some(2));
        assert_eq!(s.rank(1, 2), 0);
        assert_eq!(s.rank(1, 0), 2);
    }
}
