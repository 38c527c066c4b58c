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

pub struct AdamW {
    pub betas: [f64; 2],
    pub eps: f64,
    pub weight_decay: f64,
    /// Optimizer steps taken (bias correction uses it).
    pub step: u64,
    m: Gradients<f32, Dev>,
    v: Gradients<f32, Dev>,
    trainable: BTreeSet<String>,
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
    pub fn new(trainable: BTreeSet<String>, betas: [f64; 2], eps: f64, weight_decay: f64) -> AdamW {
        AdamW {
            betas,
            eps,
            weight_decay,
            step: 0,
            m: Gradients::leaky(),
            v: Gradients::leaky(),
            trainable,
        }
    }

    pub fn trainable(&self) -> &BTreeSet<String> {
        &self.trainable
    }

    /// Global L2 norm of the trainable parameters' gradients.
    pub fn grad_norm(&self, model: &mut impl HasParams, grads: &mut Gradients<f32, Dev>) -> f64 {
        let mut sum = 0.0f64;
        for (name, p) in model.named_params_mut() {
            if self.trainable.contains(&name) {
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

    /// One AdamW step on every trainable parameter; frozen ones are not touched at all.
    pub fn update(&mut self, model: &mut impl HasParams, grads: &mut Gradients<f32, Dev>, lr: f64) {
        self.step += 1;
        let t = self.step as i32;
        for (name, p) in model.named_params_mut() {
            if !self.trainable.contains(&name) {
                continue;
            }
            let wd = if decays(&name, &p.as_ref().shape()) {
                self.weight_decay
            } else {
                0.0
            };
            let cfg = AdamConfig {
                lr,
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
    ) -> Result<(), String> {
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
                    .ok_or_else(|| format!("optimizer state lacks {key}"))?;
                let buf = with_tensor!(&p, |t| map.get_or_alloc_mut(&**t).expect("alloc"));
                write_buffer(buf, |buf| {
                    if buf.len() != saved.len() {
                        return Err(format!(
                            "optimizer state {key} has {} values, the parameter {}",
                            saved.len(),
                            buf.len()
                        ));
                    }
                    buf.copy_from_slice(saved);
                    Ok(())
                })?;
            }
        }
        self.step = step;
        Ok(())
    }
}
