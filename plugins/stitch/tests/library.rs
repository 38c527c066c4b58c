//! The stitch plugin defines its own trainable layer (LayerNorm + Linear between widths).
//! Loaded from its library, that layer trains exactly as when the plugin is compiled in.

use incubator_core::checkpoint;
use incubator_testkit as testkit;

const PLUGINS: &str =
    "[plugins]\nmeta_design = \"thin\"\nstrategy = \"stitched\"\nassembly = \"stitched\"\n";

#[test]
fn own_layer_loaded_from_the_library_trains_exactly_as_compiled_in() {
    let dir = tempfile::tempdir().unwrap();
    let (compiled, loaded) = testkit::check_plugin(
        incubator_stitch::register,
        "incubator-stitch",
        PLUGINS,
        dir.path(),
    );
    assert_eq!(compiled.models.len(), 7);
    // the stitches moved away from their initial LayerNorm 1 / 0 and zero bias
    let module =
        checkpoint::read(&loaded.dir.join("stages/incubate-1/module.safetensors"), "").unwrap();
    for (name, start) in [
        ("stitches.1.in.norm.weight", 1.0),
        ("stitches.1.in.proj.bias", 0.0),
        ("stitches.1.out.norm.bias", 0.0),
    ] {
        let (_, values) = &module.tensors[name];
        assert!(values.iter().any(|v| *v != start), "{name} did not train");
    }
    // and the assembled model keeps them between the modules
    let assembled =
        checkpoint::read(&loaded.dir.join("stages/assemble/model.safetensors"), "").unwrap();
    assert!(assembled.tensors.contains_key("stitches.2.in.proj.weight"));

    // the loss falls over module 1's incubation
    let losses = &loaded.losses["incubate-1"];
    let half = losses.len() / 2;
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    assert!(mean(&losses[half..]) < mean(&losses[..half]), "{losses:?}");
}

/// Per-part optimizer settings: with `stitch_lr_scale = 0` the stitches keep their initial
/// values while the module (frozen in the first epoch) trains; compiled in and loaded alike.
#[test]
fn part_settings_hold_the_stitches_and_train_the_module() {
    let dir = tempfile::tempdir().unwrap();
    let (_, loaded) = testkit::check_plugin(
        incubator_stitch::register,
        "incubator-stitch",
        &format!("{PLUGINS}[plugins.options]\nstitch_lr_scale = 0.0\nmodule_frozen_epochs = 1\n"),
        dir.path(),
    );
    let module =
        checkpoint::read(&loaded.dir.join("stages/incubate-1/module.safetensors"), "").unwrap();
    for (name, start) in [
        ("stitches.1.in.norm.weight", 1.0),
        ("stitches.1.in.norm.bias", 0.0),
        ("stitches.1.in.proj.bias", 0.0),
        ("stitches.1.out.norm.weight", 1.0),
        ("stitches.1.out.proj.bias", 0.0),
    ] {
        let (_, values) = &module.tensors[name];
        assert!(
            values.iter().all(|v| *v == start),
            "{name} moved: {values:?}"
        );
    }
    let (_, norm) = &module.tensors["blocks.0.norm1.weight"];
    assert!(norm.iter().any(|v| *v != 1.0), "the module did not train");
}
