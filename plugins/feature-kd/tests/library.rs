//! The guide's strategy, loaded from its library, trains bit-identically to it compiled in;
//! both its terms are logged, the hint's weight decays as documented, and modules learn.

use incubator_core::events::{Event, StageId};
use incubator_core::telemetry::jsonl::read_events;
use incubator_testkit as testkit;

#[test]
fn loaded_library_trains_bit_identically_with_a_decaying_hint() {
    let dir = tempfile::tempdir().unwrap();
    let (compiled, _) = testkit::check_plugin(
        incubator_feature_kd::register,
        "incubator-feature-kd",
        "[plugins]\nstrategy = \"feature-kd\"\n[plugins.options]\nhint_weight = 2.0\n",
        dir.path(),
    );
    let records = read_events(&compiled.dir).unwrap();
    for i in 0..4 {
        let steps: Vec<(f64, f64, f64, f64)> = records
            .iter()
            .filter(|r| r.stage == StageId::incubate(i))
            .filter_map(|r| match &r.event {
                Event::TrainStep {
                    loss, epoch, terms, ..
                } => Some((*epoch, *loss, terms["task"], terms["hint"])),
                _ => None,
            })
            .collect();
        let n = steps.len() as f64;
        assert!(n > 10.0);
        for (k, (_, loss, task, hint)) in steps.iter().enumerate() {
            // weight 2 at step 0, falling linearly (the weight of step k is set before it)
            let weight = 2.0 * (1.0 - k as f64 / n);
            let want = task + weight * hint;
            assert!(
                (loss - want).abs() < 1e-4 * want.max(1.0),
                "module {i} step {k}: {loss} vs {want}"
            );
            assert!(*hint >= 0.0);
        }
    }
    let loss = &compiled.losses["incubate-2"];
    assert!(loss.last() < loss.first(), "{loss:?}");
}
