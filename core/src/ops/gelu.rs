//! Exact GELU, `x * Phi(x)` with the error function (PyTorch's `nn.GELU()` default, used by
//! timm's ViT).
//!
//! Why our own: dfdx 0.13's `accurate_gelu` computes the right values but a wrong derivative
//! (e.g. at x = -0.5 it returns 0.060 where the true slope is 0.133), which silently slows and
//! skews training. `tests/gradients.rs` checks this op against finite differences.

use crate::device::{read_buffer, write_buffer, Dev};
use dfdx::prelude::*;

const FRAC_1_SQRT_2: f64 = std::f64::consts::FRAC_1_SQRT_2;
/// 1 / sqrt(2 pi)
const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// `x Phi(x)` and its slope `Phi(x) + x phi(x)`, with one erf for both (in float64, then
/// rounded: within float32 rounding of PyTorch's float32 erf, see tests/pytorch_parity.rs).
fn value_and_slope(x: f32) -> (f32, f32) {
    let x = x as f64;
    let cdf = 0.5 * (1.0 + libm::erf(x * FRAC_1_SQRT_2));
    let pdf = INV_SQRT_2PI * (-0.5 * x * x).exp();
    ((x * cdf) as f32, (cdf + x * pdf) as f32)
}

pub fn gelu<S: Shape, T: Tape<f32, Dev>>(x: Tensor<S, f32, Dev, T>) -> Tensor<S, f32, Dev, T> {
    // A contiguous input makes the logical order (as_vec) the gradient buffer's order.
    let shape = *x.shape();
    let x = x.reshape_like(&shape);
    let (inp, mut tape) = x.split_tape();
    let values = inp.as_vec();
    // The slope is kept for the backward pass: computed here, Phi(x) is already at hand.
    // erf is the expensive part (a fifth of a small model's step on one core): split it over
    // the cores; every element is computed exactly as before.
    let (activated, slope): (Vec<f32>, Vec<f32>) = {
        use rayon::prelude::*;
        values
            .par_iter()
            .with_min_len(4096)
            .map(|&v| value_and_slope(v))
            .unzip()
    };
    drop(values);
    let out = crate::device::tensor_from_slice(inp.device(), &activated, shape);
    let out_key = out.clone();
    tape.add_backward_op(move |grads| {
        let grad_out = read_buffer(grads.get_or_alloc_mut(&out_key)?, |g| g.to_vec());
        write_buffer(grads.get_or_alloc_mut(&inp)?, |grad_in| {
            for ((gi, go), s) in grad_in.iter_mut().zip(&grad_out).zip(&slope) {
                *gi += go * s;
            }
        });
        Ok(())
    });
    out.put_tape(tape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_known_values_and_slope() {
        // torch.nn.functional.gelu values
        assert!((value_and_slope(1.0).0 - 0.841_344_7).abs() < 1e-6);
        assert!((value_and_slope(-0.5).0 + 0.154_268_84).abs() < 1e-6);
        for x in [-3.0f32, -0.5, 0.0, 0.3, 1.7] {
            let fd = (value_and_slope(x + 1e-2).0 - value_and_slope(x - 1e-2).0) / 2e-2;
            assert!((value_and_slope(x).1 - fd).abs() < 1e-3, "slope at {x}");
        }
    }
}
