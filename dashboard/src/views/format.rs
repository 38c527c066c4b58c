//! How the views write numbers: fractions as percentages, seconds as durations.

/// `95.2 %` for a fraction.
pub fn percent(v: f64) -> String {
    format!("{:.2} %", 100.0 * v)
}

/// `1 h 02 min`, `3 min 20 s`, `12 s`.
pub fn duration(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}
