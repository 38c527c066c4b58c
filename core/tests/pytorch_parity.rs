//! Our ViT computes the same function as the reference (timm-style) ViT in PyTorch: logits,
//! loss and every trainable gradient for fixed weights and a fixed batch, against golden
//! outputs that `scripts/reference/golden.py` produced with PyTorch in float64 (committed
//! fixtures), for the target model, the meta model and an incubation hybrid. Tolerance: 1e-5
//! relative (norm of the difference over the norm of the reference) for every tensor.

use dfdx::prelude::*;
use incubator_core::checkpoint;
use incubator_core::device::new_device;
use incubator_core::model::{HasParams, Init, Mode, Network, ParamRef, VitConfig};
use incubator_core::train::batch::patchify;
use incubator_core::train::loss::soft_cross_entropy;
use rand::SeedableRng;
use std::path::Path;

/// ||ours - reference|| / ||reference||: the relative error of a whole tensor. (Per element,
/// float32 against the float64 reference differs by up to ~3e-4 in PyTorch itself, from
/// entries near zero; the norm measures the function, not the rounding of tiny entries.)
fn rel_error(ours: &[f32], reference: &[f32]) -> f64 {
    assert_eq!(ours.len(), reference.len());
    let diff: f64 = ours
        .iter()
        .zip(reference)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum();
    let norm: f64 = reference.iter().map(|&b| (b as f64).powi(2)).sum();
    (diff / norm.max(1e-30)).sqrt()
}

/// Forward and backward on one fixture; returns the worst relative errors (logits+loss, grads).
fn check(case: &str, first_trained: usize) -> (f64, f64) {
    // relative: cargo runs tests from the package root, and so does the GPU script, where
    // the repository lives elsewhere than where the test was compiled
    let path = Path::new("tests/fixtures").join(format!("{case}.safetensors"));
    let fx = checkpoint::read(&path, "run scripts/reference/golden.py").unwrap();
    let meta = |k: &str| fx.metadata[k].parse::<usize>().unwrap();
    let depths: Vec<usize> = fx.metadata["depths"]
        .split(',')
        .map(|d| d.parse().unwrap())
        .collect();
    let cfg = VitConfig {
        image_size: meta("image"),
        channels: meta("channels"),
        patch_size: meta("patch"),
        embed_dim: meta("embed_dim"),
        depth: depths.iter().sum(),
        num_heads: meta("heads"),
        mlp_ratio: 4.0,
        qkv_bias: true,
        norm_eps: 1e-6,
        num_classes: meta("classes"),
    };
    let dev = new_device(0);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut net = Network::vit(
        &mut Init {
            dev: &dev,
            rng: &mut rng,
        },
        &cfg,
        &depths,
    );
    fx.load_into(&mut net, "weight.", &dev).unwrap();

    let (images_shape, images) = &fx.tensors["input.images"];
    let n = images_shape[0];
    let patches = patchify(
        images,
        (n, cfg.channels, cfg.image_size, cfg.image_size),
        cfg.patch_size,
    );
    let patches = dev.tensor_from_vec(patches, (n, cfg.num_patches(), cfg.patch_dim()));
    let targets = dev.tensor_from_vec(fx.tensors["input.targets"].1.clone(), (n, cfg.num_classes));

    let logits = net.forward_traced_from(patches, first_trained, 0.0, &mut Mode::eval());
    let ours_logits = logits.as_vec();
    let loss = soft_cross_entropy(logits, targets);
    let ours_loss = loss.array();
    let grads = loss.backward();

    let mut forward_err = rel_error(&ours_logits, &fx.tensors["output.logits"].1);
    forward_err = forward_err.max(rel_error(&[ours_loss], &fx.tensors["output.loss"].1));
    let mut backward_err = 0.0f64;
    let mut compared = 0;
    for (name, p) in net.named_params() {
        let Some((_, theirs)) = fx.tensors.get(&format!("grad.{name}")) else {
            continue;
        };
        let ours = match p {
            ParamRef::Vector(t) => grads.get(t).as_vec(),
            ParamRef::Matrix(t) => grads.get(t).as_vec(),
        };
        let e = rel_error(&ours, theirs);
        assert!(e < 1e-5, "{case}: gradient of {name} off by {e:.2e}");
        backward_err = backward_err.max(e);
        compared += 1;
    }
    let expected = fx.tensors.keys().filter(|k| k.starts_with("grad.")).count();
    assert_eq!(
        compared, expected,
        "{case}: every reference gradient has a parameter here"
    );
    eprintln!(
        "{case}: forward {forward_err:.2e}, backward {backward_err:.2e} ({compared} gradients)"
    );
    (forward_err, backward_err)
}

#[test]
fn target_vit_matches_pytorch() {
    let (f, b) = check("target", 0);
    assert!(f < 1e-5 && b < 1e-5, "forward {f:.2e}, backward {b:.2e}");
}

#[test]
fn meta_model_matches_pytorch() {
    let (f, b) = check("meta", 0);
    assert!(f < 1e-5 && b < 1e-5, "forward {f:.2e}, backward {b:.2e}");
}

#[test]
fn hybrid_gradients_of_the_incubated_module_match_pytorch() {
    // meta modules 0 and 2 around target module 1: the reference trains module 1 only
    let (f, b) = check("hybrid", 1);
    assert!(f < 1e-5 && b < 1e-5, "forward {f:.2e}, backward {b:.2e}");
}
