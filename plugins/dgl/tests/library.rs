//! DGL loaded from its library trains bit-identically to DGL compiled in; it trains no meta
//! model; each module but the last carries an auxiliary classifier, and assembly drops them:
//! the assembled model is exactly the trained modules, stacked.

use incubator_core::checkpoint;
use incubator_testkit as testkit;

fn tensors(
    models: &std::collections::BTreeMap<String, Vec<u8>>,
    file: &str,
) -> checkpoint::Checkpoint {
    checkpoint::parse(std::path::Path::new(file), &models[file]).unwrap()
}

#[test]
fn loaded_library_trains_bit_identically_and_assembly_drops_the_auxiliary_heads() {
    let dir = tempfile::tempdir().unwrap();
    let (compiled, _) = testkit::check_plugin(
        incubator_dgl::register,
        "incubator-dgl",
        "[plugins]\nstrategy = \"dgl\"\n",
        dir.path(),
    );
    let files: Vec<&str> = compiled.models.keys().map(String::as_str).collect();
    assert_eq!(
        files,
        [
            "assemble/assembled.safetensors",
            "assemble/model.safetensors",
            "incubate-0/module.safetensors",
            "incubate-1/module.safetensors",
            "incubate-2/module.safetensors",
            "incubate-3/module.safetensors",
        ],
        "no meta model"
    );
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(compiled.dir.join("stages/meta/summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (meta["epochs"].as_u64(), meta["train_gflop"].as_f64()),
        (Some(0), Some(0.0))
    );

    let assembled = tensors(&compiled.models, "assemble/assembled.safetensors");
    let mut stacked = std::collections::BTreeMap::new();
    for i in 0..4 {
        let module = tensors(
            &compiled.models,
            &format!("incubate-{i}/module.safetensors"),
        );
        let aux: Vec<&String> = module
            .tensors
            .keys()
            .filter(|n| n.starts_with("aux_heads."))
            .collect();
        assert_eq!(
            !aux.is_empty(),
            i < 3,
            "module {i}'s auxiliary classifier: {aux:?}"
        );
        for (name, t) in module.tensors {
            if name.starts_with("aux_heads.") {
                continue;
            }
            // Module-local block numbers become global ones (one block per module here).
            let name = match name.strip_prefix("blocks.0.") {
                Some(rest) => format!("blocks.{i}.{rest}"),
                None => name,
            };
            stacked.insert(name, t);
        }
    }
    assert_eq!(
        assembled.tensors, stacked,
        "assembled = the modules without their heads"
    );
    // The auxiliary classifiers learn: each module's loss falls.
    for i in 0..4 {
        let l = &compiled.losses[&format!("incubate-{i}")];
        assert!(l.last() < l.first(), "module {i}: {l:?}");
    }
}
