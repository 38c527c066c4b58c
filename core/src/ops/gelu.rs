//! Exact GELU, `x * Phi(x)` with the error function (PyTorch's `nn.GELU()` default, used by
//! timm's ViT), as a dfdx tape operation: for the composed block (CUDA) and plugin layers.
//! On the CPU the arithmetic is `fastmath::gelu_and_slope`, the fused block's, over host
//! memory; on CUDA the same formula from dfdx tensor operations, so nothing leaves the GPU.
//!
//! Why our own: dfdx 0.13's `accurate_gelu` computes the right values but a wrong derivative
//! (e.g. at x = -0.5 it returns 0.060 where the true slope is 0.133), which silently slows and
//! skews training. `tests/gradients.rs` checks this op against finite differences.

use crate::device::Dev;
#[cfg(not(feature = "cuda"))]
use crate::device::{host_values, read_buffer, write_buffer};
use dfdx::prelude::*;

/// On CUDA the data stays on the device: [`gelu_from_tensor_ops`].
#[cfg(feature = "cuda")]
pub fn gelu<S: Shape, T: Tape<f32, Dev>>(x: Tensor<S, f32, Dev, T>) -> Tensor<S, f32, Dev, T> {
    gelu_from_tensor_ops(x)
}

/// GELU from dfdx tensor operations alone, for devices where a host round trip would cost more
/// than the work (CUDA). Same formula as `fastmath::gelu_and_slope` (the Abramowitz-Stegun
/// tail and one exp); the gradient comes from the identity
/// `out = x Phi + (x (x0 phi) - x0 (x0 phi))`, where `x0` is `x` without its tape and `Phi`,
/// `phi` are computed from `x0`: its value is `x Phi(x)` (the bracket is exactly zero) and its
/// derivative `Phi(x) + x phi(x)`, the true slope (not dfdx's `accurate_gelu` backward).
pub fn gelu_from_tensor_ops<S: Shape, D: Device<f32>, T: Tape<f32, D>>(
    x: Tensor<S, f32, D, T>,
) -> Tensor<S, f32, D, T> {
    let x0 = x.retaped::<NoneTape>();
    let e = (x0.clone().square() * -0.5).exp();
    let t = (x0.clone().abs() * std::f32::consts::FRAC_1_SQRT_2 * 0.327_591_1 + 1.0).recip();
    let poly = ((((t.clone() * 1.061_405_4 + -1.453_152) * t.clone() + 1.421_413_7) * t.clone()
        + -0.284_496_74)
        * t.clone()
        + 0.254_829_6)
        * t;
    let tail = poly * e.clone() * 0.5;
    let cdf = x0.lt(0.0).choose(tail.clone(), tail.negate() + 1.0);
    let x_phi = x0.clone() * e * 0.398_942_3;
    let again = x.retaped::<T>();
    x * cdf + (again * x_phi.clone() - x0 * x_phi)
}

/// On the CPU: one pass over host memory, in parallel.
#[cfg(not(feature = "cuda"))]
pub fn gelu<S: Shape, T: Tape<f32, Dev>>(x: Tensor<S, f32, Dev, T>) -> Tensor<S, f32, Dev, T> {
    // A contiguous input makes the logical order (as_vec) the gradient buffer's order.
    let shape = *x.shape();
    let x = x.reshape_like(&shape);
    let (inp, mut tape) = x.split_tape();
    // The slope is kept for the backward pass: computed here, Phi(x) is already at hand.
    let mut activated = host_values(&inp);
    let mut slope = super::rows::Filled::new(activated.len());
    {
        use rayon::prelude::*;
        activated
            .par_chunks_mut(1 << 14)
            .zip(slope.parts().par_chunks_mut(1 << 14))
            .for_each(|(a, s)| super::fastmath::gelu_in_place(a, s));
    }
    // SAFETY: the chunks cover every element, each written by gelu_in_place
    let slope = unsafe { slope.assume_filled() };
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
    use crate::ops::fastmath::gelu_and_slope;

    #[test]
    fn tensor_op_gelu_gives_the_host_kernels_values_and_slopes() {
        // the CUDA build's GELU, run here on dfdx's CPU device
        let dev = dfdx::tensor::Cpu::default();
        let xs: Vec<f32> = (0..801).map(|i| (i as f32 - 400.0) * 0.0151).collect();
        let x = dev.tensor_from_vec(xs.clone(), (xs.len(),));
        let out = gelu_from_tensor_ops(x.leaky_trace());
        let values = out.as_vec();
        let slopes = out.sum().backward().get(&x).as_vec();
        for ((x, v), s) in xs.iter().zip(&values).zip(&slopes) {
            // the tensor operations round each multiply and add apart
            let (want_v, want_s) = gelu_and_slope::<false>(*x);
            assert!((v - want_v).abs() < 1e-6, "gelu({x}) = {v}, host {want_v}");
            assert!(
                (s - want_s).abs() < 1e-6,
                "slope at {x} = {s}, host {want_s}"
            );
        }
    }
}
