//! A stage's own recipe settings reach the trainer: its clipping overrides the global one (0:
//! none), and the DeiT schedule form gives each epoch timm's value one epoch late.

use incubator_core::config::{RunConfig, ScheduleForm, StageRecipe};
use incubator_core::device::new_device;
use incubator_core::events::{Event, StageId};
use incubator_core::model::{Extras, HasParams};
use incubator_core::telemetry::EventLog;
use incubator_core::train::{self, TrainJob};

mod support;
use support::{cfg, tiny_data};

/// Trains a fresh two-block network for `recipe`; its parameters and per-step (lr, grad norm).
fn train_with(run: &RunConfig, recipe: StageRecipe) -> (Vec<Vec<f32>>, Vec<(f64, f64)>) {
    let dev = new_device(0);
    let c = cfg();
    let data = tiny_data(&c);
    let mut net = support::network(&dev, &c, 3, &[1, 1]);
    let trainable = net.named_params().into_iter().map(|(n, _)| n).collect();
    let loss = train::trainer::task_loss;
    let job = TrainJob {
        stage: StageId::E2E,
        cfg: run,
        vit: &c,
        recipe,
        data: &data,
        first_traced: 0,
        trainable,
        taps: Vec::new(),
        loss: &loss,
        settings: None,
        state_path: None,
        needs: Vec::new(),
    };
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open(dir.path(), StageId::E2E).unwrap();
    train::train(
        job,
        &mut net,
        &mut Extras::none(),
        &dev,
        &mut incubator_core::train::observe::Observers::log_only(&mut log),
    )
    .unwrap();
    log.flush();
    let steps = incubator_core::telemetry::jsonl::read_events(dir.path())
        .unwrap()
        .into_iter()
        .filter_map(|r| match r.event {
            Event::TrainStep { lr, grad_norm, .. } => Some((lr, grad_norm)),
            _ => None,
        })
        .collect();
    let params = net
        .named_params()
        .into_iter()
        .map(|(_, p)| p.to_vec())
        .collect();
    (params, steps)
}

fn run_config(clip: Option<f64>) -> RunConfig {
    let mut run = RunConfig::default();
    run.optim.batch_size = 16;
    run.optim.base_lr = 0.05;
    run.optim.clip_grad = clip;
    run
}

#[test]
fn a_stage_clipping_overrides_the_global_one() {
    let plain = StageRecipe::new(2, 0.0, 0.0);
    let unclipped = train_with(&run_config(None), plain);
    // Clipping on globally, off in this stage: the same as no clipping at all.
    let off_here = StageRecipe {
        clip_grad: Some(0.0),
        ..plain
    };
    assert_eq!(train_with(&run_config(Some(1e-3)), off_here), unclipped);
    // Off globally, a bound in this stage: it clips (AdamW sees other gradients).
    let tight = StageRecipe {
        clip_grad: Some(1e-3),
        ..plain
    };
    let clipped = train_with(&run_config(None), tight);
    assert!(clipped.1[0].1 > 1e-3, "the logged norm is before clipping");
    assert_eq!(clipped.1[0], unclipped.1[0], "the first step's norm");
    assert_ne!(clipped.0, unclipped.0);
    // and the global bound applies where the stage sets none
    assert_eq!(train_with(&run_config(Some(1e-3)), plain), clipped);
}

#[test]
fn the_deit_schedule_sets_each_epoch_to_timms_value_of_the_epoch_before() {
    let run = run_config(Some(1.0));
    let recipe = StageRecipe {
        epochs: 6,
        warmup_epochs: 2.0,
        schedule: Some(ScheduleForm::Deit),
        ..StageRecipe::new(6, 2.0, 0.0)
    };
    let (_, steps) = train_with(&run, recipe);
    let o = &run.optim;
    let peak = o.base_lr * 16.0 / 512.0;
    // timm CosineLRScheduler(t_initial=6, warmup_t=2, warmup_lr_init, lr_min) at epoch t
    let timm = |t: usize| {
        if t < 2 {
            o.warmup_lr + t as f64 * (peak - o.warmup_lr) / 2.0
        } else {
            o.min_lr
                + 0.5 * (peak - o.min_lr) * (1.0 + (std::f64::consts::PI * t as f64 / 6.0).cos())
        }
    };
    let per_epoch = 64 / 16;
    assert_eq!(steps.len(), 6 * per_epoch);
    for (i, &(lr, _)) in steps.iter().enumerate() {
        let epoch = i / per_epoch;
        let want = timm(epoch.saturating_sub(1));
        assert!((lr - want).abs() < 1e-12 * peak, "step {i}: {lr} vs {want}");
    }
    // the per-step form differs: it reaches the peak at the warmup's end
    let (_, per_step) = train_with(&run, StageRecipe::new(6, 2.0, 0.0));
    assert!((per_step[2 * per_epoch].0 - peak).abs() < 1e-12);
    assert!(steps[2 * per_epoch].0 < peak);
}
