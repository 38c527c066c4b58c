//! The image-folder pipelines a config describes: DeiT's training transform and its
//! evaluation transform, at the model's input size, and the loader's threads.

use std::sync::Arc;

use crate::config::RunConfig;
use crate::data::folder::{
    EvalTransform, LoaderSettings, Normalize, Pipeline, RandAugment, TrainTransform, IMAGENET_MEAN,
    IMAGENET_STD,
};

/// How an image folder's images become model inputs.
#[derive(Clone, Debug)]
pub struct FolderPipelines {
    pub train: Arc<Pipeline>,
    pub eval: Arc<Pipeline>,
    pub loader: LoaderSettings,
}

/// The pipelines for crops of `size` (the model's input side).
pub fn pipelines(cfg: &RunConfig, size: usize) -> FolderPipelines {
    let a = &cfg.augment;
    let normalize = Normalize {
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
    };
    let rand_augment = (!a.rand_augment.is_empty()).then(|| {
        RandAugment::parse(&a.rand_augment)
            .expect("RunConfig::validate parses augment.rand_augment")
    });
    FolderPipelines {
        train: Arc::new(Pipeline::Train(TrainTransform {
            size,
            scale: (a.rrc_scale[0], a.rrc_scale[1]),
            ratio: (a.rrc_ratio[0], a.rrc_ratio[1]),
            hflip: a.hflip,
            rand_augment,
            erase_prob: a.reprob,
            normalize: normalize.clone(),
        })),
        eval: Arc::new(Pipeline::Eval(EvalTransform {
            size,
            crop_pct: a.crop_pct,
            normalize,
        })),
        loader: LoaderSettings {
            workers: cfg
                .data
                .workers
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            prefetch: cfg.data.prefetch,
            max_image_pixels: cfg.data.max_image_pixels,
        },
    }
}
