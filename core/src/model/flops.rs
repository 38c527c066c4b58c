//! Compute of a training step, for the cost columns of the comparison table. Counts
//! multiply-adds of matrix products as 2 FLOPs; elementwise work is ignored (as in the usual
//! ViT FLOP counts). Each part reports its own forward FLOPs ([`crate::model::Layer::flops`]).

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
