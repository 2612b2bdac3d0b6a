//! Fixed 2-D sin-cos position embeddings, exactly as MAE's `get_2d_sincos_pos_embed` (which FLIP
//! uses): for the patch in row `r`, column `c` of a `G × G` grid and width `D` (a multiple of 4),
//! with `ω_k = 1 / 10000^(k / (D/4))` for `k < D/4`:
//!
//! ```text
//! [ sin(c·ω) | cos(c·ω) | sin(r·ω) | cos(r·ω) ]     each part D/4 wide
//! ```
//!
//! Patches are numbered row-major (`r·G + c`), the order in which the image tower cuts them.

/// The `[G·G, D]` table as row-major float32 values (computed in f64, rounded once).
pub fn sincos_2d(grid: usize, width: usize) -> Vec<f32> {
    let quarter = width / 4;
    let omega: Vec<f64> = (0..quarter)
        .map(|k| 1.0 / 10000f64.powf(k as f64 / quarter as f64))
        .collect();
    let mut out = Vec::with_capacity(grid * grid * width);
    for row in 0..grid {
        for col in 0..grid {
            for pos in [col as f64, row as f64] {
                out.extend(omega.iter().map(|w| (pos * w).sin() as f32));
                out.extend(omega.iter().map(|w| (pos * w).cos() as f32));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_is_zeros_then_ones() {
        let t = sincos_2d(2, 8);
        assert_eq!(&t[..8], &[0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0]);
        // patch 1 = row 0, column 1: sin(1), sin(1/100), cos(1), cos(1/100), then row 0
        let p1 = &t[8..16];
        assert!((p1[0] - 1f32.sin()).abs() < 1e-7 && (p1[1] - 0.01f32.sin()).abs() < 1e-7);
        assert_eq!(&p1[4..], &[0.0, 0.0, 1.0, 1.0]);
    }
}
