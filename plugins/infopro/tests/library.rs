//! InfoPro loaded from its library trains bit-identically to InfoPro compiled in; each local
//! module trains a decoder and a head beside it (saved apart, never assembled), logs the
//! reconstruction, the local loss (supervised contrastive by default, as the reference's;
//! cross-entropy as an option) and the stop-gradient probe, and weighs them as the reference
//! interpolates them over the modules.

use incubator_core::events::{Event, StageId};
use incubator_core::telemetry::jsonl::read_events;
use incubator_testkit as testkit;

#[test]
fn loaded_library_trains_bit_identically_with_local_losses() {
    let dir = tempfile::tempdir().unwrap();
    let (compiled, _) = testkit::check_plugin(
        incubator_infopro::register,
        "incubator-infopro",
        "[plugins]\nstrategy = \"infopro\"\n[plugins.options]\nrecon_first = 2.0\nlocal_first = 0.5\n",
        dir.path(),
    );
    for i in 0..4 {
        let has = compiled
            .models
            .contains_key(&format!("incubate-{i}/extras.safetensors"));
        assert_eq!(has, i < 3, "module {i}'s decoder file");
    }
    let assembled = incubator_core::checkpoint::parse(
        std::path::Path::new("assembled"),
        &compiled.models["assemble/assembled.safetensors"],
    )
    .unwrap();
    assert!(assembled
        .tensors
        .keys()
        .all(|n| !n.starts_with("aux") && !n.contains("decoder")));

    // Weights from (recon 2, local 0.5) at module 0 to the defaults (0, 1) at module K-2 = 2;
    // the probe's cross-entropy at weight 1 (it reaches only the probe).
    let want = [(2.0, 0.5), (1.0, 0.75), (0.0, 1.0)];
    let records = read_events(&compiled.dir).unwrap();
    for (i, (rw, cw)) in want.iter().enumerate() {
        let mut seen = 0;
        for r in records.iter().filter(|r| r.stage == StageId::incubate(i)) {
            if let Event::TrainStep { loss, terms, .. } = &r.event {
                let names: Vec<&str> = terms.keys().map(String::as_str).collect();
                assert_eq!(names, ["contrast", "probe", "recon"]);
                let sum = rw * terms["recon"] + cw * terms["contrast"] + terms["probe"];
                assert!(
                    (loss - sum).abs() < 1e-4 * sum.abs().max(1.0),
                    "module {i}: {loss} vs {sum}"
                );
                seen += 1;
            }
        }
        assert!(seen > 0);
    }
    // The last module trains on the real head alone: no terms logged.
    assert!(records.iter().any(|r| r.stage == StageId::incubate(3)
        && matches!(&r.event, Event::TrainStep { terms, .. } if terms.is_empty())));
    let recon: Vec<f64> = records
        .iter()
        .filter(|r| r.stage == StageId::incubate(0))
        .filter_map(|r| match &r.event {
            Event::TrainStep { terms, .. } => Some(terms["recon"]),
            _ => None,
        })
        .collect();
    assert!(
        recon.last() < recon.first(),
        "the decoder learns: {recon:?}"
    );
}

/// The cross-entropy variant: the `1c2f` head's cross-entropy is the local loss, no probe.
#[test]
fn the_cross_entropy_variant_trains_the_head_on_the_classes() {
    let dir = tempfile::tempdir().unwrap();
    let (compiled, _) = testkit::check_plugin(
        incubator_infopro::register,
        "incubator-infopro",
        "[plugins]\nstrategy = \"infopro\"\n[plugins.options]\nlocal_loss = \"cross-entropy\"\n",
        dir.path(),
    );
    let records = read_events(&compiled.dir).unwrap();
    let names: Vec<Vec<String>> = records
        .iter()
        .filter(|r| r.stage == StageId::incubate(1))
        .filter_map(|r| match &r.event {
            Event::TrainStep { terms, .. } => Some(terms.keys().cloned().collect()),
            _ => None,
        })
        .collect();
    assert!(!names.is_empty());
    assert!(names.iter().all(|n| n == &["aux_ce", "recon"]), "{names:?}");
}
