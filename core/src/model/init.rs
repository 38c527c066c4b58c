//! Initialisation as the reference code does it (DeiT's vendored timm): truncated normal
//! std 0.02 for Linear weights, the position embedding and the class token; zeros for biases;
//! LayerNorm 1 / 0; PyTorch's default uniform for the patch-embedding convolution.
//!
//! Values are drawn on the host from a seeded ChaCha stream, so a seed gives the same model on
//! every device.

use crate::device::{Dev, Matrix, Vector};
use dfdx::tensor::TensorFromVec;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

pub struct Init<'a> {
    pub dev: &'a Dev,
    pub rng: &'a mut ChaCha8Rng,
}

impl Init<'_> {
    /// timm's `trunc_normal_(std=0.02)`: bounds are ±2 absolute, so this is a normal in practice.
    pub fn trunc_normal(&mut self, n: usize, std: f32) -> Vec<f32> {
        let normal = Normal::new(0.0f32, std).expect("std is positive");
        (0..n)
            .map(|_| loop {
                let v = normal.sample(self.rng);
                if (-2.0..=2.0).contains(&v) {
                    break v;
                }
            })
            .collect()
    }

    pub fn uniform(&mut self, n: usize, bound: f32) -> Vec<f32> {
        (0..n).map(|_| self.rng.gen_range(-bound..bound)).collect()
    }

    pub fn matrix(&self, rows: usize, cols: usize, data: Vec<f32>) -> Matrix {
        self.dev.tensor_from_vec(data, (rows, cols))
    }

    pub fn vector(&self, data: Vec<f32>) -> Vector {
        let n = data.len();
        self.dev.tensor_from_vec(data, (n,))
    }

    pub fn filled(&self, n: usize, value: f32) -> Vector {
        self.vector(vec![value; n])
    }
}
