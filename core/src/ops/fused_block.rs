//! Pre-norm ViT blocks as one operation with its own backward pass, on host buffers: per
//! block LayerNorm, qkv, attention, projection, residual, LayerNorm, MLP with GELU, residual;
//! a module's consecutive blocks in one go, their activations passed on in host memory.
//!
//! Why: built from dfdx ops, a block is ~40 tape operations, each allocating, broadcasting and
//! walking memory on its own; most of a small ViT's step went there rather than into the
//! matrix products (see `incubator bench --profile`). Here the products go straight to `gemm`
//! with strided views, biases are folded into them, and the rest is one pass per step over
//! rows, in parallel. `Block::forward_composed` keeps the dfdx version: the CUDA build runs
//! it, and `tests/fused_block.rs` checks both give the same values and gradients.

use super::fastmath::add_in_place;
use super::layernorm::{self, Normalized};
use super::linear::{self, HostLinear};
use super::mha::{self, Heads};
use super::profile::{Laps, Pass};
use super::rows::{add_column_sums, Filled, CHUNK};
use crate::device::{
    host_values, read_buffer, tensor_from_slice, write_buffer, Act, Dev, Matrix, Vector,
};
use dfdx::prelude::*;
use rayon::prelude::*;
use std::borrow::Cow;
use std::mem::MaybeUninit;

/// A Linear layer's tensors: weight `(out, in)`, optional bias.
pub struct LinearWeights<'a> {
    pub weight: &'a Matrix,
    pub bias: Option<&'a Vector>,
}

/// A LayerNorm's tensors and epsilon.
pub struct NormWeights<'a> {
    pub weight: &'a Vector,
    pub bias: &'a Vector,
    pub eps: f64,
}

/// The tensors of one pre-norm block as the kernel reads them: the model hands over views of
/// its weights, the kernel never sees the model's types.
pub struct BlockWeights<'a> {
    pub norm1: NormWeights<'a>,
    pub qkv: LinearWeights<'a>,
    pub proj: LinearWeights<'a>,
    pub num_heads: usize,
    pub norm2: NormWeights<'a>,
    pub fc1: LinearWeights<'a>,
    pub fc2: LinearWeights<'a>,
}

/// Consecutive blocks on `x`, as one operation: `masks[j]` are block `j`'s two drop-path
/// branches' per-sample scales (attention, MLP), `None` where the branch is kept whole.
/// Between blocks the activations stay in host memory: one block at a time, each block's
/// input was copied out of a tensor and its output into a new one, and its gradient read,
/// zeroed and added the same way, serial passes that left the other cores idle.
pub fn forward<T: Tape<f32, Dev>>(
    blocks: &[BlockWeights],
    x: Act<T>,
    masks: Vec<[Option<Vec<f32>>; 2]>,
) -> Act<T> {
    assert_eq!(blocks.len(), masks.len(), "two drop-path masks per block");
    let mut laps = Laps::start(Pass::Forward);
    let shape = *x.shape();
    // contiguous input: its logical order is its buffer order, and its gradient's
    let x = x.reshape_like(&shape);
    let (inp, mut tape) = x.split_tape();
    let mut xs = host_values(&inp);
    laps.lap("block: glue");
    let mut saved = Vec::with_capacity(if T::OWNS_TAPE { blocks.len() } else { 0 });
    for (block, masks) in blocks.iter().zip(masks) {
        let (out, s) = forward_host(block, &xs, masks, shape, &mut laps);
        xs = out;
        if T::OWNS_TAPE {
            saved.push((s, Keys::of(block)));
        }
    }
    let out = tensor_from_slice(inp.device(), &xs, shape);
    laps.lap("block: glue");
    if T::OWNS_TAPE {
        let out_key = out.clone();
        tape.add_backward_op(move |grads| {
            let mut d = read_buffer(grads.get_or_alloc_mut(&out_key)?, |g| g.to_vec());
            for (s, keys) in saved.into_iter().rev() {
                d = s.backward(d, &keys, grads)?;
            }
            write_buffer(grads.get_or_alloc_mut(&inp)?, |g| add_in_place(g, &d));
            Ok(())
        });
    }
    out.put_tape(tape)
}

/// One block on the host values `xs` of shape `(batch, tokens, width)`: its output, and what
/// its backward pass needs.
fn forward_host(
    block: &BlockWeights,
    xs: &[f32],
    masks: [Option<Vec<f32>>; 2],
    (batch, tokens, width): (usize, usize, usize),
    laps: &mut Laps,
) -> (Vec<f32>, Saved) {
    let [mask1, mask2] = masks;
    let p = HostParams::of(block);
    let heads = Heads {
        batch,
        tokens,
        heads: block.num_heads,
        head_dim: width / block.num_heads,
    };
    laps.lap("block: glue");

    let (a1, norm1) = layernorm::forward(xs, &p.norm1.0, &p.norm1.1, block.norm1.eps as f32);
    laps.lap("layernorm");
    let qkv = linear::forward(&a1, &p.qkv);
    laps.lap("attention qkv");
    let (softmax, att) = mha::forward(&qkv, heads);
    laps.lap("attention scores + softmax + values");
    // the residual is added to each block of the product's rows while they are in cache
    let x2 = linear::forward_then(&att, &p.proj, |first, rows| {
        residual(xs, first, rows, width, tokens, mask1.as_deref())
    });
    laps.lap("attention proj"); // and the residual
    let (a2, norm2) = layernorm::forward(&x2, &p.norm2.0, &p.norm2.1, block.norm2.eps as f32);
    laps.lap("layernorm");
    let (hidden, slope) = linear::forward_gelu(&a2, &p.fc1);
    laps.lap("mlp fc1 + gelu forward");
    let out = linear::forward_then(&hidden, &p.fc2, |first, rows| {
        residual(&x2, first, rows, width, tokens, mask2.as_deref())
    });
    laps.lap("mlp fc2 + gelu backward"); // and the residual
    let saved = Saved {
        heads,
        mask1,
        mask2,
        norm1,
        a1,
        qkv,
        softmax,
        att,
        norm2,
        a2,
        hidden,
        slope,
        p,
    };
    (out, saved)
}

pub(super) fn host_linear(l: &LinearWeights) -> HostLinear {
    HostLinear {
        weight: host_values(l.weight),
        bias: l.bias.map(host_values),
        out_features: l.weight.shape().0,
    }
}

struct HostParams {
    norm1: (Vec<f32>, Vec<f32>),
    qkv: HostLinear,
    proj: HostLinear,
    norm2: (Vec<f32>, Vec<f32>),
    fc1: HostLinear,
    fc2: HostLinear,
}

impl HostParams {
    fn of(b: &BlockWeights) -> HostParams {
        let norm = |n: &NormWeights| (host_values(n.weight), host_values(n.bias));
        HostParams {
            norm1: norm(&b.norm1),
            qkv: host_linear(&b.qkv),
            proj: host_linear(&b.proj),
            norm2: norm(&b.norm2),
            fc1: host_linear(&b.fc1),
            fc2: host_linear(&b.fc2),
        }
    }
}

/// `branch = x + mask[sample] * branch` on the branch's rows from `first` on, in place.
fn residual(
    x: &[f32],
    first: usize,
    rows: &mut [f32],
    width: usize,
    tokens: usize,
    mask: Option<&[f32]>,
) {
    let x = &x[first * width..first * width + rows.len()];
    match mask {
        Some(m) => scale_rows(rows, x, width, tokens, first, m),
        None => add_in_place(rows, x),
    }
}

/// `g * mask[sample]` per row, or `g` itself without a mask. Written block by block into a
/// new buffer in one pass (a copy of `g` scaled in place was two passes over memory).
fn masked<'a>(g: &'a [f32], width: usize, tokens: usize, mask: Option<&[f32]>) -> Cow<'a, [f32]> {
    let Some(m) = mask else {
        return Cow::Borrowed(g);
    };
    if width == 0 {
        return Cow::Borrowed(g);
    }
    let mut out = Filled::new(g.len());
    out.parts()
        .par_chunks_mut(CHUNK * width)
        .zip(g.par_chunks(CHUNK * width))
        .enumerate()
        .for_each(|(c, (dst, src))| masked_rows(src, dst, width, tokens, c * CHUNK, m));
    // SAFETY: the blocks cover every element, each written by its task
    Cow::Owned(unsafe { out.assume_filled() })
}

crate::multiversion! {
    /// `dst`'s row `r` (global row `first + r`) = `src`'s times its sample's mask; every
    /// element of `dst` is written (it need not have been initialised).
    fn masked_rows(src: &[f32], dst: &mut [MaybeUninit<f32>], width: usize, tokens: usize, first: usize, mask: &[f32]) {
        for (i, (s, d)) in src.chunks_exact(width).zip(dst.chunks_exact_mut(width)).enumerate() {
            let keep = mask[(first + i) / tokens];
            for (d, s) in d.iter_mut().zip(s) {
                d.write(s * keep);
            }
        }
    }
}

crate::multiversion! {
    /// Row `r` of `rows` (global row `first + r`) times its sample's mask, plus `x`'s row.
    fn scale_rows(rows: &mut [f32], x: &[f32], width: usize, tokens: usize, first: usize, mask: &[f32]) {
        for (i, row) in rows.chunks_exact_mut(width).enumerate() {
            let keep = mask[(first + i) / tokens];
            for (b, x) in row.iter_mut().zip(&x[i * width..(i + 1) * width]) {
                *b = x + keep * *b;
            }
        }
    }
}

/// The parameter tensors whose gradients the backward pass adds to.
struct Keys {
    norm1: (Vector, Vector),
    qkv: (Matrix, Option<Vector>),
    proj: (Matrix, Option<Vector>),
    norm2: (Vector, Vector),
    fc1: (Matrix, Option<Vector>),
    fc2: (Matrix, Option<Vector>),
}

impl Keys {
    fn of(b: &BlockWeights) -> Keys {
        let lin = |l: &LinearWeights| (l.weight.clone(), l.bias.cloned());
        let norm = |n: &NormWeights| (n.weight.clone(), n.bias.clone());
        Keys {
            norm1: norm(&b.norm1),
            qkv: lin(&b.qkv),
            proj: lin(&b.proj),
            norm2: norm(&b.norm2),
            fc1: lin(&b.fc1),
            fc2: lin(&b.fc2),
        }
    }
}

/// Activations kept from the forward pass.
struct Saved {
    heads: Heads,
    mask1: Option<Vec<f32>>,
    mask2: Option<Vec<f32>>,
    norm1: Normalized,
    a1: Vec<f32>,
    qkv: Vec<f32>,
    /// each attention row's softmax statistics (the probabilities are made again)
    softmax: mha::Stats,
    att: Vec<f32>,
    norm2: Normalized,
    a2: Vec<f32>,
    /// GELU's output (fc2's input) and its slope
    hidden: Vec<f32>,
    slope: Vec<f32>,
    p: HostParams,
}

pub(super) type Grads = dfdx::tensor::Gradients<f32, Dev>;
pub(super) type DevError = <Dev as HasErr>::Err;

impl Saved {
    /// Adds every parameter's gradient and returns the input's, from the output's.
    fn backward(
        self,
        d_out: Vec<f32>,
        keys: &Keys,
        grads: &mut Grads,
    ) -> Result<Vec<f32>, DevError> {
        let mut laps = Laps::start(Pass::Backward);
        let tokens = self.heads.tokens;
        let width = self.heads.heads * self.heads.head_dim;

        // out = x2 + m2 * fc2(gelu(fc1(norm2(x2))))
        let d_branch = masked(&d_out, width, tokens, self.mask2.as_deref());
        laps.lap("residual + drop-path");
        add_parameter_gradients(&d_branch, &self.hidden, &self.p.fc2, &keys.fc2, grads)?;
        let d_hidden = linear::backward_input_times(&d_branch, &self.p.fc2, &self.slope);
        laps.lap("mlp fc2 + gelu backward");
        let d_a2 = linear_backward(&d_hidden, &self.a2, &self.p.fc1, &keys.fc1, grads)?;
        drop(d_hidden);
        laps.lap("mlp fc1 + gelu forward");
        let mut d_x2 = d_out;
        norm_backward(
            &d_a2,
            &self.norm2,
            &self.p.norm2.0,
            &keys.norm2,
            &mut d_x2,
            grads,
        )?;
        laps.lap("layernorm");

        // x2 = x + m1 * proj(attention(qkv(norm1(x))))
        let d_branch = masked(&d_x2, width, tokens, self.mask1.as_deref());
        laps.lap("residual + drop-path");
        let d_att = linear_backward(&d_branch, &self.att, &self.p.proj, &keys.proj, grads)?;
        drop(d_branch);
        laps.lap("attention proj");
        let d_qkv = mha::backward(&self.qkv, &self.softmax, self.heads, &d_att);
        laps.lap("attention scores + softmax + values");
        let d_a1 = linear_backward(&d_qkv, &self.a1, &self.p.qkv, &keys.qkv, grads)?;
        laps.lap("attention qkv");
        let mut d_x = d_x2;
        norm_backward(
            &d_a1,
            &self.norm1,
            &self.p.norm1.0,
            &keys.norm1,
            &mut d_x,
            grads,
        )?;
        laps.lap("layernorm");
        Ok(d_x)
    }
}

/// For `y = x W^T + b`: adds `dW = dy^T x` and `db = column sums of dy`, returns `dx = dy W`.
fn linear_backward(
    dy: &[f32],
    x: &[f32],
    l: &HostLinear,
    keys: &(Matrix, Option<Vector>),
    grads: &mut Grads,
) -> Result<Vec<f32>, DevError> {
    add_parameter_gradients(dy, x, l, keys, grads)?;
    Ok(linear::backward_input(dy, l))
}

/// For `y = x W^T + b`: adds `dW = dy^T x` and `db = column sums of dy`.
pub(super) fn add_parameter_gradients(
    dy: &[f32],
    x: &[f32],
    l: &HostLinear,
    keys: &(Matrix, Option<Vector>),
    grads: &mut Grads,
) -> Result<(), DevError> {
    write_buffer(grads.get_or_alloc_mut(&keys.0)?, |gw| {
        linear::add_weight_gradient(gw, dy, x, l)
    });
    if let Some(b) = &keys.1 {
        write_buffer(grads.get_or_alloc_mut(b)?, |gb| {
            add_column_sums(dy, l.out_features, gb)
        });
    }
    Ok(())
}

/// LayerNorm's backward: adds into `dx` and the affine gradients.
fn norm_backward(
    dy: &[f32],
    saved: &Normalized,
    weight: &[f32],
    keys: &(Vector, Vector),
    dx: &mut [f32],
    grads: &mut Grads,
) -> Result<(), DevError> {
    let (dw, db) = layernorm::backward(dy, saved, weight, dx);
    write_buffer(grads.get_or_alloc_mut(&keys.0)?, |g| add_in_place(g, &dw));
    write_buffer(grads.get_or_alloc_mut(&keys.1)?, |g| add_in_place(g, &db));
    Ok(())
}
