//! Each rank's share of an epoch's order, cut as the reference's samplers cut it: PyTorch's
//! `DistributedSampler` (without repeated augmentation) and DeiT's `RASampler` (with it, as timm
//! keeps it: `RepeatAugSampler`). Rank `r` of `N` takes the positions `r, r + N, r + 2N, ...` of
//! the order (each image `repeats` times in a row with repeated augmentation, so the copies of
//! one image land on different ranks), wrapping around to the start so that every rank gets
//! `ceil(n / N)` images. The union of the ranks' step `s` is then the one-rank order's step `s`
//! with an `N` times larger batch: what lets N ranks reproduce one.
//!
//! One difference from DeiT, written down: `RASampler` keeps `floor(n / 256) * 256 / N` images
//! per rank (timm's `selected_round = 256`); we keep `ceil(n / N)` (timm's `selected_round = 0`),
//! so that one rank sees `n` images an epoch, as the engine always has.

pub use crate::collective::Ranks;

/// The positions (indices into `order`'s images, each repeated `repeats` times) rank `ranks.rank`
/// trains on this epoch, in its order. `repeats` of 0 counts as 1.
pub fn rank_order(order: &[usize], repeats: usize, ranks: Ranks) -> Vec<usize> {
    let Ranks { rank, world } = ranks;
    assert!(world >= 1 && rank < world, "rank {rank} of {world}");
    let n = order.len();
    if n == 0 {
        return Vec::new();
    }
    let repeats = repeats.max(1);
    // the order with each image `repeats` times in a row, read with wrap-around
    let repeated = n * repeats;
    let total = repeated.div_ceil(world) * world;
    (rank..total)
        .step_by(world)
        .take(n.div_ceil(world))
        .map(|i| order[(i % repeated) / repeats])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(n: usize) -> Vec<usize> {
        (0..n).collect()
    }

    #[test]
    fn one_rank_keeps_the_order_and_its_length() {
        let order = vec![4, 2, 0, 3, 1];
        assert_eq!(rank_order(&order, 1, Ranks::SOLO), order);
        // repeated augmentation on one process: each image three times in a row, n in all
        assert_eq!(rank_order(&order, 3, Ranks::SOLO), vec![4, 4, 4, 2, 2]);
        assert!(rank_order(&[], 3, Ranks::SOLO).is_empty());
    }

    #[test]
    fn ranks_interleave_and_pad_by_wrapping() {
        let at = |rank, repeats| rank_order(&identity(5), repeats, Ranks { rank, world: 2 });
        // DistributedSampler: 5 images on 2 ranks, padded with the first
        assert_eq!(at(0, 1), vec![0, 2, 4]);
        assert_eq!(at(1, 1), vec![1, 3, 0]);
        // RASampler: 0 0 0 1 1 1 2 2 2 ..., the copies of an image on both ranks
        assert_eq!(at(0, 3), vec![0, 0, 1]);
        assert_eq!(at(1, 3), vec![0, 1, 1]);
    }

    #[test]
    fn the_ranks_steps_together_are_the_one_rank_steps_of_a_larger_batch() {
        let order: Vec<usize> = (0..103).map(|i| (i * 37) % 103).collect();
        for repeats in [1, 3] {
            let one = rank_order(&order, repeats, Ranks::SOLO);
            for world in [2, 4] {
                let b = 5;
                let shards: Vec<Vec<usize>> = (0..world)
                    .map(|rank| rank_order(&order, repeats, Ranks { rank, world }))
                    .collect();
                for step in 0..shards[0].len() / b {
                    let mut union: Vec<usize> = shards
                        .iter()
                        .flat_map(|s| s[step * b..(step + 1) * b].iter().copied())
                        .collect();
                    let mut big = one[step * b * world..(step + 1) * b * world].to_vec();
                    union.sort_unstable();
                    big.sort_unstable();
                    assert_eq!(union, big, "repeats {repeats}, {world} ranks, step {step}");
                }
            }
        }
    }
}
