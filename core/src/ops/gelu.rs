//! Exact GELU, `x * Phi(x)` with the error function (PyTorch's `nn.GELU()` default, used by
//! timm's ViT), as a dfdx tape operation: for the composed block (CUDA) and plugin layers.
//! The arithmetic is `fastmath::gelu_and_slope`, the fused CPU block's.
//!
//! Why our own: dfdx 0.13's `accurate_gelu` computes the right values but a wrong derivative
//! (e.g. at x = -0.5 it returns 0.060 where the true slope is 0.133), which silently slows and
//! skews training. `tests/gradients.rs` checks this op against finite differences.

use crate::device::{host_values, read_buffer, write_buffer, Dev};
use dfdx::prelude::*;

pub fn gelu<S: Shape, T: Tape<f32, Dev>>(x: Tensor<S, f32, Dev, T>) -> Tensor<S, f32, Dev, T> {
    // A contiguous input makes the logical order (as_vec) the gradient buffer's order.
    let shape = *x.shape();
    let x = x.reshape_like(&shape);
    let (inp, mut tape) = x.split_tape();
    // The slope is kept for the backward pass: computed here, Phi(x) is already at hand.
    let mut activated = host_values(&inp);
    let mut slope = vec![0.0; activated.len()];
    {
        use rayon::prelude::*;
        activated
            .par_chunks_mut(1 << 14)
            .zip(slope.par_chunks_mut(1 << 14))
            .for_each(|(a, s)| super::fastmath::gelu_in_place(a, s));
    }
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
