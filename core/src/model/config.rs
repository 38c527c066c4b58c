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

/// A named model shape: the reference models (DeiT/ViT, and the paper's ViT-L and ViT-H), plus
/// a small one that trains in minutes on 2 cores.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Preset {
    pub name: &'static str,
    pub embed_dim: usize,
    pub depth: usize,
    pub num_heads: usize,
    /// The preset's own patch size (ViT-L/16, ViT-H/14); `None`: chosen for the image size
    /// ([`default_patch_size`]).
    pub patch_size: Option<usize>,
    pub qkv_bias: bool,
    pub norm_eps: f64,
}

const fn preset(name: &'static str, embed_dim: usize, depth: usize, num_heads: usize) -> Preset {
    Preset {
        name,
        embed_dim,
        depth,
        num_heads,
        patch_size: None,
        qkv_bias: true,
        norm_eps: 1e-6,
    }
}

pub const PRESETS: &[Preset] = &[
    preset("mnist-small", 64, 8, 4),
    preset("vit-tiny", 192, 12, 3),
    preset("vit-small", 384, 12, 6),
    preset("vit-base", 768, 12, 12),
    // the paper's large models at 224 px: ViT-L/16, and ViT-H/14 without qkv bias and with
    // LayerNorm eps 1e-5 (as its reference code builds them)
    Preset {
        patch_size: Some(16),
        ..preset("vit-large", 1024, 24, 16)
    },
    Preset {
        patch_size: Some(14),
        qkv_bias: false,
        norm_eps: 1e-5,
        ..preset("vit-huge", 1280, 32, 16)
    },
];

/// The patch size when neither the config nor the preset names one: 7 for 28 px images (a 4x4
/// grid: a ViT on 16 tokens learns MNIST several times faster than on 49 with no loss of
/// accuracy), 4 up to 32 px (the CIFAR ViTs of the paper's CIFAR-100 table), 16 above
/// (ImageNet ViTs).
pub fn default_patch_size(image_size: usize) -> usize {
    match image_size {
        28 => 7,
        s if s <= 32 => 4,
        _ => 16,
    }
}

impl VitConfig {
    /// A preset's shape on the given image geometry; `patch_size` overrides the preset's.
    pub fn preset(
        name: &str,
        image_size: usize,
        channels: usize,
        patch_size: Option<usize>,
        num_classes: usize,
    ) -> Option<VitConfig> {
        let p = PRESETS.iter().find(|p| p.name == name)?;
        Some(VitConfig {
            image_size,
            channels,
            patch_size: patch_size
                .or(p.patch_size)
                .unwrap_or(default_patch_size(image_size)),
            embed_dim: p.embed_dim,
            depth: p.depth,
            num_heads: p.num_heads,
            mlp_ratio: 4.0,
            qkv_bias: p.qkv_bias,
            norm_eps: p.norm_eps,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_papers_large_models() {
        let h = VitConfig::preset("vit-huge", 224, 3, None, 1000).unwrap();
        assert_eq!(
            (h.embed_dim, h.depth, h.num_heads, h.patch_size),
            (1280, 32, 16, 14)
        );
        assert!(!h.qkv_bias && h.norm_eps == 1e-5 && h.num_patches() == 256);
        let l = VitConfig::preset("vit-large", 224, 3, None, 1000).unwrap();
        assert_eq!(
            (l.embed_dim, l.depth, l.num_heads, l.patch_size),
            (1024, 24, 16, 16)
        );
        assert!(l.qkv_bias && l.norm_eps == 1e-6);
        // the paper's 392 px fine-tune of ViT-H: 28 x 28 patches of 14
        assert_eq!(
            VitConfig::preset("vit-huge", 392, 3, None, 1000)
                .unwrap()
                .grid(),
            28
        );
        // a config's patch size wins over the preset's; small presets follow the image size
        assert_eq!(
            VitConfig::preset("vit-huge", 224, 3, Some(16), 10)
                .unwrap()
                .patch_size,
            16
        );
        assert_eq!(
            VitConfig::preset("vit-base", 28, 1, None, 10)
                .unwrap()
                .patch_size,
            7
        );
        assert!(VitConfig::preset("vit-gigantic", 224, 3, None, 10).is_none());
    }
}
