//! The stem: patch embedding, class token and position embedding. Owned by module 0.

use super::config::VitConfig;
use super::init::Init;
use super::layers::Linear;
use crate::device::{Act, Dev, Matrix, Vector};
use crate::impl_params;
use dfdx::prelude::*;

pub struct Stem {
    /// A patch-size-strided convolution is a Linear on flattened patches; the weight is stored
    /// (embed_dim, channels * patch * patch), the conv kernel's layout flattened.
    pub patch_embed: Linear,
    pub cls_token: Vector,
    pub pos_embed: Matrix,
}
impl_params!(Stem { vec cls_token, mat pos_embed, child patch_embed, });

impl Stem {
    pub fn new(init: &mut Init, cfg: &VitConfig) -> Stem {
        let (p, d) = (cfg.patch_dim(), cfg.embed_dim);
        // PyTorch's default Conv2d init: uniform(±1/sqrt(fan_in)) for weight and bias.
        let bound = 1.0 / (p as f32).sqrt();
        let (w, b) = (init.uniform(p * d, bound), init.uniform(d, bound));
        let patch_embed = Linear {
            weight: init.matrix(d, p, w),
            bias: Some(init.vector(b)),
        };
        let cls = init.trunc_normal(d, 0.02);
        let pos = init.trunc_normal(cfg.tokens() * d, 0.02);
        Stem {
            patch_embed,
            cls_token: init.vector(cls),
            pos_embed: init.matrix(cfg.tokens(), d, pos),
        }
    }

    /// Patches (batch, patches, patch_dim) to tokens (batch, 1 + patches, embed_dim). On the
    /// CPU, one fused operation (`ops::fused_stem`); on CUDA, the same from dfdx ops.
    pub fn forward<T: Tape<f32, Dev>>(&self, patches: Act<T>) -> Act<T> {
        #[cfg(not(feature = "cuda"))]
        {
            use crate::ops::fused_block::LinearWeights;
            let w = crate::ops::fused_stem::StemWeights {
                patch_embed: LinearWeights {
                    weight: &self.patch_embed.weight,
                    bias: self.patch_embed.bias.as_ref(),
                },
                cls_token: &self.cls_token,
                pos_embed: &self.pos_embed,
            };
            crate::ops::fused_stem::forward(&w, patches)
        }
        #[cfg(feature = "cuda")]
        return self.forward_composed(patches);
    }

    /// [`Stem::forward`] from dfdx tensor ops: the CUDA path, and the reference the fused CPU
    /// stem is tested against.
    pub fn forward_composed<T: Tape<f32, Dev>>(&self, patches: Act<T>) -> Act<T> {
        let (b, n, p) = *patches.shape();
        let d = self.cls_token.shape().0;
        let x = self
            .patch_embed
            .forward(patches.reshape_like(&(b * n, p)))
            .reshape_like(&(b, n, d));
        let cls = self
            .cls_token
            .retaped::<T>()
            .broadcast_like::<_, Axes2<0, 1>>(&(b, 1, d));
        let x = (cls, x).concat_along(Axis::<1>);
        let shape = (b, n + 1, d);
        x.reshape_like(&shape)
            + self
                .pos_embed
                .retaped::<T>()
                .broadcast_like::<_, Axis<0>>(&shape)
    }
}
