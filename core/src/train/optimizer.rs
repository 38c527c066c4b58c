//! AdamW over a chosen set of parameters, with DeiT's no-decay group, global-norm gradient
//! clipping, and state that survives a checkpoint.
//!
//! dfdx's own `Adam` has no parameter groups, so this drives its fused per-tensor kernel
//! (`AdamConfig::try_update`) once per parameter with that parameter's weight decay. Moments
//! live in `Gradients` maps keyed by the parameter tensors: the kernel updates parameters in
//! place, so their ids (and the keys) stay valid for the life of the model.

use crate::device::{read_buffer, write_buffer, Dev};
use crate::model::params::{decays, HasParams, ParamMut};
use dfdx::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// Saved optimizer moments that do not fit the model.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MomentsError {
    #[error("optimizer state lacks {0}")]
    Missing(String),
    #[error("optimizer state {key} has {saved} values, the parameter {param}")]
    Size {
        key: String,
        saved: usize,
        param: usize,
    },
}

pub struct AdamW {
    pub betas: [f64; 2],
    pub eps: f64,
    pub weight_decay: f64,
    /// Optimizer steps taken.
    pub step: u64,
    /// Updates each parameter received (bias correction uses it, as PyTorch's per-parameter
    /// `step`): a parameter frozen for a while starts its correction when it first moves.
    updates: BTreeMap<String, u64>,
    m: Gradients<f32, Dev>,
    v: Gradients<f32, Dev>,
    trainable: BTreeSet<String>,
    /// Decay `pos_embed` and `cls_token` too (the reference's incubation of module 0).
    decay_embeddings: bool,
}

/// How the optimizer treats one trainable parameter at a step (a plugin sets it per part).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParamSettings {
    /// Multiplies the schedule's learning rate.
    pub lr_scale: f64,
    /// Replaces the configured weight decay (the no-decay group still gets none).
    pub weight_decay: Option<f64>,
    /// Not updated at this step, and left out of the gradient norm and clipping.
    pub frozen: bool,
}

impl Default for ParamSettings {
    fn default() -> Self {
        ParamSettings {
            lr_scale: 1.0,
            weight_decay: None,
            frozen: false,
        }
    }
}

/// Settings by parameter name; parameters not named get the defaults.
pub type Settings = BTreeMap<String, ParamSettings>;

fn settings_of<'a>(settings: &'a Settings, name: &str) -> std::borrow::Cow<'a, ParamSettings> {
    match settings.get(name) {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(ParamSettings::default()),
    }
}

/// Runs `f` on the tensor of either rank behind a `ParamMut`.
macro_rules! with_tensor {
    ($p:expr, |$t:ident| $body:expr) => {
        match $p {
            ParamMut::Vector($t) => $body,
            ParamMut::Matrix($t) => $body,
        }
    };
}

impl AdamW {
    /// With `on`, the position embedding and class token are decayed like the weights.
    pub fn decaying_embeddings(mut self, on: bool) -> AdamW {
        self.decay_embeddings = on;
        self
    }

    pub fn new(trainable: BTreeSet<String>, betas: [f64; 2], eps: f64, weight_decay: f64) -> AdamW {
        AdamW {
            betas,
            eps,
            weight_decay,
            step: 0,
            updates: BTreeMap::new(),
            m: Gradients::leaky(),
            v: Gradients::leaky(),
            trainable,
            decay_embeddings: false,
        }
    }

    pub fn trainable(&self) -> &BTreeSet<String> {
        &self.trainable
    }

    /// Global L2 norm of the gradients of the trainable parameters not frozen by `settings`.
    pub fn grad_norm(
        &self,
        model: &mut impl HasParams,
        grads: &mut Gradients<f32, Dev>,
        settings: &Settings,
    ) -> f64 {
        let mut sum = 0.0f64;
        for (name, p) in model.named_params_mut() {
            if self.trainable.contains(&name) && !settings_of(settings, &name).frozen {
                let g = with_tensor!(p, |t| grads.get_or_alloc_mut(&*t).expect("alloc"));
                sum += read_buffer(g, |g| {
                    g.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>()
                });
            }
        }
        sum.sqrt()
    }

    /// Multiplies the trainable gradients by `factor` (clipping, accumulation averaging).
    pub fn scale_grads(
        &self,
        model: &mut impl HasParams,
        grads: &mut Gradients<f32, Dev>,
        factor: f32,
    ) {
        for (name, p) in model.named_params_mut() {
            if self.trainable.contains(&name) {
                let g = with_tensor!(p, |t| grads.get_or_alloc_mut(&*t).expect("alloc"));
                write_buffer(g, |g| g.iter_mut().for_each(|x| *x *= factor));
            }
        }
    }

    /// Replaces the trainable gradients, and `also` (the step's loss, say), by their means over
    /// the ranks of `ranks`: through the host, or on the GPUs with NCCL (`nccl` builds).
    /// (dfdx computes a backward pass in one call, so there is nothing to overlap it with.)
    pub fn average_over_ranks(
        &self,
        model: &mut impl HasParams,
        grads: &mut Gradients<f32, Dev>,
        also: &mut [f32],
        ranks: &dyn crate::collective::Collective,
    ) {
        #[cfg(feature = "nccl")]
        {
            self.average_on_the_gpus(model, grads, ranks);
            let world = ranks.ranks().world as f32;
            ranks.sum_f32(also);
            also.iter_mut().for_each(|x| *x /= world);
        }
        #[cfg(not(feature = "nccl"))]
        self.average_on_the_host(model, grads, also, ranks);
    }

    /// [`AdamW::average_over_ranks`] through the host: one all-reduce of the gradients and
    /// `also` laid end to end.
    #[cfg(not(feature = "nccl"))]
    fn average_on_the_host(
        &self,
        model: &mut impl HasParams,
        grads: &mut Gradients<f32, Dev>,
        also: &mut [f32],
        ranks: &dyn crate::collective::Collective,
    ) {
        let world = ranks.ranks().world as f32;
        let mut flat = Vec::new();
        for (name, p) in model.named_params_mut() {
            if self.trainable.contains(&name) {
                let g = with_tensor!(p, |t| grads.get_or_alloc_mut(&*t).expect("alloc"));
                read_buffer(g, |g| flat.extend_from_slice(g));
            }
        }
        let grad_len = flat.len();
        flat.extend_from_slice(also);
        ranks.sum_f32(&mut flat);
        flat.iter_mut().for_each(|x| *x /= world);
        let mut at = 0;
        for (name, p) in model.named_params_mut() {
            if self.trainable.contains(&name) {
                let g = with_tensor!(p, |t| grads.get_or_alloc_mut(&*t).expect("alloc"));
                write_buffer(g, |g| {
                    g.copy_from_slice(&flat[at..at + g.len()]);
                    at += g.len();
                });
            }
        }
        also.copy_from_slice(&flat[grad_len..]);
    }

    /// The trainable gradients replaced by their means over the ranks without leaving the
    /// GPU: laid end to end in one device buffer, one NCCL all-reduce, and back.
    #[cfg(feature = "nccl")]
    fn average_on_the_gpus(
        &self,
        model: &mut impl HasParams,
        grads: &mut Gradients<f32, Dev>,
        ranks: &dyn crate::collective::Collective,
    ) {
        use cudarc::driver::DeviceSlice;
        let fail = |e| panic!("a copy between gradient buffers on the GPU failed: {e:?}");
        let mut sizes = Vec::new();
        let mut device = None;
        for (name, p) in model.named_params_mut() {
            if self.trainable.contains(&name) {
                let g = with_tensor!(p, |t| grads.get_or_alloc_mut(&*t).expect("alloc"));
                sizes.push(g.len());
                device.get_or_insert_with(|| g.device());
            }
        }
        let Some(dev) = device else { return };
        let mut flat = dev
            .alloc_zeros::<f32>(sizes.iter().sum())
            .unwrap_or_else(|e| panic!("cannot allocate the gradients' buffer on the GPU: {e:?}"));
        let mut at = 0;
        for (name, p) in model.named_params_mut() {
            if self.trainable.contains(&name) {
                let g = with_tensor!(p, |t| grads.get_or_alloc_mut(&*t).expect("alloc"));
                let n = g.len();
                dev.dtod_copy(&**g, &mut flat.slice_mut(at..at + n))
                    .unwrap_or_else(fail);
                at += n;
            }
        }
        let mean = crate::nccl::mean(ranks, &dev, &flat);
        at = 0;
        for (name, p) in model.named_params_mut() {
            if self.trainable.contains(&name) {
                let g = with_tensor!(p, |t| grads.get_or_alloc_mut(&*t).expect("alloc"));
                let n = g.len();
                dev.dtod_copy(&mean.slice(at..at + n), &mut **g)
                    .unwrap_or_else(fail);
                at += n;
            }
        }
    }

    /// Adds `other`'s trainable gradients into `acc` (gradient accumulation).
    pub fn accumulate(
        &self,
        model: &mut impl HasParams,
        acc: &mut Gradients<f32, Dev>,
        other: &mut Gradients<f32, Dev>,
    ) {
        for (name, p) in model.named_params_mut() {
            if self.trainable.contains(&name) {
                let src = with_tensor!(&p, |t| other.get_or_alloc_mut(&**t).expect("alloc"));
                let src = read_buffer(src, |s| s.to_vec());
                let dst = with_tensor!(&p, |t| acc.get_or_alloc_mut(&**t).expect("alloc"));
                write_buffer(dst, |d| d.iter_mut().zip(&src).for_each(|(a, b)| *a += b));
            }
        }
    }

    /// One AdamW step on every trainable parameter `settings` does not freeze; the others are
    /// not touched at all.
    pub fn update(
        &mut self,
        model: &mut impl HasParams,
        grads: &mut Gradients<f32, Dev>,
        lr: f64,
        settings: &Settings,
    ) {
        self.step += 1;
        for (name, p) in model.named_params_mut() {
            let s = settings_of(settings, &name);
            if !self.trainable.contains(&name) || s.frozen {
                continue;
            }
            let updates = self.updates.entry(name.clone()).or_insert(0);
            *updates += 1;
            let t = *updates as i32;
            let leaf = name.rsplit('.').next().unwrap_or(&name);
            let embedding = leaf == "pos_embed" || leaf == "cls_token";
            let wd = if decays(&name, &p.as_ref().shape()) || (self.decay_embeddings && embedding) {
                s.weight_decay.unwrap_or(self.weight_decay)
            } else {
                0.0
            };
            let cfg = AdamConfig {
                lr: lr * s.lr_scale,
                betas: self.betas,
                eps: self.eps,
                weight_decay: (wd > 0.0).then_some(WeightDecay::Decoupled(wd)),
            };
            with_tensor!(p, |tensor| {
                let g = grads.get_or_alloc_mut(&*tensor).expect("cpu alloc");
                let m = self.m.get_or_alloc_mut(&*tensor).expect("cpu alloc");
                let v = self.v.get_or_alloc_mut(&*tensor).expect("cpu alloc");
                cfg.try_update(t, tensor, m, v, g).expect("cpu adam kernel");
            });
        }
    }

    /// Moments by parameter name (`m.<name>`, `v.<name>`), for checkpoints.
    pub fn state(&mut self, model: &mut impl HasParams) -> BTreeMap<String, Vec<f32>> {
        let mut out = BTreeMap::new();
        for (name, p) in model.named_params_mut() {
            if self.trainable.contains(&name) {
                let (m, v) = with_tensor!(p, |t| (
                    read_buffer(self.m.get_or_alloc_mut(&*t).expect("alloc"), |b| b.to_vec()),
                    read_buffer(self.v.get_or_alloc_mut(&*t).expect("alloc"), |b| b.to_vec())
                ));
                out.insert(format!("m.{name}"), m);
                out.insert(format!("v.{name}"), v);
                // Exact in f32 up to 2^24 updates.
                let t = self.updates.get(&name).copied().unwrap_or(0);
                out.insert(format!("t.{name}"), vec![t as f32]);
            }
        }
        out
    }

    /// Restores moments saved by [`AdamW::state`]; `model` must be the model they belong to.
    pub fn load_state(
        &mut self,
        model: &mut impl HasParams,
        state: &BTreeMap<String, Vec<f32>>,
        step: u64,
    ) -> Result<(), MomentsError> {
        for (name, p) in model.named_params_mut() {
            if !self.trainable.contains(&name) {
                continue;
            }
            for (key, map) in [
                (format!("m.{name}"), &mut self.m),
                (format!("v.{name}"), &mut self.v),
            ] {
                let saved = state
                    .get(&key)
                    .ok_or_else(|| MomentsError::Missing(key.clone()))?;
                let buf = with_tensor!(&p, |t| map.get_or_alloc_mut(&**t).expect("alloc"));
                write_buffer(buf, |buf| {
                    if buf.len() != saved.len() {
                        return Err(MomentsError::Size {
                            key: key.clone(),
                            saved: saved.len(),
                            param: buf.len(),
                        });
                    }
                    buf.copy_from_slice(saved);
                    Ok(())
                })?;
            }
            // States written before per-parameter counts: every parameter moved at every step.
            let t = match state.get(&format!("t.{name}")) {
                Some(t) => t.first().copied().unwrap_or(0.0) as u64,
                None => step,
            };
            self.updates.insert(name, t);
        }
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::new_device;
    use crate::model::layers::Linear;
    use crate::model::Init;
    use rand::SeedableRng;

    fn layer() -> (Dev, Linear) {
        let dev = new_device(0);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let l = Linear::new(
            &mut Init {
                dev: &dev,
                rng: &mut rng,
            },
            3,
            2,
            true,
        );
        (dev, l)
    }

    /// Gradients of a fixed scalar of the layer's output.
    fn grads(dev: &Dev, l: &Linear) -> Gradients<f32, Dev> {
        let x: crate::device::Rows<NoneTape> =
            dev.tensor_from_vec(vec![0.5, -1.0, 2.0, 1.5, 0.25, -0.75], (2, 3));
        (l.forward(x.leaky_traced()).square().sum()).backward()
    }

    fn values(l: &Linear) -> Vec<Vec<f32>> {
        l.named_params().iter().map(|(_, p)| p.to_vec()).collect()
    }

    /// A position embedding beside a weight: DeiT's rule exempts the first from decay.
    struct Embedded {
        pos_embed: crate::device::Matrix,
        weight: crate::device::Matrix,
    }
    crate::impl_params!(Embedded { mat pos_embed, mat weight, });

    #[test]
    fn the_position_embedding_decays_only_when_asked_as_the_references_incubation_does() {
        let dev = new_device(0);
        let step = |decaying: bool| -> (Vec<f32>, Vec<f32>) {
            let mut m = Embedded {
                pos_embed: dev.tensor_from_vec(vec![1.0; 4], (2, 2)),
                weight: dev.tensor_from_vec(vec![1.0; 4], (2, 2)),
            };
            let all: BTreeSet<String> = m.named_params().into_iter().map(|(n, _)| n).collect();
            // zero gradients: the step is the decay alone
            let loss = (m.pos_embed.leaky_trace().sum() + m.weight.leaky_trace().sum()) * 0.0;
            let mut g = loss.backward();
            let mut opt = AdamW::new(all, [0.9, 0.999], 1e-8, 0.5).decaying_embeddings(decaying);
            opt.update(&mut m, &mut g, 0.1, &Settings::new());
            (m.pos_embed.as_vec(), m.weight.as_vec())
        };
        let decayed = 1.0 - 0.1 * 0.5;
        assert_eq!(step(false), (vec![1.0; 4], vec![decayed; 4]));
        assert_eq!(step(true), (vec![decayed; 4], vec![decayed; 4]));
    }

    #[test]
    fn frozen_parameters_do_not_move_and_start_their_correction_when_unfrozen() {
        let (dev, mut l) = layer();
        let all: BTreeSet<String> = l.named_params().into_iter().map(|(n, _)| n).collect();
        let frozen: Settings = all
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    ParamSettings {
                        frozen: true,
                        ..Default::default()
                    },
                )
            })
            .collect();
        let mut opt = AdamW::new(all.clone(), [0.9, 0.999], 1e-8, 0.05);
        let start = values(&l);
        let mut g = grads(&dev, &l);
        assert_eq!(opt.grad_norm(&mut l, &mut g, &frozen), 0.0);
        opt.update(&mut l, &mut g, 1e-2, &frozen);
        assert_eq!(values(&l), start, "a frozen step moved a parameter");

        // Unfrozen at step 2: the same update as a fresh optimizer's first step.
        let (_, mut fresh) = layer();
        let mut fresh_opt = AdamW::new(all.clone(), [0.9, 0.999], 1e-8, 0.05);
        let mut g = grads(&dev, &l);
        opt.update(&mut l, &mut g, 1e-2, &Settings::new());
        let mut g = grads(&dev, &fresh);
        fresh_opt.update(&mut fresh, &mut g, 1e-2, &Settings::new());
        assert_eq!(values(&l), values(&fresh));
        assert_eq!((opt.step, fresh_opt.step), (2, 1));

        // Saved and restored, the per-parameter counts continue.
        let saved = opt.state(&mut l);
        assert_eq!(saved["t.weight"], vec![1.0]);
        let mut restored = AdamW::new(all, [0.9, 0.999], 1e-8, 0.05);
        restored.load_state(&mut l, &saved, opt.step).unwrap();
        assert_eq!(restored.state(&mut l), saved);
    }

    #[test]
    fn a_learning_rate_scale_and_weight_decay_apply_to_their_parameters_only() {
        let (dev, mut a) = layer();
        let (_, mut b) = layer();
        let all: BTreeSet<String> = a.named_params().into_iter().map(|(n, _)| n).collect();
        let scaled: Settings = [(
            "weight".to_string(),
            ParamSettings {
                lr_scale: 0.0,
                weight_decay: Some(0.0),
                frozen: false,
            },
        )]
        .into();
        let (mut oa, mut ob) = (
            AdamW::new(all.clone(), [0.9, 0.999], 1e-8, 0.05),
            AdamW::new(all, [0.9, 0.999], 1e-8, 0.05),
        );
        let before = values(&a);
        let mut g = grads(&dev, &a);
        oa.update(&mut a, &mut g, 1e-2, &scaled);
        let mut g = grads(&dev, &b);
        ob.update(&mut b, &mut g, 1e-2, &Settings::new());
        let (va, vb) = (values(&a), values(&b));
        assert_eq!(
            va[0], before[0],
            "lr scale 0 leaves the weight where it was"
        );
        assert_ne!(vb[0], before[0]);
        assert_eq!(va[1], vb[1], "the bias trains as usual");
    }
}
