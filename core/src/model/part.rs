//! The pieces a network is made of. The engine's ViT modules are parts; so are the layers a
//! plugin defines (a stitch between widths, a thinner meta layer). A network is a sequence of
//! parts, each mapping a `(batch, tokens, width)` activation to the next; the first takes
//! patches, the last returns one token of class logits.
//!
//! Plugin authors implement [`Layer`], whose forward pass is generic over dfdx's tape; every
//! `Layer` is then a [`Part`], the object-safe form the engine stores as `Box<dyn Part>`.

use super::block::Mode;
use super::params::{HasParams, ParamMut, ParamRef};
use crate::device::{Act, Dev, MaybeSync};
use dfdx::prelude::*;

/// The tape of a pass that records gradients.
pub type Traced = OwnedTape<f32, Dev>;

/// A trainable piece of a network, written once for both traced and untraced passes.
pub trait Layer: HasParams + MaybeSync + 'static {
    /// `x` is `(batch, tokens, width)`; `rates` holds the drop-path rate of each of this
    /// layer's [`Layer::depth`] residual blocks.
    fn forward<T: Tape<f32, Dev>>(&self, x: Act<T>, rates: &[f64], mode: &mut Mode) -> Act<T>;

    /// Residual blocks that take a drop-path rate and count towards the network's depth (and
    /// its `blocks.{j}` numbering). Stitches and other glue: 0.
    fn depth(&self) -> usize {
        0
    }

    /// Forward FLOPs per sample for an input of `tokens` x `width`. The default counts every
    /// matrix parameter as a Linear applied to each token (2 FLOPs per multiply-add).
    fn flops(&self, tokens: usize, _width: usize) -> f64 {
        let weights: usize = self
            .named_params()
            .iter()
            .filter(|(_, p)| p.shape().len() == 2)
            .map(|(_, p)| p.numel())
            .sum();
        2.0 * (tokens * weights) as f64
    }

    /// Parameters under their names in a network where `block_offset` blocks come before this
    /// layer. Layers without blocks keep their own names.
    fn params_at<'a>(&'a self, _block_offset: usize, out: &mut Vec<(String, ParamRef<'a>)>) {
        self.params("", out)
    }

    fn params_mut_at<'a>(
        &'a mut self,
        _block_offset: usize,
        out: &mut Vec<(String, ParamMut<'a>)>,
    ) {
        self.params_mut("", out)
    }
}

/// The object-safe form of a [`Layer`]: one forward per tape type.
pub trait Part: MaybeSync {
    fn forward_plain(&self, x: Act<NoneTape>, rates: &[f64], mode: &mut Mode) -> Act<NoneTape>;
    fn forward_traced(&self, x: Act<Traced>, rates: &[f64], mode: &mut Mode) -> Act<Traced>;
    fn depth(&self) -> usize;
    fn flops(&self, tokens: usize, width: usize) -> f64;
    fn params_at<'a>(&'a self, block_offset: usize, out: &mut Vec<(String, ParamRef<'a>)>);
    fn params_mut_at<'a>(&'a mut self, block_offset: usize, out: &mut Vec<(String, ParamMut<'a>)>);
}

impl<L: Layer> Part for L {
    fn forward_plain(&self, x: Act<NoneTape>, rates: &[f64], mode: &mut Mode) -> Act<NoneTape> {
        Layer::forward(self, x, rates, mode)
    }
    fn forward_traced(&self, x: Act<Traced>, rates: &[f64], mode: &mut Mode) -> Act<Traced> {
        Layer::forward(self, x, rates, mode)
    }
    fn depth(&self) -> usize {
        Layer::depth(self)
    }
    fn flops(&self, tokens: usize, width: usize) -> f64 {
        Layer::flops(self, tokens, width)
    }
    fn params_at<'a>(&'a self, block_offset: usize, out: &mut Vec<(String, ParamRef<'a>)>) {
        Layer::params_at(self, block_offset, out)
    }
    fn params_mut_at<'a>(&'a mut self, block_offset: usize, out: &mut Vec<(String, ParamMut<'a>)>) {
        Layer::params_mut_at(self, block_offset, out)
    }
}

/// A layer whose parameters are listed under `name.` (`stitch.2.in.weight`), so that several
/// copies of one layer type in a network keep distinct names.
pub struct Named<L> {
    pub name: String,
    pub inner: L,
}

impl<L> Named<L> {
    pub fn new(name: impl Into<String>, inner: L) -> Named<L> {
        Named {
            name: name.into(),
            inner,
        }
    }
}

impl<L: HasParams> HasParams for Named<L> {
    fn params<'a>(&'a self, prefix: &str, out: &mut Vec<(String, ParamRef<'a>)>) {
        self.inner.params(&format!("{prefix}{}.", self.name), out)
    }
    fn params_mut<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, ParamMut<'a>)>) {
        self.inner
            .params_mut(&format!("{prefix}{}.", self.name), out)
    }
}

impl<L: Layer> Layer for Named<L> {
    fn forward<T: Tape<f32, Dev>>(&self, x: Act<T>, rates: &[f64], mode: &mut Mode) -> Act<T> {
        self.inner.forward(x, rates, mode)
    }
    fn depth(&self) -> usize {
        self.inner.depth()
    }
    fn flops(&self, tokens: usize, width: usize) -> f64 {
        self.inner.flops(tokens, width)
    }
}
