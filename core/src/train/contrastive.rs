//! The supervised contrastive loss (Khosla et al. 2020) as InfoPro trains its local modules
//! with it: features L2-normalised, every sample an anchor, the other samples of its class
//! its positives, temperature 0.07, `loss = -(T / T_base) * mean over anchors of the mean
//! log-probability of its positives` (with `T_base = T`). An anchor with no positive in the
//! batch contributes 0 and still counts in the mean, as in the reference's `SupConLoss`.

use super::loss::Loss;
use crate::device::{tensor_from_slice, Act, Rows};
use crate::model::Traced;
use dfdx::prelude::*;

/// The loss of `features`, one token of them per sample (batch, 1, dim) as a head gives them,
/// traced, for samples labelled `labels`.
pub fn supervised_contrastive(features: Act<Traced>, labels: &[usize], temperature: f32) -> Loss {
    let (b, t, d) = *features.shape();
    assert_eq!(t, 1, "one feature token per sample");
    let features: Rows<Traced> = features.reshape_like(&(b, d));
    assert_eq!(labels.len(), b, "one label per feature row");
    let dev = features.device().clone();
    // F.normalize: x / max(|x|, 1e-12)
    let (f, tape) = features.split_tape();
    let norm = f
        .clone()
        .put_tape(tape)
        .square()
        .sum::<(usize,), Axis<1>>()
        .sqrt()
        .maximum(dev.ones_like(&(b,)) * 1e-12);
    let z = f.retaped::<Traced>() / norm.broadcast_like::<_, Axis<1>>(&(b, d));
    // similarities of every anchor to every sample; the anchor itself is left out of the
    // softmax's denominator by a large negative shift (its weight below is 0 too)
    let (z, tape) = z.split_tape();
    // dfdx needs the two sides of a binary op to be different tensors: `* 1.0` makes the
    // right side one (its gradient still reaches z)
    let zt = (z.retaped::<Traced>() * 1.0).permute::<_, Axes2<1, 0>>();
    let gram = z.put_tape(tape).matmul(zt);
    let mut self_mask = vec![0f32; b * b];
    let mut weights = vec![0f32; b * b];
    let mut anchor_weight = vec![0f32; b];
    for i in 0..b {
        self_mask[i * b + i] = -1e9;
        let positives = (0..b).filter(|&j| j != i && labels[j] == labels[i]).count();
        for j in (0..b).filter(|&j| j != i && labels[j] == labels[i]) {
            weights[i * b + j] = 1.0 / (positives as f32 * b as f32);
        }
        if positives > 0 {
            anchor_weight[i] = 1.0 / b as f32;
        }
    }
    let logits = gram / temperature + tensor_from_slice(&dev, &self_mask, (b, b));
    let (logits, tape) = logits.split_tape();
    let lse = logits
        .clone()
        .put_tape(tape)
        .logsumexp::<(usize,), Axis<1>>();
    // -sum_ij w_ij (logit_ij - lse_i) = -sum_ij w_ij logit_ij + sum_i (sum_j w_ij) lse_i
    let pulled = (logits.retaped::<Traced>() * tensor_from_slice(&dev, &weights, (b, b))).sum();
    let pushed = (lse * tensor_from_slice(&dev, &anchor_weight, (b,))).sum();
    // T / T_base = 1 at the reference's temperatures
    pushed - pulled
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Dev;

    /// The reference's formula in f64: anchors, positives, the log-softmax without the anchor.
    fn by_hand(features: &[f64], d: usize, labels: &[usize], t: f64) -> f64 {
        let b = labels.len();
        let z: Vec<Vec<f64>> = (0..b)
            .map(|i| {
                let row = &features[i * d..(i + 1) * d];
                let n = row.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
                row.iter().map(|v| v / n).collect()
            })
            .collect();
        let dot = |i: usize, j: usize| (0..d).map(|k| z[i][k] * z[j][k]).sum::<f64>() / t;
        let mut total = 0.0;
        for i in 0..b {
            let denom: f64 = (0..b).filter(|&k| k != i).map(|k| dot(i, k).exp()).sum();
            let pos: Vec<usize> = (0..b)
                .filter(|&j| j != i && labels[j] == labels[i])
                .collect();
            if pos.is_empty() {
                continue;
            }
            let mean_log_prob: f64 =
                pos.iter().map(|&j| dot(i, j) - denom.ln()).sum::<f64>() / pos.len() as f64;
            total += -mean_log_prob;
        }
        total / b as f64
    }

    fn loss_of(dev: &Dev, features: &[f32], d: usize, labels: &[usize], t: f32) -> (f32, Vec<f32>) {
        let b = labels.len();
        let x = tensor_from_slice(dev, features, (b, 1, d));
        let loss = supervised_contrastive(x.leaky_trace(), labels, t);
        let value = loss.array();
        let grads = loss.backward();
        (value, grads.get(&x).as_vec())
    }

    #[test]
    fn equals_the_reference_formula_by_hand_and_its_gradient_is_the_slope() {
        let dev = crate::device::new_device(0);
        // 5 samples, 3 classes; class 2 has one sample (an anchor without positives)
        let labels = [0, 1, 0, 1, 2];
        let d = 4;
        let features: Vec<f32> = (0..20).map(|k| ((k * 7 % 11) as f32 - 5.0) / 3.0).collect();
        let want = by_hand(
            &features.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            d,
            &labels,
            0.07,
        );
        let (got, grad) = loss_of(&dev, &features, d, &labels, 0.07);
        assert!(
            ((got as f64) - want).abs() < 1e-4 * want.abs().max(1.0),
            "{got} vs {want}"
        );
        // the gradient through both uses of the normalised features (the Gram matrix's two
        // sides) against central differences of the hand formula
        let h = 1e-3;
        for k in [0, 5, 13, 19] {
            let mut up: Vec<f64> = features.iter().map(|&v| v as f64).collect();
            let mut down = up.clone();
            up[k] += h;
            down[k] -= h;
            let slope =
                (by_hand(&up, d, &labels, 0.07) - by_hand(&down, d, &labels, 0.07)) / (2.0 * h);
            assert!(
                (grad[k] as f64 - slope).abs() < 2e-2 * slope.abs().max(0.1),
                "feature {k}: gradient {} vs slope {slope}",
                grad[k]
            );
        }
        // all one class: every other sample is a positive; all different: the loss is 0
        let (got, _) = loss_of(&dev, &features, d, &[0; 5], 0.5);
        let want = by_hand(
            &features.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            d,
            &[0; 5],
            0.5,
        );
        assert!(((got as f64) - want).abs() < 1e-4 * want.abs().max(1.0));
        let (got, grad) = loss_of(&dev, &features, d, &[0, 1, 2, 3, 4], 0.07);
        assert_eq!(got, 0.0);
        assert!(grad.iter().all(|&g| g == 0.0));
    }
}
