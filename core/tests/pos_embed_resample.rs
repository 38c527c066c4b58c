//! Position embeddings resized for another resolution match PyTorch's bicubic interpolation
//! as DeiT applies it (golden outputs from `scripts/reference/pos_embed.py`, committed), up
//! (14 -> 24: ViT-B/16 from 224 to 384 px; 16 -> 28: ViT-H/14 to 392 px) and down.

use incubator_core::model::resample::resample_pos_embed;

#[test]
fn resampled_position_embeddings_match_pytorch() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/pos_embed_resample.json"
    );
    let fixture: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("the committed fixture")).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for c in cases {
        let n = |k: &str| c[k].as_u64().unwrap() as usize;
        let floats = |k: &str| -> Vec<f32> {
            c[k].as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect()
        };
        let (old, new, dim) = (n("old"), n("new"), n("dim"));
        let ours = resample_pos_embed(&floats("input"), old, new, dim);
        let theirs = floats("output");
        assert_eq!(ours.len(), theirs.len());
        let worst = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        // PyTorch interpolates in float32, we accumulate in float64: within 1e-5 of the
        // largest value (float32 rounding; a wrong kernel or border is off by 1e-3 and more)
        let scale = theirs.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
        assert!(
            worst <= 1e-5 * scale,
            "{old} -> {new}: worst difference {worst} of values up to {scale}"
        );
    }
}
