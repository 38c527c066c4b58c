//! Class-balanced draws of image indices: training subsets (`data.train_limit`) and the
//! validation hold-out, the same for in-memory datasets and image folders.

/// Mixed into the subset seed for the validation hold-out, so that it is not the same draw as
/// a training subset of the same seed.
const HOLD_OUT_STREAM: u64 = 0x5be0cd19137e2179;

/// The indices of `labels` split into (the rest, a class-balanced hold-out of `take(count)`
/// images of each class of `count`), each in order. Every class keeps at least one image in
/// the rest. The draw depends only on `seed` and the class's members, so the same images are
/// held out whatever is done with the rest afterwards.
pub fn held_out_indices(
    labels: impl Iterator<Item = usize>,
    num_classes: usize,
    take: impl Fn(usize) -> usize,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let labels: Vec<usize> = labels.collect();
    let n = labels.len();
    let keep = |count: usize| take(count).min(count.saturating_sub(1));
    let held = balanced_indices(
        labels.into_iter(),
        num_classes,
        keep,
        seed ^ HOLD_OUT_STREAM,
    );
    let mut is_held = vec![false; n];
    for &i in &held {
        is_held[i] = true;
    }
    let rest = (0..n).filter(|&i| !is_held[i]).collect();
    (rest, held)
}

/// The indices of a class-balanced subset of images labelled `labels` (see
/// [`super::Dataset::balanced_subset`]), in order.
pub fn balanced_indices(
    labels: impl Iterator<Item = usize>,
    num_classes: usize,
    keep: impl Fn(usize) -> usize,
    seed: u64,
) -> Vec<usize> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); num_classes];
    for (i, l) in labels.enumerate() {
        by_class[l].push(i);
    }
    let mut chosen = Vec::new();
    for (class, mut members) in by_class.into_iter().enumerate() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(class as u64);
        members.shuffle(&mut rng);
        let n = keep(members.len()).min(members.len());
        chosen.extend_from_slice(&members[..n]);
    }
    chosen.sort_unstable();
    chosen
}
