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
