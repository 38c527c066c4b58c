//! Fixtures the core's integration tests share: a small ViT shape, random patches and a tiny
//! synthetic dataset with something to learn.

#![allow(dead_code)] // each test file uses its own subset

use dfdx::prelude::*;
use incubator_core::data::{Data, DataSplit, Dataset};
use incubator_core::device::Dev;
use incubator_core::model::{Init, Network, VitConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub fn cfg() -> VitConfig {
    VitConfig {
        image_size: 8,
        channels: 1,
        patch_size: 4,
        embed_dim: 16,
        depth: 6,
        num_heads: 2,
        mlp_ratio: 2.0,
        qkv_bias: true,
        norm_eps: 1e-6,
        num_classes: 4,
    }
}

/// A freshly initialised network of `c`'s shape with modules of `depths` blocks.
pub fn network(dev: &Dev, c: &VitConfig, seed: u64, depths: &[usize]) -> Network {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Network::vit(&mut Init { dev, rng: &mut rng }, c, depths)
}

pub fn patches(dev: &Dev, c: &VitConfig) -> Tensor<(usize, usize, usize), f32, Dev> {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let n = 5 * c.num_patches() * c.patch_dim();
    dev.tensor_from_vec(
        (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect(),
        (5, c.num_patches(), c.patch_dim()),
    )
}

pub fn tiny_data(c: &VitConfig) -> Data {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let make = |n: usize, rng: &mut ChaCha8Rng| {
        let labels: Vec<u8> = (0..n).map(|i| (i % c.num_classes) as u8).collect();
        // class-dependent brightness so there is something to learn
        let images = labels
            .iter()
            .flat_map(|&l| {
                (0..64)
                    .map(|_| (l as u32 * 60 + rng.gen_range(0..40)) as u8)
                    .collect::<Vec<_>>()
            })
            .collect();
        Dataset::new(images, labels, 1, 8, 8, c.num_classes).unwrap()
    };
    Data::Memory(DataSplit {
        name: "synthetic".into(),
        train: make(64, &mut rng),
        test: make(16, &mut rng),
        val: None,
    })
}
