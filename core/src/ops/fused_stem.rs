//! The stem as one operation with its own backward pass, on host buffers: patches times the
//! patch-embedding weight (with its bias), the class token put first, the position embedding
//! added. Built from dfdx ops (`Stem::forward_composed`, the CUDA path) it is a matrix product,
//! a broadcast bias, a concatenation and a broadcast add, each a pass over memory with its own
//! buffer and backward: 2% of a small ViT's step, most of it outside the product.

use super::fastmath::add_in_place;
use super::fused_block::{host_linear, linear_backward_then, LinearWeights};
use super::linear;
use super::rows::add_in_order;
use crate::device::{
    host_values, read_buffer, tensor_from_slice, write_buffer, Act, Dev, Matrix, Vector,
};
use dfdx::prelude::*;
use rayon::prelude::*;

/// The stem's tensors as the kernel reads them.
pub struct StemWeights<'a> {
    pub patch_embed: LinearWeights<'a>,
    /// `(embed_dim,)`
    pub cls_token: &'a Vector,
    /// `(1 + patches, embed_dim)`
    pub pos_embed: &'a Matrix,
}

/// Patches `(batch, patches, patch_dim)` to tokens `(batch, 1 + patches, embed_dim)`.
pub fn forward<T: Tape<f32, Dev>>(w: &StemWeights, patches: Act<T>) -> Act<T> {
    let (batch, n, p) = *patches.shape();
    // contiguous input: its logical order is its buffer order, and its gradient's
    let patches = patches.reshape_like(&(batch, n, p));
    let (inp, mut tape) = patches.split_tape();
    let xs = host_values(&inp);
    let lin = host_linear(&w.patch_embed);
    let d = lin.out_features;
    let pos = host_values(w.pos_embed);
    assert_eq!(
        pos.len(),
        (n + 1) * d,
        "position embedding of 1 + {n} tokens"
    );
    let cls = host_values(w.cls_token);
    let emb = linear::forward(&xs, &lin);
    let mut out = vec![0.0; batch * (n + 1) * d];
    if d > 0 {
        out.par_chunks_mut((n + 1) * d)
            .enumerate()
            .for_each(|(b, sample)| {
                let (first, rest) = sample.split_at_mut(d);
                first.copy_from_slice(&cls);
                rest.copy_from_slice(&emb[b * n * d..(b + 1) * n * d]);
                add_in_place(sample, &pos);
            });
    }
    let out = tensor_from_slice(inp.device(), &out, (batch, n + 1, d));
    if T::OWNS_TAPE {
        let (linear_keys, cls_key, pos_key) = (
            (w.patch_embed.weight.clone(), w.patch_embed.bias.cloned()),
            w.cls_token.clone(),
            w.pos_embed.clone(),
        );
        let out_key = out.clone();
        tape.add_backward_op(move |grads| {
            let d_out = read_buffer(grads.get_or_alloc_mut(&out_key)?, |g| g.to_vec());
            let tokens = (n + 1) * d;
            // the position embedding's gradient: the sum over samples, each element adding
            // the samples in order (the same result whatever the number of threads)
            let mut d_pos = vec![0.0; tokens];
            let samples: Vec<&[f32]> = d_out.chunks_exact(tokens.max(1)).collect();
            add_in_order(&mut d_pos, &samples);
            // the patches' rows, without each sample's class token
            let mut d_emb = vec![0.0; batch * n * d];
            if d > 0 {
                d_emb.par_chunks_mut(d).enumerate().for_each(|(r, e)| {
                    let (b, i) = (r / n, r % n);
                    e.copy_from_slice(&d_out[b * tokens + (1 + i) * d..][..d])
                });
            }
            let d_x = linear_backward_then(&d_emb, &xs, (&lin, &linear_keys), grads, |_, _| {})?;
            write_buffer(grads.get_or_alloc_mut(&inp)?, |g| add_in_place(g, &d_x));
            write_buffer(grads.get_or_alloc_mut(&cls_key)?, |g| {
                add_in_place(g, &d_pos[..d])
            });
            write_buffer(grads.get_or_alloc_mut(&pos_key)?, |g| {
                add_in_place(g, &d_pos)
            });
            Ok(())
        });
    }
    out.put_tape(tape)
}
