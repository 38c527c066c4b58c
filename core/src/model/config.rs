//! Model shape, chosen at run time (TOML), with presets by name.

use serde::{Deserialize, Serialize};

/// A Vision Transformer's shape. Every size is a run-time value: the layers are built from
/// dfdx tensor ops on `usize` dimensions, so no recompilation is needed to change them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VitConfig {
    pub image_size: usize,
    pub channels: usize,
    pub patch_size: usize,
    pub embed_dim: usize,
    pub depth: usize,
    pub num_heads: usize,
    pub mlp_ratio: f64,
    pub qkv_bias: bool,
    pub norm_eps: f64,
    pub num_classes: usize,
}

/// Widths of the reference models (DeiT/ViT), plus a small one that trains in minutes on 2 cores.
pub const PRESETS: &[(&str, usize, usize, usize)] = &[
    // name, embed_dim, depth, heads
    ("mnist-small", 64, 8, 4),
    ("vit-tiny", 192, 12, 3),
    ("vit-small", 384, 12, 6),
    ("vit-base", 768, 12, 12),
];

impl VitConfig {
    /// A preset's width and depth on the given image geometry.
    pub fn preset(
        name: &str,
        image_size: usize,
        channels: usize,
        patch_size: usize,
        num_classes: usize,
    ) -> Option<VitConfig> {
        let &(_, embed_dim, depth, num_heads) = PRESETS.iter().find(|p| p.0 == name)?;
        Some(VitConfig {
            image_size,
            channels,
            patch_size,
            embed_dim,
            depth,
            num_heads,
            mlp_ratio: 4.0,
            qkv_bias: true,
            norm_eps: 1e-6,
            num_classes,
        })
    }

    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }
    pub fn num_patches(&self) -> usize {
        self.grid() * self.grid()
    }
    /// Patches plus the class token.
    pub fn tokens(&self) -> usize {
        self.num_patches() + 1
    }
    pub fn patch_dim(&self) -> usize {
        self.channels * self.patch_size * self.patch_size
    }
    pub fn mlp_hidden(&self) -> usize {
        (self.embed_dim as f64 * self.mlp_ratio) as usize
    }
    pub fn head_dim(&self) -> usize {
        self.embed_dim / self.num_heads
    }

    /// Problems with this shape, each naming the field and the fix.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let positive = [
            ("image_size", self.image_size),
            ("channels", self.channels),
            ("patch_size", self.patch_size),
            ("embed_dim", self.embed_dim),
            ("depth", self.depth),
            ("num_heads", self.num_heads),
            ("num_classes", self.num_classes),
        ];
        for (name, v) in positive {
            if v == 0 {
                p.push(format!("model.{name} is 0; it must be at least 1"));
            }
        }
        if self.patch_size > 0 && self.image_size % self.patch_size != 0 {
            p.push(format!(
                "model.patch_size = {} does not divide model.image_size = {}; pick a divisor (e.g. {})",
                self.patch_size,
                self.image_size,
                (1..=self.patch_size).rev().find(|d| self.image_size % d == 0).unwrap_or(1)
            ));
        }
        if self.num_heads > 0 && self.embed_dim % self.num_heads != 0 {
            p.push(format!(
                "model.num_heads = {} does not divide model.embed_dim = {}",
                self.num_heads, self.embed_dim
            ));
        }
        if !(self.mlp_ratio > 0.0) || self.mlp_hidden() == 0 {
            p.push(format!(
                "model.mlp_ratio = {} must be positive",
                self.mlp_ratio
            ));
        }
        if !(self.norm_eps > 0.0) {
            p.push(format!(
                "model.norm_eps = {} must be positive",
                self.norm_eps
            ));
        }
        p
    }
}
