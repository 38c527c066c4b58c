//! Stable colours: a curve keeps its colour across frames, restarts and machines, because it
//! is derived from the run's and the stage's names, not from the order they appeared in.

use egui::Color32;

fn hash(s: &str) -> u64 {
    // FNV-1a: stable across platforms and releases, unlike std's hasher
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// The colour of one curve: hue from the stage, shifted and shaded per run so that the same
/// stage of different runs stays apart.
pub fn curve(run: &str, stage: &str) -> Color32 {
    let r = hash(run);
    let hue = ((hash(stage) % 360) as f32 / 360.0 + (r % 7) as f32 * 0.035).fract();
    let shade = ((r / 7) % 3) as f32;
    let hsva = egui::ecolor::Hsva::new(hue, 0.8 - 0.15 * shade, 0.95 - 0.12 * shade, 1.0);
    Color32::from(hsva)
}

/// The same colour, faint (the raw curve behind a smoothed one).
pub fn faint(c: Color32) -> Color32 {
    Color32::from_rgba_unmultiplied(c.r(), c.g(), c.b(), 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn colours_depend_only_on_names() {
        assert_eq!(super::curve("a", "meta"), super::curve("a", "meta"));
        assert_ne!(super::curve("a", "meta"), super::curve("a", "incubate-1"));
        assert_ne!(super::curve("a", "meta"), super::curve("b", "meta"));
    }
}
