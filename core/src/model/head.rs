//! The head: final LayerNorm and classifier on the class token. Owned by the last module.

use super::config::VitConfig;
use super::init::Init;
use super::layers::{LayerNorm, Linear};
use crate::device::{Act, Dev, Rows};
use crate::impl_params;
use dfdx::prelude::*;

pub struct Head {
    pub norm: LayerNorm,
    pub head: Linear,
}
impl_params!(Head { child norm, child head, });

impl Head {
    pub fn new(init: &mut Init, cfg: &VitConfig) -> Head {
        Head {
            norm: LayerNorm::new(init, cfg.embed_dim, cfg.norm_eps),
            head: Linear::new(init, cfg.embed_dim, cfg.num_classes, true),
        }
    }

    /// Tokens (batch, tokens, width) to logits (batch, classes). LayerNorm acts per token, so
    /// normalising only the class token gives timm's result at a fraction of the cost.
    pub fn forward<T: Tape<f32, Dev>>(&self, x: Act<T>) -> Rows<T> {
        let (b, _, d) = *x.shape();
        let cls = x.slice((.., 0..1, ..)).reshape_like(&(b, d));
        self.head.forward(self.norm.forward(cls))
    }
}
