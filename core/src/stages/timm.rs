//! timm's format, both ways: `timm.models.vision_transformer.VisionTransformer` loads what
//! [`to_timm`] writes with `strict=True`, and [`from_timm`] reads its state dicts. The names
//! are the same but for the stem: the patch embedding is a Linear
//! on flattened patches here and a Conv2d there (the same numbers: patches are flattened in
//! the convolution's (channel, row, column) order), and the class token and position
//! embedding carry timm's leading batch dimensions.

use crate::model::{Network, VitConfig};
use std::collections::BTreeMap;

pub type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Loads a timm state dict (as read from its file) into `net`, a model of the run of `vit`:
/// shapes checked as the file has them first (a meta design timm has no names for is
/// checked when loaded), then renamed and loaded. The error says what does not fit.
pub fn load_into(
    read: crate::checkpoint::Checkpoint,
    net: &mut Network,
    vit: &VitConfig,
    dev: &crate::device::Dev,
) -> anyhow::Result<()> {
    if let Ok((expected, _)) = to_timm(net, vit) {
        let problems = shape_problems(&read.tensors, &expected, vit);
        if !problems.is_empty() {
            anyhow::bail!("{}", problems.join("; "));
        }
    }
    let ours = crate::checkpoint::Checkpoint {
        tensors: from_timm(read.tensors, vit)?,
        ..read
    };
    Ok(ours.load_into(net, "", dev)?)
}

/// `net`'s parameters under timm's names and shapes, and the ViT they make (the run's, at the
/// depth of `net`: a meta model is a ViT with one block per module). A model with parts
/// timm's ViT does not have (an assembly rule's glue) is refused, naming them.
pub fn to_timm(net: &Network, vit: &VitConfig) -> anyhow::Result<(Tensors, VitConfig)> {
    let mut out = Tensors::new();
    let mut foreign = Vec::new();
    let (d, c, p) = (vit.embed_dim, vit.channels, vit.patch_size);
    for (name, (shape, data)) in crate::checkpoint::params_of(net) {
        let (to, shape) = match name.as_str() {
            "stem.patch_embed.weight" => ("patch_embed.proj.weight".to_string(), vec![d, c, p, p]),
            "stem.patch_embed.bias" => ("patch_embed.proj.bias".to_string(), shape),
            "stem.cls_token" => ("cls_token".to_string(), vec![1, 1, d]),
            "stem.pos_embed" => ("pos_embed".to_string(), vec![1, vit.tokens(), d]),
            n if n.starts_with("blocks.") || n.starts_with("norm.") || n.starts_with("head.") => {
                (n.to_string(), shape)
            }
            _ => {
                foreign.push(name);
                continue;
            }
        };
        if shape.iter().product::<usize>() != data.len() {
            anyhow::bail!(
                "the model's {name} has {} values, not the {shape:?} of this run's ViT (width {d}, {c} channels, patch {p}): not a plain ViT of this run (a meta design of another width, say); export the E2E model, or a model assembled by plain stacking",
                data.len()
            );
        }
        out.insert(to, (shape, data));
    }
    if !foreign.is_empty() {
        anyhow::bail!(
            "the model has parameters timm's VisionTransformer does not ({}): an assembly rule's glue cannot be exported; export the E2E model, or a model assembled by plain stacking",
            foreign.join(", ")
        );
    }
    // a meta model has one block per module, the target the run's depth: the file says which
    let mut blocks: Vec<usize> = out
        .keys()
        .filter_map(|k| k.strip_prefix("blocks.")?.split('.').next()?.parse().ok())
        .collect();
    blocks.sort_unstable();
    blocks.dedup();
    if blocks.is_empty() || blocks.iter().enumerate().any(|(i, &b)| i != b) {
        anyhow::bail!(
            "the model's blocks are numbered {blocks:?}, not 0, 1, 2, ...: not a plain ViT"
        );
    }
    let exported = VitConfig {
        depth: blocks.len(),
        ..vit.clone()
    };
    Ok((out, exported))
}

/// A timm ViT state dict under this engine's names and shapes; tensors this engine's ViT does
/// not have (`fc_norm`, register tokens, ...) are refused, naming them. Shapes are checked
/// when the result is loaded into the run's model.
pub fn from_timm(timm: Tensors, vit: &VitConfig) -> anyhow::Result<Tensors> {
    if let Some(problem) = timm
        .get("patch_embed.proj.weight")
        .and_then(|(shape, _)| patch_size_problem(shape, vit))
    {
        anyhow::bail!("{problem}");
    }
    let mut out = Tensors::new();
    let mut foreign = Vec::new();
    let d = vit.embed_dim;
    for (name, (shape, data)) in timm {
        let to = match name.as_str() {
            "patch_embed.proj.weight" => {
                // (D, C, p, p) -> (D, C*p*p): the same numbers
                let rest: usize = shape.iter().skip(1).product();
                out.insert(
                    "stem.patch_embed.weight".into(),
                    (vec![shape[0], rest], data),
                );
                continue;
            }
            "patch_embed.proj.bias" => "stem.patch_embed.bias",
            "cls_token" => {
                out.insert("stem.cls_token".into(), (vec![data.len()], data));
                continue;
            }
            "pos_embed" => {
                let width = match shape.as_slice() {
                    [1, _, w] | [_, w] => *w,
                    _ => anyhow::bail!(
                        "pos_embed has shape {shape:?}; a ViT's is [1, tokens, width]"
                    ),
                };
                if width != d {
                    anyhow::bail!(
                        "pos_embed has shape {shape:?}: the checkpoint's width is {width}, this run's model.embed_dim is {d}"
                    );
                }
                let (tokens, data) = pos_embed_for(data, d, vit)?;
                out.insert("stem.pos_embed".into(), (vec![tokens, d], data));
                continue;
            }
            n if n.starts_with("blocks.") || n.starts_with("norm.") || n.starts_with("head.") => n,
            _ => {
                foreign.push(name);
                continue;
            }
        };
        out.insert(to.to_string(), (shape, data));
    }
    if !foreign.is_empty() {
        anyhow::bail!(
            "the checkpoint has tensors this engine's ViT does not ({}): import a plain timm VisionTransformer (class token, no fc_norm, no register tokens)",
            foreign.join(", ")
        );
    }
    Ok(out)
}

/// A patch embedding (D, C, p, p) of another patch size than `vit`'s, said as what to set.
fn patch_size_problem(shape: &[usize], vit: &VitConfig) -> Option<String> {
    (shape.len() == 4 && shape[2] != vit.patch_size).then(|| {
        format!(
            "the checkpoint's patches are {p}x{p} pixels, this run's model takes {q}x{q} (model.patch_size): a model's patch size cannot change; set model.patch_size = {p}",
            p = shape[2],
            q = vit.patch_size
        )
    })
}

/// The tensors of a timm checkpoint (`file`, under timm's names) whose shapes differ from
/// those `expected` (the run's model under timm's names), quoted as the file has them. Position
/// embeddings of the same width may differ in their grid (they are resized).
pub fn shape_problems(file: &Tensors, expected: &Tensors, vit: &VitConfig) -> Vec<String> {
    let d = vit.embed_dim;
    let mut problems = Vec::new();
    if let Some(problem) = file
        .get("patch_embed.proj.weight")
        .and_then(|(shape, _)| patch_size_problem(shape, vit))
    {
        return vec![problem];
    }
    for (name, (shape, _)) in file {
        let Some((want, _)) = expected.get(name) else {
            continue; // unknown or missing tensors are named elsewhere
        };
        let resizable = name == "pos_embed" && shape.len() == 3 && shape[2] == d;
        if shape != want && !resizable {
            let width = match shape.last() {
                Some(&w) if w != d && want.last() == Some(&d) => {
                    format!(" (the checkpoint's width is {w}; this run's model.embed_dim is {d})")
                }
                _ => String::new(),
            };
            problems.push(format!(
                "{name} has shape {shape:?} in the file, this run's model needs {want:?}{width}"
            ));
        }
    }
    problems
}

/// A checkpoint's position embeddings for `vit`'s grid: as they are when the grids agree,
/// else resized by bicubic interpolation (as DeiT does before fine-tuning at 384 px; timm does
/// the same when it loads a model at another size), so a model trained at one resolution can
/// be fine-tuned or evaluated at another.
fn pos_embed_for(data: Vec<f32>, d: usize, vit: &VitConfig) -> anyhow::Result<(usize, Vec<f32>)> {
    let tokens = data.len() / d.max(1);
    let want = 1 + vit.num_patches();
    if tokens == want || data.len() != tokens * d {
        return Ok((tokens, data)); // the shape check on loading names any other mismatch
    }
    let side = |n: usize| (1..=n).find(|s| s * s >= n).filter(|s| s * s == n);
    let (Some(old), Some(new)) = (side(tokens - 1), side(want - 1)) else {
        anyhow::bail!(
            "pos_embed has {tokens} positions; this run's model has {want} (a class token and a {}-patch grid), and only square grids can be resized",
            want - 1
        );
    };
    eprintln!(
        "pos_embed resized from a {old}x{old} to a {new}x{new} patch grid (bicubic): the checkpoint was trained at {} px, this run's model takes {} px",
        old * vit.patch_size,
        vit.image_size
    );
    Ok((
        want,
        crate::model::resample::resample_pos_embed(&data, old, new, d),
    ))
}

/// The keyword arguments that build the same model with timm:
/// `VisionTransformer(**kwargs, norm_layer=partial(nn.LayerNorm, eps=norm_eps))`.
pub fn timm_kwargs(vit: &VitConfig) -> serde_json::Value {
    serde_json::json!({
        "kwargs": {
            "img_size": vit.image_size,
            "patch_size": vit.patch_size,
            "in_chans": vit.channels,
            "num_classes": vit.num_classes,
            "embed_dim": vit.embed_dim,
            "depth": vit.depth,
            "num_heads": vit.num_heads,
            "mlp_ratio": vit.mlp_ratio,
            "qkv_bias": vit.qkv_bias,
            "class_token": true,
            "global_pool": "token",
        },
        "norm_eps": vit.norm_eps,
    })
}
