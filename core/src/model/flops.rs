//! Compute of a training step, for the cost columns of the comparison table. Counts
//! multiply-adds of matrix products as 2 FLOPs; elementwise work is ignored (as in the usual
//! ViT FLOP counts). Each part reports its own forward FLOPs ([`crate::model::Layer::flops`]).

use super::config::VitConfig;
use super::network::Network;
use crate::device::Act;
use dfdx::prelude::NoneTape;

/// Training FLOPs per sample: parts before `first_traced` run forward only; the rest forward
/// and backward (~3x forward).
pub fn train_flops_per_sample(net: &Network, patches: &Act<NoneTape>, first_traced: usize) -> f64 {
    net.flops_per_part(patches)
        .iter()
        .enumerate()
        .map(|(i, f)| if i < first_traced { *f } else { 3.0 * f })
        .sum()
}

/// Forward FLOPs per sample that the CPU engine does not compute in a ViT of `cfg` on
/// `tokens` tokens (class token included) whose last module owns the head: its last block
/// computes the class token alone ([`crate::model::block::forward_blocks`]), all of its qkv
/// product still, but the projection and MLP on one token instead of `tokens`, and attention
/// for one query row instead of `tokens`. Counted as [`Layer::flops`] counts them.
///
/// [`Layer::flops`]: crate::model::Layer::flops
pub fn skipped_by_first_token(cfg: &VitConfig, tokens: usize) -> f64 {
    if cfg!(feature = "cuda") || cfg.depth == 0 || tokens == 0 {
        return 0.0;
    }
    let (w, h) = (cfg.embed_dim, cfg.mlp_hidden());
    let per_token = 2.0 * (w * w + 2 * w * h) as f64;
    let rest = tokens - 1;
    per_token * rest as f64 + 4.0 * ((tokens * tokens - tokens) * w) as f64
}

/// Forward FLOPs per sample that the CPU engine skips on average for drop-path: attention
/// (scores and values) for the samples whose attention branch a block drops, which the
/// residual would multiply by zero (`ops::mha`). Block `j` drops with probability `rates[j]`
/// ([`Network::drop_path_rates`]); the last block attends from its class token alone, as in
/// [`skipped_by_first_token`].
pub fn skipped_by_drop_path(cfg: &VitConfig, tokens: usize, rates: &[f64]) -> f64 {
    if cfg!(feature = "cuda") || tokens == 0 {
        return 0.0;
    }
    let (t, w) = (tokens as f64, cfg.embed_dim as f64);
    let last = rates.len().saturating_sub(1);
    rates
        .iter()
        .enumerate()
        .map(|(j, p)| {
            let queries = if j == last { 1.0 } else { t };
            p * 4.0 * queries * t * w
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_token_alone_skips_all_but_qkv_and_one_row() {
        let cfg = VitConfig::preset("mnist-small", 32, 3, Some(4), 10).unwrap();
        let (w, h, t) = (64.0, 256.0, 65.0);
        // the block's full count less what one token costs
        let block = 2.0 * t * (3.0 * w * w + w * w + 2.0 * w * h) + 4.0 * t * t * w;
        let kept = 2.0 * t * 3.0 * w * w + 2.0 * (w * w + 2.0 * w * h) + 4.0 * t * w;
        assert_eq!(skipped_by_first_token(&cfg, 65), block - kept);
        assert_eq!(skipped_by_first_token(&cfg, 1), 0.0);
    }

    #[test]
    fn drop_path_skips_each_blocks_attention_at_its_rate() {
        let cfg = VitConfig::preset("mnist-small", 32, 3, Some(4), 10).unwrap();
        let (w, t) = (64.0, 65.0);
        // three blocks at 0, 0.1 and 0.2: the middle one whole, the last from one query row
        let want = 0.1 * 4.0 * t * t * w + 0.2 * 4.0 * t * w;
        let got = skipped_by_drop_path(&cfg, 65, &[0.0, 0.1, 0.2]);
        assert!((got - want).abs() < 1e-6 * want, "{got} vs {want}");
        assert_eq!(skipped_by_drop_path(&cfg, 65, &[0.0; 8]), 0.0);
        assert_eq!(skipped_by_drop_path(&cfg, 0, &[0.5]), 0.0);
    }
}
