//! Analytic compute of a forward pass, for the cost columns of the comparison table.
//! Counts multiply-adds of matrix products as 2 FLOPs; elementwise work is ignored (as in the
//! usual ViT FLOP counts).

use super::config::VitConfig;

pub fn stem_flops(cfg: &VitConfig) -> f64 {
    2.0 * (cfg.num_patches() * cfg.patch_dim() * cfg.embed_dim) as f64
}

pub fn block_flops(cfg: &VitConfig) -> f64 {
    let (t, d, h) = (
        cfg.tokens() as f64,
        cfg.embed_dim as f64,
        cfg.mlp_hidden() as f64,
    );
    let qkv = 2.0 * t * d * 3.0 * d;
    let attn = 2.0 * 2.0 * t * t * d;
    let proj = 2.0 * t * d * d;
    let mlp = 2.0 * 2.0 * t * d * h;
    qkv + attn + proj + mlp
}

pub fn head_flops(cfg: &VitConfig) -> f64 {
    2.0 * (cfg.embed_dim * cfg.num_classes) as f64
}

/// Forward FLOPs per sample of a network with these module depths, split into the modules
/// before `first_traced` (run forward only) and the rest (forward and backward, ~3x).
pub fn train_flops_per_sample(cfg: &VitConfig, depths: &[usize], first_traced: usize) -> f64 {
    let module = |i: usize| {
        let mut f = depths[i] as f64 * block_flops(cfg);
        if i == 0 {
            f += stem_flops(cfg);
        }
        if i + 1 == depths.len() {
            f += head_flops(cfg);
        }
        f
    };
    (0..depths.len())
        .map(|i| {
            if i < first_traced {
                module(i)
            } else {
                3.0 * module(i)
            }
        })
        .sum()
}

pub fn eval_flops_per_sample(cfg: &VitConfig, depths: &[usize]) -> f64 {
    train_flops_per_sample(cfg, depths, depths.len())
}
