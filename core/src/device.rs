//! The one place that names the dfdx device and tensor types the engine computes with.
//!
//! Everything else says `Dev`, `Vector`, `Matrix`, so moving to CUDA is a change here (plus the
//! host-buffer helpers below), not a hunt through the code.

use dfdx::tensor::{Cpu, Tensor};

pub type Dev = Cpu;
pub type Vector = Tensor<(usize,), f32, Dev>;
pub type Matrix = Tensor<(usize, usize), f32, Dev>;
/// Activations: (batch, tokens, width).
pub type Act<T> = Tensor<(usize, usize, usize), f32, Dev, T>;
/// Rows of a flattened activation: (batch * tokens, width).
pub type Rows<T> = Tensor<(usize, usize), f32, Dev, T>;
/// dfdx's storage type for one buffer on this device (a gradient, an optimizer moment).
pub type Buffer = <Dev as dfdx::tensor::Storage<f32>>::Vec;

/// A device with the allocation cache on: dfdx 0.13 leaves it off, and it is worth ~17% speed.
pub fn new_device(seed: u64) -> Dev {
    use dfdx::tensor::Cache;
    let dev = Dev::seed_from_u64(seed);
    dev.enable_cache();
    dev
}

/// Host access to device buffers (gradients, optimizer moments). On the CPU these are plain
/// slices; a CUDA build implements the same three functions with copies.
pub fn buffer_as_slice(b: &Buffer) -> &[f32] {
    b
}

pub fn buffer_as_mut_slice(b: &mut Buffer) -> &mut [f32] {
    b
}

/// A tensor holding a copy of `data`. Use this instead of `tensor_from_vec` on hot paths:
/// dfdx's cache keeps every dropped buffer for reuse but `tensor_from_vec` never takes from it,
/// so each batch built that way would leave its buffer behind (gigabytes per epoch on a full
/// dataset). `zeros_like` takes a cached buffer of the right size when there is one.
pub fn tensor_from_slice<S: dfdx::shapes::Shape>(
    dev: &Dev,
    data: &[f32],
    shape: S,
) -> Tensor<S, f32, Dev> {
    use dfdx::tensor::ZerosTensor;
    let mut t = dev.zeros_like(&shape);
    t.copy_from(data);
    t
}
