//! A pre-norm ViT block with GELU MLP and stochastic depth (drop-path), as in timm.

use super::attention::Attention;
use super::config::VitConfig;
use super::init::Init;
use super::layers::{LayerNorm, Linear};
use crate::device::{Act, Dev};
use crate::impl_params;
use dfdx::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
}
impl_params!(Mlp { child fc1, child fc2, });

pub struct Block {
    pub norm1: LayerNorm,
    pub attn: Attention,
    pub norm2: LayerNorm,
    pub mlp: Mlp,
}
impl_params!(Block { child norm1, child attn, child norm2, child mlp, });

/// Whether a forward pass trains (drop-path active) and where its randomness comes from.
pub struct Mode<'a> {
    pub train: bool,
    pub rng: Option<&'a mut ChaCha8Rng>,
}

impl Mode<'_> {
    pub fn eval() -> Mode<'static> {
        Mode {
            train: false,
            rng: None,
        }
    }
}

impl Block {
    pub fn new(init: &mut Init, cfg: &VitConfig) -> Block {
        let d = cfg.embed_dim;
        Block {
            norm1: LayerNorm::new(init, d, cfg.norm_eps),
            attn: Attention::new(init, d, cfg.num_heads, cfg.qkv_bias),
            norm2: LayerNorm::new(init, d, cfg.norm_eps),
            mlp: Mlp {
                fc1: Linear::new(init, d, cfg.mlp_hidden(), true),
                fc2: Linear::new(init, cfg.mlp_hidden(), d, true),
            },
        }
    }

    /// Views of the weights, as the fused kernel takes them.
    #[cfg(not(feature = "cuda"))]
    fn weights(&self) -> crate::ops::fused_block::BlockWeights<'_> {
        use crate::ops::fused_block::{LinearWeights, NormWeights};
        fn lin(l: &Linear) -> LinearWeights<'_> {
            LinearWeights {
                weight: &l.weight,
                bias: l.bias.as_ref(),
            }
        }
        fn norm(n: &LayerNorm) -> NormWeights<'_> {
            NormWeights {
                weight: &n.weight,
                bias: &n.bias,
                eps: n.eps,
            }
        }
        crate::ops::fused_block::BlockWeights {
            norm1: norm(&self.norm1),
            qkv: lin(&self.attn.qkv),
            proj: lin(&self.attn.proj),
            num_heads: self.attn.num_heads,
            norm2: norm(&self.norm2),
            fc1: lin(&self.mlp.fc1),
            fc2: lin(&self.mlp.fc2),
        }
    }

    pub fn width(&self) -> usize {
        self.norm1.weight.shape().0
    }

    /// `x + dp(attn(norm1(x)))`, then `x + dp(mlp(norm2(x)))`, with `drop_path` the
    /// probability of dropping a sample's residual branch: [`forward_blocks`] on this block.
    pub fn forward<T: Tape<f32, Dev>>(&self, x: Act<T>, drop_path: f64, mode: &mut Mode) -> Act<T> {
        forward_blocks(std::slice::from_ref(self), &[drop_path], x, mode, false)
    }

    /// [`Block::forward`] from dfdx tensor ops: the CUDA path, and the reference the fused CPU
    /// block is tested against.
    pub fn forward_composed<T: Tape<f32, Dev>>(
        &self,
        x: Act<T>,
        drop_path: f64,
        mode: &mut Mode,
    ) -> Act<T> {
        use crate::ops::profile::span;
        let (b, t, d) = *x.shape();
        let branch = span(
            "layernorm",
            x.retaped::<T>().reshape_like(&(b * t, d)),
            |x| self.norm1.forward(x),
        );
        let branch = self.attn.forward(branch.reshape_like(&(b, t, d)));
        let x = span("residual + drop-path", x, |x| {
            x + drop_path_branch(branch, drop_path, mode)
        });
        let branch = span(
            "layernorm",
            x.retaped::<T>().reshape_like(&(b * t, d)),
            |x| self.norm2.forward(x),
        );
        let hidden = span("mlp fc1", branch, |x| self.mlp.fc1.forward(x));
        let hidden = span("gelu", hidden, crate::ops::gelu);
        let branch = span("mlp fc2", hidden, |x| self.mlp.fc2.forward(x));
        span("residual + drop-path", x, |x| {
            x + drop_path_branch(branch.reshape_like(&(b, t, d)), drop_path, mode)
        })
    }
}

/// Stochastic depth: each sample's branch is kept with probability `1 - p` and scaled by
/// `1 / (1 - p)` so its expectation is unchanged (timm's `drop_path` with `scale_by_keep`).
pub fn drop_path_branch<T: Tape<f32, Dev>>(branch: Act<T>, p: f64, mode: &mut Mode) -> Act<T> {
    let shape = *branch.shape();
    match drop_path_mask(shape.0, p, mode) {
        Some(mask) => {
            let mask = crate::device::tensor_from_slice(branch.device(), &mask, (shape.0,));
            branch * mask.broadcast_like::<_, Axes2<1, 2>>(&shape)
        }
        None => branch,
    }
}

/// `blocks` in turn, block `j` with drop-path rate `rates[j]` (as many blocks as rates). On
/// the CPU one fused operation for them all (`ops::fused_block`), activations passed on in
/// host memory; on CUDA, block by block from dfdx ops. With `first_token_only`, the output is
/// each sample's first token, `(batch, 1, width)`, all a classifier on the class token reads:
/// on the CPU the last block then computes that token alone.
pub fn forward_blocks<T: Tape<f32, Dev>>(
    blocks: &[Block],
    rates: &[f64],
    x: Act<T>,
    mode: &mut Mode,
    first_token_only: bool,
) -> Act<T> {
    let count = blocks.len().min(rates.len());
    if count == 0 {
        return if first_token_only { first_token(x) } else { x };
    }
    #[cfg(not(feature = "cuda"))]
    {
        // two masks per block, drawn in the order the composed blocks draw them
        let batch = x.shape().0;
        let (weights, masks): (Vec<_>, Vec<_>) = blocks[..count]
            .iter()
            .zip(rates)
            .map(|(b, &p)| {
                let masks = [
                    drop_path_mask(batch, p, mode),
                    drop_path_mask(batch, p, mode),
                ];
                (b.weights(), masks)
            })
            .unzip();
        crate::ops::fused_block::forward(&weights, x, masks, first_token_only)
    }
    #[cfg(feature = "cuda")]
    {
        let mut x = x;
        for (b, &p) in blocks[..count].iter().zip(rates) {
            x = b.forward_composed(x, p, mode);
        }
        if first_token_only {
            first_token(x)
        } else {
            x
        }
    }
}

/// Each sample's first token, `(batch, 1, width)`.
fn first_token<T: Tape<f32, Dev>>(x: Act<T>) -> Act<T> {
    let (b, _, d) = *x.shape();
    x.slice((.., 0..1, ..)).reshape_like(&(b, 1, d))
}

/// Each sample's factor for its residual branch: `1 / (1 - p)` if kept, 0 if dropped; `None`
/// when nothing can be dropped (evaluation, `p = 0`), which draws no random numbers.
pub fn drop_path_mask(batch: usize, p: f64, mode: &mut Mode) -> Option<Vec<f32>> {
    let rng = match (&mut mode.rng, mode.train && p > 0.0) {
        (Some(rng), true) => rng,
        _ => return None,
    };
    let keep = 1.0 - p;
    Some(
        (0..batch)
            .map(|_| {
                if rng.gen_bool(keep) {
                    (1.0 / keep) as f32
                } else {
                    0.0
                }
            })
            .collect(),
    )
}
