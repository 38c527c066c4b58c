//! Where batches come from: an in-memory dataset (augmented on the training thread, from the
//! epoch's random stream) or an image folder (decoded and augmented by the loader's workers,
//! each image from its own stream). The trainer and the evaluation see one interface.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex};

use super::batch::{Batch, BatchMaker};
use super::shard::{rank_order, Ranks};
use crate::data::folder::{ImageFolder, LoaderError, Stream, Unreadable};
use crate::data::{Dataset, Images};
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// The batches of one pass, in order.
pub enum Feed<'a> {
    Memory {
        data: &'a Dataset,
        batches: std::vec::IntoIter<Vec<usize>>,
    },
    Folder(Stream),
}

/// Image folders: the loader's streams differ from the main one, so that the images'
/// augmentation and the batch's mixing are independent draws.
const FOLDER_STREAM: u64 = 0x6a09e667f3bcc908;

impl<'a> Feed<'a> {
    /// The batches of `images` at `batches` (index lists); `seed` and `first_position`
    /// place a folder's images in the epoch (see [`crate::data::folder::loader`]).
    pub fn new(
        maker: &BatchMaker,
        images: Images<'a>,
        batches: Vec<Vec<usize>>,
        train: bool,
        seed: u64,
        first_position: u64,
    ) -> Feed<'a> {
        match images {
            Images::Memory(data) => Feed::Memory {
                data,
                batches: batches.into_iter(),
            },
            Images::Folder(folder) => Feed::Folder(folder_stream(
                maker,
                folder,
                batches,
                train,
                seed,
                first_position,
            )),
        }
    }

    /// The next training batch; `rng` is the epoch's stream (crop, flip and mixing of
    /// in-memory images; mixing alone for a folder's).
    pub fn next_train(
        &mut self,
        maker: &BatchMaker,
        rng: &mut ChaCha8Rng,
    ) -> Result<Batch, LoaderError> {
        match self {
            Feed::Memory { data, batches } => {
                let indices = batches.next().expect("as many batches as steps");
                Ok(maker.train(data, &indices, rng))
            }
            Feed::Folder(stream) => {
                let loaded = next_loaded(stream)?;
                Ok(maker.train_loaded(loaded, rng))
            }
        }
    }

    /// The next evaluation batch (`None` after the last).
    pub fn next_eval(&mut self, maker: &BatchMaker) -> Option<Result<Batch, LoaderError>> {
        match self {
            Feed::Memory { data, batches } => batches.next().map(|i| Ok(maker.eval(data, &i))),
            Feed::Folder(stream) => match stream.next_batch()? {
                Err(e) => Some(Err(e)),
                Ok(loaded) => {
                    warn(&loaded.unreadable, "left out of the evaluation");
                    Some(Ok(maker.eval_loaded(loaded)))
                }
            },
        }
    }
}

/// The first `n` images of `images` (fewer if it has fewer) as an evaluation normalises them,
/// `(n, c, h, w)` row-major: what a PyTorch model of the same weights takes as input. An image
/// folder's unreadable images are left out.
pub fn eval_images(maker: &BatchMaker, images: Images, n: usize) -> Result<Vec<f32>, LoaderError> {
    let indices: Vec<usize> = (0..n.min(images.len())).collect();
    match images {
        Images::Memory(data) => Ok(maker.eval_images(data, &indices)),
        Images::Folder(folder) => {
            let mut stream = folder_stream(maker, folder, vec![indices], false, 0, 0);
            match stream.next_batch() {
                None => Ok(Vec::new()),
                Some(loaded) => {
                    let loaded = loaded?;
                    warn(&loaded.unreadable, "left out");
                    Ok(loaded.images)
                }
            }
        }
    }
}

/// The loader's stream over `batches` of `folder`, through the training or evaluation
/// pipeline of `maker`.
fn folder_stream(
    maker: &BatchMaker,
    folder: &Arc<ImageFolder>,
    batches: Vec<Vec<usize>>,
    train: bool,
    seed: u64,
    first_position: u64,
) -> Stream {
    let p = maker
        .folder
        .as_ref()
        .expect("a folder run's batch maker has its pipelines");
    let pipeline = if train { &p.train } else { &p.eval };
    Stream::new(
        folder.clone(),
        pipeline.clone(),
        batches,
        seed ^ FOLDER_STREAM,
        first_position,
        p.loader,
    )
}

fn next_loaded(stream: &mut Stream) -> Result<crate::data::folder::LoadedBatch, LoaderError> {
    let loaded = stream.next_batch().expect("as many batches as steps")?;
    warn(&loaded.unreadable, "replaced by the next readable image");
    Ok(loaded)
}

/// Prints one warning per unreadable file per process: a corrupt image in a folder of a
/// million is news once, not every epoch.
fn warn(unreadable: &[Unreadable], what: &str) {
    static SEEN: LazyLock<Mutex<HashSet<std::path::PathBuf>>> = LazyLock::new(Default::default);
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    for u in unreadable {
        if seen.insert(u.path.clone()) {
            eprintln!(
                "warning: cannot decode {} ({}); {what} ({} unreadable image{} so far)",
                u.path.display(),
                u.error,
                seen.len(),
                if seen.len() == 1 { "" } else { "s" }
            );
        }
    }
}

/// The images of an epoch in order for this rank: a shuffle (the same on every rank), and with
/// repeated augmentation each image of the shuffle `repeats` times in a row (DeiT's `RASampler`:
/// on one process the copies share a batch, each augmented differently), this rank's share of
/// it ([`rank_order`]); on one process, cut to the epoch's length, so an epoch sees 1/`repeats`
/// of the images.
pub fn epoch_order(n: usize, repeats: usize, ranks: Ranks, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    rank_order(&order, repeats, ranks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn repeated_augmentation_repeats_each_image_in_a_row_and_keeps_the_epoch_length() {
        let rng = || ChaCha8Rng::seed_from_u64(9);
        let plain = epoch_order(100, 1, Ranks::SOLO, &mut rng());
        let mut sorted = plain.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>(), "a permutation");
        let ra = epoch_order(100, 3, Ranks::SOLO, &mut rng());
        assert_eq!(ra.len(), 100);
        // the same shuffle, each image three times in a row: 34 images (the last twice)
        for (k, chunk) in ra.chunks(3).enumerate() {
            assert!(chunk.iter().all(|&i| i == plain[k]), "{chunk:?}");
        }
        let unique: std::collections::BTreeSet<_> = ra.iter().collect();
        assert_eq!(unique.len(), 34);
    }
}
