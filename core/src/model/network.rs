//! ViT modules and the networks built from parts: the target ViT, the meta model and the
//! hybrids of incubation are all a `Network`; with the paper's plugins, one of K `Module`s.

use super::block::{Block, Mode};
use super::config::VitConfig;
use super::head::Head;
use super::init::Init;
use super::params::{HasParams, ParamMut, ParamRef};
use super::part::{Layer, Part, Traced};
use super::stem::Stem;
use crate::device::{Act, Dev, Rows};
use dfdx::prelude::*;

/// One of the K consecutive pieces of a ViT. Module 0 owns the stem, module K-1 the head.
/// Parameter names are local: a module's blocks are `blocks.0..`, whatever its position, so a
/// one-block meta module and a three-block target module can take the same place.
pub struct Module {
    pub stem: Option<Stem>,
    pub blocks: Vec<Block>,
    pub head: Option<Head>,
}

impl Module {
    /// A randomly initialised module at position `index` of `count`, with `depth` blocks.
    pub fn new(
        init: &mut Init,
        cfg: &VitConfig,
        index: usize,
        count: usize,
        depth: usize,
    ) -> Module {
        Module {
            stem: (index == 0).then(|| Stem::new(init, cfg)),
            blocks: (0..depth).map(|_| Block::new(init, cfg)).collect(),
            head: (index + 1 == count).then(|| Head::new(init, cfg)),
        }
    }

    /// Stem (if owned), blocks, and head (if owned) on `x`, block `j` with drop-path rate
    /// `rates[j]`. Patches in for module 0; logits out of the last module, as one token
    /// `(batch, 1, classes)`; tokens in and out otherwise.
    pub fn forward<T: Tape<f32, Dev>>(
        &self,
        mut x: Act<T>,
        rates: &[f64],
        mode: &mut Mode,
    ) -> Act<T> {
        use crate::ops::profile::span;
        if let Some(stem) = &self.stem {
            x = span("stem", x, |x| stem.forward(x));
        }
        // a head reads the class token alone: the last block computes only that
        let first_token_only = self.head.is_some();
        x = super::block::forward_blocks(&self.blocks, rates, x, mode, first_token_only);
        match &self.head {
            Some(head) => {
                let logits = span("head", x, |x| head.forward(x));
                let (b, c) = *logits.shape();
                logits.reshape_like(&(b, 1, c))
            }
            None => x,
        }
    }

    /// Parameters with the block indices shifted by `offset` (global names in a network).
    pub fn params_at<'a>(&'a self, offset: usize, out: &mut Vec<(String, ParamRef<'a>)>) {
        if let Some(stem) = &self.stem {
            stem.params("stem.", out);
        }
        for (j, b) in self.blocks.iter().enumerate() {
            b.params(&format!("blocks.{}.", j + offset), out);
        }
        if let Some(head) = &self.head {
            head.params("", out);
        }
    }

    pub fn params_mut_at<'a>(&'a mut self, offset: usize, out: &mut Vec<(String, ParamMut<'a>)>) {
        if let Some(stem) = &mut self.stem {
            stem.params_mut("stem.", out);
        }
        for (j, b) in self.blocks.iter_mut().enumerate() {
            b.params_mut(&format!("blocks.{}.", j + offset), out);
        }
        if let Some(head) = &mut self.head {
            head.params_mut("", out);
        }
    }
}

impl Layer for Module {
    fn forward<T: Tape<f32, Dev>>(&self, x: Act<T>, rates: &[f64], mode: &mut Mode) -> Act<T> {
        Module::forward(self, x, rates, mode)
    }

    fn depth(&self) -> usize {
        self.blocks.len()
    }

    /// The usual ViT count: stem and every matrix product of the blocks (attention scores
    /// included) on all tokens; the head only on the class token.
    fn flops(&self, tokens: usize, _width: usize) -> f64 {
        let mut f = 0.0;
        let mut t = tokens;
        if let Some(stem) = &self.stem {
            let (d, p) = *stem.patch_embed.weight.shape();
            f += 2.0 * (t * p * d) as f64;
            t += 1;
        }
        for b in &self.blocks {
            let weights: usize = b
                .named_params()
                .iter()
                .filter(|(_, p)| p.shape().len() == 2)
                .map(|(_, p)| p.numel())
                .sum();
            f += 2.0 * (t * weights) as f64 + 4.0 * (t * t * b.width()) as f64;
        }
        if let Some(head) = &self.head {
            let (c, d) = *head.head.weight.shape();
            f += 2.0 * (c * d) as f64;
        }
        f
    }

    fn params_at<'a>(&'a self, offset: usize, out: &mut Vec<(String, ParamRef<'a>)>) {
        Module::params_at(self, offset, out)
    }

    fn params_mut_at<'a>(&'a mut self, offset: usize, out: &mut Vec<(String, ParamMut<'a>)>) {
        Module::params_mut_at(self, offset, out)
    }
}

impl HasParams for Module {
    fn params<'a>(&'a self, prefix: &str, out: &mut Vec<(String, ParamRef<'a>)>) {
        let mut local = Vec::new();
        self.params_at(0, &mut local);
        out.extend(local.into_iter().map(|(n, p)| (format!("{prefix}{n}"), p)));
    }
    fn params_mut<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, ParamMut<'a>)>) {
        let mut local = Vec::new();
        self.params_mut_at(0, &mut local);
        out.extend(local.into_iter().map(|(n, p)| (format!("{prefix}{n}"), p)));
    }
}

/// Parts run in sequence: patches in, logits out. Parameter names are global (`blocks.{j}`
/// counts the blocks of all parts before), so a stacked target and an end-to-end model have
/// identical names.
pub struct Network {
    pub parts: Vec<Box<dyn Part>>,
}

impl HasParams for Network {
    fn params<'a>(&'a self, prefix: &str, out: &mut Vec<(String, ParamRef<'a>)>) {
        let mut offset = 0;
        let mut local = Vec::new();
        for p in &self.parts {
            p.params_at(offset, &mut local);
            offset += p.depth();
        }
        out.extend(local.into_iter().map(|(n, p)| (format!("{prefix}{n}"), p)));
    }
    fn params_mut<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, ParamMut<'a>)>) {
        let mut offset = 0;
        let mut local = Vec::new();
        for p in &mut self.parts {
            let depth = p.depth();
            p.params_mut_at(offset, &mut local);
            offset += depth;
        }
        out.extend(local.into_iter().map(|(n, p)| (format!("{prefix}{n}"), p)));
    }
}

impl Network {
    /// A randomly initialised ViT cut into modules of `depths[i]` blocks.
    pub fn vit(init: &mut Init, cfg: &VitConfig, depths: &[usize]) -> Network {
        let k = depths.len();
        Network::from_parts(
            depths
                .iter()
                .enumerate()
                .map(|(i, &d)| Module::new(init, cfg, i, k, d))
                .collect::<Vec<_>>(),
        )
    }

    /// A network of layers of one type (e.g. the K modules of a ViT).
    pub fn from_parts<L: Layer>(parts: Vec<L>) -> Network {
        Network {
            parts: parts
                .into_iter()
                .map(|p| Box::new(p) as Box<dyn Part>)
                .collect(),
        }
    }

    pub fn depth(&self) -> usize {
        self.parts.iter().map(|p| p.depth()).sum()
    }

    /// Blocks per part.
    pub fn depths(&self) -> Vec<usize> {
        self.parts.iter().map(|p| p.depth()).collect()
    }

    /// Names of the parameters of `parts`, in this network's global naming.
    pub fn param_names_of(&self, parts: std::ops::Range<usize>) -> Vec<String> {
        let mut offset: usize = self.parts[..parts.start].iter().map(|p| p.depth()).sum();
        let mut out = Vec::new();
        for p in &self.parts[parts] {
            p.params_at(offset, &mut out);
            offset += p.depth();
        }
        out.into_iter().map(|(n, _)| n).collect()
    }

    /// Takes `parts` out of the network, as a network of their own (local names).
    pub fn split_off(&mut self, parts: std::ops::Range<usize>) -> Network {
        Network {
            parts: self.parts.drain(parts).collect(),
        }
    }

    /// Drop-path rate of every block: block `j` of the whole network gets
    /// `drop_path * j / (depth - 1)` (timm's linear rule over the network's depth).
    pub fn drop_path_rates(&self, drop_path: f64) -> Vec<f64> {
        let depth = self.depth();
        (0..depth)
            .map(|j| {
                if depth > 1 {
                    drop_path * j as f64 / (depth - 1) as f64
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// Runs `range` of the parts with tape `T`, through `step` (one per tape type).
    fn run<T: Tape<f32, Dev>>(
        &self,
        mut x: Act<T>,
        range: std::ops::Range<usize>,
        drop_path: f64,
        mode: &mut Mode,
        step: impl Fn(&dyn Part, Act<T>, &[f64], &mut Mode) -> Act<T>,
    ) -> Act<T> {
        let rates = self.drop_path_rates(drop_path);
        let mut j: usize = self.parts[..range.start].iter().map(|p| p.depth()).sum();
        for p in &self.parts[range] {
            x = step(p.as_ref(), x, &rates[j..j + p.depth()], mode);
            j += p.depth();
        }
        x
    }

    /// Forward pass without gradients (evaluation, teachers, frozen prefixes).
    pub fn forward(
        &self,
        patches: Act<NoneTape>,
        drop_path: f64,
        mode: &mut Mode,
    ) -> Rows<NoneTape> {
        let x = self.run(
            patches,
            0..self.parts.len(),
            drop_path,
            mode,
            |p, x, r, m| p.forward_plain(x, r, m),
        );
        logits(x)
    }

    /// Forward pass that records gradients only from part `first` on: earlier parts are
    /// frozen and nothing before them needs a gradient, so they run untraced.
    pub fn forward_traced_from(
        &self,
        patches: Act<NoneTape>,
        first: usize,
        drop_path: f64,
        mode: &mut Mode,
    ) -> Rows<Traced> {
        let x = self.run(patches, 0..first, drop_path, mode, |p, x, r, m| {
            p.forward_plain(x, r, m)
        });
        let x = self.run(
            x.leaky_traced(),
            first..self.parts.len(),
            drop_path,
            mode,
            |p, x, r, m| p.forward_traced(x, r, m),
        );
        logits(x)
    }

    /// [`Network::forward_traced_from`] that also hands back the activations at `taps`:
    /// position `p` is the input of part `p` (`p = parts.len()`: the last part's output), in
    /// the order asked. Each is a tape-less copy of the very tensor the next part receives, so
    /// a loss built on it sends gradients into the parts before it once its tape is merged
    /// with the logits' (what [`crate::train::loss::LossTerms`] does).
    pub fn forward_tapped(
        &self,
        patches: Act<NoneTape>,
        first: usize,
        drop_path: f64,
        mode: &mut Mode,
        taps: &[usize],
    ) -> (Rows<Traced>, Vec<Act<Traced>>) {
        let n = self.parts.len();
        if let Some(bad) = taps.iter().find(|&&p| p > n) {
            panic!("tap at position {bad} of a network with {n} parts (positions are 0..={n})");
        }
        let mut seen: Vec<Option<Act<Traced>>> = (0..taps.len()).map(|_| None).collect();
        let mut record = |pos: usize, x: Act<Traced>| {
            for (k, _) in taps.iter().enumerate().filter(|(_, &t)| t == pos) {
                seen[k] = Some(x.retaped());
            }
        };
        let rates = self.drop_path_rates(drop_path);
        let mut plain = patches;
        let mut j = 0;
        for (p, part) in self.parts[..first].iter().enumerate() {
            record(p, plain.retaped());
            plain = part.forward_plain(plain, &rates[j..j + part.depth()], mode);
            j += part.depth();
        }
        let mut x = plain.leaky_traced();
        for (p, part) in self.parts.iter().enumerate().skip(first) {
            record(p, x.retaped());
            x = part.forward_traced(x, &rates[j..j + part.depth()], mode);
            j += part.depth();
        }
        record(n, x.retaped());
        let seen = seen
            .into_iter()
            .map(|t| t.expect("every tap is at a position 0..=n"))
            .collect();
        (logits(x), seen)
    }

    /// The parts on an activation, without gradients: an extra network (a teacher's module,
    /// an auxiliary head) whose output need not be logits.
    pub fn run_plain(&self, x: Act<NoneTape>, mode: &mut Mode) -> Act<NoneTape> {
        self.run(x, 0..self.parts.len(), 0.0, mode, |p, x, r, m| {
            p.forward_plain(x, r, m)
        })
    }

    /// The parts on a traced activation: gradients reach `x` and every parameter on the way.
    pub fn run_traced(&self, x: Act<Traced>, mode: &mut Mode) -> Act<Traced> {
        self.run(x, 0..self.parts.len(), 0.0, mode, |p, x, r, m| {
            p.forward_traced(x, r, m)
        })
    }

    /// Forward FLOPs per sample of the whole network on an input shaped `(_, tokens, width)`.
    pub fn flops_on(&self, tokens: usize, width: usize) -> f64 {
        let dev = self.device();
        let x: Act<NoneTape> = dev.zeros_like(&(1, tokens, width));
        self.flops_per_part(&x).iter().sum()
    }

    /// The device the parameters live on.
    fn device(&self) -> Dev {
        let params = self.named_params();
        match params.first() {
            Some((_, ParamRef::Vector(t))) => t.device().clone(),
            Some((_, ParamRef::Matrix(t))) => t.device().clone(),
            None => Dev::default(),
        }
    }

    /// Forward FLOPs per sample of each part, for inputs shaped like `patches` (one sample
    /// is run to learn every part's input shape).
    pub fn flops_per_part(&self, patches: &Act<NoneTape>) -> Vec<f64> {
        let (_, n, p) = *patches.shape();
        let mut x: Act<NoneTape> = patches.device().zeros_like(&(1, n, p));
        let mut out = Vec::with_capacity(self.parts.len());
        for part in &self.parts {
            let (_, t, w) = *x.shape();
            out.push(part.flops(t, w));
            x = part.forward_plain(x, &vec![0.0; part.depth()], &mut Mode::eval());
        }
        out
    }
}

/// The last part's single output token as logits `(batch, classes)`.
pub fn logits<T: Tape<f32, Dev>>(x: Act<T>) -> Rows<T> {
    let (b, t, c) = *x.shape();
    assert_eq!(
        t, 1,
        "the last part of a network must output one token of class logits, (batch, 1, classes); it gave {t} tokens"
    );
    x.reshape_like(&(b, c))
}
