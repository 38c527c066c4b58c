//! Export of what the curves view shows: the curves as CSV, the window as PNG. Native: files in
//! the current directory; browser: downloads.

use crate::app::DashboardApp;
use crate::views::curves::lines;

/// CSV of every shown curve at full resolution: `run,stage,metric,x_axis,x,value,smoothed`.
pub fn csv(app: &mut DashboardApp) -> String {
    let mut out = String::from("run,stage,metric,x_axis,x,value,smoothed\n");
    let settings = app.curves.clone();
    let mut full = settings.clone();
    full.log_y = false;
    full.show_raw = true;
    for &metric in &settings.metrics {
        let all = (f64::NEG_INFINITY, f64::INFINITY);
        for line in lines(
            &app.runs,
            &mut app.smoothing_cache,
            &full,
            metric,
            all,
            usize::MAX / 4,
        ) {
            let smoothed = if line.smoothed.len() == line.raw.len() {
                line.smoothed.iter().map(|p| p[1]).collect()
            } else {
                line.raw.iter().map(|p| p[1]).collect::<Vec<_>>()
            };
            for (p, s) in line.raw.iter().zip(smoothed) {
                out.push_str(&format!(
                    "{},{},{},{:?},{},{},{}\n",
                    line.run,
                    line.stage,
                    metric.label().replace(' ', "_"),
                    settings.x_axis,
                    p[0],
                    p[1],
                    s
                ));
            }
        }
    }
    out
}

pub fn csv_of_visible(app: &mut DashboardApp) -> String {
    let text = csv(app);
    save("incubator-curves.csv", text.as_bytes(), "text/csv")
}

/// Encodes a screenshot as PNG and saves (or downloads) it.
pub fn save_png(image: &egui::ColorImage) -> String {
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, image.size[0] as u32, image.size[1] as u32);
        enc.set_color(png::ColorType::Rgba);
        enc.set_depth(png::BitDepth::Eight);
        let rgba: Vec<u8> = image.pixels.iter().flat_map(|c| c.to_array()).collect();
        match enc
            .write_header()
            .and_then(|mut w| w.write_image_data(&rgba))
        {
            Ok(()) => {}
            Err(e) => return format!("PNG export failed: {e}"),
        }
    }
    save("incubator-dashboard.png", &bytes, "image/png")
}

#[cfg(not(target_arch = "wasm32"))]
fn save(name: &str, bytes: &[u8], _mime: &str) -> String {
    match std::fs::write(name, bytes) {
        Ok(()) => format!(
            "saved {}",
            std::fs::canonicalize(name)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| name.to_string())
        ),
        Err(e) => format!("cannot write {name}: {e}"),
    }
}

#[cfg(target_arch = "wasm32")]
fn save(name: &str, bytes: &[u8], mime: &str) -> String {
    crate::web::download(name, bytes, mime)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Metric, Run};
    use incubator_events::{Event, Record, StageId};

    #[test]
    fn csv_has_every_point_of_the_shown_curves_raw_and_smoothed() {
        let mut run = Run::new("r");
        for step in 1..=5u64 {
            run.apply(&Record::new(
                StageId::META,
                step as f64,
                Event::TrainStep {
                    step,
                    epoch: step as f64 / 5.0,
                    loss: step as f64,
                    lr: 0.1,
                    grad_norm: 1.0,
                    samples_per_sec: 10.0,
                    terms: Default::default(),
                },
            ));
        }
        let mut app = DashboardApp::with_runs(vec![run]);
        app.curves.metrics = [Metric::Loss].into_iter().collect();
        app.curves.smoothing = 0.5;
        let text = csv(&mut app);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "run,stage,metric,x_axis,x,value,smoothed");
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[1], "r,meta,train_loss,Step,1,1,1");
        // debiased EMA of 1, 2: (0.5 * 0.5 + 1) / 0.75
        assert!(
            lines[2].starts_with("r,meta,train_loss,Step,2,2,1.666"),
            "{}",
            lines[2]
        );
        app.curves.hidden_stages.insert("meta".into());
        assert_eq!(
            csv(&mut app).lines().count(),
            1,
            "hidden curves are not exported"
        );
    }
}
