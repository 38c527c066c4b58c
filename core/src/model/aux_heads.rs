//! Local heads that module-wise methods train beside a module and drop at assembly: a
//! classifier on a module's tokens (DGL's and InfoPro's auxiliary classifier) and a decoder
//! from tokens back to the input patches (InfoPro's reconstruction). Both have no blocks, so
//! stacking leaves them out of the assembled model.

use super::block::Mode;
use super::init::Init;
use super::layers::{LayerNorm, Linear};
use super::params::{HasParams, ParamMut, ParamRef};
use super::part::Layer;
use crate::device::{Act, Dev};
use dfdx::prelude::*;

/// LayerNorm on every token, the mean over tokens, `hidden` Linear + GELU layers at the token
/// width, and a Linear to the classes: tokens `(b, t, d)` to one token of logits `(b, 1, c)`.
/// (DGL pools the feature map and runs an MLP; this is its form for tokens.)
pub struct AuxClassifier {
    pub norm: LayerNorm,
    pub hidden: Vec<Linear>,
    pub fc: Linear,
}

impl AuxClassifier {
    pub fn new(init: &mut Init, width: usize, classes: usize, hidden: usize, eps: f64) -> Self {
        AuxClassifier {
            norm: LayerNorm::new(init, width, eps),
            hidden: (0..hidden)
                .map(|_| Linear::new(init, width, width, true))
                .collect(),
            fc: Linear::new(init, width, classes, true),
        }
    }
}

impl HasParams for AuxClassifier {
    fn params<'a>(&'a self, prefix: &str, out: &mut Vec<(String, ParamRef<'a>)>) {
        self.norm.params(&format!("{prefix}norm."), out);
        for (j, l) in self.hidden.iter().enumerate() {
            l.params(&format!("{prefix}hidden.{j}."), out);
        }
        self.fc.params(&format!("{prefix}fc."), out);
    }
    fn params_mut<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, ParamMut<'a>)>) {
        self.norm.params_mut(&format!("{prefix}norm."), out);
        for (j, l) in self.hidden.iter_mut().enumerate() {
            l.params_mut(&format!("{prefix}hidden.{j}."), out);
        }
        self.fc.params_mut(&format!("{prefix}fc."), out);
    }
}

impl Layer for AuxClassifier {
    fn forward<T: Tape<f32, Dev>>(&self, x: Act<T>, _rates: &[f64], _mode: &mut Mode) -> Act<T> {
        let (b, t, d) = *x.shape();
        let normed = self.norm.forward(x.reshape_like(&(b * t, d)));
        let mut y = normed
            .reshape_like(&(b, t, d))
            .mean::<(usize, usize), Axis<1>>();
        for l in &self.hidden {
            y = crate::ops::gelu::gelu(l.forward(y));
        }
        let logits = self.fc.forward(y);
        let c = logits.shape().1;
        logits.reshape_like(&(b, 1, c))
    }

    /// The norm works on every token; the linears on the pooled one.
    fn flops(&self, _tokens: usize, width: usize) -> f64 {
        let linears: usize = self.hidden.iter().map(|l| l.weight.shape().0 * width).sum();
        2.0 * (linears + self.fc.weight.shape().0 * width) as f64
    }
}

/// LayerNorm and a Linear from every patch token back to its patch's pixels: tokens
/// `(b, 1 + n, d)` (class token first) to patches `(b, n, channels * patch * patch)`, the
/// model's input. Drops the class token.
pub struct PatchDecoder {
    pub norm: LayerNorm,
    pub proj: Linear,
}
crate::impl_params!(PatchDecoder { child norm, child proj, });

impl PatchDecoder {
    pub fn new(init: &mut Init, width: usize, patch_dim: usize, eps: f64) -> Self {
        PatchDecoder {
            norm: LayerNorm::new(init, width, eps),
            proj: Linear::new(init, width, patch_dim, true),
        }
    }
}

impl Layer for PatchDecoder {
    fn forward<T: Tape<f32, Dev>>(&self, x: Act<T>, _rates: &[f64], _mode: &mut Mode) -> Act<T> {
        let (b, t, d) = *x.shape();
        let patches = x.slice((.., 1..t, ..)).reshape_like(&(b * (t - 1), d));
        let y = self.proj.forward(self.norm.forward(patches));
        let p = y.shape().1;
        y.reshape_like(&(b, t - 1, p))
    }
}
