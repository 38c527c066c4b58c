//! The one place that names the dfdx device and tensor types the engine computes with.
//!
//! Everything else says `Dev`, `Vector`, `Matrix`, so the `cuda` feature is a change here (the
//! device type and the host-buffer helpers below), not a hunt through the code.

use dfdx::tensor::Tensor;

#[cfg(not(feature = "cuda"))]
pub type Dev = dfdx::tensor::Cpu;
#[cfg(feature = "cuda")]
pub type Dev = dfdx::tensor::Cuda;
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

/// Reads a device buffer (a gradient, an optimizer moment) on the host: in place on the CPU,
/// through a copy on CUDA.
#[cfg(not(feature = "cuda"))]
pub fn read_buffer<R>(b: &Buffer, f: impl FnOnce(&[f32]) -> R) -> R {
    f(b)
}

/// Changes a device buffer on the host: in place on the CPU, through a copy there and back on
/// CUDA.
#[cfg(not(feature = "cuda"))]
pub fn write_buffer<R>(b: &mut Buffer, f: impl FnOnce(&mut [f32]) -> R) -> R {
    f(b)
}

#[cfg(feature = "cuda")]
pub fn read_buffer<R>(b: &Buffer, f: impl FnOnce(&[f32]) -> R) -> R {
    let host = b
        .device()
        .dtoh_sync_copy(&**b)
        .expect("copy a device buffer to the host");
    f(&host)
}

#[cfg(feature = "cuda")]
pub fn write_buffer<R>(b: &mut Buffer, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let dev = b.device();
    let mut host = dev
        .dtoh_sync_copy(&**b)
        .expect("copy a device buffer to the host");
    let r = f(&mut host);
    dev.htod_sync_copy_into(&host, &mut **b)
        .expect("copy a host buffer to the device");
    r
}

/// Send + Sync where the device allows it: CPU tensors cross threads (stages run side by
/// side); cudarc 0.9's CUDA handles do not, so a CUDA build runs one stage at a time.
#[cfg(not(feature = "cuda"))]
pub trait MaybeSync: Send + Sync {}
#[cfg(not(feature = "cuda"))]
impl<T: Send + Sync + ?Sized> MaybeSync for T {}
#[cfg(feature = "cuda")]
pub trait MaybeSync {}
#[cfg(feature = "cuda")]
impl<T: ?Sized> MaybeSync for T {}

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
