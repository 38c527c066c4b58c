pub mod bench;
pub mod data;
pub mod plugins;
pub mod stage;

use incubator_core::plugin::Registry;

/// The registry with every built-in plugin.
pub fn registry() -> Registry {
    let mut r = Registry::default();
    incubator_deep_incubation::register(&mut r, incubator_core::plugin::Origin::BuiltIn);
    r
}
