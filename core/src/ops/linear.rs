//! A Linear layer `y = x W^T + b` on host buffers, in blocks of rows: each block's product
//! runs on one thread and is finished (bias, GELU and its slope, a product with the slope)
//! while it is still in cache, instead of a whole-matrix product followed by passes over
//! memory. Blocks are [`ROWS`] rows whatever the number of threads, so results do not depend
//! on it.

use super::fastmath::{gelu_in_place, mul_in_place};
use super::gemm::add_transposed_product;
use super::isa::Isa;
use super::prepacked::{PackedLhs, Strided};
use super::rows::{assume_init, Disjoint};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// A Linear layer's weight `(out, in)`, row-major, and bias on the host.
pub struct HostLinear {
    pub weight: Vec<f32>,
    pub bias: Option<Vec<f32>>,
    pub out_features: usize,
}

impl HostLinear {
    pub fn in_features(&self) -> usize {
        self.weight.len() / self.out_features.max(1)
    }
}

/// `x W^T + b` for `x` of `in_features` columns.
pub fn forward(x: &[f32], l: &HostLinear) -> Vec<f32> {
    product_blocks(x, l, Side::Forward, |_, _| {})
}

/// `x W^T + b`, each block of rows then finished by `finish(first_row, block)` while in cache
/// (a residual added there costs no pass over the whole output).
pub fn forward_then(
    x: &[f32],
    l: &HostLinear,
    finish: impl Fn(usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    product_blocks(x, l, Side::Forward, finish)
}

/// GELU of `x W^T + b`, and GELU's slope there (for the backward pass).
pub fn forward_gelu(x: &[f32], l: &HostLinear) -> (Vec<f32>, Vec<f32>) {
    let len = (x.len() / l.in_features().max(1)) * l.out_features;
    let mut slope = Vec::with_capacity(len);
    let hidden = {
        let slope = &mut slope.spare_capacity_mut()[..len];
        let slope = Disjoint(slope.as_mut_ptr().cast::<f32>());
        product_blocks(x, l, Side::Forward, |first, block| {
            let at = first * l.out_features;
            // SAFETY: each block's rows of `slope` are this block's task's alone, within the
            // `len` elements reserved above
            let s = unsafe {
                std::slice::from_raw_parts_mut(slope.at(at).cast::<MaybeUninit<f32>>(), block.len())
            };
            gelu_in_place(block, s);
        })
    };
    // SAFETY: the blocks cover every row, and each initialised its rows of `slope`
    unsafe { slope.set_len(len) };
    (hidden, slope)
}

/// `dx = dy W`, the gradient of the layer's input from its output's.
pub fn backward_input(dy: &[f32], l: &HostLinear) -> Vec<f32> {
    product_blocks(dy, l, Side::Backward, |_, _| {})
}

/// `dx = dy W`, each block of rows then finished by `finish(first_row, block)` while in cache
/// (a LayerNorm's backward there costs no pass over the whole gradient).
pub fn backward_input_then(
    dy: &[f32],
    l: &HostLinear,
    finish: impl Fn(usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    product_blocks(dy, l, Side::Backward, finish)
}

/// `(dy W) * slope`, element-wise: the gradient through a GELU before the layer.
pub fn backward_input_times(dy: &[f32], l: &HostLinear, slope: &[f32]) -> Vec<f32> {
    let inp = l.in_features();
    product_blocks(dy, l, Side::Backward, |first, block| {
        mul_in_place(block, &slope[first * inp..first * inp + block.len()])
    })
}

/// Adds `dW = dy^T x` into `dw`, from all rows.
pub fn add_weight_gradient(dw: &mut [f32], dy: &[f32], x: &[f32], l: &HostLinear) {
    add_transposed_product(dw, dy, l.out_features, x, l.in_features())
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    /// `x W^T + b`
    Forward,
    /// `dy W`
    Backward,
}

/// Rows per block. In the product a block's rows are the micro-kernels' columns, taken 6 at a
/// time with AVX2 and 8 with AVX-512: a multiple of both leaves no narrow last column (128
/// rows ended every block with a kernel call on 2 of its 6 columns, at a third of its rate).
pub const ROWS: usize = 120;

/// The product of `input` and the layer's weight, block by block of [`ROWS`] rows, each
/// finished by `finish(first_row, block)` on the thread that made it. The output is never
/// zeroed: each block is laid down in cache by its product (onto the bias, if any).
fn product_blocks(
    input: &[f32],
    l: &HostLinear,
    side: Side,
    finish: impl Fn(usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    let (outs, ins) = (l.out_features, l.in_features());
    // in the product's terms each block's rows are columns: `block^T = w input_block^T`, with
    // the weight packed once for all blocks. forward: (rows, in) -> (rows, out) by W^T, the
    // weight as stored; backward: (rows, out) -> (rows, in) by W, the weight transposed
    let (width_in, width_out, w) = match side {
        Side::Forward => (
            ins,
            outs,
            PackedLhs::new(Isa::active(), &l.weight, outs, ins, ins, 1, ROWS),
        ),
        Side::Backward => (
            outs,
            ins,
            PackedLhs::new(Isa::active(), &l.weight, ins, outs, 1, ins, ROWS),
        ),
    };
    let rows = input.len() / width_in.max(1);
    assert_eq!(input.len(), rows * width_in, "input is not whole rows");
    let bias = match side {
        Side::Forward => l.bias.as_deref(),
        Side::Backward => None,
    };
    let len = rows * width_out;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    if width_out > 0 {
        let spare: &mut [MaybeUninit<f32>] = &mut out.spare_capacity_mut()[..len];
        spare
            .par_chunks_mut(ROWS * width_out)
            .enumerate()
            .for_each(|(c, block)| {
                let first = c * ROWS;
                let n = block.len() / width_out;
                // with a bias, the block starts as the bias and the product adds onto it;
                // without, the product overwrites the block (never reading it)
                if let Some(b) = bias {
                    for row in block.chunks_exact_mut(width_out) {
                        row.iter_mut().zip(b).for_each(|(o, v)| {
                            o.write(*v);
                        });
                    }
                }
                // SAFETY: `block` (n rows of width_out) is this task's own; the block's rows
                // of `input` are n rows of width_in from row `first`
                unsafe {
                    w.multiply(
                        n,
                        block.as_mut_ptr().cast(),
                        width_out,
                        Strided {
                            ptr: input[first * width_in..].as_ptr(),
                            rs: 1,
                            cs: width_in,
                        },
                        1.0,
                        bias.is_some(),
                    )
                };
                // SAFETY: the bias or the product wrote every element of the block
                let block = unsafe { assume_init(block) };
                finish(first, block);
            });
    }
    // SAFETY: the blocks cover all `len` elements, each initialised by its task
    unsafe { out.set_len(len) };
    out
}
