//! Saving what a view exports (the curves as CSV, the window as PNG). Native: files in the
//! current directory; browser: downloads.

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
pub fn save(name: &str, bytes: &[u8], _mime: &str) -> String {
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
pub fn save(name: &str, bytes: &[u8], mime: &str) -> String {
    crate::web::download(name, bytes, mime)
}
