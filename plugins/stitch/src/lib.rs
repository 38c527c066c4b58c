//! A thinner meta model and the stitches that join it to full-width target modules:
//! - meta design `thin`: the target's depth-per-module layout with one block per module, at a
//!   fraction of the width (`[plugins.options] meta_width`, default half; head size kept);
//! - strategy `stitched`: target module i is incubated between LayerNorm+Linear stitches
//!   (meta width -> target width before it, back after it), trained together with it; options
//!   `stitch_lr_scale` (the stitches' learning rate relative to the module's) and
//!   `module_frozen_epochs` (train the stitches alone first, then the module too);
//! - assembly `stitched`: the modules stacked with the stitches they were incubated with kept
//!   between them (out of module i, into module i+1: a learned bottleneck adapter), all
//!   fine-tuned. (`deep-incubation` stacking drops the stitches instead.)

use incubator_core::sdk::loss::Progress;
use incubator_core::sdk::net::{Act, Dev, Init, Layer, LayerNorm, Linear, Mode, Named};
use incubator_core::sdk::net::{Network, VitConfig};
use incubator_core::sdk::tensor::*;
use incubator_core::sdk::*;
use std::sync::Arc;

pub const NAME: &str = "stitched";

/// LayerNorm then Linear, from one width to another, on every token.
pub struct Stitch {
    pub norm: LayerNorm,
    pub proj: Linear,
}
impl_params!(Stitch { child norm, child proj, });

impl Stitch {
    pub fn new(init: &mut Init, from: usize, to: usize, eps: f64) -> Stitch {
        Stitch {
            norm: LayerNorm::new(init, from, eps),
            proj: Linear::new(init, from, to, true),
        }
    }
}

impl Layer for Stitch {
    fn forward<T: Tape<f32, Dev>>(&self, x: Act<T>, _rates: &[f64], _mode: &mut Mode) -> Act<T> {
        let (b, t, d) = *x.shape();
        let y = self
            .proj
            .forward(self.norm.forward(x.reshape_like(&(b * t, d))));
        let out = y.shape().1;
        y.reshape_like(&(b, t, out))
    }
}

plugin_options! {
    /// The option both the meta design and the strategy read.
    #[derive(Clone, Copy, Debug, PartialEq, Default)]
    pub struct ThinOptions {
        /// the meta model's width, a multiple of the head size (0: half the target's)
        pub meta_width: usize,
    }
}

impl PluginOptions for ThinOptions {
    fn check(&self, ctx: &PluginContext) -> Result<(), PluginError> {
        thin_vit(ctx, self).map(|_| ())
    }
}

/// The meta model's shape: the target's, narrower, with as many heads as keep the head size.
pub fn thin_vit(ctx: &PluginContext, o: &ThinOptions) -> Result<VitConfig, PluginError> {
    let d = ctx.vit.embed_dim;
    let width = match o.meta_width {
        0 => d / 2,
        w => w,
    };
    let head_dim = ctx.vit.head_dim();
    if width == 0 || width % head_dim != 0 {
        return Err(PluginError::option(
            "meta_width",
            format!("{width} must be a positive multiple of the head size {head_dim}"),
        ));
    }
    Ok(VitConfig {
        embed_dim: width,
        num_heads: width / head_dim,
        ..ctx.vit.clone()
    })
}

plugin_options! {
    #[derive(Clone, Copy, Debug, PartialEq)]
    pub struct StitchedOptions {
        #[serde(flatten)]
        pub thin: ThinOptions,
        /// the stitches' learning rate as a multiple of the module's
        #[schemars(range(min = 0.0))]
        pub stitch_lr_scale: f64,
        /// epochs at the start of each incubation in which only the stitches train
        /// (0 to incubate.epochs - 1)
        pub module_frozen_epochs: usize,
    }
}

impl Default for StitchedOptions {
    fn default() -> Self {
        StitchedOptions {
            thin: ThinOptions::default(),
            stitch_lr_scale: 1.0,
            module_frozen_epochs: 0,
        }
    }
}

impl PluginOptions for StitchedOptions {
    fn check(&self, ctx: &PluginContext) -> Result<(), PluginError> {
        self.thin.check(ctx)?;
        let epochs = ctx.cfg.incubate.epochs;
        if self.module_frozen_epochs >= epochs {
            return Err(PluginError::option(
                "module_frozen_epochs",
                format!(
                    "{} must be from 0 to incubate.epochs - 1 = {}",
                    self.module_frozen_epochs,
                    epochs.saturating_sub(1)
                ),
            ));
        }
        Ok(())
    }
}

pub struct ThinMeta;

impl MetaDesign for ThinMeta {
    fn name(&self) -> &str {
        "thin"
    }

    fn options(&self) -> OptionSet {
        OptionSet::of::<ThinOptions>()
    }

    fn build(&self, ctx: &PluginContext, init: &mut Init) -> Result<Network, PluginError> {
        let thin = thin_vit(ctx, &ctx.options()?)?;
        Ok(Network::vit(init, &thin, &vec![1; ctx.split.k()]))
    }
}

pub struct Stitched;

impl IncubationStrategy for Stitched {
    fn name(&self) -> &str {
        NAME
    }

    fn options(&self) -> OptionSet {
        OptionSet::of::<StitchedOptions>()
    }

    /// `[stitch in,] module i [, stitch out]`: no stitch before the stem or after the head.
    fn init_unit(
        &self,
        ctx: &PluginContext,
        i: usize,
        init: &mut Init,
    ) -> Result<Network, PluginError> {
        let o: StitchedOptions = ctx.options()?;
        let (d, meta) = (ctx.vit.embed_dim, thin_vit(ctx, &o.thin)?.embed_dim);
        let eps = ctx.vit.norm_eps;
        let k = ctx.split.k();
        let mut unit = Network { parts: Vec::new() };
        if i > 0 {
            let s = Stitch::new(init, meta, d, eps);
            unit.parts
                .push(Box::new(Named::new(format!("stitches.{i}.in"), s)));
        }
        unit.parts.extend(parts::target_module(ctx, i, init).parts);
        if i + 1 < k {
            let s = Stitch::new(init, d, meta, eps);
            unit.parts
                .push(Box::new(Named::new(format!("stitches.{i}.out"), s)));
        }
        Ok(unit)
    }

    fn hybrid(&self, ctx: &PluginContext, inputs: HybridInputs) -> Result<Hybrid, PluginError> {
        parts::expect_one_part_per_module(ctx, &inputs.meta)?;
        let i = inputs.module;
        let (net, trained) = parts::splice(inputs.meta, i, inputs.unit)?;
        let hybrid = Hybrid::new(net, trained.clone(), task_loss());
        let o: StitchedOptions = ctx.options()?;
        let (lr_scale, frozen_epochs) = (o.stitch_lr_scale, o.module_frozen_epochs);
        if lr_scale == 1.0 && frozen_epochs == 0 {
            return Ok(hybrid);
        }
        // The unit is `[stitch in,] module [, stitch out]`.
        let module = trained.start + usize::from(i > 0);
        let stitches: Vec<usize> = trained.filter(|&p| p != module).collect();
        Ok(hybrid.with_part_settings(Box::new(move |p: &Progress| {
            let mut v = vec![(
                Target::Parts(module..module + 1),
                PartSettings {
                    frozen: p.epoch < frozen_epochs,
                    ..PartSettings::default()
                },
            )];
            v.extend(stitches.iter().map(|&s| {
                let settings = PartSettings {
                    lr_scale,
                    ..PartSettings::default()
                };
                (Target::Parts(s..s + 1), settings)
            }));
            v
        })))
    }
}

pub struct KeepStitches;

impl AssemblyRule for KeepStitches {
    fn name(&self) -> &str {
        NAME
    }

    fn assemble(
        &self,
        _ctx: &PluginContext,
        units: Vec<Network>,
        _meta: Network,
    ) -> Result<Network, PluginError> {
        Ok(parts::concat(units, |_| true))
    }
}

pub fn register(r: &mut Registrar) {
    r.add_meta_design(Arc::new(ThinMeta));
    r.add_strategy(Arc::new(Stitched));
    r.add_assembly(Arc::new(KeepStitches));
}

declare_plugin!("stitch", |r: &mut Registrar| {
    register(r);
    Ok(())
});
