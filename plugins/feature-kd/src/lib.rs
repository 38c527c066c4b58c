//! `feature-kd`: the paper's incubation plus a hint loss (FitNets-style) on features. Target
//! module i is trained in the frozen meta model on the task loss, and its output is pulled
//! towards what the meta layer it replaces outputs on the same input. The hint's weight decays
//! linearly to zero over the incubation, so the module ends on the task alone.
//! The worked example of docs/plugins.md.

use incubator_core::sdk::loss::{mse, LossInputs, LossTerms};
use incubator_core::sdk::net::Role;
use incubator_core::sdk::*;
use std::sync::Arc;

pub const NAME: &str = "feature-kd";

plugin_options! {
    pub struct FeatureKdOptions {
        /// weight of the feature loss at the start; it decays linearly to 0
        #[schemars(range(min = 0.0))]
        pub hint_weight: f32,
    }
}

impl Default for FeatureKdOptions {
    fn default() -> Self {
        FeatureKdOptions { hint_weight: 1.0 }
    }
}

impl PluginOptions for FeatureKdOptions {}

pub struct FeatureKd;

impl IncubationStrategy for FeatureKd {
    fn name(&self) -> &str {
        NAME
    }

    fn options(&self) -> OptionSet {
        OptionSet::of::<FeatureKdOptions>()
    }

    fn hybrid(&self, ctx: &PluginContext, inputs: HybridInputs) -> Result<Hybrid, PluginError> {
        let hint_weight = ctx.options::<FeatureKdOptions>()?.hint_weight;
        parts::expect_one_part_per_module(ctx, &inputs.meta)?;
        let i = inputs.module;

        // The reference: a frozen copy of meta layer i, the part the unit replaces.
        let reference = (inputs.load_meta)()?.split_off(i..i + 1);
        let (net, trained) = parts::splice(inputs.meta, i, inputs.unit)?;

        // Tap 0 is what the unit receives, tap 1 what it gives to the rest of the meta model.
        let taps = vec![Tap::Input(trained.start), Tap::Output(trained.end - 1)];
        let loss = move |x: LossInputs| {
            let target = x.extras.run_plain("reference", x.tap_plain(0));
            let weight = hint_weight * (1.0 - x.progress.fraction() as f32);
            LossTerms::task(x.task()).with("hint", weight, mse(x.tap(1), target))
        };

        Hybrid::new(net, trained, Box::new(loss))
            .with_taps(taps)
            .with_extra("reference", reference, Role::Frozen)
    }
}

/// Everything this crate provides; the engine calls it when it loads the library.
pub fn register(r: &mut Registrar) {
    r.add_strategy(Arc::new(FeatureKd));
}

declare_plugin!(NAME, |r: &mut Registrar| {
    register(r);
    Ok(())
});
