//! Cutting the target model into K modules (`divided_depths`, uneven allowed).

use crate::config::{ConfigError, RunConfig};
use crate::model::VitConfig;

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Split {
    /// Blocks in each target module; module 0 also owns the stem, module K-1 the head.
    pub divided_depths: Vec<usize>,
}

impl Split {
    pub fn resolve(cfg: &RunConfig, vit: &VitConfig) -> Result<Split, ConfigError> {
        let depths = if cfg.split.divided_depths.is_empty() {
            if vit.depth % 4 != 0 {
                return Err(ConfigError::Invalid(format!(
                    "model.depth = {} is not divisible into 4 equal modules; set split.divided_depths (e.g. [{}])",
                    vit.depth,
                    uneven(vit.depth, 4).iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
                )));
            }
            vec![vit.depth / 4; 4]
        } else {
            cfg.split.divided_depths.clone()
        };
        if depths.iter().any(|&d| d == 0) {
            return Err(ConfigError::Invalid(format!("split.divided_depths = {depths:?} has an empty module; every module needs at least one block")));
        }
        let total: usize = depths.iter().sum();
        if total != vit.depth {
            return Err(ConfigError::Invalid(format!(
                "split.divided_depths = {depths:?} adds up to {total} blocks but model.depth = {}; make them agree",
                vit.depth
            )));
        }
        Ok(Split {
            divided_depths: depths,
        })
    }

    /// K, the number of modules.
    pub fn k(&self) -> usize {
        self.divided_depths.len()
    }
}

/// `depth` blocks over `k` modules as evenly as possible (a suggestion for error messages).
fn uneven(depth: usize, k: usize) -> Vec<usize> {
    (0..k)
        .map(|i| depth / k + usize::from(i < depth % k))
        .collect()
}
