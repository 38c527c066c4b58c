//! Gradients averaged on the GPUs (`--features nccl`): NCCL's all-reduce of device buffers,
//! so that they never cross to the host. The ranks are MPI's (`collective`); NCCL's
//! communicator is bootstrapped through them, rank 0's unique id broadcast to the others.
//! One communicator per CUDA device the stages train on: each stage builds its own dfdx
//! device, and NCCL must run on that device's stream, after the kernels that made the
//! gradients.

use crate::collective::{Collective, Ranks};
use cudarc::driver::{CudaDevice, CudaSlice, DeviceSlice};
use cudarc::nccl::{Comm, Id, ReduceOp};
use std::sync::{Arc, Mutex};

/// The communicator of the device the current stage trains on.
struct Current(Option<Comm>);

// SAFETY: NCCL allows a communicator to be used from any thread, one call at a time; every
// use holds the lock.
unsafe impl Send for Current {}

static COMM: Mutex<Current> = Mutex::new(Current(None));

/// The element-wise mean of `buf` over `ranks`, on `dev`. Collective: every rank calls it
/// at the same point, with a buffer of the same length.
pub fn mean(ranks: &dyn Collective, dev: &Arc<CudaDevice>, buf: &CudaSlice<f32>) -> CudaSlice<f32> {
    let mut current = COMM.lock().unwrap_or_else(|e| e.into_inner());
    let stale = current
        .0
        .as_ref()
        .is_none_or(|c| !Arc::ptr_eq(&c.device(), dev));
    if stale {
        current.0 = None; // the last stage's, ended before the next one starts
        current.0 = Some(connect(ranks, dev));
    }
    let comm = current.0.as_ref().expect("connected above");
    let mut out = dev
        .alloc_zeros::<f32>(buf.len())
        .unwrap_or_else(|e| panic!("cannot allocate the all-reduce's buffer on the GPU: {e:?}"));
    comm.all_reduce(buf, &mut out, &ReduceOp::Avg)
        .unwrap_or_else(|e| panic!("NCCL's all-reduce failed ({e:?}): NCCL_DEBUG=INFO says why"));
    out
}

/// A communicator of every rank's `dev`, on rank 0's unique id (sent through `ranks`).
fn connect(ranks: &dyn Collective, dev: &Arc<CudaDevice>) -> Comm {
    let Ranks { rank, world } = ranks.ranks();
    let mut id = [0u8; 128];
    if rank == 0 {
        let made = Id::new().unwrap_or_else(|e| {
            panic!("NCCL cannot make a unique id ({e:?}): is libnccl installed?")
        });
        for (byte, c) in id.iter_mut().zip(made.internal()) {
            *byte = *c as u8;
        }
    }
    ranks.broadcast_u8(&mut id);
    Comm::from_rank(dev.clone(), rank, world, Id::uninit(id.map(|b| b as _))).unwrap_or_else(|e| {
        panic!(
            "NCCL cannot connect rank {rank} of {world} ({e:?}): one GPU per rank \
                 (more ranks than GPUs on a machine share one, which NCCL refuses); \
                 NCCL_DEBUG=INFO says more"
        )
    })
}
