//! The plugin loaded from its library trains bit-identically to the plugin compiled in.

use incubator_testkit as testkit;

#[test]
fn loaded_library_trains_bit_identically_to_compiled_in() {
    let dir = tempfile::tempdir().unwrap();
    let (compiled, _) = testkit::check_plugin(
        incubator_sequential::register,
        "incubator-sequential",
        "[plugins]\nstrategy = \"sequential\"\n",
        dir.path(),
    );
    assert_eq!(
        compiled.models.len(),
        7,
        "meta, 4 modules, assembled, fine-tuned"
    );
    let incubation = &compiled.losses["incubate-2"];
    assert!(incubation.last() < incubation.first(), "{incubation:?}");
}
