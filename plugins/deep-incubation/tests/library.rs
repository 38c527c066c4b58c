//! The plugin loaded from its library trains bit-identically to the plugin compiled in.

use incubator_core::plugin::selfcheck;

#[test]
fn loaded_library_trains_bit_identically_to_compiled_in() {
    let dir = tempfile::tempdir().unwrap();
    let library = selfcheck::library_next_to_test("incubator-deep-incubation");
    let (compiled, loaded) = selfcheck::compiled_in_vs_library(
        incubator_deep_incubation::register,
        &library,
        &[],
        "[plugins]\n",
        dir.path(),
    )
    .unwrap();
    assert_eq!(
        compiled.models.len(),
        7,
        "meta, 4 modules, assembled, fine-tuned"
    );
    selfcheck::assert_same(&compiled, &loaded);
    let incubation = &compiled.losses["incubate-2"];
    assert!(incubation.last() < incubation.first(), "{incubation:?}");
}
