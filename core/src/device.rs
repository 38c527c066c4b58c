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
    keep_freed_buffers();
    #[cfg(not(feature = "cuda"))]
    let dev = Dev::seed_from_u64(seed);
    #[cfg(feature = "cuda")]
    let dev = {
        // each rank on a machine takes its own GPU (one visible GPU each, under Slurm's
        // --gpus-per-task, is device 0 for all of them)
        let gpus = cudarc::driver::CudaDevice::count().map_or(1, |n| n.max(1) as usize);
        let ordinal = crate::collective::current().local_rank() % gpus;
        Dev::try_build(ordinal, seed).unwrap_or_else(|e| {
            panic!(
                "cannot use CUDA device {ordinal} ({e:?}): this build of incubator trains on \
                 the GPU (--features cuda); check nvidia-smi and the driver, or build without \
                 the feature to train on the CPU"
            )
        })
    };
    dev.enable_cache();
    dev
}

/// Has glibc's allocator keep freed memory for reuse. By default it gives every buffer above
/// 128 KiB back to the system when freed, and the next allocation of that size takes fresh
/// pages, each zeroed by the kernel on first touch: a training step frees and reallocates its
/// activations, and that page-faulting cost a third of a small ViT's step. With these limits
/// buffers up to 32 MiB (glibc's maximum) come from the heap and are reused.
fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: mallopt only changes allocator parameters; run once, before the buffers
        // it concerns exist.
        ONCE.call_once(|| unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
            libc::mallopt(libc::M_TOP_PAD, 64 << 20);
        });
    }
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

/// The values of a contiguous tensor (made by an operation or from a buffer: not a permuted,
/// sliced or broadcast view) in their logical order, by one plain copy. dfdx's `as_vec` walks
/// every element through the strides, which cost a small ViT's fused blocks 4% of a step.
/// Panics (in dfdx's copy) if the tensor's buffer is not exactly its elements.
pub fn host_values<S: dfdx::shapes::Shape, T>(t: &Tensor<S, f32, Dev, T>) -> Vec<f32> {
    use dfdx::shapes::HasShape;
    let mut v = vec![0.0; t.shape().num_elements()];
    t.copy_into(&mut v);
    v
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
