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

use super::fastmath::{add_in_place, mul_in_place};
use super::layernorm::{self, Normalized};
use super::linear::{self, HostLinear};
use super::mha::{self, Heads};
use super::profile::{Laps, Pass};
use super::rows::{Filled, CHUNK};
use crate::device::{
    host_values, read_buffer, tensor_from_slice, write_buffer, Act, Dev, Matrix, Vector,
};
use dfdx::prelude::*;
use rayon::prelude::*;
use std::borrow::Cow;
use std::collections::VecDeque;
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
///
/// With `first_token_only`, the last block computes each sample's first token alone (which
/// attends to every token) and the output is that token, `(batch, 1, width)`: all a classifier
/// on the class token reads. The other tokens' projection, MLP and attention rows would be
/// computed for nothing; their gradients are zero.
pub fn forward<T: Tape<f32, Dev>>(
    blocks: &[BlockWeights],
    x: Act<T>,
    masks: Vec<[Option<Vec<f32>>; 2]>,
    first_token_only: bool,
) -> Act<T> {
    assert_eq!(blocks.len(), masks.len(), "two drop-path masks per block");
    if blocks.is_empty() {
        return x;
    }
    let mut laps = Laps::start(Pass::Forward);
    let shape = *x.shape();
    // contiguous input: its logical order is its buffer order, and its gradient's
    let x = x.reshape_like(&shape);
    let (inp, mut tape) = x.split_tape();
    let mut xs = host_values(&inp);
    let mut params: VecDeque<HostParams> = blocks.iter().map(HostParams::of).collect();
    laps.lap("block: glue");
    let mut saved = Vec::with_capacity(if T::OWNS_TAPE { blocks.len() } else { 0 });
    // the first block's input is normalised on its own; each later block's by the block
    // before, in its last product's blocks of rows
    let n = &params[0].norm1;
    let mut normed = Some(layernorm::forward(&xs, &n.weight, &n.bias, n.eps));
    laps.lap("layernorm");
    for (block, masks) in blocks.iter().zip(masks) {
        let p = params.pop_front().expect("host parameters for every block");
        let next = params.front().map(|n| &n.norm1);
        let first_only = first_token_only && next.is_none();
        let (out, s, next_normed) = forward_host(
            block,
            p,
            &xs,
            normed
                .take()
                .expect("each block's input normalised before it"),
            next,
            masks,
            (shape, first_only),
            &mut laps,
        );
        xs = out;
        normed = next_normed;
        if T::OWNS_TAPE {
            saved.push((s, Keys::of(block)));
        }
    }
    let (batch, tokens, width) = shape;
    let kept = if first_token_only { 1 } else { tokens };
    let out = tensor_from_slice(inp.device(), &xs, (batch, kept, width));
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

/// One block, its weights `p` on the host, on the host values `xs` of shape `(batch, tokens,
/// width)`, given `xs` normalised by its first LayerNorm: its output (each sample's first
/// token alone with `first_only`), what its backward pass needs, and its output normalised by
/// `next` (the next block's first LayerNorm), if any.
#[allow(clippy::too_many_arguments)]
fn forward_host(
    block: &BlockWeights,
    p: HostParams,
    xs: &[f32],
    (a1, norm1): (Vec<f32>, Normalized),
    next: Option<&HostNorm>,
    masks: [Option<Vec<f32>>; 2],
    ((batch, tokens, width), first_only): ((usize, usize, usize), bool),
    laps: &mut Laps,
) -> (Vec<f32>, Saved, Option<(Vec<f32>, Normalized)>) {
    let [mask1, mask2] = masks;
    let heads = Heads {
        batch,
        tokens,
        heads: block.num_heads,
        head_dim: width / block.num_heads,
    };
    let qkv = linear::forward(&a1, &p.qkv);
    laps.lap("attention qkv");
    let (softmax, att) = match first_only {
        true => mha::forward_first(&qkv, heads, mask1.as_deref()),
        false => mha::forward(&qkv, heads, mask1.as_deref()),
    };
    laps.lap("attention scores + softmax + values");
    // the rows that go on from here: every token's, or each sample's first
    let (rows, kept) = match first_only {
        true => (batch, 1),
        false => (batch * tokens, tokens),
    };
    let xs: Cow<[f32]> = match first_only {
        true => xs
            .chunks_exact(tokens * width)
            .flat_map(|x| &x[..width])
            .copied()
            .collect(),
        false => Cow::Borrowed(xs),
    };
    // the residual is added to each block of the product's rows while they are in cache, and
    // the sum normalised there
    let n = &p.norm2;
    let filling = layernorm::Filling::new(rows, &n.weight, &n.bias, n.eps);
    let x2 = linear::forward_then(&att, &p.proj, |first, rows| {
        residual(&xs, first, rows, width, kept, mask1.as_deref());
        // SAFETY: this block of rows is this task's alone
        unsafe { filling.rows(first, rows) };
    });
    // SAFETY: the product's blocks cover every row
    let (a2, norm2) = unsafe { filling.finish() };
    laps.lap("attention proj"); // and the residual and the second LayerNorm
    let (hidden, slope) = linear::forward_gelu(&a2, &p.fc1);
    laps.lap("mlp fc1 + gelu forward");
    let filling = next.map(|n| layernorm::Filling::new(rows, &n.weight, &n.bias, n.eps));
    let out = linear::forward_then(&hidden, &p.fc2, |first, rows| {
        residual(&x2, first, rows, width, kept, mask2.as_deref());
        if let Some(filling) = &filling {
            // SAFETY: this block of rows is this task's alone
            unsafe { filling.rows(first, rows) };
        }
    });
    // SAFETY: the product's blocks cover every row
    let next_normed = filling.map(|f| unsafe { f.finish() });
    laps.lap("mlp fc2 + gelu backward"); // and the residual and the next block's LayerNorm
    let saved = Saved {
        heads,
        first_only,
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
    (out, saved, next_normed)
}

pub(super) fn host_linear(l: &LinearWeights) -> HostLinear {
    HostLinear {
        weight: host_values(l.weight),
        bias: l.bias.map(host_values),
        out_features: l.weight.shape().0,
    }
}

/// A LayerNorm's weight, bias and epsilon on the host.
struct HostNorm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

struct HostParams {
    norm1: HostNorm,
    qkv: HostLinear,
    proj: HostLinear,
    norm2: HostNorm,
    fc1: HostLinear,
    fc2: HostLinear,
}

impl HostParams {
    fn of(b: &BlockWeights) -> HostParams {
        let norm = |n: &NormWeights| HostNorm {
            weight: host_values(n.weight),
            bias: host_values(n.bias),
            eps: n.eps as f32,
        };
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
    /// whether the block computed each sample's first token alone
    first_only: bool,
    mask1: Option<Vec<f32>>,
    mask2: Option<Vec<f32>>,
    norm1: Normalized,
    a1: Vec<f32>,
    qkv: Vec<f32>,
    /// each attention row's softmax statistics (the probabilities are made again), and the
    /// samples attention skipped for drop-path
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
        // tokens per sample past the attention
        let kept = if self.first_only { 1 } else { tokens };

        // out = x2 + m2 * fc2(gelu(fc1(norm2(x2))))
        let d_branch = masked(&d_out, width, kept, self.mask2.as_deref());
        laps.lap("residual + drop-path");
        let fc2 = (&self.p.fc2, &keys.fc2);
        let inp = self.p.fc2.in_features();
        // through the GELU: each block of rows times its slope, while in cache
        let d_hidden = linear_backward_then(&d_branch, &self.hidden, fc2, grads, |first, b| {
            mul_in_place(b, &self.slope[first * inp..first * inp + b.len()])
        })?;
        laps.lap("mlp fc2 + gelu backward");
        let mut d_x2 = d_out;
        let fc1 = (&self.p.fc1, &keys.fc1);
        let norm2 = (&self.norm2, &self.p.norm2.weight[..], &keys.norm2);
        linear_and_norm_backward(&d_hidden, &self.a2, fc1, norm2, &mut d_x2, grads)?;
        drop(d_hidden);
        laps.lap("mlp fc1 + gelu forward"); // and the second LayerNorm

        // x2 = x + m1 * proj(attention(qkv(norm1(x))))
        let d_branch = masked(&d_x2, width, kept, self.mask1.as_deref());
        laps.lap("residual + drop-path");
        let proj = (&self.p.proj, &keys.proj);
        let d_att = linear_backward_then(&d_branch, &self.att, proj, grads, |_, _| {})?;
        drop(d_branch);
        laps.lap("attention proj");
        let d_qkv = match self.first_only {
            true => mha::backward_first(&self.qkv, &self.softmax, self.heads, &d_att),
            false => mha::backward(&self.qkv, &self.softmax, self.heads, &d_att),
        };
        laps.lap("attention scores + softmax + values");
        let mut d_x = match self.first_only {
            // the residual reaches each sample's first token only
            true => {
                let mut d_x = vec![0.0; d_qkv.len() / 3];
                for (d, g) in d_x
                    .chunks_exact_mut(tokens * width)
                    .zip(d_x2.chunks_exact(width))
                {
                    d[..width].copy_from_slice(g);
                }
                d_x
            }
            false => d_x2,
        };
        let qkv = (&self.p.qkv, &keys.qkv);
        let norm1 = (&self.norm1, &self.p.norm1.weight[..], &keys.norm1);
        linear_and_norm_backward(&d_qkv, &self.a1, qkv, norm1, &mut d_x, grads)?;
        laps.lap("attention qkv"); // and the first LayerNorm
        Ok(d_x)
    }
}

/// For `y = x W^T + b`: adds `dW = dy^T x` and `db = column sums of dy`, and returns
/// `dx = dy W`, each block of its rows finished by `finish(first_row, block)` while in cache.
pub(super) fn linear_backward_then(
    dy: &[f32],
    x: &[f32],
    (l, keys): (&HostLinear, &(Matrix, Option<Vector>)),
    grads: &mut Grads,
    finish: impl Fn(usize, &mut [f32]) + Sync,
) -> Result<Vec<f32>, DevError> {
    let (dx, partials) = linear::backward(dy, x, l, finish);
    write_buffer(grads.get_or_alloc_mut(&keys.0)?, |gw| {
        partials.add_weight_into(gw)
    });
    if let Some(b) = &keys.1 {
        write_buffer(grads.get_or_alloc_mut(b)?, |gb| partials.add_bias_into(gb));
    }
    Ok(dx)
}

/// For `y = x W^T + b` with `x` a LayerNorm's output: adds the layer's and the LayerNorm's
/// parameter gradients, and the LayerNorm's input gradient into `d_input`. The LayerNorm's
/// backward runs on each block of rows of `dx = dy W` on the thread that made it, while in
/// cache, instead of in passes of its own over the whole gradient.
fn linear_and_norm_backward(
    dy: &[f32],
    x: &[f32],
    (l, l_keys): (&HostLinear, &(Matrix, Option<Vector>)),
    (saved, weight, n_keys): (&Normalized, &[f32], &(Vector, Vector)),
    d_input: &mut [f32],
    grads: &mut Grads,
) -> Result<(), DevError> {
    let norm = layernorm::Backward::new(saved, weight, d_input, linear::ROWS);
    // SAFETY: each block of rows is its task's alone
    let dx = linear_backward_then(dy, x, (l, l_keys), grads, |first, block| unsafe {
        norm.rows(first, block)
    })?;
    drop(dx); // read block by block above, while in cache: nothing else needs it
    let (dw, db) = norm.finish();
    write_buffer(grads.get_or_alloc_mut(&n_keys.0)?, |g| add_in_place(g, &dw));
    write_buffer(grads.get_or_alloc_mut(&n_keys.1)?, |g| add_in_place(g, &db));
    Ok(())
}
