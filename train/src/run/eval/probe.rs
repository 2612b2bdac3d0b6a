//! The linear probe: how well a frozen image encoder's features separate the values of each label
//! column, the standard judge of self-supervised encoders (MAE, CAE v2, MUG) and comparable across
//! every objective.
//!
//! Per label column: the pooled image-tower features (before the projection) of the train split's
//! first samples are standardised with their own mean and standard deviation; a softmax regression
//! (weights and bias from zero) is fitted full-batch with Adam (lr 0.01, the given number of steps)
//! on the cross entropy plus `l2 · ‖W‖² / 2`. The penalty `l2` is chosen from [`L2_GRID`] by the
//! accuracy on the last fifth of the fitting samples after fitting on the rest (ties go to the
//! stronger penalty), then the probe is refitted on all of them; the validation samples are
//! classified with it. A validation value the train samples never had counts as a miss.
//! Everything runs on the CPU from a zero start, so the same features give the same probe.

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Reduction, TchError, Tensor};

use crate::error::{Result, TorchContext};
use crate::model::{Initializer, ParamStore};
use crate::optim::{AdamW, AdamWConfig, Gradients};

/// Learning rate of the probe's Adam.
const PROBE_LR: f64 = 0.01;
/// The L2 penalties tried, weakest first.
pub const L2_GRID: [f64; 5] = [0.0, 1e-4, 1e-3, 1e-2, 1e-1];
/// Share of the fitting samples held out to choose the penalty.
const HOLDOUT_SHARE: f64 = 0.2;

/// The probe's accuracy on one label column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeColumn {
    /// The label column.
    pub column: String,
    /// Distinct values among the train samples (the probe's classes).
    pub classes: usize,
    /// Fraction of the labelled validation samples classified right.
    pub accuracy: f64,
    /// 1 / classes.
    pub chance: f64,
    /// Accuracy on the train samples it was fitted on (how far apart the two are shows
    /// overfitting).
    pub train_accuracy: f64,
    /// The L2 penalty chosen on held-out fitting samples (absent in reports made before the
    /// penalty was tuned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l2: Option<f64>,
}

/// Linear probes of every label column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// Width of the pooled features.
    pub feature_width: usize,
    /// Train-split samples fitted on.
    pub train_samples: u64,
    /// Validation samples scored.
    pub val_samples: u64,
    /// Full-batch optimizer steps of each fit.
    pub steps: usize,
    /// Per label column.
    pub columns: Vec<ProbeColumn>,
}

/// Features `[N, D]` (CPU, float32) and each sample's label values (`None`: unlabelled).
#[derive(Debug, Clone, Copy)]
pub struct Split<'a> {
    /// Pooled features.
    pub features: &'a Tensor,
    /// Label values in `columns` order.
    pub labels: &'a [Option<Vec<String>>],
}

/// Fits and scores one probe per label column (see the module docs).
pub fn linear_probe(
    train: Split<'_>,
    val: Split<'_>,
    columns: &[String],
    steps: usize,
) -> Result<ProbeReport> {
    let (x_train, x_val) = standardise(train.features, val.features)
        .context(|| "standardising probe features".into())?;
    // Thousands of tiny ops: one thread is faster than waking a pool for each (and no slower
    // when other processes share the cores).
    let threads = tch::get_num_threads();
    tch::set_num_threads(1);
    let columns = columns
        .iter()
        .enumerate()
        .map(|(c, name)| probe_column(&x_train, train.labels, &x_val, val.labels, c, name, steps))
        .collect::<Result<Vec<_>>>();
    tch::set_num_threads(threads);
    let columns = columns?;
    Ok(ProbeReport {
        feature_width: train.features.size().get(1).copied().unwrap_or(0) as usize,
        train_samples: train.labels.len() as u64,
        val_samples: val.labels.len() as u64,
        steps,
        columns,
    })
}

/// Both feature sets standardised with the train features' statistics.
fn standardise(train: &Tensor, val: &Tensor) -> std::result::Result<(Tensor, Tensor), TchError> {
    let mean = train.f_mean_dim([0i64].as_slice(), true, Kind::Float)?;
    let std = train
        .f_std_dim([0i64].as_slice(), false, true)?
        .f_clamp_min(1e-6)?;
    Ok((
        train.f_sub(&mean)?.f_div(&std)?,
        val.f_sub(&mean)?.f_div(&std)?,
    ))
}

/// Class indices of column `c` (by `classes`, sorted), and which rows have one.
fn targets(labels: &[Option<Vec<String>>], c: usize, classes: &[String]) -> Vec<Option<i64>> {
    labels
        .iter()
        .map(|l| {
            let value = l.as_ref()?.get(c)?;
            classes.binary_search(value).ok().map(|i| i as i64)
        })
        .collect()
}

fn probe_column(
    x_train: &Tensor,
    train_labels: &[Option<Vec<String>>],
    x_val: &Tensor,
    val_labels: &[Option<Vec<String>>],
    c: usize,
    name: &str,
    steps: usize,
) -> Result<ProbeColumn> {
    let mut classes: Vec<String> = train_labels
        .iter()
        .filter_map(|l| l.as_ref()?.get(c).cloned())
        .collect();
    classes.sort();
    classes.dedup();
    let fit_rows = targets(train_labels, c, &classes);
    let fitted = || -> std::result::Result<(f64, Tensor, Tensor), TchError> {
        let l2 = choose_l2(x_train, &fit_rows, classes.len(), steps)?;
        let (weight, bias) = fit(x_train, &fit_rows, classes.len(), steps, l2)?;
        Ok((l2, weight, bias))
    };
    let (l2, weight, bias) = fitted().context(|| format!("fitting the linear probe of {name}"))?;
    let accuracy = |x: &Tensor, rows: &[Option<i64>]| -> std::result::Result<f64, TchError> {
        let predicted =
            Vec::<i64>::try_from(&x.f_linear(&weight, Some(&bias))?.f_argmax(1, false)?)?;
        let labelled = rows.len().max(1) as f64;
        let hits = rows
            .iter()
            .zip(&predicted)
            .filter(|(truth, p)| **truth == Some(**p))
            .count();
        Ok(hits as f64 / labelled)
    };
    // Validation samples without a label are left out; those with a value unseen in training stay
    // in as misses.
    let val_rows: Vec<(usize, Option<i64>)> = val_labels
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let value = l.as_ref()?.get(c)?;
            Some((i, classes.binary_search(value).ok().map(|k| k as i64)))
        })
        .collect();
    let index = Tensor::from_slice(&val_rows.iter().map(|(i, _)| *i as i64).collect::<Vec<_>>());
    let score = || -> std::result::Result<(f64, f64), TchError> {
        let labelled: Vec<Option<i64>> = val_rows.iter().map(|(_, t)| *t).collect();
        let val = if labelled.is_empty() {
            0.0
        } else {
            accuracy(&x_val.f_index_select(0, &index)?, &labelled)?
        };
        let (rows, truth) = labelled_rows(&fit_rows);
        let train = accuracy(&x_train.f_index_select(0, &rows)?, &truth)?;
        Ok((val, train))
    };
    let (accuracy, train_accuracy) =
        score().context(|| format!("scoring the linear probe of {name}"))?;
    Ok(ProbeColumn {
        column: name.to_string(),
        classes: classes.len(),
        accuracy,
        chance: 1.0 / classes.len().max(1) as f64,
        train_accuracy,
        l2: Some(l2),
    })
}

/// The indices of the rows with a class, and those classes.
fn labelled_rows(rows: &[Option<i64>]) -> (Tensor, Vec<Option<i64>>) {
    let (index, truth): (Vec<i64>, Vec<Option<i64>>) = rows
        .iter()
        .enumerate()
        .filter_map(|(i, t)| t.map(|t| (i as i64, Some(t))))
        .unzip();
    (Tensor::from_slice(&index), truth)
}

/// The penalty of [`L2_GRID`] with the best accuracy on the last fifth of the labelled rows after
/// fitting on the others.
fn choose_l2(
    x: &Tensor,
    rows: &[Option<i64>],
    classes: usize,
    steps: usize,
) -> std::result::Result<f64, TchError> {
    let labelled: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].is_some()).collect();
    let cut = ((labelled.len() as f64) * (1.0 - HOLDOUT_SHARE)).round() as usize;
    let Some(&first_held) = labelled.get(cut) else {
        return Ok(L2_GRID[0]);
    };
    let (fit_on, held): (Vec<Option<i64>>, Vec<Option<i64>>) = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if i < first_held {
                (*r, None)
            } else {
                (None, *r)
            }
        })
        .unzip();
    let (index, truth) = labelled_rows(&held);
    let x_held = x.f_index_select(0, &index)?;
    let mut best = (f64::NEG_INFINITY, L2_GRID[0]);
    for l2 in L2_GRID {
        let (weight, bias) = fit(x, &fit_on, classes, steps, l2)?;
        let predicted =
            Vec::<i64>::try_from(&x_held.f_linear(&weight, Some(&bias))?.f_argmax(1, false)?)?;
        let hits = truth
            .iter()
            .zip(&predicted)
            .filter(|(t, p)| **t == Some(**p))
            .count();
        let accuracy = hits as f64 / truth.len().max(1) as f64;
        if accuracy >= best.0 {
            best = (accuracy, l2);
        }
    }
    Ok(best.1)
}

/// Softmax-regression weights `[classes, D]` and bias `[classes]` fitted on the labelled rows with
/// the penalty `l2 · ‖W‖² / 2`.
fn fit(
    x: &Tensor,
    rows: &[Option<i64>],
    classes: usize,
    steps: usize,
    l2: f64,
) -> std::result::Result<(Tensor, Tensor), TchError> {
    let d = x.size().get(1).copied().unwrap_or(0);
    let mut init = Initializer::new(0, Device::Cpu);
    let weight = init.constant("probe.weight", &[classes as i64, d], 0.0)?;
    let bias = init.constant("probe.bias", &[classes as i64], 0.0)?;
    let store: ParamStore = init.finish();
    let (index, truth) = labelled_rows(rows);
    if truth.is_empty() || classes < 2 {
        return Ok((weight.f_detach()?, bias.f_detach()?));
    }
    let x = x.f_index_select(0, &index)?;
    let y = Tensor::from_slice(&truth.iter().map(|t| t.unwrap_or(0)).collect::<Vec<_>>());
    let config = AdamWConfig {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    };
    let torch = |e: crate::error::TrainError| TchError::Kind(e.to_string());
    let mut optim = AdamW::new(&store, config).map_err(torch)?;
    for _ in 0..steps {
        let loss = x
            .f_linear(&weight, Some(&bias))?
            .f_cross_entropy_loss::<Tensor>(&y, None, Reduction::Mean, -100, 0.0)?
            .f_add(
                &weight
                    .f_square()?
                    .f_sum(Kind::Float)?
                    .f_mul_scalar(l2 / 2.0)?,
            )?;
        let grads = Gradients::backward(&loss, &store).map_err(torch)?;
        optim.step(&store, &grads, PROBE_LR).map_err(torch)?;
    }
    Ok((weight.f_detach()?, bias.f_detach()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(values: &[&str]) -> Vec<Option<Vec<String>>> {
        values.iter().map(|v| Some(vec![v.to_string()])).collect()
    }

    #[test]
    fn separable_features_are_probed_perfectly_and_noise_at_chance() {
        // feature 0 says the class; feature 1 is noise
        let n = 200;
        let class: Vec<&str> = (0..n).map(|i| if i % 2 == 0 { "a" } else { "b" }).collect();
        let values: Vec<f32> = (0..n)
            .flat_map(|i| {
                let sign = if i % 2 == 0 { 1.0 } else { -1.0 };
                [
                    sign * 2.0 + ((i * 7919) % 13) as f32 * 0.01,
                    ((i * 104729) % 17) as f32,
                ]
            })
            .collect();
        let x = Tensor::from_slice(&values).view([n as i64, 2]);
        let y = labels(&class);
        let report = linear_probe(
            Split {
                features: &x,
                labels: &y,
            },
            Split {
                features: &x,
                labels: &y,
            },
            &["label".into()],
            100,
        )
        .unwrap();
        let c = &report.columns[0];
        assert_eq!((c.classes, c.accuracy, c.train_accuracy), (2, 1.0, 1.0));
        // a value never seen in training is a miss; an unlabelled sample is left out
        let mut val_labels = y.clone();
        val_labels[0] = Some(vec!["zzz".into()]);
        val_labels[1] = None;
        let report = linear_probe(
            Split {
                features: &x,
                labels: &y,
            },
            Split {
                features: &x,
                labels: &val_labels,
            },
            &["label".into()],
            100,
        )
        .unwrap();
        assert!((report.columns[0].accuracy - 198.0 / 199.0).abs() < 1e-12);
    }
}
