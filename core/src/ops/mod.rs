//! Operations written on our side, with their own backward, where dfdx's are missing, wrong or
//! slow. Each records one backward closure on the tape through dfdx's public `Tape` API.

pub mod bias;
pub mod fastmath;
#[cfg(not(feature = "cuda"))]
pub mod fused_block;
#[cfg(not(feature = "cuda"))]
pub mod fused_stem;
pub mod gelu;
pub mod gemm;
mod gemm_kernels;
pub mod isa;
pub mod layernorm;
pub mod linear;
pub mod mha;
mod micro;
mod prepacked;
pub mod profile;
pub mod rows;
pub mod simd;

pub use gelu::gelu;
