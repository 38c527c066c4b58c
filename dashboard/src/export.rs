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

/// Saves bytes through a download link.
#[cfg(target_arch = "wasm32")]
pub fn save(name: &str, bytes: &[u8], mime: &str) -> String {
    use wasm_bindgen::{JsCast, JsValue};
    let result = (|| -> Result<(), JsValue> {
        let array = js_sys::Uint8Array::from(bytes);
        let parts = js_sys::Array::of1(&array);
        let options = web_sys::BlobPropertyBag::new();
        options.set_type(mime);
        let blob = web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &options)?;
        let url = web_sys::Url::create_object_url_with_blob(&blob)?;
        let document = web_sys::window()
            .ok_or("no window")?
            .document()
            .ok_or("no document")?;
        let a: web_sys::HtmlAnchorElement = document.create_element("a")?.dyn_into()?;
        a.set_href(&url);
        a.set_download(name);
        a.click();
        web_sys::Url::revoke_object_url(&url)
    })();
    match result {
        Ok(()) => format!("downloaded {name}"),
        Err(e) => format!("download failed: {e:?}"),
    }
}
