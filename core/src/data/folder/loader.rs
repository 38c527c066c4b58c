//! Decoding an image folder in worker threads with bounded memory: the batches of an epoch
//! are handed out to `workers` threads and delivered in order; at most `in_flight` batches are
//! decoded ahead of the one the trainer is on, so memory stays `in_flight` batches however
//! large the folder.
//!
//! Each image's random transform draws from its own stream, seeded by the epoch's seed and
//! the image's position in the epoch: the result does not depend on the number of workers,
//! and a run resumed mid-epoch sees exactly the images it would have seen.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use fast_image_resize::Resizer;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::index::ImageFolder;
use super::transform::{decode, EvalTransform, TrainTransform};
use crate::panic_message::panic_message;

/// What is done to each image.
#[derive(Clone, Debug, PartialEq)]
pub enum Pipeline {
    Train(TrainTransform),
    Eval(EvalTransform),
}

impl Pipeline {
    pub fn size(&self) -> usize {
        match self {
            Pipeline::Train(t) => t.size,
            Pipeline::Eval(t) => t.size,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoaderSettings {
    /// Decoding threads; 0 decodes on the calling thread.
    pub workers: usize,
    /// Batches decoded ahead per worker (torchvision's `prefetch_factor`).
    pub prefetch: usize,
    /// Images declaring more pixels are not decoded (counted as unreadable).
    pub max_image_pixels: u64,
}

impl LoaderSettings {
    /// The most batches decoded and not yet taken: the memory bound.
    pub fn in_flight(&self) -> usize {
        (self.workers * self.prefetch).max(1)
    }
}

/// Why the loader cannot give a batch.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    #[error("{count} images in a row from {} cannot be decoded (the last: {last}); check the folder's files", from.display())]
    Unreadable {
        count: usize,
        from: PathBuf,
        last: String,
    },
    #[error("decoding panicked: {0}")]
    Panicked(String),
}

/// An image that could not be decoded: its file and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Unreadable {
    pub path: PathBuf,
    pub error: String,
}

/// A decoded batch: (n, 3, size, size) normalised floats and the labels.
#[derive(Debug)]
pub struct LoadedBatch {
    pub images: Vec<f32>,
    pub labels: Vec<usize>,
    /// Images that could not be decoded: in training each was replaced by the next readable
    /// image of the folder (so batches keep their size); in evaluation each was left out.
    pub unreadable: Vec<Unreadable>,
}

/// How many unreadable images in a row a training batch looks past before giving up.
pub const MAX_CONSECUTIVE_UNREADABLE: usize = 16;

/// One pass over `batches` (lists of image indices) of `folder`.
pub struct Stream {
    shared: Arc<(Mutex<Shared>, Condvar)>,
    threads: Vec<JoinHandle<()>>,
    work: Arc<Work>,
    next: usize,
}

struct Work {
    folder: Arc<ImageFolder>,
    pipeline: Arc<Pipeline>,
    /// Per batch: (image index, position in the epoch).
    batches: Vec<Vec<(usize, u64)>>,
    seed: u64,
    in_flight: usize,
    max_pixels: u64,
}

#[derive(Default)]
struct Shared {
    next_job: usize,
    taken: usize,
    ready: BTreeMap<usize, Result<LoadedBatch, LoaderError>>,
    stop: bool,
}

impl Stream {
    /// Starts decoding. `first_position` is the epoch position of the first image of
    /// `batches[0]` (nonzero when resuming mid-epoch).
    pub fn new(
        folder: Arc<ImageFolder>,
        pipeline: Arc<Pipeline>,
        batches: Vec<Vec<usize>>,
        seed: u64,
        first_position: u64,
        settings: LoaderSettings,
    ) -> Stream {
        let mut position = first_position;
        let batches = batches
            .into_iter()
            .map(|b| {
                b.into_iter()
                    .map(|i| {
                        position += 1;
                        (i, position - 1)
                    })
                    .collect()
            })
            .collect();
        let work = Arc::new(Work {
            folder,
            pipeline,
            batches,
            seed,
            in_flight: settings.in_flight(),
            max_pixels: settings.max_image_pixels,
        });
        let shared = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        let threads = (0..settings.workers)
            .map(|k| {
                let (work, shared) = (work.clone(), shared.clone());
                std::thread::Builder::new()
                    .name(format!("loader-{k}"))
                    .spawn(move || worker(&work, &shared))
                    .expect("spawning a loader thread")
            })
            .collect();
        Stream {
            shared,
            threads,
            work,
            next: 0,
        }
    }

    /// How many batches the workers have started decoding so far (the memory bound says this
    /// never exceeds the batches taken plus `in_flight`).
    pub fn started(&self) -> usize {
        self.shared.0.lock().map_or(0, |s| s.next_job)
    }

    /// The next batch in order; an error when the folder cannot give one (too many unreadable
    /// images in a row).
    pub fn next_batch(&mut self) -> Option<Result<LoadedBatch, LoaderError>> {
        if self.next >= self.work.batches.len() {
            return None;
        }
        let k = self.next;
        self.next += 1;
        if self.threads.is_empty() {
            return Some(self.work.load(k, &mut Resizer::new()));
        }
        let (lock, ready) = &*self.shared;
        let mut s = lock
            .lock()
            .expect("loader threads do not panic holding the lock");
        loop {
            if let Some(b) = s.ready.remove(&k) {
                s.taken = k + 1;
                ready.notify_all();
                return Some(b);
            }
            s = ready.wait(s).expect("lock not poisoned");
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let (lock, cv) = &*self.shared;
        if let Ok(mut s) = lock.lock() {
            s.stop = true;
        }
        cv.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn worker(work: &Work, shared: &(Mutex<Shared>, Condvar)) {
    let (lock, cv) = shared;
    let mut resizer = Resizer::new();
    loop {
        let k = {
            let mut s = lock.lock().expect("not poisoned");
            loop {
                if s.stop || s.next_job >= work.batches.len() {
                    return;
                }
                if s.next_job < s.taken + work.in_flight {
                    break;
                }
                s = cv.wait(s).expect("not poisoned");
            }
            s.next_job += 1;
            s.next_job - 1
        };
        // A panic in a decoder fails the batch, not the process (and not silently).
        let batch =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work.load(k, &mut resizer)))
                .unwrap_or_else(|p| Err(LoaderError::Panicked(panic_message(&*p))));
        let mut s = lock.lock().expect("not poisoned");
        s.ready.insert(k, batch);
        cv.notify_all();
    }
}

/// The random stream of the image at `position` of an epoch seeded `seed`.
fn image_rng(seed: u64, position: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(position);
    rng
}

impl Work {
    fn load(&self, k: usize, resizer: &mut Resizer) -> Result<LoadedBatch, LoaderError> {
        let size = self.pipeline.size();
        let per_image = 3 * size * size;
        let batch = &self.batches[k];
        let mut images = vec![0f32; batch.len() * per_image];
        let mut labels = Vec::with_capacity(batch.len());
        let mut unreadable = Vec::new();
        let mut filled = 0;
        for &(index, position) in batch {
            let out = &mut images[filled * per_image..(filled + 1) * per_image];
            match &*self.pipeline {
                Pipeline::Eval(t) => match decode(&self.folder.files[index], self.max_pixels) {
                    Ok(img) => {
                        t.apply(resizer, &img, out);
                        labels.push(self.folder.labels[index] as usize);
                        filled += 1;
                    }
                    Err(error) => unreadable.push(Unreadable {
                        path: self.folder.files[index].clone(),
                        error: error.to_string(),
                    }),
                },
                Pipeline::Train(t) => {
                    let n = self.folder.len();
                    let mut found = None;
                    for step in 0..MAX_CONSECUTIVE_UNREADABLE.min(n) {
                        let i = (index + step) % n;
                        match decode(&self.folder.files[i], self.max_pixels) {
                            Ok(img) => {
                                found = Some((i, img));
                                break;
                            }
                            Err(error) => unreadable.push(Unreadable {
                                path: self.folder.files[i].clone(),
                                error: error.to_string(),
                            }),
                        }
                    }
                    let Some((i, img)) = found else {
                        return Err(LoaderError::Unreadable {
                            count: MAX_CONSECUTIVE_UNREADABLE.min(n),
                            from: self.folder.files[index].clone(),
                            last: unreadable
                                .last()
                                .map(|u| u.error.clone())
                                .unwrap_or_default(),
                        });
                    };
                    t.apply(resizer, &img, &mut image_rng(self.seed, position), out);
                    labels.push(self.folder.labels[i] as usize);
                    filled += 1;
                }
            }
        }
        images.truncate(filled * per_image);
        Ok(LoadedBatch {
            images,
            labels,
            unreadable,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::folder::{Normalize, RandAugment};

    /// A folder of `n` random-content PNGs of varied sizes, one class.
    fn folder(dir: &std::path::Path, n: usize) -> ImageFolder {
        let class = dir.join("train").join("a");
        std::fs::create_dir_all(&class).unwrap();
        for i in 0..n {
            let (w, h) = (20 + (i as u32 * 7) % 30, 16 + (i as u32 * 5) % 25);
            let img = image::RgbImage::from_fn(w, h, |x, y| {
                image::Rgb([(x * 9) as u8, (y * 11) as u8, (i * 13) as u8])
            });
            img.save(class.join(format!("{i:03}.png"))).unwrap();
        }
        ImageFolder::scan(&dir.join("train"), &["a".to_string()], true).unwrap()
    }

    fn train_pipeline() -> Pipeline {
        Pipeline::Train(TrainTransform {
            size: 16,
            scale: (0.08, 1.0),
            ratio: (0.75, 4.0 / 3.0),
            hflip: true,
            rand_augment: Some(RandAugment::parse("rand-m9-mstd0.5-inc1").unwrap()),
            erase_prob: 0.25,
            normalize: Normalize {
                mean: [0.5; 3],
                std: [0.25; 3],
            },
        })
    }

    fn all(mut s: Stream) -> Vec<Vec<f32>> {
        std::iter::from_fn(|| s.next_batch())
            .map(|b| b.unwrap().images)
            .collect()
    }

    #[test]
    fn workers_decode_at_most_in_flight_batches_ahead() {
        let tmp = tempfile::tempdir().unwrap();
        let f = Arc::new(folder(tmp.path(), 40));
        let batches: Vec<Vec<usize>> = (0..20).map(|k| vec![2 * k, 2 * k + 1]).collect();
        let settings = LoaderSettings {
            workers: 3,
            prefetch: 1,
            max_image_pixels: u64::MAX,
        };
        let mut s = Stream::new(f, Arc::new(train_pipeline()), batches, 7, 0, settings);
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(
            s.started(),
            3,
            "three workers, three batches in flight, no more"
        );
        s.next_batch().unwrap().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(s.started(), 4);
        // dropping a stream mid-epoch stops and joins its workers
        drop(s);
    }

    #[test]
    fn batches_do_not_depend_on_workers_or_where_the_epoch_starts() {
        let tmp = tempfile::tempdir().unwrap();
        let f = Arc::new(folder(tmp.path(), 24));
        let p = Arc::new(train_pipeline());
        let order: Vec<usize> = (0..24).rev().collect();
        let batches = |from: usize| {
            order[from..]
                .chunks(4)
                .map(<[usize]>::to_vec)
                .collect::<Vec<_>>()
        };
        let run = |workers, from: usize| {
            let settings = LoaderSettings {
                workers,
                prefetch: 2,
                max_image_pixels: u64::MAX,
            };
            all(Stream::new(
                f.clone(),
                p.clone(),
                batches(from),
                11,
                from as u64,
                settings,
            ))
        };
        let inline = run(0, 0);
        assert_eq!(inline.len(), 6);
        assert_eq!(run(3, 0), inline);
        // resuming at image 8 (batch 2) gives the rest of the same epoch
        assert_eq!(run(2, 8), inline[2..].to_vec());
        // another epoch seed draws other augmentations
        let other = all(Stream::new(
            f.clone(),
            p.clone(),
            batches(0),
            12,
            0,
            LoaderSettings {
                workers: 1,
                prefetch: 1,
                max_image_pixels: u64::MAX,
            },
        ));
        assert_ne!(other, inline);
    }
}
