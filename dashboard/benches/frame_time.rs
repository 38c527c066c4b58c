//! Frame time of the curves view with 10 runs x 100k points per curve, against the same frame
//! drawing every point (no downsampling), measured in the same process: figures and a ratio,
//! since machines differ and are noisy. `cargo bench -p incubator-dashboard`.

use incubator_dashboard::app::DashboardApp;
use incubator_dashboard::store::Run;
use incubator_dashboard::views::curves::{CurveSettings, CurvesView};
use incubator_events::{Event, Record, StageId};
use std::time::Instant;

fn synthetic_runs(runs: usize, points: u64) -> Vec<Run> {
    (0..runs)
        .map(|r| {
            let mut run = Run::new(format!("run-{r}"));
            let id = StageId::E2E;
            for step in 1..=points {
                let x = step as f64;
                let loss = 2.0 / (1.0 + x / 1000.0) + 0.05 * ((x * 0.37 + r as f64).sin());
                run.apply(&Record::new(
                    id,
                    x * 0.01,
                    Event::TrainStep {
                        step,
                        epoch: x / 1000.0,
                        loss,
                        lr: 1e-3,
                        grad_norm: 1.0,
                        samples_per_sec: 500.0,
                        terms: Default::default(),
                    },
                ));
            }
            run
        })
        .collect()
}

/// Mean milliseconds per frame (UI pass + tessellation) after warm-up frames.
fn frame_ms(app: &mut DashboardApp, frames: usize) -> f64 {
    let ctx = egui::Context::default();
    let input = || egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(
            egui::Pos2::ZERO,
            egui::vec2(1600.0, 1000.0),
        )),
        ..Default::default()
    };
    let run = |app: &mut DashboardApp| -> usize {
        let mut out = ctx.run_ui(input(), |ui| app.show(ui));
        out.textures_delta.clear(); // no renderer to hand the font atlas to
        let prims = ctx.tessellate(out.shapes, out.pixels_per_point);
        let vertices: usize = prims
            .iter()
            .map(|p| match &p.primitive {
                egui::epaint::Primitive::Mesh(m) => m.vertices.len(),
                _ => 0,
            })
            .sum();
        std::hint::black_box(vertices)
    };
    let mut vertices = 0;
    for _ in 0..3 {
        vertices = run(app);
    }
    eprintln!("  ({vertices} vertices per frame)");
    let t = Instant::now();
    for _ in 0..frames {
        run(app);
    }
    t.elapsed().as_secs_f64() * 1000.0 / frames as f64
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this as a quick smoke test
    let full = std::env::args().any(|a| a == "--bench");
    let (runs, points) = if full { (10, 100_000) } else { (2, 1_000) };
    let t = Instant::now();
    let data = synthetic_runs(runs, points);
    println!(
        "{runs} runs x {points} points per curve (built in {:.1} s)",
        t.elapsed().as_secs_f64()
    );

    fn curves(app: &mut DashboardApp) -> &mut CurveSettings {
        &mut app
            .view_mut::<CurvesView>()
            .expect("a curves view")
            .settings
    }
    let mut app = DashboardApp::with_runs(data.clone());
    curves(&mut app).smoothing = 0.9; // smoothed + raw: two lines per curve
    let fast = frame_ms(&mut app, 20);

    let mut naive = DashboardApp::with_runs(data);
    curves(&mut naive).smoothing = 0.9;
    curves(&mut naive).downsample = false;
    let slow = frame_ms(&mut naive, 3);

    println!("| curves view, 1600x1000 | ms per frame |");
    println!("|---|---:|");
    println!("| min/max downsampling (the dashboard) | {fast:.1} |");
    println!("| every point drawn (baseline) | {slow:.1} |");
    println!(
        "ratio: downsampled frames take {:.3}x the baseline's time ({:.0} fps vs {:.1} fps)",
        fast / slow,
        1000.0 / fast,
        1000.0 / slow
    );
}
