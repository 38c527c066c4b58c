//! The plugin loaded from its library trains bit-identically to the plugin compiled in.
//! `cargo test -p incubator-template` runs it.

use incubator_testkit as testkit;

#[test]
fn loaded_library_trains_bit_identically_to_compiled_in() {
    let dir = tempfile::tempdir().unwrap();
    let (compiled, loaded) = testkit::compiled_in_vs_library(
        incubator_template::register,
        &testkit::library_next_to_test("incubator-template"),
        &[testkit::library_next_to_test("incubator-deep-incubation")],
        "[plugins]\nstrategy = \"template\"\n",
        dir.path(),
    )
    .unwrap();
    testkit::assert_same(&compiled, &loaded);
}
