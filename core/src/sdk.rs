//! The plugin SDK: everything an incubation strategy, a meta-model design or an assembly rule
//! may use, and nothing else. Plugins import only `incubator_core::sdk` (a test holds the
//! reference plugins and the template to it), so the engine's internals can change without
//! breaking a researcher's plugin.
//!
//! A strategy in full (`plugins/template` is one to copy, `docs/plugins.md` the guide):
//!
//! ```ignore
//! use incubator_core::sdk::*;
//!
//! plugin_options! {
//!     pub struct MyOptions {
//!         /// weight of my extra loss term
//!         #[schemars(range(min = 0.0))]
//!         pub weight: f32,
//!     }
//! }
//! impl Default for MyOptions {
//!     fn default() -> Self { MyOptions { weight: 0.5 } }
//! }
//! impl PluginOptions for MyOptions {}
//!
//! pub struct Mine;
//! impl IncubationStrategy for Mine {
//!     fn name(&self) -> &str { "mine" }
//!     fn options(&self) -> OptionSet { OptionSet::of::<MyOptions>() }
//!     fn hybrid(&self, ctx: &PluginContext, inputs: HybridInputs) -> Result<Hybrid, PluginError> {
//!         let o: MyOptions = ctx.options()?;
//!         parts::expect_one_part_per_module(ctx, &inputs.meta)?;
//!         let (net, trained) = parts::splice(inputs.meta, inputs.module, inputs.unit)?;
//!         Ok(Hybrid::new(net, trained, task_loss()))
//!     }
//! }
//! declare_plugin!("mine", |r: &mut Registrar| {
//!     r.add_strategy(std::sync::Arc::new(Mine));
//!     Ok(())
//! });
//! ```

/// Hinton's distillation: its options and its two loss terms.
pub use crate::plugin::distill::Distillation;
/// Building blocks most plugins share: the target's module as a unit, splicing a unit into
/// the meta model, stacking units, copying weights between parts.
pub use crate::plugin::parts;
/// The three interfaces, what the engine hands them, and registration.
pub use crate::plugin::{
    task_loss, AssemblyRule, Hybrid, HybridInputs, IncubationStrategy, LossFn, MetaDesign,
    PartSettings, PartSettingsFn, PluginContext, PluginError, Registrar, Tap, Target,
};
/// Options: one struct per plugin ([`PluginOptions`]), declared with [`plugin_options!`].
pub use crate::plugin::{OptionKind, OptionSet, OptionSpec, PluginOptions};
pub use crate::{declare_plugin, impl_params, plugin_options, refuse};
/// The derives [`plugin_options!`] adds, from the engine's own copies.
pub use schemars::{self, JsonSchema};
pub use serde::{self, Deserialize, Serialize};

/// Networks: a [`net::Network`] is a list of parts; a hybrid is one, and so is each extra
/// network a loss runs. The target's shape is [`net::VitConfig`] (`ctx.vit`).
pub mod net {
    pub use crate::device::{Act, Dev, Rows};
    pub use crate::model::layers::{LayerNorm, Linear};
    pub use crate::model::{
        Extras, Init, Layer, Mode, Module, Named, Network, ParamMut, Part, Role, VitConfig,
    };
}

/// Auxiliary heads of the module-wise baselines and decoders, ready to put after a module
/// ([`super::parts::module_with_aux_head`]) or into an extra network.
pub mod heads {
    pub use crate::model::aux_heads::{AuxClassifier, PatchDecoder};
    pub use crate::model::baseline_heads::{DglHead, InfoProHead, LinearProbe};
}

/// Losses: what a loss function receives ([`loss::LossInputs`]: logits, taps, the batch, the
/// extra networks, the position in the stage) and the terms it returns.
pub mod loss {
    pub use crate::train::contrastive::supervised_contrastive;
    pub use crate::train::loss::{kl_distillation, mse, LossInputs, LossTerms, Progress};
}

/// dfdx's tensor operations, the engine's own copy (a second dfdx would not train with it),
/// for plugins that write layers.
pub mod tensor {
    pub use dfdx::prelude::*;
}

/// Declares a plugin's options struct (or an enum of text choices) with the derives the
/// engine reads it through: field names are the keys, doc comments the help, `Default` the
/// defaults (absent keys take them), `#[schemars(range(min = .., max = ..))]` the bounds.
/// Enum variants are written in kebab-case (`CrossEntropy` is `"cross-entropy"`).
#[macro_export]
macro_rules! plugin_options {
    ($(#[$m:meta])* $vis:vis struct $name:ident $body:tt) => {
        #[derive(
            $crate::sdk::Deserialize,
            $crate::sdk::Serialize,
            $crate::sdk::JsonSchema
        )]
        #[serde(crate = "incubator_core::sdk::serde", default)]
        #[schemars(crate = "incubator_core::sdk::schemars")]
        $(#[$m])*
        $vis struct $name $body
    };
    ($(#[$m:meta])* $vis:vis enum $name:ident $body:tt) => {
        #[derive(
            $crate::sdk::Deserialize,
            $crate::sdk::Serialize,
            $crate::sdk::JsonSchema
        )]
        #[serde(crate = "incubator_core::sdk::serde", rename_all = "kebab-case")]
        #[schemars(crate = "incubator_core::sdk::schemars")]
        $(#[$m])*
        $vis enum $name $body
    };
}
