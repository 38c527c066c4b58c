//! Modules and the networks stacked from them: the target ViT, the meta model and the hybrids
//! of incubation are all a `Network` of K `Module`s.

use super::block::{Block, Mode};
use super::config::VitConfig;
use super::head::Head;
use super::init::Init;
use super::params::{HasParams, ParamMut, ParamRef};
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

    /// Stem (if owned) and blocks on `x`, block `j` with drop-path rate `rates[j]`; patches in,
    /// tokens out for module 0, tokens in and out for the others. The head is not applied.
    pub fn forward<T: Tape<f32, Dev>>(
        &self,
        mut x: Act<T>,
        rates: &[f64],
        mode: &mut Mode,
    ) -> Act<T> {
        if let Some(stem) = &self.stem {
            x = stem.forward(x);
        }
        for (b, &rate) in self.blocks.iter().zip(rates) {
            x = b.forward(x, rate, mode);
        }
        x
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

/// K modules run in sequence. Parameter names are global (`blocks.{i}` counts across modules),
/// so a stacked target and an end-to-end model have identical names.
pub struct Network {
    pub modules: Vec<Module>,
}

impl HasParams for Network {
    fn params<'a>(&'a self, prefix: &str, out: &mut Vec<(String, ParamRef<'a>)>) {
        let mut offset = 0;
        let mut local = Vec::new();
        for m in &self.modules {
            m.params_at(offset, &mut local);
            offset += m.blocks.len();
        }
        out.extend(local.into_iter().map(|(n, p)| (format!("{prefix}{n}"), p)));
    }
    fn params_mut<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, ParamMut<'a>)>) {
        let mut offset = 0;
        let mut local = Vec::new();
        for m in &mut self.modules {
            let depth = m.blocks.len();
            m.params_mut_at(offset, &mut local);
            offset += depth;
        }
        out.extend(local.into_iter().map(|(n, p)| (format!("{prefix}{n}"), p)));
    }
}

impl Network {
    /// A randomly initialised network with `depths[i]` blocks in module i.
    pub fn new(init: &mut Init, cfg: &VitConfig, depths: &[usize]) -> Network {
        let k = depths.len();
        Network {
            modules: depths
                .iter()
                .enumerate()
                .map(|(i, &d)| Module::new(init, cfg, i, k, d))
                .collect(),
        }
    }

    pub fn depth(&self) -> usize {
        self.modules.iter().map(|m| m.blocks.len()).sum()
    }

    pub fn depths(&self) -> Vec<usize> {
        self.modules.iter().map(|m| m.blocks.len()).collect()
    }

    /// Names of the parameters of module `i`, in this network's global naming.
    pub fn module_param_names(&self, i: usize) -> Vec<String> {
        let offset: usize = self.modules[..i].iter().map(|m| m.blocks.len()).sum();
        let mut out = Vec::new();
        self.modules[i].params_at(offset, &mut out);
        out.into_iter().map(|(n, _)| n).collect()
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

    fn run_modules<T: Tape<f32, Dev>>(
        &self,
        mut x: Act<T>,
        range: std::ops::Range<usize>,
        drop_path: f64,
        mode: &mut Mode,
    ) -> Act<T> {
        let rates = self.drop_path_rates(drop_path);
        let mut j: usize = self.modules[..range.start]
            .iter()
            .map(|m| m.blocks.len())
            .sum();
        for m in &self.modules[range] {
            x = m.forward(x, &rates[j..j + m.blocks.len()], mode);
            j += m.blocks.len();
        }
        x
    }

    fn head(&self) -> &Head {
        self.modules
            .last()
            .and_then(|m| m.head.as_ref())
            .expect("the last module owns the head")
    }

    /// Forward pass with whatever tape the input carries.
    pub fn forward<T: Tape<f32, Dev>>(
        &self,
        patches: Act<T>,
        drop_path: f64,
        mode: &mut Mode,
    ) -> Rows<T> {
        let x = self.run_modules(patches, 0..self.modules.len(), drop_path, mode);
        self.head().forward(x)
    }

    /// Forward pass that records gradients only from module `first` on: earlier modules are
    /// frozen and nothing before them needs a gradient, so they run untraced.
    pub fn forward_traced_from(
        &self,
        patches: Act<NoneTape>,
        first: usize,
        drop_path: f64,
        mode: &mut Mode,
    ) -> Rows<OwnedTape<f32, Dev>> {
        let x = self.run_modules(patches, 0..first, drop_path, mode);
        let x = self.run_modules(x.leaky_traced(), first..self.modules.len(), drop_path, mode);
        self.head().forward(x)
    }
}
